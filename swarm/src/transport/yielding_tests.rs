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
