//! The revocation list: `revoked.txt`, one rule a line.
//!
//! ```text
//! jti  <token id>                       # one token
//! app  <appId> before <RFC 3339 time>   # every token of the app issued before then
//! kid  <thumbprint>                     # every token signed by that key
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;

use appauth_core::{AppId, Kid, Verified};

/// A parsed revocation list.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RevocationList {
    jtis: HashSet<String>,
    apps_before: HashMap<AppId, i64>,
    kids: HashSet<String>,
}

/// A line of a policy or revocation file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong and what is expected.
    pub message: String,
}

/// Which rule revoked a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokedBy {
    /// `jti <id>`.
    Jti,
    /// `app <appId> before <time>`.
    AppBefore,
    /// `kid <thumbprint>`.
    Kid,
}

impl RevokedBy {
    /// The rule's verb, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jti => "jti",
            Self::AppBefore => "app before",
            Self::Kid => "kid",
        }
    }
}

impl fmt::Display for RevokedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RevocationList {
    /// Parses the text of a revocation file; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, ConfigError> {
        let mut list = Self::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("");
            let err = |column: usize, message: String| ConfigError {
                file: file.to_owned(),
                line: i + 1,
                column,
                message,
            };
            let words: Vec<(usize, &str)> = words(line);
            let Some(&(col, verb)) = words.first() else {
                continue;
            };
            let arg = |n: usize, what: &str| {
                words.get(n).map(|&(_, w)| w).ok_or_else(|| {
                    err(
                        line.trim_end().len() + 1,
                        format!("expected {what} after \"{verb}\""),
                    )
                })
            };
            let extra = |n: usize| match words.get(n) {
                Some(&(c, w)) => Err(err(
                    c + 1,
                    format!("unexpected \"{w}\" at the end of the rule"),
                )),
                None => Ok(()),
            };
            match verb {
                "jti" => {
                    list.jtis.insert(arg(1, "a token id")?.to_owned());
                    extra(2)?;
                }
                "kid" => {
                    let kid = arg(1, "a key thumbprint")?;
                    if Kid::parse(kid).is_none() {
                        return Err(err(
                            words[1].0 + 1,
                            format!("\"{kid}\" is not a key thumbprint (43 base64url characters)"),
                        ));
                    }
                    list.kids.insert(kid.to_owned());
                    extra(2)?;
                }
                "app" => {
                    let app = arg(1, "an appId")?;
                    let app = AppId::new(app).map_err(|e| err(words[1].0 + 1, e.to_string()))?;
                    let before = arg(2, "\"before <RFC 3339 time>\"")?;
                    if before != "before" {
                        return Err(err(
                            words[2].0 + 1,
                            format!("expected \"before\", found \"{before}\""),
                        ));
                    }
                    let when = arg(3, "an RFC 3339 time such as 2026-01-31T12:00:00Z")?;
                    let ts: jiff::Timestamp = when.parse().map_err(|e| {
                        err(
                            words[3].0 + 1,
                            format!("\"{when}\" is not an RFC 3339 time such as 2026-01-31T12:00:00Z ({e})"),
                        )
                    })?;
                    extra(4)?;
                    let t = ts.as_second();
                    // Two rules for one app: the later cut-off revokes more.
                    let entry = list.apps_before.entry(app).or_insert(t);
                    *entry = (*entry).max(t);
                }
                other => {
                    return Err(err(
                        col + 1,
                        format!("unknown rule \"{other}\": expected jti, app or kid"),
                    ));
                }
            }
        }
        Ok(list)
    }

    /// Whether `token` is revoked, and by which rule.
    pub fn check(&self, token: &Verified) -> Option<RevokedBy> {
        if let Some(jti) = &token.claims.jti
            && self.jtis.contains(jti)
        {
            return Some(RevokedBy::Jti);
        }
        if let Some(&before) = self.apps_before.get(&token.app_id)
            && token.claims.iat < before
        {
            return Some(RevokedBy::AppBefore);
        }
        if self.kids.contains(token.kid.as_str()) {
            return Some(RevokedBy::Kid);
        }
        None
    }

    /// How many rules are in force.
    pub fn len(&self) -> usize {
        self.jtis.len() + self.apps_before.len() + self.kids.len()
    }

    /// Whether no rule is in force.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whitespace-separated words with their 0-based byte columns.
fn words(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s, &line[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &line[s..]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KID: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

    #[test]
    fn parses_every_rule_with_comments() {
        let text = format!(
            "# revoked tokens\n\njti  abc-123   # leaked in a log\napp  billing before 2026-01-31T12:00:00Z\nkid {KID}\n"
        );
        let list = RevocationList::parse("revoked.txt", &text).unwrap();
        assert_eq!(list.len(), 3);
    }

    #[test]
    fn errors_name_file_line_column_and_what_is_expected() {
        let cases = [
            (
                "deny abc",
                "revoked.txt:1:1: unknown rule \"deny\": expected jti, app or kid",
            ),
            (
                "\n  app billing before yesterday",
                "revoked.txt:2:22: \"yesterday\" is not an RFC 3339 time",
            ),
            (
                "app billing after 2026-01-01T00:00:00Z",
                "revoked.txt:1:13: expected \"before\"",
            ),
            (
                "app ../x before 2026-01-01T00:00:00Z",
                "revoked.txt:1:5: invalid appId",
            ),
            (
                "kid short",
                "revoked.txt:1:5: \"short\" is not a key thumbprint",
            ),
            ("jti", "revoked.txt:1:4: expected a token id after \"jti\""),
            ("jti a b", "revoked.txt:1:7: unexpected \"b\""),
        ];
        for (text, expected) in cases {
            let err = RevocationList::parse("revoked.txt", text)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(expected), "{text:?}: {err}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_revocation_text_never_panics(text in "(.{0,60}\n){0,8}") {
            let _ = RevocationList::parse("revoked.txt", &text);
        }

        #[test]
        fn rule_shaped_lines_never_panic(
            verb in "(jti|app|kid|x)", a in "[ -~]{0,50}", b in "[ -~]{0,30}", c in "[ -~]{0,30}",
        ) {
            let line = format!("{verb} {a} {b} {c}");
            if let Err(e) = RevocationList::parse("r.txt", &line) {
                proptest::prop_assert!(e.line == 1 && e.column >= 1 && e.column <= line.len() + 1, "{e}");
            }
        }
    }
}
