//! Reading a token's contents before its signature is checked.
//!
//! Everything here returns data an attacker chose. [`crate::Verifier`] is its
//! only user: it needs the `alg`, `kid` and `appId` to pick the key, and
//! trusts nothing else until the signature verifies.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::{Claims, Rejection};

/// The longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The three parts of a compact JWS, checked for shape only. The signature
/// is the text after the second dot, which holds a third dot when the token
/// has four parts or more: [`UnverifiedToken::refuse`] says so. Bytes, not
/// yet known to be text: see [`decode`].
pub(crate) struct UnverifiedToken<'a> {
    pub signing_input: &'a [u8],
    pub header: &'a [u8],
    pub payload: &'a [u8],
    pub signature: &'a [u8],
}

impl UnverifiedToken<'_> {
    /// `refusal`, or "not three parts" for a token of four or more,
    /// whatever else is wrong with it. Only a token already refused is
    /// searched for a third dot: a signature that decoded has none, since a
    /// dot is not in the alphabet, so an accepted token's signature is
    /// read by the decoder alone (a search of it cost about 100
    /// instructions of a cold request).
    pub(crate) fn refuse(&self, refusal: Rejection) -> Rejection {
        if memchr::memchr(b'.', self.signature).is_some() {
            Rejection::NotThreeParts
        } else {
            refusal
        }
    }
}

/// A token's three parts, decoded: what step 1 hands on.
pub(crate) struct DecodedToken<'t, 'b> {
    pub signing_input: &'t [u8],
    pub header: &'b [u8],
    pub payload: &'b [u8],
    pub signature: &'b [u8],
}

/// Where [`decode`] puts a token's parts: on the stack, unless one is long
/// (a header with a certificate chain, a signature over 4096 bits).
/// Uninitialized: the decoder writes each byte that is then read, and
/// hands back only those (zeroing 1,280 bytes cost about 110 instructions
/// of a cold request).
pub(crate) struct PartBuffers {
    header: [MaybeUninit<u8>; 256],
    payload: [MaybeUninit<u8>; 512],
    signature: [MaybeUninit<u8>; 512],
    long: [Vec<u8>; 3],
}

impl PartBuffers {
    pub(crate) fn new() -> Self {
        Self {
            header: [MaybeUninit::uninit(); 256],
            payload: [MaybeUninit::uninit(); 512],
            signature: [MaybeUninit::uninit(); 512],
            long: Default::default(),
        }
    }
}

/// Step 1: the shape ([`split`]), then every part decoded (header, payload,
/// signature, in that order) before any is read. Nothing is allocated for a
/// token whose parts fit their stack buffers, and each part borrows its own
/// buffer (the header's `kid` is borrowed).
///
/// `token` is a header's bytes: one that is not UTF-8 is not a token at
/// all, and is refused as "not three parts", whatever else is wrong with
/// it. Only a token already refused is checked: one that decodes is ASCII,
/// since the dots and the alphabet are (a check of all 540 bytes cost
/// about 150 instructions of a cold request).
pub(crate) fn decode<'t, 'b>(
    token: &'t [u8],
    bufs: &'b mut PartBuffers,
) -> Result<DecodedToken<'t, 'b>, Rejection> {
    split(token)
        .and_then(|parts| decode_parts(&parts, bufs).map_err(|refusal| parts.refuse(refusal)))
        .map_err(|refusal| match simdutf8::basic::from_utf8(token) {
            Ok(_) => refusal,
            Err(_) => Rejection::NotThreeParts,
        })
}

