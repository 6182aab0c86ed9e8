//! The gate's own costs, in process: a cold verification per key size (all of
//! docs/spec.md §3 steps 1-7, one RSA verification), the bare aws-lc RSA
//! verification it contains, a verified-token cache hit, and a key store
//! lookup among 10,000 apps. `scripts/bench-verify.sh` prints these beside
//! `openssl speed` from the same run.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use appauth_core::{
    Algorithm, AppId, Claims, KeyProvider, PrivateKey, PublicKey, SystemClock, Verifier,
    VerifyConfig, parse_public_bundle, sign_token,
};
use appauth_gate::{KeyStore, TokenCache};
use criterion::{Criterion, criterion_group, criterion_main};

fn claims() -> Claims {
    let now = appauth_core::Clock::now(&SystemClock);
    Claims {
        app_id: "bench-app".into(),
        iat: now,
        exp: now + 3000,
        nbf: None,
        jti: Some("0123456789abcdefghijkl".into()),
        aud: None,
        iss: None,
        extra: Default::default(),
    }
}

type Keys = HashMap<AppId, Arc<[PublicKey]>>;

fn setup(bits: usize) -> (Keys, String, Arc<[PublicKey]>) {
    let key = PrivateKey::generate(bits).unwrap();
    let public: Arc<[PublicKey]> = parse_public_bundle(
        key.public_key_pem().unwrap().as_bytes(),
        0,
        &[Algorithm::RS512],
    )
    .unwrap()
    .into();
    let keys = HashMap::from([(AppId::new("bench-app").unwrap(), public.clone())]);
    let token = sign_token(&key, Algorithm::RS512, &claims()).unwrap();
    (keys, token, public)
}

fn cold(c: &mut Criterion) {
    let verifier = Verifier::new(VerifyConfig::default());
    let mut group = c.benchmark_group("verify");
    for bits in [2048, 3072, 4096] {
        let (keys, token, public) = setup(bits);
        group.bench_function(format!("cold/{bits}"), |b| {
            b.iter(|| black_box(verifier.verify(black_box(&token), &keys).unwrap()))
        });
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).unwrap();
        group.bench_function(format!("rsa_only/{bits}"), |b| {
            b.iter(|| black_box(public[0].verify(Algorithm::RS512, input.as_bytes(), &sig, 0)))
        });
    }
    group.finish();
}

fn warm(c: &mut Criterion) {
    let verifier = Verifier::new(VerifyConfig::default());
    let (keys, token, _) = setup(2048);
    let cache = TokenCache::new(32 * 1024 * 1024);
    cache.insert(
        &token,
        Arc::new(verifier.verify(&token, &keys).unwrap()),
        Default::default(),
    );
    let now = appauth_core::Clock::now(&SystemClock);
    c.bench_function("verify/cache_hit", |b| {
        b.iter(|| black_box(cache.get(black_box(&token), &keys, &verifier, now).unwrap()))
    });

    // The key store the server runs, loaded from 10,000 key files, looked
    // up by one of them: what a request pays to find its app's keys.
    let pem = PrivateKey::generate(2048)
        .unwrap()
        .public_key_pem()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for i in 0..10_000 {
        std::fs::write(dir.path().join(format!("app-{i}_public.pem")), &pem).unwrap();
    }
    let store = KeyStore::new(dir.path(), vec![Algorithm::RS512], Arc::new(SystemClock));
    store.full_scan().unwrap();
    assert_eq!(store.app_count(), 10_000);
    let probe = AppId::new("app-7777").unwrap();
    c.bench_function("verify/keystore_lookup_10k", |b| {
        b.iter(|| black_box(store.keys_for(black_box(&probe)).unwrap()))
    });
}

criterion_group!(benches, cold, warm);
criterion_main!(benches);
