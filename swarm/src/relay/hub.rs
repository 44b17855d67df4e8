//! The relay links of a shared endpoint ([`crate::node::SharedEndpoint`]):
//! one link to each relay, for every swarm on the endpoint, as a relay
//! knows the endpoint by one id at one address. The companion's items all
//! serve and dial from one endpoint, so they reach across homes through
//! the same links: its own relays (`companion run --relay`) and those the
//! peers of its downloads name.
//!
//! What each node hears, routed here and decided nowhere else:
//! - a registration, a loss or a refusal: every node (each judges who can
//!   reach it), and a node that subscribes later hears the registrations
//!   made before it;
//! - a Connect that this endpoint asked for (role Dial) and a refused
//!   introduction: the nodes that asked for that peer in the last
//!   [`ASKED_FOR`], else every node;
//! - a Connect the peer asked for (role Open) and a channel's end: every
//!   node, whose cores open their router and drop the path.
//!
//! At most [`MAX_HUB_LINKS`] links, kept while the endpoint lives: the
//! relays named first.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use minimodel_wire::PeerId;
use minimodel_wire::relay::ConnectRole;
use tokio::sync::mpsc;

use super::{RegisteredWatch, RelayAddr, RelayEvent, RelayLink};
use crate::transport::{Identity, Paths, TransportTuning};

/// Most relay links one endpoint keeps.
pub const MAX_HUB_LINKS: usize = 8;

/// How long an introduction a node asked for routes its answer to it.
pub const ASKED_FOR: Duration = Duration::from_secs(30);

/// Most introductions remembered as asked.
const MAX_ASKED: usize = 1024;

/// What the hub tells one node.
pub(crate) type Subscriber = mpsc::Sender<RelayEvent>;

struct State {
    links: Vec<RelayLink>,
    /// The newest registration of each link, for nodes that subscribe
    /// later.
    registered: Vec<RelayEvent>,
    subscribers: Vec<(u64, Subscriber)>,
    next_subscriber: u64,
    /// Who asked for an introduction to whom, and when.
    asked: VecDeque<(PeerId, u64, Instant)>,
}

struct Inner {
    endpoint: quinn::Endpoint,
    paths: Paths,
    identity: Arc<Identity>,
    tuning: TransportTuning,
    registration: super::Registration,
    state: Mutex<State>,
    events: mpsc::Sender<RelayEvent>,
    fan_out: tokio::task::AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.fan_out.abort();
    }
}

