//! What the API shows: each item's record, its status as the supervisor
//! holds it, and the figures of its last run, put together.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use minimodel_swarm::offer::PeerOffer;
use minimodel_swarm::peers::PeerAddrs;
use minimodel_swarm::relay::RelayAddr;
use minimodel_verifier::signing::trust::SignatureCheck;
use minimodel_wire::PeerId;

use super::{Inner, Kept, Live, Shared};
use crate::errors::ApiError;
use crate::library::{ItemId, ItemRecord, Work};
use crate::supervisor::{Problem, Resumes};
use crate::view::{
    CompanionView, Consent, Handoff, ItemState, ItemView, LibraryView, LimitsView, ProblemKind,
    ProblemView, QuotaView, ServingView, SignatureView, VIEW_FORMAT, WaitingView,
};

impl Shared {
    /// `GET /api/v1/library`.
    pub(crate) async fn library_view(&self) -> Result<LibraryView, ApiError> {
        self.asked(|shared, inner| Ok(shared.library_view_of(inner)))
            .await
    }

    fn library_view_of(&self, inner: &Inner) -> LibraryView {
        let now = Instant::now();
        let items = inner
            .supervisor
            .state()
            .items
            .iter()
            .filter_map(|record| self.view(inner, &record.id, now))
            .collect();
        LibraryView {
            format: VIEW_FORMAT.to_owned(),
            companion: CompanionView {
                peer_id: self.runner.peer_id().to_string(),
                version: concat!("minimodel/", env!("CARGO_PKG_VERSION")).to_owned(),
                library: self.library.root().to_owned(),
                serve_ip: self.runner.serve_ip().to_string(),
                port: self.runner.port(),
                started_at: self.started_at.clone(),
            },
            limits: self.limits_view(inner),
            items,
        }
    }

    /// `GET /api/v1/items/{id}`.
    pub(crate) async fn item_view(&self, id: &ItemId) -> Result<ItemView, ApiError> {
        let id = id.clone();
        self.asked(move |shared, inner| {
            shared
                .view(inner, &id, Instant::now())
                .ok_or_else(|| ApiError::not_found(id.as_str()))
        })
        .await
    }

    pub(super) fn limits_view(&self, inner: &Inner) -> LimitsView {
        LimitsView {
            caps: inner.supervisor.state().limits.caps,
            quota: self.quota_view(inner),
        }
    }

    pub(super) fn quota_view(&self, inner: &Inner) -> QuotaView {
        QuotaView {
            quota_bytes: inner.supervisor.state().limits.quota_bytes,
            used_bytes: inner.supervisor.used_bytes(),
            free_bytes: crate::quota::free_bytes(&self.library.downloads_dir()),
        }
    }

    /// Item `id` as the API shows it at `now`.
    pub(super) fn view(&self, inner: &Inner, id: &ItemId, now: Instant) -> Option<ItemView> {
        let record = inner.supervisor.record(id)?;
        let status = inner.supervisor.status(id, now)?;
        let empty = Live::default();
        let live = inner.live.get(id).unwrap_or(&empty);
        let artifact_bytes = inner
            .manifests
            .get(id)
            .map_or(0, |kept| kept.manifest.artifact_bytes);
        let download = record.download();
        let file = match &record.work {
            Work::Share(share) => Some(share.file.clone()),
            Work::Download(_) => live.file.clone(),
        };
        // A withdrawn version is not offered for use: its problem says why.
        let withdrawn = status.state == ItemState::Withdrawn;
        let handoff = match (&live.file, &live.receipt, download) {
            (Some(file), Some(receipt), Some(_)) if !withdrawn => {
                let manifest = self.library.manifest_path(id);
                Some(Handoff {
                    file: file.clone(),
                    manifest: manifest.clone(),
                    receipt: receipt.clone(),
                    text: format!(
                        "Verified. To use it, open {} in TinyRustLM, with its manifest {} and its receipt {}. Nothing here opens or runs it.",
                        file.display(),
                        manifest.display(),
                        receipt.display()
                    ),
                })
            }
            _ => None,
        };
        let running = matches!(
            status.state,
            ItemState::Fetching | ItemState::Serving | ItemState::Seeding
        );
        let problem = status
            .problem
            .as_ref()
            .map(|problem| problem_view(problem, record, now));
        let rates = inner.activity.rates_of(id);
        Some(ItemView {
            id: id.to_string(),
            kind: record.kind(),
            model_id: record.model_id.clone(),
            state: status.state,
            paused: record.paused,
            added_at: record.added_at.clone(),
            artifact_bytes,
            verified_bytes: live.verified_bytes,
            rate_bytes_per_second: if running { rates.down } else { 0.0 },
            upload_rate_bytes_per_second: if running { rates.up } else { 0.0 },
            peers: if running { live.peers } else { 0 },
            uploaded_bytes: live.uploaded_bytes,
            sources: live.sources.clone(),
            signature: live.signature.clone(),
            caps: record.caps,
            effective_caps: status.caps,
            serving: live
                .serving
                .as_ref()
                .filter(|_| running)
                .zip(inner.manifests.get(id))
                .map(|(at, kept)| serving_view(kept, at, &self.registered_relays())),
            reach: live.reach.clone().filter(|_| running),
            reuse: live.reuse.clone(),
            file,
            receipt: live.receipt.clone(),
            handoff,
            error: problem
                .as_ref()
                .filter(|_| status.state == ItemState::Failed)
                .map(|problem| problem.text.clone()),
            problem,
            runs: status.runs,
            consent: Consent {
                serve: record.consent.serve,
                fetch: record.consent.fetch,
                seed_after: record.consent.seed_after,
                dht: record.consent.dht,
                trust_key: false,
            },
            peers_named: download.map(|d| d.peers.clone()).unwrap_or_default(),
            serve: download.is_some_and(|d| d.serve),
            seed_after: download.is_some_and(|d| d.seed_after),
            dht: download.is_some_and(|d| d.dht),
            withdrawn: record
                .withdrawn
                .as_ref()
                .map(|w| crate::view::WithdrawnView {
                    publisher_key: w.publisher_key.clone(),
                    reason_route: w.reason_route.clone(),
                    at: w.at.clone(),
                }),
        })
    }
}

