//! Every transition of the supervisor, on a virtual clock: a base
//! [`Instant`] and offsets, nothing sleeps, no tokio, no sockets.

use super::*;
use crate::library::{ConsentRecord, DownloadRecord, ShareRecord};

const SIZE: u64 = 1 << 20;

fn model(name: &str) -> ModelId {
    name.parse().unwrap()
}

fn root(name: &str) -> Sha256Digest {
    Sha256Digest::of(name.as_bytes())
}

fn record(name: &str, kind: ItemKind, work: Work) -> ItemRecord {
    ItemRecord {
        id: ItemId::of(kind, &model(name), &root(name)),
        model_id: name.to_owned(),
        manifest_sha256: Sha256Digest::of(b"manifest").to_hex(),
        added_at: "2026-11-28T00:00:00Z".to_owned(),
        paused: false,
        caps: Caps::default(),
        port: None,
        consent: ConsentRecord {
            serve: true,
            fetch: true,
            seed_after: true,
            dht: false,
            at: "2026-11-28T00:00:00Z".to_owned(),
        },
        publisher_key: None,
        require_signature: false,
        work,
        withdrawn: None,
    }
}

fn share(name: &str) -> ItemRecord {
    record(
        name,
        ItemKind::Share,
        Work::Share(ShareRecord {
            file: format!("/files/{name}.slm").into(),
            mirrors: Vec::new(),
        }),
    )
}

fn download(name: &str, serve: bool, seed_after: bool) -> ItemRecord {
    record(
        name,
        ItemKind::Download,
        Work::Download(DownloadRecord {
            peers: Vec::new(),
            serve,
            seed_after,
            dht: false,
            dht_bootstrap: Vec::new(),
            mirrors: Vec::new(),
            allow_plain_http_mirror: false,
            peer_relays: Vec::new(),
            delivered: false,
            version_dir: None,
        }),
    )
}

/// A supervisor over `records` (each artifact `SIZE` bytes) on a virtual
/// clock, with the actions it took.
struct Harness {
    supervisor: Supervisor,
    base: Instant,
    now: Instant,
    actions: Vec<Action>,
}

/// The product's patience, but no dial of the known addresses between
/// tries: the tries and waits alone.
fn tries_only() -> Patience {
    Patience {
        dial_every: Duration::from_secs(100 * 24 * 3600),
        ..Patience::default()
    }
}

impl Harness {
    fn new(records: Vec<ItemRecord>) -> Self {
        Self::with(records, BTreeMap::new(), Limits::default())
    }

    /// With the product's patience, dials between tries included.
    fn with_default_patience(records: Vec<ItemRecord>) -> Self {
        let mut h = Self::new(records);
        let state = h.supervisor.state().clone();
        let loaded = state
            .items
            .iter()
            .map(|record| (record.id.clone(), Ok(SIZE)))
            .collect();
        h.supervisor = Supervisor::new(state, loaded, Patience::default(), h.base);
        h
    }

    fn with(
        records: Vec<ItemRecord>,
        mut loaded: BTreeMap<ItemId, Result<u64, Failure>>,
        limits: Limits,
    ) -> Self {
        for record in &records {
            loaded.entry(record.id.clone()).or_insert(Ok(SIZE));
        }
        let state = LibraryState {
            items: records,
            limits,
            ..LibraryState::default()
        };
        let base = Instant::now();
        let supervisor = Supervisor::new(state, loaded, tries_only(), base);
        Self {
            supervisor,
            base,
            now: base,
            actions: Vec::new(),
        }
    }

    fn start(&mut self) {
        self.supervisor.start(self.now);
        self.collect();
    }

    fn collect(&mut self) {
        while let Some(action) = self.supervisor.poll_action() {
            self.actions.push(action);
        }
    }

    fn take(&mut self) -> Vec<Action> {
        self.collect();
        std::mem::take(&mut self.actions)
    }

    /// Moves the clock to `seconds` after the start, through every
    /// deadline on the way, each exactly when it is due (a deadline in
    /// the past, or one that does not move, fails the test).
    fn advance_to(&mut self, seconds: f64) {
        let until = self.base + Duration::from_secs_f64(seconds);
        while let Some(due) = self.supervisor.poll_timeout() {
            if due > until {
                break;
            }
            assert!(due >= self.now, "a deadline in the past");
            self.now = due;
            self.supervisor.handle_timeout(self.now);
            self.collect();
            assert!(
                self.supervisor.poll_timeout() != Some(due),
                "the deadline did not move"
            );
        }
        self.now = until;
    }

    fn at(&self) -> f64 {
        (self.now - self.base).as_secs_f64()
    }

    fn run(&mut self, id: &ItemId, run: RunId, input: RunInput) {
        self.supervisor.handle_run(id, run, input, self.now);
        self.collect();
    }

    fn status(&self, id: &ItemId) -> Status {
        self.supervisor.status(id, self.now).unwrap()
    }
}

fn starts(actions: &[Action]) -> Vec<(ItemId, RunId, Caps)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Start {
                item,
                run,
                caps,
                dial_only: false,
            } => Some((item.clone(), *run, *caps)),
            _ => None,
        })
        .collect()
}

fn stops(actions: &[Action]) -> Vec<(ItemId, RunId)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Stop { item, run } => Some((item.clone(), *run)),
            _ => None,
        })
        .collect()
}

fn the_start(actions: &[Action], id: &ItemId) -> RunId {
    let found: Vec<RunId> = starts(actions)
        .into_iter()
        .filter(|(item, _, _)| item == id)
        .map(|(_, run, _)| run)
        .collect();
    assert_eq!(found.len(), 1, "one start of {id}: {actions:?}");
    found[0]
}

