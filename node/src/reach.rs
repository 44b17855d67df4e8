//! Where a node stands: whether peers on other networks can reach it, and
//! how (`docs/swarm.md`, "Who can reach a node").
//!
//! A node behind a home router listens at a LAN address that nobody
//! outside its home can dial; a relay, a port mapping, a public address or
//! a cone router that lets a punch through change that. [`judge`] turns
//! what the node knows ([`Evidence`]: the addresses it listens at, the
//! addresses its user named, the router's mapping, the public address
//! peers and relays see, the relays it is registered with, an
//! unintroduced peer from another network that reached it) into one
//! verdict ([`Reach`]) with what to do about it. It claims only what the
//! evidence shows: an address nobody outside reached yet is "if nothing
//! in front of it drops unsolicited packets", never "reachable".
//!
//! [`ticket_reach`] judges a ticket or offer by its addresses alone, the
//! moment it is printed: one that names only private (or loopback)
//! addresses and no relay reaches nobody outside the network it was made
//! on.

use std::fmt;
use std::net::SocketAddr;

use serde::Serialize;

use crate::address::{Scope, scope};
use crate::observed::{Mapping, PublicAddress};

/// Whether, and how, peers on other networks reach a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Reach {
    /// It does not listen (a fetch without `--serve`): it only dials.
    NotListening,
    /// It listens on loopback addresses only: only this host reaches it.
    HostOnly {
        /// Where it listens.
        addrs: Vec<SocketAddr>,
    },
    /// Only hosts on its own network (or networks that route private
    /// addresses to it) can reach it: its addresses are private, no
    /// router maps a port for it, no relay knows it, and nobody from
    /// another network has reached it.
    LanOnly {
        /// Where it listens.
        addrs: Vec<SocketAddr>,
    },
    /// Peers reach it at a public address: one it listens on or its user
    /// named (`confirmed: false`: nobody from another network has come
    /// in yet, so a firewall in front of it may still drop them), or one
    /// where a peer from another network reached it unintroduced
    /// (`confirmed: true`).
    Direct {
        /// The address.
        addr: SocketAddr,
        /// Whether a peer from another network came in there unasked.
        confirmed: bool,
        /// The relays it is registered with (a punch through them, or
        /// their relaying, when a firewall drops what comes in unasked).
        via: Vec<SocketAddr>,
    },
    /// Its router maps a port for it (UPnP IGD, NAT-PMP, PCP).
    Mapped {
        /// The router's outside address.
        addr: SocketAddr,
    },
    /// It is behind a router that keeps one outside port for every
    /// destination (or one whose kind is not known yet): peers get in
    /// by a punch, both dialing at once after a peer both reach (a relay
    /// in `via`, or a peer of its swarm when `via` is empty) introduced
    /// them; through a relay, where the punch fails, the relay carries
    /// the connection.
    Punch {
        /// The outside address peers and relays see, when known.
        public: Option<SocketAddr>,
        /// The relays it is registered with; empty: only through peers of
        /// its swarm.
        via: Vec<SocketAddr>,
    },
    /// Its router gives every destination another outside port (a
    /// symmetric NAT), which punches do not get through: peers reach it
    /// only through the relays it is registered with.
    Relayed {
        /// The relays.
        via: Vec<SocketAddr>,
    },
}

