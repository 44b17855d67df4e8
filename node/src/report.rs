//! What a node tells the program that runs it, and the typed reasons that
//! travel with it: why a link ended, who is to blame, why a download
//! stopped. Strings appear only where a person reads them: the transport's
//! own error text, a peer's rule it broke.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use minimodel_verifier::chunk::ChunkError;
use minimodel_wire::{HelloRejectReason, PeerId};
use serde::{Serialize, Serializer};

use crate::address::Prefix;
use crate::book::Source;
pub use crate::ends::{
    Blame, Departure, Fault, LinkEnd, LocalError, Problem, Violation, goodbye_words,
    hello_reject_words,
};

/// A peer a download tried: where, how it was known, what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tried {
    /// The address dialed (or the first one known).
    pub addr: SocketAddr,
    /// How it became known.
    pub source: Source,
    /// What became of it.
    pub problem: Problem,
}

impl fmt::Display for Tried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.addr,
            self.source.describe(),
            self.problem
        )
    }
}

/// Why chunks found bad on disk were not repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DamageCause {
    /// One chunk went bad on disk again and again after it was written:
    /// the disk (or something else writing to the file) is at fault.
    Repeated {
        /// The chunk.
        chunk: u32,
        /// How often it was found bad.
        times: u32,
    },
    /// No peer delivered them again.
    NotDelivered {
        /// What became of each peer tried.
        tried: Vec<Tried>,
    },
}

impl fmt::Display for DamageCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DamageCause::Repeated { chunk, times } => write!(
                f,
                "chunk {chunk} was damaged on disk {times} times after it was written; the disk or something else writing to the file is at fault"
            ),
            DamageCause::NotDelivered { tried } => {
                write!(f, "no peer delivered them again")?;
                write_tried(f, tried)
            }
        }
    }
}

fn write_tried(f: &mut fmt::Formatter<'_>, tried: &[Tried]) -> fmt::Result {
    for (index, peer) in tried.iter().enumerate() {
        write!(f, "{}{peer}", if index == 0 { ": " } else { "; " })?;
    }
    Ok(())
}

/// Why a node stopped before its work was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Nothing was verified for `give_up_after`; what happened to each
    /// peer tried.
    NoPeers {
        /// Chunks still missing.
        missing: u32,
        /// Chunks in all.
        total: u32,
        /// What became of each peer tried.
        tried: Vec<Tried>,
        /// What became of each mirror named: its end, or what it
        /// delivered while it stayed.
        mirrors: Vec<crate::mirror::MirrorFigures>,
    },
    /// Chunks went bad on disk after they were verified and could not be
    /// repaired.
    Damaged {
        /// Chunks still bad.
        bad: u32,
        /// Why not.
        cause: DamageCause,
    },
    /// Storage failed (a full disk, say).
    Storage(Fault),
    /// The final checks failed for a reason that fetching cannot fix.
    Verification(Fault),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NoPeers {
                missing,
                total,
                tried,
                mirrors,
            } => {
                let sources = if mirrors.is_empty() {
                    "peer"
                } else {
                    "peer or mirror"
                };
                write!(
                    f,
                    "no {sources} could deliver the missing chunks ({missing} of {total} missing)"
                )?;
                if tried.is_empty() {
                    // Nobody to dial: none was named, and none was found
                    // or dialed us in time.
                    write!(f, ": no peer was named or found")?;
                } else {
                    write_tried(f, tried)?;
                }
                for mirror in mirrors {
                    write!(f, "; mirror {}: ", mirror.label)?;
                    match &mirror.end {
                        Some(end) => write!(f, "{end}")?,
                        None => write!(
                            f,
                            "{} chunks delivered, {} requests timed out",
                            mirror.download.chunks, mirror.download.timeouts
                        )?,
                    }
                }
                Ok(())
            }
            Failure::Damaged { bad, cause } => write!(
                f,
                "the file on disk failed its check: {bad} chunks went bad after they were verified and were not repaired ({cause})"
            ),
            Failure::Storage(fault) => {
                write!(f, "the download could not be written or read back: {fault}")
            }
            Failure::Verification(fault) => {
                write!(f, "the downloaded file failed its final check: {fault}")
            }
        }
    }
}

