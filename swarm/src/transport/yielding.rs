//! The default congestion controller: delay-based, so that what a node
//! uploads keeps the queue at its own uplink short.
//!
//! A home uplink (2 to 20 Mbit) is slower than what the node downloads, and
//! the acknowledgements of those downloads leave through the same uplink: a
//! loss-based controller (CUBIC) fills the uplink's queue until it drops a
//! packet, and every acknowledgement then waits behind up to the whole
//! queue, so the node's downloads slow down because of its uploads. This
//! controller keeps the queuing delay it causes near [`TARGET`], as
//! LEDBAT (RFC 6817, uTP's controller) does, and treats a loss while the
//! queue is within the target, among light losses, as noise of the path
//! (a radio link), not congestion.
//!
//! The queuing delay is the rise of the one-way delay to the peer over its
//! least value, where the peer echoes delay stamps ([`super::oneway`]):
//! the round trip would add the wait of the acknowledgements in the
//! peer's own uplink queue, behind the peer's uploads, which this
//! connection can do nothing about. Otherwise (a peer that does not echo,
//! no measurement yet) it is quinn's smoothed round trip (acknowledgement
//! delays taken out) less the least round trip seen on the connection.
//! The one-way figure counts only up to the round trip's, so a peer
//! echoing false times can make the controller read a shorter queue, not
//! a longer one than the round trip shows.
//!
//! [`Yielding`] holds the decisions; [`YieldingController`] is quinn's
//! adapter.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::congestion::{Controller, ControllerFactory, ControllerMetrics};

use super::oneway::ForwardDelay;

/// The queuing delay the controller aims at.
pub const TARGET: Duration = Duration::from_millis(50);

/// Window change per round trip at zero queuing delay (and, negative, at
/// twice the target or more): an eighth of the window, at least a
/// datagram. LEDBAT grows by one datagram a round trip, which after a loss
/// takes minutes to refill a long fat path; the queuing delay, not the
/// growth rate, is what keeps this controller from filling queues.
const GAIN: f64 = 1.0 / 8.0;

/// The window after a loss counted as congestion (the queue longer than
/// the connection's target, or among heavy losses), and after any other
/// loss, noise of the path (at 1 % loss a loss every round trip then costs
/// less than the growth gains). The window holds the queue near the
/// target, so a loss below it is not its own queue overflowing (counting
/// one above half the target as congestion: 0.574 and 0.543 of the caps
/// through 1 % loss against 0.603 and 0.563, `docs/transport.md` 4.5).
const CONGESTION_DECREASE: f64 = 0.5;
const NOISE_DECREASE: f64 = 0.95;

/// The queue a connection aims at is the target times the sending
/// connections' mean window over its own, within these bounds.
const FAIR_MIN: f64 = 0.5;
const FAIR_MAX: f64 = 1.5;

/// ... and times its rate's factor: [`RATE_SLOPE`] less for each
/// doubling of its rate (its window over the round trip) above
/// [`RATE_REFERENCE`] bytes a second, as much more for each halving
/// below, within [`RATE_MIN`] and [`RATE_MAX`] (from 4 MB/s up and from
/// 435 KB/s down); the whole factor at most [`FAIR_MAX`]. Connections of
/// two processes through one uplink see the same queue and know nothing
/// of each other's windows: with one target for both, any split is at
/// rest once the queue is at the target, and two seeds kept 0.16 to 0.47
/// of a 20 Mbit uplink for the lesser, where slow start left them
/// (`share-default-default`). With the faster aiming at the shorter
/// queue, at the queue they share the faster shrinks and the slower
/// grows until their rates are equal: 0.479, 0.498 and 0.480 for the
/// lesser. The slope is what the queue's reading can tell apart: at a
/// tenth a doubling (2.5 ms between rates 1.4 times apart) the lesser
/// kept 0.361 to 0.429. Outside the range nothing evens them out: two
/// processes each sending over 4 MB/s both aim at half the target. One
/// connection alone keeps 25 ms of queue at 32 Mbit and over, 33 ms at
/// 20 Mbit and 65 ms at 3.5 Mbit and under.
const RATE_REFERENCE: f64 = 1_000_000.0;
const RATE_SLOPE: f64 = 0.25;
const RATE_MIN: f64 = 0.5;
const RATE_MAX: f64 = 1.3;

