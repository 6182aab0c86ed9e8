//! Bodies the agent passes on: boxed, and an upstream body that must keep
//! moving.

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

/// Boxes a body whose errors convert.
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
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
    /// slow but moving one is never cut. `on_error` is called once if the
    /// body ends in an error.
    pub struct Idle<B, F> {
        #[pin]
        inner: B,
        idle: Duration,
        #[pin]
        timer: tokio::time::Sleep,
        on_error: Option<F>,
    }
}

impl<B, F: FnOnce()> Idle<B, F> {
    /// Wraps `inner`.
    pub fn new(inner: B, idle: Duration, on_error: F) -> Self {
        Self {
            inner,
            idle,
            timer: tokio::time::sleep(idle),
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
        let mut this = self.project();
        if let Poll::Ready(frame) = this.inner.as_mut().poll_frame(cx) {
            let deadline = tokio::time::Instant::now() + *this.idle;
            this.timer.as_mut().reset(deadline);
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
        ready!(this.timer.poll(cx));
        if let Some(f) = this.on_error.take() {
            f();
        }
        Poll::Ready(Some(Err(Box::new(Stalled(*this.idle)))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