/// Where an item's node listens, and the mirrors its ticket names (a
/// share's).
#[derive(Debug, Clone)]
pub(super) struct ServingAt {
    pub(super) addr: SocketAddr,
    pub(super) peer_id: PeerId,
    pub(super) mirrors: Vec<String>,
}

impl Shared {
    /// The relays the endpoint is registered with now, each with the key
    /// it proved: what offers and tickets name.
    pub(super) fn registered_relays(&self) -> Vec<RelayAddr> {
        (self.runner.endpoint().registered_relays().into_iter())
            .filter_map(|(relay, state)| {
                let id = (*state.borrow())?;
                Some(RelayAddr {
                    id: Some(id),
                    addr: relay.addr,
                })
            })
            .collect()
    }
}

/// Where an item serves: the address, its offer and its ticket (naming
/// its mirrors and `relays` too).
pub(super) fn serving_view(kept: &Kept, at: &ServingAt, relays: &[RelayAddr]) -> ServingView {
    let addrs =
        minimodel_swarm::addrs::listener_addrs(at.addr, &[]).unwrap_or_else(|_| vec![at.addr]);
    let peer = PeerAddrs {
        id: at.peer_id,
        addrs,
    };
    let offer = PeerOffer::for_manifest(&kept.manifest, peer.clone()).with_relays(relays);
    ServingView {
        listen: at.addr.to_string(),
        offer: serde_json::to_value(&offer).unwrap_or_default(),
        ticket: ticket_of(kept, peer, &at.mirrors, relays),
    }
}

/// The ticket of a serving item: the manifest file's digest, its
/// publisher key id when signed, this node at its first addresses (the
/// ones a ticket carries), and `mirrors` (checked when the item was
/// added; one that cannot be in a ticket now is left out). `None` when
/// they make no ticket (no address a peer can dial).
fn ticket_of(
    kept: &Kept,
    mut peer: PeerAddrs,
    mirrors: &[String],
    relays: &[RelayAddr],
) -> Option<String> {
    let key_id = minimodel_verifier::signing::manifest::check_manifest_signature(&kept.manifest)
        .ok()
        .flatten()
        .map(|key| key.key_id());
    peer.addrs
        .truncate(minimodel_swarm::ticket::MAX_TICKET_ADDRS);
    let mirrors: Vec<_> = (mirrors.iter())
        .filter_map(|text| minimodel_swarm::ticket::ticket_mirrors(std::slice::from_ref(text)).ok())
        .flatten()
        .take(minimodel_swarm::ticket::MAX_TICKET_MIRRORS)
        .collect();
    let id = peer.id;
    let relays: Vec<RelayAddr> = relays
        .iter()
        .copied()
        .take(minimodel_swarm::ticket::MAX_TICKET_RELAYS)
        .collect();
    let ticket =
        minimodel_swarm::ticket::Ticket::with_sources(kept.sha256, key_id, vec![peer], mirrors)
            .ok()?;
    let ticket = if relays.is_empty() {
        ticket
    } else {
        ticket
            .with_relays(vec![minimodel_swarm::ticket::PeerRelays {
                peer: id,
                relays,
            }])
            .ok()?
    };
    Some(ticket.to_string())
}

/// The manifest's signature as the API shows it.
pub(crate) fn signature_view(check: &SignatureCheck) -> SignatureView {
    let key = check.publisher_key();
    SignatureView {
        status: if check.is_signed() {
            "signed"
        } else {
            "unsigned"
        }
        .to_owned(),
        publisher_id: check.publisher_id().to_string(),
        key_id: key.map(|key| key.key_id().to_string()),
        trust: check.trust().map(|trust| {
            serde_json::to_value(trust)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        }),
        text: check.to_string(),
    }
}