/// Why an incoming connection was turned away at its first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This node does not accept connections (now): it does not listen,
    /// is stopping or has ended.
    NotAccepting,
    /// Its prefix has this many handshakes in progress already.
    PrefixHandshakes {
        /// The source's prefix.
        prefix: Prefix,
        /// The limit.
        limit: usize,
    },
    /// This many handshakes are in progress already, over all sources.
    Handshakes {
        /// The limit.
        limit: usize,
    },
    /// Its prefix holds this many incoming links and handshakes already,
    /// over every swarm of a shared endpoint.
    PrefixLinks {
        /// The source's prefix.
        prefix: Prefix,
        /// The limit.
        limit: usize,
    },
    /// A shared endpoint holds this many incoming links and handshakes
    /// already, over every swarm.
    Peers {
        /// The limit.
        limit: usize,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotAccepting => write!(f, "this node does not accept connections"),
            Refusal::PrefixHandshakes { prefix, limit } => {
                write!(f, "{prefix} has {limit} handshakes in progress already")
            }
            Refusal::Handshakes { limit } => write!(f, "{limit} handshakes in progress already"),
            Refusal::PrefixLinks { prefix, limit } => {
                write!(f, "{prefix} holds {limit} links to this endpoint already")
            }
            Refusal::Peers { limit } => write!(f, "this endpoint holds {limit} peers already"),
        }
    }
}

fn display<S: Serializer, T: fmt::Display>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

fn display_opt<S: Serializer>(value: &Option<PeerId>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(peer) => serializer.collect_str(peer),
        None => serializer.serialize_none(),
    }
}

fn display_refusal<S: Serializer>(
    value: &Option<HelloRejectReason>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(reason) => serializer.collect_str(reason),
        None => serializer.serialize_none(),
    }
}

