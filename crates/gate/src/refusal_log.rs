//! Bounds the refusal log: at most one line per outcome and reason per
//! second, carrying the count of the refusals it stood for. A flood of junk
//! tokens then costs a few log lines a second, not one per request; the
//! metrics still count every refusal.

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::Mutex;

/// `(outcome, reason)` -> (the second of the last line, how many refusals
/// went unlogged since).
type Slots = HashMap<(&'static str, &'static str), (u64, u64)>;

/// The refusal log's budget, per outcome and reason.
#[derive(Debug)]
pub(crate) struct RefusalLog {
    started: Instant,
    slots: Mutex<Slots>,
}

impl Default for RefusalLog {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl RefusalLog {
    /// `Some(n)` when this refusal is to be logged, `n` being how many of the
    /// same kind were not logged before it; `None` to stay quiet.
    pub(crate) fn admit(&self, outcome: &'static str, reason: &'static str) -> Option<u64> {
        self.admit_at(outcome, reason, self.started.elapsed().as_secs())
    }

    fn admit_at(&self, outcome: &'static str, reason: &'static str, second: u64) -> Option<u64> {
        let mut slots = self.slots.lock();
        match slots.get_mut(&(outcome, reason)) {
            Some((last, suppressed)) if *last == second => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                *last = second;
                Some(std::mem::take(suppressed))
            }
            None => {
                slots.insert((outcome, reason), (second, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_reason_per_second_with_the_count_it_stands_for() {
        let log = RefusalLog::default();
        assert_eq!(log.admit_at("rejected", "malformed", 0), Some(0));
        for _ in 0..999 {
            assert_eq!(log.admit_at("rejected", "malformed", 0), None);
        }
        // Another reason has its own budget.
        assert_eq!(log.admit_at("rejected", "expired", 0), Some(0));
        assert_eq!(log.admit_at("rejected", "malformed", 1), Some(999));
        assert_eq!(log.admit_at("rejected", "malformed", 1), None);
        assert_eq!(log.admit_at("rejected", "malformed", 5), Some(1));
    }
}
