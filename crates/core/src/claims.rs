//! The claims an appauth token carries.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// The payload of an appauth token.
///
/// `appId`, `exp` and `iat` are required; unknown claims are carried through
/// in [`Claims::extra`]. A claim of the wrong JSON type (an `exp` that is a
/// string, an `appId` that is a number) makes the whole token malformed:
/// nothing is silently skipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The calling application.
    #[serde(rename = "appId")]
    pub app_id: String,
    /// Expiry, seconds since the epoch.
    #[serde(deserialize_with = "numeric_date")]
    pub exp: i64,
    /// Issue time, seconds since the epoch.
    #[serde(deserialize_with = "numeric_date")]
    pub iat: i64,
    /// Not-before, seconds since the epoch.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_numeric_date"
    )]
    pub nbf: Option<i64>,
    /// Unique token id; the revocation list can name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Intended audience(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Every other claim, as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `aud` claim: one string or an array of strings (RFC 7519 section 4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `aud` names `wanted`.
    pub fn contains(&self, wanted: &str) -> bool {
        match self {
            Self::One(a) => a == wanted,
            Self::Many(all) => all.iter().any(|a| a == wanted),
        }
    }
}

/// A NumericDate (RFC 7519 section 2) may be fractional; appauth keeps whole
/// seconds. Strings, booleans and non-finite numbers are refused.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a NumericDate (seconds since the epoch, as a JSON number)")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom("NumericDate out of range"))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i64, E> {
            if v.is_finite() && v.abs() < 9.0e15 {
                #[allow(clippy::cast_possible_truncation, reason = "range checked above")]
                Ok(v.floor() as i64)
            } else {
                Err(E::custom("NumericDate out of range"))
            }
        }
    }
    d.deserialize_any(Visitor)
}

fn optional_numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    numeric_date(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_node_recipe_payload() {
        let c: Claims =
            serde_json::from_str(r#"{"appId":"a1","iat":1700000000,"exp":1700000300}"#).unwrap();
        assert_eq!(c.app_id, "a1");
        assert_eq!(c.exp - c.iat, 300);
        assert!(c.extra.is_empty());
    }

    #[test]
    fn keeps_unknown_claims_and_fractional_dates() {
        let c: Claims = serde_json::from_str(
            r#"{"appId":"a1","iat":1.5,"exp":300.9,"role":"batch","aud":["x","y"]}"#,
        )
        .unwrap();
        assert_eq!((c.iat, c.exp), (1, 300));
        assert_eq!(c.extra["role"], "batch");
        assert!(c.aud.unwrap().contains("y"));
    }

    #[test]
    fn mistyped_or_missing_required_claims_are_errors() {
        for bad in [
            r#"{"appId":"a1","iat":1,"exp":"300"}"#,
            r#"{"appId":"a1","iat":true,"exp":300}"#,
            r#"{"appId":7,"iat":1,"exp":300}"#,
            r#"{"appId":"a1","iat":1}"#,
            r#"{"appId":"a1","exp":300}"#,
            r#"{"iat":1,"exp":300}"#,
            r#"{"appId":"a1","iat":1,"exp":300,"nbf":"0"}"#,
            r#"{"appId":"a1","iat":1,"exp":1e300}"#,
        ] {
            assert!(serde_json::from_str::<Claims>(bad).is_err(), "{bad}");
        }
    }
}
