//! The one form a request path must have before the gate judges it.
//!
//! The policy matches the path as sent, and the gateway forwards it as sent.
//! That is safe only if no server behind us can read the same bytes as
//! another route: Tomcat and Spring drop `;parameters` (so `/public/..;/admin`
//! is `/admin` to them), some servers decode twice (`%252e%252e`), merge
//! slashes, treat `\` as `/`, or accept overlong UTF-8 for `.`. Rather than
//! guess how each one normalizes, the gate refuses every path that is not
//! already in one canonical form, so that what the policy judged is what the
//! upstream receives.

use std::fmt;

/// Why a path is not canonical. The caller sees only `path_not_canonical`;
/// this goes to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathProblem {
    /// Does not start with `/`.
    NotAbsolute,
    /// `//` inside the path (a single trailing `/` is fine).
    EmptySegment,
    /// A `.` or `..` segment, also with `;parameters` or encoded.
    DotSegment,
    /// A raw `\`, or `/` or `\` percent-encoded.
    Separator,
    /// `%25`: a percent-encoded `%`, the start of a double encoding.
    EncodedPercent,
    /// A character that needs no encoding was encoded (`%2e`, `%41`).
    EncodedUnreserved,
    /// A control character (NUL, CR, LF, ...), raw or encoded.
    Control,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// The decoded bytes are not UTF-8 (overlong forms such as `%c0%ae`
    /// included), or a raw byte is not ASCII.
    NotUtf8,
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotAbsolute => "the path does not start with '/'",
            Self::EmptySegment => "the path has an empty segment ('//')",
            Self::DotSegment => "the path has a '.' or '..' segment",
            Self::Separator => "the path has a backslash or an encoded separator",
            Self::EncodedPercent => "the path has an encoded '%' (double encoding)",
            Self::EncodedUnreserved => "the path encodes a character that needs no encoding",
            Self::Control => "the path has a control character",
            Self::BadEscape => "the path has a '%' not followed by two hex digits",
            Self::NotUtf8 => "the path does not decode to UTF-8",
        })
    }
}

/// Checks that `path` (the raw request path, without the query) is
/// canonical. Allocates only for a segment that has percent escapes.
pub fn check(path: &str) -> Result<(), PathProblem> {
    let rest = path.strip_prefix('/').ok_or(PathProblem::NotAbsolute)?;
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        if segment.is_empty() {
            if segments.peek().is_some() {
                return Err(PathProblem::EmptySegment);
            }
            continue;
        }
        check_segment(segment)?;
    }
    Ok(())
}

fn check_segment(segment: &str) -> Result<(), PathProblem> {
    for b in segment.bytes() {
        match b {
            b'\\' => return Err(PathProblem::Separator),
            0..=0x1f | 0x7f => return Err(PathProblem::Control),
            0x80.. => return Err(PathProblem::NotUtf8),
            _ => {}
        }
    }
    if !segment.contains('%') {
        return dot_free(segment.as_bytes());
    }
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            decoded.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = |j: usize| {
            bytes
                .get(j)
                .and_then(|&c| (c as char).to_digit(16))
                .ok_or(PathProblem::BadEscape)
        };
        let b = (hex(i + 1)? * 16 + hex(i + 2)?) as u8;
        match b {
            b'%' => return Err(PathProblem::EncodedPercent),
            b'/' | b'\\' => return Err(PathProblem::Separator),
            0..=0x1f | 0x7f => return Err(PathProblem::Control),
            b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
                return Err(PathProblem::EncodedUnreserved);
            }
            _ => decoded.push(b),
        }
        i += 3;
    }
    std::str::from_utf8(&decoded).map_err(|_| PathProblem::NotUtf8)?;
    dot_free(&decoded)
}

/// A segment is a dot segment when what precedes its first `;` is `.` or
/// `..`: servers that strip path parameters would resolve it.
fn dot_free(segment: &[u8]) -> Result<(), PathProblem> {
    let name = segment.split(|&b| b == b';').next().unwrap_or_default();
    match name {
        b"." | b".." => Err(PathProblem::DotSegment),
        _ => Ok(()),
    }
}

/// The segments a route pattern is matched against: a single trailing `/`
/// names the same route as none (`/users/` is `/users`). Call on a path that
/// passed [`check`].
pub fn segments(path: &str) -> Vec<&str> {
    let rest = path.trim_start_matches('/');
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/').collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_pass() {
        for ok in [
            "/",
            "/users",
            "/users/",
            "/users/42",
            "/a%20b/c",
            "/caf%C3%A9",
            "/orders;v=2/7",
            "/a.b/.well-known/x..y",
            "/~user/-_",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn every_other_route_in_disguise_is_refused() {
        use PathProblem::*;
        for (path, why) in [
            ("users", NotAbsolute),
            ("*", NotAbsolute),
            ("//admin", EmptySegment),
            ("/public//admin", EmptySegment),
            ("/../admin", DotSegment),
            ("/public/..", DotSegment),
            ("/public/./x", DotSegment),
            ("/public/..;/admin", DotSegment),
            ("/public/..;jsessionid=1/admin", DotSegment),
            ("/public/.;/admin", DotSegment),
            ("/public/..%3b/admin", DotSegment),
            ("/public/..%3B/admin", DotSegment),
            ("/public/%2e%2e/admin", EncodedUnreserved),
            ("/public/%2E./admin", EncodedUnreserved),
            ("/public/%252e%252e/admin", EncodedPercent),
            ("/public/%2fadmin", Separator),
            ("/public/%5cadmin", Separator),
            ("/public\\..\\admin", Separator),
            ("/public/%00", Control),
            ("/public/%0d%0a", Control),
            ("/public/%c0%ae%c0%ae/admin", NotUtf8),
            ("/public/%e0%80%ae", NotUtf8),
            ("/public/%zz", BadEscape),
            ("/public/%2", BadEscape),
            ("/p%41th", EncodedUnreserved),
        ] {
            assert_eq!(check(path), Err(why), "{path}");
        }
    }

    #[test]
    fn a_trailing_slash_names_the_same_route() {
        assert_eq!(segments("/users/"), vec!["users"]);
        assert_eq!(segments("/users"), vec!["users"]);
        assert_eq!(segments("/"), Vec::<&str>::new());
        assert_eq!(segments("/a/b"), vec!["a", "b"]);
    }
}
