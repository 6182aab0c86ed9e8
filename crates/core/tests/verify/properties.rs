//! Property tests: the stable-toolchain twin of the fuzz targets in `fuzz/`,
//! run on every commit. Whatever the input, the verifier and the key reader
//! answer with an error, never a panic, and a changed token never verifies.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use appauth_core::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;

const NOW: i64 = 1_700_000_000;

struct Fixture {
    keys: HashMap<AppId, Arc<[PublicKey]>>,
    token: String,
    verifier: Verifier,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let key = PrivateKey::generate(2048).unwrap();
        let public = parse_public_bundle(
            key.public_key_pem().unwrap().as_bytes(),
            0,
            &[Algorithm::RS512],
        )
        .unwrap();
        let claims = Claims {
            app_id: "prop-app".into(),
            iat: NOW,
            exp: NOW + 300,
            nbf: None,
            jti: Some("j".into()),
            aud: None,
            iss: None,
            extra: Default::default(),
        };
        Fixture {
            keys: HashMap::from([(AppId::new("prop-app").unwrap(), public.into())]),
            token: sign_token(&key, Algorithm::RS512, &claims).unwrap(),
            verifier: Verifier::with_clock(
                VerifyConfig::default(),
                Arc::new(ManualClock::new(NOW)),
            ),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_is_refused_without_panicking(s in ".{0,2000}") {
        let f = fixture();
        prop_assert!(f.verifier.verify(&s, &f.keys).is_err());
    }

    #[test]
    fn arbitrary_json_parts_are_refused_without_panicking(
        header in prop::collection::vec(any::<u8>(), 0..300),
        payload in prop::collection::vec(any::<u8>(), 0..600),
        sig in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let f = fixture();
        let token = format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(sig));
        prop_assert!(f.verifier.verify(&token, &f.keys).is_err());
    }

    #[test]
    fn structured_headers_and_claims_never_panic(
        alg in prop::sample::select(vec!["RS512", "RS256", "none", "HS256", "ES256", "", "rs512"]),
        kid in proptest::option::of(".{0,50}"),
        app in ".{0,140}",
        exp in any::<i64>(),
        iat in any::<i64>(),
        extra in prop::collection::vec((".{0,8}", any::<i32>()), 0..4),
    ) {
        let f = fixture();
        let mut header = serde_json::json!({ "alg": alg });
        if let Some(kid) = kid { header["kid"] = kid.into(); }
        let mut claims = serde_json::json!({ "appId": app, "exp": exp, "iat": iat });
        for (k, v) in extra { claims[k] = v.into(); }
        let (_, _, sig) = {
            let mut parts = f.token.split('.');
            (parts.next(), parts.next(), parts.next().unwrap())
        };
        let token = format!("{}.{}.{sig}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        // A real signature over other content never verifies.
        prop_assert!(f.verifier.verify(&token, &f.keys).is_err());
    }

    #[test]
    fn any_single_character_change_breaks_the_token(pos in any::<prop::sample::Index>(), c in "[A-Za-z0-9_.=+/-]") {
        let f = fixture();
        let mut bytes = f.token.clone().into_bytes();
        let i = pos.index(bytes.len());
        let c = c.as_bytes()[0];
        prop_assume!(bytes[i] != c);
        bytes[i] = c;
        let changed = String::from_utf8(bytes).unwrap();
        prop_assert!(f.verifier.verify(&changed, &f.keys).is_err(), "changed at {}", i);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_key_reader(bytes in prop::collection::vec(any::<u8>(), 0..3000)) {
        let _ = parse_public_bundle(&bytes, NOW, &[Algorithm::RS512]);
        let _ = PrivateKey::from_pem(&bytes);
    }

    #[test]
    fn pem_wrapped_garbage_never_panics_the_key_reader(
        tag in prop::sample::select(vec!["PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE", "PRIVATE KEY", "RSA PRIVATE KEY", "X"]),
        der in prop::collection::vec(any::<u8>(), 0..1500),
    ) {
        let pem = files::encode_pem(tag, &der);
        // Random bytes are never a 2048-bit RSA key: whatever the tag, the
        // block is refused, and a tag that is not a public key's is refused
        // for its tag.
        let public = parse_public_bundle(pem.as_bytes(), NOW, &[Algorithm::RS512]);
        match public {
            Ok(keys) => prop_assert!(false, "garbage accepted as {} key(s)", keys.len()),
            Err(Error::UnexpectedPemBlock { .. }) => {
                prop_assert!(!tag.contains("PUBLIC") && tag != "CERTIFICATE", "{tag}");
            }
            Err(_) => prop_assert!(tag.contains("PUBLIC") || tag == "CERTIFICATE", "{tag}"),
        }
        prop_assert!(PrivateKey::from_pem(pem.as_bytes()).is_err());
    }

    #[test]
    fn app_id_grammar_matches_the_spec(s in "[A-Za-z0-9._/ -]{0,130}") {
        let expected = !s.is_empty()
            && s.len() <= 128
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        prop_assert_eq!(AppId::new(&s).is_ok(), expected);
    }
}
