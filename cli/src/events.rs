//! The JSON events of `--json`: one object per line on standard output,
//! named by its `event` field. Every number carries its unit in its name
//! (`_bytes`, `_ms`, `_seconds`, `_bytes_per_second`) unless the name is a
//! count (`chunks_fetched`, `peers`).
//!
//! `docs/schemas/events.schema.json` is generated from these types (see
//! `crate::schema`); a test keeps the two equal and checks real output
//! against it.

use std::net::SocketAddr;
use std::path::PathBuf;

use minimodel_swarm::offer::PeerOffer;
use minimodel_swarm::resume::DownloadStatus;
use minimodel_verifier::receipt::{CheckName, PeerContribution};
use serde::Serialize;

/// One line of `--json` output.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[cfg_attr(test, schemars(transform = crate::schema::close_events))]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// `fixture` wrote a synthetic `.slm`.
    Fixture {
        /// The file written.
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// The seed of its content.
        seed: u64,
        /// Quantization of the weights (`f32`, `q8_0`, ...).
        quantization: String,
        /// Model shape, `layers=..,hidden=..,heads=..,vocab=..,context=..`.
        model_shape: String,
        /// SHA-256 of the tokenizer section (hex).
        #[cfg_attr(test, schemars(with = "crate::schema::Sha256Hex"))]
        tokenizer_sha256: String,
        /// SHA-256 of the tensor layout table (hex).
        #[cfg_attr(test, schemars(with = "crate::schema::Sha256Hex"))]
        tensor_layout_sha256: String,
    },
    /// `manifest` described a file.
    Manifest {
        /// Where the manifest was written; null when it is in `manifest`.
        path: Option<PathBuf>,
        /// The model id.
        model_id: String,
        /// Size of the artifact.
        artifact_bytes: u64,
        /// SHA-256 of the artifact (hex).
        #[cfg_attr(test, schemars(with = "crate::schema::Sha256Hex"))]
        artifact_sha256: String,
        /// Chunk size in bytes.
        chunk_size: u32,
        /// Chunks in the artifact.
        chunk_count: u64,
        /// Merkle root of the chunks (hex).
        #[cfg_attr(test, schemars(with = "crate::schema::Sha256Hex"))]
        merkle_root: String,
        /// Whether it was signed (`--sign`): then v1, else v0.
        signed: bool,
        /// Its `key-id`: the signing key's id when signed.
        key_id: String,
        /// The manifest text, when no `-o` was given.
        manifest: Option<String>,
    },
    /// `sign` (or `manifest --sign`) signed a manifest.
    ManifestSigned {
        /// Where the signed manifest was written.
        path: Option<PathBuf>,
        /// The model id.
        model_id: String,
        /// The publisher id.
        publisher_id: String,
        /// The signing key's id.
        #[cfg_attr(test, schemars(with = "crate::schema::KeyIdText"))]
        key_id: String,
        /// The signing key.
        #[cfg_attr(test, schemars(with = "crate::schema::PublicKeyText"))]
        publisher_key: String,
    },
    /// The manifest's signature was checked (before anything else was
    /// done with it).
    Signature {
        /// `signed` (the signature verified) or `unsigned`.
        #[cfg_attr(test, schemars(with = "crate::schema::SignatureStatusText"))]
        status: String,
        /// The manifest's publisher id.
        publisher_id: String,
        /// The signing key's id; null when unsigned.
        #[cfg_attr(test, schemars(with = "Option<crate::schema::KeyIdText>"))]
        key_id: Option<String>,
        /// The signing key; null when unsigned.
        #[cfg_attr(test, schemars(with = "Option<crate::schema::PublicKeyText>"))]
        publisher_key: Option<String>,
        /// Why the key is trusted: `pinned`, `publisher-key`, `first-use`
        /// or `not-pinned`; null when unsigned.
        #[cfg_attr(test, schemars(with = "Option<crate::schema::KeyTrustDef>"))]
        trust: Option<String>,
    },
    /// A publisher key was pinned in the keyring.
    KeyPinned {
        /// The publisher id.
        publisher_id: String,
        /// The key's id.
        #[cfg_attr(test, schemars(with = "crate::schema::KeyIdText"))]
        key_id: String,
        /// The key.
        #[cfg_attr(test, schemars(with = "crate::schema::PublicKeyText"))]
        publisher_key: String,
        /// How: `first-use`, `publisher-key`, `key-pin` or `rotation`.
        pinned_by: String,
        /// The keyring file.
        keyring: PathBuf,
    },
    /// `key list`: one pin of the keyring.
    KeyPin {
        /// The publisher id.
        publisher_id: String,
        /// The key's id.
        #[cfg_attr(test, schemars(with = "crate::schema::KeyIdText"))]
        key_id: String,
        /// The key.
        #[cfg_attr(test, schemars(with = "crate::schema::PublicKeyText"))]
        publisher_key: String,
        /// How it was pinned.
        pinned_by: String,
        /// When, RFC 3339 UTC.
        pinned_at: String,
    },
    /// `key forget`: a pin removed (or none there).
    KeyForgotten {
        /// The publisher id.
        publisher_id: String,
        /// The key that was pinned; null when none was.
        #[cfg_attr(test, schemars(with = "Option<crate::schema::KeyIdText>"))]
        key_id: Option<String>,
    },
    /// `key new`: a key pair was written.
    KeyCreated {
        /// The secret key file (mode 0600).
        secret_key_file: PathBuf,
        /// The public key file.
        public_key_file: PathBuf,
        /// The key's id.
        #[cfg_attr(test, schemars(with = "crate::schema::KeyIdText"))]
        key_id: String,
        /// The public key.
        #[cfg_attr(test, schemars(with = "crate::schema::PublicKeyText"))]
        public_key: String,
    },
    /// `key show`: a key.
    Key {
        /// The key's id.
        #[cfg_attr(test, schemars(with = "crate::schema::KeyIdText"))]
        key_id: String,
        /// The public key.
        #[cfg_attr(test, schemars(with = "crate::schema::PublicKeyText"))]
        public_key: String,
        /// Whether it was read from a secret key file.
        secret: bool,
    },
    /// `key rotate`: a rotation statement was written.
    KeyRotation {
        /// The statement.
        path: PathBuf,
        /// The key handing over.
        #[cfg_attr(test, schemars(with = "crate::schema::KeyIdText"))]
        old_key_id: String,
        /// The key taking over.
        #[cfg_attr(test, schemars(with = "crate::schema::KeyIdText"))]
        new_key_id: String,
        /// The key taking over, whole.
        #[cfg_attr(test, schemars(with = "crate::schema::PublicKeyText"))]
        new_key: String,
    },
    /// `key accept-rotation`: the pins of the old key moved to the new.
    RotationAccepted {
        /// The key handing over.
        #[cfg_attr(test, schemars(with = "crate::schema::KeyIdText"))]
        old_key_id: String,
        /// The key taking over.
        #[cfg_attr(test, schemars(with = "crate::schema::KeyIdText"))]
        new_key_id: String,
        /// The publishers whose pin moved (none: nothing changed).
        publishers: Vec<String>,
    },
    /// `verify` passed every check and wrote a receipt.
    Verified {
        /// The file checked.
        path: PathBuf,
        /// The model id.
        model_id: String,
        /// The checks passed, in order.
        #[cfg_attr(test, schemars(with = "Vec<crate::schema::CheckNameDef>"))]
        checks: Vec<CheckName>,
        /// The receipt written.
        receipt: PathBuf,
    },
    /// `status`: one download in the directory.
    Download {
        /// What `status` found.
        #[serde(flatten)]
        #[cfg_attr(test, schemars(with = "crate::schema::DownloadStatusDef"))]
        status: DownloadStatus,
    },
    /// `request` wrote an import request.
    Request {
        /// Where it was written; null when it is in `request`.
        path: Option<PathBuf>,
        /// The model id.
        model_id: String,
        /// Size of the artifact.
        artifact_bytes: u64,
        /// SHA-256 of the artifact (hex).
        #[cfg_attr(test, schemars(with = "crate::schema::Sha256Hex"))]
        artifact_sha256: String,
        /// Offers in the request.
        offers: usize,
        /// The request itself, when no `-o` was given
        /// (`docs/schemas/import-request.schema.json`).
        #[cfg_attr(test, schemars(with = "Option<serde_json::Value>"))]
        request: Option<serde_json::Value>,
    },
    /// A seeder's peer offer (`seed`, `fetch --serve`). Its fields are the
    /// offer's (`docs/formats.md`); their schema is not published yet.
    Offer {
        /// The offer.
        #[serde(flatten)]
        #[cfg_attr(test, schemars(with = "crate::schema::AnyObject"))]
        offer: PeerOffer,
    },
    /// A ticket (`ticket new`, `ticket show`; `seed` and `fetch --serve`
    /// print their own): the one string to share (`docs/formats.md`).
    Ticket {
        /// The ticket, `mm1...`.
        ticket: String,
        /// SHA-256 of the manifest file it names (hex).
        #[cfg_attr(test, schemars(with = "crate::schema::Sha256Hex"))]
        manifest_sha256: String,
        /// The key id of the manifest's publisher key; null when unsigned.
        #[cfg_attr(test, schemars(with = "Option<crate::schema::KeyIdText>"))]
        key_id: Option<String>,
        /// Its peers, `PEER_ID@ADDR[,ADDR...]`.
        peers: Vec<String>,
        /// The relays its peers name, `PEER_ID>RELAY_ID@ADDR`, one per
        /// relay (`docs/relay.md`).
        relays: Vec<String>,
        /// Its mirrors: `https://` URLs of the artifact, with the manifest
        /// at `URL.manifest` beside each (`docs/swarm.md`, "Mirrors").
        mirrors: Vec<String>,
        /// Addresses given that the ticket leaves out (a peer's after its
        /// first four), `PEER_ID@ADDR`.
        left_out: Vec<String>,
        /// Who can use it, by what it names: `anywhere` (a global
        /// address, a relay, or a mirror at a global address or a
        /// public-looking name), `lan-only` (only private addresses, no relay: only
        /// hosts on the network it was made on) or
        /// `host-only` (only loopback addresses).
        reach: String,
    },
    /// `fetch`: the artifact is already in DIR.
    AlreadyComplete {
        /// The artifact.
        path: PathBuf,
        /// Its receipt.
        receipt: PathBuf,
        /// When its bytes were last checked (RFC 3339 UTC).
        verified_at: String,
        /// Whether this run read it again.
        rechecked_now: bool,
    },
    /// `fetch`: the download directory was opened.
    Opened {
        /// What opening did, in words.
        outcome: String,
        /// Chunks verified after opening.
        chunks_verified: u32,
        /// Chunks in the artifact.
        chunk_count: u32,
        /// Chunks brought back from the journal.
        chunks_from_journal: u32,
        /// Bytes verified after opening (taken over from earlier runs).
        resumed_bytes: u64,
        /// How long opening took.
        elapsed_ms: u64,
    },
    /// A peer finished its handshake.
    PeerConnected {
        /// Its id.
        #[cfg_attr(test, schemars(with = "crate::schema::PeerIdText"))]
        peer: String,
        /// Its address.
        #[cfg_attr(test, schemars(with = "String"))]
        addr: SocketAddr,
        /// Whether we dialed it.
        dialed: bool,
        /// Whether it serves.
        serving: bool,
        /// Its agent string.
        agent: String,
        /// The congestion controller that paces what we send it (`delay`,
        /// `cubic`, `new-reno` or `bbr`), read from the connection; null
        /// when the transport does not say.
        congestion: Option<String>,
    },
    /// A peer left or was dropped.
    PeerDisconnected {
        /// Its id.
        #[cfg_attr(test, schemars(with = "crate::schema::PeerIdText"))]
        peer: String,
        /// Its address.
        #[cfg_attr(test, schemars(with = "String"))]
        addr: SocketAddr,
        /// Why, in words.
        reason: String,
        /// Whose fault it was: `peer`, `local` or `environment`.
        blame: String,
        /// Chunks we served it.
        uploaded_chunks: u64,
        /// Bytes we served it.
        uploaded_bytes: u64,
    },
    /// A connection attempt or handshake failed or was refused.
    Refused {
        /// The other side.
        #[cfg_attr(test, schemars(with = "String"))]
        addr: SocketAddr,
        /// Why, in words.
        reason: String,
    },
    /// A step of mapping this node's listening port on its router (UPnP
    /// IGD, NAT-PMP or PCP): `mapped` (peers outside reach it at
    /// `external`), `unavailable` (no router maps ports; tried again
    /// later), `lost` (a renewal failed until the lease ended), `removed`
    /// or `not-removed` (on stop).
    PortMapping {
        /// `mapped`, `unavailable`, `lost`, `removed` or `not-removed`.
        step: String,
        /// `UPnP`, `NAT-PMP` or `PCP`.
        #[serde(skip_serializing_if = "Option::is_none")]
        protocol: Option<String>,
        /// Where peers outside reach this node (with `mapped`).
        #[serde(skip_serializing_if = "Option::is_none")]
        #[cfg_attr(test, schemars(with = "Option<String>"))]
        external: Option<SocketAddr>,
        /// The lease the router granted (0: no end).
        #[serde(skip_serializing_if = "Option::is_none")]
        lease_seconds: Option<u64>,
        /// Why, in words (with `unavailable`, `lost`, `not-removed`).
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A step of local discovery (`--lan`, mDNS): `started` (listening
    /// for neighbours, and announcing at `port` when the node listens),
    /// `unavailable` (mDNS could not start: the node goes on without it),
    /// `heard` (a neighbour of this swarm, dialed at `addrs`).
    Lan {
        /// `started`, `unavailable` or `heard`.
        step: String,
        /// The announced port (with `started`, when announcing).
        #[serde(skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        /// The neighbour (with `heard`).
        #[serde(skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
        /// Its addresses inside our networks (with `heard`).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        #[cfg_attr(test, schemars(with = "Vec<String>"))]
        addrs: Vec<SocketAddr>,
        /// Why (with `unavailable`).
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// `relay`: the relay listens (`docs/relay.md`); peers name it as
    /// `PEER_ID@HOST:PORT`.
    Relay {
        /// Where it listens.
        #[cfg_attr(test, schemars(with = "String"))]
        addr: SocketAddr,
        /// Its peer id (the key peers pin).
        peer_id: String,
    },
    /// `relay`: a step of the relay: `registered`, `register-refused`,
    /// `left`, `introduced` (`peer` asked for `target`; their `channel`),
    /// `channel-closed` (with the `bytes` it carried).
    RelayStep {
        /// The step.
        step: String,
        /// The peer it concerns (the asker of an introduction).
        #[serde(skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
        /// The peer asked for (with `introduced`).
        #[serde(skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        /// Where the peer's connection comes from.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[cfg_attr(test, schemars(with = "Option<String>"))]
        addr: Option<SocketAddr>,
        /// The pair's channel (16 hex digits).
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        /// Why, in words.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Bytes the channel carried (with `channel-closed`).
        #[serde(skip_serializing_if = "Option::is_none")]
        bytes: Option<u64>,
    },
    /// `relay`: what it holds and has carried, every 10 s and once more
    /// when it stops (`last`).
    RelayStats {
        /// Peers registered now.
        registrations: usize,
        /// Connections up that have not registered yet, handshakes in
        /// progress included.
        unregistered: usize,
        /// Channels open now.
        channels: usize,
        /// Introductions made.
        introduced: u64,
        /// Datagrams passed on.
        forwarded: u64,
        /// Their bytes (UDP payload, the relay header included).
        forwarded_bytes: u64,
        /// Datagrams dropped, by reason: `unknown-channel`, `not-an-end`,
        /// `rate-limited`, `hour-used`.
        dropped: std::collections::BTreeMap<String, u64>,
        /// What the relay's limits turned away, by limit:
        /// `handshakes`, `network-handshakes`, `unregistered`,
        /// `network-unregistered`, `not-allowed`, `registrations`,
        /// `network-registrations`, `introduction-rate`, `pairs`,
        /// `node-pairs`, `network-pairs`, `pair-hour`.
        refused: std::collections::BTreeMap<String, u64>,
        /// Whether it stopped.
        last: bool,
    },
    /// A step with a relay this node uses (`docs/relay.md`): registered,
    /// lost, an introduction asked or made, the fallback to the relay's
    /// channel, a direct link that took the relayed one's place.
    RelayLink {
        /// The relay.
        #[cfg_attr(test, schemars(with = "String"))]
        relay: SocketAddr,
        /// The peer concerned, if one is.
        #[serde(skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
        /// What happened, in words.
        step: String,
    },
    /// Who can reach this node and how (`docs/swarm.md`, "Who can reach
    /// a node"): the first verdict, and every change of it. `verdict` is
    /// `not-listening`, `host-only` (loopback only), `lan-only` (only its
    /// own network: private addresses, no mapping, no relay), `direct`
    /// (a public address; `confirmed` once a peer from another network
    /// came in there unasked), `mapped` (a port its router maps),
    /// `punch` (through a cone router, after a relay in `via` or, with
    /// none, a peer of its swarm introduces) or `relay` (behind a
    /// symmetric router: only through the relays in `via`).
    Reachability {
        /// The verdict's name.
        verdict: String,
        /// The verdict in words.
        detail: String,
        /// The address peers reach it at (with `direct`, `mapped`, and
        /// `punch` when the outside address is known).
        #[serde(skip_serializing_if = "Option::is_none")]
        #[cfg_attr(test, schemars(with = "Option<String>"))]
        addr: Option<SocketAddr>,
        /// Whether a peer from another network came in at `addr` unasked
        /// (with `direct`).
        #[serde(skip_serializing_if = "Option::is_none")]
        confirmed: Option<bool>,
        /// The addresses it listens at (with `host-only`, `lan-only`).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        #[cfg_attr(test, schemars(with = "Vec<String>"))]
        addrs: Vec<SocketAddr>,
        /// The relays it is registered with.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        #[cfg_attr(test, schemars(with = "Vec<String>"))]
        via: Vec<SocketAddr>,
        /// What to do about it, when there is something to do.
        #[serde(skip_serializing_if = "Option::is_none")]
        advice: Option<String>,
    },
    /// Peers in different networks agree on the address they see this
    /// node's connections come from (its router's outside address behind
    /// a NAT); said again when it changes.
    PublicAddress {
        /// The IP address.
        ip: String,
        /// The one outside port they all see; absent when each sees
        /// another (a symmetric NAT).
        #[serde(skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        /// How many different /24 (or /64) networks the reporting peers
        /// are in.
        prefixes: usize,
    },
    /// A step of getting through to a peer behind a router: `asked` (an
    /// introduction was asked of `via`), `dialing` (its Connect came),
    /// or why `via` would not introduce (`NotConnected`, `NoSelf`,
    /// `RateLimited`, `NotAllowed`, `NoSupport`).
    Introduction {
        /// The peer to get through to.
        peer: String,
        /// The introducer.
        via: String,
        /// The step.
        step: String,
    },
    /// This node introduced two of its peers to each other.
    Introduced {
        /// The peer that asked.
        asker: String,
        /// The peer it asked for.
        target: String,
    },
    /// A peer holding a ticket asked for the manifest, or a peer with an
    /// older version for its chunk list, and was answered.
    ManifestQuery {
        /// Its id.
        peer: String,
        /// Its address.
        #[cfg_attr(test, schemars(with = "String"))]
        addr: SocketAddr,
        /// What it asked for: `manifest` or `chunk-list`.
        asked: String,
        /// Absent when it was sent the manifest; otherwise why it was
        /// refused.
        #[serde(skip_serializing_if = "Option::is_none")]
        refused: Option<String>,
    },
    /// An incoming connection was turned away before its handshake.
    Turned {
        /// The other side.
        #[cfg_attr(test, schemars(with = "String"))]
        addr: SocketAddr,
        /// Why, in words.
        reason: String,
    },
    /// A peer that dropped or could not be reached is dialed again.
    Redialing {
        /// Its (first) address.
        #[cfg_attr(test, schemars(with = "String"))]
        addr: SocketAddr,
        /// Attempts that failed in a row.
        failures: u32,
        /// Milliseconds until the next attempt.
        in_ms: u64,
    },
    /// A mirror of the download: it joined, it fails for a while (asked
    /// again after a back-off, never blamed), or it left: dropped for a
    /// lie (blamed, with the chunk, what was expected and what came) or
    /// not usable.
    Mirror {
        /// `up`, `trouble`, `dropped` or `unusable`.
        step: String,
        /// Its place in the list of mirrors given, from 0.
        mirror: u16,
        /// The mirror as given, without its query (which may hold a
        /// token): `https://host/path`.
        url: String,
        /// What happened, in words (null for `up`).
        reason: Option<String>,
        /// The chunk the reason names, if any.
        chunk: Option<u32>,
        /// For a chunk that failed its check: its SHA-256 by the chunk
        /// list (hex).
        #[cfg_attr(test, schemars(with = "Option<crate::schema::Sha256Hex>"))]
        expected_sha256: Option<String>,
        /// For a chunk that failed its check: the SHA-256 of what came.
        #[cfg_attr(test, schemars(with = "Option<crate::schema::Sha256Hex>"))]
        got_sha256: Option<String>,
        /// For `trouble`: milliseconds until it is asked again (null:
        /// before it joined, tried again at once).
        retry_in_ms: Option<u64>,
    },
    /// A peer sent a chunk that failed its proof and is banned.
    Banned {
        /// Its id.
        #[cfg_attr(test, schemars(with = "crate::schema::PeerIdText"))]
        peer: String,
        /// Its address.
        #[cfg_attr(test, schemars(with = "String"))]
        addr: SocketAddr,
        /// The chunk.
        chunk: u32,
        /// What failed.
        error: String,
    },
    /// Download progress (about every half second).
    Progress {
        /// Verified bytes, resumed ones included.
        verified_bytes: u64,
        /// Size of the artifact.
        total_bytes: u64,
        /// Of the verified bytes, those taken over from earlier runs.
        resumed_bytes: u64,
        /// Verified chunks.
        verified_chunks: u32,
        /// Chunks in all.
        total_chunks: u32,
        /// Peers we download from.
        peers: usize,
        /// Verified bytes per second over the last few seconds; null until
        /// a rate can be told.
        rate_bytes_per_second: Option<f64>,
        /// Seconds to go at that rate; null when unknown.
        eta_seconds: Option<u64>,
        /// No peer that serves is connected: the fetch waits for one
        /// (dialing, or backing off before dialing again).
        waiting_for_peers: bool,
    },
    /// The download passed every check and is in place with its receipt.
    Delivered {
        /// The artifact.
        path: PathBuf,
        /// Its receipt.
        receipt: PathBuf,
        /// Whether the node goes on serving it until stopped.
        seeding: bool,
    },
    /// A serving node's upload so far (about every second).
    Serving {
        /// Connected peers.
        peers: usize,
        /// Bytes uploaded in all.
        uploaded_bytes: u64,
    },
    /// `fetch` finished.
    Fetched {
        /// The artifact.
        path: PathBuf,
        /// Its receipt.
        receipt: PathBuf,
        /// Wall time of this run until every check passed.
        duration_ms: u64,
        /// Chunks fetched and verified in this run.
        chunks_fetched: u64,
        /// Chunks taken over from earlier runs.
        chunks_resumed: u64,
        /// Bytes verified in this run.
        fetched_bytes: u64,
        /// Bytes taken over from earlier runs.
        resumed_bytes: u64,
        /// `fetched_bytes` over `duration_ms`.
        average_rate_bytes_per_second: f64,
        /// Each peer's part.
        #[cfg_attr(test, schemars(with = "Vec<crate::schema::PeerContributionDef>"))]
        peers: Vec<PeerContribution>,
        /// Each mirror's part, as the receipt lists it (absent without
        /// mirrors).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        #[cfg_attr(test, schemars(with = "Vec<crate::schema::MirrorContributionDef>"))]
        mirrors: Vec<minimodel_verifier::receipt::MirrorContribution>,
    },
    /// `seed` stopped on request.
    Stopped {},
    /// `seed --dht`: announcing this seeder's QUIC port under the swarm key.
    DhtAnnouncing {
        /// The swarm key, 40 hex digits.
        key: String,
        /// The QUIC port announced.
        port: u16,
        /// The local DHT node's UDP address.
        dht_addr: String,
    },
    /// `seed --dht`: the DHT took the announcement (the first time).
    DhtAnnounced {
        /// The swarm key, 40 hex digits.
        key: String,
        /// The QUIC port announced.
        port: u16,
    },
    /// `seed --dht`: an announcement failed; it is tried again.
    DhtAnnounceFailed {
        /// The swarm key, 40 hex digits.
        key: String,
        /// What failed, in words.
        error: String,
        /// Milliseconds until the next attempt.
        retry_in_ms: u64,
    },
    /// `seed --dht`: announcing stopped.
    DhtStopped {
        /// Announcements the DHT took.
        announced: u64,
    },
    /// `dht-node`: the node is up.
    DhtNode {
        /// Its UDP address.
        addr: String,
        /// The nodes it joined through (none: a DHT of its own).
        bootstrap: Vec<String>,
    },
    /// `demo`: one downloading peer's progress.
    PeerProgress {
        /// Which peer (from 1).
        peer: usize,
        /// Its verified bytes.
        verified_bytes: u64,
        /// Peers it downloads from.
        peers: usize,
        /// Its rate over the last few seconds.
        rate_bytes_per_second: f64,
    },
    /// `demo`: a downloading peer is complete.
    PeerComplete {
        /// Which peer (from 1).
        peer: usize,
    },
    /// `demo`: every peer is done.
    SwarmDone {
        /// Downloading peers.
        peers: usize,
        /// Wall time of the swarm.
        elapsed_ms: u64,
    },
    /// `demo`: where one peer's bytes came from.
    PeerSummary {
        /// Which peer (from 1).
        peer: usize,
        /// Bytes from the seeder.
        from_seeder_bytes: u64,
        /// Bytes from the other peers.
        from_peers_bytes: u64,
        /// Whether its file passed a fresh check.
        verified: bool,
    },
    /// `demo`: the figures of the run.
    DemoSummary {
        /// Downloading peers that finished.
        peers: usize,
        /// Size of the artifact.
        artifact_bytes: u64,
        /// Wall time of the swarm.
        elapsed_ms: u64,
        /// Copies of the artifact the seeder uploaded.
        seeder_copies: f64,
        /// How long the seeder alone would need at its cap.
        seeder_alone_ms: u64,
        /// Whether every download verified.
        all_verified: bool,
    },
    /// `companion run`: the companion is up and its items started.
    Companion {
        /// Its page and API, `http://HOST:PORT`.
        url: String,
        /// The library directory.
        library: PathBuf,
        /// The file of the API token (mode 0600).
        token_path: PathBuf,
        /// Its peer id: one identity for every item.
        peer_id: String,
    },
    /// `companion token --json`: the API token.
    CompanionToken {
        /// The token (64 hex digits).
        token: String,
        /// Its file.
        token_path: PathBuf,
        /// The running companion's page and API; null when none runs.
        url: Option<String>,
    },
    /// `companion install-unit`: the systemd user unit was written.
    CompanionUnit {
        /// The unit file.
        path: PathBuf,
        /// The command that starts it now and at every login.
        enable: String,
    },
    /// An item of the running companion as its API shows it
    /// (`ItemView` in `docs/schemas/companion-api.schema.json`).
    CompanionItem {
        /// The item.
        #[cfg_attr(test, schemars(with = "crate::schema::CompanionItemView"))]
        item: Box<minimodel_companion::view::ItemView>,
    },
    /// A followed channel of the running companion as its API shows it
    /// (`FollowView` in `docs/schemas/companion-api.schema.json`).
    CompanionFollow {
        /// The follow.
        #[cfg_attr(test, schemars(with = "crate::schema::CompanionFollowView"))]
        follow: Box<minimodel_companion::view::FollowView>,
    },
    /// `companion remove`: the item is gone from the library.
    CompanionRemoved {
        /// Its id.
        id: String,
        /// The files deleted with it (a download's, with
        /// `--delete-files`).
        files_removed: Vec<PathBuf>,
        /// Why the files asked to be deleted stay (another process has
        /// the download open, or the disk refused).
        #[serde(skip_serializing_if = "Option::is_none")]
        files_kept: Option<String>,
    },
    /// `companion limits`: the library's caps and quota
    /// (`LimitsView` in `docs/schemas/companion-api.schema.json`).
    CompanionLimits {
        /// The limits and what is taken.
        #[cfg_attr(test, schemars(with = "crate::schema::CompanionLimitsView"))]
        limits: minimodel_companion::view::LimitsView,
    },
    /// `companion log`: one entry of the transfer log
    /// (`LogEntry` in `docs/schemas/companion-api.schema.json`).
    CompanionLog {
        /// The entry.
        #[cfg_attr(test, schemars(with = "crate::schema::CompanionLogEntry"))]
        entry: minimodel_companion::translog::LogEntry,
    },
    /// `publish`: the publisher's channel item was put on the DHT.
    ChannelPublished {
        /// The publisher key, `mmpk1...`.
        publisher_key: String,
        /// Its key id.
        #[cfg_attr(test, schemars(with = "crate::schema::KeyIdText"))]
        key_id: String,
        /// The DHT target, SHA-1 of key and salt (40 hex digits).
        target: String,
        /// The item's sequence number.
        seq: i64,
        /// The sequence number the DHT nodes had to hold (BEP 44 CAS);
        /// null for a new channel or one the DHT no longer held.
        cas: Option<i64>,
        /// DHT nodes that stored it.
        stored_at: u32,
        /// The model published now.
        model_id: String,
        /// Every model the channel names, with its latest manifest.
        models: Vec<ChannelModel>,
        /// The manifests it lists as withdrawn.
        withdrawn: Vec<ChannelWithdrawn>,
    },
    /// `channel`: a publisher's channel item, found on the DHT and checked.
    Channel {
        /// The publisher key, `mmpk1...`.
        publisher_key: String,
        /// Its key id.
        #[cfg_attr(test, schemars(with = "crate::schema::KeyIdText"))]
        key_id: String,
        /// The DHT target, SHA-1 of key and salt (40 hex digits).
        target: String,
        /// The item's sequence number.
        seq: i64,
        /// The sequence number seen before on this machine; null the
        /// first time.
        last_seen_seq: Option<i64>,
        /// The models (all, or the one `--model-id` names), each with its
        /// latest manifest.
        models: Vec<ChannelModel>,
        /// The manifests it lists as withdrawn.
        withdrawn: Vec<ChannelWithdrawn>,
    },
    /// `follow`: this machine holds the latest version, delivered and
    /// verified; nothing was fetched.
    UpToDate {
        /// The model followed.
        model_id: String,
        /// SHA-256 of the latest version's manifest file.
        #[cfg_attr(test, schemars(with = "crate::schema::Sha256Hex"))]
        manifest_sha256: String,
        /// Where it is.
        dir: PathBuf,
    },
    /// `follow`: a version held here is withdrawn by its publisher. It is
    /// not served, and nothing was deleted.
    WithdrawnHere {
        /// SHA-256 of its manifest file.
        #[cfg_attr(test, schemars(with = "crate::schema::Sha256Hex"))]
        manifest_sha256: String,
        /// Where it is.
        dir: PathBuf,
        /// Where the publisher says why (an https route).
        reason_route: String,
    },
    /// The command failed (always the last line).
    Error {
        /// The process's exit code.
        exit_code: i32,
        /// What went wrong, in words.
        error: String,
        /// What to do about it, when something helps.
        hint: Option<String>,
    },
}

/// A model in a channel (`publish`, `channel`).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ChannelModel {
    /// The model id.
    pub model_id: String,
    /// SHA-256 of its latest manifest file (hex).
    #[cfg_attr(test, schemars(with = "crate::schema::Sha256Hex"))]
    pub manifest_sha256: String,
    /// Peers that serve it, `PEER_ID@ADDR[,ADDR]`.
    pub peers: Vec<String>,
}

/// A withdrawn manifest in a channel (`publish`, `channel`).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ChannelWithdrawn {
    /// SHA-256 of the manifest file (hex).
    #[cfg_attr(test, schemars(with = "crate::schema::Sha256Hex"))]
    pub manifest_sha256: String,
    /// Where the reason is said.
    pub reason_route: String,
}
