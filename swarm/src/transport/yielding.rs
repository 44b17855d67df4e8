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
//! The queuing delay is quinn's smoothed round trip (acknowledgement delays
//! taken out) less the least round trip seen on the connection.
//!
//! [`Yielding`] holds the decisions; [`YieldingController`] is quinn's
//! adapter.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::congestion::{Controller, ControllerFactory, ControllerMetrics};

/// The queuing delay the controller aims at.
pub const TARGET: Duration = Duration::from_millis(50);

/// Window change per round trip at zero queuing delay (and, negative, at
/// twice the target or more): an eighth of the window, at least a
/// datagram. LEDBAT grows by one datagram a round trip, which after a loss
/// takes minutes to refill a long fat path; the queuing delay, not the
/// growth rate, is what keeps this controller from filling queues.
const GAIN: f64 = 1.0 / 8.0;

/// The window after a loss while the queue is longer than the target, or
/// among heavy losses (congestion), and after any other (noise of the
/// path: a loss a round trip at 1% loss then costs less than the growth
/// gains). The window holds the queue near the target, so a loss below
/// it is not its own queue overflowing (counting one above half the
/// target as congestion: 0.574 and 0.543 of the caps through 1 % loss
/// against 0.603 and 0.563, `docs/transport.md` 4.5).
const CONGESTION_DECREASE: f64 = 0.5;
const NOISE_DECREASE: f64 = 0.95;

/// The queue a connection aims at is the target times the sending
/// connections' mean window over its own, within these bounds.
const FAIR_MIN: f64 = 0.5;
const FAIR_MAX: f64 = 1.5;

/// A loss counts as congestion, whatever the queue, once the last two
/// round trips lost more than this share of what they carried and at
/// least [`HEAVY_LOSS_DATAGRAMS`]: a bottleneck with a shallow buffer
/// drops packets before any queue shows. BBRv2 takes 2 % the same way;
/// random loss of a radio path stays below it.
const HEAVY_LOSS: f64 = 0.02;
const HEAVY_LOSS_DATAGRAMS: u64 = 8;

/// The first window, as quinn's controllers: 10 datagrams of 1200 bytes,
/// or 14,720 bytes, whichever is smaller (RFC 9002 §7.2).
const INITIAL_WINDOW: u64 = 12_000;

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
    /// one before it.
    acked: [u64; 2],
    lost: [u64; 2],
    /// The queue it aims at: [`TARGET`] alone, otherwise set by its window
    /// against the sending connections' mean (see [`Yielding::on_ack`]).
    target: Duration,
}

impl Yielding {
    /// A controller for a path with datagrams of `mtu` bytes, at `now`.
    pub fn new(now: Instant, mtu: u16) -> Self {
        Self {
            mtu: u64::from(mtu),
            window: INITIAL_WINDOW,
            ssthresh: u64::MAX,
            recovery_start: now,
            growth_from: now,
            round_from: now,
            acked: [0; 2],
            lost: [0; 2],
            target: TARGET,
        }
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
    /// left them, in three runs (`share-default-default`). A loss above
    /// a connection's own target counts as congestion.
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
            self.acked = [0, self.acked[0]];
            self.lost = [0, self.lost[0]];
        }
        self.acked[0] += bytes;
        if app_limited || sent <= self.growth_from {
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
        let fair = (share as f64 / self.window.max(1) as f64).clamp(FAIR_MIN, FAIR_MAX);
        self.target = TARGET.mul_f64(fair);
        let target = self.target.as_secs_f64();
        let off_target = ((target - queuing.as_secs_f64()) / target).clamp(-1.0, 1.0);
        let step = (GAIN * self.window as f64).max(self.mtu as f64);
        let change = off_target * bytes as f64 * step / self.window as f64;
        let window = (self.window as f64 + change).max(self.minimum_window() as f64);
        self.window = window as u64;
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
    ) {
        self.lost[0] += lost;
        if persistent {
            self.window = self.minimum_window();
            self.ssthresh = self.window;
            self.recovery_start = now;
            self.growth_from = now;
            return;
        }
        if sent <= self.recovery_start {
            return;
        }
        self.recovery_start = now;
        if queuing > self.target || self.heavy_loss() {
            self.growth_from = now;
            self.window = self.reduced(CONGESTION_DECREASE);
            self.ssthresh = self.window;
            self.lost = [0; 2];
            self.acked = [0; 2];
        } else {
            let slow_start = self.in_slow_start();
            self.window = self.reduced(NOISE_DECREASE);
            if !slow_start {
                self.ssthresh = self.window;
            }
        }
    }

    fn reduced(&self, factor: f64) -> u64 {
        ((self.window as f64 * factor) as u64).max(self.minimum_window())
    }