fn decode_parts<'t, 'b>(
    parts: &UnverifiedToken<'t>,
    bufs: &'b mut PartBuffers,
) -> Result<DecodedToken<'t, 'b>, Rejection> {
    let [long_header, long_payload, long_signature] = &mut bufs.long;
    Ok(DecodedToken {
        signing_input: parts.signing_input,
        header: decode_part_small("header", parts.header, &mut bufs.header, long_header)?,
        payload: decode_part_small("payload", parts.payload, &mut bufs.payload, long_payload)?,
        signature: decode_part_small(
            "signature",
            parts.signature,
            &mut bufs.signature,
            long_signature,
        )?,
    })
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

/// Step 1's shape: at most [`MAX_TOKEN_LEN`] bytes, three non-empty parts,
/// each of a length some base64url text has. The alphabet is the decoder's
/// to check ([`decode_part`]), which [`decode`] runs on all three parts
/// before any is read: one pass over the bytes, not two.
pub(crate) fn split(token: &[u8]) -> Result<UnverifiedToken<'_>, Rejection> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Rejection::TooLong {
            len: token.len(),
            max: MAX_TOKEN_LEN,
        });
    }
    // The dots by the memchr crate, which takes half the instructions of
    // std's byte search. The signature is not searched for a third dot
    // here: see [`UnverifiedToken::refuse`].
    let Some(first) = memchr::memchr(b'.', token) else {
        return Err(Rejection::NotThreeParts);
    };
    let Some(second) = memchr::memchr(b'.', &token[first + 1..]).map(|at| first + 1 + at) else {
        return Err(Rejection::NotThreeParts);
    };
    let parts = UnverifiedToken {
        signing_input: &token[..second],
        header: &token[..first],
        payload: &token[first + 1..second],
        signature: &token[second + 1..],
    };
    for (part, text) in [
        ("header", parts.header),
        ("payload", parts.payload),
        ("signature", parts.signature),
    ] {
        // A length of 1 mod 4 can never be valid base64.
        if text.is_empty() || text.len() % 4 == 1 {
            return Err(parts.refuse(Rejection::BadBase64 { part }));
        }
    }
    Ok(parts)
}

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
/// encoding. Decodes into `out`, which is [`decoded_len`] long, and answers
/// the bytes written, all of `out`.
///
/// By the base64-simd crate, with the vector unit the CPU has (chosen once):
/// the three parts of a token are about 530 characters, which a table
/// lookup a character took about 2,900 instructions of each cold request to
/// decode (docs/performance.md).
fn decode_strict<'o>(text: &[u8], out: base64_simd::Out<'o, [u8]>) -> Option<&'o [u8]> {
    let len = out.len();
    let decoded = base64_simd::URL_SAFE_NO_PAD.decode(text, out).ok()?;
    // Always true for a `text` of the length `out` was cut to; checked
    // rather than assumed, so a wrong length is a refusal, not a half-read.
    (decoded.len() == len).then_some(decoded)
}

/// Decodes one base64url part into `buf`.
pub(crate) fn decode_part<'b>(
    part: &'static str,
    text: &[u8],
    buf: &'b mut Vec<u8>,
) -> Result<&'b [u8], Rejection> {
    let bad = || Rejection::BadBase64 { part };
    let len = decoded_len(text).ok_or_else(bad)?;
    buf.clear();
    buf.resize(len, 0);
    decode_strict(text, base64_simd::Out::from_slice(buf)).ok_or_else(bad)
}

/// Decodes one base64url part into `stack` when it fits (a header does,
/// unless it carries a certificate chain), into `heap` otherwise: what it
/// decodes can then be borrowed while `heap` is reused for the next part.
pub(crate) fn decode_part_small<'b>(
    part: &'static str,
    text: &[u8],
    stack: &'b mut [MaybeUninit<u8>],
    heap: &'b mut Vec<u8>,
) -> Result<&'b [u8], Rejection> {
    let bad = || Rejection::BadBase64 { part };
    let len = decoded_len(text).ok_or_else(bad)?;
    if len > stack.len() {
        return decode_part(part, text, heap);
    }
    let out = base64_simd::Out::from_uninit_slice(&mut stack[..len]);
    decode_strict(text, out).ok_or_else(bad)
}

/// Step 2's parse: the header as JSON (a flat header of strings without
/// serde, the same answer: see [`crate::flat_json`]).
pub(crate) fn header(json: &[u8]) -> Result<UnverifiedHeader<'_>, Rejection> {
    if let Some(header) = flat_header(json) {
        return Ok(header);
    }
    serde_json::from_slice(json).map_err(|e| Rejection::BadHeader {
        detail: e.to_string(),
    })
}

fn flat_header(json: &[u8]) -> Option<UnverifiedHeader<'_>> {
    use crate::flat_json::{Scalar, members, once};
    let (mut alg, mut kid) = (None, None);
    members(json, |name, value| match (name, value) {
        (b"alg", Scalar::Str(s)) => once(&mut alg, s),
        (b"kid", Scalar::Str(s)) => once(&mut kid, s),
        (b"alg" | b"kid" | b"crit", _) => None,
        _ => Some(()),
    })?;
    Some(UnverifiedHeader {
        alg: Cow::Borrowed(alg?),
        kid: kid.map(Cow::Borrowed),
        crit: false,
    })
}

