//! Accepting connections, with a bound on every request head.
//!
//! actix-http's `client_request_timeout` covers only the first request of a
//! connection: once a keep-alive connection has served one request, the next
//! head may arrive one byte a second for as long as the client likes
//! (slow-loris). So each HTTP/1 connection is wrapped in a [`HeadDeadline`]
//! that watches the bytes read: from the first byte of a request head to its
//! blank line, at most `head_timeout` may pass, on every request of every
//! connection. Idle time between requests is bounded by keep-alive, as
//! before. HTTP/2 connections get the same deadline on their header blocks
//! (HEADERS and CONTINUATION frames) and advertise
//! [`H2_MAX_CONCURRENT_STREAMS`] (see `h2`). The listeners are built from
//! actix-server and actix-http directly because `HttpServer` offers no way to
//! wrap a connection.

mod h2;

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::{HttpService, KeepAlive, Protocol, Request, Response};
use actix_server::{Server, ServerBuilder};
use actix_service::{IntoServiceFactory, ServiceFactory, ServiceFactoryExt as _, fn_service};
use actix_tls::accept::rustls_0_23::{Acceptor, TlsStream};
use actix_web::body::MessageBody;
use actix_web::dev::AppConfig;
use actix_web::rt::net::TcpStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long a new TLS connection may stay silent before its ClientHello: a
/// real client sends it at once (one round trip after the TCP handshake).
pub const TLS_HELLO_TIMEOUT: Duration = Duration::from_secs(1);

/// The `SETTINGS_MAX_CONCURRENT_STREAMS` every HTTP/2 connection advertises
/// (RFC 9113 recommends no less than 100), and the requests one connection
/// may have in flight at once: a stream past it is answered 429
/// `too_many_streams`.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 100;

/// The in-flight requests of one connection, kept in its connection data
/// (`HttpRequest::conn_data`): the server refuses a request that would take
/// more than [`H2_MAX_CONCURRENT_STREAMS`].
#[derive(Debug, Clone, Default)]
pub struct StreamSlots(std::rc::Rc<std::cell::Cell<u32>>);

/// One in-flight request of a connection, given back when dropped.
#[derive(Debug)]
pub struct StreamSlot(std::rc::Rc<std::cell::Cell<u32>>);

