//! The re-announce loop against a fake DHT, on tokio's paused clock, the
//! configuration's ranges and how refusals are shown. The real DHT on
//! loopback is exercised in `swarm/tests/dht_loopback.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::time::Instant;

use super::*;

type AnnounceOnce = std::pin::Pin<Box<dyn Future<Output = Result<(), AnnounceFailure>> + Send>>;

/// A fake DHT that counts announces and can take a while to answer.
#[derive(Default)]
struct FakeDht {
    started: AtomicU64,
    finished: AtomicU64,
    started_after_stop: AtomicU64,
    stop_returned: AtomicBool,
}

impl FakeDht {
    fn announcer(
        self: &Arc<Self>,
        takes: Duration,
        outcome: Result<(), AnnounceFailure>,
    ) -> impl FnMut() -> AnnounceOnce + Send + use<> {
        let fake = Arc::clone(self);
        move || {
            let fake = Arc::clone(&fake);
            let outcome = outcome.clone();
            Box::pin(async move {
                fake.started.fetch_add(1, Ordering::SeqCst);
                if fake.stop_returned.load(Ordering::SeqCst) {
                    fake.started_after_stop.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(takes).await;
                fake.finished.fetch_add(1, Ordering::SeqCst);
                outcome
            })
        }
    }
}

/// Polls `done` every 5 ms until it holds or `limit` passes (on the
/// paused clock: each look moves it on).
async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    done()
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    status: watch::Receiver<AnnounceStatus>,
}

fn run(
    fake: &Arc<FakeDht>,
    interval: Duration,
    takes: Duration,
    outcome: Result<(), AnnounceFailure>,
    grace: Duration,
) -> Running {
    let (status_tx, status) = watch::channel(AnnounceStatus::default());
    let (stop, stop_rx) = oneshot::channel();
    let task = tokio::spawn(keep_announced(
        fake.announcer(takes, outcome),
        AnnounceSchedule::new(interval, interval),
        stop_rx,
        status_tx,
        grace,
    ));
    Running { stop, task, status }
}