fn counters(verified_bytes: u64, in_flight_bytes: u64) -> RunInput {
    RunInput::Counters(Counters {
        verified_bytes,
        in_flight_bytes,
        peers: u64::from(in_flight_bytes > 0),
        addresses_known: 3,
        caps: Caps::default(),
    })
}

fn failure(kind: ProblemKind) -> Failure {
    Failure::new(kind, format!("{kind:?}"))
}

/// A download started and fetching: its run.
fn fetching(h: &mut Harness, id: &ItemId) -> RunId {
    let run = the_start(&h.take(), id);
    h.run(id, run, RunInput::Phase(RunPhase::Opening));
    h.run(id, run, RunInput::Phase(RunPhase::Fetching));
    h.take();
    run
}

#[test]
fn every_item_that_is_not_paused_starts_with_its_own_caps_in_the_directions_it_moves_bytes() {
    let mut shared = share("a");
    shared.caps = Caps {
        max_upload: Some(4096),
        max_download: Some(8192),
    };
    let mut paused = download("b", false, false);
    paused.paused = true;
    let mut fetched = download("c", false, false);
    fetched.caps = shared.caps;
    let ids = [shared.id.clone(), paused.id.clone(), fetched.id.clone()];
    let mut h = Harness::new(vec![shared, paused, fetched]);
    assert!(h.take().is_empty(), "nothing before the start");
    h.start();
    let actions = h.take();
    assert_eq!(
        actions[0],
        Action::LibraryCaps(Caps::default()),
        "the endpoint's caps first"
    );
    let started = starts(&actions);
    assert_eq!(started.len(), 2, "{actions:?}");
    assert_eq!(started[0].0, ids[0]);
    assert_eq!(
        started[0].2,
        Caps {
            max_upload: Some(4096),
            max_download: None
        },
        "a share only uploads"
    );
    assert_eq!(started[1].0, ids[2]);
    assert_eq!(
        started[1].2,
        Caps {
            max_upload: None,
            max_download: Some(8192)
        },
        "a download that does not serve only downloads"
    );
    assert_eq!(h.status(&ids[0]).state, ItemState::Starting);
    assert_eq!(h.status(&ids[1]).state, ItemState::Paused);
    assert_eq!(h.status(&ids[0]).runs, 1);
    assert_eq!(h.status(&ids[1]).runs, 0);
}

#[test]
fn a_runs_phases_are_the_items_states() {
    let item = share("a");
    let id = item.id.clone();
    let mut h = Harness::new(vec![item]);
    h.start();
    let run = the_start(&h.take(), &id);
    h.run(&id, run, RunInput::Phase(RunPhase::Verifying));
    assert_eq!(h.status(&id).state, ItemState::Verifying);
    h.run(&id, run, RunInput::Phase(RunPhase::Serving));
    assert_eq!(h.status(&id).state, ItemState::Serving);
    assert!(h.take().contains(&Action::Changed(id.clone())));
    // Serving has no try to time out.
    assert_eq!(h.supervisor.poll_timeout(), None);
}

#[test]
fn a_withdrawn_share_stops_serving_and_stays_stopped_through_a_resume_and_a_restart() {
    let item = share("a");
    let id = item.id.clone();
    let mut h = Harness::new(vec![item]);
    h.start();
    let run = the_start(&h.take(), &id);
    h.run(&id, run, RunInput::Phase(RunPhase::Serving));
    h.take();
    let withdrawn = WithdrawnRecord {
        publisher_key: "mmpk1aaaa".to_owned(),
        reason_route: "https://example.org/takedown/a".to_owned(),
        at: "2026-11-28T00:00:00Z".to_owned(),
    };
    h.supervisor
        .withdraw(&id, withdrawn.clone(), h.now)
        .unwrap();
    let actions = h.take();
    assert_eq!(stops(&actions), [(id.clone(), run)]);
    assert!(actions.contains(&Action::Save), "withdrawn is in the state");
    let status = h.status(&id);
    assert_eq!(status.state, ItemState::Withdrawn);
    let problem = status.problem.unwrap();
    assert_eq!(problem.kind, ProblemKind::Withdrawn);
    assert!(
        problem.text.contains("https://example.org/takedown/a"),
        "{}",
        problem.text
    );
    h.run(&id, run, RunInput::Ended(RunEnd::Stopped));
    assert!(starts(&h.take()).is_empty());
    assert_eq!(h.status(&id).state, ItemState::Withdrawn);
    // The same withdrawal again changes nothing; a resume starts nothing.
    h.supervisor.withdraw(&id, withdrawn, h.now).unwrap();
    assert!(h.take().is_empty());
    h.supervisor.set_paused(&id, false, None, h.now).unwrap();
    assert!(starts(&h.take()).is_empty());
    assert_eq!(h.status(&id).state, ItemState::Withdrawn);
    // After a restart (the state as saved), it does not start either;
    // the record, and so the file, is kept.
    let state = h.supervisor.state().clone();
    let mut again = Harness::with(state.items, BTreeMap::new(), Limits::default());
    again.start();
    assert!(starts(&again.take()).is_empty());
    assert_eq!(again.status(&id).state, ItemState::Withdrawn);
    assert!(again.supervisor.record(&id).is_some());
}

