//! The revocation list: `revoked.txt`, one rule a line.
//!
//! ```text
//! jti  <token id>                       # one token
//! app  <appId> before <RFC 3339 time>   # every token of the app issued before then
//! kid  <thumbprint>                     # every token signed by that key
//! app  <appId>                          # every token of the app, now and later
//! ```
//!
//! `app ... before` ends the sessions that exist; it does not stop a leaked
//! private key, whose holder signs fresh tokens. A `kid` rule (or retiring
//! the key from the bundle) stops the key; `app <appId>` stops the app.

use std::collections::{HashMap, HashSet};
use std::fmt;

use appauth_core::{AppId, Kid, Verified};

/// A parsed revocation list.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RevocationList {
    jtis: HashSet<String>,
    apps_before: HashMap<AppId, i64>,
    kids: HashSet<String>,
    apps_blocked: HashSet<AppId>,
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

/// Problems on one line, `; `-separated, for a log line or an error.
pub(crate) fn joined<E: std::fmt::Display>(errors: &[E]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// One rule in one spelling (no comment, single spaces), checked as the
/// file's parser checks it; `None` for a blank or comment-only line. Redis
/// stores rules this way, so a lift matches its revoke however either was
/// typed.
pub fn canonical_rule(line: &str) -> Result<Option<String>, Vec<ConfigError>> {
    RevocationList::parse("the rule", line)?;
    let words: Vec<&str> = words(uncommented(line))
        .into_iter()
        .map(|(_, w)| w)
        .collect();
    Ok((!words.is_empty()).then(|| words.join(" ")))
}

/// A line without its `#` comment.
fn uncommented(raw: &str) -> &str {
    raw.split('#').next().unwrap_or("")
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
    /// `app <appId>`.
    App,
}

impl RevokedBy {
    /// The rule's verb, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jti => "jti",
            Self::AppBefore => "app before",
            Self::Kid => "kid",
            Self::App => "app",
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
    /// Every bad line is reported, not only the first.
    pub fn parse(file: &str, text: &str) -> Result<Self, Vec<ConfigError>> {
        let mut list = Self::default();
        let mut errors = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            if let Err(e) = list.parse_line(file, i + 1, raw) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(list)
        } else {
            Err(errors)
        }
    }

    fn parse_line(&mut self, file: &str, line_no: usize, raw: &str) -> Result<(), ConfigError> {
        let line = uncommented(raw);
        let err = |column: usize, message: String| ConfigError {
            file: file.to_owned(),
            line: line_no,
            column,
            message,
        };
        let words: Vec<(usize, &str)> = words(line);
        let Some(&(col, verb)) = words.first() else {
            return Ok(());
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
                let jti = arg(1, "a token id")?;
                extra(2)?;
                self.jtis.insert(jti.to_owned());
            }
            "kid" => {
                let kid = arg(1, "a key thumbprint")?;
                if Kid::parse(kid).is_none() {
                    return Err(err(
                        words[1].0 + 1,
                        format!("\"{kid}\" is not a key thumbprint (43 base64url characters)"),
                    ));
                }
                extra(2)?;
                self.kids.insert(kid.to_owned());
            }
            "app" => {
                let app = arg(1, "an appId")?;
                let app = AppId::new(app).map_err(|e| err(words[1].0 + 1, e.to_string()))?;
                let Some(&(before_col, before)) = words.get(2) else {
                    self.apps_blocked.insert(app);
                    return Ok(());
                };
                if before != "before" {
                    return Err(err(
                        before_col + 1,
                        format!(
                            "expected \"before <RFC 3339 time>\" or nothing, found \"{before}\""
                        ),
                    ));
                }
                let when = arg(3, "an RFC 3339 time such as 2026-01-31T12:00:00Z")?;
                let ts: jiff::Timestamp = when.parse().map_err(|e| {
                    err(
                        words[3].0 + 1,
                        format!(
                            "\"{when}\" is not an RFC 3339 time such as 2026-01-31T12:00:00Z ({e})"
                        ),
                    )
                })?;
                extra(4)?;
                let t = ts.as_second();
                // Two rules for one app: the later cut-off revokes more.
                let entry = self.apps_before.entry(app).or_insert(t);
                *entry = (*entry).max(t);
            }
            other => {
                return Err(err(
                    col + 1,
                    format!("unknown rule \"{other}\": expected jti, app or kid"),
                ));
            }
        }
        Ok(())
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
        if self.apps_blocked.contains(&token.app_id) {
            return Some(RevokedBy::App);
        }
        None
    }

    /// How many rules are in force.
    pub fn len(&self) -> usize {
        self.jtis.len() + self.apps_before.len() + self.kids.len() + self.apps_blocked.len()
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
            "# revoked tokens\n\njti  abc-123   # leaked in a log\napp  billing before 2026-01-31T12:00:00Z\nkid {KID}\napp leaked-app\n"
        );
        let list = RevocationList::parse("revoked.txt", &text).unwrap();
        assert_eq!(list.len(), 4);
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
                "revoked.txt:1:13: expected \"before <RFC 3339 time>\" or nothing",
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
            let err = RevocationList::parse("revoked.txt", text).unwrap_err()[0].to_string();
            assert!(err.starts_with(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn every_bad_line_is_reported() {
        let errors =
            RevocationList::parse("revoked.txt", "jti ok\ndeny x\nkid short\napp a before\n")
                .unwrap_err();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 4], "{errors:?}");
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
            if let Err(errors) = RevocationList::parse("r.txt", &line) {
                let e = &errors[0];
                proptest::prop_assert!(e.line == 1 && e.column >= 1 && e.column <= line.len() + 1, "{e}");
            }
        }
    }
}
