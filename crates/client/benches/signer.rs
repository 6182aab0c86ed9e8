//! What a token costs the caller: a cache hit, and a fresh RS512 signature
//! per key size, with our held aws-lc key and, for comparison, jsonwebtoken's
//! `encode` (same aws-lc backend, but it re-parses the key on every call).
//! `scripts/bench-client.sh` prints these beside `openssl speed`.

use std::hint::black_box;
use std::sync::Arc;

use appauth_client::Signer;
use appauth_core::{Algorithm, Claims, PrivateKey, SystemClock, sign_token};
use criterion::{Criterion, criterion_group, criterion_main};

fn claims() -> Claims {
    Claims {
        app_id: "bench-app".into(),
        iat: 1_800_000_000,
        exp: 1_800_000_300,
        nbf: None,
        jti: Some("AAAAAAAAAAAAAAAAAAAAAA".into()),
        aud: None,
        iss: None,
        extra: Default::default(),
    }
}

fn cache_hit(c: &mut Criterion) {
    let pem = PrivateKey::generate(2048).unwrap().to_pkcs8_pem().unwrap();
    let signer = Signer::builder("bench-app")
        .key_pem(pem)
        .clock(Arc::new(SystemClock))
        .build()
        .unwrap();
    signer.token().unwrap();
    c.bench_function("token/cache_hit", |b| {
        b.iter(|| black_box(signer.token().unwrap()))
    });
}

fn fresh_signature(c: &mut Criterion) {
    let mut group = c.benchmark_group("sign");
    group.sample_size(20);
    for bits in [2048, 3072, 4096] {
        let key = PrivateKey::generate(bits).unwrap();
        let claims = claims();
        group.bench_function(format!("appauth/{bits}"), |b| {
            b.iter(|| black_box(sign_token(&key, Algorithm::RS512, &claims).unwrap()))
        });
        let pem = key.to_pkcs8_pem().unwrap();
        let jwt_key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS512);
        group.bench_function(format!("jsonwebtoken/{bits}"), |b| {
            b.iter(|| black_box(jsonwebtoken::encode(&header, &claims, &jwt_key).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, cache_hit, fresh_signature);
criterion_main!(benches);
