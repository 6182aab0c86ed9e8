//! Where Redis is: one node (`redis://`, `rediss://`), the primary that
//! Sentinel names at this moment (`redis+sentinel://`), or a Redis Cluster
//! (`redis+cluster://`).
//!
//! A Sentinel endpoint is asked again on every (re)connection, never once at
//! start: after a failover the old primary answers `READONLY` (or nothing),
//! the link drops that connection, and the next one goes where the
//! sentinels now point, with no restart. The sentinel protocol itself is
//! redis-rs's.

use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, IntoConnectionInfo as _, RedisResult};

/// The default port of a sentinel.
const SENTINEL_PORT: u16 = 26379;

/// What a URL names.
#[derive(Debug, Clone)]
pub(crate) enum Endpoint {
    /// One node, for every connection.
    Node(redis::Client),
    /// The current primary of a Sentinel-watched service.
    Sentinel(SentinelSpec),
    /// A Redis Cluster, reached through any of these nodes.
    Cluster(ClusterSpec),
}

/// `redis+cluster://[user[:password]@]host:port[,host:port...]`: nodes to
/// learn the cluster's layout from (any one that answers is enough).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterSpec {
    pub(crate) nodes: Vec<(String, u16)>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    /// For `rediss+cluster://`.
    pub(crate) tls: Option<TlsSettings>,
}

/// TLS to the nodes (and the sentinels) of a `rediss+sentinel://` or
/// `rediss+cluster://` URL: the system's roots, or the configured CA and
/// client certificate.
#[derive(Clone, Default)]
pub(crate) struct TlsSettings {
    #[cfg(feature = "redis-tls")]
    pub(crate) certs: Option<redis::TlsCertificates>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        #[cfg(feature = "redis-tls")]
        let custom = self.certs.is_some();
        #[cfg(not(feature = "redis-tls"))]
        let custom = false;
        f.debug_struct("TlsSettings")
            .field("custom", &custom)
            .finish()
    }
}