#[test]
fn a_pause_stops_the_run_and_a_resume_starts_a_new_one() {
    let item = download("a", false, false);
    let id = item.id.clone();
    let mut h = Harness::new(vec![item]);
    h.start();
    let run = fetching(&mut h, &id);
    h.supervisor.set_paused(&id, true, None, h.now).unwrap();
    let actions = h.take();
    assert_eq!(stops(&actions), [(id.clone(), run)]);
    assert!(actions.contains(&Action::Save), "paused is in the state");
    assert!(h.supervisor.record(&id).unwrap().paused);
    assert_eq!(h.status(&id).state, ItemState::Paused);
    h.run(&id, run, RunInput::Ended(RunEnd::Stopped));
    assert!(starts(&h.take()).is_empty());
    assert_eq!(h.status(&id).state, ItemState::Paused);
    h.supervisor.set_paused(&id, false, None, h.now).unwrap();
    let next = the_start(&h.take(), &id);
    assert_ne!(next, run);
    assert_eq!(h.status(&id).runs, 2);
    // The old run's late reports change nothing.
    h.run(
        &id,
        run,
        RunInput::Ended(RunEnd::Failed(failure(ProblemKind::Storage))),
    );
    assert_eq!(h.status(&id).state, ItemState::Starting);
}

#[test]
fn a_try_that_finds_no_peer_stops_and_the_download_waits_with_a_back_off_that_stays_bounded() {
    let item = download("a", false, false);
    let id = item.id.clone();
    let mut h = Harness::new(vec![item]);
    h.start();
    let mut run = fetching(&mut h, &id);
    let mut tries = Vec::new();
    let mut waits = Vec::new();
    for _ in 0..9 {
        let started = h.at();
        // Counters every second: nothing verified, nothing in flight.
        let mut stopped = None;
        for second in 1..=70 {
            h.advance_to(started + f64::from(second));
            h.run(&id, run, counters(0, 0));
            let actions = h.take();
            if let Some(stop) = stops(&actions).first() {
                stopped = Some(stop.1);
                break;
            }
        }
        assert_eq!(stopped, Some(run), "the try stops");
        tries.push(h.at() - started);
        assert_eq!(h.status(&id).state, ItemState::Waiting, "while it stops");
        h.run(&id, run, RunInput::Ended(RunEnd::Stopped));
        let status = h.status(&id);
        assert_eq!(status.state, ItemState::Waiting);
        let problem = status.problem.unwrap();
        assert_eq!(problem.kind, ProblemKind::NoPeersYet);
        let Resumes::NextTry {
            next_try,
            last_try,
            addresses_known,
            ..
        } = problem.resumes
        else {
            panic!("{:?}", problem.resumes);
        };
        assert_eq!(addresses_known, 3);
        assert_eq!(last_try, h.now);
        waits.push((next_try - h.now).as_secs());
        h.advance_to((next_try - h.base).as_secs_f64());
        run = the_start(&h.take(), &id);
        h.run(&id, run, RunInput::Phase(RunPhase::Opening));
        h.run(&id, run, RunInput::Phase(RunPhase::Fetching));
        h.take();
    }
    assert!(tries.iter().all(|t| (60.0..=61.0).contains(t)), "{tries:?}");
    assert_eq!(waits, [15, 30, 60, 120, 240, 300, 300, 300, 300]);
    assert_eq!(h.status(&id).runs, 10);
}

#[test]
fn bytes_in_flight_keep_a_slow_try_going_and_a_verified_chunk_starts_the_back_off_over() {
    let item = download("a", false, false);
    let id = item.id.clone();
    let mut h = Harness::new(vec![item]);
    h.start();
    let run = fetching(&mut h, &id);
    h.run(&id, run, counters(0, 0));
    // A slow peer: a chunk in flight for five minutes, then verified.
    for second in 1..=300 {
        h.advance_to(f64::from(second));
        h.run(&id, run, counters(0, SIZE / 16));
    }
    h.run(&id, run, counters(SIZE / 16, 0));
    assert!(stops(&h.take()).is_empty(), "never stopped while it moved");
    // Then the peer goes: the try stops a minute after the last progress.
    for second in 301..=400 {
        h.advance_to(f64::from(second));
        h.run(&id, run, counters(SIZE / 16, 0));
        if !stops(&h.take()).is_empty() {
            break;
        }
    }
    assert!((360.0..=361.0).contains(&h.at()), "{}", h.at());
    h.run(&id, run, RunInput::Ended(RunEnd::Stopped));
    let Some(Problem {
        resumes: Resumes::NextTry {
            next_try, tries, ..
        },
        ..
    }) = h.status(&id).problem
    else {
        panic!("waiting");
    };
    assert_eq!(tries, 1, "the verified chunk started the count over");
    assert_eq!(next_try - h.now, Duration::from_secs(15));
}

