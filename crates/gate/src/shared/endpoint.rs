//! Where Redis is: one node (`redis://`, `rediss://`), or the primary that
//! Sentinel names at this moment (`redis+sentinel://`).
//!
//! A Sentinel endpoint is asked again on every (re)connection, never once at
//! start: after a failover the old primary answers `READONLY` (or nothing),
//! the link drops that connection, and the next one goes where the
//! sentinels now point, with no restart. The sentinel protocol itself is
//! redis-rs's.

use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, RedisResult};

/// The default port of a sentinel.
const SENTINEL_PORT: u16 = 26379;

/// What a URL names.
#[derive(Debug, Clone)]
pub(crate) enum Endpoint {
    /// One node, for every connection.
    Node(redis::Client),
    /// The current primary of a Sentinel-watched service.
    Sentinel(SentinelSpec),
}

/// `redis+sentinel://[user[:password]@]host[:port][,host[:port]...]/service[/db][?sentinel_username=U&sentinel_password=P]`:
/// the sentinels, the service (master) name, the credentials and database
/// of the Redis nodes, and the sentinels' own credentials when they have
/// any (a sentinel with `requirepass`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SentinelSpec {
    pub(crate) sentinels: Vec<(String, u16)>,
    pub(crate) service: String,
    pub(crate) db: i64,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) sentinel_username: Option<String>,
    pub(crate) sentinel_password: Option<String>,
}

/// How long a Sentinel-resolved connection that works is kept before the
/// sentinels are asked again whether it still goes to the primary.
pub(crate) const SENTINEL_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// The URL schemes `--redis-url` takes, for messages.
pub(crate) const SCHEMES: &str = "redis://, rediss:// or redis+sentinel://";

/// Why a URL's scheme is not one appauth can use, if it is not.
pub(crate) fn unsupported_scheme(url: &str) -> Option<String> {
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    match scheme {
        "redis" | "rediss" | "redis+sentinel" => None,
        "rediss+sentinel" | "redis+cluster" | "rediss+cluster" => {
            Some(format!("{scheme}:// is not supported yet; use {SCHEMES}"))
        }
        "" => Some(format!("no scheme; use {SCHEMES}")),
        other => Some(format!("unknown scheme {other}://; use {SCHEMES}")),
    }
}

/// The URL scheme of a Sentinel endpoint.
pub(crate) const SENTINEL_SCHEME: &str = "redis+sentinel://";

impl SentinelSpec {
    /// Parses a `redis+sentinel://` URL; the error says what is wrong.
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let expected =
            "expected redis+sentinel://[user:password@]host:26379[,host:26379...]/service[/db]";
        let rest = url
            .strip_prefix(SENTINEL_SCHEME)
            .ok_or_else(|| format!("not a {SENTINEL_SCHEME} URL"))?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (mut sentinel_username, mut sentinel_password) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sentinel_username", v)) => sentinel_username = Some(percent_decoded(v)),
                Some(("sentinel_password", v)) => sentinel_password = Some(percent_decoded(v)),
                _ => {
                    return Err(format!(
                        "unknown parameter {pair:?} (sentinel_username and sentinel_password \
                         are known); {expected}"
                    ));
                }
            }
        }
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (
                    (!user.is_empty()).then(|| percent_decoded(user)),
                    Some(percent_decoded(pass)),
                ),
                None => (Some(percent_decoded(u)), None),
            },
        };
        let sentinels = hosts
            .split(',')
            .map(|h| {
                let (host, port) = match h.rsplit_once(':') {
                    Some((host, port)) => (
                        host,
                        port.parse()
                            .map_err(|_| format!("{h:?}: the port is not a number; {expected}"))?,
                    ),
                    None => (h, SENTINEL_PORT),
                };
                if host.is_empty() {
                    return Err(format!("a sentinel has no host; {expected}"));
                }
                Ok((host.to_owned(), port))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let mut parts = path.split('/');
        let service = parts.next().unwrap_or("").to_owned();
        if service.is_empty() {
            return Err(format!("no service (master) name; {expected}"));
        }
        let db = match parts.next() {
            None | Some("") => 0,
            Some(db) => db
                .parse()
                .map_err(|_| format!("{db:?} is not a database number; {expected}"))?,
        };
        if parts.next().is_some() {
            return Err(format!("unexpected text after the database; {expected}"));
        }
        Ok(Self {
            sentinels,
            service,
            db,
            username,
            password,
            sentinel_username,
            sentinel_password,
        })
    }

    fn builder(&self) -> RedisResult<SentinelClientBuilder> {
        let addrs = self
            .sentinels
            .iter()
            .map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port));
        let mut b = SentinelClientBuilder::new(addrs, &self.service, SentinelServerType::Master)?
            .set_client_to_redis_db(self.db);
        if let Some(user) = &self.username {
            b = b.set_client_to_redis_username(user);
        }
        if let Some(pass) = &self.password {
            b = b.set_client_to_redis_password(pass);
        }
        if let Some(user) = &self.sentinel_username {
            b = b.set_client_to_sentinel_username(user);
        }
        if let Some(pass) = &self.sentinel_password {
            b = b.set_client_to_sentinel_password(pass);
        }
        Ok(b)
    }
}

