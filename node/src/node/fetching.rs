//! The downloading side: pieces as they arrive, verification results,
//! checkpoint pacing, the trailing whole-file hash, delivery and repair,
//! and giving up.
//!
//! A chunk counts only once the driver reports it verified and written
//! ([`VerifyOutcome::Stored`]): then it is had, peers hear a Have, and the
//! trailing hasher may read it back. When every chunk is had, the driver
//! runs the final checks ([`Action::Deliver`]); chunks it finds bad on disk
//! are fetched again, up to `max_repairs_per_chunk` times each.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use minimodel_wire::{ChunkIndex, GoodbyeReason, HaveBitfield, Message, PeerId, SwarmParams};

use super::{Action, End, NodeCore};
use crate::config::NodeConfig;
use crate::download::{Action as DownloadAction, DisconnectReason, DownloadConfig, Downloader};
use crate::ids::LinkId;
use crate::report::TransferStats;
use crate::report::{
    DamageCause, Departure, Failure, Fault, NodeMetrics, NodeReport, PeerFigures, Violation,
};
use minimodel_verifier::chunk::ChunkError;

/// What to do with a piece stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceVerdict {
    /// Read it (at its header), verify and store it (at its end).
    Accept,
    /// Stop reading it: not wanted (any more). No blame.
    Stop,
}

/// Why a piece stream ended before its chunk arrived whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PieceEnd {
    /// The sender reset it, or the connection went away: no blame.
    Reset,
    /// The sender broke the rules (finished it short, sent more than the
    /// chunk, a malformed header): the peer is dropped.
    Violation(Violation),
}

/// How verifying and storing a chunk went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// It passed its proof and is written.
    Stored,
    /// It failed its proof: what failed.
    Bad(ChunkError),
    /// It passed but could not be written (a full disk, say).
    StoreFailed(Fault),
}

/// How the final checks went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// Delivered with its receipt.
    Delivered {
        /// The artifact at its final name.
        path: std::path::PathBuf,
        /// Its receipt.
        receipt: std::path::PathBuf,
    },
    /// These chunks passed their proofs but are bad on disk now.
    Damaged(Vec<ChunkIndex>),
    /// A check failed that fetching cannot fix.
    Failed(Fault),
    /// Storage failed.
    StorageFailed(Fault),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Fetching,
    /// Every chunk is verified; a checkpoint still runs, and the delivery
    /// starts when it has ended.
    Syncing,
    Delivering,
    Delivered,
}

/// The download's state.
#[derive(Debug)]
pub(super) struct Fetching {
    pub(super) downloader: Downloader,
    params: SwarmParams,
    verified_bytes: u64,
    resumed_chunks: u64,
    fetched_chunks: u64,
    refetched: u64,
    /// Chunks `0..prefix` are verified.
    prefix: u32,
    /// The trailing hasher has hashed chunks `0..hashed`.
    hashed: u32,
    /// The verified prefix when the hasher (re)started: while it reads
    /// those back, the download does not wait for it.
    start_prefix: u32,
    bytes_since_checkpoint: u64,
    last_checkpoint: Instant,
    checkpoint_running: bool,
    /// The last checkpoint before the end has started.
    last_checkpoint_done: bool,
    /// Chunks handed to verification ([`NodeCore::handle_piece_arrived`]
    /// said Accept) whose outcome has not come back yet.
    pub(super) verifying: u32,
    /// The end came while chunks were being verified: the last checkpoint
    /// waits for them (so that it lists every chunk written) until then.
    verify_wait_until: Option<Instant>,
    released_below: u64,
    last_report: Instant,
    rate_window: VecDeque<(Instant, u64)>,
    /// The last time a chunk was verified (or the download started).
    last_progress: Instant,
    completed_at: Option<Instant>,
    phase: Phase,
    repairs: BTreeMap<u32, u32>,
    /// Chunks whose start this node holds (`NodeStart::prefixes`), asked
    /// for from there of peers that speak v3; forgotten when a chunk so
    /// joined fails its proof, and asked for whole after.
    pub(super) prefixes: BTreeMap<u32, u32>,
}

