//! The TOML policy parser, and deciding a request under whatever parsed.
#![no_main]

use appauth_core::AppId;
use appauth_gate::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The last line doubles as a request path, so decisions are fuzzed too.
    let path = text.lines().last().unwrap_or("/");
    if let Ok(policy) = Policy::parse("policy.toml", text) {
        let _ = policy.decide(&AppId::new("fuzz").unwrap(), "GET", path);
    }
});
