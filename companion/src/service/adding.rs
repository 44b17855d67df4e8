//! Adding items: previews and adds of shares and downloads. The
//! manifest is read (a file, its text, or a ticket's peers asked for it),
//! judged against the keyring, the peers checked against it, the consent
//! the request carries compared with the words of each consent it needs,
//! and the supervisor asked whether it may be added ([`Supervisor::admit`],
//! before the first byte); then it is added and the supervisor starts it.
//!
//! [`Supervisor::admit`]: crate::supervisor::Supervisor::admit

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use minimodel_swarm::app::consent::{self, ConsentKind, Disclosure};
use minimodel_swarm::app::peers::{from_offers, from_request, relays_of_offers};
use minimodel_swarm::app::ticket::{QUERY_TIMEOUT, manifest_of};
use minimodel_swarm::offer::{ImportRequest, PeerOffer};
use minimodel_swarm::peers::{PeerAddrs, merge_peers};
use minimodel_swarm::relay::RelayAddr;
use minimodel_swarm::ticket::Ticket;
use minimodel_swarm::transport::TransportTuning;
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::manifest::Manifest;
use minimodel_verifier::receipt::now_rfc3339;
use minimodel_verifier::signing::PublicKey;
use minimodel_verifier::signing::trust::SignatureCheck;
use minimodel_wire::{PeerAddr, PeerId};

use super::{Kept, Live, Shared, signature_view};
use crate::errors::ApiError;
use crate::library::{
    ConsentRecord, DownloadRecord, ItemId, ItemKind, ItemRecord, MAX_MANIFEST_BYTES, MAX_PEERS,
    PeerRelaysRecord, ShareRecord, Work,
};
use crate::supervisor::Candidate;
use crate::trust::is_first_use;
use crate::view::{AddDownload, AddShare, Ask, Consent, ItemView, Preview};

/// How many manifests fetched for tickets are kept for the add that
/// follows a preview.
const TICKET_MANIFESTS_KEPT: usize = 8;
/// How many ticket queries (each a QUIC endpoint dialing the ticket's
/// addresses, half a second apart) run at once.
pub(super) const TICKET_QUERIES: usize = 2;
/// How long a ticket query waits for its turn before it is refused (429).
const TICKET_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A disclosure as the API shows it: its consent's field and its words.
fn ask_of(disclosure: &Disclosure) -> Ask {
    Ask {
        consent: disclosure.consent.name().to_owned(),
        words: disclosure.words.clone(),
    }
}

/// A manifest read from a request.
struct Loaded {
    manifest: Manifest,
    bytes: Vec<u8>,
    sha256: Sha256Digest,
}

fn load_manifest(path: Option<&Path>, text: Option<&str>) -> Result<Loaded, ApiError> {
    let bytes = match (path, text) {
        (Some(path), None) => {
            // The one bounded reader of named files: opened without
            // waiting (a FIFO would block the handler's thread until
            // someone writes to it) and read only when it is a regular
            // file within a manifest's limit.
            minimodel_swarm::input::read_input(path, minimodel_swarm::input::Input::MANIFEST)
                .map_err(|error| ApiError::invalid(error.to_string()))?
        }
        (None, Some(text)) => text.as_bytes().to_vec(),
        _ => {
            return Err(ApiError::invalid(
                "name the manifest with exactly one of manifest_path and manifest",
            ));
        }
    };
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ApiError::invalid(format!(
            "the manifest is larger than {MAX_MANIFEST_BYTES} bytes"
        )));
    }
    let manifest = Manifest::parse_bytes(&bytes).map_err(|error| match path {
        // A file that is no manifest at all: its content is not quoted
        // back (the API must not become a way to read the user's files).
        Some(path) if !looks_like_manifest(&bytes) => ApiError::invalid(format!(
            "{} is not a minimodel manifest (it has no `format: minimodel-manifest-v0` or `-v1` line)",
            path.display()
        )),
        _ => ApiError::invalid(format!("the manifest is invalid: {error}")),
    })?;
    let sha256 = Sha256Digest::of(&bytes);
    Ok(Loaded {
        manifest,
        bytes,
        sha256,
    })
}