#[tokio::test(start_paused = true)]
async fn it_announces_again_every_interval_and_nothing_after_stop() {
    let fake = Arc::new(FakeDht::default());
    let interval = Duration::from_millis(20);
    let running = run(&fake, interval, Duration::ZERO, Ok(()), STOP_GRACE);
    assert!(
        eventually(Duration::from_secs(10), || fake
            .finished
            .load(Ordering::SeqCst)
            >= 4)
        .await,
        "re-announced"
    );
    let status = running.status.borrow().clone();
    assert!(status.announced >= 3 && !status.stopped, "{status:?}");

    let _ = running.stop.send(());
    running.task.await.unwrap();
    fake.stop_returned.store(true, Ordering::SeqCst);
    let status = running.status.borrow().clone();
    assert!(status.stopped, "{status:?}");
    assert_eq!(status.next_in, None);
    let after_stop = fake.started.load(Ordering::SeqCst);
    // Ten intervals later, still nothing new.
    tokio::time::sleep(interval * 10).await;
    assert_eq!(fake.started.load(Ordering::SeqCst), after_stop);
    assert_eq!(fake.started_after_stop.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_stop_during_an_announce_lets_it_finish_first() {
    let fake = Arc::new(FakeDht::default());
    let takes = Duration::from_millis(100);
    let running = run(&fake, Duration::from_secs(60), takes, Ok(()), STOP_GRACE);
    assert!(
        eventually(Duration::from_secs(10), || fake
            .started
            .load(Ordering::SeqCst)
            == 1)
        .await
    );
    let _ = running.stop.send(());
    running.task.await.unwrap();
    // The announce in flight finished before the loop ended.
    assert_eq!(fake.finished.load(Ordering::SeqCst), 1);
    let status = running.status.borrow().clone();
    assert_eq!(
        (status.attempts, status.announced, status.stopped),
        (1, 1, true)
    );
}

#[tokio::test(start_paused = true)]
async fn an_announce_that_never_ends_holds_a_stop_for_the_grace_only() {
    let fake = Arc::new(FakeDht::default());
    let grace = Duration::from_millis(50);
    let running = run(
        &fake,
        Duration::from_secs(60),
        Duration::from_secs(3600),
        Ok(()),
        grace,
    );
    assert!(
        eventually(Duration::from_secs(10), || fake
            .started
            .load(Ordering::SeqCst)
            == 1)
        .await
    );
    let asked = Instant::now();
    let _ = running.stop.send(());
    running.task.await.unwrap();
    let held = asked.elapsed();
    assert!(held >= grace && held < 2 * grace, "{held:?}");
    let status = running.status.borrow().clone();
    assert_eq!((status.announced, status.stopped), (0, true));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_handle_stops_the_announcing() {
    let fake = Arc::new(FakeDht::default());
    let running = run(
        &fake,
        Duration::from_millis(10),
        Duration::ZERO,
        Ok(()),
        STOP_GRACE,
    );
    assert!(
        eventually(Duration::from_secs(10), || fake
            .finished
            .load(Ordering::SeqCst)
            >= 2)
        .await
    );
    drop(running.stop);
    tokio::time::timeout(Duration::from_secs(10), running.task)
        .await
        .expect("the loop ends when its handle is gone")
        .unwrap();
    assert!(running.status.borrow().stopped);
}

#[tokio::test(start_paused = true)]
async fn failures_are_reported_and_retried_sooner() {
    let fake = Arc::new(FakeDht::default());
    let (status_tx, status) = watch::channel(AnnounceStatus::default());
    let (stop, stop_rx) = oneshot::channel();
    let task = tokio::spawn(keep_announced(
        fake.announcer(Duration::ZERO, Err(AnnounceFailure::NoNodes)),
        // Successes would wait an hour; failures retry after 10 ms, 20 ms...
        AnnounceSchedule::new(Duration::from_secs(3600), Duration::from_millis(10)),
        stop_rx,
        status_tx,
        STOP_GRACE,
    ));
    assert!(
        eventually(Duration::from_secs(10), || fake
            .finished
            .load(Ordering::SeqCst)
            >= 3)
        .await
    );
    let seen = status.borrow().clone();
    assert_eq!(seen.announced, 0);
    assert_eq!(seen.last_failure, Some(AnnounceFailure::NoNodes));
    let _ = stop.send(());
    task.await.unwrap();
}

#[test]
fn the_defaults_are_valid_and_each_range_is_checked() {
    let valid = DiscoveryConfig::default();
    assert_eq!(valid.validate(), Ok(()));
    assert_eq!(valid.bind.port(), 0, "never the crate's 6881 by default");
    assert!(!valid.allows_loopback());

    let with = |change: fn(&mut DiscoveryConfig)| {
        let mut config = DiscoveryConfig::default();
        change(&mut config);
        config.validate()
    };
    assert!(matches!(
        with(|c| c.reannounce_interval = Duration::ZERO),
        Err(DiscoveryConfigError::ReannounceInterval(_))
    ));
    assert!(matches!(
        with(|c| c.reannounce_interval = MAX_REANNOUNCE_INTERVAL + Duration::from_secs(1)),
        Err(DiscoveryConfigError::ReannounceInterval(_))
    ));
    assert!(matches!(
        with(|c| c.first_retry = REANNOUNCE_INTERVAL * 2),
        Err(DiscoveryConfigError::FirstRetry(_))
    ));
    assert!(matches!(
        with(|c| c.max_lookup_peers = 0),
        Err(DiscoveryConfigError::MaxLookupPeers(0))
    ));
    assert!(matches!(
        with(|c| c.max_lookup_peers = 1025),
        Err(DiscoveryConfigError::MaxLookupPeers(1025))
    ));
    assert!(matches!(
        with(|c| c.lookup_timeout = Duration::from_secs(301)),
        Err(DiscoveryConfigError::LookupTimeout(_))
    ));
    assert_eq!(
        with(|c| c.bootstrap = Bootstrap::Nodes(Vec::new())),
        Err(DiscoveryConfigError::NoBootstrapNodes)
    );
}

#[test]
fn loopback_answers_are_allowed_only_on_a_loopback_dht() {
    let local = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 6881);
    let remote = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 6881);
    let config = |bootstrap| DiscoveryConfig {
        bootstrap,
        ..DiscoveryConfig::default()
    };
    assert!(config(Bootstrap::Nodes(vec![local])).allows_loopback());
    assert!(!config(Bootstrap::Nodes(vec![local, remote])).allows_loopback());
    assert!(!config(Bootstrap::Public).allows_loopback());
    assert!(!config(Bootstrap::NewNetwork).allows_loopback());
}

#[test]
fn a_refusal_is_shown_short_and_without_control_characters() {
    let refusal = mainline::errors::ErrorSpecific {
        code: 203,
        description: format!("Bad token\u{1b}[2J\n{}", "x".repeat(1000)),
    };
    let failure = AnnounceFailure::from(PutQueryError::ErrorResponse(refusal));
    let AnnounceFailure::Refused { code, message } = failure else {
        panic!("a refusal");
    };
    assert_eq!(code, 203);
    assert_eq!(message.chars().count(), MAX_REFUSAL_TEXT);
    assert!(message.starts_with("Bad token[2J"));
    assert!(!message.chars().any(char::is_control));
    assert_eq!(
        AnnounceFailure::from(PutQueryError::NoClosestNodes),
        AnnounceFailure::NoNodes
    );
    assert_eq!(
        AnnounceFailure::from(PutQueryError::Timeout),
        AnnounceFailure::Timeout
    );
}

#[tokio::test]
async fn a_taken_port_is_a_bind_error() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let std::net::SocketAddr::V4(addr) = taken.local_addr().unwrap() else {
        unreachable!("bound to IPv4");
    };
    let config = DiscoveryConfig {
        bind: addr,
        bootstrap: Bootstrap::NewNetwork,
        ..DiscoveryConfig::default()
    };
    match Discovery::start(config).await {
        Err(DiscoveryError::Bind { addr: named, .. }) => assert_eq!(named, addr),
        other => panic!("expected a bind error, got {other:?}"),
    }
}

#[test]
fn starting_outside_a_runtime_is_refused() {
    let config = DiscoveryConfig {
        bind: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
        bootstrap: Bootstrap::NewNetwork,
        ..DiscoveryConfig::default()
    };
    // It refuses before its first await, so one poll without a runtime
    // gives the answer.
    let mut start = std::pin::pin!(Discovery::start(config));
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(matches!(
        start.as_mut().poll(&mut context),
        std::task::Poll::Ready(Err(DiscoveryError::NoRuntime))
    ));
}
