//! The verifier against known-answer vectors (tokens made by Node's
//! jsonwebtoken) and every bad input of docs/spec.md §3.

mod properties;

use std::collections::HashMap;
use std::sync::Arc;

use appauth_core::*;
use appauth_testkit::{fixture, forge, hmac_token};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const IAT: i64 = 1_700_000_000;

fn node_token(name: &str) -> String {
    let v: serde_json::Value = serde_json::from_slice(&fixture("node/tokens.json")).unwrap();
    v[name].as_str().unwrap().to_owned()
}

type Keys = HashMap<AppId, Arc<[PublicKey]>>;

fn keys_with(app: &str, pem: &[u8], algs: &[Algorithm]) -> Keys {
    // Loaded at the real time (the certificate fixture was made recently);
    // verified at the fixed clock of the vectors.
    let keys = parse_public_bundle(pem, SystemClock.now(), algs).unwrap();
    HashMap::from([(AppId::new(app).unwrap(), keys.into())])
}

fn verifier_at(now: i64, config: VerifyConfig) -> Verifier {
    Verifier::with_clock(config, Arc::new(ManualClock::new(now)))
}

fn node_keys() -> Keys {
    keys_with(
        "node-app",
        &fixture("node/node-app_public.pem"),
        &[Algorithm::RS512],
    )
}

fn reason(v: &Verifier, token: &str, keys: &Keys) -> Reason {
    v.verify(token, keys).unwrap_err().reason()
}

fn node_private() -> PrivateKey {
    PrivateKey::from_pem(&fixture("node/node-app_private.pem")).unwrap()
}

fn claims(app: &str) -> serde_json::Value {
    serde_json::json!({ "appId": app, "iat": IAT, "exp": IAT + 300 })
}

fn rs512() -> serde_json::Value {
    serde_json::json!({ "alg": "RS512", "typ": "JWT" })
}

#[test]
fn node_recipe_tokens_verify_at_a_fixed_clock() {
    let v = verifier_at(IAT + 10, VerifyConfig::default());
    let ok = v.verify(&node_token("recipe_rs512"), &node_keys()).unwrap();
    assert_eq!(ok.app_id.as_str(), "node-app");
    assert_eq!(ok.claims.exp, IAT + 300);
    assert_eq!(ok.alg, Algorithm::RS512);
    assert_eq!(ok.kid, *node_private().kid());

    let extra = v
        .verify(&node_token("with_extra_claims"), &node_keys())
        .unwrap();
    assert_eq!(extra.claims.extra["role"], "batch");
    assert_eq!(extra.claims.jti.as_deref(), Some("node-jti-1"));
}