/// The claims, untrusted until the signature verifies: borrowed from the
/// decoded payload when the flat reader took them, so that nothing is
/// allocated for a token refused before or by its signature; serde_json's
/// owned claims otherwise (an escape, an extra claim, an array `aud`).
pub(crate) enum UnverifiedClaims<'a> {
    Flat(FlatClaims<'a>),
    Parsed(Claims),
}

/// A flat payload's known claims, borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FlatClaims<'a> {
    app_id: &'a str,
    exp: i64,
    iat: i64,
    nbf: Option<i64>,
    jti: Option<&'a str>,
    aud: Option<&'a str>,
    iss: Option<&'a str>,
}

impl FlatClaims<'_> {
    /// The owned claims, as serde_json would have read them.
    pub(crate) fn to_claims(self) -> Claims {
        Claims {
            app_id: self.app_id.to_owned(),
            exp: self.exp,
            iat: self.iat,
            nbf: self.nbf,
            jti: self.jti.map(str::to_owned),
            aud: self.aud.map(|a| crate::Audience::One(a.to_owned())),
            iss: self.iss.map(str::to_owned),
            extra: serde_json::Map::new(),
        }
    }
}

impl UnverifiedClaims<'_> {
    /// The owned claims, for a token whose signature verified.
    pub(crate) fn into_claims(self) -> Claims {
        match self {
            Self::Flat(flat) => flat.to_claims(),
            Self::Parsed(claims) => claims,
        }
    }
}

/// The claims the time and audience rules read, from whichever form holds
/// them.
pub(crate) trait TimeClaims {
    fn app_id(&self) -> &str;
    fn exp(&self) -> i64;
    fn iat(&self) -> i64;
    fn nbf(&self) -> Option<i64>;
    fn names_audience(&self, wanted: &str) -> bool;
}

impl TimeClaims for Claims {
    fn app_id(&self) -> &str {
        &self.app_id
    }
    fn exp(&self) -> i64 {
        self.exp
    }
    fn iat(&self) -> i64 {
        self.iat
    }
    fn nbf(&self) -> Option<i64> {
        self.nbf
    }
    fn names_audience(&self, wanted: &str) -> bool {
        self.aud.as_ref().is_some_and(|a| a.contains(wanted))
    }
}

impl TimeClaims for UnverifiedClaims<'_> {
    fn app_id(&self) -> &str {
        match self {
            Self::Flat(f) => f.app_id,
            Self::Parsed(c) => &c.app_id,
        }
    }
    fn exp(&self) -> i64 {
        match self {
            Self::Flat(f) => f.exp,
            Self::Parsed(c) => c.exp,
        }
    }
    fn iat(&self) -> i64 {
        match self {
            Self::Flat(f) => f.iat,
            Self::Parsed(c) => c.iat,
        }
    }
    fn nbf(&self) -> Option<i64> {
        match self {
            Self::Flat(f) => f.nbf,
            Self::Parsed(c) => c.nbf,
        }
    }
    fn names_audience(&self, wanted: &str) -> bool {
        match self {
            Self::Flat(f) => f.aud == Some(wanted),
            Self::Parsed(c) => c.names_audience(wanted),
        }
    }
}

/// Step 3's parse: the claims, untrusted until the signature verifies (a
/// payload of known claims as strings and integers without serde, the same
/// answer: see [`crate::flat_json`]).
pub(crate) fn claims(json: &[u8]) -> Result<UnverifiedClaims<'_>, Rejection> {
    if let Some(claims) = flat_claims(json) {
        return Ok(UnverifiedClaims::Flat(claims));
    }
    serde_json::from_slice(json)
        .map(UnverifiedClaims::Parsed)
        .map_err(|e| Rejection::BadClaims {
            detail: e.to_string(),
        })
}

