//! Times key generation with the pure-Rust `rsa` crate, for the comparison in
//! `scripts/bench-keygen.sh` that justified generating keys with aws-lc.
//!   cargo run --release -p appauth-keygen --example rsa_crate_keygen -- BITS N
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let bits: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(4096);
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let mut rng = getrandom::SysRng;
    let mut times: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            let key = rsa::PrivateKey::new(&mut rng, bits).expect("rsa keygen");
            std::hint::black_box(key);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!("{:.1}", times[n / 2]);
}
