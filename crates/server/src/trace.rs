//! Trace spans of gate decisions, exported over OTLP (docs/spec.md §13).
//!
//! Off unless `--otlp-endpoint` or an `OTEL_EXPORTER_OTLP_*ENDPOINT`
//! variable names a collector. When on, each decision about a caller is one
//! span, child of the request's incoming `traceparent`; a batch processor
//! on a thread of its own exports them, so neither the export nor a
//! collector that is down touches the request path.

use std::sync::Arc;

use appauth_gate::DecisionTracer;

/// The span's name: one per gate decision.
pub const SPAN_NAME: &str = "appauth.decision";

/// The OTLP/HTTP path of traces, appended to a base endpoint.
const TRACES_PATH: &str = "/v1/traces";

/// Where spans go, read from `--otlp-endpoint` and the `OTEL_*` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Export {
    /// No tracing: no span is made, at no cost.
    Off,
    /// OTLP over HTTP (protobuf), to `endpoint` (the full traces URL), or,
    /// for `None`, where `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` say (the exporter reads them).
    Otlp {
        /// The traces URL given by `--otlp-endpoint`.
        endpoint: Option<String>,
    },
}

impl Export {
    /// The export `--otlp-endpoint` (`flag`) and the environment (`var`)
    /// ask for, or what is wrong with them.
    ///
    /// `--otlp-endpoint` is a base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// is: `/v1/traces` is appended unless the path already ends so.
    /// `OTEL_SDK_DISABLED=true` and `OTEL_TRACES_EXPORTER=none` turn
    /// tracing off whatever else is set.
    pub fn from_settings(
        flag: Option<&str>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(Self::Off);
        }
        match var("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
            None | Some("otlp") => {}
            Some("none") => return Ok(Self::Off),
            Some(other) => {
                return Err(format!(
                    "OTEL_TRACES_EXPORTER={other}: appauth-server exports traces over OTLP only \
                     (set it to otlp, or none to turn tracing off)"
                ));
            }
        }
        let from_env = [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .into_iter()
        .find_map(|name| var(name).map(|url| (name, url)));
        let endpoint = match (flag, &from_env) {
            (Some(url), _) => Some(base_to_traces(check_url("--otlp-endpoint", url)?)),
            (None, Some((name, url))) => {
                check_url(name, url)?;
                None
            }
            (None, None) => return Ok(Self::Off),
        };
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(protocol) = var(name)
                && protocol.trim() != "http/protobuf"
            {
                return Err(format!(
                    "{name}={protocol}: appauth-server exports OTLP over HTTP with protobuf \
                     (http/protobuf); point it at the collector's OTLP/HTTP port (4318 by \
                     default), not gRPC's 4317"
                ));
            }
        }
        Ok(Self::Otlp { endpoint })
    }

    /// One line for logs and `--check-config`.
    pub fn describe(&self) -> String {
        match self {
            Self::Off => "off".into(),
            Self::Otlp {
                endpoint: Some(url),
            } => format!("OTLP/HTTP to {url}"),
            Self::Otlp { endpoint: None } => {
                "OTLP/HTTP to the endpoint of the OTEL_EXPORTER_OTLP_* variables".into()
            }
        }
    }
}

fn check_url<'a>(name: &str, url: &'a str) -> Result<&'a str, String> {
    let url = url.trim();
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(url),
        _ => Err(format!(
            "{name} {url:?} is not an http:// or https:// URL of an OTLP/HTTP collector \
             (e.g. http://otel-collector:4318)"
        )),
    }
}

fn base_to_traces(url: &str) -> String {
    let base = url.trim_end_matches('/');
    if base.ends_with(TRACES_PATH) {
        base.to_owned()
    } else {
        format!("{base}{TRACES_PATH}")
    }
}

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
#[error("tracing: {0}")]
pub struct TraceError(String);

/// The running exporter: the tracer the gate calls, and the batch
/// processor to flush at exit.
pub struct Tracing {
    #[cfg(feature = "otel")]
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
    tracer: Arc<dyn DecisionTracer>,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing").finish_non_exhaustive()
    }
}

impl Tracing {
    /// Starts the export `export` asks for; `None` when it is off.
    pub fn start(export: &Export) -> Result<Option<Self>, TraceError> {
        match export {
            Export::Off => Ok(None),
            Export::Otlp { endpoint } => Self::start_otlp(endpoint.as_deref()).map(Some),
        }
    }