/// What a node tells the program that runs it (log lines, progress).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum NodeReport {
    /// A peer finished its handshake.
    PeerConnected {
        /// Its id.
        #[serde(serialize_with = "display")]
        peer: PeerId,
        /// Its address.
        addr: SocketAddr,
        /// Whether we dialed it.
        dialed: bool,
        /// Whether it serves.
        serving: bool,
        /// Its agent string.
        agent: String,
        /// The congestion controller that paces what we send it (`delay`,
        /// `cubic`, `new-reno`, `bbr`), read from the connection.
        congestion: Option<&'static str>,
    },
    /// A peer left or was dropped.
    PeerDisconnected {
        /// Its id.
        #[serde(serialize_with = "display")]
        peer: PeerId,
        /// Its address.
        addr: SocketAddr,
        /// Why.
        #[serde(serialize_with = "display")]
        reason: Departure,
        /// Who is to blame.
        blame: Blame,
        /// Chunks we served it.
        uploaded_chunks: u64,
        /// Bytes we served it.
        uploaded_bytes: u64,
    },
    /// A connection attempt or handshake failed or was refused.
    Refused {
        /// The other side.
        addr: SocketAddr,
        /// Why.
        #[serde(serialize_with = "display")]
        reason: LinkEnd,
    },
    /// A step of getting through to a peer behind a router
    /// (`docs/swarm.md`, "Through NAT routers").
    Introduction {
        /// The peer to get through to.
        #[serde(serialize_with = "display")]
        peer: PeerId,
        /// The peer that introduces (or was asked to).
        #[serde(serialize_with = "display")]
        via: PeerId,
        /// `asked` (we sent a Rendezvous), `dialing` (its Connect came and
        /// we dial), or why it would not introduce us.
        step: String,
    },
    /// We introduced two of our peers to each other (a Connect to each).
    Introduced {
        /// The peer that asked.
        #[serde(serialize_with = "display")]
        asker: PeerId,
        /// The peer it asked for.
        #[serde(serialize_with = "display")]
        target: PeerId,
    },
    /// An incoming connection asked for a manifest by its SHA-256 (a
    /// manifest query: someone holding a ticket), or for that manifest's
    /// chunk list (a chunk list query: someone with an older version to
    /// reuse), and was answered.
    ManifestQuery {
        /// Its id.
        #[serde(serialize_with = "display")]
        peer: PeerId,
        /// Its address.
        addr: SocketAddr,
        /// It asked for the chunk list, not the manifest.
        chunk_list: bool,
        /// `None`: it was sent the manifest; otherwise why it was refused.
        #[serde(serialize_with = "display_refusal")]
        refused: Option<HelloRejectReason>,
    },
    /// Peers in different prefixes agree on the address they see this
    /// node's connections come from (its router's outside address when it
    /// is behind a NAT); reported when that changes.
    PublicAddress {
        /// The IP address.
        ip: std::net::IpAddr,
        /// The one port they all see, or none when each sees another (a
        /// symmetric NAT, which introductions do not get through).
        port: Option<u16>,
        /// How many different prefixes the reporting peers are in.
        prefixes: usize,
    },
    /// A step with a relay (`docs/relay.md`): registered, lost, an
    /// introduction asked or made, the fallback to its channel, the way
    /// back to a direct link.
    Relay {
        /// The relay.
        relay: SocketAddr,
        /// The peer concerned, if one is.
        #[serde(serialize_with = "display_opt")]
        peer: Option<PeerId>,
        /// What happened, in words.
        step: String,
    },
    /// Who can reach this node, and how (`crate::reach`): the first
    /// verdict, and every change of it.
    Reach {
        /// The verdict.
        reach: crate::reach::Reach,
    },
    /// A step of mapping this node's port on its home router (UPnP IGD,
    /// NAT-PMP, PCP; `docs/swarm.md`, "Through NAT routers").
    PortMapping {
        /// What happened.
        #[serde(serialize_with = "display")]
        step: crate::portmap::PortMapEvent,
    },
    /// A step of local discovery (`--lan`: mDNS; `docs/swarm.md`,
    /// "Neighbours").
    Lan {
        /// What happened.
        #[serde(serialize_with = "display")]
        step: LanStep,
    },
    /// An incoming connection was turned away before its handshake.
    Turned {
        /// The other side.
        addr: SocketAddr,
        /// Why.
        #[serde(serialize_with = "display")]
        reason: Refusal,
    },
    /// A peer sent a chunk that failed its proof and is banned.
    Banned {
        /// Its id.
        #[serde(serialize_with = "display")]
        peer: PeerId,
        /// Its address.
        addr: SocketAddr,
        /// The chunk.
        chunk: u32,
        /// What failed.
        #[serde(serialize_with = "display")]
        error: ChunkError,
    },
    /// A peer that dropped (or could not be reached) is dialed again.
    Redialing {
        /// Its address (the first one).
        addr: SocketAddr,
        /// Attempts that failed in a row.
        failures: u32,
        /// Milliseconds until the next attempt.
        in_ms: u64,
    },
    /// Download progress (every half second while downloading).
    Progress {
        /// Verified bytes.
        verified_bytes: u64,
        /// Artifact size.
        total_bytes: u64,
        /// Verified chunks.
        verified_chunks: u32,
        /// Chunks in all.
        total_chunks: u32,
        /// Peers we download from.
        peers: usize,
        /// Verified bytes per second over the last few seconds.
        rate: f64,
        /// Whether no peer that serves is connected (the node is waiting
        /// for one, dialing or backing off).
        waiting_for_peers: bool,
    },
    /// The download passed every check and is delivered with its receipt
    /// (a node with `seed_after` goes on serving). Made by the driver.
    Delivered {
        /// The artifact.
        path: PathBuf,
        /// Its receipt.
        receipt: PathBuf,
        /// Whether the node goes on serving it until stopped.
        seeding: bool,
    },
    /// A mirror joined the download (`crate::mirror`).
    MirrorUp {
        /// Which.
        mirror: crate::mirror::MirrorId,
        /// `https://host/path` (no query: it may hold a token).
        label: String,
    },
    /// A mirror's request failed for a while: it is asked again after
    /// `retry_in_ms` (`None`: before it joined, the driver tries again).
    /// Never blamed.
    MirrorTrouble {
        /// Which.
        mirror: crate::mirror::MirrorId,
        /// `https://host/path`.
        label: String,
        /// What failed.
        trouble: crate::mirror::MirrorTrouble,
        /// Its back-off.
        retry_in_ms: Option<u64>,
    },
    /// A mirror left the download: dropped for a lie (named with the
    /// chunk, what was expected and what came), or not usable.
    MirrorEnded {
        /// Which.
        mirror: crate::mirror::MirrorId,
        /// `https://host/path`.
        label: String,
        /// Why.
        end: crate::mirror::MirrorEnd,
    },
    /// Upload progress of a serving node (every second while serving).
    Serving {
        /// Connected peers.
        peers: usize,
        /// Bytes uploaded in all.
        uploaded_bytes: u64,
    },
}