impl Reach {
    /// The verdict's name in JSON events: `not-listening`, `host-only`,
    /// `lan-only`, `direct`, `mapped`, `punch`, `relay`.
    pub fn name(&self) -> &'static str {
        match self {
            Reach::NotListening => "not-listening",
            Reach::HostOnly { .. } => "host-only",
            Reach::LanOnly { .. } => "lan-only",
            Reach::Direct { .. } => "direct",
            Reach::Mapped { .. } => "mapped",
            Reach::Punch { .. } => "punch",
            Reach::Relayed { .. } => "relay",
        }
    }

    /// Whether peers on other networks have no way in at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Reach::HostOnly { .. } | Reach::LanOnly { .. })
    }

    /// What the user can do about it, when there is something to do.
    pub fn advice(&self) -> Option<&'static str> {
        match self {
            Reach::NotListening | Reach::Mapped { .. } => None,
            Reach::HostOnly { .. } => {
                Some("listen on 0.0.0.0 or [::] (--listen) for other machines to reach this node")
            }
            Reach::LanOnly { .. } => Some(
                "name a relay (--relay HOST:PORT: a host with a public address that runs `minimodel relay`), let the router map a port (UPnP IGD, NAT-PMP or PCP), or forward a port on it and name it with --public-addr",
            ),
            Reach::Direct {
                confirmed: false,
                via,
                ..
            } if via.is_empty() => Some(
                "if a firewall in front of this host drops what comes in unasked, peers on other networks cannot get in: name a relay (--relay HOST:PORT) for them to punch through",
            ),
            Reach::Direct { .. } => None,
            Reach::Punch { via, .. } if via.is_empty() => Some(
                "a peer that can get in only by a punch needs a peer both reach to introduce it: name a relay (--relay HOST:PORT) so that peers reach this node without one",
            ),
            Reach::Punch { .. } => None,
            Reach::Relayed { .. } => Some(
                "every byte to peers behind other routers goes through the relay, at its limits: let the router map a port (UPnP IGD, NAT-PMP or PCP) for direct connections",
            ),
        }
    }
}

fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Reach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reach::NotListening => write!(f, "it does not listen: it only dials peers"),
            Reach::HostOnly { addrs } => {
                write!(f, "only this host reaches it (at {})", list(addrs))
            }
            Reach::LanOnly { addrs } => write!(
                f,
                "only its own network reaches it: {} {} private, no router maps a port for it and no relay knows it",
                list(addrs),
                if addrs.len() == 1 { "is" } else { "are" }
            ),
            Reach::Direct {
                addr,
                confirmed: true,
                ..
            } => write!(
                f,
                "peers on other networks reach it directly at {addr} (one came in there unasked)"
            ),
            Reach::Direct {
                addr,
                confirmed: false,
                via,
            } => {
                write!(
                    f,
                    "peers on other networks reach it directly at {addr}, unless a firewall in front of it drops what comes in unasked"
                )?;
                if !via.is_empty() {
                    write!(f, "; then by a punch through relay {}", list(via))?;
                }
                Ok(())
            }
            Reach::Mapped { addr } => write!(
                f,
                "peers on other networks reach it at {addr}, a port its router maps for it"
            ),
            Reach::Punch { public, via } => {
                write!(f, "peers on other networks reach it only by a punch")?;
                if let Some(public) = public {
                    write!(f, " to {public}")?;
                }
                if via.is_empty() {
                    write!(
                        f,
                        " after a peer of its swarm that both reach introduces them"
                    )
                } else {
                    write!(
                        f,
                        " through relay {}, which carries the connection where the punch fails",
                        list(via)
                    )
                }
            }
            Reach::Relayed { via } => write!(
                f,
                "peers behind other routers reach it only through relay {} (its router gives every destination another port, which punches do not get through)",
                list(via)
            ),
        }
    }
}

/// What a node knows about where it stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// It listens (serves).
    pub listening: bool,
    /// The addresses it listens at (its interfaces' for a wildcard).
    pub addrs: Vec<SocketAddr>,
    /// Addresses its user says peers reach it at (`--public-addr`).
    pub named: Vec<SocketAddr>,
    /// The outside address its router maps for it.
    pub mapped: Option<SocketAddr>,
    /// The public address peers (and relays) see its connections come
    /// from, when peers in two networks agree on it.
    pub public: Option<PublicAddress>,
    /// The relays it is registered with.
    pub relays: Vec<SocketAddr>,
    /// Where a peer from another network reached it without an
    /// introduction (the address that peer dialed).
    pub reached_at: Option<SocketAddr>,
}