    #[cfg(not(feature = "otel"))]
    fn start_otlp(_: Option<&str>) -> Result<Self, TraceError> {
        Err(TraceError(
            "this appauth-server was built without the `otel` feature; rebuild with it (the \
             default) to export traces"
                .into(),
        ))
    }

    #[cfg(feature = "otel")]
    fn start_otlp(endpoint: Option<&str>) -> Result<Self, TraceError> {
        use opentelemetry::trace::TracerProvider as _;
        use opentelemetry_otlp::{Protocol, WithExportConfig as _};

        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary);
        if let Some(url) = endpoint {
            exporter = exporter.with_endpoint(url);
        }
        let exporter = exporter
            .build()
            .map_err(|e| TraceError(format!("cannot make the OTLP exporter: {e}")))?;
        // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win; the name is
        // the binary's only when neither gives one.
        let named = std::env::var_os("OTEL_SERVICE_NAME").is_some()
            || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| {
                a.split(',')
                    .any(|kv| kv.trim().starts_with("service.name="))
            });
        let mut resource = opentelemetry_sdk::Resource::builder().with_attribute(
            opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        );
        if !named {
            resource = resource.with_service_name("appauth-server");
        }
        // The sampler is the SDK's: parent-based, always on, unless
        // OTEL_TRACES_SAMPLER says otherwise; OTEL_BSP_* size the batches.
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("appauth");
        Ok(Self {
            provider,
            tracer: Arc::new(otel::Spans { tracer }),
        })
    }

    /// What the gate hands each decision to.
    pub fn decision_tracer(&self) -> Arc<dyn DecisionTracer> {
        self.tracer.clone()
    }

    /// Exports what is still queued (at most a few seconds): called at exit,
    /// so the spans of a drain's last requests are not lost.
    pub fn shutdown(&self) {
        #[cfg(feature = "otel")]
        if let Err(e) = self
            .provider
            .shutdown_with_timeout(std::time::Duration::from_secs(5))
        {
            tracing::warn!(error = %e, "traces: the last spans could not be exported");
        }
    }
}