/// The relay links of one endpoint. Cheap to clone.
#[derive(Clone)]
pub(crate) struct RelayHub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RelayHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayHub")
            .field("relays", &self.relays())
            .finish_non_exhaustive()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RelayHub {
    /// A hub for `endpoint` (its socket's `paths`), registering as
    /// `registration`. Must run inside a tokio runtime.
    pub(crate) fn new(
        endpoint: quinn::Endpoint,
        paths: Paths,
        identity: Arc<Identity>,
        tuning: TransportTuning,
        registration: super::Registration,
    ) -> Self {
        let (events, mut inbox) = mpsc::channel::<RelayEvent>(256);
        let state = Mutex::new(State {
            links: Vec::new(),
            registered: Vec::new(),
            subscribers: Vec::new(),
            next_subscriber: 0,
            asked: VecDeque::new(),
        });
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let weak = weak.clone();
            let fan_out = tokio::spawn(async move {
                while let Some(event) = inbox.recv().await {
                    let Some(inner) = weak.upgrade() else {
                        return;
                    };
                    let targets = route(&mut lock(&inner.state), &event, Instant::now());
                    drop(inner);
                    for target in targets {
                        // A node that does not keep up misses the event,
                        // as a lost datagram: its core asks again.
                        let _ = target.try_send(event.clone());
                    }
                }
            })
            .abort_handle();
            Inner {
                endpoint,
                paths,
                identity,
                tuning,
                registration,
                state,
                events,
                fan_out,
            }
        });
        Self { inner }
    }

    /// Keeps a link to each of `relays` (at most [`MAX_HUB_LINKS`] in
    /// all, the first named first); one to a relay already linked is
    /// kept as it is.
    pub(crate) fn use_relays(&self, relays: &[RelayAddr]) {
        let mut state = lock(&self.inner.state);
        for relay in relays {
            if state.links.len() >= MAX_HUB_LINKS {
                break;
            }
            if state
                .links
                .iter()
                .any(|link| link.relay().addr == relay.addr)
            {
                continue;
            }
            state.links.push(RelayLink::start(
                self.inner.endpoint.clone(),
                self.inner.paths.clone(),
                *relay,
                Arc::clone(&self.inner.identity),
                &self.inner.tuning,
                self.inner.registration.clone(),
                self.inner.events.clone(),
            ));
        }
    }

    /// Ends every link (the endpoint closes).
    pub(crate) fn stop(&self) {
        let mut state = lock(&self.inner.state);
        state.links.clear();
        state.registered.clear();
    }

    /// The relays it keeps links to.
    pub(crate) fn relays(&self) -> Vec<RelayAddr> {
        lock(&self.inner.state)
            .links
            .iter()
            .map(RelayLink::relay)
            .collect()
    }

    /// The registration of each link, to watch.
    pub(crate) fn registered(&self) -> Vec<RegisteredWatch> {
        lock(&self.inner.state)
            .links
            .iter()
            .map(|link| (link.relay(), link.registered()))
            .collect()
    }

    /// A node's subscription: what the links say, routed to it, from now
    /// on (with the registrations made before).
    pub(crate) fn subscribe(&self) -> (HubSubscription, mpsc::Receiver<RelayEvent>) {
        let (sender, events) = mpsc::channel(256);
        let mut state = lock(&self.inner.state);
        let id = state.next_subscriber;
        state.next_subscriber += 1;
        for event in &state.registered {
            let _ = sender.try_send(event.clone());
        }
        state.subscribers.push((id, sender));
        drop(state);
        (
            HubSubscription {
                hub: self.clone(),
                id,
            },
            events,
        )
    }
}

/// Who hears `event`, and what the hub keeps of it.
fn route(state: &mut State, event: &RelayEvent, now: Instant) -> Vec<Subscriber> {
    state
        .asked
        .retain(|(_, _, at)| now.duration_since(*at) < ASKED_FOR);
    fn everyone(state: &State) -> Vec<Subscriber> {
        state.subscribers.iter().map(|(_, s)| s.clone()).collect()
    }
    match event {
        RelayEvent::Registered { relay, .. } => {
            state.registered.retain(|kept| !same_relay(kept, *relay));
            state.registered.push(event.clone());
            everyone(state)
        }
        RelayEvent::Lost { relay, .. } | RelayEvent::Refused { relay, .. } => {
            state.registered.retain(|kept| !same_relay(kept, *relay));
            everyone(state)
        }
        RelayEvent::Connect {
            peer,
            role: ConnectRole::Dial,
            ..
        }
        | RelayEvent::IntroduceFailed { peer, .. } => {
            let askers: Vec<u64> = (state.asked.iter())
                .filter(|(asked, _, _)| asked == peer)
                .map(|(_, id, _)| *id)
                .collect();
            let routed: Vec<Subscriber> = (state.subscribers.iter())
                .filter(|(id, _)| askers.contains(id))
                .map(|(_, s)| s.clone())
                .collect();
            if routed.is_empty() {
                everyone(state)
            } else {
                routed
            }
        }
        RelayEvent::Connect { .. } | RelayEvent::ChannelClosed { .. } => everyone(state),
    }
}

fn same_relay(event: &RelayEvent, relay: SocketAddr) -> bool {
    matches!(event, RelayEvent::Registered { relay: kept, .. } if *kept == relay)
}

/// A node's place at the hub; dropped, it hears nothing more.
pub(crate) struct HubSubscription {
    hub: RelayHub,
    id: u64,
}

impl std::fmt::Debug for HubSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSubscription")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl HubSubscription {
    /// The hub.
    pub(crate) fn hub(&self) -> &RelayHub {
        &self.hub
    }

    /// Asks `relay` to introduce this endpoint to `peer`, for this node:
    /// the answer comes to it. False when no link to `relay` takes it.
    pub(crate) fn introduce(&self, relay: SocketAddr, peer: PeerId) -> bool {
        let mut state = lock(&self.hub.inner.state);
        let Some(link) = state.links.iter().find(|link| link.relay().addr == relay) else {
            return false;
        };
        if !link.introduce(peer) {
            return false;
        }
        if state.asked.len() >= MAX_ASKED {
            state.asked.pop_front();
        }
        state.asked.push_back((peer, self.id, Instant::now()));
        true
    }
}

