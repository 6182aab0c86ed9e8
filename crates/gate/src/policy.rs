//! The authorization policy: which app may call which route, and how fast.
//!
//! ```toml
//! [default]
//! allow = ["GET /users"]
//! rate = "50/s"
//!
//! [apps."kjh2-vt23-s23t-poq2-xsw8-p09o-qw12"]
//! allow = ["GET /users", "GET /users/*", "POST /orders"]
//! rate = "500/s"
//! concurrency = 128
//! ```
//!
//! An app's own table replaces the default's `allow`, `rate` and
//! `concurrency` where it sets them. `concurrency` bounds the requests of one
//! app a gateway holds upstream at once (default
//! [`DEFAULT_CONCURRENCY`](crate::DEFAULT_CONCURRENCY)). Patterns are `METHOD /path`: `*` matches one path segment, a trailing
//! `/**` one or more further segments, `*` as the method any method, and `*`
//! alone everything. A single trailing `/` in a request names the same route
//! as none (`GET /users/` matches `GET /users`).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::ops::Range;
use std::time::Duration;

use appauth_core::AppId;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use toml::Spanned;

use crate::revocation::ConfigError;
use crate::route_pattern::RoutePattern;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    default: Option<RulesFile>,
    #[serde(default)]
    apps: HashMap<Spanned<String>, RulesFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    allow: Option<Vec<Spanned<String>>>,
    rate: Option<Spanned<String>>,
    concurrency: Option<Spanned<i64>>,
}

/// A request rate: `N/s` or `N/m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: NonZeroU32,
    per_minute: bool,
}

