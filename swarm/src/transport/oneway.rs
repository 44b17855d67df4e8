//! The forward one-way queuing delay, from delay stamps
//! (`docs/wire-protocol.md`, section 14).
//!
//! The round trip of a connection holds two queues: the sender's uplink,
//! which its uploads fill, and the receiver's uplink, where the
//! acknowledgements wait behind the receiver's own uploads. A delay-based
//! controller that reads the round trip yields to both, so between two
//! home peers that both upload it holds its window small while its own
//! queue is empty. While a connection is sending, its link stamps a
//! datagram every [`STAMP_EVERY`]; the peer echoes each with the time it
//! arrived by its own clock; the rise of that difference over its least
//! value is the queue on the way there alone, which the controller then
//! reads ([`super::yielding`]).
//!
//! [`OneWay`] holds one connection's decisions, without IO;
//! [`ForwardDelay`] is what its link and its controller share.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use minimodel_wire::Datagram;

/// A sending connection stamps this often.
pub const STAMP_EVERY: Duration = Duration::from_millis(50);
/// A measurement is the controller's input for this long.
pub const FRESH_FOR: Duration = Duration::from_millis(500);
/// A connection counts as sending for this long after an acknowledgement
/// of data sent while it had more to send.
pub const ACTIVE_FOR: Duration = Duration::from_millis(250);
/// The least delay is kept over the current and the last window of this
/// length, so that the drift of one clock against the other (tens of
/// microseconds a second) cannot build up (LEDBAT keeps minutes, for the
/// same reason).
pub const BASE_WINDOW: Duration = Duration::from_secs(30);
/// An echo of a stamp older than this (or from our future) is dropped.
pub const STAMP_MAX_AGE: Duration = Duration::from_secs(10);
/// Echoes sent at most this many a second: twice what a peer stamping
/// every [`STAMP_EVERY`] asks for; one that stamps faster gets no more.
pub const ECHO_RATE: f64 = 40.0;
/// Echoes sent at most this many at once.
pub const ECHO_BURST: f64 = 10.0;

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Microseconds since the process's epoch, plus one (0 is "never").
fn stamp_of(at: Instant) -> u64 {
    at.saturating_duration_since(*EPOCH)
        .as_micros()
        .min(u128::from(u64::MAX - 1)) as u64
        + 1
}

fn since(stamp: u64, now: Instant) -> Option<Duration> {
    (stamp != 0).then(|| Duration::from_micros(stamp_of(now).saturating_sub(stamp)))
}

/// What a connection's link measures and its controller reads.
#[derive(Debug, Default)]
pub struct ForwardDelay {
    queuing_micros: AtomicU64,
    measured_at: AtomicU64,
    active_at: AtomicU64,
    wake: tokio::sync::Notify,
}

impl ForwardDelay {
    /// The controller saw an acknowledgement of data sent while the
    /// connection had more to send: stamps go out from now on.
    pub fn set_active(&self, now: Instant) {
        let before = self.active_at.swap(stamp_of(now), Ordering::Relaxed);
        if since(before, now).is_none_or(|idle| idle >= ACTIVE_FOR) {
            self.wake.notify_one();
        }
    }

    /// Whether the connection is sending.
    pub fn is_active(&self, now: Instant) -> bool {
        since(self.active_at.load(Ordering::Relaxed), now).is_some_and(|idle| idle < ACTIVE_FOR)
    }

    /// Waits until the connection starts sending.
    pub async fn activated(&self) {
        self.wake.notified().await;
    }

    /// The link measured `queuing` on the way to the peer.
    pub fn record(&self, queuing: Duration, now: Instant) {
        let micros = queuing.as_micros().min(u128::from(u64::MAX)) as u64;
        self.queuing_micros.store(micros, Ordering::Relaxed);
        self.measured_at.store(stamp_of(now), Ordering::Relaxed);
    }