/// A snapshot of a node's counters, for a metrics scrape. Counters count
/// from the node's start; per-peer figures cover the peers this run has
/// dealt with (a peer that reconnected appears once).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeMetrics {
    /// Connected peers.
    pub peers_connected: u64,
    /// Peers banned for a chunk that failed its proof.
    pub peers_banned: u64,
    /// Addresses the address book holds (every peer's, banned ones
    /// excepted): where the node may dial.
    pub addresses_known: u64,
    /// The upload cap in force now, bytes per second: its own and, on an
    /// endpoint shared with other swarms, its part of the endpoint's, the
    /// lower (`None`: none, or it does not serve).
    pub upload_cap: Option<u64>,
    /// The download cap in force now, likewise (`None`: none, or it does
    /// not fetch).
    pub download_cap: Option<u64>,
    /// Chunks fetched and verified by this run.
    pub chunks_verified: u64,
    /// Chunks received that failed their proof.
    pub bad_chunks: u64,
    /// Bytes verified in all, earlier runs included.
    pub verified_bytes: u64,
    /// The artifact's size.
    pub artifact_bytes: u64,
    /// Bytes requested and not yet received (whole chunks; the last chunk
    /// of the file counts as a whole one).
    pub in_flight_bytes: u64,
    /// Bytes of verified chunks served to peers.
    pub uploaded_bytes: u64,
    /// Introductions (`docs/swarm.md`, "Through NAT routers"), by step.
    pub introductions: IntroductionCounts,
    /// Per peer.
    pub peers: Vec<PeerFigures>,
    /// Per mirror that took part or was found unusable.
    pub mirrors: Vec<crate::mirror::MirrorFigures>,
    /// Its chunks in at most [`CHUNK_MAP_CELLS`] cells: verified, in
    /// flight, and how many connected peers hold them.
    pub chunk_map: ChunkMap,
}

/// The most cells a [`ChunkMap`] has.
pub const CHUNK_MAP_CELLS: usize = 256;

/// A picture of a swarm's chunks for people: the chunks in order, in
/// cells of about equal runs (cell `i` of `n` holds chunks
/// `i * chunks / n` up to `(i + 1) * chunks / n`; one chunk a cell when
/// there are few).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkMap {
    /// Chunks in all.
    pub chunks: u32,
    /// The cells, in chunk order.
    pub cells: Vec<ChunkCell>,
}

/// One cell of a [`ChunkMap`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkCell {
    /// Chunks in the cell.
    pub chunks: u32,
    /// Of those, verified here.
    pub verified: u32,
    /// Of those, asked of a peer and not received yet.
    pub in_flight: u32,
    /// The fewest connected peers that hold any one chunk of the cell
    /// (their bitfields and Haves).
    pub holders: u32,
}

impl ChunkMap {
    /// The map of `have` (verified here), `in_flight` chunks, and
    /// `holders[c]` peers holding chunk `c`, in at most `max_cells`.
    pub fn of(
        have: &minimodel_wire::HaveBitfield,
        in_flight: impl IntoIterator<Item = u32>,
        holders: &[u32],
        max_cells: usize,
    ) -> Self {
        let chunks = have.chunk_count();
        let cells = (chunks as usize).min(max_cells.max(1));
        let mut map = ChunkMap {
            chunks,
            cells: vec![ChunkCell::default(); cells],
        };
        if cells == 0 {
            return map;
        }
        let cell_of = |chunk: u32| (u64::from(chunk) * cells as u64 / u64::from(chunks)) as usize;
        for chunk in 0..chunks {
            let cell = &mut map.cells[cell_of(chunk)];
            let held = holders.get(chunk as usize).copied().unwrap_or(0);
            cell.holders = if cell.chunks == 0 {
                held
            } else {
                cell.holders.min(held)
            };
            cell.chunks += 1;
        }
        for chunk in have.iter_ones() {
            map.cells[cell_of(chunk.0)].verified += 1;
        }
        let mut seen = std::collections::BTreeSet::new();
        for chunk in in_flight {
            if chunk < chunks && !have.get(minimodel_wire::ChunkIndex(chunk)) && seen.insert(chunk)
            {
                map.cells[cell_of(chunk)].in_flight += 1;
            }
        }
        map
    }

