//! The whole verification path (docs/spec.md §3 steps 1-7) on arbitrary
//! bytes, against a real key: it must refuse without panicking.
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use appauth_core::*;
use libfuzzer_sys::fuzz_target;

struct Setup {
    keys: HashMap<AppId, Arc<[PublicKey]>>,
    verifier: Verifier,
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let pem = include_bytes!("../../tests/fixtures/node/node-app_public.pem");
        let keys = parse_public_bundle(pem, 0, &[Algorithm::RS512]).unwrap();
        Setup {
            keys: HashMap::from([(AppId::new("node-app").unwrap(), keys.into())]),
            verifier: Verifier::with_clock(
                VerifyConfig::default(),
                Arc::new(ManualClock::new(1_700_000_000)),
            ),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        let s = setup();
        let _ = s.verifier.verify(token, &s.keys);
    }
});
