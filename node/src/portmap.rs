//! Port mapping: when to ask the home router to let peers in, when to
//! renew, when to give up and when to remove the mapping
//! (`docs/swarm.md`, "Through NAT routers").
//!
//! A node that listens behind a router asks it for a mapping of its UDP
//! port: first through the gateway's own protocols (PCP, falling back to
//! NAT-PMP: one UDP exchange each), then through UPnP IGD (a multicast
//! search and SOAP over HTTP). The first that maps wins. A lease is renewed
//! at three quarters of its life (as libtorrent does), a router that takes
//! only permanent leases is asked again with one (UPnP's error 725), and a
//! taken outside port is replaced by any port the router picks. When every
//! way fails the node tries again after [`PortMapConfig::retry_after`]; a
//! lost mapping starts the search over. On stop, the mapping is removed.
//!
//! [`PortMapper`] decides; the driver talks to the router (one request at
//! a time, [`PortMapper::poll_request`]) and hands back what happened
//! ([`PortMapper::handle_outcome`]). Nothing here knows a socket or a clock.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How the node asks its router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Via {
    /// The gateway's PCP (RFC 6887), falling back to NAT-PMP (RFC 6886).
    Gateway,
    /// UPnP IGD: SSDP search, then SOAP.
    Upnp,
}

/// Which protocol made a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Port Control Protocol.
    Pcp,
    /// NAT Port Mapping Protocol.
    NatPmp,
    /// UPnP Internet Gateway Device.
    Upnp,
}

impl Protocol {
    /// How the protocol is named to people.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pcp => "PCP",
            Self::NatPmp => "NAT-PMP",
            Self::Upnp => "UPnP",
        }
    }

    fn via(self) -> Via {
        match self {
            Self::Pcp | Self::NatPmp => Via::Gateway,
            Self::Upnp => Via::Upnp,
        }
    }
}

/// The shortest time between a mapping and its renewal.
pub const MIN_RENEW_AFTER: Duration = Duration::from_secs(5);

/// Policy of the port mapper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapConfig {
    /// The lease asked for. Routers may grant less; UPnP routers that take
    /// only permanent leases are asked for one.
    pub lease: Duration,
    /// After every way failed, how long until the next try.
    pub retry_after: Duration,
    /// After a renewal failed, how long until the next (a lease not
    /// renewed by its end is lost).
    pub renew_retry: Duration,
}

impl Default for PortMapConfig {
    fn default() -> Self {
        Self {
            // PCP's and NAT-PMP's recommended lifetime is two hours; one
            // hour is libtorrent's UPnP lease.
            lease: Duration::from_secs(3600),
            retry_after: Duration::from_secs(600),
            renew_retry: Duration::from_secs(30),
        }
    }
}

/// A request for the driver to send to the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapRequest {
    /// Map UDP `internal_port` (a new mapping or a renewal).
    Map {
        /// Which way.
        via: Via,
        /// Our listening port.
        internal_port: u16,
        /// The outside port wanted (None: any the router picks).
        external_port: Option<u16>,
        /// The lease asked for; zero asks for a permanent mapping.
        lease: Duration,
    },
    /// Remove the mapping made through `via`.
    Unmap {
        /// Which way (the driver keeps what it needs to remove it).
        via: Via,
        /// The outside port mapped.
        external_port: u16,
    },
}

/// Why a request failed, as far as the decision goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    /// No router answered (none found, no route, timeout).
    NoRouter,
    /// The router answered and refused.
    Refused,
    /// A UPnP router that takes only permanent leases.
    OnlyPermanentLeases,
    /// The outside port asked for is taken.
    PortTaken,
}

/// What the driver's request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapOutcome {
    /// The router mapped (or renewed) the port.
    Mapped {
        /// The protocol that did it.
        protocol: Protocol,
        /// Where peers reach us from outside.
        external: SocketAddr,
        /// The lease granted; zero is permanent.
        lease: Duration,
    },
    /// A Map request failed.
    Failed {
        /// Which way was tried.
        via: Via,
        /// Why, for the decision.
        kind: FailKind,
        /// Why, for people.
        detail: String,
    },
    /// An Unmap request ended (removed, or failed: nothing more to do).
    Unmapped {
        /// Whether the router confirmed the removal.
        removed: bool,
        /// Why not, for people.
        detail: String,
    },
}

