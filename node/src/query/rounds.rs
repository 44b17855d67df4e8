//! [`ListRounds`]: when a download that cannot open without its chunk
//! list (chunks cut at the file's parts, `docs/swarm.md`) asks for it
//! again, and how long each round may take, sans-IO. The driver
//! (`DownloadPlan::read_chunk_list_ahead_within` in
//! `swarm/src/app/fetch.rs`) asks every place it knows once per round
//! within [`ListRounds::budget`], hands in a round that found no list
//! ([`ListRounds::missing`]) and waits until the time it is told; it
//! decides nothing.
//!
//! What is decided here:
//! - **how long a round may take**: [`RoundsConfig::round`], or what is
//!   left of the patience if that is less, but never less than
//!   [`RoundsConfig::min_round`] (a handshake and an answer need that
//!   much even at the end);
//! - **when the next round starts**: [`RoundsConfig::first_pause`] after
//!   the first round that found nothing, the pause doubling each time up
//!   to [`RoundsConfig::max_pause`]. A peer answers a few list queries at
//!   once (2 to one /24) and turns the rest away for the milliseconds one
//!   takes: a crowd on one network that asks at once comes back within a
//!   second, not in 3 s steps;
//! - **when to stop**: once the next round would start at or after the
//!   end of the patience; with no patience, after the one round.
//!
//! Invariant: no round starts after the patience ends, and the rounds
//! between its start and end are at most patience / `first_pause` + 1.

use std::time::{Duration, Instant};

/// The rounds' timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundsConfig {
    /// The longest a round may take (the time for asking peers).
    pub round: Duration,
    /// The least a round is given, whatever is left of the patience.
    pub min_round: Duration,
    /// The pause after the first round that found nothing.
    pub first_pause: Duration,
    /// The longest pause between two rounds.
    pub max_pause: Duration,
}

impl Default for RoundsConfig {
    fn default() -> Self {
        Self {
            round: Duration::from_secs(60),
            min_round: Duration::from_secs(1),
            first_pause: Duration::from_millis(250),
            max_pause: Duration::from_secs(3),
        }
    }
}

/// What follows a round that found no list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterRound {
    /// Ask again.
    Again {
        /// From this moment.
        at: Instant,
    },
    /// The patience is spent: the list is missing.
    GiveUp,
}

/// The rounds of one read-ahead.
#[derive(Debug, Clone)]
pub struct ListRounds {
    config: RoundsConfig,
    /// The end of the patience; `None`: one round only.
    until: Option<Instant>,
    pause: Duration,
}

impl ListRounds {
    /// Rounds from `now` for `patience` (zero: one round, of the whole
    /// [`RoundsConfig::round`]).
    pub fn new(config: RoundsConfig, now: Instant, patience: Duration) -> Self {
        let pause = config.first_pause;
        Self {
            until: (!patience.is_zero()).then(|| now + patience),
            config,
            pause,
        }
    }

    /// How long the round that starts at `now` may take.
    pub fn budget(&self, now: Instant) -> Duration {
        match self.until {
            None => self.config.round,
            Some(until) => (self.config.round)
                .min(until.saturating_duration_since(now))
                .max(self.config.min_round),
        }
    }

    /// A round ended at `now` without a list that checks.
    pub fn missing(&mut self, now: Instant) -> AfterRound {
        let Some(until) = self.until else {
            return AfterRound::GiveUp;
        };
        let at = now + self.pause;
        if at >= until {
            return AfterRound::GiveUp;
        }
        self.pause = (self.pause * 2).min(self.config.max_pause);
        AfterRound::Again { at }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn without_patience_there_is_one_round_of_the_whole_time() {
        let t0 = Instant::now();
        let mut rounds = ListRounds::new(RoundsConfig::default(), t0, Duration::ZERO);
        assert_eq!(rounds.budget(t0), Duration::from_secs(60));
        assert_eq!(rounds.missing(t0 + ms(10)), AfterRound::GiveUp);
    }

    #[test]
    fn rounds_come_a_quarter_second_apart_doubling_to_three_and_stop_with_the_patience() {
        let t0 = Instant::now();
        let patience = Duration::from_secs(20);
        let mut rounds = ListRounds::new(RoundsConfig::default(), t0, patience);
        // The first round may take all of the patience (less than a
        // round's 60 s).
        assert_eq!(rounds.budget(t0), patience);
        // Rounds that each find nothing after 100 ms.
        let mut now = t0;
        let mut pauses = Vec::new();
        loop {
            now += ms(100);
            match rounds.missing(now) {
                AfterRound::Again { at } => {
                    pauses.push(at - now);
                    now = at;
                    assert!(now < t0 + patience, "a round after the patience");
                }
                AfterRound::GiveUp => break,
            }
        }
        // Rounds start at 0, 0.35, 0.95, 2.05, 4.15, 7.25, 10.35, 13.45,
        // 16.55 and 19.65 s; the one after would start at 22.75 s.
        let doubling = [250, 500, 1_000, 2_000, 3_000, 3_000, 3_000, 3_000, 3_000];
        assert_eq!(pauses, doubling.map(ms));
        assert_eq!(now, t0 + ms(19_750));
    }

    #[test]
    fn a_round_near_the_end_gets_what_is_left_but_a_second_at_least() {
        let t0 = Instant::now();
        let rounds = ListRounds::new(RoundsConfig::default(), t0, Duration::from_secs(90));
        assert_eq!(rounds.budget(t0), Duration::from_secs(60));
        assert_eq!(
            rounds.budget(t0 + Duration::from_secs(85)),
            Duration::from_secs(5)
        );
        assert_eq!(rounds.budget(t0 + ms(89_600)), Duration::from_secs(1));
        assert_eq!(
            rounds.budget(t0 + Duration::from_secs(95)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn rounds_never_outnumber_the_patience_over_the_first_pause() {
        // Rounds that fail at once: the most rounds there can be.
        for patience_ms in [1u64, 249, 250, 251, 1_000, 5_000, 60_000] {
            let t0 = Instant::now();
            let config = RoundsConfig::default();
            let bound = patience_ms / config.first_pause.as_millis() as u64 + 1;
            let mut rounds = ListRounds::new(config, t0, ms(patience_ms));
            let (mut now, mut count) = (t0, 1);
            while let AfterRound::Again { at } = rounds.missing(now) {
                assert!(at < t0 + ms(patience_ms));
                now = at;
                count += 1;
            }
            assert!(count <= bound, "{count} rounds in {patience_ms} ms");
        }
    }
}
