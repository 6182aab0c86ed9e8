//! The one route-pattern language, for the policy's `allow` lists and for
//! the routes the gate lets through without a token.
//!
//! A pattern is `METHOD /path`. In the path, `*` matches one non-empty
//! segment (`{name}`, as actix and axum spell a placeholder, is the same),
//! and a trailing `/**` one or more further segments. `*` as the method
//! matches any method, and `*` alone matches everything.
//!
//! How a request's path becomes segments is the caller's: the policy lets a
//! single trailing `/` name the same route as none; an exemption matches the
//! path exactly, because the framework's router behind it may not.

/// One `METHOD /path` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    /// `None` matches any method.
    method: Option<String>,
    segments: Vec<Segment>,
    /// Ends in `/**`.
    subtree: bool,
    /// The whole path, when every segment is a literal and there is no
    /// subtree.
    literal: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Any,
}

impl RoutePattern {
    /// Parses `METHOD /path` or `*`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "*" {
            return Ok(Self {
                method: None,
                segments: Vec::new(),
                subtree: true,
                literal: None,
            });
        }
        let expected = "expected \"METHOD /path\" (e.g. \"GET /users/*\"), or \"*\" for everything";
        let Some((method, path)) = s.split_once(' ') else {
            return Err(format!("\"{s}\": {expected}"));
        };
        Self::of(method, path.trim()).map_err(|e| format!("{e}: {expected}"))
    }

    /// A pattern from its two halves: a method in capitals (or `*`) and a
    /// path pattern.
    pub fn of(method: &str, path: &str) -> Result<Self, String> {
        let method = match method {
            "*" => None,
            m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => Some(m.to_owned()),
            m => return Err(format!("\"{m}\" is not an HTTP method in capitals")),
        };
        let Some(rest) = path.strip_prefix('/') else {
            return Err(format!("path \"{path}\" must start with '/'"));
        };
        let mut segments = Vec::new();
        let mut subtree = false;
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        for (i, part) in parts.iter().enumerate() {
            match *part {
                "**" if i == parts.len() - 1 => subtree = true,
                "**" => return Err(format!("\"{path}\": \"**\" may only end a pattern")),
                "*" => segments.push(Segment::Any),
                p if p.len() > 2 && p.starts_with('{') && p.ends_with('}') => {
                    segments.push(Segment::Any)
                }
                "" => return Err(format!("\"{path}\" has an empty segment")),
                p if p.contains('*') => {
                    return Err(format!("\"{path}\": '*' must be a whole segment"));
                }
                p if p.contains(['{', '}']) => {
                    return Err(format!("\"{path}\": '{{name}}' must be a whole segment"));
                }
                p if p == "." || p == ".." => {
                    return Err(format!("\"{path}\": '.' and '..' segments never match"));
                }
                p => segments.push(Segment::Literal(p.to_owned())),
            }
        }
        let literal = (!subtree && segments.iter().all(|s| matches!(s, Segment::Literal(_))))
            .then(|| path.to_owned());
        Ok(Self {
            method,
            segments,
            subtree,
            literal,
        })
    }

    /// Whether the pattern matches a request for `method` whose path has
    /// these segments.
    pub fn matches(&self, method: &str, path: &[&str]) -> bool {
        if self.method.as_deref().is_some_and(|m| m != method) {
            return false;
        }
        let n = self.segments.len();
        let length_ok = if self.subtree {
            path.len() > n || (n == 0)
        } else {
            path.len() == n
        };
        length_ok
            && self.segments.iter().zip(path).all(|(seg, p)| match seg {
                Segment::Any => !p.is_empty(),
                Segment::Literal(l) => l == p,
            })
    }

    /// Whether the pattern matches `method path` exactly: a trailing `/` is
    /// a segment of its own (an empty one, which nothing matches).
    pub fn matches_exactly(&self, method: &str, path: &str) -> bool {
        if self.method.as_deref().is_some_and(|m| m != method) {
            return false;
        }
        // An all-literal pattern (`/healthz`) is one comparison: every
        // request passes the exemptions, so they are checked cheaply.
        if let Some(literal) = &self.literal {
            return path == literal;
        }
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        if rest.is_empty() {
            return self.matches(method, &[]);
        }
        // At most a handful of segments on an exempt route: a small array,
        // no allocation on the request path.
        let mut parts = [""; 16];
        let mut n = 0;
        for part in rest.split('/') {
            if n == parts.len() {
                return false;
            }
            parts[n] = part;
            n += 1;
        }
        self.matches(method, &parts[..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_match_one_non_empty_segment_and_exact_paths_stay_exact() {
        let p = RoutePattern::of("GET", "/.well-known/appauth/{app}/jwks.json").unwrap();
        assert_eq!(
            p,
            RoutePattern::of("GET", "/.well-known/appauth/*/jwks.json").unwrap()
        );
        assert!(p.matches_exactly("GET", "/.well-known/appauth/orders/jwks.json"));
        assert!(!p.matches_exactly("POST", "/.well-known/appauth/orders/jwks.json"));
        assert!(!p.matches_exactly("GET", "/.well-known/appauth//jwks.json"));
        assert!(!p.matches_exactly("GET", "/.well-known/appauth/a/b/jwks.json"));
        assert!(!p.matches_exactly("GET", "/.well-known/appauth/orders/jwks.json/x"));
        let h = RoutePattern::of("GET", "/healthz").unwrap();
        assert!(h.matches_exactly("GET", "/healthz"));
        assert!(!h.matches_exactly("GET", "/healthz/"));
        assert!(!h.matches_exactly("GET", "healthz"));
        assert!(!h.matches_exactly("HEAD", "/healthz"));
        let root = RoutePattern::of("GET", "/").unwrap();
        assert!(root.matches_exactly("GET", "/"));
        assert!(!root.matches_exactly("GET", "/x"));
        let sub = RoutePattern::parse("* /docs/**").unwrap();
        assert!(sub.matches_exactly("PUT", "/docs/a/b"));
        assert!(!sub.matches_exactly("PUT", "/docs"));
    }

    #[test]
    fn bad_patterns_say_why() {
        assert!(
            RoutePattern::of("get", "/x")
                .unwrap_err()
                .contains("capitals")
        );
        assert!(RoutePattern::of("GET", "x").unwrap_err().contains("'/'"));
        assert!(RoutePattern::of("GET", "/a{b}").is_err());
        assert!(RoutePattern::of("GET", "/**/x").is_err());
    }
}