/// What the mapper tells the node and the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortMapEvent {
    /// A new mapping (or a changed outside address).
    Mapped {
        /// The protocol.
        protocol: Protocol,
        /// Where peers reach us from outside.
        external: SocketAddr,
        /// The lease; zero is permanent.
        lease: Duration,
    },
    /// Every way failed; the next try is after `retry_after`.
    Unavailable {
        /// Why each way failed, for people.
        reasons: Vec<String>,
    },
    /// A mapping was not renewed by the end of its lease.
    Lost {
        /// The protocol that had made it.
        protocol: Protocol,
        /// Why the last renewal failed.
        detail: String,
    },
    /// The mapping is removed (or could not be), on stop.
    Removed {
        /// The protocol that had made it.
        protocol: Protocol,
        /// Whether the router confirmed it.
        confirmed: bool,
        /// Why not, for people.
        detail: String,
    },
}

impl std::fmt::Display for PortMapEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Mapped {
                protocol,
                external,
                lease,
            } => {
                write!(f, "{} maps {external} to this node", protocol.name())?;
                if lease.is_zero() {
                    write!(f, " (no end)")
                } else {
                    write!(f, " (for {} s)", lease.as_secs())
                }
            }
            Self::Unavailable { reasons } => {
                write!(f, "no router maps a port ({})", reasons.join("; "))
            }
            Self::Lost { protocol, detail } => {
                write!(f, "the {} mapping is lost ({detail})", protocol.name())
            }
            Self::Removed {
                protocol,
                confirmed: true,
                ..
            } => write!(f, "the {} mapping is removed", protocol.name()),
            Self::Removed {
                protocol, detail, ..
            } => write!(
                f,
                "the {} mapping could not be removed ({detail}); it ends with its lease",
                protocol.name()
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Held {
    protocol: Protocol,
    external: SocketAddr,
    lease: Duration,
    expires: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    /// Waiting to try (again) at the time.
    Waiting(Instant),
    /// A first mapping is asked for through `via`; `queued` while the
    /// request is still to be handed to the driver, then it is out.
    Trying {
        via: Via,
        reasons: Vec<String>,
        queued: bool,
        external_port: Option<u16>,
        lease: Duration,
    },
    /// Mapped; renewed at `renew_at` (never for a permanent mapping).
    Held {
        held: Held,
        renew_at: Option<Instant>,
    },
    /// A renewal is queued or out.
    Renewing { held: Held, queued: bool },
    /// Stopping: an Unmap is queued or out for `held`; with `queued`
    /// false and no Unmap handed out yet, a Map or a renewal is out whose
    /// answer becomes the Unmap.
    Removing {
        held: Option<Held>,
        queued: bool,
        unmapping: bool,
    },
    /// Done: nothing mapped, nothing to do.
    Stopped,
}

/// What a node's port mapping looks like now, as its mapper reports it
/// ([`PortMapper::settled`], [`PortMapper::external`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapState {
    /// The first round of asking is over (mapped, or no router would).
    pub settled: bool,
    /// Where peers outside reach this node through the mapping.
    pub external: Option<SocketAddr>,
}

/// The port mapper of one listening socket.
#[derive(Debug, Clone)]
pub struct PortMapper {
    config: PortMapConfig,
    internal_port: u16,
    state: State,
    events: VecDeque<PortMapEvent>,
}

impl PortMapper {
    /// A mapper for UDP `internal_port`; it asks at once.
    pub fn new(config: PortMapConfig, internal_port: u16) -> Self {
        let mut mapper = Self {
            config,
            internal_port,
            state: State::Stopped,
            events: VecDeque::new(),
        };
        mapper.state = mapper.trying(Via::Gateway, Vec::new());
        mapper
    }

    /// Where peers reach us through the mapping, while one is held.
    pub fn external(&self) -> Option<SocketAddr> {
        match &self.state {
            State::Held { held, .. } | State::Renewing { held, .. } => Some(held.external),
            _ => None,
        }
    }