/// The time `at` (on the monotonic clock, read at `now`) in RFC 3339
/// UTC.
fn wall(at: Instant, now: Instant) -> String {
    let system = SystemTime::now();
    let then = if at <= now {
        system.checked_sub(now - at)
    } else {
        system.checked_add(at - now)
    };
    let seconds = then
        .and_then(|then| then.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_secs());
    minimodel_verifier::receipt::rfc3339_utc(seconds)
}

/// A span for people: `40 s`, `2 min 5 s`, `1 h 3 min`.
pub(crate) fn span(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 if seconds.is_multiple_of(60) => format!("{} min", seconds / 60),
        60..3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ => format!("{} h {} min", seconds / 3600, (seconds % 3600) / 60),
    }
}

/// What holds an item back, as the API shows it at `now`: the kind, the
/// words (what happened, what happens next), whether it goes on by
/// itself, and what a person can do.
fn problem_view(problem: &Problem, record: &ItemRecord, now: Instant) -> ProblemView {
    let (goes_on_by_itself, waiting, needs_free_bytes) = match &problem.resumes {
        Resumes::NextTry {
            tries,
            last_try,
            next_try,
            addresses_known,
        } => (
            true,
            Some(WaitingView {
                tries: *tries,
                last_try_at: wall(*last_try, now),
                next_try_at: wall(*next_try, now),
                last_try_seconds_ago: now.saturating_duration_since(*last_try).as_secs(),
                next_try_in_seconds: next_try.saturating_duration_since(now).as_secs(),
                addresses_known: *addresses_known,
            }),
            None,
        ),
        Resumes::FreeBytes(bytes) => (true, None, Some(*bytes)),
        Resumes::Quota => (true, None, None),
        Resumes::Person => (false, None, None),
    };
    let mut text = match (&waiting, problem.kind) {
        (Some(waiting), kind) => {
            let what = match kind {
                ProblemKind::Network => "waiting for the network",
                _ => "waiting for peers",
            };
            format!(
                "{what}: last tried {} ago, next in {}, {} known",
                span(Duration::from_secs(waiting.last_try_seconds_ago)),
                span(Duration::from_secs(waiting.next_try_in_seconds)),
                minimodel_swarm::app::words::counted(waiting.addresses_known, "address"),
            )
        }
        (None, _) => problem.text.clone(),
    };
    if waiting.is_some() && !problem.text.is_empty() {
        text.push_str(&format!(" ({})", problem.text));
    }
    if let Some(bytes) = needs_free_bytes {
        text.push_str(&format!(
            "; it goes on by itself once {} are free on the disk",
            minimodel_swarm::app::words::human_bytes(bytes)
        ));
    }
    let hint = match problem.kind {
        ProblemKind::NoPeersYet => Some(
            "a peer that has the artifact must be running and reachable: it tries again by itself; a resume tries now"
                .to_owned(),
        ),
        ProblemKind::Network => Some("it tries again by itself; a resume tries now".to_owned()),
        ProblemKind::DiskFull => Some("free space on the disk of the library".to_owned()),
        ProblemKind::OverQuota => Some(
            "raise the quota (`minimodel companion limits --quota SIZE`) or remove a download"
                .to_owned(),
        ),
        ProblemKind::RefusedSignature => Some(
            "pin the publisher's key (minimodel key pin) or remove the item, then resume it"
                .to_owned(),
        ),
        ProblemKind::ManifestChanged => {
            Some("remove the item and add it again with its manifest".to_owned())
        }
        ProblemKind::FileGone => Some(match &record.work {
            Work::Share(share) => format!(
                "put {} back, then resume; or remove the item",
                share.file.display()
            ),
            Work::Download(_) => {
                "remove the item and add the download again to fetch it again".to_owned()
            }
        }),
        ProblemKind::VerificationFailed => Some(match &record.work {
            Work::Share(_) => {
                "the file is not the artifact its manifest describes (it changed?): put the right file back, then resume".to_owned()
            }
            Work::Download(_) => {
                "what was verified is kept; a resume fetches what failed again".to_owned()
            }
        }),
        ProblemKind::Damaged | ProblemKind::Storage => {
            Some("check the disk of the library, then resume; what was verified is kept".to_owned())
        }
        ProblemKind::Internal => Some("a resume tries again".to_owned()),
        ProblemKind::Withdrawn => Some(
            "read the reason at its route; remove the item to forget it (its files are kept unless you ask)"
                .to_owned(),
        ),
    };
    ProblemView {
        kind: problem.kind,
        text,
        since: wall(problem.since, now),
        goes_on_by_itself,
        hint,
        waiting,
        needs_free_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_as_people_say_them() {
        assert_eq!(span(Duration::from_secs(0)), "0 s");
        assert_eq!(span(Duration::from_secs(40)), "40 s");
        assert_eq!(span(Duration::from_secs(120)), "2 min");
        assert_eq!(span(Duration::from_secs(125)), "2 min 5 s");
        assert_eq!(span(Duration::from_secs(3 * 3600 + 180)), "3 h 3 min");
    }
}
