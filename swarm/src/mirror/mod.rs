//! The driver of a download's mirrors: HTTPS copies of the artifact a
//! person named (`docs/swarm.md`, "Mirrors"). The core decides which
//! chunk to ask which mirror for (`minimodel_node::mirror`); this module
//! speaks HTTP for it and reports what happened, typed.
//!
//! - [`url`](minimodel_verifier::mirror_url): what a mirror URL may be;
//! - [`http`]: what a response means (pure);
//! - [`client`]: the HTTP/1.1 client on hyper (keep-alive, TLS 1.3 with
//!   the system's roots, timeouts);
//! - [`token`]: tokens from the environment, each sent only to its origin
//!   (scheme, host and port).
//!
//! Before a mirror joins, the driver reads the artifact's chunk list
//! beside the first mirror that has one (`URL.chunk-list`, the file
//! `minimodel manifest --chunk-list-out` writes), keeps it only if it
//! leads to the manifest's Merkle root (and hashes to its
//! `chunk-list-sha256` when the manifest names one): every chunk from any
//! mirror is checked against it, with the proof it gives. Then each mirror
//! is asked for one byte (`Range: bytes=0-0`), through its redirects: the
//! answer must be a `206` naming the artifact's length, and carries the
//! validators the core compares with an earlier run's. A redirect is
//! followed within HTTPS only (within plain HTTP too, for a mirror given
//! as `http://` with the person's say), at most [`MAX_REDIRECTS`] in a
//! row; where a mirror redirected is remembered and asked directly until
//! it answers `401`, `403`, `404` or `410` (a signed URL that expired),
//! when the mirror's own URL is asked again.

pub mod client;
pub mod given;
pub mod http;
#[cfg(feature = "testing")]
pub mod test_server;
pub mod token;

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use minimodel_node::mirror::{
    MirrorChunkOutcome, MirrorConfig, MirrorEnd, MirrorFailure, MirrorFault, MirrorFigures,
    MirrorId, MirrorTrouble, MirrorUnusable, Validators,
};
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::chunk::ChunkData;
use minimodel_verifier::merkle::MerkleTree;
use minimodel_verifier::mirror_url::{MirrorUrl, MirrorUrlError, Plain, Scheme};
use minimodel_wire::ChunkIndex;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use self::client::{Client, RequestError};
pub use self::client::{Timeouts, Trust};
use self::http::{Verdict, classify, classify_whole};
pub use self::token::{MirrorToken, MirrorTokens, TOKENS_VAR, TokenError};

/// Redirects followed in a row, at most.
pub const MAX_REDIRECTS: u32 = 5;

/// The mirrors of a download, as the person gave them.
#[derive(Debug, Clone)]
pub struct MirrorSet {
    /// The mirror URLs, in order (their [`MirrorId`]s).
    pub urls: Vec<MirrorUrl>,
    /// Whether plain `http://` was allowed (for the URLs and their
    /// redirects).
    pub plain: Plain,
    /// Tokens, each sent to its origin only.
    pub tokens: MirrorTokens,
    /// The client's timeouts.
    pub timeouts: Timeouts,
    /// Whose certificates mirrors' must chain to.
    pub trust: Trust,
}

impl MirrorSet {
    /// `urls`, HTTPS only, no tokens, default timeouts.
    pub fn new(urls: Vec<MirrorUrl>) -> Self {
        Self {
            plain: if urls.iter().all(|url| url.scheme() == Scheme::Https) {
                Plain::Refused
            } else {
                Plain::Allowed
            },
            urls,
            tokens: MirrorTokens::default(),
            timeouts: Timeouts::default(),
            trust: Trust::System,
        }
    }

    /// The labels the core is started with, in order.
    pub fn labels(&self) -> Vec<String> {
        self.urls.iter().map(MirrorUrl::label).collect()
    }
}

