//! Following publishers' channels: the shell around [`crate::follow`].
//! It starts the lookups the schedule says are due (one DHT client node
//! each, for at most its lookup timeout), hands the items found to
//! `channel_state::choose_item` against the newest item accepted before,
//! and carries out what `follow::decide` says: withdrawn items stop
//! (through the supervisor), a new version is offered or added as a
//! download of its ticket.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use minimodel_swarm::dht::Discovery;
use minimodel_swarm::peers::PeerAddrs;
use minimodel_swarm::ticket::Ticket;
use minimodel_verifier::channel::{ChannelItem, LastSeen, VerifiedChannel};
use minimodel_verifier::channel_state::choose_item;
use minimodel_verifier::follow::Next;
use minimodel_verifier::receipt::now_rfc3339;
use minimodel_verifier::signing::PublicKey;
use minimodel_verifier::signing::manifest::check_manifest_signature;
use minimodel_wire::PeerId;

use super::{Inner, Shared};
use crate::errors::ApiError;
use crate::follow::{
    self, Decision, FollowKey, FollowRefusal, LibraryItem, Lookup, LookupRefused, Schedule,
};
use crate::library::{
    FollowConsent, FollowPolicy, FollowRecord, SeenRecord, WithdrawnRecord, Work,
};
use crate::view::{
    AddDownload, AddFollow, Consent, FollowView, FollowsView, LookupView, OfferView,
};

/// What the views show of a follow beyond its record.
#[derive(Debug, Default, Clone)]
pub(super) struct FollowLive {
    last_lookup: Option<LookupView>,
    offer: Option<OfferView>,
}

/// The follows' part of the service's state.
#[derive(Debug, Default)]
pub(super) struct Following {
    pub(super) schedule: Schedule,
    pub(super) live: BTreeMap<FollowKey, FollowLive>,
}

impl From<FollowRefusal> for ApiError {
    fn from(refusal: FollowRefusal) -> Self {
        let text = refusal.to_string();
        match refusal {
            FollowRefusal::Invalid(_) => ApiError::invalid(text),
            FollowRefusal::Exists { .. } => ApiError::conflict(text),
            FollowRefusal::TooMany => ApiError::new(429, "too-many", text),
            FollowRefusal::ConsentNeeded => ApiError::new(403, "consent-needed", text)
                .hint("give consent.fetch, or follow with policy ask"),
            FollowRefusal::NotFound { .. } => ApiError::new(404, "not-found", text),
        }
    }
}

fn key_of(publisher_key: &str, model_id: &str) -> Result<FollowKey, ApiError> {
    let key: PublicKey = publisher_key
        .parse()
        .map_err(|e| ApiError::invalid(format!("publisher_key: {e}")))?;
    let model = model_id
        .parse()
        .map_err(|e| ApiError::invalid(format!("model_id: {e}")))?;
    Ok(FollowKey::new(&key, model))
}

impl Shared {
    fn follow_view(inner: &Inner, record: &FollowRecord) -> FollowView {
        let live = record
            .key()
            .ok()
            .and_then(|(key, model)| inner.following.live.get(&FollowKey::new(&key, model)))
            .cloned()
            .unwrap_or_default();
        FollowView {
            publisher_key: record.publisher_key.clone(),
            model_id: record.model_id.clone(),
            policy: record.policy,
            added_at: record.added_at.clone(),
            seq: record.last_seen.map(|seen| seen.seq),
            last_lookup: live.last_lookup,
            offer: live.offer,
            mirrors: record
                .mirrors
                .iter()
                .map(|url| minimodel_swarm::mirror::given::shown_url(url))
                .collect(),
        }
    }

    /// `GET /api/v1/follows`.
    pub(crate) async fn follows(&self) -> Result<FollowsView, ApiError> {
        self.asked(|_, inner| {
            Ok(FollowsView {
                follows: inner
                    .supervisor
                    .state()
                    .follows
                    .iter()
                    .map(|record| Self::follow_view(inner, record))
                    .collect(),
            })
        })
        .await
    }

