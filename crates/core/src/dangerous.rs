//! Reading a token's contents before its signature is checked.
//!
//! Everything here returns data an attacker chose. [`crate::Verifier`] is its
//! only user: it needs the `alg`, `kid` and `appId` to pick the key, and
//! trusts nothing else until the signature verifies.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::{Claims, Rejection};

/// The longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The three parts of a compact JWS, checked for shape only.
pub(crate) struct UnverifiedToken<'a> {
    pub signing_input: &'a str,
    pub header: &'a str,
    pub payload: &'a str,
    pub signature: &'a str,
}

/// The header members appauth reads. Unknown members (`typ`, `cty`, `jwk`,
/// `jku`, `x5u`, `x5c`, ...) are ignored: none is ever used to find a key.
#[derive(Deserialize)]
pub(crate) struct UnverifiedHeader<'a> {
    #[serde(borrow)]
    pub alg: Cow<'a, str>,
    #[serde(default, borrow)]
    pub kid: Option<Cow<'a, str>>,
    /// Present at all, even as `null`: RFC 7515 section 4.1.11 forbids
    /// ignoring a `crit` the verifier does not understand, and appauth
    /// understands no extension.
    #[serde(default, deserialize_with = "present")]
    pub crit: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(d).map(|_| true)
}

/// Step 1: at most [`MAX_TOKEN_LEN`] bytes, three non-empty parts of strict
/// base64url (no padding, nothing outside `A-Za-z0-9_-`).
pub(crate) fn split(token: &str) -> Result<UnverifiedToken<'_>, Rejection> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Rejection::TooLong {
            len: token.len(),
            max: MAX_TOKEN_LEN,
        });
    }
    let Some((header, rest)) = token.split_once('.') else {
        return Err(Rejection::NotThreeParts);
    };
    let Some((payload, signature)) = rest.split_once('.') else {
        return Err(Rejection::NotThreeParts);
    };
    // No search for a third dot on the way in: a valid signature part has
    // none (`.` is outside the alphabet), so it is looked for only once a part
    // fails the check, which keeps "not three parts" the answer for a token
    // of four or more.
    for (part, text) in [
        ("header", header),
        ("payload", payload),
        ("signature", signature),
    ] {
        // A length of 1 mod 4 can never be valid base64.
        let shaped = !text.is_empty() && text.len() % 4 != 1 && is_base64url(text.as_bytes());
        if !shaped {
            if signature.contains('.') {
                return Err(Rejection::NotThreeParts);
            }
            return Err(Rejection::BadBase64 { part });
        }
    }
    Ok(UnverifiedToken {
        signing_input: &token[..header.len() + 1 + payload.len()],
        header,
        payload,
        signature,
    })
}

/// Every byte is in `A-Za-z0-9-_`. Written without an early exit, as
/// comparisons folded with `&`, so that the compiler checks 32 bytes per
/// instruction: a byte-at-a-time check of a 700-byte token cost about 1 us of
/// a cold request (docs/performance.md).
fn is_base64url(text: &[u8]) -> bool {
    text.iter().fold(true, |ok, &b| {
        let letter = (b | 0x20).wrapping_sub(b'a') < 26;
        let digit = b.wrapping_sub(b'0') < 10;
        ok & (letter | digit | (b == b'-') | (b == b'_'))
    })
}

/// Decodes one base64url part into `buf`.
pub(crate) fn decode_part<'b>(
    part: &'static str,
    text: &str,
    buf: &'b mut Vec<u8>,
) -> Result<&'b [u8], Rejection> {
    buf.clear();
    URL_SAFE_NO_PAD
        .decode_vec(text, buf)
        .map_err(|_| Rejection::BadBase64 { part })?;
    Ok(buf)
}

/// Decodes one base64url part into `stack` when it fits (a header does,
/// unless it carries a certificate chain), into `heap` otherwise: what it
/// decodes can then be borrowed while `heap` is reused for the next part.
pub(crate) fn decode_part_small<'b>(
    part: &'static str,
    text: &str,
    stack: &'b mut [u8],
    heap: &'b mut Vec<u8>,
) -> Result<&'b [u8], Rejection> {
    match URL_SAFE_NO_PAD.decode_slice(text, stack) {
        Ok(n) => Ok(&stack[..n]),
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => decode_part(part, text, heap),
        Err(base64::DecodeSliceError::DecodeError(_)) => Err(Rejection::BadBase64 { part }),
    }
}

/// Step 2's parse: the header as JSON.
pub(crate) fn header(json: &[u8]) -> Result<UnverifiedHeader<'_>, Rejection> {
    serde_json::from_slice(json).map_err(|e| Rejection::BadHeader {
        detail: e.to_string(),
    })
}

/// Step 3's parse: the claims, untrusted until the signature verifies.
pub(crate) fn claims(json: &[u8]) -> Result<Claims, Rejection> {
    serde_json::from_slice(json).map_err(|e| Rejection::BadClaims {
        detail: e.to_string(),
    })
}

/// A printable prefix of attacker-chosen text, for error context.
pub(crate) fn printable(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base64url_check_agrees_with_the_alphabet_on_every_byte() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
            assert_eq!(is_base64url(&[b]), expected, "byte {b:#04x}");
            assert_eq!(is_base64url(&[b'a', b, b'Z']), expected, "byte {b:#04x}");
        }
        assert!(is_base64url(b""));
    }

    #[test]
    fn four_parts_are_not_three_whatever_else_is_wrong() {
        for token in [
            "a.b.c.d",
            "a.bbbb.cccc.dddd",
            "!.b.c.d",
            "aaaa..cccc.",
            "aaaa.bbbb.cc.cc",
        ] {
            assert!(
                matches!(split(token), Err(Rejection::NotThreeParts)),
                "{token}"
            );
        }
        assert!(matches!(split("aaaa.bbbb"), Err(Rejection::NotThreeParts)));
        assert!(matches!(
            split("aaaa.b!bb.cccc"),
            Err(Rejection::BadBase64 { part: "payload" })
        ));
        assert!(split("aaaa.bbbb.cccc").is_ok());
    }
}
