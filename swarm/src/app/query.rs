//! Carries out a [`ManifestQuery`]: dials, queries, relay links, punches
//! and mirror reads, each a task reporting in one channel, every outcome
//! handed back to the query, which decides everything (the order, the
//! schedule, a busy peer dialed again, the punch and the relay's channel,
//! the time to give up, what an answer is).
//!
//! Two queries run on it: a ticket's manifest ([`super::ticket`]) and a
//! new version's chunk list asked of a download's named peers
//! ([`super::fetch`]), so that a peer reached only through the relays it
//! names gives either. What is asked on a connection, and of a mirror, is
//! the caller's: [`Asking`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use minimodel_node::query::{
    Answer, DialId, ManifestQuery, QueryAction, QueryOutcome, QuerySource, RelayNews,
};
use minimodel_wire::PeerId;
use minimodel_wire::relay::{ConnectRole, MappingKind};

use crate::relay::{Registration, RelayAddr, RelayEvent, RelayLink};
use crate::transport::{self, Identity, TransportTuning};

/// A future an [`Asking`] returns.
pub(crate) type AnswerFuture = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// What a query asks: of a peer on a connection up, and of mirror `n`.
pub(crate) struct Asking {
    /// Asks the peer on this connection.
    pub peer: Box<dyn Fn(quinn::Connection) -> AnswerFuture + Send + Sync>,
    /// Asks mirror `n` (a query with no mirror never calls it).
    pub mirror: Box<dyn Fn(usize) -> AnswerFuture + Send + Sync>,
}

/// Runs `query` to its outcome: from `identity` on `bound` (the endpoint
/// and its paths, or why there is none: each dial then fails with it),
/// `relays` being the relays each peer names, `tuning` each dial's.
/// Every connection made is closed before it returns; the endpoint stays
/// the caller's.
pub(crate) async fn run(
    query: &mut ManifestQuery,
    bound: Result<(quinn::Endpoint, transport::Paths), String>,
    identity: Arc<Identity>,
    tuning: TransportTuning,
    relays: &[(PeerId, Vec<RelayAddr>)],
    asking: Asking,
) -> QueryOutcome {
    let sources = query.sources().to_vec();
    let mut driver = Driver {
        relays,
        asking,
        identity,
        tuning,
        bound,
        events: tokio::sync::mpsc::unbounded_channel(),
        tasks: HashMap::new(),
        links: HashMap::new(),
        connections: HashMap::new(),
        opened: Vec::new(),
    };
    let outcome = loop {
        while let Some(action) = query.poll_action() {
            driver.act(&sources, action, query);
        }
        if let Some(outcome) = query.poll_outcome() {
            break outcome;
        }
        let wake = query.poll_timeout().map(tokio::time::Instant::from_std);
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // An answer already here comes before a timer due with it (a
            // deadline must not end a source whose bytes arrived).
            biased;
            event = driver.events.1.recv() => {
                let now = tokio::time::Instant::now().into_std();
                match event {
                    Some(event) => driver.hand_in(event, query, now),
                    None => unreachable!("the driver holds a sender"),
                }
            }
            () = sleep => query.handle_timeout(tokio::time::Instant::now().into_std()),
        }
    };
    // What is still under way (a slower address when one answered) ends
    // here; the connections close with the rest, those made meanwhile too.
    for (_, mut tasks) in driver.tasks.drain() {
        tasks.abort_all();
    }
    while let Ok(event) = driver.events.1.try_recv() {
        if let Event::Connected { connection, .. } = event {
            driver.opened.push(connection);
        }
    }
    driver.links.clear();
    if let Ok((endpoint, _)) = &driver.bound {
        transport::Closing::close(std::mem::take(&mut driver.opened), b"done")
            .flush(endpoint, b"done", driver.tuning.close_flush)
            .await;
    }
    outcome
}

/// What a task of the query reports.
enum Event {
    Connected {
        source: usize,
        dial: DialId,
        connection: quinn::Connection,
    },
    DialFailed {
        source: usize,
        dial: DialId,
        refused: bool,
        error: String,
    },
    Answer {
        source: usize,
        answer: Answer,
    },
    Relay {
        source: usize,
        news: RelayNews,
    },
}

/// Carries out a [`ManifestQuery`]'s actions: a task for each dial,
/// query, mirror read and relay link, each reporting in one channel.
struct Driver<'a> {
    relays: &'a [(PeerId, Vec<RelayAddr>)],
    asking: Asking,
    identity: Arc<Identity>,
    tuning: TransportTuning,
    bound: Result<(quinn::Endpoint, transport::Paths), String>,
    events: (
        tokio::sync::mpsc::UnboundedSender<Event>,
        tokio::sync::mpsc::UnboundedReceiver<Event>,
    ),
    /// Each source's tasks, stopped with it.
    tasks: HashMap<usize, tokio::task::JoinSet<()>>,
    /// Each relayed source's link.
    links: HashMap<usize, RelayLink>,
    /// The connections dials made, until queried.
    connections: HashMap<(usize, DialId), quinn::Connection>,
    /// Every connection made, closed at the end.
    opened: Vec<quinn::Connection>,
}