    /// `POST /api/v1/follows`: added, and looked up at once.
    pub(crate) async fn add_follow(&self, request: AddFollow) -> Result<FollowView, ApiError> {
        let key = key_of(&request.publisher_key, &request.model_id)?;
        let record = FollowRecord {
            publisher_key: request.publisher_key.clone(),
            model_id: request.model_id.clone(),
            policy: request.policy,
            added_at: now_rfc3339(),
            last_seen: None,
            consent: (request.policy == FollowPolicy::Auto && request.consent.fetch).then_some(
                FollowConsent {
                    fetch: true,
                    trust_key: request.consent.trust_key,
                },
            ),
            mirrors: request.mirrors.clone(),
        };
        let fetch = request.consent.fetch;
        self.asked(move |shared, inner| {
            let follows = follow::add_follow(&inner.supervisor.state().follows, record, fetch)?;
            let added = follows.last().cloned().expect("one was added");
            inner.supervisor.set_follows(follows);
            inner
                .following
                .live
                .insert(key.clone(), FollowLive::default());
            inner.following.schedule.add(key, Instant::now());
            let carried = shared.carry_out(inner);
            if let Some(error) = carried.save_failed {
                return Err(ApiError::io(error));
            }
            Ok(Self::follow_view(inner, &added))
        })
        .await
    }

    /// `DELETE /api/v1/follows/{key}/{model}`: never looked up again;
    /// what it withdrew stays withdrawn, what it fetched stays.
    pub(crate) async fn remove_follow(
        &self,
        publisher_key: &str,
        model_id: &str,
    ) -> Result<FollowView, ApiError> {
        let key = key_of(publisher_key, model_id)?;
        let not_found = FollowRefusal::NotFound {
            key: publisher_key.to_owned(),
            model: model_id.to_owned(),
        };
        self.asked(move |shared, inner| {
            let mut follows = inner.supervisor.state().follows.clone();
            let at = follow::find(&follows, &key).ok_or(not_found)?;
            let removed = follows.remove(at);
            let view = Self::follow_view(inner, &removed);
            inner.supervisor.set_follows(follows);
            inner.following.schedule.remove(&key, Instant::now());
            inner.following.live.remove(&key);
            let carried = shared.carry_out(inner);
            if let Some(error) = carried.save_failed {
                return Err(ApiError::io(error));
            }
            Ok(view)
        })
        .await
    }

    /// `POST /api/v1/follows/{key}/{model}/lookup`: a lookup now, within
    /// the rate limit.
    pub(crate) async fn request_lookup(
        &self,
        publisher_key: &str,
        model_id: &str,
    ) -> Result<FollowView, ApiError> {
        let key = key_of(publisher_key, model_id)?;
        let not_found = FollowRefusal::NotFound {
            key: publisher_key.to_owned(),
            model: model_id.to_owned(),
        };
        // The owner starts it on its next turn, which this command is.
        self.asked(move |_, inner| {
            match inner.following.schedule.request(&key, Instant::now()) {
                Ok(()) => {}
                Err(LookupRefused::NotFollowed) => return Err(not_found.into()),
                Err(refused @ LookupRefused::Busy) => {
                    return Err(ApiError::conflict(refused.to_string()));
                }
                Err(refused @ LookupRefused::TooSoon { .. }) => {
                    return Err(ApiError::new(429, "too-many", refused.to_string()));
                }
            }
            let state = inner.supervisor.state();
            let at =
                follow::find(&state.follows, &key).expect("a scheduled follow is in the state");
            Ok(Self::follow_view(inner, &state.follows[at]))
        })
        .await
    }

    /// Runs `lookup` in a task of its own (the owner starts the lookups
    /// the schedule says are due).
    pub(super) fn look_up_later(&self, lookup: Lookup) {
        if let Some(this) = self.this.upgrade() {
            tokio::spawn(async move { this.look_up(lookup).await });
        }
    }