#[test]
fn a_download_whose_only_seeder_comes_twenty_minutes_later_finishes_untouched() {
    let item = download("a", false, false);
    let id = item.id.clone();
    let mut h = Harness::new(vec![item]);
    h.start();
    let seeder_online = 20.0 * 60.0;
    let mut run = fetching(&mut h, &id);
    let mut verified = 0;
    let mut delivered_at = None;
    // Every second, the run's counters: nothing while the seeder is
    // away; from its arrival, what a try connected to it verifies (a
    // sixteenth of the artifact a second).
    let mut second = 0.0;
    while second < 3600.0 {
        second += 1.0;
        h.advance_to(second);
        for action in h.take() {
            match action {
                Action::Stop { run: stopped, .. } => {
                    assert_eq!(stopped, run);
                    h.run(&id, run, RunInput::Ended(RunEnd::Stopped));
                }
                Action::Start { run: started, .. } => {
                    run = started;
                    h.run(&id, run, RunInput::Phase(RunPhase::Opening));
                    h.run(&id, run, RunInput::Phase(RunPhase::Fetching));
                }
                _ => {}
            }
        }
        let running = h.status(&id).state == ItemState::Fetching;
        if running && second >= seeder_online {
            verified = (verified + SIZE / 16).min(SIZE);
            h.run(&id, run, counters(verified, SIZE / 16));
            if verified == SIZE && delivered_at.is_none() {
                h.run(&id, run, RunInput::Delivered { seeding: false });
                h.run(&id, run, RunInput::Ended(RunEnd::Finished));
                delivered_at = Some(second);
            }
        } else if running {
            h.run(&id, run, counters(0, 0));
        }
    }
    let delivered_at = delivered_at.expect("delivered within the hour");
    assert_eq!(h.status(&id).state, ItemState::Done);
    assert!(
        h.supervisor
            .record(&id)
            .unwrap()
            .download()
            .unwrap()
            .delivered
    );
    // Found within the longest wait and one try of the seeder's start.
    let found_after = delivered_at - seeder_online - 16.0;
    assert!(
        found_after <= 300.0 + 60.0,
        "found {found_after} s after the seeder came"
    );
    assert!(
        h.status(&id).runs > 5,
        "it kept trying: {}",
        h.status(&id).runs
    );
    assert_eq!(h.supervisor.poll_timeout(), None, "nothing more to do");
}

/// A download waiting with the longest back-off (5 min) dials the
/// addresses it knows every minute, and only that (no DHT): a dial that
/// reaches nobody ends after 15 s and the wait goes on unchanged, the
/// full tries keep their times, and a seeder back after 30 minutes is
/// found at the next dial, within 90 s of its return.
#[test]
fn a_waiting_download_dials_its_known_addresses_every_minute_and_finds_a_returning_seeder() {
    let item = download("a", false, false);
    let id = item.id.clone();
    let mut h = Harness::with_default_patience(vec![item]);
    h.start();
    let seeder_online = 30.0 * 60.0;
    let mut run = fetching(&mut h, &id);
    let mut dial_starts = Vec::new();
    let mut full_starts = Vec::new();
    let mut verified = 0;
    let mut delivered_at = None;
    let mut second = 0.0;
    while second < 3600.0 && delivered_at.is_none() {
        second += 1.0;
        h.advance_to(second);
        for action in h.take() {
            match action {
                Action::Stop { run: stopped, .. } => {
                    assert_eq!(stopped, run);
                    h.run(&id, run, RunInput::Ended(RunEnd::Stopped));
                }
                Action::Start {
                    run: started,
                    dial_only,
                    ..
                } => {
                    run = started;
                    if dial_only {
                        dial_starts.push(second);
                        // Dialing: it still shows as waiting.
                        assert_eq!(h.status(&id).state, ItemState::Waiting);
                    } else {
                        full_starts.push(second);
                    }
                    h.run(&id, run, RunInput::Phase(RunPhase::Opening));
                    h.run(&id, run, RunInput::Phase(RunPhase::Fetching));
                }
                _ => {}
            }
        }
        let running = matches!(
            h.supervisor.items[&id].phase,
            Phase::Running(Running { run: r, .. }) if r == run
        );
        if running && second >= seeder_online {
            // The seeder answers: a peer, then a sixteenth a second.
            verified = (verified + SIZE / 16).min(SIZE);
            h.run(
                &id,
                run,
                RunInput::Counters(Counters {
                    verified_bytes: verified,
                    in_flight_bytes: SIZE / 16,
                    peers: 1,
                    addresses_known: 3,
                    caps: Caps::default(),
                }),
            );
            assert_eq!(h.status(&id).state, ItemState::Fetching, "a try now");
            if verified == SIZE {
                h.run(&id, run, RunInput::Delivered { seeding: false });
                h.run(&id, run, RunInput::Ended(RunEnd::Finished));
                delivered_at = Some(second);
            }
        } else if running {
            h.run(&id, run, counters(0, 0));
        }
    }
    let delivered_at = delivered_at.expect("delivered within the hour");
    assert_eq!(h.status(&id).state, ItemState::Done);
    // Found at the first dial after its return: within a minute, and the
    // 16 s its bytes take.
    assert!(
        delivered_at - seeder_online <= 60.0 + 17.0,
        "found {} s after the seeder came",
        delivered_at - seeder_online
    );
    // The known addresses are dialed at least once a minute: at each
    // dial, and through each full try (whose node dials them itself, at
    // most 30 s apart) until it ends a minute after it started.
    let mut contacts: Vec<f64> = dial_starts.clone();
    for start in &full_starts {
        contacts.extend([*start, start + 60.0]);
    }
    contacts.retain(|at| *at > 600.0 && *at < seeder_online);
    contacts.sort_by(f64::total_cmp);
    assert!(dial_starts.len() >= 15, "{dial_starts:?}");
    for pair in contacts.windows(2) {
        assert!(
            pair[1] - pair[0] <= 61.0,
            "{contacts:?} (dials {dial_starts:?}, tries {full_starts:?})"
        );
    }
    // The full tries keep the back-off's times: 5 minutes between the
    // end of one and the start of the next, dials or not.
    let gaps: Vec<f64> = full_starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter()
            .rev()
            .take(3)
            .all(|gap| (359.0..=362.0).contains(gap)),
        "{full_starts:?}"
    );
}