impl Fetching {
    pub(super) fn new(
        config: &NodeConfig,
        download: DownloadConfig,
        have: &HaveBitfield,
        params: SwarmParams,
        now: Instant,
    ) -> Self {
        let prefix = prefix_of(have, 0);
        let verified_bytes = have
            .iter_ones()
            .filter_map(|chunk| params.chunk_len(chunk).ok())
            .map(u64::from)
            .sum();
        let _ = config;
        Self {
            downloader: Downloader::new(params.chunk_size(), have, download),
            params,
            verified_bytes,
            resumed_chunks: u64::from(have.count_ones()),
            fetched_chunks: 0,
            refetched: 0,
            prefix,
            hashed: 0,
            start_prefix: prefix,
            bytes_since_checkpoint: 0,
            last_checkpoint: now,
            checkpoint_running: false,
            last_checkpoint_done: false,
            verifying: 0,
            verify_wait_until: None,
            released_below: 0,
            last_report: now,
            // The first report's rate counts from the start.
            rate_window: VecDeque::from([(now, verified_bytes)]),
            last_progress: now,
            completed_at: None,
            phase: Phase::Fetching,
            repairs: BTreeMap::new(),
            prefixes: BTreeMap::new(),
        }
    }

    pub(super) fn is_complete(&self) -> bool {
        self.downloader.is_complete()
    }

    /// Whether a checkpoint is being written, or the last one waits for
    /// chunks still being verified.
    pub(super) fn is_checkpointing(&self) -> bool {
        self.checkpoint_running || self.awaits_verification()
    }

    /// The last checkpoint waits for chunks being verified.
    fn awaits_verification(&self) -> bool {
        self.verify_wait_until.is_some() && !self.last_checkpoint_done
    }

    /// When the last checkpoint stops waiting for verification, if it
    /// waits.
    pub(super) fn verify_wait_deadline(&self) -> Option<Instant> {
        self.verify_wait_until
            .filter(|_| self.awaits_verification() && !self.checkpoint_running)
    }

    /// Whether ending now would lose verified chunks no checkpoint holds
    /// (a delivered download keeps nothing of the kind).
    pub(super) fn needs_last_checkpoint(&self) -> bool {
        self.phase != Phase::Delivered
    }

    pub(super) fn is_delivered(&self) -> bool {
        self.phase == Phase::Delivered
    }

    pub(super) fn wants_peers(&self) -> bool {
        self.phase == Phase::Fetching && !self.downloader.is_complete()
    }

    #[cfg(test)]
    pub(super) fn requests_in_flight(&self) -> usize {
        self.downloader.requests_in_flight()
    }

    pub(super) fn is_busy_with(&self, link: LinkId) -> bool {
        self.downloader
            .peer(link)
            .is_some_and(|session| session.requests_in_flight() > 0)
    }

    /// Whether the download would fetch now (see
    /// [`Downloader::wants_bytes`]).
    pub(super) fn wants_bytes(&self) -> bool {
        self.phase == Phase::Fetching && self.downloader.wants_bytes()
    }

    pub(super) fn set_shared_rate(&mut self, rate: Option<u64>, now: Instant) {
        self.downloader.set_shared_rate(rate, now);
    }

    /// The chunks asked of peers and not received yet.
    pub(super) fn in_flight_chunks(&self) -> Vec<u32> {
        self.downloader.in_flight_chunks().collect()
    }

    pub(super) fn set_max_rate(&mut self, rate: Option<u64>, now: Instant) {
        self.downloader.set_max_rate(rate, now);
    }

    /// The download cap in force now, while it fetches.
    pub(super) fn rate_cap(&self) -> Option<u64> {
        (self.phase == Phase::Fetching)
            .then(|| self.downloader.rate_cap())
            .flatten()
    }

    pub(super) fn set_rtt(&mut self, link: LinkId, rtt: Duration) {
        self.downloader.set_rtt(link, rtt);
    }