    /// One lookup of a follow's channel, and what it means.
    async fn look_up(&self, lookup: Lookup) {
        let key = lookup.key.clone();
        let found = self
            .with({
                let key = key.clone();
                move |_, inner| {
                    let state = inner.supervisor.state();
                    follow::find(&state.follows, &key).map(|at| state.follows[at].clone())
                }
            })
            .await;
        let Some(found) = found else {
            return;
        };
        let Some((record, (publisher, model))) =
            found.and_then(|record| record.key().ok().map(|key| (record, key)))
        else {
            self.with(move |_, inner| {
                inner.following.schedule.finished(&lookup);
            })
            .await;
            return;
        };
        let last = record.last_seen.map(|seen| LastSeen {
            seq: seen.seq,
            value_sha256: seen.value_sha256,
        });
        let items = self.get_channel(&publisher).await;
        self.with(move |shared, inner| {
            let current = inner.following.schedule.finished(&lookup);
            if !current || follow::find(&inner.supervisor.state().follows, &key).is_none() {
                // Removed (or removed and added again) while it was looked
                // up: what it read was asked for a follow, policy and
                // consent that are gone, and is not used.
                return;
            }
            let (ok, text) = match items {
                Err(error) => (false, format!("the DHT could not be asked: {error}")),
                Ok(items) => match choose_item(&items, &publisher, last) {
                    Err(refused) => (false, format!("the channel item is refused: {refused}")),
                    Ok(None) => (
                        false,
                        "no item of this channel was found on the DHT".to_owned(),
                    ),
                    Ok(Some(channel)) => {
                        let text = shared.apply(inner, &key, &record, &publisher, &model, &channel);
                        (true, text)
                    }
                },
            };
            shared.carry_out(inner);
            inner.following.live.entry(key).or_default().last_lookup = Some(LookupView {
                at: now_rfc3339(),
                ok,
                text,
            });
        })
        .await;
    }

    /// The items of `publisher`'s channel on the DHT (one client node, the
    /// companion's bootstrap nodes or the public DHT).
    async fn get_channel(&self, publisher: &PublicKey) -> Result<Vec<ChannelItem>, String> {
        let bind = match self.runner.serve_ip() {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(_) => std::net::Ipv4Addr::UNSPECIFIED,
        };
        let config = minimodel_swarm::app::fetch::dht_config(bind, &self.dht_bootstrap);
        let node = Discovery::start(config).await.map_err(|e| e.to_string())?;
        Ok(node.get_channel(publisher.as_bytes()).await)
    }

