//! What the gate reads of a request: its method, its path and two headers.
//!
//! Frameworks disagree on header types (actix-web 4 is on `http` 0.2, axum
//! and tonic on `http` 1.x), so the gate takes `&str` and bytes, and each
//! adapter implements the one-method [`Headers`] trait for its own map.

use appauth_core::Rejection;

/// The `Authorization` header, lower case as HTTP/2 and `http` spell it.
pub const AUTHORIZATION: &str = "authorization";

/// What a header map holds under one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    /// No such header.
    Absent,
    /// Exactly one value.
    One(&'a [u8]),
    /// Two or more values (or lines): a second token riding along.
    Many,
}

/// A framework's header map, as the gate needs to see it.
pub trait Headers {
    /// The values under `name` (lower case: `x-token`, `authorization`).
    fn field(&self, name: &str) -> Field<'_>;
}

impl Field<'_> {
    /// The field of an iterator over a header's values: an adapter's whole
    /// [`Headers`] impl is `Field::of(map.get_all(name).iter().map(..))`.
    pub fn of<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Field<'a> {
        match (values.next(), values.next()) {
            (None, _) => Field::Absent,
            (Some(v), None) => Field::One(v),
            (Some(_), Some(_)) => Field::Many,
        }
    }
}

fn field_of_pairs<'a, N: AsRef<str> + 'a, V: AsRef<str> + 'a>(
    pairs: impl Iterator<Item = &'a (N, V)>,
    name: &str,
) -> Field<'a> {
    Field::of(
        pairs
            .filter(|(n, _)| n.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref().as_bytes()),
    )
}

/// A list of `(name, value)` pairs, for tests and for callers that hold
/// headers in no map at all.
impl Headers for [(&str, &str)] {
    fn field(&self, name: &str) -> Field<'_> {
        field_of_pairs(self.iter(), name)
    }
}

/// An array of `(name, value)` pairs: `headers: &[("x-token", token)]`.
impl<const N: usize> Headers for [(&str, &str); N] {
    fn field(&self, name: &str) -> Field<'_> {
        field_of_pairs(self.iter(), name)
    }
}

/// Owned `(name, value)` pairs.
impl Headers for Vec<(String, String)> {
    fn field(&self, name: &str) -> Field<'_> {
        field_of_pairs(self.iter(), name)
    }
}

/// The head of a request: what the gate decides on. Bodies are never read.
#[derive(Clone, Copy)]
pub struct RequestHead<'a> {
    /// The method, as sent (`GET`).
    pub method: &'a str,
    /// The raw path, without the query, as sent (still percent-encoded).
    pub path: &'a str,
    /// The headers.
    pub headers: &'a dyn Headers,
}

impl std::fmt::Debug for RequestHead<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the headers: they hold the token.
        f.debug_struct("RequestHead")
            .field("method", &self.method)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

// UTF-8 is enough here: the verifier refuses anything outside base64url
// and dots anyway. simdutf8 checks a 700-byte token in a tenth of the
// instructions std's validation takes.
pub(crate) fn text(v: &[u8]) -> Result<&str, Rejection> {
    simdutf8::basic::from_utf8(v).map_err(|_| Rejection::NotThreeParts)
}

