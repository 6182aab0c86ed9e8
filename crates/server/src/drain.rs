//! The drain on SIGTERM (docs/spec.md §7): a rolling update drops nothing.
//!
//! 1. At the first SIGTERM or SIGINT, `/readyz` turns 503 while the server
//!    keeps accepting and serving for the drain delay (the time endpoints
//!    take to drop the pod), each response with `Connection: close` so that
//!    keep-alive clients move to other replicas.
//! 2. Then it stops accepting and lets requests in flight finish, streamed
//!    bodies included, for up to the shutdown timeout.
//! 3. It exits 0. A second signal exits at once.
//!
//! Each phase is one log line with its counts.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, MessageBody};
use actix_web::web::Bytes;
use appauth_core::drain::Signals;

/// Default `--drain-delay`: long enough for endpoint controllers and load
/// balancers to drop the pod after it turns unready.
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::from_secs(5);
/// Default `--shutdown-timeout`: the longest requests in flight get once
/// accepting stops (in gateway mode never less than the upstream timeout).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

pub use appauth_core::drain::{Drain, InFlight};

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted in flight until its
    /// last byte is out (a streamed gateway body can outlive the handler
    /// by minutes).
    pub struct Tracked<B> {
        #[pin]
        body: B,
        guard: Option<InFlight>,
    }
}

impl<B: MessageBody> Tracked<B> {
    /// Wraps `body`; an empty one is finished at once (it may never be
    /// polled).
    pub fn new(body: B, guard: InFlight) -> Self {
        let guard = match body.size() {
            BodySize::None | BodySize::Sized(0) => {
                guard.finish();
                None
            }
            _ => Some(guard),
        };
        Self { body, guard }
    }
}

impl<B: MessageBody> MessageBody for Tracked<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.project();
        let next = this.body.poll_next(cx);
        if let Poll::Ready(None) = next
            && let Some(guard) = this.guard.take()
        {
            guard.finish();
        }
        next
    }
}

/// Waits for SIGTERM or SIGINT, then drains as the module says: `stop` is
/// called after `delay` (it stops accepting and waits for what is in
/// flight). A second signal exits the process at once.
pub async fn on_signals<F, Fut>(drain: Arc<Drain>, delay: Duration, timeout: Duration, stop: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM/SIGINT: the server stops only when killed");
            return;
        }
    };
    let first = signals.next().await;
    drain.begin();
    tracing::info!(
        signal = first,
        in_flight = drain.in_flight(),
        drain_delay_s = delay.as_secs_f64(),
        "draining: /readyz answers 503, requests are still served (with Connection: close) until the drain delay ends"
    );
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        second = signals.next() => exit_now(&drain, second),
    }
    tracing::info!(
        in_flight = drain.in_flight(),
        shutdown_timeout_s = timeout.as_secs_f64(),
        "drain delay over: no longer accepting; requests in flight may finish until the shutdown timeout"
    );
    tokio::select! {
        () = stop() => {}
        second = signals.next() => exit_now(&drain, second),
    }
}

/// The last phase's line, once the server has stopped.
pub fn log_stopped(drain: &Drain) {
    let (finished, cut) = drain.counts();
    tracing::info!(
        finished,
        cut,
        "stopped: requests finished and cut since the drain began"
    );
}

fn exit_now(drain: &Drain, signal: &'static str) -> ! {
    let (finished, _) = drain.counts();
    tracing::warn!(
        signal,
        in_flight = drain.in_flight(),
        finished,
        "second signal: exiting at once, requests in flight are cut"
    );
    std::process::exit(1)
}
