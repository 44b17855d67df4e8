//! The node's mirrors: what the driver reports about each (usable, a
//! range begun, arrived, checked, failed) and what the node decides
//! (`crate::mirror` for the rules, `crate::download`'s mirror module for
//! when a mirror is asked).
//!
//! A mirror is numbered by the driver ([`MirrorId`]: its place in the
//! list the person gave) and takes part in the download under a
//! [`LinkId`] of its own, as a peer does, from [`NodeCore::handle_mirror_up`]
//! until it leaves ([`MirrorEnd`]). Its validators are those its first
//! response carried; a later response with others, or an earlier run
//! that saw others ([`NodeCore::remember_mirrors_from`]), means another
//! file ([`crate::mirror::compare_validators`]).

use std::time::Instant;

use minimodel_wire::ChunkIndex;

use super::{Action, NodeCore, PieceVerdict, VerifyOutcome};
use crate::download::MirrorVerdict;
use crate::ids::LinkId;
use crate::mirror::{
    MirrorChunkOutcome, MirrorEnd, MirrorFailure, MirrorFault, MirrorFigures, MirrorId,
    MirrorTrouble, MirrorUnusable, Validators, compare_validators,
};
use crate::report::NodeReport;

/// What a download remembers of a mirror between runs: the validators
/// it saw, by the mirror's label.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RememberedMirror {
    /// The mirror as the person wrote it, without its query.
    pub label: String,
    /// What its responses carried.
    pub validators: Validators,
}

/// At most this many mirrors per download (the driver's list; ids are
/// `u16`).
pub const MAX_MIRRORS: usize = 16;

/// One mirror as the node holds it.
#[derive(Debug, Clone)]
pub(super) struct Mirror {
    /// `https://host/path`, for people and the receipt.
    pub(super) label: String,
    /// Its key in the download while it takes part.
    pub(super) link: Option<LinkId>,
    /// What its first response carried.
    pub(super) validators: Option<Validators>,
    /// Why it left, once it did.
    pub(super) end: Option<MirrorEnd>,
}

impl NodeCore {
    /// The mirror ids and labels the node was started with.
    pub(super) fn mirrors_from(labels: &[String]) -> Vec<Mirror> {
        labels
            .iter()
            .take(MAX_MIRRORS)
            .map(|label| Mirror {
                label: label.clone(),
                link: None,
                validators: None,
                end: None,
            })
            .collect()
    }

    /// The mirror a download key belongs to.
    pub(super) fn mirror_of(&self, link: LinkId) -> Option<MirrorId> {
        self.mirrors
            .iter()
            .position(|mirror| mirror.link == Some(link))
            .map(|index| MirrorId(index as u16))
    }

    fn mirror_link(&self, mirror: MirrorId) -> Option<LinkId> {
        self.mirrors.get(usize::from(mirror.0))?.link
    }

    /// What earlier runs of this download saw of its mirrors (read at the
    /// start); [`Self::mirrors_to_remember`] merges this run's with it.
    pub fn remember_mirrors_from(&mut self, before: Vec<RememberedMirror>) {
        self.remembered_mirrors = Some(before);
    }

    /// The list to write at a checkpoint: earlier runs' entries, with this
    /// run's validators in place of theirs for the same mirror; `None`
    /// when the node remembers none.
    pub fn mirrors_to_remember(&self) -> Option<Vec<RememberedMirror>> {
        let mut list = self.remembered_mirrors.clone()?;
        for mirror in &self.mirrors {
            let Some(validators) = mirror.validators.clone() else {
                continue;
            };
            // A mirror found to serve another file is not vouched for.
            if matches!(mirror.end, Some(MirrorEnd::Dropped { .. })) {
                continue;
            }
            list.retain(|entry| entry.label != mirror.label);
            list.push(RememberedMirror {
                label: mirror.label.clone(),
                validators,
            });
        }
        list.sort_by(|a, b| a.label.cmp(&b.label));
        list.truncate(MAX_MIRRORS * 4);
        Some(list)
    }

    /// The driver found the mirror usable (the chunk list beside it leads
    /// to the root, its length is the artifact's) and its response carried
    /// `validators`: it joins the download, unless an earlier run saw
    /// another file there.
    pub fn handle_mirror_up(&mut self, mirror: MirrorId, validators: Validators, now: Instant) {
        let index = usize::from(mirror.0);
        let Some(slot) = self.mirrors.get(index) else {
            return;
        };
        if slot.link.is_some() || slot.end.is_some() {
            return;
        }
        let label = slot.label.clone();
        let before = self
            .remembered_mirrors
            .as_ref()
            .and_then(|list| list.iter().find(|entry| entry.label == label))
            .map(|entry| entry.validators.clone());
        if let Some(before) = before
            && let Err(fault) = compare_validators(&before, &validators)
        {
            self.end_mirror(mirror, MirrorEnd::Dropped { fault }, now);
            return;
        }
        let fetching = self
            .download
            .as_ref()
            .is_some_and(|download| download.wants_peers());
        if !fetching {
            return;
        }
        let link = self.new_link();
        let slot = &mut self.mirrors[index];
        slot.link = Some(link);
        slot.validators = Some(validators);
        self.reports
            .push_back(NodeReport::MirrorUp { mirror, label });
        if let Some(download) = &mut self.download {
            download.downloader.add_mirror(link, mirror.0, now);
        }
        self.drain_download(now);
    }