/// RFC 9110 section 11.4 and RFC 6750 section 2.1: a case-insensitive
/// scheme, then whitespace (any run of spaces and tabs), then the token.
/// `None` for another scheme; an error for a Bearer with no token or with
/// whitespace inside it.
fn bearer(value: &str) -> Result<Option<&str>, Rejection> {
    let blank = |c: char| c == ' ' || c == '\t';
    let value = value.trim_matches(blank);
    let (scheme, rest) = match value.find(blank) {
        Some(i) => (&value[..i], value[i..].trim_start_matches(blank)),
        None => (value, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    if rest.is_empty() || rest.contains(blank) {
        return Err(Rejection::NotBearer);
    }
    Ok(Some(rest))
}

/// docs/spec.md §2: `x-token` or `Authorization: Bearer`; both with different
/// values is refused, so a second token can never ride along unchecked.
pub fn extract_token(headers: &(impl Headers + ?Sized)) -> Result<&str, Rejection> {
    token_bytes(headers).and_then(text)
}

/// [`extract_token`] before its UTF-8 check, which the gate leaves to
/// [`appauth_core::Verifier::verify_bytes`]: one in the verified-token cache
/// is text already, and a token that verifies is ASCII, so only a refused
/// one is checked (the check cost a warm request about 140 instructions,
/// and a cold one about as many again). The refusal is
/// [`extract_token`]'s in every case: an `x-token` that is not UTF-8 is
/// refused as not three parts, whatever the `Authorization` header holds.
pub(crate) fn token_bytes(headers: &(impl Headers + ?Sized)) -> Result<&[u8], Rejection> {
    let x_token = match headers.field(appauth_core::TOKEN_HEADER) {
        Field::Absent => None,
        Field::One(v) => Some(v),
        Field::Many => return Err(Rejection::ConflictingTokens),
    };
    either_token(x_token, headers).map_err(|refusal| match x_token.map(text) {
        Some(Err(not_text)) => not_text,
        _ => refusal,
    })
}

fn either_token<'a>(
    x_token: Option<&'a [u8]>,
    headers: &'a (impl Headers + ?Sized),
) -> Result<&'a [u8], Rejection> {
    let bearer = match headers.field(AUTHORIZATION) {
        Field::Absent => None,
        Field::One(v) => {
            let v = text(v).map_err(|_| Rejection::NotBearer)?;
            match bearer(v)? {
                Some(token) => Some(token.as_bytes()),
                // Another scheme (Basic for some other layer): ignored when an
                // x-token is present, refused when it is the only credential.
                None if x_token.is_some() => None,
                None => return Err(Rejection::NotBearer),
            }
        }
        Field::Many => return Err(Rejection::ConflictingTokens),
    };
    match (x_token, bearer) {
        (None, None) => Err(Rejection::MissingToken),
        (Some(t), None) | (None, Some(t)) => Ok(t),
        (Some(a), Some(b)) if a == b => Ok(a),
        (Some(_), Some(_)) => Err(Rejection::ConflictingTokens),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_takes_any_whitespace_and_one_token() {
        assert_eq!(bearer("Bearer a.b.c"), Ok(Some("a.b.c")));
        assert_eq!(bearer("bearer\ta.b.c"), Ok(Some("a.b.c")));
        assert_eq!(bearer("BEARER \t a.b.c "), Ok(Some("a.b.c")));
        assert_eq!(bearer("Basic Zm9v"), Ok(None));
        assert_eq!(bearer("Bearer"), Err(Rejection::NotBearer));
        assert_eq!(bearer("Bearer a.b.c x.y.z"), Err(Rejection::NotBearer));
    }

    fn extract(pairs: &[(&str, &str)]) -> Result<String, Rejection> {
        extract_token(pairs).map(str::to_owned)
    }

    #[test]
    fn token_extraction_follows_section_2() {
        assert_eq!(extract(&[("x-token", "a.b.c")]), Ok("a.b.c".into()));
        assert_eq!(
            extract(&[("authorization", "Bearer a.b.c")]),
            Ok("a.b.c".into())
        );
        assert_eq!(
            extract(&[("x-token", "a.b.c"), ("authorization", "Bearer a.b.c")]),
            Ok("a.b.c".into())
        );
        assert_eq!(
            extract(&[("x-token", "a.b.c"), ("authorization", "Bearer x.y.z")]),
            Err(Rejection::ConflictingTokens)
        );
        assert_eq!(
            extract(&[("x-token", "a.b.c"), ("x-token", "a.b.c")]),
            Err(Rejection::ConflictingTokens)
        );
        assert_eq!(extract(&[]), Err(Rejection::MissingToken));
        assert_eq!(
            extract(&[("authorization", "Basic Zm9vOmJhcg==")]),
            Err(Rejection::NotBearer)
        );
        assert_eq!(
            extract(&[("x-token", "a.b.c"), ("authorization", "Basic Zm9v")]),
            Ok("a.b.c".into())
        );
        // A second token behind a tab is still a second token.
        assert_eq!(
            extract(&[("x-token", "a.b.c"), ("authorization", "Bearer\tx.y.z")]),
            Err(Rejection::ConflictingTokens)
        );
        // Header names are case-insensitive.
        assert_eq!(extract(&[("X-Token", "a.b.c")]), Ok("a.b.c".into()));
    }

    /// Header values as bytes, which a `&str` pair cannot hold.
    struct Raw(Vec<(&'static str, Field<'static>)>);

    impl Headers for Raw {
        fn field(&self, name: &str) -> Field<'_> {
            self.0
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(Field::Absent, |(_, f)| *f)
        }
    }

    #[test]
    fn an_x_token_that_is_not_utf8_is_not_three_parts_whatever_else_is_sent() {
        let bad = Field::One(b"a.b.\xff");
        for authorization in [
            Field::Absent,
            Field::One(b"Bearer a.b.c"),
            Field::One(b"Basic Zm9v"),
            Field::One(b"Bearer \xfe"),
            Field::One(b"Bearer"),
            Field::Many,
        ] {
            let headers = Raw(vec![("x-token", bad), ("authorization", authorization)]);
            assert_eq!(
                extract_token(&headers),
                Err(Rejection::NotThreeParts),
                "{authorization:?}"
            );
            // The gate's road: the bytes, handed as they are to the
            // verifier, which gives the same refusal.
            let verifier = appauth_core::Verifier::new(Default::default());
            let keys = std::collections::HashMap::new();
            assert_eq!(
                token_bytes(&headers)
                    .and_then(|token| verifier.verify_bytes(token, &keys).map(|_| ())),
                Err(Rejection::NotThreeParts),
                "{authorization:?}"
            );
        }
        // Not UTF-8 in Authorization alone is not a Bearer token.
        let headers = Raw(vec![("authorization", Field::One(b"Bearer \xfe"))]);
        assert_eq!(extract_token(&headers), Err(Rejection::NotBearer));
    }
}