    /// Verified chunks in all.
    pub fn verified(&self) -> u32 {
        self.cells.iter().map(|cell| cell.verified).sum()
    }
}

/// How many introductions reached each step since the node started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntroductionCounts {
    /// We asked a peer to introduce us (Rendezvous sent).
    pub asked: u64,
    /// An introducer's Connect came and we dialed.
    pub dialing: u64,
    /// An introducer would not introduce us (RendezvousFailed).
    pub refused: u64,
    /// We introduced two of our peers to each other.
    pub introduced: u64,
}

/// What one peer did, per peer id (its sessions summed): the node's one
/// per-peer figures type. A receipt's peer entry, a metrics scrape's
/// per-peer series ([`NodeMetrics::peers`]) and the download's
/// [`crate::node::TransferStats`] are views of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerFigures {
    /// Its id.
    pub id: PeerId,
    /// Where it was reached, when the address book knows.
    pub address: Option<SocketAddr>,
    /// How it became known, when the address book knows.
    pub source: Option<Source>,
    /// Whether it is banned (for a chunk that failed its proof).
    pub banned: bool,
    /// What it delivered to our download (zero when we do not download).
    pub download: crate::session::PeerStats,
    /// Chunk bytes served to it while it is connected.
    pub uploaded_bytes: u64,
    /// Its link, while it is connected.
    pub link: Option<LinkFigures>,
}

/// What the download did, for a receipt.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferStats {
    /// Chunks verified in an earlier run.
    pub chunks_resumed: u64,
    /// Chunks fetched and verified in this run.
    pub chunks_fetched: u64,
    /// Of those, fetched again after being found bad on disk.
    pub chunks_refetched: u64,
    /// Bytes received that did not count.
    pub bytes_wasted: u64,
    /// Per peer that took part.
    pub peers: Vec<PeerFigures>,
    /// Per mirror that took part or was found unusable.
    pub mirrors: Vec<crate::mirror::MirrorFigures>,
    /// When the last chunk was verified.
    pub completed_at: Option<std::time::Instant>,
}

impl TransferStats {
    /// The receipt's view of these figures (its times are the delivery's
    /// to fill in).
    pub fn summary(&self) -> minimodel_verifier::receipt::TransferSummary {
        minimodel_verifier::receipt::TransferSummary {
            chunks_resumed: self.chunks_resumed,
            chunks_fetched: self.chunks_fetched,
            chunks_refetched: self.chunks_refetched,
            // Counted by the shell that copied them before the node ran.
            chunks_reused: 0,
            bytes_wasted: self.bytes_wasted,
            duration_ms: 0,
            finish_ms: 0,
            peers: self
                .peers
                .iter()
                .map(|peer| minimodel_verifier::receipt::PeerContribution {
                    peer_id: peer.id.to_string(),
                    address: peer.address.map(|a| a.to_string()).unwrap_or_default(),
                    chunks: peer.download.chunks,
                    bytes: peer.download.bytes,
                    bad_chunks: peer.download.bad_chunks,
                    banned: peer.banned,
                    found_by: peer
                        .source
                        .map(|source| source.as_str().to_owned())
                        .unwrap_or_default(),
                })
                .collect(),
            mirrors: self
                .mirrors
                .iter()
                .map(|mirror| minimodel_verifier::receipt::MirrorContribution {
                    url: mirror.label.clone(),
                    chunks: mirror.download.chunks,
                    bytes: mirror.download.bytes,
                    bad_chunks: mirror.download.bad_chunks,
                    blamed: matches!(mirror.end, Some(crate::mirror::MirrorEnd::Dropped { .. })),
                    left: mirror.end.as_ref().map(ToString::to_string),
                })
                .collect(),
        }
    }
}

/// A connected peer's link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkFigures {
    /// Where it is connected from or to.
    pub remote: SocketAddr,
    /// We dialed it (else it dialed us).
    pub dialed: bool,
    /// Since when.
    pub since: std::time::Instant,
}