#[test]
fn a_run_that_fails_for_its_peers_or_its_network_waits_and_tries_again() {
    for kind in [ProblemKind::NoPeersYet, ProblemKind::Network] {
        let item = download("a", false, false);
        let id = item.id.clone();
        let mut h = Harness::new(vec![item]);
        h.start();
        let run = fetching(&mut h, &id);
        h.run(&id, run, RunInput::Ended(RunEnd::Failed(failure(kind))));
        let status = h.status(&id);
        assert_eq!(status.state, ItemState::Waiting, "{kind:?}");
        assert_eq!(status.problem.as_ref().unwrap().kind, kind);
        h.advance_to(14.0);
        assert!(starts(&h.take()).is_empty());
        h.advance_to(15.0);
        the_start(&h.take(), &id);
    }
}

#[test]
fn a_full_disk_waits_for_space_and_the_download_goes_on_by_itself_once_it_is_freed() {
    let item = download("a", false, false);
    let id = item.id.clone();
    let mut h = Harness::new(vec![item]);
    h.start();
    let run = fetching(&mut h, &id);
    let full = Failure {
        needed_bytes: Some(4 << 20),
        ..failure(ProblemKind::DiskFull)
    };
    h.run(&id, run, RunInput::Ended(RunEnd::Failed(full)));
    let status = h.status(&id);
    assert_eq!(status.state, ItemState::Failed);
    let problem = status.problem.unwrap();
    assert_eq!(problem.kind, ProblemKind::DiskFull);
    assert_eq!(problem.resumes, Resumes::FreeBytes(4 << 20));
    let measures = |actions: &[Action]| {
        actions
            .iter()
            .filter(|a| **a == Action::MeasureDisk)
            .count()
    };
    assert_eq!(measures(&h.take()), 1, "measured at once");
    h.supervisor.handle_disk(1 << 20, h.now);
    assert!(starts(&h.take()).is_empty(), "not enough yet");
    h.advance_to(5.0);
    assert_eq!(measures(&h.take()), 1, "and again every 5 s");
    h.advance_to(10.0);
    assert_eq!(measures(&h.take()), 1);
    h.supervisor.handle_disk(64 << 20, h.now);
    let next = the_start(&h.take(), &id);
    assert_ne!(next, run);
    h.advance_to(30.0);
    assert_eq!(measures(&h.take()), 0, "nobody waits for space now");
}

#[test]
fn a_failure_a_person_must_fix_stays_until_a_resume() {
    for kind in [
        ProblemKind::RefusedSignature,
        ProblemKind::VerificationFailed,
        ProblemKind::Damaged,
        ProblemKind::Storage,
        ProblemKind::FileGone,
        ProblemKind::Internal,
    ] {
        let item = share("a");
        let id = item.id.clone();
        let mut h = Harness::new(vec![item]);
        h.start();
        let run = the_start(&h.take(), &id);
        h.run(&id, run, RunInput::Ended(RunEnd::Failed(failure(kind))));
        let problem = h.status(&id).problem.unwrap();
        assert_eq!((problem.kind, problem.resumes), (kind, Resumes::Person));
        assert_eq!(h.supervisor.poll_timeout(), None, "{kind:?}");
        h.advance_to(3600.0);
        assert!(starts(&h.take()).is_empty());
        h.supervisor.set_paused(&id, false, None, h.now).unwrap();
        the_start(&h.take(), &id);
    }
}

#[test]
fn an_item_whose_manifest_is_gone_fails_until_a_resume_finds_it() {
    let item = share("a");
    let id = item.id.clone();
    let gone = Failure::new(ProblemKind::ManifestChanged, "its manifest cannot be read");
    let mut h = Harness::with(
        vec![item],
        BTreeMap::from([(id.clone(), Err(gone.clone()))]),
        Limits::default(),
    );
    h.start();
    assert!(starts(&h.take()).is_empty());
    assert_eq!(h.status(&id).state, ItemState::Failed);
    h.supervisor
        .set_paused(&id, false, Some(Err(gone)), h.now)
        .unwrap();
    assert!(starts(&h.take()).is_empty());
    h.supervisor
        .set_paused(&id, false, Some(Ok(SIZE)), h.now)
        .unwrap();
    the_start(&h.take(), &id);
}

#[test]
fn a_lower_quota_holds_the_newest_downloads_not_delivered_and_a_higher_one_lets_them_go() {
    let mut old = download("old", false, false);
    if let Work::Download(d) = &mut old.work {
        d.delivered = true;
    }
    let first = download("first", false, false);
    let second = download("second", false, false);
    let ids = [old.id.clone(), first.id.clone(), second.id.clone()];
    let mut h = Harness::new(vec![old, first, second]);
    h.start();
    let actions = h.take();
    let run_first = the_start(&actions, &ids[1]);
    let run_second = the_start(&actions, &ids[2]);
    assert_eq!(h.status(&ids[0]).state, ItemState::Done);
    // Room for two of the three: the newest waits.
    h.supervisor.set_limits(
        Limits {
            quota_bytes: Some(2 * SIZE),
            ..Limits::default()
        },
        h.now,
    );
    let actions = h.take();
    assert_eq!(stops(&actions), [(ids[2].clone(), run_second)]);
    assert!(!actions.iter().any(|a| matches!(a, Action::LibraryCaps(_))));
    h.run(&ids[2], run_second, RunInput::Ended(RunEnd::Stopped));
    let problem = h.status(&ids[2]).problem.unwrap();
    assert_eq!(problem.kind, ProblemKind::OverQuota);
    assert_eq!(problem.resumes, Resumes::Quota);
    assert_eq!(h.status(&ids[1]).state, ItemState::Starting);
    // Room for one: the next newest waits too (the delivered one is on
    // the disk already and cannot wait).
    h.supervisor.set_limits(
        Limits {
            quota_bytes: Some(SIZE),
            ..Limits::default()
        },
        h.now,
    );
    assert_eq!(stops(&h.take()), [(ids[1].clone(), run_first)]);
    h.run(&ids[1], run_first, RunInput::Ended(RunEnd::Stopped));
    assert_eq!(h.status(&ids[1]).state, ItemState::Failed);
    // The quota raised: both go on by themselves.
    h.supervisor.set_limits(Limits::default(), h.now);
    let actions = h.take();
    the_start(&actions, &ids[1]);
    the_start(&actions, &ids[2]);
}