/// A loss counts as congestion, whatever the queue, once the last
/// [`HEAVY_LOSS_ROUNDS`] round trips lost more than this share of what they
/// carried and at least [`HEAVY_LOSS_DATAGRAMS`]: a bottleneck with a
/// shallow buffer drops packets before any queue shows, and a window that
/// grows by an eighth a round trip past it loses about a ninth of what it
/// sends. Random loss of a radio or a long path (0.1 to 2 %) stays below
/// it: at 2 % random loss the share passes it by chance in one round trip
/// of 13,000 at a window of 100 datagrams, one of 10^10 at 300 (binomial
/// tails). The rule before, 2 % over two round trips and 8 datagrams,
/// was passed by 1 % of random loss in one round trip of 120 to 1,000
/// (windows of 300 and 100 datagrams): several halvings in a 7 s fetch
/// through 50 ms and 1 % loss (`docs/transport.md` 4.5).
const HEAVY_LOSS: f64 = 0.05;
const HEAVY_LOSS_DATAGRAMS: u64 = 16;
/// The round trips the share of loss is taken over.
const HEAVY_LOSS_ROUNDS: usize = 4;

/// A queue that stays above [`COMPETE_ABOVE`] for [`COMPETE_AFTER`] (and
/// at least [`COMPETE_ROUNDS`] round trips), measured one way while this
/// connection sends, is not one this controller keeps: its own queue
/// stays near the target, and it has backed off all the while. Another
/// flow fills the bottleneck's buffer (a loss-based one: CUBIC, a TCP
/// download), and yielding to it would leave this connection nothing
/// (0.004 of a shared 20 Mbit uplink against CUBIC). The controller then
/// competes as CUBIC does (RFC 8312: the window grows along a cubic curve
/// from where it last shrank, never slower than NewReno would, and
/// shrinks to [`COMPETE_DECREASE`] of itself at a loss with the queue
/// over the target), which shares a bottleneck with CUBIC and with
/// itself. It starts from the window it had when the queue rose, not
/// from what yielding left of it, and joins as a new CUBIC flow does: in
/// slow start until its first loss counted as congestion (a loss with
/// the queue within the target is noise still; a probe ends no slow
/// start). The threshold is above the longest
/// queue one of this process's connections may aim at (the target times
/// [`FAIR_MAX`], 75 ms), so that the process's own connections sharing an
/// uplink never take their own queue for another flow's; a loss-based
/// flow keeps a tail-drop buffer of 100 ms between 70 and 100 ms.
const COMPETE_ABOVE: Duration = Duration::from_millis(80);
/// The window after a loss counted as congestion while competing: CUBIC's
/// β, 0.7.
const COMPETE_DECREASE: f64 = 0.7;
/// CUBIC's C: datagrams per second cubed.
const CUBIC_C: f64 = 0.4;
const COMPETE_AFTER: Duration = Duration::from_secs(1);
const COMPETE_ROUNDS: u64 = 8;

/// While competing, every [`PROBE_EVERY`] the window drops to its least
/// for [`PROBE_FOR`] (at least [`PROBE_ROUNDS`] round trips), as BBR's
/// ProbeRTT does: a queue that then falls below half the target was its
/// own, the other flow has gone, and the controller yields again (a
/// competing window alone would fill the buffer for ever). One that stays
/// up is the other flow's, and the window comes back to where it was. The
/// probes of one process's connections start together (on multiples of
/// [`PROBE_EVERY`] from one epoch): connections that share an uplink and
/// all compete drain it together, and so find out that the queue was
/// theirs.
const PROBE_EVERY: Duration = Duration::from_secs(5);
const PROBE_FOR: Duration = Duration::from_millis(300);
const PROBE_ROUNDS: u64 = 3;