impl Endpoint {
    /// A client for the node to talk to now: the node, or the primary the
    /// sentinels name (asked now, and checked to be a primary).
    pub(crate) async fn client(&self) -> RedisResult<redis::Client> {
        match self {
            Self::Node(client) => Ok(client.clone()),
            Self::Sentinel(spec) => spec.builder()?.build()?.async_get_client().await,
        }
    }

    /// Whether the node behind this endpoint can change while it runs (and
    /// should be asked again now and then).
    pub(crate) fn moves(&self) -> bool {
        matches!(self, Self::Sentinel(_))
    }

    /// As [`Endpoint::client`], blocking (the `revoke` command line).
    pub(crate) fn client_blocking(&self) -> RedisResult<redis::Client> {
        match self {
            Self::Node(client) => Ok(client.clone()),
            Self::Sentinel(spec) => spec.builder()?.build()?.get_client(),
        }
    }
}

fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|b| hex(*b)),
            bytes.get(i + 2).and_then(|b| hex(*b)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_name_sentinels_service_db_and_credentials() {
        let s =
            SentinelSpec::parse("redis+sentinel://:p%40ss@s1:26380,s2,10.0.0.3:5000/mymaster/2")
                .unwrap();
        assert_eq!(
            s,
            SentinelSpec {
                sentinels: vec![
                    ("s1".into(), 26380),
                    ("s2".into(), 26379),
                    ("10.0.0.3".into(), 5000)
                ],
                service: "mymaster".into(),
                db: 2,
                username: None,
                password: Some("p@ss".into()),
                sentinel_username: None,
                sentinel_password: None,
            }
        );
        let plain = SentinelSpec::parse("redis+sentinel://app:pw@s1/cache").unwrap();
        assert_eq!(
            (plain.username.as_deref(), plain.db, plain.sentinel_password),
            (Some("app"), 0, None)
        );
        let own = SentinelSpec::parse(
            "redis+sentinel://s1/m/1?sentinel_username=watch&sentinel_password=s%26cret",
        )
        .unwrap();
        assert_eq!(
            (
                own.sentinel_username.as_deref(),
                own.sentinel_password.as_deref(),
                own.db
            ),
            (Some("watch"), Some("s&cret"), 1)
        );
        for (bad, why) in [
            ("redis+sentinel://s1", "no service"),
            ("redis+sentinel://s1/", "no service"),
            ("redis+sentinel://s1:x/m", "port is not a number"),
            ("redis+sentinel://,s1/m", "no host"),
            ("redis+sentinel://s1/m/zero", "not a database number"),
            ("redis+sentinel://s1/m/0/extra", "unexpected text"),
            ("redis+sentinel://s1/m?password=x", "unknown parameter"),
        ] {
            let err = SentinelSpec::parse(bad).unwrap_err();
            assert!(
                err.contains(why) && err.contains("expected"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn unknown_schemes_name_the_supported_ones() {
        for ok in ["redis://h", "rediss://h", "redis+sentinel://s/m"] {
            assert_eq!(unsupported_scheme(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("http://h", "unknown scheme http://"),
            ("h:6379", "no scheme"),
            ("redis+cluster://h:7000", "not supported yet"),
        ] {
            let err = unsupported_scheme(bad).unwrap();
            assert!(err.contains(why) && err.contains(SCHEMES), "{bad}: {err}");
        }
    }
}