impl Driver<'_> {
    fn spawn(&mut self, source: usize, task: impl Future<Output = Event> + Send + 'static) {
        let events = self.events.0.clone();
        self.tasks.entry(source).or_default().spawn(async move {
            // The query may have ended: nobody listens then.
            let _ = events.send(task.await);
        });
    }

    fn act(&mut self, sources: &[QuerySource], action: QueryAction, query: &mut ManifestQuery) {
        let now = || tokio::time::Instant::now().into_std();
        match action {
            QueryAction::Dial { source, dial, addr } => {
                let (endpoint, _) = match &self.bound {
                    Ok(bound) => bound,
                    Err(error) => {
                        let error = format!("no QUIC endpoint: {error}");
                        query.handle_dial_failed(source, dial, false, error, now());
                        return;
                    }
                };
                let (endpoint, identity, tuning) =
                    (endpoint.clone(), self.identity.clone(), self.tuning.clone());
                self.spawn(source, async move {
                    match transport::connect(&endpoint, &addr, &identity, &tuning).await {
                        Ok(connection) => Event::Connected {
                            source,
                            dial,
                            connection,
                        },
                        Err(error) => Event::DialFailed {
                            source,
                            dial,
                            refused: matches!(error, transport::ConnectError::Refused { .. }),
                            error: error.to_string(),
                        },
                    }
                });
            }
            QueryAction::Query { source, dial } => {
                let Some(connection) = self.connections.remove(&(source, dial)) else {
                    return;
                };
                let asked = (self.asking.peer)(connection);
                self.spawn(source, async move {
                    let answer = asked.await;
                    Event::Answer { source, answer }
                });
            }
            QueryAction::StartRelay { source } => {
                let QuerySource::Relayed { peer, relay } = sources[source] else {
                    return;
                };
                let (endpoint, paths) = match &self.bound {
                    Ok(bound) => bound.clone(),
                    Err(error) => {
                        let lost = RelayNews::Lost(format!("no QUIC endpoint: {error}"));
                        query.handle_relay(source, lost, now());
                        query.handle_relay(source, RelayNews::Ended, now());
                        return;
                    }
                };
                let relay = (self.relays.iter())
                    .filter(|(of, _)| *of == peer)
                    .flat_map(|(_, relays)| relays.iter())
                    .find(|named| named.addr == relay)
                    .copied()
                    .unwrap_or(RelayAddr {
                        id: None,
                        addr: relay,
                    });
                let (events, mut inbox) = tokio::sync::mpsc::channel(16);
                let link = RelayLink::start(
                    endpoint,
                    paths,
                    relay,
                    self.identity.clone(),
                    &self.tuning,
                    Registration {
                        agent: concat!("minimodel/", env!("CARGO_PKG_VERSION")).to_owned(),
                        addrs: Vec::new(),
                        mapping: MappingKind::Unknown,
                    },
                    events,
                );
                self.links.insert(source, link);
                let reports = self.events.0.clone();
                self.tasks.entry(source).or_default().spawn(async move {
                    loop {
                        let news = match inbox.recv().await {
                            Some(RelayEvent::Registered { .. }) => RelayNews::Registered,
                            Some(RelayEvent::Refused { reason, .. }) => {
                                RelayNews::Refused(reason.to_string())
                            }
                            Some(RelayEvent::Lost { reason, .. }) => RelayNews::Lost(reason),
                            Some(RelayEvent::IntroduceFailed {
                                peer: p, reason, ..
                            }) if p == peer => RelayNews::IntroduceFailed(reason.to_string()),
                            Some(RelayEvent::Connect {
                                peer: p,
                                addrs,
                                path,
                                role: ConnectRole::Dial,
                                ..
                            }) if p == peer => RelayNews::Connect { addrs, path },
                            Some(_) => continue,
                            None => RelayNews::Ended,
                        };
                        let ended = news == RelayNews::Ended;
                        if reports.send(Event::Relay { source, news }).is_err() || ended {
                            return;
                        }
                    }
                });
            }
            QueryAction::Introduce { source, peer } => {
                if let Some(link) = self.links.get(&source) {
                    link.introduce(peer);
                }
            }
            QueryAction::OpenPaths { addrs } => {
                if let Ok((_, paths)) = &self.bound {
                    paths.open(&addrs);
                }
            }
            QueryAction::FetchMirror { source, mirror } => {
                let asked = (self.asking.mirror)(mirror);
                self.spawn(source, async move {
                    let answer = asked.await;
                    Event::Answer { source, answer }
                });
            }
            QueryAction::Stop { source } => {
                if let Some(mut tasks) = self.tasks.remove(&source) {
                    tasks.abort_all();
                    tasks.detach_all();
                }
                // The relay keeps a channel while we are registered: the
                // link goes once the source ended.
                self.links.remove(&source);
                self.connections.retain(|(of, _), _| *of != source);
            }
        }
    }

    fn hand_in(&mut self, event: Event, query: &mut ManifestQuery, now: std::time::Instant) {
        match event {
            Event::Connected {
                source,
                dial,
                connection,
            } => {
                self.opened.push(connection.clone());
                self.connections.insert((source, dial), connection);
                query.handle_connected(source, dial);
            }
            Event::DialFailed {
                source,
                dial,
                refused,
                error,
            } => query.handle_dial_failed(source, dial, refused, error, now),
            Event::Answer { source, answer } => query.handle_answer(source, answer, now),
            Event::Relay { source, news } => query.handle_relay(source, news, now),
        }
    }
}
