//! The upstream: where requests go, and a pooled client to send them.

use std::path::Path;
use std::time::Duration;

use http::Uri;
use http::uri::{Authority, Scheme};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::body::ProxyBody;

/// How long a TCP connection (and the TLS handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle upstream connections kept per host; enough for the load of one
/// application, bounded so a burst does not leave thousands open.
pub const POOL_IDLE_PER_HOST: usize = 256;
/// How long an idle pooled connection is kept (under the 60-75 s after
/// which common servers close idle keep-alive connections themselves).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// Why the upstream settings were refused.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The URL is not `http(s)://host[:port][/base]`.
    #[error("upstream URL {url:?}: {why}")]
    Url {
        /// As given.
        url: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The CA file cannot be read or holds no certificate.
    #[error("CA file {}: {why}", path.display())]
    Ca {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// The upstream base URL, checked once.
#[derive(Debug, Clone)]
pub struct Target {
    scheme: Scheme,
    authority: Authority,
    /// Without a trailing `/`: the request path is appended.
    base_path: String,
}

impl Target {
    /// Parses `http(s)://host[:port][/base]`.
    pub fn parse(url: &str) -> Result<Self, UpstreamError> {
        let bad = |why| UpstreamError::Url {
            url: url.to_owned(),
            why,
        };
        let uri: Uri = url
            .parse()
            .map_err(|_| bad("not a URL: use http://host:port or https://host[:port][/base]"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .filter(|s| *s == Scheme::HTTP || *s == Scheme::HTTPS)
            .ok_or_else(|| bad("the scheme must be http or https"))?;
        let authority = uri.authority().cloned().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad(
                "credentials in the URL would be sent to the upstream: remove them",
            ));
        }
        if uri.query().is_some() || url.contains('#') {
            return Err(bad("it must not have a query or fragment"));
        }
        Ok(Self {
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The upstream URL for a request target of the application, `None`
    /// when the target is not in origin form (`/path?query`). Only its path
    /// and query are used, so a request line in absolute form
    /// (`GET http://elsewhere/ HTTP/1.1`) cannot choose another host.
    pub fn uri_of(&self, target: &Uri) -> Option<Uri> {
        let pq = target
            .path_and_query()
            .filter(|p| p.as_str().starts_with('/'))?;
        let pq = if self.base_path.is_empty() {
            pq.clone()
        } else {
            format!("{}{}", self.base_path, pq.as_str()).parse().ok()?
        };
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .ok()
    }

    /// The URL as it will be called, for logs.
    pub fn display(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

/// The connector: TCP with a connect timeout, then TLS for `https`.
pub type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A pooled client trusting the system's roots plus the certificates of
/// `ca` (a private CA's bundle, PEM). Speaks HTTP/1.1, and HTTP/2 when a TLS
/// upstream offers it. Redirects are not followed: the application gets
/// them as the upstream sent them.
pub fn client(ca: Option<&Path>) -> Result<Client<Connector, ProxyBody>, UpstreamError> {
    let mut roots = rustls::RootCertStore::empty();
    // A system without a CA store (a distroless image) still works with
    // `--ca`; the certificates that do not parse are skipped, as curl does.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca {
        let ca_error = |why: String| UpstreamError::Ca {
            path: path.to_owned(),
            why,
        };
        use rustls_pki_types::pem::PemObject;
        let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
        let mut found = 0;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| ca_error(format!("not PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ca_error(format!("not a CA certificate: {e}")))?;
            found += 1;
        }
        if found == 0 {
            return Err(ca_error("no PEM CERTIFICATE block found".into()));
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .build(https))
}

/// What kind of failure an upstream call ended in, for the answer and the
/// `appauth_agent_upstream_errors_total{kind}` metric.
pub fn error_kind(e: &hyper_util::client::legacy::Error) -> &'static str {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if is_tls(err) {
            return "tls";
        }
        source = err.source();
    }
    if e.is_connect() { "connect" } else { "closed" }
}

/// Whether `err` is a rustls error, perhaps inside `io::Error`s: those
/// report their inner error's source as their own, skipping the error
/// itself, so they are opened by hand.
fn is_tls(err: &(dyn std::error::Error + 'static)) -> bool {
    if err.is::<rustls::Error>() {
        return true;
    }
    err.downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::get_ref)
        .is_some_and(|inner| is_tls(inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_path_and_query_choose_the_upstream_url() {
        let uri =
            |t: &Target, target: &str| t.uri_of(&target.parse().unwrap()).map(|u| u.to_string());
        let t = Target::parse("http://10.0.0.5:8080/api/").unwrap();
        assert_eq!(
            uri(&t, "/users/1?x=1").as_deref(),
            Some("http://10.0.0.5:8080/api/users/1?x=1")
        );
        assert_eq!(
            uri(&t, "http://evil.example:9/steal").as_deref(),
            Some("http://10.0.0.5:8080/api/steal")
        );
        assert_eq!(uri(&t, "*"), None);
        assert_eq!(uri(&t, "evil.example:443"), None);
        let t = Target::parse("https://data.internal").unwrap();
        assert_eq!(uri(&t, "/").as_deref(), Some("https://data.internal/"));
        for bad in [
            "ftp://x",
            "x:80",
            "http://user:pw@host/",
            "http://host/?q=1",
            "http://host/#f",
            "not a url",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