/// Whether `bytes` has a manifest's `format:` line (a manifest's errors
/// may be quoted back; another file's are not).
fn looks_like_manifest(bytes: &[u8]) -> bool {
    bytes.split(|&b| b == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        line == b"format: minimodel-manifest-v0" || line == b"format: minimodel-manifest-v1"
    })
}

fn parse_key(text: Option<&str>) -> Result<Option<PublicKey>, ApiError> {
    text.map(|text| {
        text.trim()
            .parse::<PublicKey>()
            .map_err(|error| ApiError::invalid(format!("publisher_key: {error}")))
    })
    .transpose()
}

/// The mirrors a share's ticket names, checked as a ticket's reader
/// checks them.
fn share_mirrors(
    request: &AddShare,
) -> Result<Vec<minimodel_verifier::mirror_url::MirrorUrl>, ApiError> {
    minimodel_swarm::ticket::ticket_mirrors(&request.mirrors)
        .map_err(|error| ApiError::invalid(error.to_string()))
}

/// The mirrors of a download request, parsed strictly.
fn download_mirrors(
    request: &AddDownload,
) -> Result<Vec<minimodel_verifier::mirror_url::MirrorUrl>, ApiError> {
    use minimodel_swarm::mirror::given::{parse_given, plain_if};
    parse_given(&request.mirrors, plain_if(request.allow_plain_http_mirror))
        .map_err(|error| ApiError::invalid(error.to_string()))
}

/// The relays each peer of a download names ("reach me via": a ticket's
/// or an offer's).
type PeerRelays = Vec<(PeerId, Vec<RelayAddr>)>;

/// Merges `more` into `relays`, each relay once per peer.
fn merge_relays(relays: &mut PeerRelays, more: PeerRelays) {
    for (peer, named) in more {
        match relays.iter_mut().find(|(known, _)| *known == peer) {
            Some((_, known)) => {
                for relay in named {
                    if !known.iter().any(|k| k.addr == relay.addr) {
                        known.push(relay);
                    }
                }
            }
            None => relays.push((peer, named)),
        }
    }
}

/// The peers of a download request, checked against the manifest, and
/// the relays they name (with `ticket_relays`, the ticket's).
fn download_peers(
    request: &AddDownload,
    manifest: &Manifest,
    ticket_peers: Vec<PeerAddrs>,
    ticket_relays: PeerRelays,
) -> Result<(Vec<PeerAddrs>, PeerRelays), ApiError> {
    let mut relays = ticket_relays;
    let mut named = ticket_peers;
    for text in &request.peers {
        let peer: PeerAddr = text.trim().parse().map_err(|error| {
            ApiError::invalid(format!(
                "peer {text:?}: {error} (PEER_ID@IP:PORT, an IP address)"
            ))
        })?;
        // What an offer or a ticket may not name, a request may not either.
        minimodel_swarm::offer::check_offer_addr(peer.addr)
            .map_err(|error| ApiError::invalid(format!("peer {text:?}: {error}")))?;
        named.push(PeerAddrs {
            id: peer.id,
            addrs: vec![peer.addr],
        });
    }
    let mut offers = Vec::new();
    for (index, value) in request.offers.iter().enumerate() {
        let name = format!("offer {}", index + 1);
        let bytes = serde_json::to_vec(value).map_err(|e| ApiError::invalid(e.to_string()))?;
        let offer =
            PeerOffer::parse(&bytes, &name).map_err(|e| ApiError::invalid(e.to_string()))?;
        offers.push((offer, name));
    }
    let mut peers = from_offers(
        manifest,
        named,
        offers.iter().map(|(offer, name)| (offer, name.as_str())),
    )
    .map_err(|e| ApiError::invalid(e.to_string()))?;
    merge_relays(
        &mut relays,
        relays_of_offers(offers.iter().map(|(offer, _)| offer)),
    );
    if let Some(value) = &request.request {
        let bytes = serde_json::to_vec(value).map_err(|e| ApiError::invalid(e.to_string()))?;
        let import = ImportRequest::parse(&bytes, "the request")
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        let more = from_request(&import, manifest).map_err(|e| ApiError::invalid(e.to_string()))?;
        peers = merge_peers(peers.into_iter().chain(more));
        merge_relays(&mut relays, relays_of_offers(&import.offers));
    }
    if peers.len() > MAX_PEERS {
        return Err(ApiError::invalid(format!(
            "{} peers; at most {MAX_PEERS}",
            peers.len()
        )));
    }
    if peers.is_empty() && !request.dht && request.mirrors.is_empty() {
        return Err(ApiError::invalid("no peers to fetch from")
            .hint("name peers or mirrors, give offers, a request or a ticket, or set dht"));
    }
    // Only the peers it dials name relays for it.
    relays.retain(|(peer, _)| peers.iter().any(|known| known.id == *peer));
    Ok((peers, relays))
}

