//! The manifest query's decisions, driven by hand on a virtual clock: the
//! order of the sources and when each is asked, a busy peer dialed again,
//! the punch and the relay's channel, the time to give up, and answers
//! right and wrong.

use super::*;

fn id(n: u8) -> PeerId {
    let mut id = [0u8; 32];
    id[0] = n;
    id[31] = 1;
    PeerId(id)
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, n, 2], 4433))
}

const MANIFEST: &[u8] = b"the manifest";

fn digest() -> [u8; 32] {
    Sha256Digest::of(MANIFEST).0
}

struct Driver {
    query: ManifestQuery,
    now: Instant,
    start: Instant,
    /// Every action, with the milliseconds since the start it came at.
    log: Vec<(u128, QueryAction)>,
}

impl Driver {
    fn new(
        peers: &[(PeerId, Vec<SocketAddr>)],
        relays: &[(PeerId, Vec<SocketAddr>)],
        mirrors: usize,
        config: QueryConfig,
    ) -> Self {
        let now = Instant::now();
        let mut driver = Self {
            query: ManifestQuery::new(peers, relays, mirrors, digest(), config, now),
            now,
            start: now,
            log: Vec::new(),
        };
        driver.drain();
        driver
    }

    fn drain(&mut self) -> Vec<QueryAction> {
        let mut new = Vec::new();
        while let Some(action) = self.query.poll_action() {
            self.log.push((
                self.now.duration_since(self.start).as_millis(),
                action.clone(),
            ));
            new.push(action);
        }
        new
    }

    /// Runs the clock to `ms` since the start, waking at every timeout on
    /// the way.
    fn run_to(&mut self, ms: u64) -> Vec<QueryAction> {
        let end = self.start + Duration::from_millis(ms);
        let mut new = Vec::new();
        while let Some(at) = self.query.poll_timeout() {
            if at > end {
                break;
            }
            self.now = self.now.max(at);
            self.query.handle_timeout(self.now);
            new.extend(self.drain());
        }
        self.now = self.now.max(end);
        new
    }

    fn dials(&self) -> Vec<(u128, usize, SocketAddr)> {
        self.log
            .iter()
            .filter_map(|(at, action)| match action {
                QueryAction::Dial { source, addr, .. } => Some((*at, *source, addr.addr)),
                _ => None,
            })
            .collect()
    }

    fn stops(&self) -> Vec<usize> {
        self.log
            .iter()
            .filter_map(|(_, action)| match action {
                QueryAction::Stop { source } => Some(*source),
                _ => None,
            })
            .collect()
    }

    fn fail(&mut self, source: usize, dial: DialId, refused: bool, why: &str) -> Vec<QueryAction> {
        self.query
            .handle_dial_failed(source, dial, refused, why.to_owned(), self.now);
        self.drain()
    }

    fn connect(&mut self, source: usize, dial: DialId) -> Vec<QueryAction> {
        self.query.handle_connected(source, dial);
        self.drain()
    }

    fn answer(&mut self, source: usize, answer: Answer) -> Vec<QueryAction> {
        self.query.handle_answer(source, answer, self.now);
        self.drain()
    }

    fn relay(&mut self, source: usize, news: RelayNews) -> Vec<QueryAction> {
        self.query.handle_relay(source, news, self.now);
        self.drain()
    }

    /// The right bytes from `source`: the query ends found there.
    fn answer_right(&mut self, source: usize) {
        self.answer(source, Answer::Bytes(MANIFEST.to_vec()));
        assert!(matches!(
            self.query.poll_outcome(),
            Some(QueryOutcome::Found { source: s, .. }) if s == source
        ));
    }

    fn not_found(&mut self) -> (Vec<String>, bool) {
        match self.query.poll_outcome() {
            Some(QueryOutcome::NotFound { why, wrong_bytes }) => (why, wrong_bytes),
            other => panic!("expected no manifest, got {other:?}"),
        }
    }
}