impl PeerFigures {
    /// Peer `id`, with nothing known or done yet.
    pub fn of(id: PeerId) -> Self {
        Self {
            id,
            address: None,
            source: None,
            banned: false,
            download: crate::session::PeerStats::default(),
            uploaded_bytes: 0,
            link: None,
        }
    }

    /// Verified chunk bytes received from it, duplicates included.
    pub fn downloaded_bytes(&self) -> u64 {
        self.download.bytes + self.download.wasted_bytes
    }
}

/// A step of local discovery ([`NodeReport::Lan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LanStep {
    /// Listening for neighbours, and announcing this node at `port` when
    /// it listens (`None`: it does not, so it only listens).
    Started {
        /// The announced port.
        announced: Option<u16>,
    },
    /// Multicast DNS could not start (no multicast interface, the port
    /// taken): the node goes on without it.
    Unavailable {
        /// Why, in the words of the mDNS library.
        reason: String,
    },
    /// A neighbour of this swarm was heard and will be dialed.
    Heard {
        /// Its id.
        peer: PeerId,
        /// The addresses kept (inside our own networks).
        addrs: Vec<SocketAddr>,
    },
}

impl std::fmt::Display for LanStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LanStep::Started {
                announced: Some(port),
            } => write!(
                f,
                "announcing this swarm on the local network (mDNS), port {port}, and listening for neighbours"
            ),
            LanStep::Started { announced: None } => {
                write!(f, "listening for neighbours on the local network (mDNS)")
            }
            LanStep::Unavailable { reason } => {
                write!(f, "local discovery is unavailable: {reason}")
            }
            LanStep::Heard { peer, addrs } => {
                let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
                write!(f, "neighbour {} at {}", peer.short(), addrs.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minimodel_wire::{
        ChunkIndex, DecodeError, HaveBitfield, PeerError, ProtocolViolation, SwarmMismatch,
    };

    #[test]
    fn a_chunk_map_counts_each_chunk_once_in_its_cell() {
        let mut have = HaveBitfield::new(10);
        for chunk in [0, 1, 2, 9] {
            have.set(ChunkIndex(chunk), true).unwrap();
        }
        let holders = [2, 2, 1, 0, 3, 3, 3, 3, 1, 1];
        // Four cells of 10 chunks: 0-2, 3-4, 5-7, 8-9.
        let map = ChunkMap::of(&have, [3, 3, 4, 0, 12], &holders, 4);
        assert_eq!(map.chunks, 10);
        let cells: Vec<(u32, u32, u32, u32)> = map
            .cells
            .iter()
            .map(|c| (c.chunks, c.verified, c.in_flight, c.holders))
            .collect();
        // Chunk 3 asked twice (endgame) counts once; a verified chunk and
        // one beyond the file are not in flight.
        assert_eq!(
            cells,
            [(3, 3, 0, 1), (2, 0, 2, 0), (3, 0, 0, 3), (2, 1, 0, 1)]
        );
        assert_eq!(map.verified(), 4);
        // Fewer chunks than cells: a cell each.
        let small = ChunkMap::of(&have, [], &holders, 256);
        assert_eq!(small.cells.len(), 10);
        assert!(small.cells.iter().all(|c| c.chunks == 1));
        assert_eq!(small.verified(), 4);
        // No chunk, no cell.
        assert!(
            ChunkMap::of(&HaveBitfield::new(0), [], &[], 8)
                .cells
                .is_empty()
        );
    }

    #[test]
    fn a_hello_for_another_swarm_ends_the_link_as_wrong_swarm_and_other_breaches_as_violations() {
        let other_swarm =
            PeerError::Violation(ProtocolViolation::Swarm(SwarmMismatch::ProtocolVersion {
                found: 9,
                expected: 2,
            }));
        let end = LinkEnd::of_peer_error(other_swarm);
        assert_eq!(end, LinkEnd::WrongSwarm);
        assert_eq!(end.blame(), Blame::Peer);
        let garbage = PeerError::Decode(DecodeError::UnknownType { type_byte: 0x7f });
        assert_eq!(
            LinkEnd::of_peer_error(garbage.clone()),
            LinkEnd::Violation(Violation::Wire(garbage))
        );
    }
}
