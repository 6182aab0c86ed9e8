//! The public key bundle and private key readers on arbitrary bytes.
#![no_main]

use appauth_core::{Algorithm, PrivateKey, parse_public_bundle};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_public_bundle(data, 1_700_000_000, &[Algorithm::RS512]);
    let _ = PrivateKey::from_pem(data);
});