fn peer_with(n: u8, addrs: &[u8]) -> (PeerId, Vec<SocketAddr>) {
    (id(n), addrs.iter().map(|&a| addr(a)).collect())
}

#[test]
fn sources_are_the_addresses_then_each_peers_relays_after_its_first_then_the_mirrors() {
    let driver = Driver::new(
        &[peer_with(1, &[1, 2]), peer_with(2, &[3])],
        &[(id(2), vec![addr(90), addr(91)]), (id(7), vec![addr(92)])],
        2,
        QueryConfig::default(),
    );
    let peer = |n, a| {
        QuerySource::Peer(PeerAddr {
            id: id(n),
            addr: addr(a),
        })
    };
    let relayed = |n, r| QuerySource::Relayed {
        peer: id(n),
        relay: addr(r),
    };
    assert_eq!(
        driver.query.sources(),
        &[
            peer(1, 1),
            peer(1, 2),
            peer(2, 3),
            relayed(2, 90),
            relayed(2, 91),
            // A peer the ticket gives no address: its relay comes last.
            relayed(7, 92),
            QuerySource::Mirror(0),
            QuerySource::Mirror(1),
        ]
    );
}

#[test]
fn each_next_source_starts_half_a_second_later_or_at_once_when_all_asked_failed() {
    let mut driver = Driver::new(
        &[peer_with(1, &[1, 2, 3, 4])],
        &[],
        0,
        QueryConfig::default(),
    );
    driver.run_to(1_200);
    assert_eq!(
        driver.dials(),
        vec![(0, 0, addr(1)), (500, 1, addr(2)), (1000, 2, addr(3))]
    );
    // All three fail: the fourth is asked at once, not at 1.5 s.
    driver.fail(0, 0, false, "unreachable");
    driver.fail(1, 0, false, "unreachable");
    let started = driver.fail(2, 0, false, "unreachable");
    assert!(
        matches!(
            started.as_slice(),
            [
                QueryAction::Stop { source: 2 },
                QueryAction::Dial { source: 3, .. }
            ]
        ),
        "{started:?}"
    );
    driver.fail(3, 0, false, "closed");
    let (why, wrong) = driver.not_found();
    assert_eq!(why, ["unreachable", "unreachable", "unreachable", "closed"]);
    assert!(!wrong);
    assert_eq!(driver.query.poll_timeout(), None);
}

#[test]
fn the_first_right_answer_wins_and_everything_else_stops() {
    let mut driver = Driver::new(&[peer_with(1, &[1, 2, 3])], &[], 1, QueryConfig::default());
    driver.run_to(700);
    // The second address connects first and answers; the first still
    // dials; the third and the mirror are never asked.
    let asked = driver.connect(1, 0);
    assert_eq!(asked, [QueryAction::Query { source: 1, dial: 0 }]);
    driver.answer(1, Answer::Bytes(MANIFEST.to_vec()));
    assert_eq!(
        driver.query.poll_outcome(),
        Some(QueryOutcome::Found {
            source: 1,
            bytes: MANIFEST.to_vec()
        })
    );
    assert_eq!(driver.stops(), [0, 1]);
    assert_eq!(driver.dials().len(), 2);
    // Nothing more is asked, and late news changes nothing.
    assert!(driver.connect(0, 0).is_empty());
    assert!(driver.run_to(30_000).is_empty());
    assert_eq!(driver.query.poll_outcome(), None);
}

#[test]
fn bytes_of_another_manifest_are_that_sources_failure() {
    let mut driver = Driver::new(&[peer_with(1, &[1])], &[], 1, QueryConfig::default());
    driver.connect(0, 0);
    driver.answer(0, Answer::WrongBytes("another manifest".into()));
    // The mirror is asked at once, and lies too.
    assert!(matches!(
        driver.log.last(),
        Some((
            _,
            QueryAction::FetchMirror {
                source: 1,
                mirror: 0
            }
        ))
    ));
    driver.answer(1, Answer::Bytes(b"not it".to_vec()));
    let (why, wrong) = driver.not_found();
    assert!(wrong);
    assert_eq!(why[0], "another manifest");
    assert!(
        why[1].starts_with("serves another manifest (6 bytes, SHA-256 "),
        "{why:?}"
    );
}

