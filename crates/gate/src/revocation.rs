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

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use appauth_core::{AppId, Kid, Verified};

/// One revocation rule, checked: what a line of the file says, what Redis
/// stores and what replicas tell each other. Its [`fmt::Display`] is its one
/// spelling (no comment, single spaces, times in UTC), so a lift matches its
/// revoke however either was typed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// `jti <token id>`: one token.
    Jti(String),
    /// `app <appId> before <RFC 3339 time>`: every token of the app issued
    /// (`iat`) before then, as seconds since the epoch.
    AppBefore {
        /// The app.
        app: AppId,
        /// The cut-off.
        before: i64,
    },
    /// `kid <thumbprint>`: every token signed by that key.
    Kid(String),
    /// `app <appId>`: every token of the app, now and later.
    App(AppId),
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Jti(jti) => write!(f, "jti {jti}"),
            Self::AppBefore { app, before } => match jiff::Timestamp::from_second(*before) {
                Ok(t) => write!(f, "app {app} before {t}"),
                Err(_) => write!(f, "app {app} before {before}"),
            },
            Self::Kid(kid) => write!(f, "kid {kid}"),
            Self::App(app) => write!(f, "app {app}"),
        }
    }
}

/// One rule from one line, which must hold exactly one (a comment may
/// follow it).
impl FromStr for Rule {
    type Err = String;

    fn from_str(line: &str) -> Result<Self, String> {
        if line.contains(['\n', '\r']) {
            return Err("one rule at a time: the rule spans several lines".into());
        }
        match parse_rule("the rule", 1, line) {
            Ok(Some(rule)) => Ok(rule),
            Ok(None) => Err("the rule is empty; give one line such as 'jti <id>', \
                 'kid <thumbprint>', 'app <appId> before <RFC 3339 time>' or 'app <appId>'"
                .into()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A parsed revocation list.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RevocationList {
    jtis: crate::FastSet<String>,
    /// Every cut-off of each app: the latest is the one in force, and a
    /// lifted one leaves the others.
    apps_before: crate::FastMap<AppId, BTreeSet<i64>>,
    kids: crate::FastSet<String>,
    apps_blocked: crate::FastSet<AppId>,
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
            match parse_rule(file, i + 1, raw) {
                Ok(Some(rule)) => list.insert(rule),
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(list)
        } else {
            Err(errors)
        }
    }

    /// A list of exactly these rules.
    pub fn from_rules<'a>(rules: impl IntoIterator<Item = &'a Rule>) -> Self {
        let mut list = Self::default();
        for rule in rules {
            list.insert(rule.clone());
        }
        list
    }

    /// Puts `rule` in force.
    pub fn insert(&mut self, rule: Rule) {
        match rule {
            Rule::Jti(jti) => {
                self.jtis.insert(jti);
            }
            Rule::AppBefore { app, before } => {
                self.apps_before.entry(app).or_default().insert(before);
            }
            Rule::Kid(kid) => {
                self.kids.insert(kid);
            }
            Rule::App(app) => {
                self.apps_blocked.insert(app);
            }
        }
    }

    /// Lifts `rule`; whether it was in force.
    pub fn remove(&mut self, rule: &Rule) -> bool {
        match rule {
            Rule::Jti(jti) => self.jtis.remove(jti),
            Rule::AppBefore { app, before } => {
                let Some(cutoffs) = self.apps_before.get_mut(app) else {
                    return false;
                };
                let removed = cutoffs.remove(before);
                if cutoffs.is_empty() {
                    self.apps_before.remove(app);
                }
                removed
            }
            Rule::Kid(kid) => self.kids.remove(kid),
            Rule::App(app) => self.apps_blocked.remove(app),
        }
    }

    /// Whether `token` is revoked, and by which rule.
    pub fn check(&self, token: &Verified) -> Option<RevokedBy> {
        if let Some(jti) = &token.claims.jti
            && self.jtis.contains(jti)
        {
            return Some(RevokedBy::Jti);
        }
        // Two rules for one app: the later cut-off revokes more.
        if let Some(&before) = self.apps_before.get(&token.app_id).and_then(|c| c.last())
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
        let cutoffs: usize = self.apps_before.values().map(BTreeSet::len).sum();
        self.jtis.len() + cutoffs + self.kids.len() + self.apps_blocked.len()
    }

    /// Whether no rule is in force.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The rule on one line of a revocation file, `None` for a blank or
/// comment-only line.
fn parse_rule(file: &str, line_no: usize, raw: &str) -> Result<Option<Rule>, ConfigError> {
    let line = uncommented(raw);
    let err = |column: usize, message: String| ConfigError {
        file: file.to_owned(),
        line: line_no,
        column,
        message,
    };
    let words: Vec<(usize, &str)> = words(line);
    let Some(&(col, verb)) = words.first() else {
        return Ok(None);
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
            Ok(Some(Rule::Jti(jti.to_owned())))
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
            Ok(Some(Rule::Kid(kid.to_owned())))
        }
        "app" => {
            let app = arg(1, "an appId")?;
            let app = AppId::new(app).map_err(|e| err(words[1].0 + 1, e.to_string()))?;
            let Some(&(before_col, before)) = words.get(2) else {
                return Ok(Some(Rule::App(app)));
            };
            if before != "before" {
                return Err(err(
                    before_col + 1,
                    format!("expected \"before <RFC 3339 time>\" or nothing, found \"{before}\""),
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
            Ok(Some(Rule::AppBefore {
                app,
                before: ts.as_second(),
            }))
        }
        other => Err(err(
            col + 1,
            format!("unknown rule \"{other}\": expected jti, app or kid"),
        )),
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
    fn a_list_changes_one_rule_at_a_time() {
        let mut list = RevocationList::parse("t", "app a before 2026-01-01T00:00:00Z\n").unwrap();
        let later: Rule = "app a before 2026-06-01T00:00:00Z".parse().unwrap();
        list.insert(later.clone());
        assert_eq!(list.len(), 2);
        // Lifting the later cut-off leaves the earlier one in force.
        assert!(list.remove(&later));
        assert!(!list.remove(&later));
        assert_eq!(list.len(), 1);
        let again =
            RevocationList::from_rules(&["app a before 2026-01-01T00:00:00Z".parse().unwrap()]);
        assert_eq!(list, again);
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