impl Shared {
    /// Where items serve: the companion's one port, on `--serve-ip`.
    fn reach(&self) -> consent::Reach {
        let ip = self.runner.serve_ip();
        let listen = SocketAddr::new(ip, self.runner.port());
        let interfaces = if ip.is_unspecified() {
            minimodel_swarm::addrs::listener_addrs(SocketAddr::new(ip, 1), &[])
                .map(|addrs| addrs.iter().map(SocketAddr::ip).collect())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        consent::Reach {
            listen,
            interfaces,
            shared_port: true,
            port_mapping: self.runner.endpoint().port_mapping().is_some(),
        }
    }

    /// Every consent a share needs, with its words (the application
    /// layer's, as every front end says them).
    fn share_asks(&self, manifest: &Manifest, check: &SignatureCheck) -> Vec<Disclosure> {
        consent::trust(check, &self.trust.describe())
            .into_iter()
            .chain(consent::serve(&consent::ServeConsent {
                artifact: consent::Artifact::of(manifest),
                reach: self.reach(),
                until: consent::Until::PausedOrRemoved,
                dht: None,
                lan: self.runner.lan(),
                // The companion's relays (`companion run --relay`): the
                // endpoint registers with them for every item.
                relays: (self.runner.endpoint().relays().iter())
                    .map(|relay| relay.addr)
                    .collect(),
            }))
            .collect()
    }

    /// Every consent a download needs, with its words.
    fn download_asks(
        &self,
        manifest: &Manifest,
        check: &SignatureCheck,
        request: &AddDownload,
        peers: usize,
        peer_relays: &PeerRelays,
        downloads: PathBuf,
    ) -> Vec<Disclosure> {
        let bootstrap_named = !request.dht_bootstrap.is_empty() || !self.dht_bootstrap.is_empty();
        let plan = consent::FetchConsent {
            artifact: consent::Artifact::of(manifest),
            into: downloads.clone(),
            named: peers,
            remembered: minimodel_swarm::app::peers::remembered_count(&downloads, manifest),
            dht: request.dht.then(|| {
                if bootstrap_named {
                    consent::DhtScope::Nodes {
                        named_by: "the configured bootstrap nodes".to_owned(),
                    }
                } else {
                    consent::DhtScope::Public
                }
            }),
            lan: self.runner.lan(),
            serving: request.serve.then(|| consent::Serving {
                reach: self.reach(),
                seed_after: request.seed_after,
                until: consent::Until::PausedOrRemoved,
            }),
            // The companion's relays and those its peers name: the
            // endpoint registers with each (decided where its links are).
            relays: minimodel_swarm::relay::relays_used(
                &self.runner.endpoint().relays(),
                peer_relays,
                minimodel_swarm::relay::hub::MAX_HUB_LINKS,
            )
            .iter()
            .map(|relay| relay.addr)
            .collect(),
            // Checked before anything is asked (`download_mirrors`).
            mirrors: download_mirrors(request).unwrap_or_default(),
        };
        consent::trust(check, &self.trust.describe())
            .into_iter()
            .chain(consent::fetch(&plan))
            .collect()
    }

    /// The consent missing from `given` among `asks`, as the API shows
    /// it.
    fn missing(asks: &[Disclosure], given: &Consent) -> Vec<Ask> {
        consent::missing(asks, |kind| match kind {
            ConsentKind::Serve => given.serve,
            ConsentKind::Fetch => given.fetch,
            ConsentKind::SeedAfter => given.seed_after,
            ConsentKind::Dht => given.dht,
            ConsentKind::TrustKey => given.trust_key,
        })
        .iter()
        .map(ask_of)
        .collect()
    }

    fn judge(
        &self,
        manifest: &Manifest,
        key: Option<&str>,
        require: bool,
    ) -> Result<SignatureCheck, ApiError> {
        let key = parse_key(key)?;
        self.trust
            .judge(manifest, key.as_ref(), require)
            .map_err(ApiError::trust)
    }

    /// `POST /api/v1/shares/preview`.
    pub(crate) async fn preview_share(&self, request: &AddShare) -> Result<Preview, ApiError> {
        share_mirrors(request)?;
        let loaded = load_manifest(
            request.manifest_path.as_deref(),
            request.manifest.as_deref(),
        )?;
        let check = self.judge(
            &loaded.manifest,
            request.publisher_key.as_deref(),
            request.require_signature,
        )?;
        let id = ItemId::of(
            ItemKind::Share,
            &loaded.manifest.model_id,
            &loaded.manifest.chunks.merkle_root,
        );
        Ok(Preview {
            id: id.to_string(),
            kind: ItemKind::Share,
            model_id: loaded.manifest.model_id.to_string(),
            artifact_bytes: loaded.manifest.artifact_bytes,
            signature: signature_view(&check),
            asks: self
                .share_asks(&loaded.manifest, &check)
                .iter()
                .map(ask_of)
                .collect(),
            quota: None,
        })
    }

    /// `POST /api/v1/shares`.
    pub(crate) async fn add_share(&self, request: AddShare) -> Result<ItemView, ApiError> {
        request.caps.check().map_err(ApiError::invalid)?;
        share_mirrors(&request)?;
        let loaded = load_manifest(
            request.manifest_path.as_deref(),
            request.manifest.as_deref(),
        )?;
        let manifest = &loaded.manifest;
        let check = self.judge(
            manifest,
            request.publisher_key.as_deref(),
            request.require_signature,
        )?;
        if !request.file.is_absolute() {
            return Err(ApiError::invalid(format!(
                "file {} must be an absolute path",
                request.file.display()
            )));
        }
        let meta = std::fs::metadata(&request.file).map_err(|error| {
            ApiError::invalid(format!("cannot use {}: {error}", request.file.display()))
        })?;
        if !meta.is_file() || meta.len() != manifest.artifact_bytes {
            return Err(ApiError::new(
                422,
                "verification-failed",
                format!(
                    "{} is not the artifact: {} bytes, the manifest says {}",
                    request.file.display(),
                    meta.len(),
                    manifest.artifact_bytes
                ),
            ));
        }
        let id = ItemId::of(
            ItemKind::Share,
            &manifest.model_id,
            &manifest.chunks.merkle_root,
        );
        let record = ItemRecord {
            id: id.clone(),
            model_id: manifest.model_id.to_string(),
            manifest_sha256: loaded.sha256.to_hex(),
            added_at: now_rfc3339(),
            paused: false,
            caps: request.caps,
            port: None,
            consent: ConsentRecord {
                serve: true,
                at: now_rfc3339(),
                ..ConsentRecord::default()
            },
            publisher_key: request.publisher_key.clone(),
            require_signature: request.require_signature,
            work: Work::Share(ShareRecord {
                file: request.file.clone(),
                mirrors: request.mirrors.clone(),
            }),
            withdrawn: None,
        };
        let consent = request.consent;
        // From the supervisor's checks until the item is in, one command:
        // two adds at once cannot each pass the checks the other's fails.
        self.asked(move |shared, inner| {
            let manifest = &loaded.manifest;
            inner.supervisor.admit(
                &Candidate {
                    kind: ItemKind::Share,
                    model_id: &manifest.model_id,
                    merkle_root: &manifest.chunks.merkle_root,
                    artifact_bytes: manifest.artifact_bytes,
                    version_dir: None,
                },
                None,
            )?;
            let missing = Self::missing(&shared.share_asks(manifest, &check), &consent);
            if !missing.is_empty() {
                return Err(ApiError::consent_needed(missing));
            }
            let check = shared.settle(check, consent.trust_key)?;
            shared.insert(inner, record, &loaded, check)
        })
        .await
    }

    fn settle(&self, check: SignatureCheck, trust_key: bool) -> Result<SignatureCheck, ApiError> {
        let named = check.trust() == Some(minimodel_verifier::signing::trust::KeyTrust::Named);
        if (trust_key && is_first_use(&check)) || named {
            self.trust.pin(check).map_err(ApiError::trust)
        } else {
            Ok(check)
        }
    }

    /// Keeps the manifest, hands the item to the supervisor (which starts
    /// it) and writes the state; an item whose state cannot be written is
    /// taken out again.
    fn insert(
        &self,
        inner: &mut super::Inner,
        record: ItemRecord,
        loaded: &Loaded,
        check: SignatureCheck,
    ) -> Result<ItemView, ApiError> {
        let id = record.id.clone();
        self.library
            .write_whole(&self.library.manifest_path(&id), &loaded.bytes)
            .map_err(|e| ApiError::io(e.to_string()))?;
        inner.manifests.insert(
            id.clone(),
            Kept {
                manifest: loaded.manifest.clone(),
                sha256: loaded.sha256,
                bytes: Arc::from(loaded.bytes.as_slice()),
            },
        );
        inner.live.insert(
            id.clone(),
            Live {
                signature: Some(signature_view(&check)),
                ..Live::default()
            },
        );
        let now = Instant::now();
        let free = match record.kind() {
            ItemKind::Download => crate::quota::free_bytes(&self.library.downloads_dir()),
            ItemKind::Share => None,
        };
        let added = inner.supervisor.add(
            record,
            &loaded.manifest.model_id,
            &loaded.manifest.chunks.merkle_root,
            loaded.manifest.artifact_bytes,
            free,
            now,
        );
        if let Err(refusal) = added {
            inner.manifests.remove(&id);
            inner.live.remove(&id);
            return Err(refusal.into());
        }
        let carried = self.carry_out(inner);
        if let Some(error) = carried.save_failed {
            inner.supervisor.unadd(&id);
            self.carry_out(inner);
            inner.manifests.remove(&id);
            inner.live.remove(&id);
            return Err(ApiError::io(error));
        }
        self.view(inner, &id, now)
            .ok_or_else(|| ApiError::not_found(id.as_str()))
    }

    /// The manifest a download request names (a file, its text, or a
    /// ticket whose peers and mirrors are asked for it), and the request
    /// with the ticket's mirrors among its own (each once), and the peers
    /// a ticket names with the relays each names.
    async fn download_manifest(
        &self,
        request: &AddDownload,
    ) -> Result<(Loaded, AddDownload, Vec<PeerAddrs>, PeerRelays), ApiError> {
        let Some(text) = request.ticket.as_deref() else {
            let loaded = load_manifest(
                request.manifest_path.as_deref(),
                request.manifest.as_deref(),
            )?;
            return Ok((loaded, request.clone(), Vec::new(), Vec::new()));
        };
        if request.manifest_path.is_some() || request.manifest.is_some() {
            return Err(ApiError::invalid(
                "name the manifest with exactly one of manifest_path, manifest and ticket",
            ));
        }
        let ticket: Ticket = text
            .trim()
            .parse()
            .map_err(|error| ApiError::invalid(format!("the ticket is not valid: {error}")))?;
        let sha256 = ticket.manifest_sha256;
        let kept = || {
            self.with(move |_, inner| {
                (inner.ticket_manifests.iter())
                    .find(|(digest, _)| *digest == sha256)
                    .map(|(_, bytes)| bytes.clone())
            })
        };
        let mut bytes = kept().await.ok_or_else(super::stopped)?;
        let _permit = match bytes {
            Some(_) => None,
            None => {
                let permit = tokio::time::timeout(TICKET_QUEUE_WAIT, self.ticket_queries.acquire())
                    .await
                    .map_err(|_| {
                        ApiError::new(
                            429,
                            "too-many",
                            format!(
                                "{TICKET_QUERIES} ticket queries are under way; none ended within {} s",
                                TICKET_QUEUE_WAIT.as_secs()
                            ),
                        )
                        .hint("try again in a moment")
                    })?
                    .map_err(|_| ApiError::io("the companion is stopping"))?;
                // Another request may have fetched it while this one waited.
                bytes = kept().await.ok_or_else(super::stopped)?;
                Some(permit)
            }
        };
        let bytes = match bytes {
            Some(bytes) => bytes,
            None => {
                let fetched = manifest_of(
                    &ticket,
                    self.runner.identity(),
                    &TransportTuning::default(),
                    QUERY_TIMEOUT,
                )
                .await
                .map_err(|error| {
                    let refusal = if error.wrong_bytes {
                        ApiError::new(422, "verification-failed", error.to_string())
                    } else {
                        ApiError::new(502, "unreachable", error.to_string())
                    };
                    refusal.hint(
                        "a peer of the ticket must be serving it (a share, seed, or fetch --serve) and reachable from this host, or a mirror of it must have it at URL.manifest",
                    )
                })?;
                fetched.bytes.to_vec()
            }
        };
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(ApiError::invalid(format!(
                "the manifest the ticket names is larger than {MAX_MANIFEST_BYTES} bytes"
            )));
        }
        let manifest = Manifest::parse_bytes(&bytes).map_err(|error| {
            ApiError::invalid(format!("the manifest the ticket names is invalid: {error}"))
        })?;
        if let (false, Some(key_id)) = (ticket.signed_as_named(&manifest), ticket.key_id) {
            return Err(ApiError::new(
                422,
                "verification-failed",
                format!(
                    "the manifest the ticket names is not signed by the key the ticket names ({key_id}); nothing was added"
                ),
            ));
        }
        let keep = bytes.clone();
        self.with(move |_, inner| {
            let kept = &mut inner.ticket_manifests;
            if !kept.iter().any(|(digest, _)| *digest == sha256) {
                if kept.len() == TICKET_MANIFESTS_KEPT {
                    kept.pop_front();
                }
                kept.push_back((sha256, keep));
            }
        })
        .await
        .ok_or_else(super::stopped)?;
        let loaded = Loaded {
            manifest,
            bytes,
            sha256,
        };
        let mut request = request.clone();
        ticket.add_mirrors_to(&mut request.mirrors);
        let relays = (ticket.relays.iter())
            .map(|entry| (entry.peer, entry.relays.clone()))
            .collect();
        Ok((loaded, request, ticket.peers, relays))
    }