/// The verdict on `evidence` (see the module docs).
pub fn judge(evidence: &Evidence) -> Reach {
    if !evidence.listening {
        return Reach::NotListening;
    }
    let via = evidence.relays.clone();
    if let Some(addr) = evidence.reached_at {
        return Reach::Direct {
            addr,
            confirmed: true,
            via,
        };
    }
    if let Some(addr) = evidence.mapped {
        return Reach::Mapped { addr };
    }
    // The user's word for an address it named; a global one of ours.
    let named = |addr: &&SocketAddr| matches!(scope(**addr), Scope::Global | Scope::Private(_));
    let global = |addr: &&SocketAddr| scope(**addr) == Scope::Global;
    if let Some(&addr) =
        (evidence.named.iter().find(named)).or_else(|| evidence.addrs.iter().find(global))
    {
        return Reach::Direct {
            addr,
            confirmed: false,
            via,
        };
    }
    let loopback_only = !evidence.addrs.is_empty()
        && evidence
            .addrs
            .iter()
            .all(|addr| scope(*addr) == Scope::Loopback);
    if loopback_only && evidence.named.is_empty() {
        return Reach::HostOnly {
            addrs: evidence.addrs.clone(),
        };
    }
    let public = evidence.public.map(|public| match public.mapping {
        Mapping::OnePort(port) => Some(SocketAddr::new(public.ip, port)),
        Mapping::PortPerPeer => None,
    });
    let symmetric = public.is_some_and(|port| port.is_none());
    if !via.is_empty() {
        return match symmetric {
            true => Reach::Relayed { via },
            false => Reach::Punch {
                public: public.flatten(),
                via,
            },
        };
    }
    // Without a relay, only a peer of its swarm that both reach can
    // introduce it, and only through a router that keeps one port.
    if let Some(Some(public)) = public {
        return Reach::Punch {
            public: Some(public),
            via,
        };
    }
    let mut addrs = evidence.named.clone();
    for addr in &evidence.addrs {
        if !addrs.contains(addr) {
            addrs.push(*addr);
        }
    }
    Reach::LanOnly { addrs }
}

/// How far a ticket (or an offer) reaches by what it names alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TicketReach {
    /// It names a global address or a relay: peers on other networks may
    /// use it.
    Anywhere,
    /// Every address it names is private (or loopback) and it names no
    /// relay: only hosts on the network it was made on can use it.
    LanOnly,
    /// Every address it names is a loopback address: only this host.
    HostOnly,
}