/// What the artifact is, for checking what mirrors send.
#[derive(Debug, Clone)]
pub struct ArtifactFacts {
    /// Its bytes.
    pub bytes: u64,
    /// Its chunks.
    pub chunk_count: u32,
    /// The manifest's Merkle root.
    pub merkle_root: Sha256Digest,
    /// The manifest's `chunk-list-sha256`, when it names one.
    pub chunk_list_sha256: Option<Sha256Digest>,
    /// The chunks' lengths, when the manifest's scheme lists them.
    pub listed: Option<minimodel_verifier::ChunkGeometry>,
}

/// What the driver tells its node.
#[derive(Debug)]
pub enum MirrorEvent {
    /// The mirror is usable; its first answer carried these validators.
    Up {
        /// Which.
        mirror: MirrorId,
        /// What its answer carried.
        validators: Validators,
    },
    /// A request failed (`chunk` `None`: the mirror as a whole, before it
    /// joined).
    Failed {
        /// Which.
        mirror: MirrorId,
        /// The chunk asked, if any.
        chunk: Option<ChunkIndex>,
        /// What went wrong.
        failure: MirrorFailure,
    },
    /// The answer to a range began (it is the range asked).
    Started {
        /// Which.
        mirror: MirrorId,
        /// The chunk.
        chunk: ChunkIndex,
        /// What the answer carried.
        validators: Validators,
    },
    /// Bytes of a range arrived.
    Progress {
        /// Which.
        mirror: MirrorId,
    },
    /// A range arrived whole, not checked yet.
    Arrived {
        /// Which.
        mirror: MirrorId,
        /// The chunk.
        chunk: ChunkIndex,
        /// Its bytes.
        data: ChunkData,
    },
}

/// One mirror as the driver holds it.
struct Held {
    url: MirrorUrl,
    /// Where it redirected last, asked directly while it answers.
    resolved: Arc<Mutex<Option<MirrorUrl>>>,
    fetches: BTreeMap<u32, AbortHandle>,
    closed: bool,
}

/// The mirrors of one download, driven for its node.
pub(crate) struct MirrorDriver {
    client: Arc<Client>,
    mirrors: Vec<Held>,
    plain: Plain,
    facts: ArtifactFacts,
    /// The chunk list, once one was read and checked.
    tree: Arc<OnceLock<Arc<MerkleTree>>>,
    events: mpsc::Sender<MirrorEvent>,
    setup: Option<AbortHandle>,
}

impl MirrorDriver {
    /// Starts finding the chunk list and probing every mirror; events go
    /// to `events`.
    pub(crate) fn start(
        set: MirrorSet,
        facts: ArtifactFacts,
        agent: &str,
        events: mpsc::Sender<MirrorEvent>,
    ) -> Self {
        let client = Client::new(set.timeouts, set.tokens, agent, &set.trust);
        let mirrors: Vec<Held> = set
            .urls
            .into_iter()
            .take(minimodel_node::node::MAX_MIRRORS)
            .map(|url| Held {
                url,
                resolved: Arc::new(Mutex::new(None)),
                fetches: BTreeMap::new(),
                closed: false,
            })
            .collect();
        let tree = Arc::new(OnceLock::new());
        let setup = tokio::spawn(setup(
            Arc::clone(&client),
            mirrors
                .iter()
                .map(|held| (held.url.clone(), Arc::clone(&held.resolved)))
                .collect(),
            set.plain,
            facts.clone(),
            Arc::clone(&tree),
            events.clone(),
        ))
        .abort_handle();
        Self {
            client,
            mirrors,
            plain: set.plain,
            facts,
            tree,
            events,
            setup: Some(setup),
        }
    }

    /// The chunk list's tree, once read: the proofs of mirror chunks.
    pub(crate) fn tree(&self) -> Option<Arc<MerkleTree>> {
        self.tree.get().cloned()
    }