#[test]
fn removing_a_download_makes_room_in_the_quota_for_one_it_held() {
    let first = download("first", false, false);
    let second = download("second", false, false);
    let ids = [first.id.clone(), second.id.clone()];
    let mut h = Harness::with(
        vec![first, second],
        BTreeMap::new(),
        Limits {
            quota_bytes: Some(SIZE),
            ..Limits::default()
        },
    );
    h.start();
    let actions = h.take();
    let run = the_start(&actions, &ids[0]);
    assert_eq!(
        h.status(&ids[1]).state,
        ItemState::Failed,
        "held at the start"
    );
    h.supervisor.remove(&ids[0], h.now).unwrap();
    let actions = h.take();
    assert_eq!(stops(&actions), [(ids[0].clone(), run)]);
    the_start(&actions, &ids[1]);
    // The removed item's last report changes nothing.
    h.run(&ids[0], run, RunInput::Ended(RunEnd::Stopped));
    assert!(h.supervisor.status(&ids[0], h.now).is_none());
    assert!(h.take().is_empty());
}

#[test]
fn a_delivered_download_that_does_not_seed_is_done_and_one_that_seeds_serves_on() {
    let plain = download("plain", false, false);
    let seeding = download("seeding", true, true);
    let ids = [plain.id.clone(), seeding.id.clone()];
    let mut h = Harness::new(vec![plain, seeding]);
    h.start();
    let actions = h.take();
    let runs = [the_start(&actions, &ids[0]), the_start(&actions, &ids[1])];
    assert_eq!(
        starts(&actions)[1].2,
        Caps::default(),
        "a serving download has both caps (none here)"
    );
    h.run(&ids[0], runs[0], RunInput::Delivered { seeding: false });
    assert!(
        h.take().contains(&Action::Save),
        "delivered is in the state"
    );
    h.run(&ids[0], runs[0], RunInput::Ended(RunEnd::Finished));
    assert_eq!(h.status(&ids[0]).state, ItemState::Done);
    h.run(&ids[1], runs[1], RunInput::Delivered { seeding: true });
    assert_eq!(h.status(&ids[1]).state, ItemState::Seeding);
    assert!(
        h.supervisor
            .record(&ids[1])
            .unwrap()
            .download()
            .unwrap()
            .delivered
    );
    // Paused and resumed, it serves its file again.
    h.supervisor.set_paused(&ids[1], true, None, h.now).unwrap();
    h.run(&ids[1], runs[1], RunInput::Ended(RunEnd::Stopped));
    h.take();
    h.supervisor
        .set_paused(&ids[1], false, None, h.now)
        .unwrap();
    let again = the_start(&h.take(), &ids[1]);
    h.run(&ids[1], again, RunInput::Phase(RunPhase::Verifying));
    h.run(&ids[1], again, RunInput::Phase(RunPhase::Seeding));
    assert_eq!(h.status(&ids[1]).state, ItemState::Seeding);
    // A done download is not started again by a resume.
    h.supervisor
        .set_paused(&ids[0], false, None, h.now)
        .unwrap();
    assert!(starts(&h.take()).is_empty());
    assert_eq!(h.status(&ids[0]).state, ItemState::Done);
}

#[test]
fn caps_change_in_the_running_node_and_the_library_caps_on_the_endpoint_restarting_nothing() {
    let item = download("a", true, false);
    let id = item.id.clone();
    let mut h = Harness::new(vec![item]);
    h.start();
    let run = fetching(&mut h, &id);
    let caps = Caps {
        max_upload: Some(2048),
        max_download: Some(4096),
    };
    h.supervisor.set_caps(&id, caps).unwrap();
    let actions = h.take();
    assert!(
        actions.contains(&Action::SetCaps {
            item: id.clone(),
            run,
            caps
        }),
        "{actions:?}"
    );
    assert!(stops(&actions).is_empty() && starts(&actions).is_empty());
    assert_eq!(h.supervisor.record(&id).unwrap().caps, caps);
    // The caps shown are those the node holds.
    h.run(
        &id,
        run,
        RunInput::Counters(Counters {
            caps: Caps {
                max_upload: Some(2048),
                max_download: Some(1024),
            },
            ..Counters::default()
        }),
    );
    assert_eq!(h.status(&id).caps.max_download, Some(1024));
    let library = Caps {
        max_upload: None,
        max_download: Some(2048),
    };
    h.supervisor.set_limits(
        Limits {
            caps: library,
            quota_bytes: None,
        },
        h.now,
    );
    let actions = h.take();
    assert!(actions.contains(&Action::LibraryCaps(library)));
    assert!(stops(&actions).is_empty() && starts(&actions).is_empty());
    assert_eq!(h.status(&id).runs, 1);
    // The same limits again: nothing to tell the endpoint.
    h.supervisor.set_limits(
        Limits {
            caps: library,
            quota_bytes: None,
        },
        h.now,
    );
    assert!(!h.take().iter().any(|a| matches!(a, Action::LibraryCaps(_))));
}