/// Whether the controller yields to queues or competes for a bottleneck
/// that another flow keeps full.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Delay-based: the queue this connection causes near the target.
    Yielding,
    /// Loss-based against a flow that fills the queue; the next probe at
    /// `probe_at`.
    Competing {
        /// When the next probe starts.
        probe_at: Instant,
        /// CUBIC's curve: the window it last shrank from, in bytes ...
        w_max: u64,
        /// ... when it shrank ...
        epoch: Instant,
        /// ... and the seconds the curve takes to climb back to it.
        k: f64,
    },
    /// The window at its least, to see whose queue it is.
    Probing {
        /// The probe ends then, and after `rounds_until` round trips.
        until: Instant,
        /// The probe ends once the round trips counted reach this.
        rounds_until: u64,
        /// The window to come back to.
        saved: u64,
        /// The shortest queue seen meanwhile.
        least: Duration,
        /// CUBIC's curve to go on along (`w_max`, `epoch`, `k` of
        /// [`Mode::Competing`]).
        curve: (u64, Instant, f64),
        /// Whether it was still in the slow start it joins with (no loss
        /// counted as congestion since it began to compete): coming back
        /// to compete, it goes on with it.
        joining: bool,
    },
}

/// The first window, as quinn's controllers: 10 datagrams of 1200 bytes,
/// or 14,720 bytes, whichever is smaller (RFC 9002 §7.2).
const INITIAL_WINDOW: u64 = 12_000;

/// What [`Yielding::on_loss`] made of a loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossVerdict {
    /// Persistent congestion: the window is down to two datagrams.
    Persistent,
    /// A packet sent before the last reduction: part of it, no change.
    Answered,
    /// Congestion (the queue over the target, or heavy loss): halved.
    Congestion,
    /// Noise of the path: trimmed, and it goes on growing.
    Noise,
}

/// The controller's state and decisions, without quinn's types.
#[derive(Debug, Clone)]
pub struct Yielding {
    mtu: u64,
    window: u64,
    /// Slow start ends here (once the queue passes half the target, or at
    /// a loss counted as congestion).
    ssthresh: u64,
    /// A loss of a packet sent before this time belongs to the last
    /// reduction.
    recovery_start: Instant,
    /// Acknowledgements of packets sent before this time do not grow the
    /// window: they left before the last reduction for congestion. A
    /// reduction for noise does not move it, or a path that loses a packet
    /// every round trip would never grow again.
    growth_from: Instant,
    /// Packets sent from this time on belong to the current round trip;
    /// the first of them acknowledged ends it.
    round_from: Instant,
    /// Bytes acknowledged and lost in the current round trip and in the
    /// ones before it, the current first.
    acked: [u64; HEAVY_LOSS_ROUNDS],
    lost: [u64; HEAVY_LOSS_ROUNDS],
    /// The queue it aims at: [`TARGET`] alone, otherwise set by its window
    /// against the sending connections' mean (see [`Yielding::on_ack`]).
    target: Duration,
    /// Round trips counted so far.
    rounds: u64,
    /// Whether the queue it reads is measured one way (the peer echoes
    /// delay stamps): only such a queue is another flow's for sure (the
    /// round trip holds the peer's own uplink queue too).
    one_way: bool,
    /// Since when, from which round trip and from which window, a one-way
    /// queue has stayed above [`COMPETE_ABOVE`] while it sent.
    above_since: Option<(Instant, u64, u64)>,
    /// The window of the last acknowledgement with the queue within the
    /// target while it sent: where it was before another flow's queue
    /// made it yield.
    calm_window: u64,
    /// The path's smoothed round trip (CUBIC's curve is in round trips).
    rtt: Duration,
    mode: Mode,
    /// Probes start on multiples of [`PROBE_EVERY`] from here.
    epoch: Instant,
}

impl Yielding {
    /// A controller for a path with datagrams of `mtu` bytes, at `now`,
    /// whose probes start on multiples of [`PROBE_EVERY`] from `now`.
    pub fn new(now: Instant, mtu: u16) -> Self {
        Self::with_epoch(now, mtu, now)
    }

