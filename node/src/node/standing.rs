//! Where this node stands ([`crate::reach`]): the evidence, kept as the
//! router, peers and relays tell it more, and a [`NodeReport::Reach`]
//! whenever the verdict changes.
//!
//! The first verdict waits until the driver says whether the node asks its
//! router for a port mapping ([`NodeCore::set_mapping`]), and then for the
//! router's first answer (a mapping changes everything), at most
//! [`NodeConfig::reach_wait`](crate::config::NodeConfig::reach_wait)
//! from then; a node that asks its router nothing is judged at once.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use minimodel_wire::PeerId;

use super::NodeCore;
use crate::address::{Prefix, Scope, canonical, scope};
use crate::reach::{Evidence, Reach, judge};
use crate::report::NodeReport;

/// How long a Connect makes an incoming link from its peer a punch rather
/// than a peer that reached us unasked.
const EXPECTED_FOR: Duration = Duration::from_secs(15);

/// Most peers expected at once (older ones are forgotten first).
const MAX_EXPECTED: usize = 64;

/// The node's standing: what it knows and what it said.
#[derive(Debug)]
pub(super) struct Standing {
    pub(super) evidence: Evidence,
    /// The verdict last reported.
    reported: Option<Reach>,
    /// The first verdict waits until then at most, once the router is
    /// asked.
    first_by: Option<Instant>,
    wait: Duration,
    /// The evidence is complete enough for a verdict.
    ready: bool,
    /// Peers an introduction told us to expect, and until when: their
    /// incoming links are punches, not proof that we are reachable.
    expected: VecDeque<(PeerId, Instant)>,
}

impl Standing {
    pub(super) fn new(listening: bool, addrs: Vec<SocketAddr>, wait: Duration) -> Self {
        Self {
            evidence: Evidence {
                listening,
                addrs,
                ..Evidence::default()
            },
            reported: None,
            first_by: None,
            wait,
            ready: false,
            expected: VecDeque::new(),
        }
    }

    /// When the first verdict is due, while it waits for the router.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.first_by.filter(|_| !self.ready)
    }
}

impl NodeCore {
    /// The addresses this node listens at (its interfaces' for a wildcard
    /// listener, as its offer lists them) and those its user says peers
    /// reach it at (`--public-addr`): what [`crate::reach`] judges by.
    pub fn set_listen_addrs(
        &mut self,
        addrs: Vec<SocketAddr>,
        named: Vec<SocketAddr>,
        now: Instant,
    ) {
        let evidence = &mut self.standing.evidence;
        evidence.addrs = addrs;
        evidence.named = named;
        self.judge_standing(now);
    }

    /// The verdict last reported ([`NodeReport::Reach`]), once there is one.
    pub fn reach(&self) -> Option<&Reach> {
        self.standing.reported.as_ref()
    }

    /// The evidence the verdict is judged by.
    pub fn reach_evidence(&self) -> &Evidence {
        &self.standing.evidence
    }

    /// The router's first answer came (or none was asked for): the verdict
    /// may be given.
    pub(super) fn standing_mapping(&mut self, asked: bool, now: Instant) {
        let standing = &mut self.standing;
        standing.evidence.mapped = self.mapped;
        if !asked || self.mapping_settled {
            standing.ready = true;
        } else if standing.first_by.is_none() {
            standing.first_by = Some(now + standing.wait);
        }
        self.judge_standing(now);
    }

    /// Peer `peer` was introduced to us and dials us now: its link is a
    /// punch.
    pub(super) fn expect_punch(&mut self, peer: PeerId, now: Instant) {
        let expected = &mut self.standing.expected;
        expected.retain(|(id, until)| *id != peer && *until > now);
        if expected.len() >= MAX_EXPECTED {
            expected.pop_front();
        }
        expected.push_back((peer, now + EXPECTED_FOR));
    }

    /// A link came up: an incoming one from another network that nobody
    /// introduced shows that peers reach us where it dialed (`dialed_us`,
    /// the address its Hello says it dialed).
    pub(super) fn standing_link_up(
        &mut self,
        peer: PeerId,
        remote: SocketAddr,
        dialed: bool,
        dialed_us: Option<SocketAddr>,
        now: Instant,
    ) {
        self.standing.evidence.public = self.observed.public();
        let standing = &mut self.standing;
        let expected = standing
            .expected
            .iter()
            .any(|(id, until)| *id == peer && *until > now);
        let ours = self
            .lan
            .iter()
            .any(|own| Prefix::of(own.ip()) == Prefix::of(remote.ip()));
        let outside = !ours && !matches!(scope(remote), Scope::Loopback | Scope::Unusable);
        if !dialed && !expected && outside && standing.evidence.reached_at.is_none() {
            // The address it dialed, when it is one of ours; else where
            // we listen.
            let at = dialed_us
                .map(|addr| SocketAddr::new(canonical(addr.ip()), addr.port()))
                .filter(|addr| scope(*addr) != Scope::Unusable)
                .or(self.listen);
            standing.evidence.reached_at = at.filter(|addr| !addr.ip().is_unspecified());
        }
        self.judge_standing(now);
    }

    /// The relays this node is registered with now.
    pub fn set_relays(&mut self, relays: Vec<SocketAddr>, now: Instant) {
        self.standing.evidence.relays = relays;
        self.judge_standing(now);
    }

    /// Gives the first verdict when its wait is over.
    pub(super) fn standing_timeout(&mut self, now: Instant) {
        if self.standing.deadline().is_some_and(|by| now >= by) {
            self.standing.ready = true;
            self.judge_standing(now);
        }
    }

    /// Reports the verdict when it changed (and may be given).
    fn judge_standing(&mut self, _now: Instant) {
        if !self.standing.ready {
            return;
        }
        let reach = judge(&self.standing.evidence);
        if self.standing.reported.as_ref() != Some(&reach) {
            self.standing.reported = Some(reach.clone());
            self.reports.push_back(NodeReport::Reach { reach });
        }
    }
}