/// Settings are compared by whether they are there, not by their bytes.
impl PartialEq for TlsSettings {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for TlsSettings {}

/// The URL scheme of a Redis Cluster.
pub(crate) const CLUSTER_SCHEME: &str = "redis+cluster://";

/// A connection for commands: to one node (kept up by redis-rs's
/// `ConnectionManager`, or multiplexed), or to a cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One node, reconnected by redis-rs when the link drops.
    Managed(redis::aio::ConnectionManager),
    /// One node.
    Multiplexed(redis::aio::MultiplexedConnection),
    /// A cluster: each command goes to its slot's primary.
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Managed(c) => c.req_packed_command(cmd),
            Self::Multiplexed(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Multiplexed(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Managed(c) => c.get_db(),
            Self::Multiplexed(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

impl ClusterSpec {
    /// Parses a `redis+cluster://` URL; the error says what is wrong.
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let expected = "expected redis+cluster://[user:password@]host:port[,host:port...]";
        let rest = url
            .strip_prefix(CLUSTER_SCHEME)
            .ok_or_else(|| format!("not a {CLUSTER_SCHEME} URL"))?;
        let authority = rest.trim_end_matches('/');
        if authority.contains(['/', '?']) {
            return Err(format!(
                "a cluster URL has no path or parameters; {expected}"
            ));
        }
        let (username, password, hosts) = userinfo(authority);
        let nodes = hosts
            .split(',')
            .map(|h| {
                let (host, port) = h
                    .rsplit_once(':')
                    .ok_or_else(|| format!("{h:?} has no port; {expected}"))?;
                let port = port
                    .parse()
                    .map_err(|_| format!("{h:?}: the port is not a number; {expected}"))?;
                if host.is_empty() {
                    return Err(format!("a node has no host; {expected}"));
                }
                Ok((host.to_owned(), port))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            nodes,
            username,
            password,
            tls: None,
        })
    }

    fn node_info(&self, host: &str, port: u16) -> redis::ConnectionInfo {
        let mut redis = redis::RedisConnectionInfo::default();
        if let Some(user) = &self.username {
            redis = redis.set_username(user);
        }
        if let Some(pass) = &self.password {
            redis = redis.set_password(pass);
        }
        let addr = match self.tls {
            None => ConnectionAddr::Tcp(host.to_owned(), port),
            Some(_) => ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure: false,
                tls_params: None,
            },
        };
        addr.into_connection_info()
            .expect("a TCP address is connection info")
            .set_redis_settings(redis)
    }

    /// A client for one node (the follower's subscription).
    fn node_client(&self, host: &str, port: u16) -> RedisResult<redis::Client> {
        #[cfg(feature = "redis-tls")]
        if let Some(TlsSettings { certs: Some(certs) }) = &self.tls {
            return redis::Client::build_with_tls(self.node_info(host, port), certs.clone());
        }
        redis::Client::open(self.node_info(host, port))
    }

    fn client(&self, timeout: std::time::Duration) -> RedisResult<redis::cluster::ClusterClient> {
        let nodes: Vec<redis::ConnectionInfo> = self
            .nodes
            .iter()
            .map(|(h, p)| self.node_info(h, *p))
            .collect();
        let b = redis::cluster::ClusterClient::builder(nodes)
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(2);
        // The nodes' TLS mode comes from their addresses (TcpTls); custom
        // certificates, when configured, go with it.
        #[cfg(feature = "redis-tls")]
        let b = match &self.tls {
            Some(TlsSettings { certs: Some(certs) }) => {
                b.tls(redis::TlsMode::Secure).certs(certs.clone())
            }
            Some(TlsSettings { certs: None }) => b.tls(redis::TlsMode::Secure),
            None => b,
        };
        b.build()
    }
}

/// `user:password@hosts` split, percent-decoded.
fn userinfo(authority: &str) -> (Option<String>, Option<String>, &str) {
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
    (username, password, hosts)
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
    /// For `rediss+sentinel://`: TLS to the sentinels and the nodes.
    pub(crate) tls: Option<TlsSettings>,
}

/// How long a Sentinel-resolved connection that works is kept before the
/// sentinels are asked again whether it still goes to the primary.
pub(crate) const SENTINEL_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// How often the limiter's cluster connection is made again, with a fresh
/// map of the slots, besides on `MOVED`/`ASK` and errors.
pub(crate) const CLUSTER_REMAP: std::time::Duration = std::time::Duration::from_secs(30);

/// The URL schemes `--redis-url` takes, for messages.
pub(crate) const SCHEMES: &str = "redis://, rediss://, redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://";

/// Why a URL's scheme is not one appauth can use, if it is not.
pub(crate) fn unsupported_scheme(url: &str) -> Option<String> {
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    match scheme {
        "redis" | "rediss" | "redis+sentinel" | "rediss+sentinel" | "redis+cluster"
        | "rediss+cluster" => None,
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
        let (username, password, hosts) = userinfo(authority);
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
            tls: None,
        })
    }

    fn builder(&self) -> RedisResult<SentinelClientBuilder> {
        let addrs = self.sentinels.iter().map(|(host, port)| match self.tls {
            None => ConnectionAddr::Tcp(host.clone(), *port),
            Some(_) => ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: false,
                tls_params: None,
            },
        });
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
        if let Some(_tls) = &self.tls {
            b = b
                .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
            #[cfg(feature = "redis-tls")]
            if let Some(certs) = &_tls.certs {
                b = b
                    .set_client_to_redis_certificates(certs.clone())
                    .set_client_to_sentinel_certificates(certs.clone());
            }
        }
        Ok(b)
    }
}

impl Endpoint {
    /// A client for the node to talk to now: the node, or the primary the
    /// sentinels name (asked now, and checked to be a primary). Not for a
    /// cluster, which has no one node.
    async fn client(&self) -> RedisResult<redis::Client> {
        match self {
            Self::Node(client) => Ok(client.clone()),
            Self::Sentinel(spec) => spec.builder()?.build()?.async_get_client().await,
            Self::Cluster(_) => Err(not_one_node()),
        }
    }

    /// The connection the limiter keeps, and where it goes (for the log).
    pub(crate) async fn managed(
        &self,
        config: redis::aio::ConnectionManagerConfig,
        timeout: std::time::Duration,
    ) -> RedisResult<(Conn, String)> {
        if let Self::Cluster(spec) = self {
            let conn = spec.client(timeout)?.get_async_connection().await?;
            return Ok((
                Conn::Cluster(conn),
                format!("cluster of {} seed node(s)", spec.nodes.len()),
            ));
        }
        let client = self.client().await?;
        let addr = client.get_connection_info().addr().to_string();
        let conn = redis::aio::ConnectionManager::new_with_config(client, config).await?;
        Ok((Conn::Managed(conn), addr))
    }