    /// The same, its probes on multiples of [`PROBE_EVERY`] from `epoch`
    /// (a process's connections share one).
    pub fn with_epoch(now: Instant, mtu: u16, epoch: Instant) -> Self {
        Self {
            mtu: u64::from(mtu),
            window: INITIAL_WINDOW,
            ssthresh: u64::MAX,
            recovery_start: now,
            growth_from: now,
            round_from: now,
            acked: [0; HEAVY_LOSS_ROUNDS],
            lost: [0; HEAVY_LOSS_ROUNDS],
            target: TARGET,
            rounds: 0,
            one_way: false,
            above_since: None,
            calm_window: INITIAL_WINDOW,
            rtt: Duration::from_millis(100),
            mode: Mode::Yielding,
            epoch,
        }
    }

    /// The path's smoothed round trip, for CUBIC's curve while competing.
    pub fn set_rtt(&mut self, rtt: Duration) {
        if !rtt.is_zero() {
            self.rtt = rtt;
        }
    }

    /// Competing from `now`, CUBIC's curve climbing from `w_max` (none
    /// to climb back to: it grows from there at once).
    fn compete(&mut self, now: Instant, w_max: u64, probe_at: Instant) {
        self.mode = Mode::Competing {
            probe_at,
            w_max,
            epoch: now,
            k: 0.0,
        };
    }

    /// CUBIC's window at `now` (RFC 8312, 4.1 and 4.2: the cubic curve one
    /// round trip ahead, at least NewReno's estimate), in bytes.
    fn cubic_target(&self, now: Instant, w_max: u64, epoch: Instant, k: f64) -> f64 {
        let mtu = self.mtu as f64;
        let rtt = self.rtt.as_secs_f64();
        let t = now.saturating_duration_since(epoch).as_secs_f64();
        let w_max_mss = w_max as f64 / mtu;
        let cubic = CUBIC_C * (t + rtt - k).powi(3) + w_max_mss;
        let beta = COMPETE_DECREASE;
        let reno = w_max_mss * beta + 3.0 * (1.0 - beta) / (1.0 + beta) * t / rtt;
        cubic.max(reno) * mtu
    }

    /// The first probe boundary after `now`.
    fn next_probe(&self, now: Instant) -> Instant {
        let since = now.saturating_duration_since(self.epoch).as_secs_f64();
        let every = PROBE_EVERY.as_secs_f64();
        let periods = (since / every).floor() + 1.0;
        self.epoch + PROBE_EVERY.mul_f64(periods)
    }

    /// Whether it yields, competes or probes.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether the queues it is given from now on are measured one way.
    pub fn set_one_way(&mut self, one_way: bool) {
        self.one_way = one_way;
    }

    /// Bytes that may be in flight.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Whether the window still doubles each round trip.
    pub fn in_slow_start(&self) -> bool {
        self.window < self.ssthresh
    }

    fn minimum_window(&self) -> u64 {
        2 * self.mtu
    }

