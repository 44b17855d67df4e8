use super::*;

const MS: Duration = Duration::from_millis(1);

/// Sends a stamp from `sender` at `sent`, has it arrive at `receiver` at
/// `arrives` and the echo come back; what the sender measured.
fn measure(sender: &mut OneWay, receiver: &mut OneWay, sent: Instant, arrives: Instant) -> Handled {
    let stamp = sender.poll_stamp(sent, true).expect("a stamp is due");
    let Handled::Echo(echo) = receiver.on_datagram(&stamp.encode(), arrives, |_| true) else {
        panic!("the stamp was not echoed");
    };
    sender.on_datagram(&echo.encode(), arrives + 30 * MS, |_| true)
}

/// The measured queue, within the least delay's drift over a second.
fn assert_queuing(handled: Handled, expected: Duration) {
    let Handled::Queuing(queuing) = handled else {
        panic!("{handled:?}: no measurement");
    };
    let off = queuing.abs_diff(expected);
    assert!(
        off <= BASE_DRIFT_PER_SECOND,
        "{queuing:?} against {expected:?}"
    );
}

#[test]
fn a_connection_stamps_only_while_sending_and_at_most_every_interval() {
    let start = Instant::now();
    let mut one_way = OneWay::new(start);
    assert_eq!(one_way.poll_stamp(start, false), None);
    assert_eq!(
        one_way.poll_stamp(start + 3 * MS, true),
        Some(Datagram::Stamp { sent: 3_000 })
    );
    assert_eq!(one_way.poll_stamp(start + 20 * MS, true), None);
    assert_eq!(one_way.next_stamp(), start + 3 * MS + STAMP_EVERY);
    assert!(one_way.poll_stamp(one_way.next_stamp(), true).is_some());
}

#[test]
fn an_echo_measures_the_rise_of_the_one_way_delay_whatever_the_clocks_offset() {
    let start = Instant::now();
    let mut sender = OneWay::new(start + Duration::from_secs(7));
    // The receiver's clock started 7 s before the sender's.
    let mut receiver = OneWay::new(start);
    let at = start + Duration::from_secs(8);
    assert_queuing(
        measure(&mut sender, &mut receiver, at, at + 20 * MS),
        Duration::ZERO,
    );
    let later = at + 100 * MS;
    assert_queuing(
        measure(&mut sender, &mut receiver, later, later + 55 * MS),
        35 * MS,
    );
    // A shorter delay becomes the least one.
    let then = later + 100 * MS;
    assert_queuing(
        measure(&mut sender, &mut receiver, then, then + 15 * MS),
        Duration::ZERO,
    );
    let last = then + 100 * MS;
    assert_queuing(
        measure(&mut sender, &mut receiver, last, last + 20 * MS),
        5 * MS,
    );
}

#[test]
fn the_least_delay_rises_only_at_the_clocks_drift_rate() {
    let start = Instant::now();
    let mut sender = OneWay::new(start);
    let mut receiver = OneWay::new(start);
    let at = start + MS;
    measure(&mut sender, &mut receiver, at, at + 10 * MS);
    // A minute of uploading with a standing queue of 50 ms: the least
    // delay rose by 100 us a second at most, so the queue still shows.
    let mut queuing = Duration::ZERO;
    for second in 1..=60 {
        let then = at + Duration::from_secs(second);
        let Handled::Queuing(measured) = measure(&mut sender, &mut receiver, then, then + 60 * MS)
        else {
            panic!("no measurement");
        };
        queuing = measured;
    }
    assert!(
        queuing >= 50 * MS - 60 * BASE_DRIFT_PER_SECOND - MS && queuing <= 50 * MS,
        "{queuing:?}"
    );
    // A shorter delay is the least one at once.
    let later = at + Duration::from_secs(61);
    assert_eq!(
        measure(&mut sender, &mut receiver, later, later + 5 * MS),
        Handled::Queuing(Duration::ZERO)
    );
}