#[test]
fn the_same_key_verifies_from_spki_pkcs1_and_certificate() {
    let v = verifier_at(IAT + 10, VerifyConfig::default());
    let token = node_token("recipe_rs512");
    for file in [
        "node/node-app_public.pem",
        "keys/node-app_pkcs1_public.pem",
        "keys/node-app_cert.pem",
    ] {
        let keys = keys_with("node-app", &fixture(file), &[Algorithm::RS512]);
        assert!(v.verify(&token, &keys).is_ok(), "{file}");
    }
    let kids: Vec<_> = [
        "node/node-app_public.pem",
        "keys/node-app_pkcs1_public.pem",
        "keys/node-app_cert.pem",
    ]
    .iter()
    .map(|f| {
        parse_public_bundle(&fixture(f), SystemClock.now(), &[]).unwrap()[0]
            .kid()
            .clone()
    })
    .collect();
    assert!(kids.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn a_bundle_verifies_with_every_key_and_a_kid_selects_one() {
    let mut bundle = fixture("keys/other_public.pem");
    bundle.extend(fixture("node/node-app_public.pem"));
    let keys = keys_with("node-app", &bundle, &[Algorithm::RS512]);
    let v = verifier_at(IAT, VerifyConfig::default());
    assert!(v.verify(&node_token("recipe_rs512"), &keys).is_ok());

    let node = node_private();
    let other_kid = parse_public_bundle(&fixture("keys/other_public.pem"), IAT, &[]).unwrap()[0]
        .kid()
        .clone();
    let with_kid = |kid: &str| serde_json::json!({ "alg": "RS512", "kid": kid });
    let right = forge(
        &node,
        Algorithm::RS512,
        &with_kid(node.kid().as_str()),
        &claims("node-app"),
    );
    assert_eq!(v.verify(&right, &keys).unwrap().kid, *node.kid());
    // A kid naming the other key of the bundle: only that key is tried.
    let wrong = forge(
        &node,
        Algorithm::RS512,
        &with_kid(other_kid.as_str()),
        &claims("node-app"),
    );
    assert_eq!(reason(&v, &wrong, &keys), Reason::BadSignature);
    let unknown = forge(
        &node,
        Algorithm::RS512,
        &with_kid("nope"),
        &claims("node-app"),
    );
    assert_eq!(reason(&v, &unknown, &keys), Reason::BadSignature);

    // A header too long for the verifier's stack buffer (a certificate
    // chain rides along, ignored) still selects its key by kid.
    let mut long = with_kid(node.kid().as_str());
    long["x5c"] = serde_json::json!(["A".repeat(3000)]);
    let long = forge(&node, Algorithm::RS512, &long, &claims("node-app"));
    assert_eq!(v.verify(&long, &keys).unwrap().kid, *node.kid());
    let mut long_wrong = with_kid(other_kid.as_str());
    long_wrong["x5c"] = serde_json::json!(["A".repeat(3000)]);
    let long_wrong = forge(&node, Algorithm::RS512, &long_wrong, &claims("node-app"));
    assert_eq!(reason(&v, &long_wrong, &keys), Reason::BadSignature);
}

#[test]
fn time_rules_apply_with_leeway() {
    let keys = node_keys();
    let token = node_token("recipe_rs512");
    let at = |now| verifier_at(now, VerifyConfig::default());
    assert!(
        at(IAT + 300 + 29).verify(&token, &keys).is_ok(),
        "inside leeway"
    );
    assert_eq!(reason(&at(IAT + 300 + 30), &token, &keys), Reason::Expired);
    assert!(
        at(IAT - 30).verify(&token, &keys).is_ok(),
        "iat inside leeway"
    );
    assert_eq!(reason(&at(IAT - 31), &token, &keys), Reason::NotYetValid);
    assert_eq!(
        reason(&at(IAT), &node_token("two_hours"), &keys),
        Reason::LifetimeTooLong
    );
    let lenient = VerifyConfig {
        max_lifetime: 7200,
        leeway: 0,
        ..Default::default()
    };
    assert!(
        verifier_at(IAT, lenient.clone())
            .verify(&node_token("two_hours"), &keys)
            .is_ok()
    );
    assert_eq!(
        reason(&verifier_at(IAT + 300, lenient), &token, &keys),
        Reason::Expired
    );

    let node = node_private();
    let nbf =
        serde_json::json!({ "appId": "node-app", "iat": IAT, "exp": IAT + 300, "nbf": IAT + 100 });
    let t = forge(&node, Algorithm::RS512, &rs512(), &nbf);
    assert_eq!(reason(&at(IAT), &t, &keys), Reason::NotYetValid);
    assert!(at(IAT + 71).verify(&t, &keys).is_ok());
}

#[test]
fn tokens_no_signer_makes_are_malformed() {
    let v = verifier_at(IAT + 10, VerifyConfig::default());
    let node = node_private();
    let inverted = forge(
        &node,
        Algorithm::RS512,
        &rs512(),
        &serde_json::json!({ "appId": "node-app", "iat": IAT + 20, "exp": IAT + 15 }),
    );
    let err = v.verify(&inverted, &node_keys()).unwrap_err();
    assert!(matches!(err, Rejection::IssuedAfterExpiry { .. }), "{err}");
    assert_eq!(err.reason(), Reason::Malformed);
    assert_eq!(err.app_id(), Some("node-app"));
    for crit in [
        serde_json::Value::Null,
        serde_json::json!([]),
        serde_json::json!("x"),
    ] {
        let token = forge(
            &node,
            Algorithm::RS512,
            &serde_json::json!({ "alg": "RS512", "crit": crit }),
            &claims("node-app"),
        );
        let err = v.verify(&token, &node_keys()).unwrap_err();
        assert_eq!(err, Rejection::CriticalHeader, "crit: {crit}");
    }
}

#[test]
fn claims_are_judged_before_the_signature() {
    // A token signed with the wrong key that is also expired is refused as
    // expired: the claims were judged first, so no RSA operation ran (the
    // server's end-to-end test counts them).
    let v = verifier_at(IAT + 10_000, VerifyConfig::default());
    let other = PrivateKey::from_pem(&fixture("keys/other_private.pem")).unwrap();
    let forged = forge(&other, Algorithm::RS512, &rs512(), &claims("node-app"));
    let err = v.verify(&forged, &node_keys()).unwrap_err();
    assert_eq!(err.reason(), Reason::Expired);
    assert_eq!(err.app_id(), Some("node-app"));
    // In date, the same forgery is a bad signature.
    let v = verifier_at(IAT + 10, VerifyConfig::default());
    assert_eq!(reason(&v, &forged, &node_keys()), Reason::BadSignature);
}

#[test]
fn audience_is_checked_only_when_configured() {
    let keys = node_keys();
    let with_aud = VerifyConfig {
        audience: Some("data-api".into()),
        ..Default::default()
    };
    let v = verifier_at(IAT, with_aud);
    assert!(v.verify(&node_token("with_extra_claims"), &keys).is_ok());
    assert_eq!(
        reason(&v, &node_token("recipe_rs512"), &keys),
        Reason::WrongAudience
    );
    let other = VerifyConfig {
        audience: Some("billing".into()),
        ..Default::default()
    };
    assert_eq!(
        reason(
            &verifier_at(IAT, other),
            &node_token("with_extra_claims"),
            &keys
        ),
        Reason::WrongAudience
    );
}

#[test]
fn algorithm_allow_list_is_enforced() {
    let keys = node_keys();
    let v = verifier_at(IAT, VerifyConfig::default());
    assert_eq!(
        reason(&v, &node_token("rs256"), &keys),
        Reason::UnsupportedAlg
    );
    // Allowed when configured (and the keys prepared for it).
    let both = VerifyConfig {
        algorithms: vec![Algorithm::RS256, Algorithm::RS512],
        ..Default::default()
    };
    let keys2 = keys_with(
        "node-app",
        &fixture("node/node-app_public.pem"),
        &both.algorithms,
    );
    assert!(
        verifier_at(IAT, both)
            .verify(&node_token("rs256"), &keys2)
            .is_ok()
    );
}

#[test]
fn every_bad_input_of_section_3_is_refused_with_its_reason() {
    let keys = node_keys();
    let v = verifier_at(IAT, VerifyConfig::default());
    let node = node_private();
    let other = PrivateKey::from_pem(&fixture("keys/other_private.pem")).unwrap();
    let public_pem = fixture("node/node-app_public.pem");
    let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
    let good = node_token("recipe_rs512");
    let (h, rest) = good.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();

    let cases: Vec<(&str, String, Reason)> = vec![
        ("empty", String::new(), Reason::Malformed),
        ("junk", "junk".into(), Reason::Malformed),
        ("two parts", format!("{h}.{p}"), Reason::Malformed),
        ("four parts", format!("{good}.{s}"), Reason::Malformed),
        ("padded", format!("{h}.{p}.{s}=="), Reason::Malformed),
        (
            "standard base64",
            format!("{h}.{p}.{}", s.replace('-', "+")),
            Reason::Malformed,
        ),
        ("empty signature", format!("{h}.{p}."), Reason::Malformed),
        ("64 KiB", "a".repeat(64 * 1024), Reason::Malformed),
        (
            "header not json",
            format!("{}.{p}.{s}", b64("nope")),
            Reason::Malformed,
        ),
        (
            "alg none",
            format!("{}.{p}.{s}", b64(r#"{"alg":"none"}"#)),
            Reason::UnsupportedAlg,
        ),
        // A real alg:none token has an empty signature: refused by shape, step 1.
        (
            "alg none unsigned",
            format!("{}.{p}.", b64(r#"{"alg":"none"}"#)),
            Reason::Malformed,
        ),
        (
            "HS256 with public key",
            hmac_token("HS256", &public_pem, &claims("node-app")),
            Reason::UnsupportedAlg,
        ),
        (
            "HS512 with public key",
            hmac_token("HS512", &public_pem, &claims("node-app")),
            Reason::UnsupportedAlg,
        ),
        (
            "ES256",
            format!("{}.{p}.{s}", b64(r#"{"alg":"ES256"}"#)),
            Reason::UnsupportedAlg,
        ),
        (
            "RS256 when RS512 only",
            node_token("rs256"),
            Reason::UnsupportedAlg,
        ),
        (
            "crit",
            forge(
                &node,
                Algorithm::RS512,
                &serde_json::json!({"alg":"RS512","crit":["exp"]}),
                &claims("node-app"),
            ),
            Reason::Malformed,
        ),
        (
            "embedded jwk of attacker key",
            forge(
                &other,
                Algorithm::RS512,
                &serde_json::json!({"alg":"RS512","jwk":{"kty":"RSA","n":"AQAB","e":"AQAB"},"jku":"http://evil/jwks","x5u":"http://evil/x5u"}),
                &claims("node-app"),
            ),
            Reason::BadSignature,
        ),
        (
            "key of another app",
            forge(&other, Algorithm::RS512, &rs512(), &claims("node-app")),
            Reason::BadSignature,
        ),
        (
            "tampered payload",
            format!("{h}.{}.{s}", b64(&claims("node-app").to_string())),
            Reason::BadSignature,
        ),
        (
            "missing exp",
            forge(
                &node,
                Algorithm::RS512,
                &rs512(),
                &serde_json::json!({"appId":"node-app","iat":IAT}),
            ),
            Reason::Malformed,
        ),
        (
            "missing iat",
            forge(
                &node,
                Algorithm::RS512,
                &rs512(),
                &serde_json::json!({"appId":"node-app","exp":IAT+300}),
            ),
            Reason::Malformed,
        ),
        (
            "exp as a string",
            forge(
                &node,
                Algorithm::RS512,
                &rs512(),
                &serde_json::json!({"appId":"node-app","iat":IAT,"exp":"9999999999"}),
            ),
            Reason::Malformed,
        ),
        (
            "future iat",
            forge(
                &node,
                Algorithm::RS512,
                &rs512(),
                &serde_json::json!({"appId":"node-app","iat":IAT+3600,"exp":IAT+3700}),
            ),
            Reason::NotYetValid,
        ),
        (
            "lifetime too long",
            forge(
                &node,
                Algorithm::RS512,
                &rs512(),
                &serde_json::json!({"appId":"node-app","iat":IAT,"exp":IAT+86400}),
            ),
            Reason::LifetimeTooLong,
        ),
        (
            "unknown app",
            forge(&node, Algorithm::RS512, &rs512(), &claims("someone-else")),
            Reason::UnknownApp,
        ),
        (
            "path traversal appId",
            forge(&node, Algorithm::RS512, &rs512(), &claims("../node-app")),
            Reason::Malformed,
        ),
        (
            "NUL in appId",
            forge(&node, Algorithm::RS512, &rs512(), &claims("node\u{0}app")),
            Reason::Malformed,
        ),
        (
            "300-char appId",
            forge(&node, Algorithm::RS512, &rs512(), &claims(&"a".repeat(300))),
            Reason::Malformed,
        ),
        (
            "appId not a string",
            forge(
                &node,
                Algorithm::RS512,
                &rs512(),
                &serde_json::json!({"appId":42,"iat":IAT,"exp":IAT+300}),
            ),
            Reason::Malformed,
        ),
        (
            "payload not an object",
            forge(
                &node,
                Algorithm::RS512,
                &rs512(),
                &serde_json::json!(["node-app"]),
            ),
            Reason::Malformed,
        ),
    ];
    for (name, token, expected) in cases {
        let got = v.verify(&token, &keys);
        assert_eq!(
            got.as_ref().err().map(Rejection::reason),
            Some(expected),
            "{name}: {got:?}"
        );
        // The rejection never carries the token.
        if let Err(e) = got {
            let text = format!("{e} {e:?}");
            assert!(
                token.len() < 20 || !text.contains(&token[..20.min(token.len())]),
                "{name} echoes the token: {text}"
            );
        }
    }
}

#[test]
fn key_files_that_must_be_refused() {
    let err = parse_public_bundle(&fixture("keys/rsa1024_public.pem"), IAT, &[]).unwrap_err();
    assert!(
        matches!(err, Error::KeyTooSmall { bits: 1024, .. }),
        "{err}"
    );
    let err = parse_public_bundle(&fixture("keys/ec_public.pem"), IAT, &[]).unwrap_err();
    assert!(matches!(err, Error::NotRsa { .. }), "{err}");
    assert!(err.to_string().contains("elliptic-curve"), "{err}");
    // One bad block refuses the whole bundle.
    let mut mixed = fixture("node/node-app_public.pem");
    mixed.extend(fixture("keys/ec_public.pem"));
    assert!(matches!(
        parse_public_bundle(&mixed, IAT, &[]),
        Err(Error::NotRsa { index: 2, .. })
    ));
    // An expired certificate's key is refused at load...
    let far_future = 4_102_444_800 + 100 * 365 * 86_400;
    let err = parse_public_bundle(&fixture("keys/node-app_cert.pem"), far_future, &[]).unwrap_err();
    assert!(matches!(err, Error::CertificateExpired { .. }), "{err}");
    // A certificate read before its notBefore is refused too.
    let err = parse_public_bundle(&fixture("keys/node-app_cert.pem"), IAT, &[]).unwrap_err();
    assert!(matches!(err, Error::CertificateNotYetValid { .. }), "{err}");
    // ...and stops verifying once it expires while loaded.
    let keys = parse_public_bundle(
        &fixture("keys/node-app_cert.pem"),
        SystemClock.now(),
        &[Algorithm::RS512],
    )
    .unwrap();
    let not_after = keys[0].not_after().unwrap();
    let node = node_private();
    let sig = node.sign(Algorithm::RS512, b"m").unwrap();
    assert!(keys[0].verify(Algorithm::RS512, b"m", &sig, not_after));
    assert!(!keys[0].verify(Algorithm::RS512, b"m", &sig, not_after + 1));
}

#[test]
fn pkcs1_private_keys_are_read_and_match_their_public_key() {
    let key = node_private();
    assert_eq!(key.format(), PrivateKeyFormat::Pkcs1);
    let public = parse_public_bundle(&fixture("node/node-app_public.pem"), IAT, &[]).unwrap();
    assert_eq!(key.kid(), public[0].kid());
}

#[test]
fn our_tokens_decode_with_jsonwebtoken_as_an_independent_implementation() {
    let key = node_private();
    let claims = Claims {
        app_id: "node-app".into(),
        iat: IAT,
        exp: IAT + 300,
        nbf: None,
        jti: Some("j-1".into()),
        aud: None,
        iss: None,
        extra: serde_json::Map::from_iter([("role".to_owned(), "batch".into())]),
    };
    let token = sign_token(&key, Algorithm::RS512, &claims).unwrap();
    let decoding =
        jsonwebtoken::DecodingKey::from_rsa_pem(&fixture("node/node-app_public.pem")).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS512);
    validation.validate_exp = false; // the vector's clock is in the past
    validation.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).unwrap();
    assert_eq!(data.claims["appId"], "node-app");
    assert_eq!(data.claims["role"], "batch");
    assert_eq!(data.header.kid.as_deref(), Some(key.kid().as_str()));
}

#[test]
fn every_algorithm_verifies_what_jsonwebtoken_signs_and_no_other() {
    // The verifier hashes the signing input itself and checks the digest,
    // so each algorithm's hash and padding (PKCS#1 v1.5, PSS) is checked
    // here against an independent signer.
    let pem = fixture("node/node-app_private.pem");
    let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap();
    let public_pem = fixture("node/node-app_public.pem");
    for alg in Algorithm::ALL {
        let theirs: jsonwebtoken::Algorithm = alg.as_str().parse().unwrap();
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(theirs),
            &claims("node-app"),
            &encoding,
        )
        .unwrap();
        let config = VerifyConfig {
            algorithms: vec![alg],
            ..Default::default()
        };
        let keys = keys_with("node-app", &public_pem, &[alg]);
        let verified = verifier_at(IAT + 10, config)
            .verify(&token, &keys)
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(verified.alg, alg);

        // The same signature under another algorithm's name is refused by
        // its signature: each algorithm's hash or padding differs.
        for other in Algorithm::ALL.into_iter().filter(|o| *o != alg) {
            let (_, rest) = token.split_once('.').unwrap();
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{other}"}}"#));
            let renamed = format!("{header}.{rest}");
            let config = VerifyConfig {
                algorithms: vec![other],
                ..Default::default()
            };
            let keys = keys_with("node-app", &public_pem, &[other]);
            assert_eq!(
                reason(&verifier_at(IAT + 10, config), &renamed, &keys),
                Reason::BadSignature,
                "{alg} signature named {other}"
            );
        }

        // And jsonwebtoken verifies what the signer here makes with it.
        let ours = sign_token(&node_private(), alg, &claims_struct()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(theirs);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let decoding = jsonwebtoken::DecodingKey::from_rsa_pem(&public_pem).unwrap();
        jsonwebtoken::decode::<serde_json::Value>(&ours, &decoding, &validation)
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
    }
}

fn claims_struct() -> Claims {
    Claims {
        app_id: "node-app".into(),
        iat: IAT,
        exp: IAT + 300,
        nbf: None,
        jti: None,
        aud: None,
        iss: None,
        extra: serde_json::Map::new(),
    }
}