    /// Asks `mirror` for `range`, chunk `chunk`.
    pub(crate) fn fetch(&mut self, mirror: MirrorId, chunk: ChunkIndex, range: Range<u64>) {
        let Some(held) = self.mirrors.get_mut(usize::from(mirror.0)) else {
            return;
        };
        if held.closed {
            return;
        }
        let task = tokio::spawn(fetch_range(
            Arc::clone(&self.client),
            held.url.clone(),
            Arc::clone(&held.resolved),
            self.plain,
            self.facts.bytes,
            mirror,
            chunk,
            range,
            self.events.clone(),
        ));
        if let Some(old) = held.fetches.insert(chunk.0, task.abort_handle()) {
            old.abort();
        }
    }

    /// Abandons `mirror`'s range of `chunk` (its connection closes).
    pub(crate) fn cancel(&mut self, mirror: MirrorId, chunk: ChunkIndex) {
        if let Some(task) = self
            .mirrors
            .get_mut(usize::from(mirror.0))
            .and_then(|held| held.fetches.remove(&chunk.0))
        {
            task.abort();
        }
    }

    /// A range of `mirror` ended (arrived or failed): its task is done.
    pub(crate) fn ended(&mut self, mirror: MirrorId, chunk: ChunkIndex) {
        if let Some(held) = self.mirrors.get_mut(usize::from(mirror.0)) {
            held.fetches.remove(&chunk.0);
        }
    }

    /// `mirror` left the download: every range abandoned, nothing asked
    /// of it again.
    pub(crate) fn close(&mut self, mirror: MirrorId) {
        if let Some(held) = self.mirrors.get_mut(usize::from(mirror.0)) {
            held.closed = true;
            for (_, task) in std::mem::take(&mut held.fetches) {
                task.abort();
            }
        }
    }

    /// Stops everything.
    pub(crate) fn shutdown(&mut self) {
        if let Some(setup) = self.setup.take() {
            setup.abort();
        }
        for index in 0..self.mirrors.len() {
            self.close(MirrorId(index as u16));
        }
        self.client.forget_idle();
    }
}