impl Drop for HubSubscription {
    fn drop(&mut self) {
        let mut state = lock(&self.hub.inner.state);
        state.subscribers.retain(|(id, _)| *id != self.id);
        state.asked.retain(|(_, id, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minimodel_wire::relay::{IntroduceRefusal, RelayLimits};

    fn state() -> State {
        State {
            links: Vec::new(),
            registered: Vec::new(),
            subscribers: Vec::new(),
            next_subscriber: 0,
            asked: VecDeque::new(),
        }
    }

    fn relay() -> SocketAddr {
        "81.2.69.9:4434".parse().unwrap()
    }

    fn subscribe(state: &mut State) -> (u64, mpsc::Receiver<RelayEvent>) {
        let (sender, receiver) = mpsc::channel(16);
        let id = state.next_subscriber;
        state.next_subscriber += 1;
        state.subscribers.push((id, sender));
        (id, receiver)
    }

    fn deliver(state: &mut State, event: RelayEvent, now: Instant) {
        for target in route(state, &event, now) {
            target.try_send(event.clone()).unwrap();
        }
    }

    #[test]
    fn an_answer_goes_to_the_node_that_asked_and_the_rest_to_every_node() {
        let mut state = state();
        let (a, mut to_a) = subscribe(&mut state);
        let (_, mut to_b) = subscribe(&mut state);
        let now = Instant::now();
        let (peer, other) = (PeerId([5; 32]), PeerId([6; 32]));
        state.asked.push_back((peer, a, now));
        let connect = |peer, role| RelayEvent::Connect {
            relay: relay(),
            peer,
            addrs: vec!["62.1.1.1:4433".parse().unwrap()],
            path: "240.0.1.1:1".parse().unwrap(),
            role,
        };
        deliver(&mut state, connect(peer, ConnectRole::Dial), now);
        assert!(to_a.try_recv().is_ok());
        assert!(to_b.try_recv().is_err(), "only the asker dials");
        deliver(
            &mut state,
            RelayEvent::IntroduceFailed {
                relay: relay(),
                peer,
                reason: IntroduceRefusal::NotRegistered,
            },
            now,
        );
        assert!(to_a.try_recv().is_ok());
        assert!(to_b.try_recv().is_err());
        // Asked by nobody here (or too long ago): every node hears it.
        deliver(&mut state, connect(other, ConnectRole::Dial), now);
        assert!(to_a.try_recv().is_ok() && to_b.try_recv().is_ok());
        deliver(
            &mut state,
            connect(peer, ConnectRole::Dial),
            now + ASKED_FOR,
        );
        assert!(to_a.try_recv().is_ok() && to_b.try_recv().is_ok());
        // A peer that asked for us: every node opens its router.
        deliver(&mut state, connect(other, ConnectRole::Open), now);
        assert!(to_a.try_recv().is_ok() && to_b.try_recv().is_ok());
    }

    #[test]
    fn a_registration_is_kept_for_later_nodes_until_the_link_is_lost() {
        let mut state = state();
        let (_, mut early) = subscribe(&mut state);
        let now = Instant::now();
        let registered = RelayEvent::Registered {
            relay: relay(),
            id: PeerId([7; 32]),
            observed: "62.1.1.2:5000".parse().unwrap(),
            limits: RelayLimits {
                pair_rate: 0,
                pair_bytes_per_hour: 0,
                channel_idle_secs: 60,
            },
        };
        deliver(&mut state, registered.clone(), now);
        assert_eq!(early.try_recv().unwrap(), registered);
        assert_eq!(state.registered, [registered]);
        deliver(
            &mut state,
            RelayEvent::Lost {
                relay: relay(),
                reason: "gone".into(),
            },
            now,
        );
        assert!(early.try_recv().is_ok());
        assert!(state.registered.is_empty());
    }
}