    /// `POST /api/v1/downloads/preview`.
    pub(crate) async fn preview_download(
        &self,
        request: &AddDownload,
    ) -> Result<Preview, ApiError> {
        let (loaded, request, ticket_peers, ticket_relays) =
            self.download_manifest(request).await?;
        let request = &request;
        let check = self.judge(
            &loaded.manifest,
            request.publisher_key.as_deref(),
            request.require_signature,
        )?;
        let (peers, peer_relays) =
            download_peers(request, &loaded.manifest, ticket_peers, ticket_relays)?;
        download_mirrors(request)?;
        let id = ItemId::of(
            ItemKind::Download,
            &loaded.manifest.model_id,
            &loaded.manifest.chunks.merkle_root,
        );
        let (model_id, sha256) = (loaded.manifest.model_id.clone(), loaded.sha256);
        let (quota, into) = self
            .asked(move |shared, inner| {
                let placed = inner.supervisor.placement(&model_id, &sha256);
                Ok((
                    shared.quota_view(inner),
                    shared.library.download_dir_at(placed.as_ref()),
                ))
            })
            .await?;
        Ok(Preview {
            id: id.to_string(),
            kind: ItemKind::Download,
            model_id: loaded.manifest.model_id.to_string(),
            artifact_bytes: loaded.manifest.artifact_bytes,
            signature: signature_view(&check),
            asks: self
                .download_asks(
                    &loaded.manifest,
                    &check,
                    request,
                    peers.len(),
                    &peer_relays,
                    into,
                )
                .iter()
                .map(ask_of)
                .collect(),
            quota: Some(quota),
        })
    }

