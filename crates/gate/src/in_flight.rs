//! Requests of each app in flight, with a cap per app: what keeps one caller
//! from taking a gateway's whole upstream pool (docs/spec.md §7).
//!
//! A rate limit bounds how often an app calls, not how many of its calls
//! are open at once: 100 requests a second to a 2 s upstream are 200 held
//! connections. The count is this process's (each replica bounds what it
//! holds upstream); the cap is the policy's `concurrency`, else
//! [`DEFAULT_CONCURRENCY`].

use prometheus_client::metrics::gauge::Gauge;

/// Requests of one app a gateway holds upstream at once when the policy sets
/// no `concurrency` (per replica): a quarter of the upstream connections
/// each gateway worker keeps, so one app cannot hold them all.
pub const DEFAULT_CONCURRENCY: u32 = 64;

/// One of an app's in-flight slots, given back when dropped: keep it until
/// the response (its body included) is done.
#[derive(Debug)]
#[must_use = "the slot is given back as soon as it is dropped"]
pub struct Held {
    gauge: Gauge,
}

impl Held {
    /// Takes a slot on `gauge` (the app's `appauth_in_flight`) if fewer than
    /// `limit` are taken; the gauge is the count itself, so what `/metrics`
    /// shows is exactly what is enforced.
    pub(crate) fn take(gauge: Gauge, limit: u32) -> Option<Self> {
        let before = gauge.inc();
        if before >= i64::from(limit) {
            gauge.dec();
            return None;
        }
        Some(Self { gauge })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_counted_and_given_back() {
        let gauge = Gauge::default();
        let held: Vec<_> = (0..3)
            .map(|_| Held::take(gauge.clone(), 3).unwrap())
            .collect();
        assert_eq!(gauge.get(), 3);
        assert!(Held::take(gauge.clone(), 3).is_none());
        assert_eq!(gauge.get(), 3, "a refused take leaves the count alone");
        drop(held);
        assert_eq!(gauge.get(), 0);
        let _again = Held::take(gauge.clone(), 3).unwrap();
        assert_eq!(gauge.get(), 1);
    }

    #[test]
    fn racing_threads_never_exceed_the_cap() {
        let gauge = Gauge::default();
        let peak = std::sync::atomic::AtomicI64::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        if let Some(h) = Held::take(gauge.clone(), 5) {
                            peak.fetch_max(gauge.get(), std::sync::atomic::Ordering::SeqCst);
                            drop(h);
                        }
                    }
                });
            }
        });
        assert_eq!(gauge.get(), 0);
        assert!(peak.into_inner() <= 5);
    }
}
