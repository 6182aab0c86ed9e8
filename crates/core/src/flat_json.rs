//! The flat JSON objects nearly every signer writes (a header of strings, a
//! payload of the known claims), read without serde: one object whose
//! members are strings with no escape or plain non-negative integers.
//!
//! Anything else is not read here: the reader answers `None`, and the
//! caller hands the bytes to serde_json. So for every input the answer is
//! serde_json's (a property test below checks it), and this is only a
//! shorter road to it: serde_json took about 2,900 instructions of a cold
//! request for the two small objects (docs/performance.md).

/// A member's value, as the reader takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scalar<'a> {
    /// A string with no escape and no control character.
    Str(&'a str),
    /// A non-negative integer within `i64`, with no fraction or exponent.
    Int(i64),
}

struct Cursor<'a> {
    /// The whole object, checked as UTF-8 once: each string is then a
    /// slice of it, with no check of its own (one check a string cost
    /// about 60 instructions, some 14 times a cold request).
    text: &'a str,
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    // Nearly always no whitespace at all: one test says so, as every JSON
    // whitespace byte is at most a space and every byte that may follow
    // one here is above it.
    #[inline(always)]
    fn ws(&mut self) {
        while let Some(&b) = self.s.get(self.i)
            && b <= b' '
            && matches!(b, b' ' | b'\t' | b'\n' | b'\r')
        {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.s.get(self.i) == Some(&b)).then(|| self.i += 1)
    }

    fn next(&mut self) -> Option<u8> {
        let b = *self.s.get(self.i)?;
        self.i += 1;
        Some(b)
    }

    /// A string with no escape: serde_json would have to decode one.
    // Inlined into both of its callers: a call to it cost about 30
    // instructions of saved registers, some 14 times a cold request.
    #[inline(always)]
    fn string(&mut self) -> Option<&'a str> {
        let start = self.i + 1;
        let len = self.bytes()?.len();
        // Between two quotes, so on character boundaries.
        self.text.get(start..start + len)
    }

    /// A string's bytes: what a member name is read as, since the callers
    /// compare names with the ones they know as bytes, with no
    /// character-boundary check (about 17 instructions a name).
    #[inline(always)]
    fn bytes(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        let rest = &self.s[start..];
        let len = string_len(rest)?;
        if rest[len] != b'"' {
            return None;
        }
        self.i += len + 1;
        Some(&rest[..len])
    }

    #[inline(always)]
    fn integer(&mut self) -> Option<i64> {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.s.get(self.i) {
            self.i += 1;
        }
        let digits = &self.s[start..self.i];
        // JSON has no leading zeros; a fraction or an exponent makes it a
        // float, which serde_json reads its own way. 19 digits always fit
        // a u64 (a 20th is past i64::MAX, for serde_json to read), so they
        // are added up without a check a digit.
        if digits.is_empty()
            || digits.len() > 19
            || (digits.len() > 1 && digits[0] == b'0')
            || matches!(self.s.get(self.i), Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        let n = digits
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        i64::try_from(n).ok()
    }
}

/// Where the string that starts `rest` stops: at its first `"`, `\` or
/// control character. Eight bytes a turn, by the word tricks of "Bit
/// Twiddling Hacks" (has a zero byte, has a byte less than n), whose lowest
/// flagged byte is always a true one: a kid is 43 bytes, where a vector
/// search costs more to set up than it saves.
fn string_len(rest: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let zero = |v: u64| v.wrapping_sub(ONES) & !v;
    let (words, tail) = rest.as_chunks::<8>();
    for (n, word) in words.iter().enumerate() {
        let x = u64::from_le_bytes(*word);
        let hit = (zero(x ^ (ONES * u64::from(b'"')))
            | zero(x ^ (ONES * u64::from(b'\\')))
            | (x.wrapping_sub(ONES * 0x20) & !x))
            & HIGH;
        if hit != 0 {
            return Some(n * 8 + (hit.trailing_zeros() / 8) as usize);
        }
    }
    let at = tail
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    Some(words.len() * 8 + at)
}