#[test]
fn a_busy_peer_is_dialed_again_five_times_doubling_the_pause() {
    let mut driver = Driver::new(&[peer_with(1, &[1])], &[], 0, QueryConfig::default());
    let mut dial = 0;
    let mut at = 0;
    for pause in [100, 200, 400, 800, 1600] {
        driver.fail(0, dial, true, "refused");
        at += pause;
        let redial = driver.run_to(at);
        dial += 1;
        assert_eq!(
            redial,
            [QueryAction::Dial {
                source: 0,
                dial,
                addr: PeerAddr {
                    id: id(1),
                    addr: addr(1)
                }
            }],
            "at {at} ms"
        );
    }
    // The sixth refusal ends it.
    driver.fail(0, dial, true, "refused");
    let (why, _) = driver.not_found();
    assert_eq!(why, ["refused"]);
}

#[test]
fn a_source_that_never_answers_ends_at_its_timeout() {
    let config = QueryConfig {
        timeout: Duration::from_secs(3),
        ..QueryConfig::default()
    };
    let mut driver = Driver::new(&[peer_with(1, &[1])], &[], 0, config);
    driver.connect(0, 0);
    assert!(driver.run_to(2_999).is_empty());
    assert_eq!(driver.run_to(3_000), [QueryAction::Stop { source: 0 }]);
    let (why, _) = driver.not_found();
    assert_eq!(why, ["no answer in 3 s"]);
}

#[test]
fn no_source_is_asked_after_the_time_to_give_up_and_each_gets_only_what_is_left() {
    let config = QueryConfig {
        within: Some(Duration::from_millis(1_150)),
        ..QueryConfig::default()
    };
    let mut driver = Driver::new(&[peer_with(1, &[1, 2, 3, 4])], &[], 0, config);
    driver.run_to(5_000);
    // Asked at 0, 0.5 and 1.0 s (with 150 ms left, more than 100 ms); the
    // fourth's turn at 1.5 s is past the time to give up.
    assert_eq!(driver.dials().len(), 3);
    let (why, _) = driver.not_found();
    assert_eq!(
        why,
        [
            "no answer in 1.2 s",
            "no answer in 650 ms",
            "no answer in 150 ms",
            "not asked: the time to give up came first"
        ]
    );
    let last_stop = driver
        .log
        .iter()
        .filter(|(_, action)| matches!(action, QueryAction::Stop { .. }))
        .map(|(at, _)| *at)
        .max();
    assert_eq!(last_stop, Some(1_150));
}

#[test]
fn through_a_relay_the_punch_comes_first_and_the_channel_as_its_fallback() {
    let config = QueryConfig::default();
    let mut driver = Driver::new(&[], &[(id(2), vec![addr(90)])], 0, config);
    assert_eq!(driver.log[0].1, QueryAction::StartRelay { source: 0 });
    assert_eq!(
        driver.relay(0, RelayNews::Registered),
        [QueryAction::Introduce {
            source: 0,
            peer: id(2)
        }]
    );
    // A loss while waiting is only remembered: the link tries again, and
    // registered again asks for the introduction again (a link made again
    // does not repeat one it sent).
    assert!(driver.relay(0, RelayNews::Lost("reset".into())).is_empty());
    assert_eq!(
        driver.relay(0, RelayNews::Registered),
        [QueryAction::Introduce {
            source: 0,
            peer: id(2)
        }]
    );
    driver.run_to(300);
    let path = SocketAddr::from(([240, 0, 0, 1], 1));
    let addrs = vec![addr(5), path, addr(6)];
    let opened = driver.relay(0, RelayNews::Connect { addrs, path });
    assert_eq!(
        opened,
        [QueryAction::OpenPaths {
            addrs: vec![addr(5), addr(6)]
        }]
    );
    let punch = config.punch_delay.as_millis() + 300;
    let fallback = config.relay_fallback_after.as_millis() + 300;
    driver.run_to(5_000);
    assert_eq!(
        driver.dials(),
        [
            (punch, 0, addr(5)),
            (punch, 0, addr(6)),
            (fallback, 0, path)
        ]
    );
    // The channel connects first; the punched dials fail later and change
    // nothing.
    assert_eq!(
        driver.connect(0, 2),
        [QueryAction::Query { source: 0, dial: 2 }]
    );
    assert!(driver.fail(0, 0, false, "timed out").is_empty());
    assert!(driver.fail(0, 1, false, "timed out").is_empty());
    driver.answer_right(0);
}