/// [`TicketReach`] of a ticket whose peers have `addrs` and name `relays`.
pub fn ticket_reach(addrs: &[SocketAddr], relays: usize) -> TicketReach {
    if relays > 0 || addrs.iter().any(|addr| scope(*addr) == Scope::Global) {
        TicketReach::Anywhere
    } else if addrs.iter().all(|addr| scope(*addr) == Scope::Loopback) {
        TicketReach::HostOnly
    } else {
        TicketReach::LanOnly
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(text: &str) -> SocketAddr {
        text.parse().expect("a socket address")
    }

    fn listening(addrs: &[&str]) -> Evidence {
        Evidence {
            listening: true,
            addrs: addrs.iter().map(|addr| sa(addr)).collect(),
            ..Evidence::default()
        }
    }

    fn cone(ip: &str, port: u16) -> Option<PublicAddress> {
        Some(PublicAddress {
            ip: ip.parse().unwrap(),
            mapping: Mapping::OnePort(port),
            prefixes: 2,
        })
    }

    #[test]
    fn a_home_host_alone_reaches_only_its_lan() {
        let evidence = listening(&["192.168.1.2:4433"]);
        let reach = judge(&evidence);
        assert_eq!(
            reach,
            Reach::LanOnly {
                addrs: vec![sa("192.168.1.2:4433")]
            }
        );
        assert!(reach.is_unreachable());
        assert!(reach.advice().unwrap().contains("--relay"));
        assert!(reach.to_string().contains("192.168.1.2:4433 is private"));
    }

    #[test]
    fn loopback_only_is_this_host_and_not_listening_says_so() {
        assert!(matches!(
            judge(&listening(&["127.0.0.1:4433", "[::1]:4433"])),
            Reach::HostOnly { .. }
        ));
        assert_eq!(judge(&Evidence::default()), Reach::NotListening);
    }

    #[test]
    fn a_mapping_or_a_public_address_is_direct_but_unconfirmed_until_someone_comes_in() {
        let mut evidence = listening(&["192.168.1.2:4433"]);
        evidence.mapped = Some(sa("81.2.70.5:4433"));
        assert_eq!(
            judge(&evidence),
            Reach::Mapped {
                addr: sa("81.2.70.5:4433")
            }
        );
        let mut evidence = listening(&["192.168.1.2:4433", "[2a01:4f8::2]:4433"]);
        let reach = judge(&evidence);
        assert_eq!(
            reach,
            Reach::Direct {
                addr: sa("[2a01:4f8::2]:4433"),
                confirmed: false,
                via: vec![]
            }
        );
        assert!(reach.advice().unwrap().contains("firewall"));
        evidence.reached_at = Some(sa("[2a01:4f8::2]:4433"));
        let reach = judge(&evidence);
        assert!(matches!(
            reach,
            Reach::Direct {
                confirmed: true,
                ..
            }
        ));
        assert_eq!(reach.advice(), None);
    }

    #[test]
    fn a_named_address_counts_as_direct_and_comes_first() {
        let mut evidence = listening(&["192.168.1.2:4433", "[2a01:4f8::2]:4433"]);
        evidence.named = vec![sa("81.2.69.20:4433")];
        assert!(matches!(
            judge(&evidence),
            Reach::Direct { addr, confirmed: false, .. } if addr == sa("81.2.69.20:4433")
        ));
        // The user's word, even for a private address (a carrier's network
        // that routes it, a port forward inside a campus).
        evidence.named = vec![sa("10.1.2.2:4433")];
        assert!(matches!(
            judge(&evidence),
            Reach::Direct { addr, .. } if addr == sa("10.1.2.2:4433")
        ));
    }

    #[test]
    fn behind_a_router_a_relay_makes_it_a_punch_or_relayed_by_the_router_kind() {
        let relay = sa("81.2.69.9:4434");
        let mut evidence = listening(&["192.168.1.2:4433"]);
        evidence.relays = vec![relay];
        // Kind not known yet: a punch is tried, the relay carries the rest.
        assert_eq!(
            judge(&evidence),
            Reach::Punch {
                public: None,
                via: vec![relay]
            }
        );
        evidence.public = cone("81.2.69.30", 4433);
        assert_eq!(
            judge(&evidence),
            Reach::Punch {
                public: Some(sa("81.2.69.30:4433")),
                via: vec![relay]
            }
        );
        evidence.public = Some(PublicAddress {
            ip: "81.2.69.30".parse().unwrap(),
            mapping: Mapping::PortPerPeer,
            prefixes: 2,
        });
        let reach = judge(&evidence);
        assert_eq!(reach, Reach::Relayed { via: vec![relay] });
        assert!(reach.advice().unwrap().contains("map a port"));
    }

    #[test]
    fn without_a_relay_only_a_cone_router_gets_punches_from_the_swarm() {
        let mut evidence = listening(&["192.168.1.2:4433"]);
        evidence.public = cone("81.2.69.30", 4433);
        assert_eq!(
            judge(&evidence),
            Reach::Punch {
                public: Some(sa("81.2.69.30:4433")),
                via: vec![]
            }
        );
        evidence.public = Some(PublicAddress {
            ip: "81.2.69.30".parse().unwrap(),
            mapping: Mapping::PortPerPeer,
            prefixes: 2,
        });
        assert!(judge(&evidence).is_unreachable());
    }

    #[test]
    fn a_ticket_reaches_by_its_addresses_and_relays() {
        let lan = [sa("192.168.1.2:4433"), sa("10.0.0.5:4433")];
        assert_eq!(ticket_reach(&lan, 0), TicketReach::LanOnly);
        assert_eq!(ticket_reach(&lan, 1), TicketReach::Anywhere);
        assert_eq!(
            ticket_reach(&[sa("192.168.1.2:4433"), sa("81.2.69.1:4433")], 0),
            TicketReach::Anywhere
        );
        assert_eq!(
            ticket_reach(&[sa("127.0.0.1:4433")], 0),
            TicketReach::HostOnly
        );
    }
}
