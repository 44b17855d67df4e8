//! When to announce again: a plain state machine, no clock of its own.

use std::time::Duration;

/// How long until the next `announce_peer`, given how the last ones went.
///
/// After a success the next announce is due after `interval`; after `n`
/// failures in a row, after `first_retry * 2^(n-1)`, never longer than
/// `interval`: a node that could not announce (no DHT node answered yet)
/// tries again soon, without hammering a DHT that stays unreachable.
#[derive(Debug, Clone)]
pub struct AnnounceSchedule {
    interval: Duration,
    first_retry: Duration,
    failures: u32,
}

impl AnnounceSchedule {
    /// A schedule with no announce made yet.
    pub fn new(interval: Duration, first_retry: Duration) -> Self {
        Self {
            interval,
            first_retry,
            failures: 0,
        }
    }

    /// The wait after a successful announce.
    pub fn after_success(&mut self) -> Duration {
        self.failures = 0;
        self.interval
    }

    /// The wait after a failed announce.
    pub fn after_failure(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let doublings = (self.failures - 1).min(31);
        self.first_retry
            .saturating_mul(1u32 << doublings)
            .min(self.interval)
    }

    /// Failed announces since the last success.
    pub fn failures_in_a_row(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn successes_wait_the_interval() {
        let mut schedule = AnnounceSchedule::new(15 * MINUTE, Duration::from_secs(5));
        assert_eq!(schedule.after_success(), 15 * MINUTE);
        assert_eq!(schedule.after_success(), 15 * MINUTE);
    }

    #[test]
    fn failures_back_off_up_to_the_interval_and_a_success_resets() {
        let mut schedule = AnnounceSchedule::new(15 * MINUTE, Duration::from_secs(5));
        let waits: Vec<u64> = (0..10)
            .map(|_| schedule.after_failure().as_secs())
            .collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 640, 900, 900]);
        assert_eq!(schedule.failures_in_a_row(), 10);
        for _ in 0..100 {
            assert_eq!(schedule.after_failure(), 15 * MINUTE, "no overflow");
        }
        assert_eq!(schedule.after_success(), 15 * MINUTE);
        assert_eq!(schedule.failures_in_a_row(), 0);
        assert_eq!(schedule.after_failure(), Duration::from_secs(5));
    }
}