#[test]
fn a_relay_that_refuses_ends_its_source_and_the_next_starts_at_once() {
    let mut driver = Driver::new(
        &[peer_with(2, &[1])],
        &[(id(2), vec![addr(90), addr(91)])],
        0,
        QueryConfig::default(),
    );
    driver.fail(0, 0, false, "unreachable");
    assert_eq!(
        driver.log.last().map(|(_, a)| a),
        Some(&QueryAction::StartRelay { source: 1 })
    );
    let next = driver.relay(1, RelayNews::Refused("network full".into()));
    assert_eq!(
        next,
        [
            QueryAction::Stop { source: 1 },
            QueryAction::StartRelay { source: 2 }
        ]
    );
    driver.relay(2, RelayNews::Registered);
    driver.relay(2, RelayNews::IntroduceFailed("not registered here".into()));
    let (why, _) = driver.not_found();
    assert_eq!(
        why,
        [
            "unreachable".to_owned(),
            format!("relay {}: not registered: network full", addr(90)),
            format!("relay {}: no introduction: not registered here", addr(91)),
        ]
    );
}

#[test]
fn a_relayed_source_whose_every_dial_failed_ends_with_the_last_error() {
    let mut driver = Driver::new(&[], &[(id(2), vec![addr(90)])], 0, QueryConfig::default());
    driver.relay(0, RelayNews::Registered);
    let path = SocketAddr::from(([240, 0, 0, 1], 1));
    driver.relay(
        0,
        RelayNews::Connect {
            addrs: vec![addr(5)],
            path,
        },
    );
    driver.run_to(3_000);
    assert_eq!(driver.dials().len(), 2);
    driver.fail(0, 0, false, "timed out");
    // The channel's dial is still under way.
    assert_eq!(driver.query.poll_outcome(), None);
    driver.fail(0, 1, false, "channel closed");
    let (why, _) = driver.not_found();
    assert_eq!(why, [format!("through relay {}: channel closed", addr(90))]);
}

#[test]
fn a_connect_naming_many_addresses_dials_a_bounded_few() {
    let mut driver = Driver::new(&[], &[(id(2), vec![addr(90)])], 0, QueryConfig::default());
    driver.relay(0, RelayNews::Registered);
    let addrs: Vec<SocketAddr> = (0..=255).map(addr).collect();
    let path = SocketAddr::from(([240, 0, 0, 1], 1));
    driver.relay(0, RelayNews::Connect { addrs, path });
    // A second Connect for the same introduction is not a second punch.
    driver.relay(
        0,
        RelayNews::Connect {
            addrs: vec![addr(7)],
            path,
        },
    );
    driver.run_to(3_000);
    assert_eq!(driver.dials().len(), MAX_PUNCH_ADDRS + 1);
}

#[test]
fn a_ticket_of_mirrors_only_asks_them_in_turn() {
    let mut driver = Driver::new(&[], &[], 2, QueryConfig::default());
    driver.run_to(500);
    let fetches: Vec<_> = driver
        .log
        .iter()
        .filter(|(_, a)| matches!(a, QueryAction::FetchMirror { .. }))
        .map(|(at, a)| (*at, a.clone()))
        .collect();
    assert_eq!(
        fetches,
        [
            (
                0,
                QueryAction::FetchMirror {
                    source: 0,
                    mirror: 0
                }
            ),
            (
                500,
                QueryAction::FetchMirror {
                    source: 1,
                    mirror: 1
                }
            )
        ]
    );
    driver.answer_right(1);
}