impl Rate {
    /// Parses `N/s` or `N/m` with N at least 1.
    pub fn parse(s: &str) -> Result<Self, String> {
        let expected = "expected a rate such as \"50/s\" or \"600/m\"";
        let (n, unit) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("\"{s}\": {expected}"))?;
        let n: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("\"{s}\": {expected}"))?;
        let count =
            NonZeroU32::new(n).ok_or_else(|| format!("\"{s}\": a rate must be at least 1"))?;
        let per_minute = match unit.trim() {
            "s" => false,
            "m" => true,
            _ => return Err(format!("\"{s}\": the unit must be s or m; {expected}")),
        };
        Ok(Self { count, per_minute })
    }

    /// The burst: a full bucket holds `count` requests.
    pub fn burst(self) -> u32 {
        self.count.get()
    }

    /// The time between two requests at the steady rate.
    pub fn emission_interval(self) -> Duration {
        let period = if self.per_minute { 60 } else { 1 };
        Duration::from_secs(period) / self.count.get()
    }

    /// Requests per second at the steady rate.
    pub fn per_second(self) -> f64 {
        f64::from(self.count.get()) / if self.per_minute { 60.0 } else { 1.0 }
    }

    /// This rate times `share` (at least 1 request per period), for a
    /// replica that enforces its share of a global limit on its own.
    pub fn scaled(self, share: f64) -> Self {
        let n = (f64::from(self.count.get()) * share)
            .ceil()
            .clamp(1.0, f64::from(u32::MAX));
        Self {
            count: NonZeroU32::new(n as u32).unwrap_or(NonZeroU32::MIN),
            per_minute: self.per_minute,
        }
    }

    fn quota(self) -> Quota {
        if self.per_minute {
            Quota::per_minute(self.count)
        } else {
            Quota::per_second(self.count)
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Rules {
    allow: Option<Vec<RoutePattern>>,
    rate: Option<Rate>,
    concurrency: Option<NonZeroU32>,
}

/// What the policy says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// 403: the route is not in the app's `allow` list.
    NotAllowed,
    /// 403: the path has `.`, `..`, empty or encoded-separator segments, which
    /// could match one pattern here and mean another route upstream.
    NotCanonical,
    /// 429: over the app's rate; retry after this long.
    RateLimited(Duration),
}

/// A loaded policy with its rate limiters.
pub struct Policy {
    default: Rules,
    apps: crate::FastMap<AppId, Rules>,
    /// Apps with their own rate each get their own bucket.
    own_limiters: HashMap<AppId, DefaultDirectRateLimiter>,
    /// Everyone else shares the default quota, one bucket per app: memory
    /// grows with the number of apps that pass verification, not requests.
    default_limiter: Option<DefaultKeyedRateLimiter<AppId>>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("default", &self.default)
            .field("apps", &self.apps.len())
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// Parses the text of a policy file; `file` names it in errors. Every
    /// bad pattern, rate and appId is reported, not only the first (a TOML
    /// syntax error stops the reading, so it comes alone).
    pub fn parse(file: &str, text: &str) -> Result<Self, Vec<ConfigError>> {
        Self::parse_with_local_share(file, text, 1.0)
    }

    /// As [`Policy::parse`], with this replica's own limiters set to `share`
    /// of each rate: what a replica enforces alone when the global limit it
    /// shares with others cannot be reached.
    pub fn parse_with_local_share(
        file: &str,
        text: &str,
        share: f64,
    ) -> Result<Self, Vec<ConfigError>> {
        let at = |span: Option<Range<usize>>, message: String| {
            let (line, column) = line_col(text, span.map_or(0, |s| s.start));
            ConfigError {
                file: file.to_owned(),
                line,
                column,
                message,
            }
        };
        let raw: PolicyFile =
            toml::from_str(text).map_err(|e| vec![at(e.span(), e.message().to_owned())])?;
        let mut errors = Vec::new();
        let mut rules = |r: RulesFile| -> Rules {
            let allow = r.allow.map(|list| {
                list.into_iter()
                    .filter_map(|p| {
                        RoutePattern::parse(p.get_ref())
                            .map_err(|m| errors.push(at(Some(p.span()), m)))
                            .ok()
                    })
                    .collect()
            });
            let rate = r.rate.and_then(|s| {
                Rate::parse(s.get_ref())
                    .map_err(|m| errors.push(at(Some(s.span()), m)))
                    .ok()
            });
            let concurrency = r.concurrency.and_then(|n| {
                u32::try_from(*n.get_ref())
                    .ok()
                    .and_then(NonZeroU32::new)
                    .ok_or_else(|| {
                        errors.push(at(
                            Some(n.span()),
                            format!(
                                "{}: concurrency must be a whole number from 1 to {}",
                                n.get_ref(),
                                u32::MAX
                            ),
                        ))
                    })
                    .ok()
            });
            Rules {
                allow,
                rate,
                concurrency,
            }
        };
        let default = raw.default.map(&mut rules).unwrap_or_default();
        let mut apps = crate::FastMap::default();
        let mut names: Vec<_> = raw.apps.into_iter().collect();
        // Reported in file order.
        names.sort_by_key(|(name, _)| name.span().start);
        let mut bad_names = Vec::new();
        for (name, table) in names {
            let rules = rules(table);
            match AppId::new(name.get_ref()) {
                Ok(app) => {
                    apps.insert(app, rules);
                }
                Err(e) => bad_names.push(at(Some(name.span()), e.to_string())),
            }
        }
        errors.extend(bad_names);
        if !errors.is_empty() {
            errors.sort_by_key(|e| (e.line, e.column));
            return Err(errors);
        }
        let own_limiters = apps
            .iter()
            .filter_map(|(app, r)| {
                r.rate
                    .map(|rate| (app.clone(), RateLimiter::direct(rate.scaled(share).quota())))
            })
            .collect();
        let default_limiter = default
            .rate
            .map(|r| RateLimiter::keyed(r.scaled(share).quota()));
        Ok(Self {
            default,
            apps,
            own_limiters,
            default_limiter,
        })
    }

    /// Decides a request by `app` for `method path`. Call only after the
    /// token verified: a refused caller must not spend anyone's budget.
    pub fn decide(&self, app: &AppId, method: &str, path: &str) -> Decision {
        match self.route(app, method, path) {
            Err(refused) => refused,
            Ok(None) => Decision::Allow,
            Ok(Some(_)) => match self.local_limit(app) {
                Some(wait) => Decision::RateLimited(wait),
                None => Decision::Allow,
            },
        }
    }

    /// The route half of [`Policy::decide`]: `Ok` with the app's rate (if it
    /// has one) when the route is allowed, spending no budget.
    pub fn route(&self, app: &AppId, method: &str, path: &str) -> Result<Option<Rate>, Decision> {
        let Some(segments) = canonical_segments(path) else {
            return Err(Decision::NotCanonical);
        };
        let own = self.apps.get(app);
        let allow = own
            .and_then(|r| r.allow.as_ref())
            .or(self.default.allow.as_ref());
        if !allow.is_some_and(|list| list.iter().any(|p| p.matches(method, &segments))) {
            return Err(Decision::NotAllowed);
        }
        Ok(match own {
            Some(Rules { rate: Some(r), .. }) => Some(*r),
            _ => self.default.rate,
        })
    }

    /// The rate half: spends one request of `app`'s local budget, or says
    /// how long until one is free.
    pub fn local_limit(&self, app: &AppId) -> Option<Duration> {
        let own = self.apps.get(app);
        let limited = match self.own_limiters.get(app) {
            Some(limiter) => limiter.check().err(),
            None if own.is_some_and(|r| r.rate.is_some()) => None,
            None => self
                .default_limiter
                .as_ref()
                .and_then(|l| l.check_key(app).err()),
        };
        limited.map(|not_until| {
            let clock = governor::clock::DefaultClock::default();
            not_until.wait_time_from(governor::clock::Clock::now(&clock))
        })
    }

    /// How many requests of `app` may be in flight upstream at once, when the
    /// policy says (the app's own table, else the default table).
    pub fn concurrency(&self, app: &AppId) -> Option<NonZeroU32> {
        self.apps
            .get(app)
            .and_then(|r| r.concurrency)
            .or(self.default.concurrency)
    }

    /// Forgets idle per-app buckets (they refill to full anyway).
    pub fn shrink(&self) {
        if let Some(l) = &self.default_limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// The path's segments, or `None` when it is not canonical (the gate
/// refuses such paths before the policy sees them; this keeps the policy
/// safe on its own).
fn canonical_segments(path: &str) -> Option<Vec<&str>> {
    crate::path::check(path).ok()?;
    Some(crate::path::segments(path))
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prop_oneof;

    fn app(s: &str) -> AppId {
        AppId::new(s).unwrap()
    }

    const POLICY: &str = r#"
[default]
allow = ["GET /users"]
rate = "50/s"

[apps."orders"]
allow = ["GET /users", "GET /users/*", "POST /orders", "GET /reports/**"]
rate = "3/s"

[apps."admin"]
allow = ["*"]
"#;

    #[test]
    fn routes_are_denied_unless_allowed() {
        let p = Policy::parse("policy.toml", POLICY).unwrap();
        let (orders, other, admin) = (app("orders"), app("other"), app("admin"));
        assert_eq!(p.decide(&other, "GET", "/users"), Decision::Allow);
        assert_eq!(p.decide(&other, "GET", "/users/1"), Decision::NotAllowed);
        assert_eq!(p.decide(&other, "POST", "/users"), Decision::NotAllowed);
        assert_eq!(p.decide(&orders, "GET", "/users/1"), Decision::Allow);
        assert_eq!(p.decide(&orders, "GET", "/users/1/x"), Decision::NotAllowed);
        assert_eq!(p.decide(&orders, "POST", "/orders"), Decision::Allow);
        assert_eq!(
            p.decide(&orders, "GET", "/reports/2026/q1"),
            Decision::Allow
        );
        assert_eq!(p.decide(&orders, "GET", "/reports"), Decision::NotAllowed);
        assert_eq!(
            p.decide(&admin, "DELETE", "/anything/at/all"),
            Decision::Allow
        );
        for sneaky in [
            "/users/../admin",
            "/users/./x",
            "//users",
            "/users/%2e%2e/admin",
            "/users/a%2Fb",
        ] {
            assert_eq!(
                p.decide(&orders, "GET", sneaky),
                Decision::NotCanonical,
                "{sneaky}"
            );
        }
    }

    #[test]
    fn rates_apply_per_app() {
        let p = Policy::parse("policy.toml", POLICY).unwrap();
        let orders = app("orders");
        let allowed = (0..10)
            .filter(|_| p.decide(&orders, "GET", "/users") == Decision::Allow)
            .count();
        assert_eq!(allowed, 3, "3/s burst");
        assert!(
            matches!(p.decide(&orders, "GET", "/users"), Decision::RateLimited(d) if d <= Duration::from_secs(1))
        );
        // Another app's budget is untouched; admin has no rate (its table sets none... and inherits 50/s).
        assert_eq!(p.decide(&app("other"), "GET", "/users"), Decision::Allow);
    }

    #[test]
    fn concurrency_comes_from_the_app_then_the_default() {
        let p = Policy::parse(
            "policy.toml",
            "[default]\nconcurrency = 8\n[apps.big]\nconcurrency = 100\n[apps.plain]\nrate = \"5/s\"\n",
        )
        .unwrap();
        let n = |a: &str| p.concurrency(&app(a)).map(NonZeroU32::get);
        assert_eq!(
            (n("big"), n("plain"), n("other")),
            (Some(100), Some(8), Some(8))
        );
        let none = Policy::parse("policy.toml", POLICY).unwrap();
        assert_eq!(none.concurrency(&app("orders")), None);
    }

    #[test]
    fn bad_policies_name_line_column_and_expectation() {
        let cases = [
            (
                "[default]\nallow = [\"GET /users\"]\nrate = \"0/s\"\n",
                "policy.toml:3:8: \"0/s\": a rate must be at least 1",
            ),
            (
                "[default]\nrate = \"fast\"\n",
                "policy.toml:2:8: \"fast\": expected a rate",
            ),
            (
                "[default]\nallow = [\"/users\"]\n",
                "policy.toml:2:10: \"/users\": expected \"METHOD /path\"",
            ),
            (
                "[default]\nallow = [\"get /users\"]\n",
                "policy.toml:2:10: \"get\" is not an HTTP method",
            ),
            (
                "[default]\nallwo = [\"GET /users\"]\n",
                "policy.toml:2:1: unknown field `allwo`",
            ),
            ("[defaults]\n", "policy.toml:1:2: unknown field `defaults`"),
            (
                "[apps.\"../x\"]\nallow = []\n",
                "policy.toml:1:7: invalid appId",
            ),
            ("[default\n", "policy.toml:1:9:"),
            (
                "[default]\nconcurrency = 0\n",
                "policy.toml:2:15: 0: concurrency must be a whole number from 1",
            ),
            (
                "[apps.a]\nconcurrency = -3\n",
                "policy.toml:2:15: -3: concurrency must be a whole number from 1",
            ),
            (
                "[default]\nconcurrency = \"8\"\n",
                "policy.toml:2:15: invalid type: string",
            ),
        ];
        for (text, expected) in cases {
            let err = Policy::parse("policy.toml", text).unwrap_err()[0].to_string();
            assert!(err.starts_with(expected), "{text:?}: {err}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_policy_text_never_panics(text in ".{0,400}") {
            let _ = Policy::parse("policy.toml", &text);
        }

        #[test]
        fn arbitrary_patterns_and_requests_never_panic(
            pattern in "[A-Z*]{0,6} ?[/a-z*.%0-9]{0,30}",
            method in "[A-Z]{0,7}",
            path in "[/a-z*.%0-9]{0,40}",
        ) {
            if let Ok(p) = RoutePattern::parse(&pattern) {
                let text = format!("[default]\nallow = [{:?}]\n", pattern);
                let policy = Policy::parse("p.toml", &text).unwrap();
                let _ = policy.decide(&app("a"), &method, &path);
                let _ = p;
            }
        }

        #[test]
        fn non_canonical_paths_are_never_allowed(seg in "[a-z]{1,5}", trick in prop_oneof![
            proptest::strategy::Just("/.."), proptest::strategy::Just("/."), proptest::strategy::Just("//"),
            proptest::strategy::Just("/%2e%2e"), proptest::strategy::Just("/%2F"),
        ]) {
            let policy = Policy::parse("p.toml", "[default]\nallow = [\"*\"]\n").unwrap();
            let path = format!("/{seg}{trick}/x");
            proptest::prop_assert_eq!(policy.decide(&app("a"), "GET", &path), Decision::NotCanonical);
        }
    }
}
