//! The claims an appauth token carries.

use std::fmt;

use serde::de::{self, MapAccess};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// The payload of an appauth token.
///
/// `appId`, `exp` and `iat` are required; unknown claims are carried through
/// in [`Claims::extra`]. A claim of the wrong JSON type (an `exp` that is a
/// string, an `appId` that is a number) makes the whole token malformed:
/// nothing is silently skipped, and a claim named twice is refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Claims {
    /// The calling application.
    #[serde(rename = "appId")]
    pub app_id: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issue time, seconds since the epoch.
    pub iat: i64,
    /// Not-before, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Unique token id; the revocation list can name it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Intended audience(s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// Issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
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

/// The claims are read on every cold request, before the signature is
/// checked, so by hand rather than with `#[serde(flatten)]`, which buffers
/// every member of the object in an intermediate tree first: the known
/// claims go straight to their fields, names are matched without being
/// copied, and only unknown claims are kept as JSON values.
impl<'de> Deserialize<'de> for Claims {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ClaimsVisitor)
    }
}

/// A claim's name: one of those appauth reads, or another.
enum Name {
    AppId,
    Exp,
    Iat,
    Nbf,
    Jti,
    Aud,
    Iss,
    Other(String),
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl de::Visitor<'_> for NameVisitor {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a claim name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Name, E> {
                Ok(match v {
                    "appId" => Name::AppId,
                    "exp" => Name::Exp,
                    "iat" => Name::Iat,
                    "nbf" => Name::Nbf,
                    "jti" => Name::Jti,
                    "aud" => Name::Aud,
                    "iss" => Name::Iss,
                    other => Name::Other(other.to_owned()),
                })
            }
        }
        d.deserialize_identifier(NameVisitor)
    }
}

/// A NumericDate claim's value.
struct NumericDate(i64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        numeric_date(d).map(NumericDate)
    }
}

struct ClaimsVisitor;

impl<'de> de::Visitor<'de> for ClaimsVisitor {
    type Value = Claims;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Claims, A::Error> {
        fn once<T, E: de::Error>(slot: &mut Option<T>, name: &'static str, v: T) -> Result<(), E> {
            match slot.replace(v) {
                None => Ok(()),
                Some(_) => Err(E::duplicate_field(name)),
            }
        }
        let (mut app_id, mut exp, mut iat, mut nbf) = (None, None, None, None);
        let (mut jti, mut aud, mut iss) = (None, None, None);
        let mut extra = Map::new();
        while let Some(name) = map.next_key::<Name>()? {
            match name {
                Name::AppId => once(&mut app_id, "appId", map.next_value::<String>()?)?,
                Name::Exp => once(&mut exp, "exp", map.next_value::<NumericDate>()?.0)?,
                Name::Iat => once(&mut iat, "iat", map.next_value::<NumericDate>()?.0)?,
                Name::Nbf => once(&mut nbf, "nbf", map.next_value::<NumericDate>()?.0)?,
                // `null` for an optional claim is the claim absent, as serde
                // reads an `Option`.
                Name::Jti => once(&mut jti, "jti", map.next_value::<Option<String>>()?)?,
                Name::Aud => once(&mut aud, "aud", map.next_value::<Option<Audience>>()?)?,
                Name::Iss => once(&mut iss, "iss", map.next_value::<Option<String>>()?)?,
                Name::Other(name) => {
                    let value = map.next_value::<Value>()?;
                    if extra.insert(name, value).is_some() {
                        return Err(de::Error::custom("a claim is named twice"));
                    }
                }
            }
        }
        Ok(Claims {
            app_id: app_id.ok_or_else(|| de::Error::missing_field("appId"))?,
            exp: exp.ok_or_else(|| de::Error::missing_field("exp"))?,
            iat: iat.ok_or_else(|| de::Error::missing_field("iat"))?,
            nbf,
            jti: jti.flatten(),
            aud: aud.flatten(),
            iss: iss.flatten(),
            extra,
        })
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
    fn null_optional_claims_are_absent_and_serialization_round_trips() {
        let c: Claims = serde_json::from_str(
            r#"{"appId":"a1","iat":1,"exp":300,"jti":null,"aud":null,"iss":"ci","x":{"y":[1]}}"#,
        )
        .unwrap();
        assert_eq!(
            (c.jti.as_deref(), c.aud.as_ref(), c.iss.as_deref()),
            (None, None, Some("ci"))
        );
        let again: Claims = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
        assert_eq!(again.extra["x"]["y"][0], 1);
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
            r#"{"appId":"a1","iat":1,"exp":300,"nbf":null}"#,
            r#"{"appId":"a1","appId":"a2","iat":1,"exp":300}"#,
            r#"{"appId":"a1","iat":1,"exp":300,"exp":900}"#,
            r#"{"appId":"a1","iat":1,"exp":300,"role":"a","role":"b"}"#,
            r#"["appId","a1"]"#,
        ] {
            assert!(serde_json::from_str::<Claims>(bad).is_err(), "{bad}");
        }
    }
}