impl StreamSlots {
    /// Takes a slot, or `None` when the connection has all of them.
    pub fn take(&self) -> Option<StreamSlot> {
        let n = self.0.get();
        (n < H2_MAX_CONCURRENT_STREAMS).then(|| {
            self.0.set(n + 1);
            StreamSlot(self.0.clone())
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Connection limits, set deliberately (README, "Limits").
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest time from the first byte of a request head to its end, on
    /// every request (408 on the first, a closed connection after).
    pub head_timeout: Duration,
    /// Longest idle time between requests on a keep-alive connection.
    pub keep_alive: Duration,
    /// How long a client that stopped reading may hold its connection after
    /// the response.
    pub disconnect_timeout: Duration,
    /// TLS handshakes in flight per worker.
    pub max_tls_handshakes: usize,
    /// Longest a new TLS connection may stay silent before its ClientHello
    /// starts; it holds no handshake slot while it waits.
    pub tls_hello_timeout: Duration,
    /// Longest a whole TLS handshake may take once it has started.
    pub tls_handshake_timeout: Duration,
}

/// Starts serving `app` on `listeners` (HTTPS when `tls` is given) on
/// `workers` threads, with `limits`. Signals are not its business (the
/// drain handles them, then stops it through its handle); once stopped, it
/// gives requests in flight `shutdown_timeout`.
pub fn serve<F, I, S, B>(
    app: F,
    listeners: Vec<TcpListener>,
    tls: Option<rustls::ServerConfig>,
    workers: Option<usize>,
    limits: Limits,
    shutdown_timeout: Duration,
) -> io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as actix_service::Service<Request>>::Future: 'static,
    B: MessageBody + 'static,
{
    let mut builder: ServerBuilder = Server::build()
        .shutdown_timeout(shutdown_timeout.as_secs().max(1))
        .disable_signals();
    if let Some(n) = workers {
        builder = builder.workers(n);
    }
    actix_tls::accept::max_concurrent_tls_connect(limits.max_tls_handshakes);
    for listener in listeners {
        let addr = listener.local_addr()?;
        let app = app.clone();
        let tls = tls.clone();
        builder = match tls {
            None => builder.listen(format!("appauth-{addr}"), listener, move || {
                fn_service(move |io: TcpStream| async move {
                    let peer = io.peer_addr().ok();
                    Ok::<_, actix_http::error::DispatchError>((
                        HeadDeadline::new(io, Some(limits.head_timeout)),
                        Protocol::Http1,
                        peer,
                    ))
                })
                .and_then(http(app.clone(), false, addr, limits))
            })?,
            Some(config) => builder.listen(format!("appauth-tls-{addr}"), listener, move || {
                let mut acceptor = Acceptor::new(config.clone());
                acceptor.set_handshake_timeout(limits.tls_handshake_timeout);
                // A connection that says nothing is dropped after the hello
                // timeout, before it takes one of the handshake slots: slots
                // held by silent sockets are what starved real clients.
                let hello = fn_service(move |io: TcpStream| async move {
                    match tokio::time::timeout(limits.tls_hello_timeout, io.readable()).await {
                        Ok(Ok(())) => Ok(io),
                        _ => Err(()),
                    }
                });
                hello
                    .and_then(acceptor.map_init_err(|_| ()).map_err(|e| {
                        tracing::debug!(error = ?e, "TLS handshake failed");
                    }))
                    .and_then(move |io: TlsStream<TcpStream>| async move {
                        let h2 = io.get_ref().1.alpn_protocol() == Some(b"h2");
                        let peer = io.get_ref().0.peer_addr().ok();
                        let head = Some(limits.head_timeout);
                        Ok::<_, ()>(if h2 {
                            (HeadDeadline::http2(io, head), Protocol::Http2, peer)
                        } else {
                            (HeadDeadline::new(io, head), Protocol::Http1, peer)
                        })
                    })
                    .and_then(http(app.clone(), true, addr, limits).map_err(|e| {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }))
            })?,
        };
    }
    Ok(builder.run())
}

/// The HTTP service over one kind of connection `T`, made once per worker.
fn http<T, F, I, S, B>(
    app: F,
    secure: bool,
    addr: SocketAddr,
    limits: Limits,
) -> impl ServiceFactory<
    (T, Protocol, Option<SocketAddr>),
    Config = (),
    Response = (),
    Error = actix_http::error::DispatchError,
    InitError = (),
>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    F: Fn() -> I,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as actix_service::Service<Request>>::Future: 'static,
    B: MessageBody + 'static,
{
    // The one public constructor that carries the real address and scheme
    // (actix-web's own is crate-private); the version is pinned in Cargo.lock.
    let config = AppConfig::__priv_test_new(secure, addr.to_string(), addr);
    let app = actix_service::map_config(
        app().into_factory().map_err(|e| e.into().error_response()),
        move |()| config.clone(),
    );
    HttpService::build()
        .keep_alive(KeepAlive::Timeout(limits.keep_alive))
        .client_request_timeout(limits.head_timeout)
        .client_disconnect_timeout(limits.disconnect_timeout)
        .local_addr(addr)
        .on_connect_ext(|_: &T, data: &mut actix_http::Extensions| {
            data.insert(StreamSlots::default());
        })
        .finish(app)
}

/// How many connections the kernel may hold, handshaken, for the accept loop
/// to take (`listen(2)`'s backlog; Linux caps it at `net.core.somaxconn`,
/// 4096 by default). A full queue drops the next SYN, and its client waits
/// the 1 s SYN retransmission: std's 128 filled in a burst of a few hundred
/// connects on two busy cores. 2048 is actix-server's own default.
pub const LISTEN_BACKLOG: i32 = 2048;

/// Binds `addr` (`host:port`; port 0 picks a free one) on every address it
/// resolves to, each with [`LISTEN_BACKLOG`].
pub fn bind(addr: &str) -> io::Result<Vec<TcpListener>> {
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(addr)?.collect();
    let mut listeners = Vec::new();
    let mut last = None;
    for a in addrs {
        match bind_one(a) {
            Ok(l) => listeners.push(l),
            Err(e) => last = Some(e),
        }
    }
    if listeners.is_empty() {
        return Err(last.unwrap_or_else(|| io::Error::other("the address resolves to nothing")));
    }
    Ok(listeners)
}

/// What std's `TcpListener::bind` does (`SO_REUSEADDR`, close-on-exec), with
/// [`LISTEN_BACKLOG`] in place of its fixed 128.
fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between requests: the next byte read starts a head.
    Idle,
    /// Reading a head, which must end by the deadline.
    Head,
    /// The head is in; reading the body, or handling the request.
    Request,
}

/// A connection whose every request head must arrive within a time limit.
///
/// The wrapper reads only what passes through it: a head starts with the
/// first byte read between requests and ends at a blank line (`\r\n\r\n`,
/// or `\n\n`, which HTTP parsers also accept); a request ends when the
/// server writes a final (non-1xx) response. The body is never timed here.
pub struct HeadDeadline<T> {
    io: T,
    limit: Option<Duration>,
    phase: Phase,
    /// The head read so far ends in `\n` and then only `\r`s.
    after_newline: bool,
    /// The request line has begun (leading blank lines are behind us).
    in_line: bool,
    deadline: Instant,
    timer: Option<Pin<Box<Sleep>>>,
    /// On an HTTP/2 connection: its frames.
    h2: Option<Box<Http2>>,
}

/// What an HTTP/2 connection's watch keeps.
struct Http2 {
    frames: h2::FrameReader,
    /// The server's first SETTINGS frame, rewritten, while it is being sent.
    pending: Vec<u8>,
    sent: usize,
    /// The server has not written yet.
    first_write: bool,
}

impl<T> HeadDeadline<T> {
    /// Watches `io`, an HTTP/1 connection; `None` passes everything through.
    pub fn new(io: T, limit: Option<Duration>) -> Self {
        Self {
            io,
            limit,
            phase: Phase::Idle,
            after_newline: false,
            in_line: false,
            deadline: Instant::now(),
            timer: None,
            h2: None,
        }
    }

    /// Watches `io`, an HTTP/2 connection: every header block must arrive
    /// within `limit`, and the server advertises
    /// [`H2_MAX_CONCURRENT_STREAMS`].
    pub fn http2(io: T, limit: Option<Duration>) -> Self {
        Self {
            h2: Some(Box::new(Http2 {
                frames: h2::FrameReader::default(),
                pending: Vec::new(),
                sent: 0,
                first_write: true,
            })),
            ..Self::new(io, limit)
        }
    }

    fn start_clock(&mut self, limit: Duration) {
        self.phase = Phase::Head;
        self.deadline = Instant::now() + limit;
        match &mut self.timer {
            Some(t) => t.as_mut().reset(self.deadline),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(self.deadline))),
        }
    }