    /// Whether the first round of asking is over (a mapping is held, or
    /// every way failed): what a node waits for before it writes an offer.
    pub fn settled(&self) -> bool {
        !matches!(self.state, State::Trying { .. })
    }

    /// [`PortMapper::settled`] and [`PortMapper::external`] together.
    pub fn state(&self) -> MapState {
        MapState {
            settled: self.settled(),
            external: self.external(),
        }
    }

    /// Whether the mapper has stopped and removed what it mapped.
    pub fn is_stopped(&self) -> bool {
        self.state == State::Stopped
    }

    /// The next request for the router, at most one at a time.
    pub fn poll_request(&mut self) -> Option<MapRequest> {
        let internal_port = self.internal_port;
        match &mut self.state {
            State::Trying {
                via,
                queued: queued @ true,
                external_port,
                lease,
                ..
            } => {
                *queued = false;
                Some(MapRequest::Map {
                    via: *via,
                    internal_port,
                    external_port: *external_port,
                    lease: *lease,
                })
            }
            State::Renewing {
                held,
                queued: queued @ true,
            } => {
                *queued = false;
                Some(MapRequest::Map {
                    via: held.protocol.via(),
                    internal_port,
                    external_port: Some(held.external.port()),
                    lease: held.lease,
                })
            }
            State::Removing {
                held: Some(held),
                queued: queued @ true,
                unmapping,
            } => {
                *queued = false;
                *unmapping = true;
                Some(MapRequest::Unmap {
                    via: held.protocol.via(),
                    external_port: held.external.port(),
                })
            }
            _ => None,
        }
    }