impl Drop for MirrorDriver {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Reads the chunk list beside the first mirror that has a good one, then
/// probes every mirror (one byte, through its redirects) and reports each.
async fn setup(
    client: Arc<Client>,
    mirrors: Vec<(MirrorUrl, Arc<Mutex<Option<MirrorUrl>>>)>,
    plain: Plain,
    facts: ArtifactFacts,
    tree: Arc<OnceLock<Arc<MerkleTree>>>,
    events: mpsc::Sender<MirrorEvent>,
) {
    let report = |mirror: usize, failure: MirrorFailure| {
        let events = events.clone();
        async move {
            let _ = events
                .send(MirrorEvent::Failed {
                    mirror: MirrorId(mirror as u16),
                    chunk: None,
                    failure,
                })
                .await;
        }
    };
    let mut dropped = vec![false; mirrors.len()];
    let mut missing = None;
    for (index, (url, _)) in mirrors.iter().enumerate() {
        if tree.get().is_some() {
            break;
        }
        match read_chunk_list(&client, url, plain, &facts).await {
            Ok(read) => {
                let _ = tree.set(read);
            }
            Err(failure @ MirrorFailure::Fault(_)) => {
                dropped[index] = true;
                report(index, failure).await;
            }
            Err(failure) => {
                missing.get_or_insert_with(|| (url.label(), failure));
            }
        }
    }
    if tree.get().is_none() {
        let reason = match missing {
            Some((label, failure)) => format!("{label}.chunk-list: {}", describe(&failure)),
            None => "no mirror had one".into(),
        };
        for index in (0..mirrors.len()).filter(|index| !dropped[*index]) {
            let failure = MirrorFailure::Unusable(MirrorUnusable::NoChunkList {
                reason: reason.clone(),
            });
            report(index, failure).await;
        }
        return;
    }
    let mut probes = tokio::task::JoinSet::new();
    for (index, (url, resolved)) in mirrors.into_iter().enumerate() {
        if dropped[index] {
            continue;
        }
        let (client, events, bytes) = (Arc::clone(&client), events.clone(), facts.bytes);
        probes.spawn(async move {
            let mirror = MirrorId(index as u16);
            let mut failures = 0u32;
            loop {
                let probe = ask_range(&client, &url, &resolved, plain, bytes, 0, 0..1).await;
                let event = match probe {
                    Ok((validators, response)) => {
                        // The one byte is read so that the connection is
                        // kept for the first chunk.
                        let _ = response.read_body(1, |_| {}).await;
                        MirrorEvent::Up { mirror, validators }
                    }
                    Err(MirrorFailure::Trouble(trouble)) if failures < 7 => {
                        failures += 1;
                        let _ = events
                            .send(MirrorEvent::Failed {
                                mirror,
                                chunk: None,
                                failure: MirrorFailure::Trouble(trouble),
                            })
                            .await;
                        let wait = Duration::from_secs(1 << failures.min(6));
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    Err(MirrorFailure::Trouble(last)) => MirrorEvent::Failed {
                        mirror,
                        chunk: None,
                        failure: MirrorFailure::Unusable(MirrorUnusable::GaveUp {
                            failures: failures + 1,
                            last,
                        }),
                    },
                    Err(failure) => MirrorEvent::Failed {
                        mirror,
                        chunk: None,
                        failure,
                    },
                };
                let _ = events.send(event).await;
                return;
            }
        });
    }
    while probes.join_next().await.is_some() {}
}

fn describe(failure: &MirrorFailure) -> String {
    match failure {
        MirrorFailure::Fault(fault) => fault.to_string(),
        MirrorFailure::Trouble(trouble) => trouble.to_string(),
        MirrorFailure::Unusable(reason) => reason.to_string(),
    }
}

/// The longest chunk list read: 74 bytes a chunk (a line with its
/// length), plus one.
fn chunk_list_limit(count: u32) -> u64 {
    crate::resume::chunk_list_limit(count)
}

/// Reads `URL.chunk-list` (through redirects) and checks it against the
/// manifest: every line a chunk hash, as many as chunks, leading to the
/// Merkle root (and hashing to `chunk-list-sha256` when named). One that
/// is there but does not lead to the root is a fault (another file's); one
/// that is not there, or unreadable for a while, is not.
async fn read_chunk_list(
    client: &Arc<Client>,
    url: &MirrorUrl,
    plain: Plain,
    facts: &ArtifactFacts,
) -> Result<Arc<MerkleTree>, MirrorFailure> {
    let limit = chunk_list_limit(facts.chunk_count);
    let bytes = get_whole(client, url.chunk_list_url(), plain, limit).await?;
    let no_list = |why: &str| {
        MirrorFailure::Unusable(MirrorUnusable::NoChunkList {
            reason: why.to_owned(),
        })
    };
    let hashes = match &facts.listed {
        Some(listed) => minimodel_verifier::chunk_list::ChunkList::parse_as(&bytes, listed)
            .map(|list| list.into_parts().0),
        None => crate::resume::parse_chunk_list(&bytes, facts.chunk_count),
    }
    .ok_or_else(|| no_list("not a chunk list of this artifact's chunks"))?;
    if let Some(expected) = facts.chunk_list_sha256
        && Sha256Digest::of(&bytes) != expected
    {
        return Err(MirrorFailure::Fault(MirrorFault::OtherChunkList));
    }
    let tree = MerkleTree::from_chunk_hashes(hashes).map_err(|e| no_list(&e.to_string()))?;
    if tree.root() != facts.merkle_root {
        return Err(MirrorFailure::Fault(MirrorFault::OtherChunkList));
    }
    Ok(Arc::new(tree))
}

/// The whole body at `target` (at most `limit` bytes), through at most
/// [`MAX_REDIRECTS`] redirects that `plain` allows.
async fn get_whole(
    client: &Arc<Client>,
    mut target: MirrorUrl,
    plain: Plain,
    limit: u64,
) -> Result<Vec<u8>, MirrorFailure> {
    for _ in 0..=MAX_REDIRECTS {
        let response = client.get(&target, None).await.map_err(request_failure)?;
        match classify_whole(response.status, &response.headers)? {
            Some(location) => target = follow(&target, &location, plain)?,
            None => {
                let data = response
                    .read_body(limit, |_| {})
                    .await
                    .map_err(MirrorFailure::Trouble)?;
                return Ok(data.to_contiguous().to_vec());
            }
        }
    }
    Err(MirrorFailure::Unusable(MirrorUnusable::TooManyRedirects {
        max: MAX_REDIRECTS,
    }))
}

/// Reads a chunk list at `url`: a manifest's `chunk-list-route`, or
/// `URL.chunk-list` beside a mirror (`https://` only, by the mirror URL
/// rules; redirects stay HTTPS): at most 74 bytes a chunk of
/// `chunk_count`, plus one, the system's roots trusted, no token sent.
/// The bytes prove nothing by themselves: the caller keeps them only if
/// they hash to the manifest's Merkle root
/// (`resume::reuse::NewChunkList::check`). `Err` says why, in words.
pub async fn read_chunk_list_route(
    url: &str,
    chunk_count: u32,
    agent: &str,
) -> Result<Vec<u8>, String> {
    let target = MirrorUrl::parse(url, Plain::Refused).map_err(|e| e.to_string())?;
    let client = Client::new(
        Timeouts::default(),
        MirrorTokens::default(),
        agent,
        &Trust::System,
    );
    get_whole(
        &client,
        target,
        Plain::Refused,
        chunk_list_limit(chunk_count),
    )
    .await
    .map_err(|e| describe(&e))
}

/// The manifest file published beside mirror `url`
/// ([`MirrorUrl::manifest_url`]: `URL.manifest`, no query): at most
/// `limit` bytes, through redirects that stay HTTPS, with the token
/// `tokens` hold for its host. The bytes prove nothing by themselves: the
/// caller keeps them only if they hash to the digest it was given.
pub async fn read_manifest_beside(
    url: &MirrorUrl,
    tokens: MirrorTokens,
    trust: &Trust,
    agent: &str,
    limit: u64,
) -> Result<Vec<u8>, String> {
    let client = Client::new(Timeouts::default(), tokens, agent, trust);
    get_whole(&client, url.manifest_url(), Plain::Refused, limit)
        .await
        .map_err(|e| describe(&e))
}

/// A chunk list [`read_new_chunk_list`] read and checked.
#[derive(Debug)]
pub struct ChunkListRead {
    /// The list, checked against the manifest.
    pub list: crate::resume::reuse::NewChunkList,
    /// Its bytes as read.
    pub bytes: Vec<u8>,
    /// Where it was read: a URL, shown without any query.
    pub from: String,
}

/// A new version's chunk list, for copying the chunks that older versions
/// on this machine share with it (or, cut at parts, for its lengths): read
/// at `manifest`'s chunk-list-route (HTTPS, the system's roots, no token)
/// and beside each of the `mirrors` ([`MirrorUrl::chunk_list_url`], as a
/// download's mirrors read it: with the set's roots, its token for the
/// mirror's origin, plain HTTP only where the set allows it), all at once,
/// the first that hashes to the manifest's Merkle root (and its
/// `chunk-list-sha256` when named) kept: a route whose name does not
/// resolve in time (a host with no resolver answering) holds back no
/// mirror. `Err` says, in words, why each place gave none, the route's
/// first.
pub async fn read_new_chunk_list(
    manifest: &minimodel_verifier::Manifest,
    mirrors: Option<&MirrorSet>,
    agent: &str,
) -> Result<ChunkListRead, String> {
    let route = (manifest.chunks.chunk_list.iter()).find_map(|list| list.route.as_ref());
    let urls = mirrors.map_or(&[][..], |set| &set.urls[..]);
    if route.is_none() && urls.is_empty() {
        return Err("the manifest names no chunk-list-route, and no mirror is given".to_owned());
    }
    let count = u32::try_from(manifest.chunks.chunk_count).unwrap_or(u32::MAX);
    let check = move |place: String, read: Result<Vec<u8>, String>| {
        read.and_then(|bytes| {
            crate::resume::reuse::NewChunkList::check(manifest, &bytes)
                .map(|list| ChunkListRead {
                    list,
                    bytes,
                    from: place.clone(),
                })
                .map_err(|e| format!("not this version's chunk list ({e})"))
        })
        .map_err(|error| format!("{place}: {error}"))
    };
    let mut pending: Vec<crate::first::Attempt<'_, ChunkListRead>> = Vec::new();
    if let Some(route) = route {
        pending.push(Box::pin(async move {
            let place = route.to_string();
            let read = read_chunk_list_route(&place, count, agent).await;
            check(place, read)
        }));
    }
    if let Some(set) = mirrors {
        let client = Client::new(set.timeouts, set.tokens.clone(), agent, &set.trust);
        for url in &set.urls {
            let client = Arc::clone(&client);
            pending.push(Box::pin(async move {
                let place = url.chunk_list_url().to_string();
                let limit = chunk_list_limit(count);
                let read = get_whole(&client, url.chunk_list_url(), set.plain, limit).await;
                check(place, read.map_err(|e| describe(&e)))
            }));
        }
    }
    // Each place's reason, in the order they were named.
    crate::first::first_ok(pending).await.map_err(|mut failed| {
        failed.sort_by_key(|(place, _)| *place);
        let why: Vec<String> = failed.into_iter().map(|(_, error)| error).collect();
        why.join("; ")
    })
}

/// Where a redirect from `from` to `location` goes, if a mirror may go
/// there: HTTPS stays HTTPS.
fn follow(from: &MirrorUrl, location: &str, plain: Plain) -> Result<MirrorUrl, MirrorFailure> {
    let allowed = match from.scheme() {
        Scheme::Https => Plain::Refused,
        Scheme::Http => plain,
    };
    from.join(location, allowed).map_err(|error| {
        let to: String = location
            .split(['/', '?', '#'])
            .take(3)
            .collect::<Vec<_>>()
            .join("/")
            .chars()
            .take(120)
            .collect();
        let why = match error {
            MirrorUrlError::PlainHttp => "it leaves HTTPS".to_owned(),
            other => other.to_string(),
        };
        MirrorFailure::Fault(MirrorFault::BadRedirect { to, why })
    })
}

fn request_failure(error: RequestError) -> MirrorFailure {
    match error {
        RequestError::Trouble(trouble) => MirrorFailure::Trouble(trouble),
        RequestError::Unusable(reason) => MirrorFailure::Unusable(reason),
    }
}

/// Asks for `range` (end exclusive) of chunk `chunk`, from where the
/// mirror redirected last or from its URL, following redirects: the
/// answer once it is the range asked.
async fn ask_range(
    client: &Arc<Client>,
    url: &MirrorUrl,
    resolved: &Arc<Mutex<Option<MirrorUrl>>>,
    plain: Plain,
    artifact_bytes: u64,
    chunk: u32,
    range: Range<u64>,
) -> Result<(Validators, client::Response), MirrorFailure> {
    let remembered = resolved.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let from_remembered = remembered.is_some();
    let mut target = remembered.unwrap_or_else(|| url.clone());
    let mut redirects = 0;
    let mut retried = false;
    loop {
        let response = client
            .get(&target, Some(range.clone()))
            .await
            .map_err(request_failure)?;
        match classify(
            response.status,
            &response.headers,
            &range,
            artifact_bytes,
            chunk,
        ) {
            Verdict::Range { validators, .. } => {
                if target != *url {
                    *resolved.lock().unwrap_or_else(|e| e.into_inner()) = Some(target);
                }
                return Ok((validators, response));
            }
            Verdict::Redirect(location) => {
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(MirrorFailure::Unusable(MirrorUnusable::TooManyRedirects {
                        max: MAX_REDIRECTS,
                    }));
                }
                target = follow(&target, &location, plain)?;
            }
            Verdict::Failed(MirrorFailure::Unusable(MirrorUnusable::Status {
                status: 401 | 403 | 404 | 410,
            })) if from_remembered && !retried => {
                // A redirect's target that expired: from the mirror's own
                // URL again.
                retried = true;
                *resolved.lock().unwrap_or_else(|e| e.into_inner()) = None;
                target = url.clone();
                redirects = 0;
            }
            Verdict::Failed(failure) => return Err(failure),
        }
    }
}

/// One range for the core: asked, begun, read, handed over.
#[allow(clippy::too_many_arguments)]
async fn fetch_range(
    client: Arc<Client>,
    url: MirrorUrl,
    resolved: Arc<Mutex<Option<MirrorUrl>>>,
    plain: Plain,
    artifact_bytes: u64,
    mirror: MirrorId,
    chunk: ChunkIndex,
    range: Range<u64>,
    events: mpsc::Sender<MirrorEvent>,
) {
    let len = range.end - range.start;
    let asked = ask_range(
        &client,
        &url,
        &resolved,
        plain,
        artifact_bytes,
        chunk.0,
        range,
    )
    .await;
    let response = match asked {
        Ok((validators, response)) => {
            let _ = events
                .send(MirrorEvent::Started {
                    mirror,
                    chunk,
                    validators,
                })
                .await;
            response
        }
        Err(failure) => {
            let _ = events
                .send(MirrorEvent::Failed {
                    mirror,
                    chunk: Some(chunk),
                    failure,
                })
                .await;
            return;
        }
    };
    // Progress at most every 100 ms: it keeps the mirror from looking
    // silent, and costs the node a wake-up each.
    let mut last = Instant::now();
    let body = response
        .read_body(len, |_| {
            if last.elapsed() >= Duration::from_millis(100) {
                last = Instant::now();
                let _ = events.try_send(MirrorEvent::Progress { mirror });
            }
        })
        .await;
    let event = match body {
        Ok(data) if data.len() as u64 == len => MirrorEvent::Arrived {
            mirror,
            chunk,
            data,
        },
        Ok(data) => MirrorEvent::Failed {
            mirror,
            chunk: Some(chunk),
            failure: MirrorFailure::Trouble(MirrorTrouble::Short {
                expected: len,
                got: data.len() as u64,
            }),
        },
        Err(trouble) => MirrorEvent::Failed {
            mirror,
            chunk: Some(chunk),
            failure: MirrorFailure::Trouble(trouble),
        },
    };
    let _ = events.send(event).await;
}

/// Checks a mirror's chunk against the chunk list's tree: the same Merkle
/// check as a peer's chunk, with the proof the tree gives. `Err` with the
/// chunk's SHA-256 by the list and that of the bytes when it fails.
pub(crate) fn check_chunk(
    verifier: &minimodel_verifier::chunk::ChunkVerifier,
    tree: &MerkleTree,
    chunk: ChunkIndex,
    data: ChunkData,
    sha256: impl FnOnce(&ChunkData) -> Sha256Digest,
) -> Result<(minimodel_verifier::VerifiedChunk, Vec<Sha256Digest>), (Sha256Digest, Sha256Digest)> {
    let index = minimodel_verifier::ChunkIndex(chunk.0);
    let expected = tree
        .chunk_hashes()
        .get(chunk.0 as usize)
        .copied()
        .unwrap_or(Sha256Digest([0; 32]));
    let proof = tree.proof(chunk.0).unwrap_or_default();
    let got = std::cell::Cell::new(None);
    let hash = |data: &ChunkData| {
        let digest = sha256(data);
        got.set(Some(digest));
        digest
    };
    let fallback = data.clone();
    match verifier.verify_with(index, data, &proof, hash) {
        Ok(verified) => Ok((verified, proof)),
        Err(_) => Err((expected, got.get().unwrap_or_else(|| fallback.sha256()))),
    }
}