    /// `bytes` sent at `sent` were acknowledged; `queuing` is the delay
    /// the path's queues add now; `share` is the mean window of the
    /// process's connections that are sending ([`Sending`]; this window
    /// when it sends alone). An application-limited sender (nothing to
    /// send) does not grow its window.
    ///
    /// A window larger than `share` aims at a shorter queue than the
    /// target, a smaller one at a longer (at most [`FAIR_MIN`] and
    /// [`FAIR_MAX`] times the target): connections sharing one uplink
    /// see the same queue, so the larger shrinks and the smaller grows
    /// until they are equal. With one target for all, any split is at
    /// rest once the queue is at the target: two uploads through one
    /// 20 Mbit uplink kept 0.80 to 0.84 of it for one, where slow start
    /// left them, in three runs (`share-default-default`). The faster a
    /// connection sends, the shorter the queue it aims at too (its rate's
    /// factor, [`RATE_SLOPE`]), which evens out connections of separate
    /// processes. A loss above a connection's own target (without its
    /// rate's factor) counts as congestion.
    pub fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        queuing: Duration,
        share: u64,
    ) {
        if sent >= self.round_from {
            self.round_from = now;
            self.rounds += 1;
            self.acked.rotate_right(1);
            self.acked[0] = 0;
            self.lost.rotate_right(1);
            self.lost[0] = 0;
        }
        self.acked[0] += bytes;
        if self.switch_mode(now, app_limited, queuing) {
            return;
        }
        if app_limited || sent <= self.growth_from {
            return;
        }
        if let Mode::Competing {
            w_max, epoch, k, ..
        } = self.mode
        {
            if self.in_slow_start() {
                // Until its first loss since it began to compete.
                self.window = self.window.saturating_add(bytes);
                return;
            }
            // Towards CUBIC's window, at most half the window more a round
            // trip (RFC 8312, 4.1).
            let window = self.window.max(1) as f64;
            let target = self.cubic_target(now, w_max, epoch, k).min(1.5 * window);
            if target > window {
                let step = (target - window) / window * bytes as f64;
                self.window += (step as u64).max(1);
            }
            return;
        }
        if self.in_slow_start() {
            if queuing > TARGET / 2 {
                self.ssthresh = self.window;
            } else {
                self.window += bytes;
                return;
            }
        }
        // Towards its target: up when the queue is shorter, down when it
        // is longer, in proportion, by at most GAIN of the window (or a
        // datagram) a round trip. A window over the sending connections'
        // mean aims at a shorter queue, one under it at a longer: at the
        // queue they share, the larger shrinks and the smaller grows until
        // they are equal. With no queue every one grows as if alone.
        self.target = TARGET.mul_f64(self.fair(share));
        // And shorter the faster it sends, longer the slower: connections
        // of other processes through the same uplink even out too. A loss
        // is still judged against `self.target`: the rate moves only
        // where the window rests, not what counts as congestion.
        let target = self.aim(share).as_secs_f64();
        let off_target = ((target - queuing.as_secs_f64()) / target).clamp(-1.0, 1.0);
        let step = (GAIN * self.window as f64).max(self.mtu as f64);
        let change = off_target * bytes as f64 * step / self.window as f64;
        let window = (self.window as f64 + change).max(self.minimum_window() as f64);
        self.window = window as u64;
    }

    /// The queue it aims at while yielding, given the mean window of its
    /// process's sending connections: the target times its window's
    /// factor against that mean and its rate's ([`RATE_SLOPE`]), at most
    /// [`FAIR_MAX`] times the target.
    pub fn aim(&self, share: u64) -> Duration {
        TARGET.mul_f64((self.fair(share) * self.rate_factor()).min(FAIR_MAX))
    }

    /// The factor of its window against the mean `share` on the target.
    fn fair(&self, share: u64) -> f64 {
        (share as f64 / self.window.max(1) as f64).clamp(FAIR_MIN, FAIR_MAX)
    }

    /// The factor of its rate on the queue it aims at ([`RATE_SLOPE`]).
    fn rate_factor(&self) -> f64 {
        let rate = self.window.max(1) as f64 / self.rtt.as_secs_f64();
        (1.0 - RATE_SLOPE * (rate / RATE_REFERENCE).log2()).clamp(RATE_MIN, RATE_MAX)
    }

    /// Moves between yielding, competing and probing (see [`Mode`]);
    /// true when the window is the probe's and the acknowledgement
    /// changes nothing else.
    fn switch_mode(&mut self, now: Instant, app_limited: bool, queuing: Duration) -> bool {
        match self.mode {
            Mode::Yielding => {
                if !self.one_way || app_limited || queuing < TARGET {
                    if queuing < TARGET {
                        self.above_since = None;
                        if !app_limited {
                            self.calm_window = self.window;
                        }
                    }
                    return false;
                }
                if queuing <= COMPETE_ABOVE {
                    return false;
                }
                let (since, round, before) =
                    *self
                        .above_since
                        .get_or_insert((now, self.rounds, self.window));
                if now.saturating_duration_since(since) >= COMPETE_AFTER
                    && self.rounds - round >= COMPETE_ROUNDS
                {
                    self.above_since = None;
                    // Where it was before it yielded to the other flow:
                    // when the queue was last within the target (the
                    // window when the queue passed the threshold had
                    // yielded for a while already: 0.21 of a shared
                    // uplink against CUBIC in one run of four).
                    self.window = self.window.max(before).max(self.calm_window);
                    // And from there as a new CUBIC flow joins a full
                    // bottleneck: slow start until its first loss, which
                    // the other flow's drops share. Along CUBIC's curve
                    // from a window a sixth to an eighth of the other
                    // flow's, the shares took 15 s to even out, most of a
                    // 20 s transfer (0.23 to 0.50 of the uplink in eight
                    // runs of `share-default-cubic`).
                    self.ssthresh = u64::MAX;
                    self.compete(now, self.window, self.next_probe(now + PROBE_FOR));
                }
                false
            }
            Mode::Competing {
                probe_at,
                w_max,
                epoch,
                k,
            } => {
                if now >= probe_at {
                    self.mode = Mode::Probing {
                        until: now + PROBE_FOR,
                        rounds_until: self.rounds + PROBE_ROUNDS,
                        saved: self.window,
                        least: queuing,
                        curve: (w_max, epoch, k),
                        joining: self.in_slow_start(),
                    };
                    self.window = self.minimum_window();
                    return true;
                }
                false
            }
            Mode::Probing {
                until,
                rounds_until,
                saved,
                least,
                curve,
                joining,
            } => {
                let least = least.min(queuing);
                if now < until || self.rounds < rounds_until {
                    self.mode = Mode::Probing {
                        until,
                        rounds_until,
                        saved,
                        least,
                        curve,
                        joining,
                    };
                    return true;
                }
                self.window = saved;
                self.ssthresh = saved;
                // Acknowledgements of what left during the probe do not
                // grow the window it comes back to.
                self.growth_from = now;
                if least < TARGET / 2 {
                    self.mode = Mode::Yielding;
                } else {
                    // Along the same curve: the probe is no loss, and
                    // ends no slow start.
                    if joining {
                        self.ssthresh = u64::MAX;
                    }
                    let (w_max, epoch, k) = curve;
                    self.mode = Mode::Competing {
                        probe_at: self.next_probe(now),
                        w_max,
                        epoch,
                        k,
                    };
                }
                true
            }
        }
    }

    /// `lost` bytes of packets sent up to `sent` were found lost (at
    /// `now`), with the queue at `queuing`. One reduction per round trip:
    /// losses of packets sent before the last reduction are part of it.
    ///
    /// A loss with the queue over this connection's target, or among
    /// heavy losses, is congestion: the window halves, slow start ends,
    /// acknowledgements of what was sent before do not grow it, and the
    /// losses counted so far are forgotten (they are answered). Any other
    /// is noise of the path: the window is trimmed and goes on growing, in
    /// slow start too (ending slow start at the first noise loss left a
    /// path with 1 % loss at a window of 20 datagrams, to grow by an
    /// eighth a round trip for seconds).
    pub fn on_loss(
        &mut self,
        now: Instant,
        sent: Instant,
        persistent: bool,
        lost: u64,
        queuing: Duration,
    ) -> LossVerdict {
        self.lost[0] += lost;
        if persistent {
            self.window = self.minimum_window();
            self.ssthresh = self.window;
            self.recovery_start = now;
            self.growth_from = now;
            return LossVerdict::Persistent;
        }
        if sent <= self.recovery_start || matches!(self.mode, Mode::Probing { .. }) {
            return LossVerdict::Answered;
        }
        self.recovery_start = now;
        let competing = matches!(self.mode, Mode::Competing { .. });
        // Competing, the queue is the other flow's as much as ours: a loss
        // with it over the base target is the buffer overflowing.
        let target = if competing { TARGET } else { self.target };
        if queuing > target || self.heavy_loss() {
            self.growth_from = now;
            if let Mode::Competing { probe_at, .. } = self.mode {
                // CUBIC: the curve climbs back to where the window was.
                let w_max = self.window;
                let k =
                    (w_max as f64 / self.mtu as f64 * (1.0 - COMPETE_DECREASE) / CUBIC_C).cbrt();
                self.mode = Mode::Competing {
                    probe_at,
                    w_max,
                    epoch: now,
                    k,
                };
            }
            self.window = self.reduced(if competing {
                COMPETE_DECREASE
            } else {
                CONGESTION_DECREASE
            });
            self.ssthresh = self.window;
            self.lost = [0; HEAVY_LOSS_ROUNDS];
            self.acked = [0; HEAVY_LOSS_ROUNDS];
            LossVerdict::Congestion
        } else {
            let slow_start = self.in_slow_start();
            self.window = self.reduced(NOISE_DECREASE);
            if !slow_start {
                self.ssthresh = self.window;
            }
            LossVerdict::Noise
        }
    }

    fn reduced(&self, factor: f64) -> u64 {
        ((self.window as f64 * factor) as u64).max(self.minimum_window())
    }

    /// Whether the last [`HEAVY_LOSS_ROUNDS`] round trips lost more than
    /// [`HEAVY_LOSS`] of what they carried (and at least
    /// [`HEAVY_LOSS_DATAGRAMS`]).
    fn heavy_loss(&self) -> bool {
        let lost: u64 = self.lost.iter().sum();
        let carried = lost + self.acked.iter().sum::<u64>();
        lost >= HEAVY_LOSS_DATAGRAMS * self.mtu && lost as f64 > HEAVY_LOSS * carried as f64
    }

    /// The path's datagrams are now `mtu` bytes.
    pub fn on_mtu(&mut self, mtu: u16) {
        self.mtu = u64::from(mtu);
        self.window = self.window.max(self.minimum_window());
    }
}