fn flat_claims(json: &[u8]) -> Option<FlatClaims<'_>> {
    use crate::flat_json::{Scalar, members, once};
    let (mut app_id, mut exp, mut iat, mut nbf) = (None, None, None, None);
    let (mut jti, mut aud, mut iss) = (None, None, None);
    members(json, |name, value| match (name, value) {
        (b"appId", Scalar::Str(s)) => once(&mut app_id, s),
        (b"exp", Scalar::Int(n)) => once(&mut exp, n),
        (b"iat", Scalar::Int(n)) => once(&mut iat, n),
        (b"nbf", Scalar::Int(n)) => once(&mut nbf, n),
        (b"jti", Scalar::Str(s)) => once(&mut jti, s),
        (b"aud", Scalar::Str(s)) => once(&mut aud, s),
        (b"iss", Scalar::Str(s)) => once(&mut iss, s),
        // Another claim is kept as a JSON value, which serde_json makes.
        _ => None,
    })?;
    Some(FlatClaims {
        app_id: app_id?,
        exp: exp?,
        iat: iat?,
        nbf,
        jti,
        aud,
        iss,
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
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_decoder_takes_exactly_the_alphabet_in_every_place() {
        let mut buf = Vec::new();
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
            let c = char::from(b);
            for at in 0..4 {
                let mut quad = ['A'; 4];
                quad[at] = c;
                let text: String = quad.iter().collect();
                let decoded = decode_part("payload", text.as_bytes(), &mut buf);
                assert_eq!(decoded.is_ok(), expected, "byte {b:#04x} at {at}");
                // And on the stack, past a vector block.
                let long = format!("{}{text}", "A".repeat(40));
                let (mut stack, mut heap) = ([MaybeUninit::uninit(); 256], Vec::new());
                let small = decode_part_small("payload", long.as_bytes(), &mut stack, &mut heap);
                assert_eq!(
                    small.is_ok(),
                    expected,
                    "byte {b:#04x} at {at}, on the stack"
                );
            }
            // And in tails: of two characters, where any letter may lead,
            // and of three, where the last one's two low bits must be zero.
            let small = |text: &str| {
                let (mut stack, mut heap) = ([MaybeUninit::uninit(); 256], Vec::new());
                decode_part_small("payload", text.as_bytes(), &mut stack, &mut heap).is_ok()
            };
            let two = decode_part("payload", format!("{c}A").as_bytes(), &mut buf).is_ok();
            assert_eq!(two, expected, "byte {b:#04x} in a tail of two");
            assert_eq!(small(&format!("{}{c}A", "A".repeat(40))), expected);
            let three = decode_part("payload", format!("AA{c}").as_bytes(), &mut buf).is_ok();
            assert_eq!(
                small(&format!("{}AA{c}", "A".repeat(40))),
                three,
                "{b:#04x}"
            );
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let canonical = alphabet
                .iter()
                .position(|&a| a == b)
                .is_some_and(|i| i & 3 == 0);
            assert_eq!(three, canonical, "byte {b:#04x} in a tail of three");
        }
    }

    /// Member names and values the flat reader takes or leaves, with
    /// whitespace around them: any object they make reads the same through
    /// the flat reader as through serde_json, whenever the flat reader
    /// reads it at all.
    fn flat_object() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("alg"),
            Just("kid"),
            Just("crit"),
            Just("typ"),
            Just("appId"),
            Just("exp"),
            Just("iat"),
            Just("nbf"),
            Just("jti"),
            Just("aud"),
            Just("iss"),
            Just("x"),
            Just("a\\u006cg"),
            Just("ex\\u0070"),
        ];
        let value = prop_oneof![
            "\"[a-zA-Z0-9 .é-]{0,8}\"".prop_map(String::from),
            // Past a word or two of the string search, with a stop anywhere.
            "\"[a-z0-9é-]{0,20}[a\\\\\"\t\u{1}]?[a-z]{0,20}\"".prop_map(String::from),
            "\"[a\\\\\"\t]{0,3}\"".prop_map(String::from),
            (0i64..=i64::MAX).prop_map(|n| n.to_string()),
            prop_oneof![
                Just("-1"),
                Just("01"),
                Just("1.5"),
                Just("1e3"),
                Just("null"),
                Just("true"),
                Just("[\"x\"]"),
                Just("{}"),
                Just("9223372036854775808"),
                // Past a u64, and 19 nines (a u64, past i64::MAX).
                Just("99999999999999999999"),
                Just("9999999999999999999"),
                Just("-0"),
            ]
            .prop_map(String::from),
        ];
        let ws = prop_oneof![Just(""), Just(" "), Just("\n\t"), Just("\u{a0}")];
        proptest::collection::vec((name, ws.clone(), value, ws), 0..6).prop_map(|members| {
            let inner: Vec<String> = members
                .iter()
                .map(|(n, w1, v, w2)| format!("{w1}\"{n}\"{w2}:{w1}{v}{w2}"))
                .collect();
            format!("{{{}}}", inner.join(","))
        })
    }

    proptest::proptest! {
        // Against the base64 crate's strict engine, at every length up to a
        // 4096-bit signature's and past it, so each of the vector decoder's
        // block sizes and tails is crossed, with a stray byte anywhere: the
        // same bytes, or the same refusal.
        #[test]
        fn the_decoder_gives_the_base64_crates_answer(
            bytes in proptest::collection::vec(any::<u8>(), 0..700),
            stray in proptest::option::of((any::<proptest::sample::Index>(), prop_oneof![
                Just(b'='), Just(b'+'), Just(b'/'), Just(b'.'), Just(0u8), Just(0xC3u8), any::<u8>()
            ])),
            trailing in 0u8..4,
        ) {
            use base64::Engine as _;
            let mut text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes).into_bytes();
            if let Some((at, b)) = stray.filter(|_| !text.is_empty()) {
                let at = at.index(text.len());
                text[at] = b;
            }
            // Set bits after the last whole byte, when a tail has them.
            let has_tail = text.len() % 4 >= 2 && trailing > 0;
            if let Some(last) = text.last_mut().filter(|_| has_tail) {
                let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                if let Some(i) = alphabet.iter().position(|a| a == last) {
                    *last = alphabet[(i & !3) | usize::from(trailing)];
                }
            }
            let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&text).ok();
            let text = String::from_utf8_lossy(&text).into_owned();
            let mut buf = Vec::new();
            let ours = decode_part("payload", text.as_bytes(), &mut buf).ok().map(<[u8]>::to_vec);
            // A lossy replacement changes the text only where it was not
            // UTF-8, which neither decoder takes.
            let expected = expected.filter(|_| text.is_ascii());
            proptest::prop_assert_eq!(ours, expected, "{}", text);
            // Past 342 characters, the heap's road: both are crossed.
            let mut stack = [MaybeUninit::uninit(); 256];
            let mut heap = Vec::new();
            let small = decode_part_small("payload", text.as_bytes(), &mut stack, &mut heap).ok().map(<[u8]>::to_vec);
            proptest::prop_assert_eq!(small, decode_part("payload", text.as_bytes(), &mut buf).ok().map(<[u8]>::to_vec));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 8192, ..Default::default() })]

        #[test]
        fn the_flat_reader_gives_serde_jsons_answer(json in flat_object(), cut in 0usize..4) {
            // Also the object cut short (maybe inside a character) or with
            // a byte to spare.
            let mut json = json.into_bytes();
            match cut {
                1 => json.truncate(json.len() / 2),
                2 => json.push(b'x'),
                _ => {}
            }
            let shown = String::from_utf8_lossy(&json).into_owned();
            if let Some(flat) = flat_header(&json) {
                let serde: UnverifiedHeader<'_> = serde_json::from_slice(&json)
                    .unwrap_or_else(|e| panic!("{shown}: flat read it, serde_json says {e}"));
                proptest::prop_assert_eq!(
                    (&flat.alg, &flat.kid, flat.crit),
                    (&serde.alg, &serde.kid, serde.crit),
                    "{}", shown
                );
            }
            if let Some(flat) = flat_claims(&json).map(FlatClaims::to_claims) {
                let serde: Claims = serde_json::from_slice(&json)
                    .unwrap_or_else(|e| panic!("{shown}: flat read it, serde_json says {e}"));
                proptest::prop_assert_eq!(&flat, &serde, "{}", shown);
            }
        }
    }

    #[test]
    fn the_flat_reader_takes_what_signers_write() {
        let header = flat_header(br#"{"alg":"RS512","typ":"JWT","kid":"abc"}"#).unwrap();
        assert_eq!(
            (&*header.alg, header.kid.as_deref()),
            ("RS512", Some("abc"))
        );
        let claims =
            flat_claims(br#"{"appId":"billing","iat":1700000000,"exp":1700000300,"jti":"j"}"#)
                .unwrap()
                .to_claims();
        assert_eq!(
            (claims.app_id.as_str(), claims.exp, claims.jti.as_deref()),
            ("billing", 1700000300, Some("j"))
        );
        // A duplicate, a crit, an extra claim: serde_json's to answer.
        assert!(flat_header(br#"{"alg":"RS512","alg":"none"}"#).is_none());
        assert!(flat_header(br#"{"alg":"RS512","crit":"x"}"#).is_none());
        assert!(flat_claims(br#"{"appId":"a","iat":1,"exp":2,"role":"x"}"#).is_none());
        assert!(header_is_refused(br#"{"alg":"RS512","alg":"none"}"#));
    }

    fn header_is_refused(json: &[u8]) -> bool {
        header(json).is_err()
    }

    #[test]
    fn non_canonical_trailing_bits_are_refused() {
        let mut buf = Vec::new();
        // "AA" is one zero byte; "AB" would carry a set bit past it.
        assert_eq!(decode_part("payload", b"AA", &mut buf).unwrap(), [0]);
        assert!(decode_part("payload", b"AB", &mut buf).is_err());
        assert!(decode_part("payload", b"AAB", &mut buf).is_err());
        assert!(decode_part("payload", b"AAA", &mut buf).is_ok());
        assert!(decode_part("payload", b"A", &mut buf).is_err());
        assert!(decode_part("payload", b"AA==", &mut buf).is_err());
    }

    fn step_one(token: impl AsRef<[u8]>) -> Result<(), Rejection> {
        decode(token.as_ref(), &mut PartBuffers::new()).map(|_| ())
    }

    #[test]
    fn bytes_that_are_not_text_are_not_three_parts_whatever_else_is_wrong() {
        let mut too_long = b"aaaa.bbbb.".to_vec();
        too_long.resize(MAX_TOKEN_LEN + 4, b'c');
        too_long.push(0xff);
        for token in [
            &b"aaaa.bbbb.ccc\xff"[..],
            b"\xff",
            b"aaaa.bbbb.\xff",
            b"a\xffaa.bbbb.cccc",
            b"aaaa.\xfe\xff.cccc",
            b"aaaa.bbbb.\xc3",
            b"aaaa.bbbb.cccc.\xff",
            &too_long,
        ] {
            assert!(
                matches!(step_one(token), Err(Rejection::NotThreeParts)),
                "{token:?}"
            );
        }
        // Text that is not ASCII keeps the decoder's reason: a 'é' is two
        // bytes outside the alphabet, in a part of a length base64url has.
        assert!(matches!(
            step_one("aaaa.bbbb.cé"),
            Err(Rejection::BadBase64 { part: "signature" })
        ));
        too_long.pop();
        assert!(matches!(
            step_one(&too_long),
            Err(Rejection::TooLong { .. })
        ));
    }

    #[test]
    fn four_parts_are_not_three_whatever_else_is_wrong() {
        for token in [
            "a.b.c.d",
            "a.bbbb.cccc.dddd",
            "!.b.c.d",
            "aaaa..cccc.",
            "aaaa.bbbb.cc.cc",
            // Each part of a length base64url has, and all three decode
            // but for the dot: the decoder's refusal becomes this one.
            "aaaa.bbbb.cccc.ddd",
            "aaaa.bbbb.cc.c",
            "aaaa.bbbb.cccc.",
            "aaaa.bbbb..cccc",
            "a!aa.bbbb.cccc.dddd",
            "aaaa.b!bb.cccc.ddd",
        ] {
            assert!(
                matches!(step_one(token), Err(Rejection::NotThreeParts)),
                "{token}"
            );
        }
        for token in ["aaaa.bbbb", "aaaabbbb", ""] {
            assert!(matches!(step_one(token), Err(Rejection::NotThreeParts)));
        }
        assert!(matches!(
            step_one("aaaa.bbbbb.cccc"),
            Err(Rejection::BadBase64 { part: "payload" })
        ));
        assert!(matches!(
            step_one("aaaa.bbbb."),
            Err(Rejection::BadBase64 { part: "signature" })
        ));
        assert!(matches!(
            step_one("aaaa.b!bb.cccc"),
            Err(Rejection::BadBase64 { part: "payload" })
        ));
        assert!(step_one("aaaa.bbbb.cccc").is_ok());
        // The alphabet is the decoder's: split checks the shape only.
        assert!(split(b"aaaa.b!bb.cccc").is_ok());
        assert!(split(b"aaaa.bbbb.cccc").is_ok());
    }
}