    fn saw(&mut self, bytes: &[u8]) {
        let Some(limit) = self.limit else { return };
        if let Some(h2) = &mut self.h2 {
            match h2.frames.feed(bytes) {
                h2::Clock::Stop => self.phase = Phase::Idle,
                h2::Clock::Start => self.start_clock(limit),
                h2::Clock::Run => {}
            }
            return;
        }
        match self.phase {
            Phase::Request => return,
            _ if bytes.is_empty() => return,
            Phase::Idle => {
                self.after_newline = false;
                self.in_line = false;
                self.start_clock(limit);
            }
            Phase::Head => {}
        }
        // The head ends at a line feed, optional carriage returns, and a
        // line feed. Only line feeds are looked for (memchr, vectorised),
        // since this runs on every read of every request.
        let mut rest = bytes;
        // Blank lines before the request line are skipped by HTTP parsers;
        // they are part of the head's time, but cannot end it.
        if !self.in_line {
            match rest.iter().position(|&b| b != b'\r' && b != b'\n') {
                Some(i) => {
                    self.in_line = true;
                    rest = &rest[i..];
                }
                None => return,
            }
        }
        loop {
            if self.after_newline {
                let returns = rest.iter().take_while(|&&b| b == b'\r').count();
                rest = &rest[returns..];
                match rest.first() {
                    None => return,
                    // Pipelined bytes after this head belong to a request
                    // the server has not started; they are not timed.
                    Some(b'\n') => {
                        self.phase = Phase::Request;
                        return;
                    }
                    Some(_) => self.after_newline = false,
                }
            }
            match memchr::memchr(b'\n', rest) {
                Some(i) => {
                    self.after_newline = true;
                    rest = &rest[i + 1..];
                }
                None => return,
            }
        }
    }

    fn wrote(&mut self, buf: &[u8]) {
        if self.h2.is_some() {
            return;
        }
        // `HTTP/1.1 100 Continue` and other interim responses come before
        // the body: the request is not over.
        if self.phase == Phase::Request && !buf.is_empty() && !buf.starts_with(b"HTTP/1.1 1") {
            self.phase = Phase::Idle;
        }
    }