/// The windows of this process's connections that are sending (an
/// acknowledgement quinn did not mark application-limited within
/// [`Sending::ACTIVE`]): a host's connections share its uplink, and each
/// aims at a queue set by its window against their mean (see
/// [`Yielding::on_ack`]). One registry for the process, not one per
/// endpoint or per transport configuration: a node's uploads leave on the
/// connections it accepted and on those it dialed alike, through one
/// uplink.
#[derive(Debug, Default)]
struct Sending {
    next_id: u64,
    /// Window and last sending acknowledgement, by connection.
    flows: std::collections::BTreeMap<u64, (u64, Instant)>,
}

impl Sending {
    /// A connection is sending for this long after an acknowledgement
    /// quinn did not mark application-limited.
    const ACTIVE: Duration = Duration::from_millis(250);
    /// A controller reads the mean (and reports its window) at most this
    /// often.
    const REFRESH: Duration = Duration::from_millis(10);

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Records `id`'s `window` at `now`; the mean window of the sending
    /// connections, its own included. Forgets the ones idle long since.
    fn update(&mut self, id: u64, window: u64, now: Instant) -> u64 {
        self.flows.insert(id, (window, now));
        let forget = Self::ACTIVE * 4;
        self.flows
            .retain(|_, (_, last)| now.saturating_duration_since(*last) < forget);
        let (sum, count) = self
            .flows
            .values()
            .filter(|(_, last)| now.saturating_duration_since(*last) < Self::ACTIVE)
            .fold((0u64, 0u64), |(sum, count), (window, _)| {
                (sum.saturating_add(*window), count + 1)
            });
        sum / count.max(1)
    }
}

