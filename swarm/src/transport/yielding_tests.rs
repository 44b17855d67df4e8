//! Tests of the delay-based controller ([`super`]).

use super::*;

const MTU: u16 = 1200;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Bytes lost in one loss event of these tests: one datagram.
const LOST: u64 = MTU as u64;

/// Acknowledges a whole window, one datagram at a time, of packets sent
/// at `sent`, at `acked`, with the queue at `queuing`.
fn ack_window(c: &mut Yielding, sent: Instant, acked: Instant, queuing: Duration) {
    for _ in 0..(c.window() / u64::from(MTU)).max(1) {
        c.on_ack(acked, sent, u64::from(MTU), false, queuing, c.window());
    }
}

/// One round trip from `now`: the window's datagrams, sent at `now`,
/// acknowledged 100 ms later with the queue at `queuing`; the time then.
fn rtt_of_acks(c: &mut Yielding, now: Instant, queuing: Duration) -> Instant {
    let acked = now + ms(100);
    ack_window(c, now, acked, queuing);
    acked
}

/// Acknowledges a whole window, sent and acknowledged 1 ms after `start`,
/// with the queue at `queuing`; the new window.
fn round_trip(c: &mut Yielding, start: Instant, queuing: Duration) -> u64 {
    ack_window(c, start + ms(1), start + ms(1), queuing);
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
    // At the queue it aims at (its rate's factor on the target): still.
    let aim = c.aim(at_target);
    assert_eq!(
        round_trip(&mut c, start, aim),
        at_target,
        "at {aim:?}: still"
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
fn two_through_one_uplink(
    capacity: f64,
    (a, b): (u64, u64),
    rounds: usize,
    coupled: bool,
) -> (u64, u64) {
    let start = Instant::now();
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
            flow.set_rtt(ms(100) + queuing);
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
    // Of one process, each aiming at a queue set by its window against
    // their mean (and by its rate): they meet.
    let (a, b) = two_through_one_uplink(1e6, (1_000_000, 200_000), 400, true);
    let ratio = a as f64 / b as f64;
    assert!((0.8..=1.25).contains(&ratio), "coupled: {a} / {b}");
    // And together they hold the queue near the target: the uplink
    // full, not overfull.
    let total = (a + b) as f64 / 1_000_000.0;
    assert!((1.2..=1.8).contains(&total), "{total}");
}

#[test]
fn connections_of_separate_processes_through_one_uplink_even_out_by_their_rates() {
    // Each knows only its own window; the faster aims at the shorter
    // queue. Through a 20 Mbit uplink (250 KB a 100 ms round trip), from
    // a fifth of it for the lesser: in 100 round trips past two fifths,
    // in 400 near half.
    let (a, b) = two_through_one_uplink(250_000.0, (240_000, 60_000), 100, false);
    let lesser = b as f64 / (a + b) as f64;
    assert!(lesser > 0.4, "after 100 round trips: {a} / {b}");
    let (a, b) = two_through_one_uplink(250_000.0, (240_000, 60_000), 400, false);
    let ratio = a as f64 / b as f64;
    assert!((0.9..=1.1).contains(&ratio), "after 400: {a} / {b}");
    // The uplink full, not overfull: the queue between their aims.
    let total = (a + b) as f64 / 250_000.0;
    assert!((1.2..=1.8).contains(&total), "{total}");
    // Beyond the rates' range both aim at half the target, and nothing
    // evens them out: through 10 MB/s, the lesser grows from a sixth
    // until its rate reaches the range's top, 4 MB/s, and stops there.
    let (a, b) = two_through_one_uplink(1e6, (1_000_000, 200_000), 400, false);
    let lesser = b as f64 / (a + b) as f64;
    assert!((0.3..0.45).contains(&lesser), "over the range: {a} / {b}");
}

#[test]
fn a_faster_connection_aims_at_a_shorter_queue() {
    // At a queue of 40 ms (within the target), a connection sending 8 MB/s
    // (800 KB a 100 ms round trip) shrinks, one at 125 KB/s grows, and one
    // at 1 MB/s grows as the target alone would have it.
    let start = Instant::now();
    let rest = |window: u64| {
        let mut c = Yielding::new(start, MTU);
        c.window = window;
        c.ssthresh = window;
        c.set_rtt(ms(100));
        round_trip(&mut c, start, ms(40))
    };
    assert!(rest(800_000) < 800_000);
    assert!(rest(12_500) > 12_500);
    assert!(rest(100_000) > 100_000);
    // At 4 MB/s and over, the queue it aims at is half the target; at
    // 435 KB/s and under, 1.3 times it.
    let factor = |window: u64| {
        let mut c = Yielding::new(start, MTU);
        c.window = window;
        c.set_rtt(ms(100));
        c.rate_factor()
    };
    assert_eq!(factor(400_000), RATE_MIN);
    assert_eq!(factor(10_000_000), RATE_MIN);
    assert_eq!(factor(40_000), RATE_MAX);
    assert_eq!(factor(1_200), RATE_MAX);
    assert!((factor(100_000) - 1.0).abs() < 1e-9);
    assert!((factor(200_000) - 0.75).abs() < 1e-9);
    assert!((factor(50_000) - 1.25).abs() < 1e-9);
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
    for _ in 0..5 {
        now = rtt_of_acks(&mut c, now, ms(0));
    }
    assert!(c.in_slow_start());
    let before = c.window();
    assert!(before / 10 >= HEAVY_LOSS_DATAGRAMS * u64::from(MTU));
    c.on_loss(now, now - ms(50), false, before / 10, ms(0));
    let halved = c.window();
    assert_eq!(halved, (before as f64 * CONGESTION_DECREASE) as u64);
    assert!(!c.in_slow_start(), "heavy loss ends slow start");
    // The halving answers the losses counted before it: one datagram
    // lost a round trip later is noise again.
    let later = now + ms(150);
    c.on_loss(later, later - ms(50), false, LOST, ms(0));
    assert_eq!(c.window(), (halved as f64 * NOISE_DECREASE) as u64);
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

#[test]
fn a_dropped_controller_leaves_the_registry_and_a_clone_is_another_connection() {
    let now = Instant::now();
    let controller = YieldingController::new(now, MTU);
    let id = controller.id;
    sending().update(id, 10_000, now);
    assert!(sending().flows.contains_key(&id));
    let copy = controller.clone();
    assert_ne!(copy.id, id, "a clone reports a window of its own");
    drop(controller);
    assert!(!sending().flows.contains_key(&id));
}

/// Round trips of `rtt` from `now` with the queue at `queuing`, as many
/// as fit in `span`; the time then.
fn rounds_for(c: &mut Yielding, mut now: Instant, span: Duration, queuing: Duration) -> Instant {
    let end = now + span;
    while now < end {
        let acked = now + ms(50);
        ack_window(c, now, acked, queuing);
        now = acked;
    }
    now
}

#[test]
fn random_loss_of_two_percent_is_noise_every_round_trip() {
    // 2 % of every round trip lost, the queue empty: the window is
    // trimmed, never halved, and goes on growing.
    let start = Instant::now();
    let mut c = Yielding::new(start, MTU);
    let mut now = start;
    let mut verdicts = Vec::new();
    for _ in 0..40 {
        let window = c.window();
        let sent = now;
        now += ms(50);
        let lost = (window / 50).max(u64::from(MTU));
        // The round trip's acknowledgements in one call: the window moves
        // by what they acknowledge, as one datagram at a time.
        c.on_ack(now, sent, window - lost, false, ms(0), window);
        // A packet of this round trip, sent after the last trim.
        verdicts.push(c.on_loss(now, sent + ms(1), false, lost, ms(0)));
    }
    assert!(
        verdicts.iter().all(|v| *v == LossVerdict::Noise),
        "{verdicts:?}"
    );
    assert!(c.window() > 100 * u64::from(MTU), "{}", c.window());
}

#[test]
fn a_queue_another_flow_keeps_full_makes_it_compete_as_cubic_would() {
    let start = Instant::now();
    let mut c = Yielding::new(start, MTU);
    c.set_one_way(true);
    let now = rounds_for(&mut c, start, ms(300), ms(0));
    assert_eq!(c.mode(), Mode::Yielding);
    // A queue of 90 ms that does not fall however the window shrinks.
    let now = rounds_for(&mut c, now, ms(950), ms(90));
    assert_eq!(c.mode(), Mode::Yielding, "not before a second");
    let now = rounds_for(&mut c, now, ms(100), ms(90));
    assert!(matches!(c.mode(), Mode::Competing { .. }), "{:?}", c.mode());
    // As a new CUBIC flow joins: slow start, the window doubling each
    // round trip, until its first loss (the full buffer's overflow).
    let mut now = now;
    for _ in 0..3 {
        now = doubling_round(&mut c, now);
    }
    let joined = c.window();
    assert_eq!(
        c.on_loss(now, now - ms(10), false, LOST, ms(90)),
        LossVerdict::Congestion
    );
    assert_eq!(c.window(), (joined as f64 * COMPETE_DECREASE) as u64);
    // Then CUBIC's curve: it grows, by at most half the window a round
    // trip.
    let before = c.window();
    let mut last = before;
    for _ in 0..40 {
        now = rounds_for(&mut c, now, ms(50), ms(90));
        assert!(
            c.window() as f64 <= last as f64 * 1.5 + f64::from(MTU),
            "{last} -> {}",
            c.window()
        );
        last = c.window();
    }
    assert!(c.window() > before, "{} <= {before}", c.window());
    // A loss with the queue over the target takes CUBIC's 0.7 of it, and
    // the curve climbs back to the window it had within its K seconds.
    let w_max = c.window();
    let verdict = c.on_loss(now, now - ms(10), false, LOST, ms(90));
    assert_eq!(verdict, LossVerdict::Congestion);
    assert_eq!(c.window(), (w_max as f64 * COMPETE_DECREASE) as u64);
    let k = (w_max as f64 / f64::from(MTU) * (1.0 - COMPETE_DECREASE) / CUBIC_C).cbrt();
    // (A probe may come on the way: its least window is not the curve's.)
    let mut highest = 0;
    let end = now + Duration::from_secs_f64(k + 0.5);
    while now < end {
        now = rounds_for(&mut c, now, ms(50), ms(90));
        if let Mode::Competing { .. } = c.mode() {
            highest = highest.max(c.window());
        }
    }
    assert!(
        highest as f64 >= 0.95 * w_max as f64,
        "{highest} of {w_max} within {k:.2} s"
    );
    // While it competes, a loss with the queue short is noise still.
    let (mut c, now) = competing(start);
    let now = rounds_for(&mut c, now, ms(100), ms(90));
    let before = c.window();
    assert_eq!(
        c.on_loss(now, now - ms(10), false, LOST, ms(20)),
        LossVerdict::Noise
    );
    assert_eq!(c.window(), (before as f64 * NOISE_DECREASE) as u64);
}

#[test]
fn a_queue_read_from_the_round_trip_alone_never_makes_it_compete() {
    // The round trip holds the peer's own uplink queue: no proof that
    // another flow shares ours.
    let start = Instant::now();
    let mut c = Yielding::new(start, MTU);
    rounds_for(&mut c, start, Duration::from_secs(5), ms(90));
    assert_eq!(c.mode(), Mode::Yielding);
    // Nor does a queue that falls below the target now and then.
    let mut c = Yielding::new(start, MTU);
    c.set_one_way(true);
    let mut now = start;
    for _ in 0..10 {
        now = rounds_for(&mut c, now, ms(400), ms(90));
        now = rounds_for(&mut c, now, ms(50), ms(30));
    }
    assert_eq!(c.mode(), Mode::Yielding);
}

#[test]
fn it_competes_from_the_window_it_had_before_the_queue_rose() {
    let start = Instant::now();
    let mut c = Yielding::new(start, MTU);
    c.set_one_way(true);
    // Alone: slow start ends with the queue past half the target, and the
    // window grows below it.
    let now = rounds_for(&mut c, start, ms(1000), ms(30));
    let calm = c.window();
    // Another flow's queue rises through the target (the window shrinks
    // as it yields: the queue is past the one it aims at, 65 ms at its
    // rate), then stays over the threshold.
    let now = rounds_for(&mut c, now, ms(2000), ms(78));
    assert!(c.window() < calm, "{} >= {calm}", c.window());
    let before_compete = c.window();
    // Acknowledgement by acknowledgement, to the one that makes it
    // compete (those after it grow the window in slow start).
    let mut now = now;
    'rounds: for _ in 0..40 {
        let sent = now;
        now += ms(50);
        for _ in 0..(c.window() / u64::from(MTU)).max(1) {
            c.on_ack(now, sent, u64::from(MTU), false, ms(90), c.window());
            if matches!(c.mode(), Mode::Competing { .. }) {
                break 'rounds;
            }
        }
    }
    assert!(matches!(c.mode(), Mode::Competing { .. }), "{:?}", c.mode());
    // (The calm window is the one before the last calm acknowledgement's
    // growth, at most a datagram less.)
    assert!(
        c.window() + u64::from(MTU) >= calm && c.window() <= calm + u64::from(MTU),
        "{} from {before_compete}, calm {calm}",
        c.window()
    );
    assert!(before_compete < calm / 2, "{before_compete}, calm {calm}");
}

#[test]
fn the_slow_start_it_joins_with_ends_at_a_congestion_loss_not_at_noise_or_a_probe() {
    let (mut c, now) = joining(Instant::now());
    // A loss with the queue within the target is noise: trimmed, still
    // joining.
    let now = rounds_for(&mut c, now, ms(50), ms(90));
    assert_eq!(
        c.on_loss(now, now - ms(10), false, LOST, ms(20)),
        LossVerdict::Noise
    );
    assert!(c.in_slow_start());
    // A probe comes before any congestion loss: back from it, still
    // joining, the window doubling again.
    // (Acknowledgements of a sender with nothing more to send meanwhile:
    // the window stays, the probe's time comes.)
    let mut now = now;
    for _ in 0..200 {
        now += ms(50);
        c.on_ack(now, now - ms(50), u64::from(MTU), true, ms(90), c.window());
        if matches!(c.mode(), Mode::Probing { .. }) {
            break;
        }
    }
    assert!(matches!(c.mode(), Mode::Probing { .. }), "{:?}", c.mode());
    let now = rounds_for(&mut c, now, PROBE_FOR + ms(100), ms(85));
    assert!(matches!(c.mode(), Mode::Competing { .. }), "{:?}", c.mode());
    assert!(
        c.in_slow_start(),
        "the probe ended the slow start it joins with"
    );
    let now = doubling_round(&mut c, now);
    // The first congestion loss ends it.
    assert_eq!(
        c.on_loss(now, now - ms(10), false, LOST, ms(90)),
        LossVerdict::Congestion
    );
    assert!(!c.in_slow_start());
}

#[test]
fn the_longest_queue_its_own_process_aims_at_never_makes_it_compete() {
    // A connection with the smallest window of its process aims at the
    // target times FAIR_MAX: its own process's queue, not another flow's.
    let start = Instant::now();
    let mut c = Yielding::new(start, MTU);
    c.set_one_way(true);
    let queue = TARGET.mul_f64(FAIR_MAX);
    assert!(queue < COMPETE_ABOVE);
    rounds_for(&mut c, start, Duration::from_secs(10), queue);
    assert_eq!(c.mode(), Mode::Yielding);
}

/// A controller that began to compete after `start` and is still in the
/// slow start it joins with; the time then.
fn joining(start: Instant) -> (Yielding, Instant) {
    let mut c = Yielding::new(start, MTU);
    c.set_one_way(true);
    let now = rounds_for(&mut c, start, ms(1200), ms(90));
    assert!(matches!(c.mode(), Mode::Competing { .. }), "{:?}", c.mode());
    assert!(c.in_slow_start());
    (c, now)
}

/// One round trip of 50 ms with the queue at 90 ms, in which the window
/// doubles (the slow start it joins with); the time then.
fn doubling_round(c: &mut Yielding, now: Instant) -> Instant {
    let before = c.window();
    let now = rounds_for(c, now, ms(50), ms(90));
    assert!(
        c.window() + u64::from(MTU) >= 2 * before,
        "doubles while it joins: {before} -> {}",
        c.window()
    );
    now
}

/// A controller that competes since `start` plus the returned time.
fn competing(start: Instant) -> (Yielding, Instant) {
    let (mut c, now) = joining(start);
    // Its first loss ends the slow start it joins with.
    assert_eq!(
        c.on_loss(now, now - ms(10), false, LOST, ms(90)),
        LossVerdict::Congestion
    );
    assert!(!c.in_slow_start());
    (c, now)
}

/// Round trips of 50 ms with the queue at `queuing` until a probe
/// starts; the time then and the window just before it.
fn until_probing(c: &mut Yielding, mut now: Instant, queuing: Duration) -> (Instant, u64) {
    for _ in 0..200 {
        let before = c.window();
        now = rounds_for(c, now, ms(50), queuing);
        if matches!(c.mode(), Mode::Probing { .. }) {
            return (now, before);
        }
    }
    panic!("no probe in 10 s: {:?}", c.mode());
}

#[test]
fn a_probe_that_finds_the_queue_drained_yields_again() {
    let start = Instant::now();
    let (mut c, now) = competing(start);
    let (now, saved) = until_probing(&mut c, now, ms(90));
    assert_eq!(c.window(), c.minimum_window(), "the least window");
    // The other flow has gone: the queue drains.
    rounds_for(&mut c, now, PROBE_FOR + ms(100), ms(5));
    assert_eq!(c.mode(), Mode::Yielding);
    assert!(
        c.window() >= saved,
        "back to where it was: {} < {saved}",
        c.window()
    );
}

#[test]
fn a_probe_that_finds_the_queue_still_full_competes_on() {
    let start = Instant::now();
    let (mut c, now) = competing(start);
    let (now, saved) = until_probing(&mut c, now, ms(90));
    // Losses during the probe answer nothing.
    assert_eq!(
        c.on_loss(now, now - ms(10), false, LOST, ms(90)),
        LossVerdict::Answered
    );
    rounds_for(&mut c, now, PROBE_FOR + ms(100), ms(85));
    assert!(matches!(c.mode(), Mode::Competing { .. }), "{:?}", c.mode());
    assert!(c.window() >= saved, "{} < {saved}", c.window());
}

#[test]
fn connections_of_one_process_probe_together() {
    // Two connections that began to compete 700 ms apart: their probes
    // start on the same boundary, so an uplink they alone keep full
    // drains while they probe.
    let epoch = Instant::now();
    let mut first = Yielding::with_epoch(epoch, MTU, epoch);
    first.set_one_way(true);
    let mut now = rounds_for(&mut first, epoch, ms(700), ms(90));
    let mut second = Yielding::with_epoch(now, MTU, epoch);
    second.set_one_way(true);
    let mut probed = [None, None];
    for _ in 0..140 {
        for (index, c) in [&mut first, &mut second].into_iter().enumerate() {
            rounds_for(c, now, ms(50), ms(90));
            if matches!(c.mode(), Mode::Competing { .. }) && c.in_slow_start() {
                // The full buffer's overflow ends the slow start it joins
                // with.
                c.on_loss(now, now - ms(10), false, LOST, ms(90));
            }
            if matches!(c.mode(), Mode::Probing { .. }) {
                probed[index].get_or_insert(now);
            }
        }
        now += ms(50);
    }
    let (Some(a), Some(b)) = (probed[0], probed[1]) else {
        panic!("both probe within 7 s: {probed:?}");
    };
    assert!(
        a.max(b).duration_since(a.min(b)) <= ms(60),
        "{:?} apart",
        a.max(b).duration_since(a.min(b))
    );
}
