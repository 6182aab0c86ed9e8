//! Bodies the agent passes on: boxed, and an upstream body that must keep
//! moving.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

/// Any error a body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every body the agent sends or answers with.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A whole body in memory.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// No body.
pub fn empty() -> ProxyBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Boxes a body whose errors convert.
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted in flight until its
    /// last frame is out, for the drain's counts.
    pub struct Tracked<B> {
        #[pin]
        inner: B,
        guard: Option<appauth_core::drain::InFlight>,
    }
}

impl<B: Body> Tracked<B> {
    /// Wraps `inner`; an empty one is finished at once.
    pub fn new(inner: B, guard: appauth_core::drain::InFlight) -> Self {
        let guard = if inner.is_end_stream() {
            guard.finish();
            None
        } else {
            Some(guard)
        };
        Self { inner, guard }
    }
}

impl<B: Body> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        // hyper stops polling once the body says it has ended, so the last
        // frame may be the last poll.
        if (frame.is_none() || this.inner.is_end_stream())
            && let Some(guard) = this.guard.take()
        {
            guard.finish();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The upstream went quiet for longer than the read timeout while a body
/// was streaming.
#[derive(Debug)]
pub struct Stalled(pub Duration);

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no body data for {:?}", self.0)
    }
}

impl std::error::Error for Stalled {}

pin_project_lite::pin_project! {
    /// A body that fails with [`Stalled`] when no frame arrives for `idle`,
    /// so a hung upstream cannot hold the application's request forever; a
    /// slow but moving one is never cut. The timer is armed only while the
    /// body waits for data: a response already in the buffer (most small
    /// ones) costs none. `on_error` is called once if the body ends in an
    /// error.
    pub struct Idle<B, F> {
        #[pin]
        inner: B,
        idle: Duration,
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
        on_error: Option<F>,
    }
}

impl<B, F: FnOnce()> Idle<B, F> {
    /// Wraps `inner`.
    pub fn new(inner: B, idle: Duration, on_error: F) -> Self {
        Self {
            inner,
            idle,
            timer: None,
            on_error: Some(on_error),
        }
    }
}

impl<B, F> Body for Idle<B, F>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    F: FnOnce(),
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            *this.timer = None;
            return Poll::Ready(match frame {
                Some(Err(e)) => {
                    if let Some(f) = this.on_error.take() {
                        f();
                    }
                    Some(Err(e.into()))
                }
                other => other.map(|f| f.map_err(Into::into)),
            });
        }
        let idle = *this.idle;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        ready!(timer.as_mut().poll(cx));
        if let Some(f) = this.on_error.take() {
            f();
        }
        Poll::Ready(Some(Err(Box::new(Stalled(idle)))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
