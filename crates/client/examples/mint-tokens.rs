//! Signs N distinct tokens (distinct `jti`) for one app, one per line: the
//! load benchmark's supply of cold tokens.
//!   cargo run --release -p appauth-client --example mint-tokens -- APP_ID KEY_FILE N [TTL]

use std::io::Write;

use appauth_core::{Algorithm, Claims, Clock, PrivateKey, SystemClock, sign_token};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [app, key_file, n, rest @ ..] = args.as_slice() else {
        eprintln!("usage: mint-tokens APP_ID KEY_FILE N [TTL_SECONDS]");
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("N is a number");
    let ttl: i64 = rest
        .first()
        .map_or(3000, |t| t.parse().expect("TTL is a number"));
    let key = PrivateKey::from_pem(&std::fs::read(key_file).expect("read key")).expect("key");
    let now = SystemClock.now();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunks: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let key = &key;
                s.spawn(move || {
                    (t..n)
                        .step_by(threads)
                        .map(|i| {
                            let claims = Claims {
                                app_id: app.clone(),
                                iat: now - 10,
                                exp: now + ttl,
                                nbf: None,
                                jti: Some(format!("bench-{i}")),
                                aud: None,
                                iss: None,
                                extra: Default::default(),
                            };
                            sign_token(key, Algorithm::RS512, &claims).expect("sign")
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("signer thread"))
            .collect()
    });
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for token in chunks.iter().flatten() {
        writeln!(out, "{token}").expect("write");
    }
}
