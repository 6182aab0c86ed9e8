//! The Envoy and Istio configurations in `deploy/` checked offline: every
//! field is one their published APIs define (the subset of Envoy's
//! `jwt_authn.v3` protos and Istio's `security.istio.io/v1` CRDs they use,
//! transcribed below), and every provider would accept our tokens: its
//! issuer is what `--as-issuer` signs, its JWKS URI is the server's route for
//! that app, and the JWKS served there holds the signing key.

use std::collections::HashMap;

use appauth_client::Signer;
use yaml_rust2::{Yaml, YamlLoader};

use crate::util::{Server, add_app};

/// Message -> (field -> type). A type is a message name, `string`, `bool`,
/// `duration`, `[T]` (a list of T) or `{T}` (a map of string to T).
fn envoy_schema() -> HashMap<&'static str, HashMap<&'static str, &'static str>> {
    HashMap::from([
        (
            "Filter",
            HashMap::from([("name", "string"), ("typed_config", "JwtAuthentication")]),
        ),
        (
            "JwtAuthentication",
            HashMap::from([
                ("@type", "string"),
                ("providers", "{JwtProvider}"),
                ("rules", "[RequirementRule]"),
                ("bypass_cors_preflight", "bool"),
            ]),
        ),
        (
            "JwtProvider",
            HashMap::from([
                ("issuer", "string"),
                ("audiences", "[string]"),
                ("subjects", "StringMatcher"),
                ("remote_jwks", "RemoteJwks"),
                ("forward", "bool"),
                ("from_headers", "[JwtHeader]"),
                ("from_params", "[string]"),
                ("forward_payload_header", "string"),
                ("payload_in_metadata", "string"),
                ("clock_skew_seconds", "int"),
                ("claim_to_headers", "[JwtClaimToHeader]"),
                ("clear_route_cache", "bool"),
            ]),
        ),
        (
            "RemoteJwks",
            HashMap::from([
                ("http_uri", "HttpUri"),
                ("cache_duration", "duration"),
                ("async_fetch", "AsyncFetch"),
            ]),
        ),
        (
            "HttpUri",
            HashMap::from([
                ("uri", "string"),
                ("cluster", "string"),
                ("timeout", "duration"),
            ]),
        ),
        (
            "JwtHeader",
            HashMap::from([("name", "string"), ("value_prefix", "string")]),
        ),
        (
            "JwtClaimToHeader",
            HashMap::from([("header_name", "string"), ("claim_name", "string")]),
        ),
        (
            "RequirementRule",
            HashMap::from([("match", "RouteMatch"), ("requires", "JwtRequirement")]),
        ),
        (
            "RouteMatch",
            HashMap::from([("prefix", "string"), ("path", "string")]),
        ),
        (
            "JwtRequirement",
            HashMap::from([
                ("provider_name", "string"),
                ("requires_any", "JwtRequirementOrList"),
                ("requires_all", "JwtRequirementAndList"),
                ("allow_missing", "Empty"),
                ("allow_missing_or_failed", "Empty"),
            ]),
        ),
        (
            "JwtRequirementOrList",
            HashMap::from([("requirements", "[JwtRequirement]")]),
        ),
        (
            "JwtRequirementAndList",
            HashMap::from([("requirements", "[JwtRequirement]")]),
        ),
    ])
}

fn istio_schema() -> HashMap<&'static str, HashMap<&'static str, &'static str>> {
    HashMap::from([
        (
            "RequestAuthentication",
            HashMap::from([
                ("apiVersion", "string"),
                ("kind", "string"),
                ("metadata", "Metadata"),
                ("spec", "RequestAuthenticationSpec"),
            ]),
        ),
        (
            "Metadata",
            HashMap::from([("name", "string"), ("namespace", "string")]),
        ),
        (
            "RequestAuthenticationSpec",
            HashMap::from([("selector", "Selector"), ("jwtRules", "[JWTRule]")]),
        ),
        ("Selector", HashMap::from([("matchLabels", "{string}")])),
        (
            "JWTRule",
            HashMap::from([
                ("issuer", "string"),
                ("audiences", "[string]"),
                ("jwksUri", "string"),
                ("jwks", "string"),
                ("fromHeaders", "[JWTHeader]"),
                ("fromParams", "[string]"),
                ("outputPayloadToHeader", "string"),
                ("forwardOriginalToken", "bool"),
                ("outputClaimToHeaders", "[ClaimToHeader]"),
                ("timeout", "duration"),
            ]),
        ),
        (
            "JWTHeader",
            HashMap::from([("name", "string"), ("prefix", "string")]),
        ),
        (
            "ClaimToHeader",
            HashMap::from([("header", "string"), ("claim", "string")]),
        ),
    ])
}