    /// The response to a range begun, carrying `validators`: read it, or
    /// stop it (not wanted any more). Validators other than the first
    /// response's mean the file changed under us: the mirror is dropped.
    pub fn handle_mirror_started(
        &mut self,
        mirror: MirrorId,
        chunk: ChunkIndex,
        validators: &Validators,
        now: Instant,
    ) -> PieceVerdict {
        let Some(link) = self.mirror_link(mirror) else {
            return PieceVerdict::Stop;
        };
        let first = self.mirrors[usize::from(mirror.0)].validators.clone();
        if let Some(first) = first
            && let Err(fault) = compare_validators(&first, validators)
        {
            self.end_mirror(mirror, MirrorEnd::Dropped { fault }, now);
            return PieceVerdict::Stop;
        }
        let requested = self
            .download
            .as_ref()
            .and_then(|download| download.downloader.mirror_session(link))
            .is_some_and(|session| session.is_requested(chunk.0));
        if !requested {
            return PieceVerdict::Stop;
        }
        if let Some(download) = &mut self.download {
            download.downloader.on_piece_started(link, chunk.0, now);
        }
        self.drain_download(now);
        PieceVerdict::Accept
    }

    /// Bytes of a range arrived: the mirror is making progress.
    pub fn handle_mirror_progress(&mut self, mirror: MirrorId, now: Instant) {
        if let (Some(link), Some(download)) = (self.mirror_link(mirror), &mut self.download) {
            download.downloader.on_progress(link, now);
        }
    }

    /// A range arrived whole (not checked yet): check and store it, unless
    /// the chunk is no longer wanted from this mirror.
    pub fn handle_mirror_arrived(
        &mut self,
        mirror: MirrorId,
        chunk: ChunkIndex,
        now: Instant,
    ) -> PieceVerdict {
        let Some(link) = self.mirror_link(mirror) else {
            return PieceVerdict::Stop;
        };
        let Some(download) = &mut self.download else {
            return PieceVerdict::Stop;
        };
        let wanted = download
            .downloader
            .mirror_session(link)
            .is_some_and(|session| session.is_requested(chunk.0));
        download.downloader.on_progress(link, now);
        if !wanted {
            return PieceVerdict::Stop;
        }
        download.verifying += 1;
        PieceVerdict::Accept
    }

    /// Checking and storing a mirror's chunk ended (after
    /// [`Self::handle_mirror_arrived`] said Accept).
    pub fn handle_mirror_verified(
        &mut self,
        mirror: MirrorId,
        chunk: ChunkIndex,
        outcome: MirrorChunkOutcome,
        now: Instant,
    ) {
        let link = self.mirror_link(mirror);
        match outcome {
            MirrorChunkOutcome::Stored => match link {
                Some(link) => self.handle_verified(link, chunk, VerifyOutcome::Stored, now),
                None => self.verified_elsewhere(chunk, now),
            },
            MirrorChunkOutcome::StoreFailed(fault) => match link {
                Some(link) => {
                    self.handle_verified(link, chunk, VerifyOutcome::StoreFailed(fault), now);
                }
                None => self.verified_elsewhere(chunk, now),
            },
            MirrorChunkOutcome::Bad { expected, got } => {
                if let Some(download) = &mut self.download {
                    download.verifying = download.verifying.saturating_sub(1);
                }
                if self.ended {
                    return;
                }
                let fault = MirrorFault::BadChunk {
                    chunk: chunk.0,
                    expected,
                    got,
                };
                if let (Some(link), Some(download)) = (link, &mut self.download) {
                    download.downloader.on_chunk_bad(link, chunk.0, now);
                }
                self.end_mirror(mirror, MirrorEnd::Dropped { fault }, now);
                self.after_verification(now);
            }
        }
    }

    /// A chunk of a mirror that left meanwhile was checked: it counts all
    /// the same when it passed (a stored chunk is a stored chunk).
    fn verified_elsewhere(&mut self, chunk: ChunkIndex, now: Instant) {
        if let Some(download) = &mut self.download {
            download.verifying = download.verifying.saturating_sub(1);
        }
        if self.ended {
            return;
        }
        let stored = !self.have.get(chunk);
        if stored {
            // Stored, though its mirror left: the download counts it as
            // it would a late copy (no source to credit).
            self.chunk_stored(LinkId(0), chunk, 0, now);
        }
        self.after_verification(now);
    }