#[test]
fn a_pause_while_a_try_stops_or_while_it_waits_keeps_the_item_paused() {
    let item = download("a", false, false);
    let id = item.id.clone();
    let mut h = Harness::new(vec![item]);
    h.start();
    let run = fetching(&mut h, &id);
    h.advance_to(61.0);
    assert_eq!(stops(&h.take()), [(id.clone(), run)]);
    h.supervisor.set_paused(&id, true, None, h.now).unwrap();
    h.run(&id, run, RunInput::Ended(RunEnd::Stopped));
    assert_eq!(h.status(&id).state, ItemState::Paused);
    assert_eq!(h.supervisor.poll_timeout(), None);
    h.supervisor.set_paused(&id, false, None, h.now).unwrap();
    let run = fetching(&mut h, &id);
    h.advance_to(122.0);
    h.take();
    h.run(&id, run, RunInput::Ended(RunEnd::Stopped));
    assert_eq!(h.status(&id).state, ItemState::Waiting);
    h.supervisor.set_paused(&id, true, None, h.now).unwrap();
    assert_eq!(h.status(&id).state, ItemState::Paused);
    h.advance_to(3600.0);
    assert!(starts(&h.take()).is_empty(), "a paused item never tries");
    // A resume tries at once, not at the end of the wait.
    h.supervisor.set_paused(&id, false, None, h.now).unwrap();
    the_start(&h.take(), &id);
}

#[test]
fn the_companion_stopping_stops_every_run_and_starts_nothing_after() {
    let a = share("a");
    let b = download("b", false, false);
    let ids = [a.id.clone(), b.id.clone()];
    let mut h = Harness::new(vec![a, b]);
    h.start();
    let actions = h.take();
    let runs = [the_start(&actions, &ids[0]), the_start(&actions, &ids[1])];
    h.supervisor.shut_down();
    let mut stopped = stops(&h.take());
    stopped.sort();
    let mut expected = vec![(ids[0].clone(), runs[0]), (ids[1].clone(), runs[1])];
    expected.sort();
    assert_eq!(stopped, expected);
    assert!(!h.supervisor.is_idle());
    h.run(&ids[0], runs[0], RunInput::Ended(RunEnd::Stopped));
    h.run(
        &ids[1],
        runs[1],
        RunInput::Ended(RunEnd::Failed(failure(ProblemKind::NoPeersYet))),
    );
    assert!(h.supervisor.is_idle());
    assert!(starts(&h.take()).is_empty());
    assert_eq!(h.supervisor.poll_timeout(), None);
}

#[test]
fn after_a_restart_every_item_that_is_not_paused_runs_again_whatever_held_it_before() {
    // The state as a companion left it: a delivered seeding download, a
    // paused share, a download that waited for its peers (waits are not
    // kept: a restart is a try).
    let mut seeding = download("seeding", true, true);
    if let Work::Download(d) = &mut seeding.work {
        d.delivered = true;
    }
    let mut paused = share("paused");
    paused.paused = true;
    let waiting = download("waiting", false, false);
    let ids = [seeding.id.clone(), paused.id.clone(), waiting.id.clone()];
    let mut h = Harness::new(vec![seeding, paused, waiting]);
    h.start();
    let actions = h.take();
    let started: Vec<ItemId> = starts(&actions).into_iter().map(|s| s.0).collect();
    assert_eq!(started, [ids[0].clone(), ids[2].clone()]);
    assert_eq!(
        starts(&actions)[0].2,
        Caps::default(),
        "a seeding download only uploads"
    );
}

#[test]
fn admission_refuses_a_second_item_of_an_artifact_a_second_model_id_and_what_does_not_fit() {
    let mut h = Harness::with(
        vec![share("a"), download("b", false, false)],
        BTreeMap::new(),
        Limits {
            quota_bytes: Some(3 * SIZE),
            ..Limits::default()
        },
    );
    h.start();
    let candidate = |kind, name: &'static str, root_name: &'static str, bytes| {
        (kind, model(name), root(root_name), bytes)
    };
    let check =
        |h: &Harness, (kind, model, root, bytes): (ItemKind, ModelId, Sha256Digest, u64), free| {
            h.supervisor.admit(
                &Candidate {
                    kind,
                    model_id: &model,
                    merkle_root: &root,
                    artifact_bytes: bytes,
                    version_dir: None,
                },
                free,
            )
        };
    assert!(matches!(
        check(&h, candidate(ItemKind::Share, "a", "a", SIZE), None),
        Err(Refusal::Exists { .. })
    ));
    assert!(matches!(
        check(&h, candidate(ItemKind::Download, "a", "a", SIZE), None),
        Err(Refusal::OtherKind {
            kind: ItemKind::Share,
            ..
        })
    ));
    assert!(matches!(
        check(&h, candidate(ItemKind::Share, "b", "b", SIZE), None),
        Err(Refusal::OtherKind {
            kind: ItemKind::Download,
            ..
        })
    ));
    assert!(matches!(
        check(
            &h,
            candidate(ItemKind::Download, "b", "other root", SIZE),
            None
        ),
        Err(Refusal::SameModelId { .. })
    ));
    assert!(matches!(
        check(
            &h,
            candidate(ItemKind::Download, "c", "c", 2 * SIZE + 1),
            None
        ),
        Err(Refusal::DoesNotFit {
            refusal: QuotaRefusal::OverQuota { .. },
            ..
        })
    ));
    assert!(matches!(
        check(
            &h,
            candidate(ItemKind::Download, "c", "c", SIZE),
            Some(SIZE - 1)
        ),
        Err(Refusal::DoesNotFit {
            refusal: QuotaRefusal::DiskFull { .. },
            ..
        })
    ));
    assert_eq!(
        check(
            &h,
            candidate(ItemKind::Download, "c", "c", 2 * SIZE),
            Some(SIZE * 4)
        ),
        Ok(())
    );
    assert_eq!(
        check(
            &h,
            candidate(ItemKind::Share, "c", "c", 100 * SIZE),
            Some(0)
        ),
        Ok(()),
        "a share takes no quota"
    );
    let c = download("c", false, false);
    let id = c.id.clone();
    h.supervisor
        .add(c, &model("c"), &root("c"), SIZE, None, h.now)
        .unwrap();
    let actions = h.take();
    assert!(actions.contains(&Action::Save));
    the_start(&actions, &id);
    assert_eq!(h.supervisor.used_bytes(), 2 * SIZE);
}