fn check(schema: &HashMap<&str, HashMap<&str, &str>>, ty: &str, node: &Yaml, at: &str) {
    if let Some(inner) = ty.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        let list = node
            .as_vec()
            .unwrap_or_else(|| panic!("{at}: expected a list"));
        for (i, item) in list.iter().enumerate() {
            check(schema, inner, item, &format!("{at}[{i}]"));
        }
        return;
    }
    if let Some(inner) = ty.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        let map = node
            .as_hash()
            .unwrap_or_else(|| panic!("{at}: expected a map"));
        for (k, v) in map {
            check(schema, inner, v, &format!("{at}.{}", k.as_str().unwrap()));
        }
        return;
    }
    match ty {
        "string" => assert!(node.as_str().is_some(), "{at}: expected a string"),
        "bool" => assert!(node.as_bool().is_some(), "{at}: expected true or false"),
        "int" => assert!(node.as_i64().is_some(), "{at}: expected an integer"),
        "duration" => {
            let d = node
                .as_str()
                .unwrap_or_else(|| panic!("{at}: expected a duration"));
            assert!(
                d.ends_with('s') && d.trim_end_matches('s').parse::<f64>().is_ok(),
                "{at}: {d:?} is not a protobuf duration such as 1s or 0.5s"
            );
        }
        message => {
            let fields = schema
                .get(message)
                .unwrap_or_else(|| panic!("{at}: no schema for {message}"));
            let map = node
                .as_hash()
                .unwrap_or_else(|| panic!("{at}: expected a {message}"));
            for (k, v) in map {
                let k = k.as_str().unwrap();
                let field_ty = fields
                    .get(k)
                    .unwrap_or_else(|| panic!("{at}: {message} has no field {k:?}"));
                check(schema, field_ty, v, &format!("{at}.{k}"));
            }
        }
    }
}

fn load(rel: &str) -> Vec<Yaml> {
    let path = appauth_testkit::fixture_path(&format!("../../deploy/{rel}"));
    let text = std::fs::read_to_string(&path).unwrap();
    YamlLoader::load_from_str(&text).unwrap()
}

/// The path of a JWKS URI, checked to be the server's route for `app`.
fn jwks_path(uri: &str, app: &str) -> String {
    let path = format!("/{}", uri.splitn(4, '/').nth(3).unwrap());
    assert_eq!(
        path,
        format!("/.well-known/appauth/{app}/jwks.json"),
        "{uri}"
    );
    path
}

/// The provider would accept `app`'s tokens: the server, started with
/// --serve-jwks, serves the signing key at `path`, and the token's iss is
/// the provider's issuer.
async fn accepts(
    server: &Server,
    keys: &HashMap<String, appauth_core::PrivateKey>,
    app: &str,
    path: &str,
) {
    let key = &keys[app];
    let signer = Signer::builder(app)
        .key_pem(key.to_pkcs8_pem().unwrap())
        .app_as_issuer(true)
        .build()
        .unwrap();
    let token = signer.token().unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["iss"], app);
    let set: serde_json::Value = reqwest::get(format!("{}{path}", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == key.kid().as_str()),
        "{path}: {set}"
    );
}

#[tokio::test]
async fn the_documented_envoy_and_istio_configurations_would_accept_our_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let keys: HashMap<String, _> = ["orders", "billing"]
        .map(|a| (a.to_owned(), add_app(dir.path(), a)))
        .into_iter()
        .collect();
    let server = Server::start(dir.path(), &["--serve-jwks"]);

    let envoy = &load("envoy/jwt-authn.yaml")[0];
    check(&envoy_schema(), "Filter", envoy, "filter");
    let config = &envoy["typed_config"];
    assert_eq!(
        config["@type"].as_str(),
        Some("type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication")
    );
    let providers = config["providers"].as_hash().unwrap();
    for (name, p) in providers {
        let issuer = p["issuer"].as_str().unwrap();
        assert_eq!(name.as_str().unwrap(), format!("appauth-{issuer}"));
        let path = jwks_path(
            p["remote_jwks"]["http_uri"]["uri"].as_str().unwrap(),
            issuer,
        );
        assert!(
            p["from_headers"]
                .as_vec()
                .unwrap()
                .iter()
                .any(|h| h["name"].as_str() == Some("x-token")),
            "{issuer}: the Node recipe's header is not read"
        );
        accepts(&server, &keys, issuer, &path).await;
    }
    // Every rule names a provider that exists.
    for rule in config["rules"].as_vec().unwrap() {
        for req in rule["requires"]["requires_any"]["requirements"]
            .as_vec()
            .unwrap()
        {
            let name = Yaml::String(req["provider_name"].as_str().unwrap().to_owned());
            assert!(providers.contains_key(&name), "{name:?}");
        }
    }

    let istio = load("istio/request-authentication.yaml");
    check(
        &istio_schema(),
        "RequestAuthentication",
        &istio[0],
        "RequestAuthentication",
    );
    assert_eq!(
        istio[0]["apiVersion"].as_str(),
        Some("security.istio.io/v1")
    );
    for rule in istio[0]["spec"]["jwtRules"].as_vec().unwrap() {
        let issuer = rule["issuer"].as_str().unwrap();
        let path = jwks_path(rule["jwksUri"].as_str().unwrap(), issuer);
        accepts(&server, &keys, issuer, &path).await;
    }
    // The policy requires each app's iss/sub principal.
    let principals = istio[1]["spec"]["rules"][0]["from"][0]["source"]["requestPrincipals"]
        .as_vec()
        .unwrap();
    assert!(
        principals
            .iter()
            .any(|p| p.as_str() == Some("orders/orders"))
    );
}