    /// The next event for the node and the user.
    pub fn poll_event(&mut self) -> Option<PortMapEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Waiting(at) => Some(*at),
            State::Held { renew_at, .. } => *renew_at,
            _ => None,
        }
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &self.state {
            State::Waiting(at) if now >= *at => {
                self.state = self.trying(Via::Gateway, Vec::new());
            }
            State::Held {
                held,
                renew_at: Some(at),
            } if now >= *at => {
                self.state = State::Renewing {
                    held: held.clone(),
                    queued: true,
                };
            }
            _ => {}
        }
    }

    /// The driver's request came to `outcome`.
    pub fn handle_outcome(&mut self, outcome: MapOutcome, now: Instant) {
        let state = std::mem::replace(&mut self.state, State::Stopped);
        self.state = match (state, outcome) {
            (
                State::Trying { queued: false, .. },
                MapOutcome::Mapped {
                    protocol,
                    external,
                    lease,
                },
            ) => {
                self.events.push_back(PortMapEvent::Mapped {
                    protocol,
                    external,
                    lease,
                });
                self.keep(held(protocol, external, lease, now), now)
            }
            (
                State::Trying {
                    via,
                    mut reasons,
                    external_port,
                    lease,
                    queued: false,
                },
                MapOutcome::Failed { kind, detail, .. },
            ) => match kind {
                FailKind::OnlyPermanentLeases if !lease.is_zero() => State::Trying {
                    via,
                    reasons,
                    queued: true,
                    external_port,
                    lease: Duration::ZERO,
                },
                FailKind::PortTaken if external_port.is_some() => State::Trying {
                    via,
                    reasons,
                    queued: true,
                    external_port: None,
                    lease,
                },
                _ => {
                    reasons.push(format!("{}: {detail}", via_name(via)));
                    match via {
                        Via::Gateway => self.trying(Via::Upnp, reasons),
                        Via::Upnp => {
                            self.events.push_back(PortMapEvent::Unavailable { reasons });
                            State::Waiting(now + self.config.retry_after)
                        }
                    }
                }
            },
            (
                State::Renewing {
                    held: before,
                    queued: false,
                },
                MapOutcome::Mapped {
                    protocol,
                    external,
                    lease,
                },
            ) => {
                if external != before.external || protocol != before.protocol {
                    self.events.push_back(PortMapEvent::Mapped {
                        protocol,
                        external,
                        lease,
                    });
                }
                self.keep(held(protocol, external, lease, now), now)
            }
            (
                State::Renewing {
                    held,
                    queued: false,
                },
                MapOutcome::Failed { detail, .. },
            ) => match held.expires {
                Some(end) if now + self.config.renew_retry < end => State::Held {
                    held,
                    renew_at: Some(now + self.config.renew_retry),
                },
                _ => {
                    self.events.push_back(PortMapEvent::Lost {
                        protocol: held.protocol,
                        detail,
                    });
                    self.trying(Via::Gateway, Vec::new())
                }
            },
            // Stopping while a Map or a renewal was out: what it mapped
            // is removed; what it failed to renew is removed all the same.
            (
                State::Removing {
                    unmapping: false, ..
                },
                MapOutcome::Mapped {
                    protocol,
                    external,
                    lease,
                },
            ) => State::Removing {
                held: Some(held(protocol, external, lease, now)),
                queued: true,
                unmapping: false,
            },
            (
                State::Removing {
                    held: Some(held),
                    unmapping: false,
                    ..
                },
                MapOutcome::Failed { .. },
            ) => State::Removing {
                held: Some(held),
                queued: true,
                unmapping: false,
            },
            (
                State::Removing {
                    held: Some(held),
                    unmapping: true,
                    ..
                },
                MapOutcome::Unmapped { removed, detail },
            ) => {
                self.events.push_back(PortMapEvent::Removed {
                    protocol: held.protocol,
                    confirmed: removed,
                    detail,
                });
                State::Stopped
            }
            (State::Removing { .. }, _) => State::Stopped,
            // An answer no request was out for: the driver's mistake,
            // ignored.
            (state, _) => state,
        };
    }

    /// The node stops: remove what is mapped (a Map or a renewal still
    /// out is undone when it answers). Then [`Self::is_stopped`].
    pub fn stop(&mut self) {
        let state = std::mem::replace(&mut self.state, State::Stopped);
        self.state = match state {
            State::Held { held, .. }
            | State::Renewing {
                held, queued: true, ..
            } => State::Removing {
                held: Some(held),
                queued: true,
                unmapping: false,
            },
            State::Renewing {
                held,
                queued: false,
            } => State::Removing {
                held: Some(held),
                queued: false,
                unmapping: false,
            },
            State::Trying { queued: false, .. } => State::Removing {
                held: None,
                queued: false,
                unmapping: false,
            },
            removing @ State::Removing { .. } => removing,
            State::Waiting(_) | State::Trying { .. } | State::Stopped => State::Stopped,
        };
    }

    fn trying(&self, via: Via, reasons: Vec<String>) -> State {
        State::Trying {
            via,
            reasons,
            queued: true,
            external_port: Some(self.internal_port),
            lease: self.config.lease,
        }
    }

    fn keep(&self, held: Held, now: Instant) -> State {
        State::Held {
            // At three quarters of the lease, and never sooner than
            // MIN_RENEW_AFTER: a router that grants a second is not asked
            // in a loop.
            renew_at: (!held.lease.is_zero())
                .then(|| now + (held.lease * 3 / 4).max(MIN_RENEW_AFTER)),
            held,
        }
    }
}

fn held(protocol: Protocol, external: SocketAddr, lease: Duration, now: Instant) -> Held {
    Held {
        protocol,
        external,
        lease,
        expires: (!lease.is_zero()).then(|| now + lease),
    }
}

/// Whether a node listening at `bound` asks its router for a mapping: when
/// it listens on every IPv4 interface (`0.0.0.0`, or `[::]`, which serves
/// IPv4 too) or on a private IPv4 address (10/8, 172.16/12, 192.168/16,
/// 100.64/10), where a router stands between it and the internet. Never
/// for loopback, a public address (nothing to map) or a specific IPv6
/// address (no NAT in front of it, and the mapping protocols' IPv6
/// pinholes are not asked for).
pub fn wants_mapping(bound: SocketAddr) -> bool {
    match bound.ip().to_canonical() {
        std::net::IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_unspecified() || v4.is_private() || (a == 100 && (64..128).contains(&b))
        }
        std::net::IpAddr::V6(v6) => v6.is_unspecified(),
    }
}