#[test]
fn a_second_version_of_a_downloaded_model_goes_in_a_directory_of_its_own() {
    let mut h = Harness::new(vec![share("s"), download("b", false, false)]);
    h.start();
    let (b, s) = (model("b"), model("s"));
    let manifest = Sha256Digest::of(b"version 2 of b");
    // A share takes no place in downloads/: a download of its model id
    // goes there. A download of b's model id goes beside b.
    assert_eq!(h.supervisor.placement(&s, &manifest), None);
    assert_eq!(h.supervisor.placement(&b, &manifest), Some(manifest));
    let v2_root = root("b version 2");
    let admit = |h: &Harness, version_dir| {
        h.supervisor.admit(
            &Candidate {
                kind: ItemKind::Download,
                model_id: &b,
                merkle_root: &v2_root,
                artifact_bytes: SIZE,
                version_dir,
            },
            None,
        )
    };
    assert!(matches!(admit(&h, None), Err(Refusal::SameModelId { .. })));
    assert_eq!(admit(&h, Some(&manifest)), Ok(()));
    let mut v2 = download("b", false, false);
    v2.id = ItemId::of(ItemKind::Download, &b, &v2_root);
    v2.manifest_sha256 = manifest.to_hex();
    if let Work::Download(record) = &mut v2.work {
        record.version_dir = Some(manifest);
    }
    h.supervisor
        .add(v2, &b, &v2_root, SIZE, None, h.now)
        .unwrap();
    // The same version directory twice: refused, its files are there.
    let v3_root = root("b version 3");
    let twice = h.supervisor.admit(
        &Candidate {
            kind: ItemKind::Download,
            model_id: &b,
            merkle_root: &v3_root,
            artifact_bytes: SIZE,
            version_dir: Some(&manifest),
        },
        None,
    );
    assert!(matches!(twice, Err(Refusal::SameModelId { .. })));
    // With the first version gone, downloads/ is free for the model again.
    let first = ItemId::of(ItemKind::Download, &b, &root("b"));
    h.supervisor.remove(&first, h.now).unwrap();
    assert_eq!(h.supervisor.placement(&b, &manifest), None);
}

#[test]
fn a_full_library_refuses_one_more_item() {
    let records: Vec<ItemRecord> = (0..MAX_ITEMS).map(|i| share(&format!("s{i}"))).collect();
    let h = Harness::new(records);
    let name = model("one-more");
    let digest = root("one-more");
    assert_eq!(
        h.supervisor.admit(
            &Candidate {
                kind: ItemKind::Share,
                model_id: &name,
                merkle_root: &digest,
                artifact_bytes: SIZE,
                version_dir: None,
            },
            None
        ),
        Err(Refusal::TooMany)
    );
}

#[test]
fn an_item_that_cannot_be_written_is_taken_out_again_and_a_removal_put_back() {
    let mut h = Harness::new(vec![share("a")]);
    h.start();
    h.take();
    let b = share("b");
    let id = b.id.clone();
    h.supervisor
        .add(b, &model("b"), &root("b"), SIZE, None, h.now)
        .unwrap();
    let run = the_start(&h.take(), &id);
    h.supervisor.unadd(&id);
    assert_eq!(stops(&h.take()), [(id.clone(), run)]);
    assert!(h.supervisor.record(&id).is_none());
    let a = share("a").id;
    let record = h.supervisor.remove(&a, h.now).unwrap();
    h.take();
    h.supervisor.unremove(record, SIZE, h.now);
    the_start(&h.take(), &a);
    assert!(h.supervisor.record(&a).is_some());
    assert!(matches!(
        h.supervisor.remove(&id, h.now),
        Err(Refusal::NotFound(_))
    ));
}

#[test]
fn a_port_is_kept_once_and_written_only_when_it_changes() {
    let item = share("a");
    let id = item.id.clone();
    let mut h = Harness::new(vec![item]);
    h.start();
    h.take();
    h.supervisor.note_port(&id, 4433);
    assert_eq!(h.take(), [Action::Save]);
    h.supervisor.note_port(&id, 4433);
    assert!(h.take().is_empty());
    assert_eq!(h.supervisor.record(&id).unwrap().port, Some(4433));
}