#[cfg(feature = "otel")]
mod otel {
    use appauth_gate::{DecisionRecord, DecisionTracer, Field, Headers, TRACEPARENT, TraceParent};
    use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
    use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _};
    use opentelemetry::{KeyValue, Value};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracer;

    /// The longest path a span keeps: a caller chooses the path, and a
    /// flood of 100 KiB paths must not fill the export queue.
    const MAX_PATH: usize = 256;

    fn bounded(path: &str) -> &str {
        let mut end = path.len().min(MAX_PATH);
        while !path.is_char_boundary(end) {
            end -= 1;
        }
        &path[..end]
    }

    /// OpenTelemetry's rule for `http.request.method`: the known methods as
    /// they are, any other as `_OTHER`, so a caller cannot make one up.
    fn method(m: &str) -> &'static str {
        const KNOWN: [&str; 9] = [
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
        ];
        KNOWN.into_iter().find(|k| *k == m).unwrap_or("_OTHER")
    }

    /// The gate's decisions as OpenTelemetry spans.
    pub(super) struct Spans {
        pub(super) tracer: SdkTracer,
    }

    /// The two W3C headers, read through the gate's header view: a doubled
    /// `traceparent` reads as absent, so the decision starts a new trace.
    struct Incoming<'a>(&'a dyn Headers);

    impl Extractor for Incoming<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            match self.0.field(key) {
                Field::One(v) => std::str::from_utf8(v).ok(),
                Field::Absent | Field::Many => None,
            }
        }

        fn keys(&self) -> Vec<&str> {
            vec![TRACEPARENT, "tracestate"]
        }
    }

    impl DecisionTracer for Spans {
        fn record(&self, d: &DecisionRecord<'_>) -> Option<TraceParent> {
            let parent = TraceContextPropagator::new().extract(&Incoming(d.head.headers));
            let mut attributes = Vec::with_capacity(10);
            attributes.push(KeyValue::new("http.request.method", method(d.head.method)));
            attributes.push(KeyValue::new("url.path", bounded(d.head.path).to_owned()));
            let status = match d.outcome {
                Ok(caller) => {
                    attributes.push(KeyValue::new("appauth.outcome", "accepted"));
                    attributes.push(KeyValue::new("appauth.app_id", caller.app_id.to_string()));
                    attributes.push(KeyValue::new("appauth.kid", caller.kid.to_string()));
                    attributes.push(KeyValue::new("appauth.alg", caller.alg.as_str()));
                    Status::Unset
                }
                Err(refusal) => {
                    let code = refusal.code();
                    attributes.push(KeyValue::new("appauth.outcome", code.outcome()));
                    attributes.push(KeyValue::new("appauth.reason", code.reason()));
                    attributes.push(KeyValue::new(
                        "http.response.status_code",
                        i64::from(code.status()),
                    ));
                    if let Some(app) = refusal.app_id() {
                        attributes.push(KeyValue::new("appauth.app_id", app.to_owned()));
                    }
                    // OpenTelemetry's HTTP server rule: a 4xx is the
                    // caller's error, not the server's.
                    if code.status() >= 500 {
                        Status::error(code.reason())
                    } else {
                        Status::Unset
                    }
                }
            };
            if let Some(hit) = d.cache_hit {
                attributes.push(KeyValue::new("appauth.cache_hit", hit));
            }
            if let Some(took) = d.verify_time {
                attributes.push(KeyValue::new(
                    "appauth.verify_us",
                    Value::I64(i64::try_from(took.as_micros()).unwrap_or(i64::MAX)),
                ));
            }
            let mut span = self
                .tracer
                .span_builder(super::SPAN_NAME)
                .with_kind(SpanKind::Server)
                .with_start_time(d.started)
                .with_attributes(attributes)
                .start_with_context(&self.tracer, &parent);
            span.set_status(status);
            let context = span.span_context().clone();
            span.end_with_timestamp(d.started + d.took);
            TraceParent::new(
                context.trace_id().to_bytes(),
                context.span_id().to_bytes(),
                context.is_sampled(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(flag: Option<&str>, vars: &[(&str, &str)]) -> Result<Export, String> {
        Export::from_settings(flag, |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    fn otlp(url: &str) -> Export {
        Export::Otlp {
            endpoint: Some(url.into()),
        }
    }

    #[test]
    fn off_unless_an_endpoint_is_named() {
        assert_eq!(from(None, &[]), Ok(Export::Off));
        assert_eq!(from(None, &[("OTEL_SERVICE_NAME", "x")]), Ok(Export::Off));
        assert_eq!(
            from(None, &[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]),
            Ok(Export::Off)
        );
    }

    #[test]
    fn the_flag_is_a_base_url_like_the_standard_variable() {
        let c = "http://collector:4318";
        assert_eq!(
            from(Some(c), &[]),
            Ok(otlp("http://collector:4318/v1/traces"))
        );
        assert_eq!(
            from(Some("http://collector:4318/"), &[]),
            Ok(otlp("http://collector:4318/v1/traces"))
        );
        assert_eq!(
            from(Some("https://c.example/otlp/v1/traces"), &[]),
            Ok(otlp("https://c.example/otlp/v1/traces"))
        );
        // The flag wins over the variables.
        assert_eq!(
            from(
                Some(c),
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4318")]
            ),
            Ok(otlp("http://collector:4318/v1/traces"))
        );
    }

    #[test]
    fn the_standard_variables_turn_it_on_and_off() {
        for name in [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ] {
            assert_eq!(
                from(None, &[(name, "http://c:4318")]),
                Ok(Export::Otlp { endpoint: None })
            );
        }
        let c = Some("http://c:4318");
        assert_eq!(from(c, &[("OTEL_SDK_DISABLED", "true")]), Ok(Export::Off));
        assert_eq!(
            from(c, &[("OTEL_SDK_DISABLED", "false")]),
            Ok(otlp("http://c:4318/v1/traces"))
        );
        assert_eq!(
            from(c, &[("OTEL_TRACES_EXPORTER", "none")]),
            Ok(Export::Off)
        );
        assert_eq!(
            from(c, &[("OTEL_TRACES_EXPORTER", "otlp")]),
            Ok(otlp("http://c:4318/v1/traces"))
        );
    }

    #[test]
    fn what_it_cannot_do_is_said_at_start() {
        let c = Some("http://c:4318");
        let err = from(c, &[("OTEL_TRACES_EXPORTER", "zipkin")]).unwrap_err();
        assert!(err.contains("OTLP only"), "{err}");
        let err = from(c, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap_err();
        assert!(err.contains("4318"), "{err}");
        assert!(from(c, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]).is_ok());
        for bad in ["collector:4318", "ftp://c", "http://", "http:///v1/traces"] {
            let err = from(Some(bad), &[]).unwrap_err();
            assert!(err.contains("--otlp-endpoint"), "{bad}: {err}");
        }
        let err = from(None, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4318")]).unwrap_err();
        assert!(err.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{err}");
    }
}