    fn timed_out() -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "the request head did not arrive in time",
        )
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadDeadline<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A head trickling in byte by byte never leaves the reader waiting,
        // so the clock is read on every read, not only on the timer.
        if this.phase == Phase::Head && Instant::now() >= this.deadline {
            return Poll::Ready(Err(Self::timed_out()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.saw(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if this.phase == Phase::Head
                    && let Some(timer) = &mut this.timer
                    && timer.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(Self::timed_out()));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> HeadDeadline<T> {
    /// Sends what is left of the rewritten SETTINGS frame, before anything
    /// the server writes after it.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(h2) = &mut self.h2 else {
            return Poll::Ready(Ok(()));
        };
        while h2.sent < h2.pending.len() {
            match Pin::new(&mut self.io).poll_write(cx, &h2.pending[h2.sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => h2.sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if !h2.pending.is_empty() {
            h2.pending = Vec::new();
        }
        Poll::Ready(Ok(()))
    }

    /// On an HTTP/2 connection's first write: takes the server's SETTINGS
    /// frame, to send it with the stream limit. `Some(n)`: `n` bytes of `buf`
    /// are taken (and are being sent).
    fn rewrite_settings(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Option<usize> {
        let h2 = self.h2.as_mut().filter(|h| h.first_write)?;
        h2.first_write = false;
        let Some((frame, took)) = h2::with_max_streams(buf, H2_MAX_CONCURRENT_STREAMS) else {
            tracing::debug!("HTTP/2: the first write is not a whole SETTINGS frame; sent as is");
            return None;
        };
        h2.pending = frame;
        h2.sent = 0;
        // Whatever is not sent now goes out before the next write or flush.
        let _ = self.poll_pending(cx);
        Some(took)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadDeadline<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.h2.is_some() {
            std::task::ready!(this.poll_pending(cx))?;
            if let Some(took) = this.rewrite_settings(cx, buf) {
                return Poll::Ready(Ok(took));
            }
        }
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &result
            && *n > 0
        {
            this.wrote(buf);
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.h2.is_some() {
            std::task::ready!(this.poll_pending(cx))?;
            if this.h2.as_ref().is_some_and(|h| h.first_write) {
                // The first write is looked at as one buffer.
                let first = bufs
                    .iter()
                    .find(|b| !b.is_empty())
                    .map_or(&[][..], |b| &b[..]);
                return Pin::new(this).poll_write(cx, first);
            }
        }
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &result
            && *n > 0
            && let Some(first) = bufs.iter().find(|b| !b.is_empty())
        {
            this.wrote(first);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes read from the caller, or written to it.
    enum Step {
        Saw(&'static [u8]),
        Wrote(&'static [u8]),
    }
    use Step::{Saw, Wrote};

    /// Feeds each step to a watched connection and checks the phase after it.
    fn phases(steps: &[(Step, Phase)]) {
        let mut d = HeadDeadline::new((), Some(Duration::from_secs(5)));
        for (i, (step, want)) in steps.iter().enumerate() {
            match step {
                Saw(bytes) => d.saw(bytes),
                Wrote(bytes) => d.wrote(bytes),
            }
            assert_eq!(d.phase, *want, "after step {i}");
        }
    }

    #[tokio::test]
    async fn leading_blank_lines_are_timed_but_do_not_end_a_head() {
        phases(&[
            (Saw(b"\r\n\r\n"), Phase::Head),
            (Saw(b"\r\n\r\nGET / HTTP/1.1\r\n"), Phase::Head),
            (Saw(b"\r\n"), Phase::Request),
        ]);
    }

    #[tokio::test]
    async fn heads_are_found_across_reads_and_line_endings() {
        phases(&[
            (Saw(b"GET / HTTP/1.1\r\nhost: x\r"), Phase::Head),
            (Saw(b"\n\r"), Phase::Head),
            (Saw(b"\n"), Phase::Request),
            // Body bytes are not a head.
            (Saw(b"\r\n\r\nbody"), Phase::Request),
            // An interim response does not end the request; a final one does.
            (Wrote(b"HTTP/1.1 100 Continue\r\n\r\n"), Phase::Request),
            (Wrote(b"HTTP/1.1 200 OK\r\n"), Phase::Idle),
            (Saw(b"G"), Phase::Head),
            (Saw(b"ET / HTTP/1.0\n\n"), Phase::Request),
        ]);
    }

    #[test]
    fn without_a_limit_nothing_is_watched() {
        let mut d = HeadDeadline::new((), None);
        d.saw(b"GET / HT");
        assert_eq!(d.phase, Phase::Idle);
    }

    /// A burst of connects the accept loop has not yet taken is queued whole,
    /// not cut at std's 128 (each one cut waits a 1 s SYN retransmission).
    #[test]
    fn a_burst_of_connects_waits_in_the_queue_whole() {
        let somaxconn: i32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1000);
        let n = somaxconn.min(1000) as usize;
        assert!(
            n > 128,
            "net.core.somaxconn is {somaxconn}: too low to tell"
        );
        let listener = bind("127.0.0.1:0").unwrap().remove(0);
        let addr = listener.local_addr().unwrap();
        let streams: Vec<_> = (0..n)
            .map(|i| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))
                    .unwrap_or_else(|e| panic!("connect {i} of {n}: {e}"))
            })
            .collect();
        let mut queued = 0;
        while listener.accept().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, streams.len());
    }
}