fn sending() -> std::sync::MutexGuard<'static, Sending> {
    static SENDING: std::sync::Mutex<Sending> = std::sync::Mutex::new(Sending {
        next_id: 0,
        flows: std::collections::BTreeMap::new(),
    });
    // The registry holds plain numbers: a panic elsewhere while it was
    // locked leaves nothing half-updated.
    SENDING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// quinn's adapter of [`Yielding`].
#[derive(Debug)]
pub struct YieldingController {
    state: Yielding,
    /// The last queuing delay seen with an acknowledgement.
    queuing: Duration,
    /// Its key in [`Sending`], the mean window read there, and when.
    id: u64,
    share: u64,
    read_at: Option<Instant>,
    /// The queue on the way to the peer, as the connection's link
    /// measures it (shared with the link and with every clone).
    forward: Arc<ForwardDelay>,
}

impl YieldingController {
    fn new(now: Instant, mtu: u16) -> Self {
        // One epoch for the process: its connections probe together.
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let epoch = *EPOCH.get_or_init(|| now);
        let state = Yielding::with_epoch(now, mtu, epoch);
        Self {
            share: state.window(),
            state,
            queuing: Duration::ZERO,
            id: sending().id(),
            read_at: None,
            forward: Arc::default(),
        }
    }

    /// What the link of a connection with this controller measures for
    /// it; `None` for another controller.
    pub fn forward_delay(connection: &quinn::Connection) -> Option<Arc<ForwardDelay>> {
        let controller = connection.congestion_state().into_any();
        let controller = controller.downcast::<YieldingController>().ok()?;
        Some(Arc::clone(&controller.forward))
    }
}