    /// The forward queuing delay, if measured within [`FRESH_FOR`].
    pub fn fresh(&self, now: Instant) -> Option<Duration> {
        let age = since(self.measured_at.load(Ordering::Relaxed), now)?;
        (age < FRESH_FOR)
            .then(|| Duration::from_micros(self.queuing_micros.load(Ordering::Relaxed)))
    }
}

/// The queuing delay a controller acts on: the one-way figure where one
/// is fresh, counted only up to the round trip's rise (`latest`: the
/// larger of its latest sample and the smoothed one, less the least), so
/// that a peer echoing false times can make it shorter, never longer;
/// otherwise the smoothed round trip's rise.
pub fn queuing(forward: Option<Duration>, smoothed: Duration, latest: Duration) -> Duration {
    forward.map_or(smoothed, |forward| forward.min(latest))
}

/// What a received datagram asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Send this echo back.
    Echo(Datagram),
    /// The peer's echo gave the queue on the way there.
    Queuing(Duration),
    /// Nothing to do: it did not decode, echoes were over their rate, or
    /// the echo was of no stamp of ours.
    Dropped,
}

/// One connection's stamps and echoes: when to stamp, what an echo
/// measures, how many echoes to send.
#[derive(Debug, Clone)]
pub struct OneWay {
    epoch: Instant,
    next_stamp: Instant,
    /// The least delay seen in the current window and in the last.
    base: [Option<i128>; 2],
    window_from: Instant,
    echo_tokens: f64,
    echo_at: Instant,
}

impl OneWay {
    /// A connection's, from `now` (its clock counts from here).
    pub fn new(now: Instant) -> Self {
        Self {
            epoch: now,
            next_stamp: now,
            base: [None, None],
            window_from: now,
            echo_tokens: ECHO_BURST,
            echo_at: now,
        }
    }

    fn clock(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch)
            .as_micros()
            .min(u128::from(u64::MAX)) as u64
    }

    /// The stamp to send at `now`, if the connection is `sending` and one
    /// is due.
    pub fn poll_stamp(&mut self, now: Instant, sending: bool) -> Option<Datagram> {
        if !sending || now < self.next_stamp {
            return None;
        }
        self.next_stamp = now + STAMP_EVERY;
        Some(Datagram::Stamp {
            sent: self.clock(now),
        })
    }

    /// When the next stamp is due (while sending).
    pub fn next_stamp(&self) -> Instant {
        self.next_stamp
    }

    /// A datagram arrived at `now`.
    pub fn on_datagram(&mut self, bytes: &[u8], now: Instant) -> Handled {
        match Datagram::decode(bytes) {
            Ok(Datagram::Stamp { sent }) => {
                self.refill(now);
                if self.echo_tokens < 1.0 {
                    return Handled::Dropped;
                }
                self.echo_tokens -= 1.0;
                Handled::Echo(Datagram::Echo {
                    sent,
                    received: self.clock(now),
                })
            }
            Ok(Datagram::Echo { sent, received }) => self.on_echo(sent, received, now),
            Err(_) => Handled::Dropped,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.echo_at).as_secs_f64();
        self.echo_tokens = (self.echo_tokens + elapsed * ECHO_RATE).min(ECHO_BURST);
        self.echo_at = now;
    }

    fn on_echo(&mut self, sent: u64, received: u64, now: Instant) -> Handled {
        let clock = self.clock(now);
        let max_age = STAMP_MAX_AGE.as_micros() as u64;
        if sent > clock || clock - sent > max_age {
            return Handled::Dropped;
        }
        // The one-way delay plus the offset between the two clocks.
        let delay = i128::from(received) - i128::from(sent);
        if now.saturating_duration_since(self.window_from) >= BASE_WINDOW {
            self.base = [None, self.base[0]];
            self.window_from = now;
        }
        self.base[0] = Some(self.base[0].map_or(delay, |least| least.min(delay)));
        let least = self.base.iter().flatten().min().copied().unwrap_or(delay);
        let queuing = (delay - least).clamp(0, i128::from(u64::MAX)) as u64;
        Handled::Queuing(Duration::from_micros(queuing))
    }
}

#[cfg(test)]
#[path = "oneway_tests.rs"]
mod tests;