    /// A request to a mirror failed (or the mirror as a whole did, with
    /// `chunk` `None`): a lie drops it, trouble backs it off (and after a
    /// run of failures gives it up), unusable drops it without blame.
    pub fn handle_mirror_failed(
        &mut self,
        mirror: MirrorId,
        chunk: Option<ChunkIndex>,
        failure: MirrorFailure,
        now: Instant,
    ) {
        if self.ended {
            return;
        }
        match failure {
            MirrorFailure::Fault(fault) => {
                self.end_mirror(mirror, MirrorEnd::Dropped { fault }, now);
            }
            MirrorFailure::Unusable(reason) => {
                self.end_mirror(mirror, MirrorEnd::Unusable { reason }, now);
            }
            MirrorFailure::Trouble(trouble) => {
                let Some(link) = self.mirror_link(mirror) else {
                    // Before it joined (its chunk list, say): the driver
                    // tries again on its own schedule; reported once.
                    let label = self.mirrors[usize::from(mirror.0)].label.clone();
                    self.reports.push_back(NodeReport::MirrorTrouble {
                        mirror,
                        label,
                        trouble,
                        retry_in_ms: None,
                    });
                    return;
                };
                let verdict = self.download.as_mut().and_then(|download| {
                    download
                        .downloader
                        .mirror_failed(link, chunk.map(|c| c.0), &trouble, now)
                });
                let label = self.mirrors[usize::from(mirror.0)].label.clone();
                match verdict {
                    Some(MirrorVerdict::Retry(wait)) => {
                        self.reports.push_back(NodeReport::MirrorTrouble {
                            mirror,
                            label,
                            trouble,
                            retry_in_ms: Some(wait.as_millis() as u64),
                        });
                    }
                    Some(MirrorVerdict::GiveUp { failures }) => {
                        let reason = MirrorUnusable::GaveUp {
                            failures,
                            last: trouble,
                        };
                        self.end_mirror(mirror, MirrorEnd::Unusable { reason }, now);
                    }
                    None => {}
                }
                self.drain_download(now);
            }
        }
    }

    /// The mirror leaves the download (if it took part) with `end`: its
    /// requests are cancelled, the driver stops using it, people are told.
    pub(super) fn end_mirror(&mut self, mirror: MirrorId, end: MirrorEnd, now: Instant) {
        let index = usize::from(mirror.0);
        let Some(slot) = self.mirrors.get_mut(index) else {
            return;
        };
        if slot.end.is_some() {
            return;
        }
        slot.end = Some(end.clone());
        let label = slot.label.clone();
        if let (Some(link), Some(download)) = (slot.link, &mut self.download)
            && download.downloader.is_mirror(link)
        {
            download.downloader.remove_mirror(link, now);
        }
        self.actions.push_back(Action::MirrorClose { mirror });
        self.reports
            .push_back(NodeReport::MirrorEnded { mirror, label, end });
        self.drain_download(now);
    }

    /// A download key's request went out: to a mirror, as a range.
    pub(super) fn mirror_request(&mut self, link: LinkId, chunk: u32) -> bool {
        let Some(mirror) = self.mirror_of(link) else {
            return false;
        };
        let params = &self.params;
        if let (Ok(len), Ok(start)) = (
            params.chunk_len(ChunkIndex(chunk)),
            params.chunk_offset(ChunkIndex(chunk)),
        ) {
            self.actions.push_back(Action::MirrorFetch {
                mirror,
                chunk: ChunkIndex(chunk),
                range: start..start + u64::from(len),
            });
        }
        true
    }

    /// A download key's request was cancelled: at a mirror, its range.
    pub(super) fn mirror_cancel(&mut self, link: LinkId, chunk: u32) -> bool {
        let Some(mirror) = self.mirror_of(link) else {
            return false;
        };
        self.actions.push_back(Action::MirrorCancel {
            mirror,
            chunk: ChunkIndex(chunk),
        });
        true
    }

    /// The download gave a mirror up (silent after its back-offs).
    pub(super) fn mirror_gave_up(&mut self, link: LinkId, now: Instant) -> bool {
        let Some(mirror) = self.mirror_of(link) else {
            return false;
        };
        let failures = self.config.download.mirrors.max_failures;
        let reason = MirrorUnusable::GaveUp {
            failures,
            last: MirrorTrouble::Timeout,
        };
        self.end_mirror(mirror, MirrorEnd::Unusable { reason }, now);
        true
    }

    /// What every mirror did for the download: the receipt's sources.
    pub(super) fn mirror_figures(&self) -> Vec<MirrorFigures> {
        let stats = self
            .download
            .as_ref()
            .map(|download| download.downloader.mirror_stats())
            .unwrap_or_default();
        self.mirrors
            .iter()
            .enumerate()
            .filter(|(_, mirror)| mirror.link.is_some() || mirror.end.is_some())
            .map(|(index, mirror)| MirrorFigures {
                mirror: MirrorId(index as u16),
                label: mirror.label.clone(),
                download: mirror
                    .link
                    .and_then(|link| stats.iter().find(|(key, _)| *key == link))
                    .map(|(_, stats)| stats.clone())
                    .unwrap_or_default(),
                end: mirror.end.clone(),
            })
            .collect()
    }
}
