//! Decisions as trace spans (docs/spec.md §13): the gate tells a host's
//! [`DecisionTracer`] what it decided, what it found in the token cache and
//! how long the signature check took; the tracer makes the span (with
//! OpenTelemetry, say) and hands back the `traceparent` a gateway forwards.
//!
//! The gate stays free of any tracing library: without a tracer, a decision
//! costs one branch more than it did, and takes no clock it did not take
//! already.

use std::time::{Duration, SystemTime};

use appauth_core::Verified;

use crate::gate::Admission;
use crate::refusal::Refusal;
use crate::request::RequestHead;

/// The W3C Trace Context header a tracer reads and a gateway forwards.
pub const TRACEPARENT: &str = "traceparent";

/// One decision, as a tracer sees it. Never the token: a tracer that only
/// reads this cannot leak one.
#[derive(Debug)]
pub struct DecisionRecord<'a> {
    /// The request's head (a tracer reads the incoming `traceparent` from
    /// its headers, and the method and path).
    pub head: &'a RequestHead<'a>,
    /// The verified caller, or the refusal.
    pub outcome: Result<&'a Verified, &'a Refusal>,
    /// `Some(true)` when the token was found in the verified-token cache,
    /// `Some(false)` when it was looked up and missed, `None` when no cache
    /// was asked (none configured, or the request was refused before).
    pub cache_hit: Option<bool>,
    /// Time spent checking the signature, when one was checked (a cache hit
    /// checks none).
    pub verify_time: Option<Duration>,
    /// When the gate began deciding.
    pub started: SystemTime,
    /// How long the decision took, from `started`.
    pub took: Duration,
}

/// Hears of each decision the gate makes about a caller (exempt routes make
/// none). Called on the request path, synchronously: record and return, and
/// leave the export to a background thread.
pub trait DecisionTracer: Send + Sync {
    /// Records `decision`, and returns the context the request carries on
    /// (the `traceparent` a gateway sends upstream), if any.
    fn record(&self, decision: &DecisionRecord<'_>) -> Option<TraceParent>;
}

/// A W3C `traceparent` value (version 00): what an adapter keeps with an
/// admitted request, so a gateway's upstream sees the decision's span as
/// its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent(Box<str>);

impl TraceParent {
    /// The header for `trace_id` and `span_id`, sampled or not. `None` for
    /// the all-zero ids, which W3C Trace Context forbids.
    pub fn new(trace_id: [u8; 16], span_id: [u8; 8], sampled: bool) -> Option<Self> {
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        let mut value = String::with_capacity(55);
        value.push_str("00-");
        push_hex(&mut value, &trace_id);
        value.push('-');
        push_hex(&mut value, &span_id);
        value.push_str(if sampled { "-01" } else { "-00" });
        Some(Self(value.into()))
    }

    /// The header's value, `00-<trace id>-<span id>-<flags>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id(&self) -> &str {
        &self.0[3..35]
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
}

/// A decision and the trace context it leaves: what [`crate::Gate::decide`]
/// answers.
#[derive(Debug)]
pub struct Decision {
    /// What [`crate::Gate::authenticate`] answers.
    pub result: Result<Admission, Refusal>,
    /// The `traceparent` to forward, when a tracer recorded the decision.
    pub trace: Option<TraceParent>,
}

/// What one decision met on its way, for the tracer.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Trail {
    pub(crate) cache_hit: Option<bool>,
    pub(crate) verify_time: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_w3c_version_00() {
        let t = TraceParent::new([0xab; 16], [0x01; 8], true).unwrap();
        assert_eq!(
            t.as_str(),
            "00-abababababababababababababababab-0101010101010101-01"
        );
        assert_eq!(t.trace_id(), "abababababababababababababababab");
        let unsampled = TraceParent::new([1; 16], [2; 8], false).unwrap();
        assert!(unsampled.as_str().ends_with("-00"));
        assert_eq!(TraceParent::new([0; 16], [2; 8], true), None);
        assert_eq!(TraceParent::new([1; 16], [0; 8], true), None);
    }
}