    /// Carries out what the checked `channel` means; says it in words.
    fn apply(
        &self,
        inner: &mut Inner,
        key: &FollowKey,
        record: &FollowRecord,
        publisher: &PublicKey,
        model: &minimodel_verifier::ModelId,
        channel: &VerifiedChannel,
    ) -> String {
        // The newest item accepted, kept: an older one is refused later.
        if record.last_seen.is_none_or(|seen| channel.seq() > seen.seq) {
            let mut follows = inner.supervisor.state().follows.clone();
            if let Some(at) = follow::find(&follows, key) {
                let seen = channel.last_seen();
                follows[at].last_seen = Some(SeenRecord {
                    seq: seen.seq,
                    value_sha256: seen.value_sha256,
                });
                inner.supervisor.set_follows(follows);
            }
        }
        let items: Vec<LibraryItem> = inner
            .supervisor
            .state()
            .items
            .iter()
            .filter_map(|item| {
                let kept = inner.manifests.get(&item.id)?;
                Some(LibraryItem {
                    id: item.id.clone(),
                    model: kept.manifest.model_id.clone(),
                    manifest_sha256: kept.sha256,
                    signed_by: check_manifest_signature(&kept.manifest).ok().flatten(),
                    whole: match &item.work {
                        Work::Share(_) => true,
                        Work::Download(download) => download.delivered,
                    },
                    withdrawn: item.withdrawn.is_some(),
                })
            })
            .collect();
        // An `auto` follow fetches only with the consent it was added
        // with (the state file refuses one without).
        let policy = match record.consent {
            Some(consent) if consent.fetch => record.policy,
            _ => FollowPolicy::Ask,
        };
        let Decision { withdraw, latest } =
            follow::decide(publisher, model, policy, channel.channel(), &items);
        let mut said = vec![format!("sequence number {}", channel.seq())];
        let now = Instant::now();
        for (id, withdrawal) in withdraw {
            let withdrawn = WithdrawnRecord {
                publisher_key: publisher.to_string(),
                reason_route: withdrawal.reason_route.to_string(),
                at: now_rfc3339(),
            };
            if inner.supervisor.withdraw(&id, withdrawn, now).is_ok() {
                said.push(format!(
                    "item {id} is withdrawn by its publisher (reason at {}): no longer served",
                    withdrawal.reason_route
                ));
            }
        }
        let live = inner.following.live.entry(key.clone()).or_default();
        match latest {
            follow::Latest::Nothing(next) => {
                live.offer = None;
                said.push(match next {
                    Next::NoSuchModel => format!("the channel names no model {model}"),
                    Next::LatestWithdrawn(w) => format!(
                        "its latest version {} is withdrawn (reason at {}): not fetched",
                        w.manifest_sha256.to_hex(),
                        w.reason_route
                    ),
                    Next::UpToDate(digest) => {
                        format!("up to date: version {} is here", digest.to_hex())
                    }
                    Next::NoPeers(digest) => format!(
                        "version {} is new, but the channel names no peer",
                        digest.to_hex()
                    ),
                    Next::Fetch {
                        manifest_sha256, ..
                    } => format!("version {} is new", manifest_sha256.to_hex()),
                });
            }
            follow::Latest::Offer {
                manifest_sha256,
                peers,
            } => {
                let ticket = ticket_of(publisher, manifest_sha256, &peers);
                said.push(format!(
                    "version {} is new: offered (add it with its ticket)",
                    manifest_sha256.to_hex()
                ));
                live.offer = Some(OfferView {
                    manifest_sha256: manifest_sha256.to_hex(),
                    ticket,
                });
            }
            follow::Latest::Fetch {
                manifest_sha256,
                peers,
            } => {
                let ticket = ticket_of(publisher, manifest_sha256, &peers);
                let given = record.consent.unwrap_or(FollowConsent {
                    fetch: false,
                    trust_key: false,
                });
                let consent = Consent {
                    fetch: given.fetch,
                    trust_key: given.trust_key,
                    ..Consent::default()
                };
                live.offer = None;
                said.push(format!(
                    "version {} is new: fetched beside the versions here",
                    manifest_sha256.to_hex()
                ));
                let request = AddDownload {
                    ticket: Some(ticket),
                    mirrors: record.mirrors.clone(),
                    consent,
                    publisher_key: Some(publisher.to_string()),
                    require_signature: true,
                    ..AddDownload::default()
                };
                if let Some(this) = self.this.upgrade() {
                    tokio::spawn(async move {
                        if let Err(error) = this.add_download(request).await {
                            tracing::warn!("a followed version could not be added: {error:?}");
                        }
                    });
                }
            }
        }
        said.join("; ")
    }
}

/// A ticket of the version `digest` signed by `publisher`, served by
/// `peers`.
fn ticket_of(
    publisher: &PublicKey,
    digest: minimodel_verifier::Sha256Digest,
    peers: &[minimodel_verifier::channel::ChannelPeer],
) -> String {
    Ticket {
        manifest_sha256: digest,
        key_id: Some(publisher.key_id()),
        peers: peers
            .iter()
            .map(|peer| PeerAddrs {
                id: PeerId(peer.id),
                addrs: peer.addrs.clone(),
            })
            .collect(),
        relays: Vec::new(),
        mirrors: Vec::new(),
    }
    .to_string()
}