/// Calls `member` with each member of the flat object `json`, in order:
/// `None` as soon as anything falls outside the subset, or `member` says
/// `None`.
pub(crate) fn members<'a>(
    json: &'a [u8],
    mut member: impl FnMut(&'a [u8], Scalar<'a>) -> Option<()>,
) -> Option<()> {
    let text = simdutf8::basic::from_utf8(json).ok()?;
    let mut c = Cursor {
        text,
        s: json,
        i: 0,
    };
    c.ws();
    c.eat(b'{')?;
    c.ws();
    if c.eat(b'}').is_none() {
        loop {
            let name = c.bytes()?;
            c.ws();
            c.eat(b':')?;
            c.ws();
            let value = match c.s.get(c.i)? {
                b'"' => Scalar::Str(c.string()?),
                b'0'..=b'9' => Scalar::Int(c.integer()?),
                _ => return None,
            };
            member(name, value)?;
            c.ws();
            match c.next()? {
                b',' => c.ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    c.ws();
    (c.i == json.len()).then_some(())
}

/// Fills `slot` once: a name given twice is serde_json's to refuse.
pub(crate) fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    slot.replace(value).is_none().then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(json: &str) -> Option<Vec<(String, Scalar<'_>)>> {
        let mut out = Vec::new();
        members(json.as_bytes(), |n, v| {
            out.push((String::from_utf8(n.to_vec()).unwrap(), v));
            Some(())
        })
        .map(|()| out)
    }

    #[test]
    fn reads_the_flat_objects_signers_write() {
        assert_eq!(
            all(r#"{"alg":"RS512","typ":"JWT"}"#).unwrap(),
            [
                ("alg".into(), Scalar::Str("RS512")),
                ("typ".into(), Scalar::Str("JWT"))
            ]
        );
        assert_eq!(
            all(" {\n \"exp\" : 1700000300 ,\t\"iat\":0}\r\n").unwrap(),
            [
                ("exp".into(), Scalar::Int(1_700_000_300)),
                ("iat".into(), Scalar::Int(0))
            ]
        );
        assert_eq!(all("{}").unwrap(), []);
        assert_eq!(
            all(r#"{"é":"ü"}"#).unwrap(),
            [("é".into(), Scalar::Str("ü"))]
        );
    }

    #[test]
    fn a_string_stops_at_its_first_quote_backslash_or_control_character() {
        let plain = b"abcdefghijklmnopqrstuvwxyz0123456789-_.~ \x7f\xc3\xa9";
        for len in 0..plain.len() {
            for stop in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                let mut s = plain[..len].to_vec();
                s.push(stop);
                s.extend_from_slice(b"\"more\\");
                assert_eq!(string_len(&s), Some(len), "{s:?}");
            }
            assert_eq!(string_len(&plain[..len]), None);
        }
        // A byte above the first flagged one never moves the answer.
        assert_eq!(string_len(b"ab\"\x00\x00\x00\x00\x00\"\""), Some(2));
        assert_eq!(string_len(b"\x20\x21\x7f\x80\xff\x1f"), Some(5));
    }

    #[test]
    fn leaves_everything_else_to_serde_json() {
        for json in [
            r#"{"a":"\u0041"}"#,
            r#"{"a\"b":"c"}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":-1}"#,
            r#"{"a":01}"#,
            r#"{"a":1.5}"#,
            r#"{"a":1e3}"#,
            r#"{"a":9223372036854775808}"#,
            r#"{"a":null}"#,
            r#"{"a":true}"#,
            r#"{"a":["x"]}"#,
            r#"{"a":{"b":1}}"#,
            r#"{"a":"b",}"#,
            r#"{"a":"b"} x"#,
            r#"{"a":"b""#,
            r#"["a"]"#,
            "\u{feff}{}",
            "",
        ] {
            assert_eq!(all(json), None, "{json}");
        }
        assert_eq!(members(b"{\"a\":\"\xff\"}", |_, _| Some(())), None);
    }
}
