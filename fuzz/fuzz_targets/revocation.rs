//! The revocation list parser.
#![no_main]

use appauth_gate::revocation::RevocationList;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = RevocationList::parse("revoked.txt", text);
    }
});
