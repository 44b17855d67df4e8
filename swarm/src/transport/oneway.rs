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
//! [`OneWay`] holds one connection's decisions, without IO; [`run`] is
//! its IO, a task per link; [`ForwardDelay`] is what that task and the
//! connection's controller share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use minimodel_node::upload::TokenBucket;
use minimodel_wire::Datagram;

/// A sending connection stamps this often (the spec allows every 50 ms;
/// at 50 ms the echoes of a fetch from 200 seeders cost it 7 % more CPU
/// per GiB, `docs/performance.md`).
pub const STAMP_EVERY: Duration = Duration::from_millis(100);
/// A measurement is the controller's input for this long.
pub const FRESH_FOR: Duration = Duration::from_millis(500);
/// A connection counts as sending for this long after an acknowledgement
/// of data sent while it had more to send.
pub const ACTIVE_FOR: Duration = Duration::from_millis(250);
/// The least delay seen may rise by at most this much a second since it
/// was last confirmed: enough for the drift of one clock against the
/// other (crystals keep within 100 parts per million), far too little to
/// take a standing queue for the path (50 ms would take over eight
/// minutes of uploading without a moment's empty queue).
pub const BASE_DRIFT_PER_SECOND: Duration = Duration::from_micros(100);
/// While its connection is idle, a link's stamper looks this often for a
/// new controller (quinn builds one when the connection moves to a new
/// address; the old one is then never active again).
pub const RECHECK_IDLE: Duration = Duration::from_secs(10);
/// An echo of a stamp older than this (or from our future) is dropped.
pub const STAMP_MAX_AGE: Duration = Duration::from_secs(10);
/// Echoes sent at most this many a second: twice what a peer stamping
/// as often as the spec allows (every 50 ms) asks for; one that stamps
/// faster gets no more.
pub const ECHO_RATE: u64 = 40;
/// Echoes sent at most this many at once.
pub const ECHO_BURST: u64 = 10;
/// Echoes a process sends at most this many a second over all its
/// connections, this many at once: what echoing costs a node stays the
/// same however many peers upload to it (a fetch from 200 seeders echoed
/// 2,000 a second). Beyond it, stamps go unanswered and their senders'
/// controllers read the round trip, as without stamps.
pub const PROCESS_ECHO_RATE: u64 = 200;
/// See [`PROCESS_ECHO_RATE`].
pub const PROCESS_ECHO_BURST: u64 = 50;

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

/// The process's echo budget ([`PROCESS_ECHO_RATE`]).
static PROCESS_ECHOES: LazyLock<Mutex<TokenBucket>> = LazyLock::new(|| {
    Mutex::new(TokenBucket::new(
        PROCESS_ECHO_RATE,
        PROCESS_ECHO_BURST,
        Instant::now(),
    ))
});

fn process_echo(now: Instant) -> bool {
    // The bucket holds plain numbers: a panic while it was locked leaves
    // nothing half-updated.
    PROCESS_ECHOES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .try_take(1, now)
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
    /// The least delay seen (plus the drift allowed since), in
    /// microseconds, and when it was last updated.
    base: Option<(i128, Instant)>,
    echoes: TokenBucket,
}

impl OneWay {
    /// A connection's, from `now` (its clock counts from here).
    pub fn new(now: Instant) -> Self {
        Self {
            epoch: now,
            next_stamp: now,
            base: None,
            echoes: TokenBucket::new(ECHO_RATE, ECHO_BURST, now),
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

    /// A datagram arrived at `now`; `process_budget` says whether the
    /// process may send one more echo (asked only when this connection
    /// may).
    pub fn on_datagram(
        &mut self,
        bytes: &[u8],
        now: Instant,
        process_budget: impl FnOnce(Instant) -> bool,
    ) -> Handled {
        match Datagram::decode(bytes) {
            Ok(Datagram::Stamp { sent }) => {
                if !self.echoes.try_take(1, now) || !process_budget(now) {
                    return Handled::Dropped;
                }
                Handled::Echo(Datagram::Echo {
                    sent,
                    received: self.clock(now),
                })
            }
            Ok(Datagram::Echo { sent, received }) => self.on_echo(sent, received, now),
            Err(_) => Handled::Dropped,
        }
    }

    fn on_echo(&mut self, sent: u64, received: u64, now: Instant) -> Handled {
        let clock = self.clock(now);
        let max_age = STAMP_MAX_AGE.as_micros() as u64;
        if sent > clock || clock - sent > max_age {
            return Handled::Dropped;
        }
        // The one-way delay plus the offset between the two clocks.
        let delay = i128::from(received) - i128::from(sent);
        let least = self.base.map_or(delay, |(least, at)| {
            let drift = now.saturating_duration_since(at).as_secs_f64()
                * BASE_DRIFT_PER_SECOND.as_micros() as f64;
            (least + drift as i128).min(delay)
        });
        self.base = Some((least, now));
        let queuing = (delay - least).clamp(0, i128::from(u64::MAX)) as u64;
        Handled::Queuing(Duration::from_micros(queuing))
    }
}

/// A connection's delay stamper, the IO of [`OneWay`]: stamps while the
/// connection's controller says it is sending, echoes the peer's stamps
/// and hands the controller what the echoes measure; ends with the
/// connection. Every link runs one.
pub async fn run(connection: quinn::Connection) {
    use super::yielding::YieldingController;

    // Another controller reads no stamps, but the peer's are echoed.
    let mut forward = YieldingController::forward_delay(&connection);
    let mut one_way = OneWay::new(Instant::now());
    loop {
        let now = Instant::now();
        let sending = forward.as_ref().is_some_and(|f| f.is_active(now));
        if let Some(stamp) = one_way.poll_stamp(now, sending) {
            // A datagram that does not fit is dropped: stamps are advisory.
            let _ = connection.send_datagram(stamp.encode().into());
        }
        let next = one_way.next_stamp();
        let due = async {
            match &forward {
                Some(_) if sending => tokio::time::sleep_until(next.into()).await,
                Some(forward) => {
                    let _ = tokio::time::timeout(RECHECK_IDLE, forward.activated()).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            datagram = connection.read_datagram() => {
                let Ok(bytes) = datagram else { return };
                let now = Instant::now();
                match one_way.on_datagram(&bytes, now, process_echo) {
                    Handled::Echo(echo) => {
                        let _ = connection.send_datagram(echo.encode().into());
                    }
                    Handled::Queuing(queuing) => {
                        if let Some(forward) = &forward {
                            forward.record(queuing, now);
                        }
                    }
                    Handled::Dropped => {}
                }
            }
            () = due => {
                // A connection that moved to a new address has a new
                // controller: look again whenever this one was idle.
                if !sending && forward.is_some() {
                    forward = YieldingController::forward_delay(&connection);
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "oneway_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "oneway_quic_tests.rs"]
mod quic_tests;