#[test]
fn a_ticket_with_no_source_ends_at_once() {
    let mut driver = Driver::new(&[], &[], 0, QueryConfig::default());
    let (why, wrong) = driver.not_found();
    assert!(why.is_empty() && !wrong);
}

#[test]
fn the_first_connection_up_is_asked_and_the_relays_later_news_changes_nothing() {
    let config = QueryConfig::default();
    let mut driver = Driver::new(&[], &[(id(2), vec![addr(90)])], 0, config);
    driver.relay(0, RelayNews::Registered);
    let path = SocketAddr::from(([240, 0, 0, 1], 1));
    driver.relay(
        0,
        RelayNews::Connect {
            addrs: vec![addr(5)],
            path,
        },
    );
    driver.run_to(config.punch_delay.as_millis() as u64);
    assert_eq!(driver.dials().len(), 1);
    // The punch connects: it is asked, and the channel is never dialed.
    assert_eq!(
        driver.connect(0, 0),
        [QueryAction::Query { source: 0, dial: 0 }]
    );
    driver.run_to(5_000);
    assert_eq!(driver.dials().len(), 1, "{:?}", driver.dials());
    // The link lost and refused meanwhile: the query on the punched
    // connection goes on.
    assert!(driver.relay(0, RelayNews::Lost("reset".into())).is_empty());
    assert!(
        driver
            .relay(0, RelayNews::Refused("full".into()))
            .is_empty()
    );
    assert!(
        driver
            .relay(0, RelayNews::IntroduceFailed("gone".into()))
            .is_empty()
    );
    driver.answer_right(0);
}

#[test]
fn a_query_the_driver_checks_takes_the_first_bytes_handed_in_through_a_relay_too() {
    // A chunk list's read-ahead: no digest known ahead, peers and their
    // relays only. The driver says WrongBytes of a list that does not
    // check; the first bytes it hands in win.
    let config = QueryConfig::default();
    let now = Instant::now();
    let mut driver = Driver {
        query: ManifestQuery::checked_by_driver(
            &[peer_with(1, &[1]), peer_with(2, &[2])],
            &[(id(2), vec![addr(9)])],
            config,
            now,
        ),
        now,
        start: now,
        log: Vec::new(),
    };
    driver.drain();
    assert_eq!(
        driver.query.sources(),
        [
            QuerySource::Peer(PeerAddr {
                id: id(1),
                addr: addr(1)
            }),
            QuerySource::Peer(PeerAddr {
                id: id(2),
                addr: addr(2)
            }),
            QuerySource::Relayed {
                peer: id(2),
                relay: addr(9)
            },
        ]
    );
    driver.connect(0, 0);
    driver.answer(
        0,
        Answer::WrongBytes("not this version's chunk list".into()),
    );
    // The next source starts at once; it fails, and the relayed one is
    // asked at once.
    driver.fail(1, 0, false, "timed out");
    assert!(
        driver
            .log
            .iter()
            .any(|(_, action)| *action == QueryAction::StartRelay { source: 2 }),
        "{:?}",
        driver.log
    );
    driver.relay(2, RelayNews::Registered);
    driver.relay(
        2,
        RelayNews::Connect {
            addrs: vec![addr(2)],
            path: addr(9),
        },
    );
    let dials = driver.run_to(5_000);
    assert!(
        dials
            .iter()
            .any(|action| matches!(action, QueryAction::Dial { source: 2, .. })),
        "{dials:?}"
    );
    let asked = driver.connect(2, 0);
    assert_eq!(asked, [QueryAction::Query { source: 2, dial: 0 }]);
    // Any bytes win: the driver checked them.
    driver.answer(2, Answer::Bytes(b"aa 1\n".to_vec()));
    assert_eq!(
        driver.query.poll_outcome(),
        Some(QueryOutcome::Found {
            source: 2,
            bytes: b"aa 1\n".to_vec()
        })
    );
}