    /// Whether the last two round trips lost more than [`HEAVY_LOSS`] of
    /// what they carried (and at least [`HEAVY_LOSS_DATAGRAMS`]).
    fn heavy_loss(&self) -> bool {
        let lost = self.lost[0] + self.lost[1];
        let carried = lost + self.acked[0] + self.acked[1];
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
}

impl YieldingController {
    fn new(now: Instant, mtu: u16) -> Self {
        let state = Yielding::new(now, mtu);
        Self {
            share: state.window(),
            state,
            queuing: Duration::ZERO,
            id: sending().id(),
            read_at: None,
        }
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
        self.queuing = rtt.get().saturating_sub(rtt.min());
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
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.state.on_loss(
            now,
            sent,
            is_persistent_congestion,
            lost_bytes,
            self.queuing,
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
mod tests {
    use super::*;

    const MTU: u16 = 1200;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Bytes lost in one loss event of these tests: one datagram.
    const LOST: u64 = MTU as u64;

    /// One round trip from `now`: the window's datagrams, sent at `now`,
    /// acknowledged 100 ms later with the queue at `queuing`; the time then.
    fn rtt_of_acks(c: &mut Yielding, now: Instant, queuing: Duration) -> Instant {
        let acked = now + ms(100);
        for _ in 0..(c.window() / u64::from(MTU)).max(1) {
            c.on_ack(acked, now, u64::from(MTU), false, queuing, c.window());
        }
        acked
    }

    /// Acknowledges a whole window, one datagram at a time, with the queue
    /// at `queuing`; the new window.
    fn round_trip(c: &mut Yielding, start: Instant, queuing: Duration) -> u64 {
        let datagrams = c.window() / u64::from(MTU);
        for _ in 0..datagrams.max(1) {
            c.on_ack(
                start + ms(1),
                start + ms(1),
                u64::from(MTU),
                false,
                queuing,
                c.window(),
            );
        }
        c.window()
    }

    #[test]
    fn slow_start_doubles_until_the_queue_passes_half_the_target() {
        let start = Instant::now();
        let mut c = Yielding::new(start, MTU);
        let first = c.window();
        assert_eq!(round_trip(&mut c, start, ms(0)), 2 * first);
        assert!(c.in_slow_start());
        let before = c.window();
        round_trip(&mut c, start, TARGET / 2 + ms(1));
        assert!(
            !c.in_slow_start(),
            "a queue of over half the target ends it"
        );
        assert!(
            c.window() as f64 <= before as f64 * (1.0 + GAIN) + 1.0,
            "{}",
            c.window()
        );
    }

    #[test]
    fn the_window_grows_below_the_target_and_shrinks_above_it() {
        let start = Instant::now();
        let mut c = Yielding::new(start, MTU);
        round_trip(&mut c, start, TARGET);
        let at_target = c.window();
        assert_eq!(
            round_trip(&mut c, start, TARGET),
            at_target,
            "at the target: still"
        );
        let grown = round_trip(&mut c, start, ms(0));
        assert!(grown > at_target, "{grown} > {at_target}");
        assert!(
            grown as f64 <= at_target as f64 + (at_target as f64 * GAIN).max(f64::from(MTU)) + 1.0,
            "at most GAIN of the window a round trip: {grown} from {at_target}"
        );
        let shrunk = round_trip(&mut c, start, 2 * TARGET);
        assert!(shrunk < grown, "{shrunk} < {grown}");
        // Never below two datagrams.
        for _ in 0..1000 {
            round_trip(&mut c, start, 10 * TARGET);
        }
        assert_eq!(c.window(), 2 * u64::from(MTU));
    }

    #[test]
    fn a_loss_with_a_long_queue_halves_the_window_and_one_with_a_short_queue_trims_it() {
        let start = Instant::now();
        let mut c = Yielding::new(start, MTU);
        for _ in 0..6 {
            round_trip(&mut c, start, ms(0));
        }
        let before = c.window();
        let later = start + ms(100);
        c.on_loss(later, start + ms(50), false, LOST, ms(0));
        assert_eq!(c.window(), (before as f64 * NOISE_DECREASE) as u64);
        // A loss of a packet sent before that reduction is part of it.
        c.on_loss(later + ms(1), start + ms(60), false, LOST, 2 * TARGET);
        assert_eq!(c.window(), (before as f64 * NOISE_DECREASE) as u64);
        let trimmed = c.window();
        c.on_loss(later + ms(200), later + ms(150), false, LOST, 2 * TARGET);
        assert_eq!(c.window(), (trimmed as f64 * CONGESTION_DECREASE) as u64);
        c.on_loss(later + ms(400), later + ms(300), true, LOST, ms(0));
        assert_eq!(c.window(), 2 * u64::from(MTU), "persistent congestion");
    }

    #[test]
    fn a_noise_loss_every_round_trip_does_not_stop_the_growth() {
        // 1 % loss on a path with a short queue: a loss in every round
        // trip of a large window. Each costs a twentieth of the window and
        // the growth in between makes up for it. Start past slow start.
        let start = Instant::now();
        let mut c = Yielding::new(start, MTU);
        for _ in 0..4 {
            round_trip(&mut c, start, ms(0));
        }
        c.on_loss(start + ms(10), start + ms(5), false, LOST, 2 * TARGET);
        assert!(!c.in_slow_start());
        let first = c.window();
        let mut now = start + ms(120);
        for _ in 0..20 {
            now = rtt_of_acks(&mut c, now, ms(0));
            c.on_loss(now, now - ms(50), false, LOST, ms(0));
        }
        assert!(c.window() > 2 * first, "{} from {first}", c.window());
        // A loss with a long queue still stops the growth for a round
        // trip: acknowledgements of packets sent before it do not count.
        let before = c.window();
        c.on_loss(now + ms(200), now + ms(150), false, LOST, 2 * TARGET);
        let halved = c.window();
        assert_eq!(halved, (before as f64 * CONGESTION_DECREASE) as u64);
        c.on_ack(
            now + ms(250),
            now + ms(100),
            100 * u64::from(MTU),
            false,
            ms(0),
            halved,
        );
        assert_eq!(c.window(), halved);
    }

    /// Two connections through one uplink of `capacity` bytes a round
    /// trip (the round trip 100 ms without queue), from windows `a` and
    /// `b` past slow start, for `rounds` round trips; `coupled`: each is
    /// given their mean window as its share, else its own.
    fn two_through_one_uplink(a: u64, b: u64, rounds: usize, coupled: bool) -> (u64, u64) {
        let start = Instant::now();
        let capacity = 1_000_000.0;
        let mut flows = [Yielding::new(start, MTU), Yielding::new(start, MTU)];
        for (flow, window) in flows.iter_mut().zip([a, b]) {
            flow.window = window;
            flow.ssthresh = window;
        }
        let mut now = start;
        for _ in 0..rounds {
            let total = (flows[0].window() + flows[1].window()) as f64;
            // What does not fit in a round trip waits in the queue.
            let queuing = Duration::from_secs_f64(0.1 * (total / capacity - 1.0).max(0.0));
            let mean = (flows[0].window() + flows[1].window()) / 2;
            let sent = now;
            now += ms(100) + queuing;
            for flow in &mut flows {
                let share = if coupled { mean } else { flow.window() };
                for _ in 0..flow.window() / u64::from(MTU) {
                    flow.on_ack(now, sent, u64::from(MTU), false, queuing, share);
                }
            }
        }
        (flows[0].window(), flows[1].window())
    }

    #[test]
    fn connections_sharing_an_uplink_converge_to_equal_windows() {
        // Growth in proportion to each window keeps the split where it
        // began.
        let (a, b) = two_through_one_uplink(1_000_000, 200_000, 400, false);
        assert!(a > 3 * b, "uncoupled: {a} / {b}");
        // Each aiming at a queue set by its window against their mean:
        // they meet.
        let (a, b) = two_through_one_uplink(1_000_000, 200_000, 400, true);
        let ratio = a as f64 / b as f64;
        assert!((0.8..=1.25).contains(&ratio), "coupled: {a} / {b}");
        // And together they hold the queue near the target: the uplink
        // full, not overfull.
        let total = (a + b) as f64 / 1_000_000.0;
        assert!((1.2..=1.8).contains(&total), "{total}");
    }

    #[test]
    fn the_mean_counts_only_connections_sending_lately() {
        let t0 = Instant::now();
        let mut sending = Sending::default();
        let (a, b, idle) = (sending.id(), sending.id(), sending.id());
        sending.update(idle, 10_000, t0);
        let later = t0 + Sending::ACTIVE + ms(1);
        sending.update(a, 100_000, later);
        assert_eq!(sending.update(b, 300_000, later), 200_000);
        // Long idle, forgotten.
        let much_later = later + 4 * Sending::ACTIVE;
        assert_eq!(sending.update(a, 50_000, much_later), 50_000);
        assert_eq!(sending.flows.len(), 1);
    }

    #[test]
    fn a_noise_loss_in_slow_start_trims_the_window_and_slow_start_goes_on() {
        let start = Instant::now();
        let mut c = Yielding::new(start, MTU);
        let now = rtt_of_acks(&mut c, start, ms(0));
        let before = c.window();
        c.on_loss(now, now - ms(50), false, LOST, ms(0));
        assert_eq!(c.window(), (before as f64 * NOISE_DECREASE) as u64);
        assert!(c.in_slow_start(), "a noise loss does not end slow start");
        let trimmed = c.window();
        rtt_of_acks(&mut c, now, ms(0));
        let mtu = u64::from(MTU);
        assert_eq!(
            c.window(),
            trimmed + trimmed / mtu * mtu,
            "it doubles again"
        );
    }

    #[test]
    fn a_loss_with_the_queue_at_the_target_is_noise_and_above_it_congestion() {
        let start = Instant::now();
        let mut c = Yielding::new(start, MTU);
        let now = rtt_of_acks(&mut c, start, ms(0));
        let before = c.window();
        c.on_loss(now, now - ms(50), false, LOST, TARGET);
        assert_eq!(c.window(), (before as f64 * NOISE_DECREASE) as u64);
        let trimmed = c.window();
        let later = now + ms(200);
        c.on_loss(later, later - ms(50), false, LOST, TARGET + ms(1));
        assert_eq!(c.window(), (trimmed as f64 * CONGESTION_DECREASE) as u64);
        assert!(!c.in_slow_start());
    }

    #[test]
    fn a_congestion_reduction_answers_the_losses_counted_before_it() {
        let start = Instant::now();
        let mut c = Yielding::new(start, MTU);
        let mut now = start;
        for _ in 0..4 {
            now = rtt_of_acks(&mut c, now, ms(0));
        }
        let before = c.window();
        c.on_loss(now, now - ms(50), false, before / 10, ms(0));
        let halved = c.window();
        assert_eq!(halved, (before as f64 * CONGESTION_DECREASE) as u64);
        // One datagram lost a round trip later is noise again.
        let later = now + ms(150);
        c.on_loss(later, later - ms(50), false, LOST, ms(0));
        assert_eq!(c.window(), (halved as f64 * NOISE_DECREASE) as u64);
    }

    #[test]
    fn a_loss_counts_against_the_connections_own_target() {
        // Half the mean window: it aims at 1.5 times the target.
        let start = Instant::now();
        let mut c = Yielding::new(start, MTU);
        c.on_loss(start + ms(10), start + ms(5), false, LOST, 2 * TARGET);
        let now = start + ms(200);
        let share = 2 * c.window();
        c.on_ack(now, now - ms(100), u64::from(MTU), false, TARGET, share);
        let before = c.window();
        c.on_loss(now + ms(10), now + ms(5), false, LOST, TARGET + ms(10));
        assert_eq!(c.window(), (before as f64 * NOISE_DECREASE) as u64);
        // Alone, the same queue is over its target.
        let mut alone = Yielding::new(start, MTU);
        alone.on_loss(start + ms(10), start + ms(5), false, LOST, 2 * TARGET);
        let window = alone.window();
        alone.on_ack(now, now - ms(100), u64::from(MTU), false, TARGET, window);
        let before = alone.window();
        alone.on_loss(now + ms(10), now + ms(5), false, LOST, TARGET + ms(10));
        assert_eq!(alone.window(), (before as f64 * CONGESTION_DECREASE) as u64);
    }

    #[test]
    fn heavy_loss_with_a_short_queue_is_congestion() {
        // A shallow buffer: no queue shows, a tenth of every round trip
        // is lost.
        let start = Instant::now();
        let mut c = Yielding::new(start, MTU);
        let mut now = start;
        for _ in 0..4 {
            now = rtt_of_acks(&mut c, now, ms(0));
        }
        assert!(c.in_slow_start());
        let before = c.window();
        c.on_loss(now, now - ms(50), false, before / 10, ms(0));
        assert_eq!(c.window(), (before as f64 * CONGESTION_DECREASE) as u64);
        assert!(!c.in_slow_start(), "heavy loss ends slow start");
        // Fewer than HEAVY_LOSS_DATAGRAMS lost is noise, whatever the share.
        let mut c = Yielding::new(start, MTU);
        let now = rtt_of_acks(&mut c, start, ms(0));
        let before = c.window();
        c.on_loss(
            now,
            now - ms(50),
            false,
            (HEAVY_LOSS_DATAGRAMS - 1) * u64::from(MTU),
            ms(0),
        );
        assert_eq!(c.window(), (before as f64 * NOISE_DECREASE) as u64);
        assert!(c.in_slow_start());
    }

    #[test]
    fn an_idle_sender_keeps_its_window() {
        let start = Instant::now();
        let mut c = Yielding::new(start, MTU);
        let first = c.window();
        c.on_ack(
            start + ms(1),
            start + ms(1),
            100_000,
            true,
            ms(0),
            c.window(),
        );
        assert_eq!(c.window(), first);
    }
}