#[test]
fn echoes_naming_a_time_outside_the_last_10_s_are_dropped() {
    let start = Instant::now();
    let mut sender = OneWay::new(start);
    let now = start + Duration::from_secs(20);
    // From the sender's future, older than the limit, and within it.
    for (sent, dropped) in [(21_000_000, true), (1_000_000, true), (19_000_000, false)] {
        let echo = Datagram::Echo { sent, received: 5 };
        let handled = sender.on_datagram(&echo.encode(), now, |_| true);
        assert_eq!(handled == Handled::Dropped, dropped, "sent at {sent}");
        assert_eq!(matches!(handled, Handled::Queuing(_)), !dropped);
    }
    // Bytes that do not decode.
    for bytes in [&[][..], &[0x07, 1, 2], &[0x01, 0, 0]] {
        assert_eq!(sender.on_datagram(bytes, now, |_| true), Handled::Dropped);
    }
}

#[test]
fn echoes_are_limited_to_their_rate() {
    let start = Instant::now();
    let mut receiver = OneWay::new(start);
    let stamp = Datagram::Stamp { sent: 1 }.encode();
    let echoed = |receiver: &mut OneWay, at: Instant, count: usize| {
        (0..count)
            .filter(|_| matches!(receiver.on_datagram(&stamp, at, |_| true), Handled::Echo(_)))
            .count()
    };
    assert_eq!(echoed(&mut receiver, start, 50), ECHO_BURST as usize);
    // A tenth of a second refills ECHO_RATE / 10.
    let later = start + 100 * MS;
    assert_eq!(echoed(&mut receiver, later, 50), (ECHO_RATE / 10) as usize);
}

#[test]
fn the_shared_measure_is_fresh_for_a_while_and_activity_wakes_the_link() {
    let forward = ForwardDelay::default();
    let _ = stamp_of(Instant::now());
    let now = Instant::now();
    assert_eq!(forward.fresh(now), None);
    assert!(!forward.is_active(now));
    forward.record(12 * MS, now);
    assert_eq!(forward.fresh(now + 100 * MS), Some(12 * MS));
    assert_eq!(forward.fresh(now + FRESH_FOR), None);
    forward.set_active(now);
    assert!(forward.is_active(now + 100 * MS));
    assert!(!forward.is_active(now + ACTIVE_FOR));
    // The first activity left a wake-up for the link's task.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), forward.activated())
            .await
            .expect("woken");
    });
}

#[test]
fn the_one_way_figure_counts_only_up_to_the_round_trips() {
    // No fresh measurement: the smoothed round trip's rise.
    assert_eq!(queuing(None, 40 * MS, 60 * MS), 40 * MS);
    // The receiver's queue left out.
    assert_eq!(queuing(Some(5 * MS), 40 * MS, 60 * MS), 5 * MS);
    // A peer claiming more than the round trip shows gets the round trip.
    assert_eq!(queuing(Some(500 * MS), 40 * MS, 60 * MS), 60 * MS);
}

#[test]
fn the_process_budget_bounds_echoes_over_every_connection() {
    let start = Instant::now();
    let mut process = TokenBucket::new(PROCESS_ECHO_RATE, PROCESS_ECHO_BURST, start);
    let stamp = Datagram::Stamp { sent: 1 }.encode();
    // `connections` connections, a stamp each at `at`: how many are echoed.
    let mut echoed = |connections: usize, at: Instant| {
        (0..connections)
            .filter(|_| {
                let mut connection = OneWay::new(start);
                let handled = connection.on_datagram(&stamp, at, |now| process.try_take(1, now));
                matches!(handled, Handled::Echo(_))
            })
            .count()
    };
    // Only the process's burst is echoed, however many connections ask.
    assert_eq!(echoed(200, start), PROCESS_ECHO_BURST as usize);
    // A second later, the bucket is full again (the rate's worth is more).
    let later = start + Duration::from_secs(1);
    assert_eq!(echoed(400, later), PROCESS_ECHO_BURST as usize);
}