    pub(super) fn next_deadline(&self, config: &NodeConfig, now: Instant) -> Option<Instant> {
        if self.phase != Phase::Fetching {
            return None;
        }
        let checkpoint = (self.bytes_since_checkpoint > 0 && !self.checkpoint_running).then(|| {
            if self.bytes_since_checkpoint >= config.checkpoint_bytes {
                now
            } else {
                self.last_checkpoint + config.checkpoint_every
            }
        });
        let report = Some(self.last_report + config.progress_every);
        let give_up = self.last_progress.checked_add(config.give_up_after);
        [
            self.downloader.next_deadline(now),
            checkpoint,
            report,
            give_up,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    #[cfg(test)]
    pub(super) fn debug_deadlines(&self, config: &NodeConfig, now: Instant) -> String {
        format!(
            "phase {:?} next {:?} downloader {} ckpt {} {} last_report {:?}",
            self.phase,
            self.next_deadline(config, now)
                .map(|t| t.saturating_duration_since(now)),
            self.downloader.debug_deadlines(now),
            self.bytes_since_checkpoint,
            self.checkpoint_running,
            (self.last_report + config.progress_every).saturating_duration_since(now)
        )
    }

    /// The download's part of a metrics snapshot.
    pub(super) fn metrics(&self, metrics: &mut NodeMetrics) {
        metrics.verified_bytes = self.verified_bytes;
        metrics.chunks_verified = self.fetched_chunks;
        metrics.in_flight_bytes = (self.downloader.requests_in_flight() as u64)
            .saturating_mul(u64::from(self.params.chunk_size()));
        // One entry per peer id (`all_peer_stats` sums a peer's sessions).
        for (id, stats) in self.downloader.all_peer_stats() {
            metrics.bad_chunks += stats.bad_chunks;
            metrics.peers.push(PeerFigures {
                download: stats,
                ..PeerFigures::of(id)
            });
        }
    }

    pub(super) fn stats(&self) -> TransferStats {
        // One entry per peer id: a peer that reconnected has its sessions
        // summed.
        let all = self.downloader.all_peer_stats();
        let peers = all
            .iter()
            // Where it was reached, how it was found and its ban are the
            // address book's: filled in by `NodeCore::transfer`.
            .map(|(id, stats)| PeerFigures {
                download: stats.clone(),
                ..PeerFigures::of(*id)
            })
            .collect();
        TransferStats {
            chunks_resumed: self.resumed_chunks,
            chunks_fetched: self.fetched_chunks,
            chunks_refetched: self.refetched,
            bytes_wasted: all
                .iter()
                .map(|(_, stats)| stats)
                .chain(
                    self.downloader
                        .mirror_stats()
                        .iter()
                        .map(|(_, stats)| stats),
                )
                .map(|stats| stats.wasted_bytes)
                .sum(),
            peers,
            // The node names them (`NodeCore::transfer`).
            mirrors: Vec::new(),
            completed_at: self.completed_at,
        }
    }

    fn rate(&mut self, now: Instant) -> f64 {
        self.rate_window.push_back((now, self.verified_bytes));
        while self
            .rate_window
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at).as_secs_f64() > 5.0)
        {
            self.rate_window.pop_front();
        }
        match (self.rate_window.front(), self.rate_window.back()) {
            (Some((t0, b0)), Some((t1, b1))) if t1 > t0 => {
                b1.saturating_sub(*b0) as f64 / t1.saturating_duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// The length of the verified prefix, scanning on from `from`.
fn prefix_of(have: &HaveBitfield, from: u32) -> u32 {
    let mut prefix = from;
    while prefix < have.chunk_count() && have.get(ChunkIndex(prefix)) {
        prefix += 1;
    }
    prefix
}

impl NodeCore {
    /// A serving peer joined: it becomes part of the download.
    pub(super) fn join_download(
        &mut self,
        link: LinkId,
        id: PeerId,
        bitfield: HaveBitfield,
        now: Instant,
    ) {
        let Some(download) = &mut self.download else {
            return;
        };
        if download.phase == Phase::Delivered {
            return;
        }
        match download.downloader.add_peer(link, id, bitfield, now) {
            Ok(()) => {
                if let Some(peer) = self.peer_mut(link) {
                    peer.downloading_from = true;
                }
            }
            Err(error) => {
                self.close_peer(
                    link,
                    GoodbyeReason::ProtocolViolation,
                    Departure::Violation(Violation::Join(error)),
                    now,
                );
            }
        }
        self.drain_download(now);
    }

    /// A peer left the download.
    pub(super) fn leave_download(&mut self, link: LinkId, now: Instant) {
        let Some(download) = &mut self.download else {
            return;
        };
        download.downloader.remove_peer(link, now);
        self.drain_download(now);
    }

    pub(super) fn download_have(&mut self, link: LinkId, chunk: ChunkIndex, now: Instant) {
        if let Some(download) = &mut self.download {
            download.downloader.on_have(link, chunk.0, now);
        }
        self.drain_download(now);
    }

    pub(super) fn download_rejected(
        &mut self,
        link: LinkId,
        chunk: ChunkIndex,
        busy: bool,
        now: Instant,
    ) {
        if let Some(peer) = self.peer_mut(link) {
            peer.arriving.remove(&chunk.0);
        }
        if let Some(download) = &mut self.download {
            download.downloader.on_reject(link, chunk.0, busy, now);
        }
        self.drain_download(now);
    }

    /// A piece stream's header names `chunk`, from byte `from` on (0: the
    /// whole chunk; more: a PieceFrom): read it, or stop it. A chunk
    /// never requested from this peer is a violation (the peer is
    /// dropped), and so is a PieceFrom for a chunk never asked for from an
    /// offset; one requested but no longer wanted, or already arriving on
    /// another stream, or from another offset than last asked (a request
    /// that crossed the one after it), is stopped without blame. `quiet`:
    /// how long the link carried no piece bytes before this header (zero
    /// when the driver cannot tell), which the pipeline learns from.
    pub fn handle_piece_header(
        &mut self,
        link: LinkId,
        chunk: ChunkIndex,
        from: u32,
        quiet: Duration,
        now: Instant,
    ) -> PieceVerdict {
        let (asked, ever) = self.peer(link).map_or((None, false), |peer| {
            let asked = peer.asked_from.get(&chunk.0).copied();
            (asked, peer.ever_asked_from.contains(&chunk.0))
        });
        // A PieceFrom of a chunk never asked for from an offset; one that
        // crossed a later request (a Cancel, then the chunk asked for
        // whole) is stopped below without blame.
        if from > 0 && !ever {
            return self.drop_unrequested(link, chunk, now);
        }
        if from != asked.unwrap_or(0) {
            return PieceVerdict::Stop;
        }
        let requested = self
            .download
            .as_ref()
            .and_then(|download| download.downloader.peer(link))
            .is_some_and(|session| session.is_requested(chunk.0));
        let Some(peer) = self.peer_mut(link) else {
            return PieceVerdict::Stop;
        };
        if !requested {
            if peer.ever_requested.get(chunk) {
                return PieceVerdict::Stop;
            }
            return self.drop_unrequested(link, chunk, now);
        }
        if !peer.arriving.insert(chunk.0) {
            // A second stream for the same chunk: one is enough.
            return PieceVerdict::Stop;
        }
        peer.last_useful = now;
        if let Some(download) = &mut self.download {
            download
                .downloader
                .on_piece_header(link, chunk.0, quiet, now);
        }
        self.drain_download(now);
        PieceVerdict::Accept
    }

    /// Drops the peer on `link`, which sent a piece of `chunk` it was not
    /// asked for (`Violation::Unrequested`); the stream is stopped.
    fn drop_unrequested(&mut self, link: LinkId, chunk: ChunkIndex, now: Instant) -> PieceVerdict {
        self.close_peer(
            link,
            GoodbyeReason::ProtocolViolation,
            Departure::Violation(Violation::Unrequested { chunk: chunk.0 }),
            now,
        );
        PieceVerdict::Stop
    }

    /// A piece stream delivered all its bytes (not verified yet): verify
    /// and store them, unless the chunk is no longer wanted from this peer.
    pub fn handle_piece_arrived(
        &mut self,
        link: LinkId,
        chunk: ChunkIndex,
        now: Instant,
    ) -> PieceVerdict {
        let wanted = self
            .download
            .as_ref()
            .and_then(|download| download.downloader.peer(link))
            .is_some_and(|session| session.is_requested(chunk.0));
        if let Some(download) = &mut self.download {
            match wanted {
                true => {
                    download.verifying += 1;
                    download.downloader.on_piece_arrived(link, chunk.0, now);
                }
                false => download.downloader.on_progress(link, now),
            }
        }
        if wanted {
            PieceVerdict::Accept
        } else {
            if let Some(peer) = self.peer_mut(link) {
                peer.arriving.remove(&chunk.0);
            }
            PieceVerdict::Stop
        }
    }

    /// A piece stream ended before its chunk arrived whole (`chunk` when
    /// its header was read).
    pub fn handle_piece_failed(
        &mut self,
        link: LinkId,
        chunk: Option<ChunkIndex>,
        end: PieceEnd,
        now: Instant,
    ) {
        if let (Some(chunk), Some(peer)) = (chunk, self.peer_mut(link)) {
            peer.arriving.remove(&chunk.0);
        }
        match end {
            PieceEnd::Violation(violation) => self.close_peer(
                link,
                GoodbyeReason::ProtocolViolation,
                Departure::Violation(violation),
                now,
            ),
            PieceEnd::Reset => {
                if let (Some(chunk), Some(download)) = (chunk, &mut self.download) {
                    download.downloader.on_chunk_lost(link, chunk.0, now);
                }
                self.drain_download(now);
            }
        }
    }

    /// Verifying and storing a chunk from `link` ended.
    pub fn handle_verified(
        &mut self,
        link: LinkId,
        chunk: ChunkIndex,
        outcome: VerifyOutcome,
        now: Instant,
    ) {
        self.handle_verified_from(link, chunk, 0, outcome, now);
    }

    /// [`Self::handle_verified`] for a piece whose stream carried the
    /// chunk from byte `from` on (a PieceFrom): the start held here was
    /// joined to it, and only the rest is the peer's.
    pub fn handle_verified_from(
        &mut self,
        link: LinkId,
        chunk: ChunkIndex,
        from: u32,
        outcome: VerifyOutcome,
        now: Instant,
    ) {
        if let Some(peer) = self.peer_mut(link) {
            peer.arriving.remove(&chunk.0);
            peer.asked_from.remove(&chunk.0);
        }
        if self.ended {
            // Stored after the last checkpoint: the journal holds it.
            return;
        }
        if let Some(download) = &mut self.download {
            download.verifying = download.verifying.saturating_sub(1);
        }
        self.verified_outcome(link, chunk, from, outcome, now);
        self.after_verification(now);
    }

    /// A verification ended: the last checkpoint, if it waited for it.
    pub(super) fn after_verification(&mut self, now: Instant) {
        if self.ending.is_some()
            && self
                .download
                .as_ref()
                .is_some_and(|download| download.verifying == 0 && download.awaits_verification())
        {
            self.last_checkpoint(now);
        }
    }

    fn verified_outcome(
        &mut self,
        link: LinkId,
        chunk: ChunkIndex,
        from: u32,
        outcome: VerifyOutcome,
        now: Instant,
    ) {
        match outcome {
            VerifyOutcome::Stored => self.chunk_stored(link, chunk, from, now),
            VerifyOutcome::Bad(_) if from > 0 => {
                // The start held here and the rest from the peer did not
                // make the chunk: the start is what may be wrong (an older
                // version whose part changed, not grew), so nobody is
                // blamed, and the chunk is asked for whole from now on.
                if let Some(download) = &mut self.download {
                    download.prefixes.remove(&chunk.0);
                    download.downloader.on_chunk_lost(link, chunk.0, now);
                }
                self.drain_download(now);
            }
            VerifyOutcome::Bad(error) => {
                if let Some((id, addr)) = self.peer(link).map(|peer| (peer.id, peer.remote)) {
                    self.reports.push_back(NodeReport::Banned {
                        peer: id,
                        addr,
                        chunk: chunk.0,
                        error,
                    });
                    self.ban(id);
                }
                if let Some(download) = &mut self.download {
                    download.downloader.on_chunk_bad(link, chunk.0, now);
                }
                self.close_peer(
                    link,
                    GoodbyeReason::BadData,
                    Departure::BadData { chunk: chunk.0 },
                    now,
                );
                self.drain_download(now);
            }
            VerifyOutcome::StoreFailed(error) => {
                if let Some(download) = &mut self.download {
                    download.downloader.on_chunk_lost(link, chunk.0, now);
                }
                self.end(End::Failed(Failure::Storage(error)), now);
            }
        }
    }

    /// `chunk` from `link` is verified and written; `held`: the bytes of
    /// its start held here (0 for a whole piece), which the peer did not
    /// send.
    pub(super) fn chunk_stored(
        &mut self,
        link: LinkId,
        chunk: ChunkIndex,
        held: u32,
        now: Instant,
    ) {
        let held = u64::from(held);
        let Some(download) = &mut self.download else {
            return;
        };
        let len = download.params.chunk_len(chunk).map_or(0, u64::from);
        let first = !self.have.get(chunk);
        if first {
            let _ = self.have.set(chunk, true);
            download.verified_bytes += len;
            download.fetched_chunks += 1;
            download.bytes_since_checkpoint += len;
            download.last_progress = now;
            download.prefix = prefix_of(&self.have, download.prefix);
            self.actions.push_back(Action::HashStored { chunk });
            if self.serve {
                let links: Vec<LinkId> = self.peers().map(|(link, _)| link).collect();
                for link in links {
                    self.send(link, Message::Have { chunk }, now);
                }
            }
        }
        // Hold (or release) new requests for the trailing hasher before the
        // downloader refills the slot this chunk frees.
        self.pace(now);
        if let Some(download) = &mut self.download {
            download
                .downloader
                .on_chunk_verified(link, chunk.0, len.saturating_sub(held), now);
        }
        self.drain_download(now);
        self.maybe_checkpoint(now);
        self.check_complete(now);
    }

    /// Every chunk verified: the final checks start, once a checkpoint
    /// still running has ended (the two must not change the download's
    /// files at once: the delivery removes the state and the journal a
    /// checkpoint writes).
    pub(super) fn check_complete(&mut self, now: Instant) {
        if self.ended || self.ending.is_some() {
            return;
        }
        let Some(download) = &mut self.download else {
            return;
        };
        if download.phase == Phase::Fetching && download.downloader.is_complete() {
            download.completed_at = Some(now);
            download.phase = if download.checkpoint_running {
                Phase::Syncing
            } else {
                self.actions.push_back(Action::Deliver);
                Phase::Delivering
            };
        }
    }

    /// Every chunk is verified and the delivery waits for, or runs, its
    /// final checks: a stop now waits for them rather than interrupt a
    /// finished download.
    pub fn is_finishing(&self) -> bool {
        !self.ended
            && self.download.as_ref().is_some_and(|download| {
                matches!(download.phase, Phase::Syncing | Phase::Delivering)
            })
    }

    /// The trailing hasher has hashed chunks `0..hashed`.
    pub fn handle_trailing(&mut self, hashed: u32, now: Instant) {
        if let Some(download) = &mut self.download {
            download.hashed = hashed;
        }
        self.pace(now);
        self.drain_download(now);
    }

    /// Holds new requests while the trailing hasher lags the verified
    /// prefix by more than `trailing_lag` (it caught up with the chunks of
    /// an earlier run first).
    fn pace(&mut self, now: Instant) {
        let lag_limit = self.config.trailing_lag;
        let Some(download) = &mut self.download else {
            return;
        };
        let lag = (download.params.prefix_bytes(download.prefix))
            .saturating_sub(download.params.prefix_bytes(download.hashed));
        let hold = download.hashed >= download.start_prefix && lag > lag_limit;
        download.downloader.set_hold(hold, now);
    }

    /// A checkpoint finished; a failed one stops the download (progress
    /// that cannot be saved would be lost at the next crash).
    pub fn handle_checkpointed(&mut self, result: Result<(), Fault>, now: Instant) {
        if self.ended {
            return;
        }
        let Some(download) = &mut self.download else {
            return;
        };
        download.checkpoint_running = false;
        if self.ending.is_some() {
            // The last checkpoint before the end (or one that was running
            // when the end came, after which the last one starts).
            if download.last_checkpoint_done || result.is_err() {
                self.try_finish_end();
            } else {
                self.last_checkpoint(now);
            }
            return;
        }
        if let Err(error) = result {
            self.end(End::Failed(Failure::Storage(error)), now);
            return;
        }
        if download.phase == Phase::Syncing {
            // The delivery that waited for this checkpoint starts now.
            download.phase = Phase::Delivering;
            self.actions.push_back(Action::Deliver);
        } else {
            // Bytes that arrived while it ran may fill the next one.
            self.maybe_checkpoint(now);
        }
    }

    /// The download's last checkpoint before the end: started now, or
    /// once the one that is running has ended and the chunks being
    /// verified are stored (or `verify_wait_at_end` went by: a chunk
    /// stored later is in the journal, which the next run replays).
    pub(super) fn last_checkpoint(&mut self, now: Instant) {
        let wait = self.config.verify_wait_at_end;
        let Some(download) = &mut self.download else {
            self.try_finish_end();
            return;
        };
        if download.checkpoint_running || download.last_checkpoint_done {
            return;
        }
        if download.verifying > 0 {
            let until = *download.verify_wait_until.get_or_insert(now + wait);
            if now < until {
                return;
            }
        }
        download.checkpoint_running = true;
        download.last_checkpoint_done = true;
        download.bytes_since_checkpoint = 0;
        self.actions.push_back(Action::Checkpoint {
            release_from: download.released_below,
            release_below: download.released_below,
        });
    }

    /// The final checks ended.
    pub fn handle_finished(&mut self, finish: Finish, now: Instant) {
        let Some(download) = &mut self.download else {
            return;
        };
        match finish {
            Finish::Delivered { path, receipt } => {
                download.phase = Phase::Delivered;
                let seeding = self.serve && self.seed_after && !self.stopping;
                self.reports.push_back(NodeReport::Delivered {
                    path,
                    receipt,
                    seeding,
                });
                if seeding {
                    // Verified as a whole: serve every chunk from now on,
                    // to peers that lack some.
                    self.close_seed_links(now);
                    return;
                }
                self.end(End::Done, now);
            }
            Finish::Failed(fault) => self.end(End::Failed(Failure::Verification(fault)), now),
            Finish::StorageFailed(fault) => self.end(End::Failed(Failure::Storage(fault)), now),
            Finish::Damaged(bad) => {
                let max = self.config.max_repairs_per_chunk;
                for chunk in &bad {
                    *download.repairs.entry(chunk.0).or_default() += 1;
                }
                if let Some((&chunk, &times)) =
                    download.repairs.iter().find(|(_, times)| **times > max)
                {
                    let failure = Failure::Damaged {
                        bad: bad.len() as u32,
                        cause: DamageCause::Repeated { chunk, times },
                    };
                    self.end(End::Failed(failure), now);
                    return;
                }
                for chunk in &bad {
                    download.downloader.chunk_found_bad(chunk.0, now);
                    if matches!(self.have.set(*chunk, false), Ok(true)) {
                        let len = download.params.chunk_len(*chunk).map_or(0, u64::from);
                        download.verified_bytes = download.verified_bytes.saturating_sub(len);
                    }
                    download.refetched += 1;
                }
                download.prefix = prefix_of(&self.have, 0);
                download.start_prefix = download.prefix;
                download.hashed = 0;
                // The hasher reads the file again from its start.
                download.released_below = 0;
                download.phase = Phase::Fetching;
                download.completed_at = None;
                download.last_progress = now;
                if self.stopping {
                    // Found bad while stopping: the good chunks are saved
                    // and the next run fetches the bad ones.
                    self.end(End::Stopped, now);
                    return;
                }
                self.actions.push_back(Action::RestartHash);
                self.drain_download(now);
                self.dial_due(now);
            }
        }
    }

    /// Starts a checkpoint when one is due: `checkpoint_bytes` verified
    /// since the last, or `checkpoint_every` gone by with some. Checked as
    /// each chunk is stored, when a checkpoint ends, and on the clock, so
    /// the unsynced bytes stay near `checkpoint_bytes` plus what arrives
    /// while one checkpoint runs. None starts once every chunk is
    /// verified: the final sync covers the rest.
    fn maybe_checkpoint(&mut self, now: Instant) {
        let config = &self.config;
        let Some(download) = &mut self.download else {
            return;
        };
        if download.phase != Phase::Fetching
            || download.checkpoint_running
            || download.downloader.is_complete()
            || self.ending.is_some()
        {
            return;
        }
        let due = download.bytes_since_checkpoint >= config.checkpoint_bytes
            || (download.bytes_since_checkpoint > 0
                && now.saturating_duration_since(download.last_checkpoint)
                    >= config.checkpoint_every);
        if !due {
            return;
        }
        download.checkpoint_running = true;
        download.bytes_since_checkpoint = 0;
        download.last_checkpoint = now;
        let hashed_bytes = download.params.prefix_bytes(download.hashed);
        let release_from = download.released_below;
        download.released_below = download.released_below.max(hashed_bytes);
        self.actions.push_back(Action::Checkpoint {
            release_from,
            release_below: download.released_below,
        });
    }

    /// Whether nothing can deliver any more, so that waiting
    /// `give_up_after` would change nothing: the person named mirrors and
    /// no peer, every mirror has left the download, no peer is linked or
    /// known to dial, and none can come (no DHT lookups, no neighbours
    /// heard on the local network, no listening for peers that dial us).
    /// A fetch given only a mirror that is down, a typo in its URL, or one
    /// that lied, ends at once with what each mirror did, instead of
    /// minutes later with the same words.
    pub(super) fn nothing_can_deliver(&self) -> bool {
        !self.mirrors.is_empty()
            && self.mirrors.iter().all(|mirror| mirror.end.is_some())
            && self.links.values().next().is_none()
            && self.tried().is_empty()
            && !self.discovery
            && !self.neighbours
            && self.listen.is_none()
    }

    /// Timeouts, checkpoints, reports and giving up.
    pub(super) fn download_tick(&mut self, now: Instant) {
        let Some(download) = &mut self.download else {
            return;
        };
        if download.phase != Phase::Fetching {
            return;
        }
        download.downloader.tick(now);
        self.maybe_checkpoint(now);
        let config = &self.config;
        let Some(download) = &mut self.download else {
            return;
        };
        if now.saturating_duration_since(download.last_report) >= config.progress_every {
            download.last_report = now;
            let rate = download.rate(now);
            let report = NodeReport::Progress {
                verified_bytes: download.verified_bytes,
                total_bytes: download.params.artifact_bytes(),
                verified_chunks: self.have.count_ones(),
                total_chunks: download.params.chunk_count(),
                peers: download.downloader.peer_count(),
                rate,
                waiting_for_peers: download.downloader.peer_count() == 0
                    && download.downloader.mirror_stats().is_empty(),
            };
            self.reports.push_back(report);
        }
        let quiet = now.saturating_duration_since(download.last_progress);
        let given_up = quiet >= config.give_up_after;
        if given_up || self.nothing_can_deliver() {
            let Some(download) = &self.download else {
                return;
            };
            let total = download.params.chunk_count();
            let missing = total - self.have.count_ones();
            let repairing = !download.repairs.is_empty();
            let tried = self.tried();
            let failure = if repairing {
                Failure::Damaged {
                    bad: missing,
                    cause: DamageCause::NotDelivered { tried },
                }
            } else {
                Failure::NoPeers {
                    missing,
                    total,
                    tried,
                    mirrors: self.mirror_figures(),
                }
            };
            self.end(End::Failed(failure), now);
            return;
        }
        self.drain_download(now);
    }

    /// Turns the downloader's decisions into messages and closes.
    /// Asks the transport to let `link` send all we asked of it
    /// ([`Action::ReceiveWindow`]): the chunks in flight from it, and one
    /// more for the piece headers and the next request, when that is more
    /// than asked before.
    fn cover_requests(&mut self, link: LinkId) {
        let chunk_size = u64::from(self.params.chunk_size());
        let Some(in_flight) = self
            .download
            .as_ref()
            .and_then(|download| download.downloader.peer(link))
            .map(|session| session.requests_in_flight() as u64)
        else {
            return;
        };
        let wanted = (in_flight + 1).saturating_mul(chunk_size);
        let Some(peer) = self.peer_mut(link) else {
            return;
        };
        if wanted <= peer.receive_window {
            return;
        }
        // In steps of a quarter more, so that a growing pipeline does not
        // ask at every request.
        let bytes = wanted.max(peer.receive_window.saturating_add(peer.receive_window / 4));
        peer.receive_window = bytes;
        self.actions
            .push_back(Action::ReceiveWindow { link, bytes });
    }

    pub(super) fn drain_download(&mut self, now: Instant) {
        let mut decided = Vec::new();
        if let Some(download) = &mut self.download {
            while let Some(action) = download.downloader.poll_action() {
                decided.push(action);
            }
        }
        for action in decided {
            match action {
                DownloadAction::Request { peer, chunk } => {
                    if self.mirror_request(peer, chunk) {
                        continue;
                    }
                    // The start held here, if any, is not asked for again
                    // of a peer that speaks v3.
                    let held = (self.download.as_ref())
                        .and_then(|download| download.prefixes.get(&chunk).copied())
                        .unwrap_or(0);
                    let mut from = 0;
                    if let Some(p) = self.peer_mut(peer) {
                        let _ = p.ever_requested.set(ChunkIndex(chunk), true);
                        if held > 0 && p.control.version() >= minimodel_wire::FROM_VERSION {
                            from = held;
                            p.asked_from.insert(chunk, from);
                            p.ever_asked_from.insert(chunk);
                        } else {
                            p.asked_from.remove(&chunk);
                        }
                    }
                    self.cover_requests(peer);
                    let chunk = ChunkIndex(chunk);
                    let message = if from > 0 {
                        Message::RequestFrom { chunk, from }
                    } else {
                        Message::Request { chunk }
                    };
                    self.send(peer, message, now);
                }
                DownloadAction::Cancel { peer, chunk } => {
                    if self.mirror_cancel(peer, chunk) {
                        continue;
                    }
                    if let Some(p) = self.peer_mut(peer) {
                        p.arriving.remove(&chunk);
                    }
                    self.send(
                        peer,
                        Message::Cancel {
                            chunk: ChunkIndex(chunk),
                        },
                        now,
                    );
                }
                DownloadAction::Disconnect { peer, reason } => {
                    if self.mirror_gave_up(peer, now) {
                        continue;
                    }
                    let (goodbye, departure) = match reason {
                        DisconnectReason::Silent => (GoodbyeReason::Idle, Departure::Silent),
                        DisconnectReason::TooManyTimeouts => {
                            (GoodbyeReason::Idle, Departure::TooManyTimeouts)
                        }
                        // Banned and closed by `handle_verified` already.
                        DisconnectReason::BadData => continue,
                        // Every peer stays until the download ends: the
                        // final checks may find a chunk bad on disk.
                        DisconnectReason::Done => continue,
                    };
                    self.close_peer(peer, goodbye, departure, now);
                }
            }
        }
    }
}