    /// `POST /api/v1/downloads`.
    pub(crate) async fn add_download(&self, request: AddDownload) -> Result<ItemView, ApiError> {
        request.caps.check().map_err(ApiError::invalid)?;
        let (loaded, request, ticket_peers, ticket_relays) =
            self.download_manifest(&request).await?;
        let manifest = &loaded.manifest;
        let check = self.judge(
            manifest,
            request.publisher_key.as_deref(),
            request.require_signature,
        )?;
        let (peers, peer_relays) = download_peers(&request, manifest, ticket_peers, ticket_relays)?;
        download_mirrors(&request)?;
        if request.seed_after && !request.serve {
            return Err(ApiError::invalid("seed_after needs serve"));
        }
        let mut bootstrap = Vec::new();
        for text in &request.dht_bootstrap {
            bootstrap.push(text.parse::<std::net::SocketAddrV4>().map_err(|_| {
                ApiError::invalid(format!("dht_bootstrap {text:?} is not IPv4:PORT"))
            })?);
        }
        if !bootstrap.is_empty() && !request.dht {
            return Err(ApiError::invalid("dht_bootstrap needs dht"));
        }
        let id = ItemId::of(
            ItemKind::Download,
            &manifest.model_id,
            &manifest.chunks.merkle_root,
        );
        let mut record = ItemRecord {
            id: id.clone(),
            model_id: manifest.model_id.to_string(),
            manifest_sha256: loaded.sha256.to_hex(),
            added_at: now_rfc3339(),
            paused: false,
            caps: request.caps,
            port: None,
            consent: ConsentRecord {
                serve: request.serve,
                fetch: true,
                seed_after: request.seed_after,
                dht: request.dht,
                at: now_rfc3339(),
            },
            publisher_key: request.publisher_key.clone(),
            require_signature: request.require_signature,
            work: Work::Download(DownloadRecord {
                peers: PeerAddrs::flatten(&peers)
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                serve: request.serve,
                seed_after: request.seed_after,
                dht: request.dht,
                dht_bootstrap: bootstrap,
                mirrors: request.mirrors.clone(),
                allow_plain_http_mirror: request.allow_plain_http_mirror,
                peer_relays: peer_relays
                    .iter()
                    .map(|(peer, relays)| PeerRelaysRecord {
                        peer: peer.to_string(),
                        relays: relays.iter().map(ToString::to_string).collect(),
                    })
                    .collect(),
                delivered: false,
                version_dir: None,
            }),
            withdrawn: None,
        };
        // From the supervisor's checks until the item is in, one command:
        // two adds at once cannot each pass the checks the other's fails.
        self.asked(move |shared, inner| {
            let manifest = &loaded.manifest;
            // Beside another version of the model, in a directory of its
            // own; decided in the same command as the add, so it holds.
            let version_dir = inner
                .supervisor
                .placement(&manifest.model_id, &loaded.sha256);
            // Before the first byte, and before anyone is asked.
            inner.supervisor.admit(
                &Candidate {
                    kind: ItemKind::Download,
                    model_id: &manifest.model_id,
                    merkle_root: &manifest.chunks.merkle_root,
                    artifact_bytes: manifest.artifact_bytes,
                    version_dir: version_dir.as_ref(),
                },
                crate::quota::free_bytes(&shared.library.downloads_dir()),
            )?;
            let into = shared.library.download_dir_at(version_dir.as_ref());
            let missing = Self::missing(
                &shared.download_asks(manifest, &check, &request, peers.len(), &peer_relays, into),
                &request.consent,
            );
            if !missing.is_empty() {
                return Err(ApiError::consent_needed(missing));
            }
            let check = shared.settle(check, request.consent.trust_key)?;
            if let Work::Download(download) = &mut record.work {
                download.version_dir = version_dir;
            }
            shared.insert(inner, record, &loaded, check)
        })
        .await
    }
}