impl Clone for YieldingController {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            queuing: self.queuing,
            id: sending().id(),
            share: self.share,
            read_at: None,
            forward: Arc::clone(&self.forward),
        }
    }
}

impl Drop for YieldingController {
    fn drop(&mut self) {
        sending().flows.remove(&self.id);
    }
}

impl Controller for YieldingController {
    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &quinn_proto::RttEstimator,
    ) {
        let forward = self.forward.fresh(now);
        self.queuing = super::oneway::queuing(
            forward,
            rtt.get().saturating_sub(rtt.min()),
            rtt.conservative().saturating_sub(rtt.min()),
        );
        self.state.set_one_way(forward.is_some());
        // The round trip with its queue, as CUBIC's acknowledgements pace
        // its NewReno estimate (the least one, a millisecond on a LAN,
        // made that estimate grow a hundred times too fast).
        self.state.set_rtt(rtt.get());
        let mode = self.state.mode();
        if !app_limited {
            self.forward.set_active(now);
        }
        if !app_limited
            && self
                .read_at
                .is_none_or(|at| now.saturating_duration_since(at) >= Sending::REFRESH)
        {
            self.share = sending().update(self.id, self.state.window(), now);
            self.read_at = Some(now);
        }
        self.state
            .on_ack(now, sent, bytes, app_limited, self.queuing, self.share);
        let changed = std::mem::discriminant(&mode) != std::mem::discriminant(&self.state.mode());
        if changed {
            tracing::debug!(
                target: "minimodel_swarm::pathtrace",
                mode = ?self.state.mode(),
                queuing_ms = self.queuing.as_secs_f64() * 1e3,
                window = self.state.window(),
                "controller"
            );
        }
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        let verdict = self.state.on_loss(
            now,
            sent,
            is_persistent_congestion,
            lost_bytes,
            self.queuing,
        );
        tracing::debug!(
            target: "minimodel_swarm::pathtrace",
            ?verdict,
            lost_bytes,
            queuing_ms = self.queuing.as_secs_f64() * 1e3,
            target_ms = self.state.target.as_secs_f64() * 1e3,
            window = self.state.window(),
            "loss"
        );
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.state.on_mtu(new_mtu);
    }

    fn window(&self) -> u64 {
        self.state.window()
    }

    fn metrics(&self) -> ControllerMetrics {
        let mut metrics = ControllerMetrics::default();
        metrics.congestion_window = self.state.window();
        metrics.ssthresh = Some(self.state.ssthresh);
        metrics
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(self.clone())
    }

    fn initial_window(&self) -> u64 {
        INITIAL_WINDOW
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// Builds a [`YieldingController`] per connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct YieldingConfig;

impl ControllerFactory for YieldingConfig {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(YieldingController::new(now, current_mtu))
    }
}

#[cfg(test)]
#[path = "yielding_tests.rs"]
mod tests;