fn via_name(via: Via) -> &'static str {
    match via {
        Via::Gateway => "PCP/NAT-PMP",
        Via::Upnp => "UPnP",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORT: u16 = 4433;

    fn ext(port: u16) -> SocketAddr {
        SocketAddr::from(([198, 51, 100, 7], port))
    }

    fn map(via: Via, external_port: Option<u16>, lease: Duration) -> MapRequest {
        MapRequest::Map {
            via,
            internal_port: PORT,
            external_port,
            lease,
        }
    }

    fn mapped(protocol: Protocol, port: u16, lease: Duration) -> MapOutcome {
        MapOutcome::Mapped {
            protocol,
            external: ext(port),
            lease,
        }
    }

    fn failed(via: Via, kind: FailKind) -> MapOutcome {
        MapOutcome::Failed {
            via,
            kind,
            detail: format!("{kind:?}"),
        }
    }

    fn events(mapper: &mut PortMapper) -> Vec<PortMapEvent> {
        std::iter::from_fn(|| mapper.poll_event()).collect()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn asks_the_gateway_first_for_the_same_port_then_renews_at_three_quarters() {
        let t0 = Instant::now();
        let mut m = PortMapper::new(PortMapConfig::default(), PORT);
        assert!(!m.settled());
        assert_eq!(m.poll_request(), Some(map(Via::Gateway, Some(PORT), HOUR)));
        // One request at a time.
        assert_eq!(m.poll_request(), None);
        m.handle_outcome(mapped(Protocol::NatPmp, PORT, HOUR), t0);
        assert!(m.settled());
        assert_eq!(m.external(), Some(ext(PORT)));
        assert_eq!(
            events(&mut m),
            vec![PortMapEvent::Mapped {
                protocol: Protocol::NatPmp,
                external: ext(PORT),
                lease: HOUR
            }]
        );
        let renew = t0 + HOUR * 3 / 4;
        assert_eq!(m.poll_timeout(), Some(renew));
        m.handle_timeout(renew - Duration::from_secs(1));
        assert_eq!(m.poll_request(), None);
        m.handle_timeout(renew);
        assert_eq!(m.poll_request(), Some(map(Via::Gateway, Some(PORT), HOUR)));
        // Still usable while the renewal is out.
        assert_eq!(m.external(), Some(ext(PORT)));
        m.handle_outcome(mapped(Protocol::NatPmp, PORT, HOUR), renew);
        // The same mapping: nothing to tell.
        assert_eq!(events(&mut m), vec![]);
        assert_eq!(m.poll_timeout(), Some(renew + HOUR * 3 / 4));
    }

    #[test]
    fn falls_back_to_upnp_then_waits_and_tries_again() {
        let t0 = Instant::now();
        let config = PortMapConfig::default();
        let mut m = PortMapper::new(config.clone(), PORT);
        m.poll_request();
        m.handle_outcome(failed(Via::Gateway, FailKind::NoRouter), t0);
        assert!(!m.settled());
        assert_eq!(m.poll_request(), Some(map(Via::Upnp, Some(PORT), HOUR)));
        m.handle_outcome(failed(Via::Upnp, FailKind::NoRouter), t0);
        assert!(m.settled());
        assert_eq!(m.external(), None);
        let got = events(&mut m);
        let [PortMapEvent::Unavailable { reasons }] = got.as_slice() else {
            panic!("{got:?}");
        };
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].starts_with("PCP/NAT-PMP") && reasons[1].starts_with("UPnP"));
        assert_eq!(m.poll_request(), None);
        assert_eq!(m.poll_timeout(), Some(t0 + config.retry_after));
        m.handle_timeout(t0 + config.retry_after);
        assert_eq!(m.poll_request(), Some(map(Via::Gateway, Some(PORT), HOUR)));
    }

    #[test]
    fn a_permanent_only_router_gets_a_permanent_lease_that_is_never_renewed() {
        let t0 = Instant::now();
        let mut m = PortMapper::new(PortMapConfig::default(), PORT);
        m.poll_request();
        m.handle_outcome(failed(Via::Gateway, FailKind::Refused), t0);
        m.poll_request();
        m.handle_outcome(failed(Via::Upnp, FailKind::OnlyPermanentLeases), t0);
        assert_eq!(
            m.poll_request(),
            Some(map(Via::Upnp, Some(PORT), Duration::ZERO))
        );
        // Refused again for the same reason: no loop, on to giving up.
        m.handle_outcome(failed(Via::Upnp, FailKind::OnlyPermanentLeases), t0);
        assert!(matches!(
            events(&mut m).as_slice(),
            [PortMapEvent::Unavailable { .. }]
        ));
        let mut m = PortMapper::new(PortMapConfig::default(), PORT);
        m.poll_request();
        m.handle_outcome(failed(Via::Gateway, FailKind::Refused), t0);
        m.poll_request();
        m.handle_outcome(failed(Via::Upnp, FailKind::OnlyPermanentLeases), t0);
        m.poll_request();
        m.handle_outcome(mapped(Protocol::Upnp, PORT, Duration::ZERO), t0);
        assert_eq!(m.poll_timeout(), None);
        assert_eq!(m.external(), Some(ext(PORT)));
    }

    #[test]
    fn a_taken_port_is_replaced_by_any_port_once() {
        let t0 = Instant::now();
        let mut m = PortMapper::new(PortMapConfig::default(), PORT);
        m.poll_request();
        m.handle_outcome(failed(Via::Gateway, FailKind::PortTaken), t0);
        assert_eq!(m.poll_request(), Some(map(Via::Gateway, None, HOUR)));
        m.handle_outcome(mapped(Protocol::Pcp, 50_000, HOUR), t0);
        assert_eq!(m.external(), Some(ext(50_000)));
        // Renewed for the port the router picked.
        m.handle_timeout(t0 + HOUR);
        assert_eq!(
            m.poll_request(),
            Some(map(Via::Gateway, Some(50_000), HOUR))
        );
    }

    #[test]
    fn a_failed_renewal_is_retried_and_a_lapsed_lease_starts_over() {
        let t0 = Instant::now();
        let lease = Duration::from_secs(120);
        let mut m = PortMapper::new(PortMapConfig::default(), PORT);
        m.poll_request();
        m.handle_outcome(mapped(Protocol::Pcp, PORT, lease), t0);
        events(&mut m);
        let t1 = t0 + Duration::from_secs(90);
        m.handle_timeout(t1);
        m.poll_request().expect("a renewal");
        m.handle_outcome(failed(Via::Gateway, FailKind::NoRouter), t1);
        // 30 s left is not more than the retry: lost, search again.
        assert_eq!(
            events(&mut m),
            vec![PortMapEvent::Lost {
                protocol: Protocol::Pcp,
                detail: "NoRouter".into()
            }]
        );
        assert_eq!(m.external(), None);
        assert_eq!(m.poll_request(), Some(map(Via::Gateway, Some(PORT), HOUR)));

        let mut m = PortMapper::new(PortMapConfig::default(), PORT);
        m.poll_request();
        m.handle_outcome(mapped(Protocol::Pcp, PORT, HOUR), t0);
        let t1 = t0 + HOUR * 3 / 4;
        m.handle_timeout(t1);
        m.poll_request().expect("a renewal");
        m.handle_outcome(failed(Via::Gateway, FailKind::NoRouter), t1);
        assert_eq!(m.external(), Some(ext(PORT)), "kept while the lease runs");
        assert_eq!(m.poll_timeout(), Some(t1 + Duration::from_secs(30)));
    }

    #[test]
    fn a_tiny_lease_is_not_renewed_in_a_loop() {
        let t0 = Instant::now();
        let mut m = PortMapper::new(PortMapConfig::default(), PORT);
        m.poll_request();
        m.handle_outcome(mapped(Protocol::NatPmp, PORT, Duration::from_secs(1)), t0);
        assert_eq!(m.poll_timeout(), Some(t0 + MIN_RENEW_AFTER));
    }

    #[test]
    fn stop_removes_the_mapping_even_one_still_being_made() {
        let t0 = Instant::now();
        // Held: removed.
        let mut m = PortMapper::new(PortMapConfig::default(), PORT);
        m.poll_request();
        m.handle_outcome(mapped(Protocol::Upnp, PORT, HOUR), t0);
        events(&mut m);
        m.stop();
        assert!(!m.is_stopped());
        assert_eq!(
            m.poll_request(),
            Some(MapRequest::Unmap {
                via: Via::Upnp,
                external_port: PORT
            })
        );
        m.handle_outcome(
            MapOutcome::Unmapped {
                removed: true,
                detail: String::new(),
            },
            t0,
        );
        assert!(m.is_stopped());
        assert_eq!(
            events(&mut m),
            vec![PortMapEvent::Removed {
                protocol: Protocol::Upnp,
                confirmed: true,
                detail: String::new()
            }]
        );

        // A Map out when the node stops: its mapping is undone.
        let mut m = PortMapper::new(PortMapConfig::default(), PORT);
        m.poll_request();
        m.stop();
        assert_eq!(m.poll_request(), None);
        assert!(!m.is_stopped());
        m.handle_outcome(mapped(Protocol::Pcp, PORT, HOUR), t0);
        assert_eq!(
            m.poll_request(),
            Some(MapRequest::Unmap {
                via: Via::Gateway,
                external_port: PORT
            })
        );
        m.handle_outcome(
            MapOutcome::Unmapped {
                removed: false,
                detail: "timeout".into(),
            },
            t0,
        );
        assert!(m.is_stopped());

        // A Map out that fails: nothing to undo.
        let mut m = PortMapper::new(PortMapConfig::default(), PORT);
        m.poll_request();
        m.stop();
        m.handle_outcome(failed(Via::Gateway, FailKind::NoRouter), t0);
        assert!(m.is_stopped());

        // A renewal out that fails: the mapping is removed all the same.
        let mut m = PortMapper::new(PortMapConfig::default(), PORT);
        m.poll_request();
        m.handle_outcome(mapped(Protocol::NatPmp, PORT, HOUR), t0);
        m.handle_timeout(t0 + HOUR);
        m.poll_request().expect("a renewal");
        m.stop();
        assert_eq!(m.poll_request(), None);
        m.handle_outcome(failed(Via::Gateway, FailKind::NoRouter), t0 + HOUR);
        assert!(matches!(m.poll_request(), Some(MapRequest::Unmap { .. })));

        // Nothing out, nothing held: stopped at once.
        let mut m = PortMapper::new(PortMapConfig::default(), PORT);
        m.stop();
        assert!(m.is_stopped());
        assert_eq!(m.poll_request(), None);
    }

    #[test]
    fn a_changed_outside_address_on_renewal_is_told() {
        let t0 = Instant::now();
        let mut m = PortMapper::new(PortMapConfig::default(), PORT);
        m.poll_request();
        m.handle_outcome(mapped(Protocol::Pcp, PORT, HOUR), t0);
        events(&mut m);
        m.handle_timeout(t0 + HOUR);
        m.poll_request();
        m.handle_outcome(mapped(Protocol::Pcp, 4434, HOUR), t0 + HOUR);
        assert_eq!(
            events(&mut m),
            vec![PortMapEvent::Mapped {
                protocol: Protocol::Pcp,
                external: ext(4434),
                lease: HOUR
            }]
        );
    }

    #[test]
    fn only_a_node_behind_a_router_asks_for_a_mapping() {
        for (bound, wants) in [
            ("0.0.0.0:4433", true),
            ("[::]:4433", true),
            ("192.168.1.2:4433", true),
            ("10.0.0.5:4433", true),
            ("172.16.0.1:4433", true),
            ("100.64.1.1:4433", true),
            ("127.0.0.1:4433", false),
            ("[::1]:4433", false),
            ("198.51.100.7:4433", false),
            ("100.128.0.1:4433", false),
            ("[fd00::1]:4433", false),
            ("[2001:db8::1]:4433", false),
            ("[::ffff:192.168.1.2]:4433", true),
        ] {
            let addr: SocketAddr = bound.parse().unwrap();
            assert_eq!(wants_mapping(addr), wants, "{bound}");
        }
    }

    #[test]
    fn an_answer_nobody_asked_for_changes_nothing() {
        let t0 = Instant::now();
        let mut m = PortMapper::new(PortMapConfig::default(), PORT);
        // Not handed out yet.
        m.handle_outcome(mapped(Protocol::Pcp, 1, HOUR), t0);
        assert_eq!(m.external(), None);
        assert_eq!(m.poll_request(), Some(map(Via::Gateway, Some(PORT), HOUR)));
    }
}
