//! Reading a token's contents before its signature is checked.
//!
//! Everything here returns data an attacker chose. [`crate::Verifier`] is its
//! only user: it needs the `alg`, `kid` and `appId` to pick the key, and
//! trusts nothing else until the signature verifies.

use std::borrow::Cow;

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

/// `A-Za-z0-9-_` to their six bits; 0xFF for every other byte.
const DECODE: [u8; 256] = {
    let mut table = [0xFF; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut i = 0;
    while i < 64 {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// How many bytes strict base64url `text` decodes to, or `None` for a
/// length no encoding has (1 mod 4).
fn decoded_len(text: &[u8]) -> Option<usize> {
    let tail = match text.len() % 4 {
        0 => 0,
        2 => 1,
        3 => 2,
        _ => return None,
    };
    Some(text.len() / 4 * 3 + tail)
}

/// Strict base64url without padding (RFC 4648 section 5, the JWS form):
/// every byte from the alphabet, no `=`, a length that is not 1 mod 4, and
/// zero bits after the last whole byte, so each byte string has exactly one
/// encoding. Decodes into `out`, which is [`decoded_len`] long, 4
/// characters to 3 bytes with one table load each: the general-purpose
/// decoder cost twice the instructions on every cold request.
fn decode_strict(text: &[u8], out: &mut [u8]) -> Option<()> {
    let (whole, tail) = text.split_at(text.len() / 4 * 4);
    let (body, last) = out.split_at_mut(whole.len() / 4 * 3);
    let mut bad = 0u8;
    for (quad, triple) in whole.chunks_exact(4).zip(body.chunks_exact_mut(3)) {
        let [a, b, c, d] = [quad[0], quad[1], quad[2], quad[3]].map(|x| DECODE[usize::from(x)]);
        bad |= a | b | c | d;
        let bits = u32::from(a) << 18 | u32::from(b) << 12 | u32::from(c) << 6 | u32::from(d);
        triple.copy_from_slice(&bits.to_be_bytes()[1..]);
    }
    let mut bits = 0u32;
    for (i, &x) in tail.iter().enumerate() {
        let v = DECODE[usize::from(x)];
        bad |= v;
        bits |= u32::from(v) << (18 - 6 * i);
    }
    // A six-bit value never has the top bit set; 0xFF always does.
    if bad & 0x80 != 0 {
        return None;
    }
    last.copy_from_slice(&bits.to_be_bytes()[1..1 + last.len()]);
    // The bits after the last whole byte must be zero: 4 of them after two
    // characters, 2 after three.
    let leftover = match last.len() {
        1 => bits & 0xFFFF,
        2 => bits & 0xFF,
        _ => 0,
    };
    (leftover == 0).then_some(())
}

/// Decodes one base64url part into `buf`.
pub(crate) fn decode_part<'b>(
    part: &'static str,
    text: &str,
    buf: &'b mut Vec<u8>,
) -> Result<&'b [u8], Rejection> {
    let bad = || Rejection::BadBase64 { part };
    let len = decoded_len(text.as_bytes()).ok_or_else(bad)?;
    buf.clear();
    buf.resize(len, 0);
    decode_strict(text.as_bytes(), buf).ok_or_else(bad)?;
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
    let len = decoded_len(text.as_bytes()).ok_or(Rejection::BadBase64 { part })?;
    if len > stack.len() {
        return decode_part(part, text, heap);
    }
    let out = &mut stack[..len];
    decode_strict(text.as_bytes(), out).ok_or(Rejection::BadBase64 { part })?;
    Ok(out)
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

    use proptest::prelude::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 4096, ..Default::default() })]

        /// The strict decoder agrees with the base64 crate's URL_SAFE_NO_PAD
        /// (strict about trailing bits, no padding) on every input: near-valid
        /// text from the alphabet, and anything at all.
        #[test]
        fn the_strict_decoder_agrees_with_the_base64_crate(
            text in prop_oneof![
                "[A-Za-z0-9_-]{0,40}".prop_map(String::from),
                "[A-Za-z0-9_=+/. -]{0,12}".prop_map(String::from),
                proptest::collection::vec(any::<u8>(), 0..16)
                    .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            ]
        ) {
            use base64::Engine;
            let theirs = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&text).ok();
            let mut buf = Vec::new();
            let ours = decode_part("payload", &text, &mut buf).ok().map(<[u8]>::to_vec);
            proptest::prop_assert_eq!(&ours, &theirs);
            let mut stack = [0u8; 8];
            let mut heap = Vec::new();
            let small = decode_part_small("header", &text, &mut stack, &mut heap).ok().map(<[u8]>::to_vec);
            proptest::prop_assert_eq!(&small, &theirs);
        }

        /// Every byte string round-trips through the encoder and our decoder.
        #[test]
        fn every_encoding_decodes_back(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            use base64::Engine;
            let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
            let mut buf = Vec::new();
            proptest::prop_assert_eq!(decode_part("payload", &text, &mut buf).unwrap(), &bytes[..]);
        }
    }

    #[test]
    fn non_canonical_trailing_bits_are_refused() {
        let mut buf = Vec::new();
        // "AA" is one zero byte; "AB" would carry a set bit past it.
        assert_eq!(decode_part("payload", "AA", &mut buf).unwrap(), [0]);
        assert!(decode_part("payload", "AB", &mut buf).is_err());
        assert!(decode_part("payload", "AAB", &mut buf).is_err());
        assert!(decode_part("payload", "AAA", &mut buf).is_ok());
        assert!(decode_part("payload", "A", &mut buf).is_err());
        assert!(decode_part("payload", "AA==", &mut buf).is_err());
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
