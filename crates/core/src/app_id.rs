//! The application identifier and its grammar.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// The longest appId the grammar allows, in bytes.
pub const MAX_APP_ID_LEN: usize = 128;

/// An application identifier that matches `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`.
///
/// Holding an `AppId` is proof that the grammar was checked, so it is safe to
/// use as a map key or inside a file *name*. It can never contain a path
/// separator, start with a dot, or be `..`.
///
/// ```
/// use appauth_core::AppId;
/// let id: AppId = "kjh2-vt23-s23t-poq2-xsw8-p09o-qw12".parse().unwrap();
/// assert_eq!(id.as_str(), "kjh2-vt23-s23t-poq2-xsw8-p09o-qw12");
/// assert!("../etc/passwd".parse::<AppId>().is_err());
/// ```
// Shared text: the verifier hands each caller the key store's own AppId,
// so a cold request allocates none.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppId(std::sync::Arc<str>);

impl AppId {
    /// Checks `s` against the appId grammar.
    pub fn new(s: &str) -> Result<Self, Error> {
        check(s).map_err(|problem| Error::InvalidAppId {
            shown: shown(s),
            problem,
        })?;
        Ok(Self(s.into()))
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `s` matches the grammar, without allocating: the server calls this
/// on untrusted input before any lookup.
pub fn is_valid_app_id(s: &str) -> bool {
    check(s).is_ok()
}

fn check(s: &str) -> Result<(), &'static str> {
    let bytes = s.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err("it is empty");
    };
    if bytes.len() > MAX_APP_ID_LEN {
        return Err("it is longer than 128 characters");
    }
    if !first.is_ascii_alphanumeric() {
        return Err("it must start with a letter or a digit");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("only letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// A printable, bounded rendering of untrusted input for error messages.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(40).flat_map(char::escape_debug).collect();
    if s.chars().count() > 40 {
        out.push_str("...");
    }
    out
}

impl FromStr for AppId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppId({:?})", &*self.0)
    }
}

impl AsRef<str> for AppId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for AppId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for AppId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for AppId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        AppId::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_spec_example_and_edge_lengths() {
        assert!(AppId::new("kjh2-vt23-s23t-poq2-xsw8-p09o-qw12").is_ok());
        assert!(AppId::new("a").is_ok());
        assert!(AppId::new("a.b_c-d").is_ok());
        assert!(AppId::new(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn rejects_everything_outside_the_grammar() {
        for bad in [
            "", "..", ".", "../x", "a/b", "a\\b", "a b", "a\0b", "-a", "_a", ".hidden", "é", "a\n",
        ] {
            assert!(AppId::new(bad).is_err(), "{bad:?} was accepted");
            assert!(!is_valid_app_id(bad));
        }
        assert!(AppId::new(&"a".repeat(129)).is_err());
        assert!(AppId::new(&"a".repeat(300)).is_err());
    }

    #[test]
    fn error_message_names_the_problem_and_escapes_input() {
        let err = AppId::new("a\0b").unwrap_err().to_string();
        assert!(err.contains("a\\0b"), "{err}");
        assert!(err.contains("only letters"), "{err}");
        let long = AppId::new(&"x".repeat(300)).unwrap_err().to_string();
        assert!(long.len() < 300, "error echoes unbounded input: {long}");
    }

    #[test]
    fn deserializing_checks_the_grammar() {
        assert!(serde_json::from_str::<AppId>("\"ok-1\"").is_ok());
        assert!(serde_json::from_str::<AppId>("\"../x\"").is_err());
    }
}
