//! Counting requests through a drain (docs/spec.md §7 and §12): whether a
//! stop signal has come, what is in flight, and what finished or was cut
//! since. The server and the agent each drive their own listener; this is
//! the part they share: no runtime in it but, with the `signals` feature,
//! the stop signals both listen for.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Requests in flight, and whether the process is draining.
#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    /// Requests that ended whole after the drain began.
    finished: AtomicU64,
    /// Requests that ended before their response did (closed by the
    /// shutdown or by the client) after the drain began.
    cut: AtomicU64,
}

impl Drain {
    /// Whether a stop signal has arrived.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Requests whose response has not ended.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// `(finished, cut)` since the drain began.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.finished.load(Ordering::Relaxed),
            self.cut.load(Ordering::Relaxed),
        )
    }

    /// Marks the drain begun: from now on, ends are counted.
    pub fn begin(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Counts one request in flight until the guard is finished or dropped.
    pub fn track(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            drain: self.clone(),
            done: false,
        }
    }
}

/// One request in flight.
#[derive(Debug)]
pub struct InFlight {
    drain: Arc<Drain>,
    done: bool,
}

impl InFlight {
    /// The response ended whole.
    pub fn finish(mut self) {
        self.done = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.drain.in_flight.fetch_sub(1, Ordering::Relaxed);
        if self.drain.is_draining() {
            let counter = if self.done {
                &self.drain.finished
            } else {
                &self.drain.cut
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// SIGTERM and SIGINT, whichever comes: the signals a supervisor (systemd,
/// Kubernetes, a terminal) stops a process with.
#[cfg(feature = "signals")]
#[derive(Debug)]
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(feature = "signals")]
impl Signals {
    /// Listens for both; fails only outside a tokio runtime with signals.
    pub fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next one to arrive, by name (`SIGTERM`, `SIGINT`).
    pub async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