    /// What the revocation follower needs: a subscription, a connection for
    /// reads and write-backs, and where they go. In a cluster, a message
    /// published on any node reaches a subscriber on any node, so the
    /// subscription is on the first seed node that answers.
    pub(crate) async fn follower(
        &self,
        timeout: std::time::Duration,
    ) -> RedisResult<(redis::aio::PubSub, Conn, String)> {
        if let Self::Cluster(spec) = self {
            let conn = spec.client(timeout)?.get_async_connection().await?;
            let mut last = None;
            for (host, port) in &spec.nodes {
                match spec.node_client(host, *port) {
                    Ok(client) => match client.get_async_pubsub().await {
                        Ok(pubsub) => {
                            return Ok((pubsub, Conn::Cluster(conn), format!("{host}:{port}")));
                        }
                        Err(e) => last = Some(e),
                    },
                    Err(e) => last = Some(e),
                }
            }
            return Err(last.unwrap_or_else(not_one_node));
        }
        let client = self.client().await?;
        let addr = client.get_connection_info().addr().to_string();
        let pubsub = client.get_async_pubsub().await?;
        let conn = client.get_multiplexed_async_connection().await?;
        Ok((pubsub, Conn::Multiplexed(conn), addr))
    }

    /// Where the primary is now, for an endpoint whose primary can move.
    pub(crate) async fn primary(&self) -> RedisResult<String> {
        Ok(self
            .client()
            .await?
            .get_connection_info()
            .addr()
            .to_string())
    }

    /// Whether the node behind this endpoint can change while it runs (and
    /// should be asked again now and then).
    pub(crate) fn moves(&self) -> bool {
        matches!(self, Self::Sentinel(_))
    }

    /// Whether the keys live in a cluster, so every key one script touches
    /// must share a hash tag.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// A connection for a few commands (the `revoke` command line), whose
    /// answers may take up to `response` (a batch of 100,000 rules is one
    /// pipeline, answered at once at its end).
    pub(crate) async fn commands(&self, response: std::time::Duration) -> RedisResult<Conn> {
        if let Self::Cluster(spec) = self {
            return Ok(Conn::Cluster(
                spec.client(response)?.get_async_connection().await?,
            ));
        }
        let client = self.client().await?;
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(response));
        Ok(Conn::Multiplexed(
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await?,
        ))
    }
}

fn not_one_node() -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::InvalidClientConfig,
        "a cluster has no one node to connect to",
    ))
}

/// A URL part with its `%XX` escapes decoded (a password may hold `@`,
/// `:` or `,`, which the URL's own syntax uses).
fn percent_decoded(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
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
                tls: None,
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
    fn cluster_urls_name_nodes_and_credentials() {
        let c = ClusterSpec::parse("redis+cluster://app:p%3Aw@n1:7000,10.0.0.2:7001/").unwrap();
        assert_eq!(
            c,
            ClusterSpec {
                nodes: vec![("n1".into(), 7000), ("10.0.0.2".into(), 7001)],
                username: Some("app".into()),
                password: Some("p:w".into()),
                tls: None,
            }
        );
        for (bad, why) in [
            ("redis+cluster://n1", "has no port"),
            ("redis+cluster://n1:x", "not a number"),
            ("redis+cluster://n1:7000/0", "no path"),
            ("redis+cluster://:7000", "no host"),
        ] {
            let err = ClusterSpec::parse(bad).unwrap_err();
            assert!(
                err.contains(why) && err.contains("expected"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn unknown_schemes_name_the_supported_ones() {
        for ok in [
            "redis://h",
            "rediss://h",
            "redis+sentinel://s/m",
            "redis+cluster://h:1",
        ] {
            assert_eq!(unsupported_scheme(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("http://h", "unknown scheme http://"),
            ("h:6379", "no scheme"),
            ("redis+sentinels://h:7000", "unknown scheme"),
        ] {
            let err = unsupported_scheme(bad).unwrap();
            assert!(err.contains(why) && err.contains(SCHEMES), "{bad}: {err}");
        }
    }
}
