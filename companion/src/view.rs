//! The API's bodies: what a client sends and what the companion answers
//! (`docs/companion.md`, "The API"; their JSON Schemas are
//! `docs/schemas/companion-api.schema.json`, checked against the real
//! answers by the tests). Unknown fields are refused in every request.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::library::{Caps, ItemKind};
use crate::translog::LogEntry;

/// Reads a struct of a request's body only from a JSON object: serde
/// would also take an array as its fields in order (and `[]` as none of
/// them, every cap and consent cleared).
fn object<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::de::Error as _;
    let fields =
        <serde_json::Map<String, serde_json::Value> as Deserialize>::deserialize(deserializer)?;
    serde_json::from_value(serde_json::Value::Object(fields)).map_err(D::Error::custom)
}

/// The `format` of [`LibraryView`].
pub const VIEW_FORMAT: &str = "minimodel-companion-view-v0";
/// The largest request body read.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The explicit yes a request carries for each thing that moves bytes.
/// The page's consent dialog sets them after showing the words the
/// preview returns; the CLI's thin commands after `--yes` or a yes at the
/// prompt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Consent {
    /// Serve the artifact to any peer that connects (a share; a download
    /// with `serve`).
    pub serve: bool,
    /// Fetch the artifact from peers (a download).
    pub fetch: bool,
    /// Keep serving a download's finished file (with `serve`).
    pub seed_after: bool,
    /// Look the artifact up on the DHT, and announce there when serving.
    pub dht: bool,
    /// Trust and pin the manifest's publisher key, seen for the first
    /// time.
    pub trust_key: bool,
}

/// `POST /api/v1/shares` (and `/api/v1/shares/preview`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AddShare {
    /// A manifest file on this host.
    #[serde(default)]
    pub manifest_path: Option<PathBuf>,
    /// The manifest's text.
    #[serde(default)]
    pub manifest: Option<String>,
    /// The `.slm` file to serve, on this host.
    pub file: PathBuf,
    /// The consent given.
    #[serde(default, deserialize_with = "object")]
    pub consent: Consent,
    /// The item's own caps.
    #[serde(default, deserialize_with = "object")]
    pub caps: Caps,
    /// The publisher's key (`mmpk1...`): the manifest must be signed by
    /// it.
    #[serde(default)]
    pub publisher_key: Option<String>,
    /// Refuse an unsigned manifest.
    #[serde(default)]
    pub require_signature: bool,
    /// `https://` URLs of copies of the artifact (at most 2, no query),
    /// named in the share's ticket: whoever fetches with it fetches from
    /// them too, and finds the manifest beside them (`URL.manifest`) when
    /// this share is offline. The companion itself never reads them.
    #[serde(default)]
    pub mirrors: Vec<String>,
}

/// `POST /api/v1/downloads` (and `/api/v1/downloads/preview`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AddDownload {
    /// A manifest file on this host.
    #[serde(default)]
    pub manifest_path: Option<PathBuf>,
    /// The manifest's text.
    #[serde(default)]
    pub manifest: Option<String>,
    /// A ticket (`mm1...`) instead of a manifest: the manifest is asked
    /// of the ticket's peers (a manifest query), kept only when its
    /// SHA-256 is the ticket's and, when the ticket names a publisher
    /// key, its signature is that key's; the ticket's peers are fetched
    /// from.
    #[serde(default)]
    pub ticket: Option<String>,
    /// Peers, `PEER_ID@IP:PORT` (an IP address: names are not resolved).
    #[serde(default)]
    pub peers: Vec<String>,
    /// Peer offers (`minimodel-peer-offer-v1` or `-v0` objects).
    #[serde(default)]
    pub offers: Vec<serde_json::Value>,
    /// An import request (`minimodel-import-request-v0` object).
    #[serde(default)]
    pub request: Option<serde_json::Value>,
    /// Find peers on the DHT too.
    #[serde(default)]
    pub dht: bool,
    /// DHT nodes to join through (`IPv4:PORT`) instead of the public
    /// ones.
    #[serde(default)]
    pub dht_bootstrap: Vec<String>,
    /// Mirrors: `https://` URLs of a copy of the artifact, with its
    /// chunk list beside it (`URL.chunk-list`), at most 16; every chunk
    /// from one is checked as a peer's.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// Allow `http://` mirrors (the bytes are still checked; anyone on
    /// the way sees what is fetched).
    #[serde(default)]
    pub allow_plain_http_mirror: bool,
    /// Serve verified chunks while fetching.
    #[serde(default)]
    pub serve: bool,
    /// Keep serving the finished file (with `serve`).
    #[serde(default)]
    pub seed_after: bool,
    /// The consent given.
    #[serde(default, deserialize_with = "object")]
    pub consent: Consent,
    /// The item's own caps.
    #[serde(default, deserialize_with = "object")]
    pub caps: Caps,
    /// The publisher's key (`mmpk1...`).
    #[serde(default)]
    pub publisher_key: Option<String>,
    /// Refuse an unsigned manifest.
    #[serde(default)]
    pub require_signature: bool,
}

/// `PUT /api/v1/limits`: the library's limits, replaced whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SetLimits {
    /// Caps over every item together.
    #[serde(default, deserialize_with = "object")]
    pub caps: Caps,
    /// The most bytes the library's downloads may take.
    #[serde(default)]
    pub quota_bytes: Option<u64>,
}

/// `POST /api/v1/follows`: follow a publisher's channel for one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AddFollow {
    /// The publisher key (`mmpk1...`): its channel is read, and every
    /// manifest it names must be signed by it.
    pub publisher_key: String,
    /// The model followed.
    pub model_id: String,
    /// `ask`: a new version is offered; `auto`: it is fetched beside
    /// the old one (needs `consent.fetch`, given now for every new
    /// version; `consent.trust_key` pins the key at the first one).
    pub policy: crate::library::FollowPolicy,
    /// The consent given (`auto` only).
    #[serde(default, deserialize_with = "object")]
    pub consent: Consent,
    /// Copies of the model's latest version on the web (`https://` only,
    /// at most 16): each new version is fetched from them beside its
    /// peers (every byte checked), and its chunk list is read beside them
    /// (`URL.chunk-list`) when its manifest names no chunk-list-route.
    #[serde(default)]
    pub mirrors: Vec<String>,
}

/// A followed channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FollowView {
    /// The publisher key (`mmpk1...`).
    pub publisher_key: String,
    /// The model followed.
    pub model_id: String,
    /// `ask` or `auto`.
    pub policy: crate::library::FollowPolicy,
    /// When it was added.
    pub added_at: String,
    /// The sequence number of the newest channel item accepted.
    pub seq: Option<i64>,
    /// The last lookup since the companion started, when there was one.
    pub last_lookup: Option<LookupView>,
    /// A new version offered (`ask`): add it as a download with this
    /// ticket to fetch it.
    pub offer: Option<OfferView>,
    /// Its mirrors, shown without their queries (which may hold a
    /// credential).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<String>,
}

/// How a lookup of a followed channel ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LookupView {
    /// When it ended.
    pub at: String,
    /// Whether a checked item was read.
    pub ok: bool,
    /// What happened, in words (up to date, a version offered or fetched,
    /// items withdrawn, or why nothing was read).
    pub text: String,
}

/// A new version a followed channel names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct OfferView {
    /// SHA-256 of its manifest.
    pub manifest_sha256: String,
    /// A ticket (`mm1...`) of it: its digest, the followed key's id and
    /// the peers the channel names.
    pub ticket: String,
}

/// `GET /api/v1/follows`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FollowsView {
    /// Every follow, in the order added.
    pub follows: Vec<FollowView>,
}

/// A refusal or failure: what, why, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ErrorBody {
    /// The kind, for programs: `unauthorized`, `forbidden`,
    /// `wrong-host`, `invalid-input`, `verification-failed`,
    /// `consent-needed`, `over-quota`, `conflict`, `not-found`,
    /// `too-many`, `unreachable` (no peer of a ticket sent its manifest),
    /// `io`.
    pub kind: String,
    /// What went wrong, for people.
    pub error: String,
    /// What to do, when something helps.
    pub hint: Option<String>,
    /// For `consent-needed`: each consent missing, with its words.
    pub needs: Vec<Ask>,
}

/// One consent to give, and the words that say what it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Ask {
    /// The field of [`Consent`] that gives it.
    pub consent: String,
    /// What happens, in words.
    pub words: String,
}

/// The manifest's signature as checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SignatureView {
    /// `signed` or `unsigned`.
    pub status: String,
    /// The publisher id.
    pub publisher_id: String,
    /// The key id, when signed.
    pub key_id: Option<String>,
    /// Why the key is trusted, when signed: `pinned`, `publisher-key`,
    /// `first-use`, `not-pinned`.
    pub trust: Option<String>,
    /// One line for people.
    pub text: String,
}

/// What adding would do, and the consent it needs (nothing is added).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Preview {
    /// The item's id if added.
    pub id: String,
    /// Share or download.
    pub kind: ItemKind,
    /// The artifact's model id.
    pub model_id: String,
    /// Its size.
    pub artifact_bytes: u64,
    /// The manifest's signature.
    pub signature: SignatureView,
    /// Every consent the request needs, with its words.
    pub asks: Vec<Ask>,
    /// For a download: the quota now.
    pub quota: Option<QuotaView>,
}

/// The quota and what is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct QuotaView {
    /// The quota; `null`: none.
    pub quota_bytes: Option<u64>,
    /// What the library's downloads take.
    pub used_bytes: u64,
    /// Free bytes on the downloads' disk, when known.
    pub free_bytes: Option<u64>,
}

/// Where an item's state is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ItemState {
    /// Waiting to start.
    Starting,
    /// A share's file is being verified.
    Verifying,
    /// A download's directory is being opened (a recheck reads it).
    Opening,
    /// Fetching.
    Fetching,
    /// A share serving.
    Serving,
    /// A delivered download, serving its file.
    Seeding,
    /// A delivered download, not serving.
    Done,
    /// Paused by the user.
    Paused,
    /// A download between tries for its peers: it tries again by itself
    /// (see `problem`).
    Waiting,
    /// Stopped by what a person must fix, or waiting for space or the
    /// quota (see `problem`: whether it goes on by itself).
    Failed,
    /// Withdrawn by its publisher, as a followed channel lists it: not
    /// served, its files kept (see `withdrawn`).
    Withdrawn,
}

/// What holds an item back, for programs (`problem.kind`). Words for
/// people are beside it (`problem.text`, `error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ProblemKind {
    /// A download found no peer that delivered in its last try; it tries
    /// again by itself.
    NoPeersYet,
    /// Its network failed it (the DHT could not start); it tries again by
    /// itself.
    Network,
    /// The disk is full; it goes on by itself once space is freed.
    DiskFull,
    /// The library's quota holds it (the quota was lowered); it goes on
    /// by itself once the quota is raised or a download removed.
    OverQuota,
    /// The keyring refuses the manifest or its signature now.
    RefusedSignature,
    /// Its manifest in the library is gone, changed or invalid.
    ManifestChanged,
    /// A file it needs is gone (a share's file, a delivered download's
    /// file or receipt).
    FileGone,
    /// A file failed its check against the manifest (a share's file, or a
    /// download's whole file).
    VerificationFailed,
    /// Chunks went bad on disk after they were verified, again and again:
    /// the disk is at fault.
    Damaged,
    /// Reading or writing failed (not a full disk).
    Storage,
    /// Something in the companion failed (a task stopped).
    Internal,
    /// Its publisher withdrew it (a followed channel lists its manifest).
    Withdrawn,
}

impl ProblemKind {
    /// The kind as the API names it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::NoPeersYet => "no-peers-yet",
            ProblemKind::Network => "network",
            ProblemKind::DiskFull => "disk-full",
            ProblemKind::OverQuota => "over-quota",
            ProblemKind::RefusedSignature => "refused-signature",
            ProblemKind::ManifestChanged => "manifest-changed",
            ProblemKind::FileGone => "file-gone",
            ProblemKind::VerificationFailed => "verification-failed",
            ProblemKind::Damaged => "damaged",
            ProblemKind::Storage => "storage",
            ProblemKind::Internal => "internal",
            ProblemKind::Withdrawn => "withdrawn",
        }
    }
}

/// What holds an item back: its kind, in words, since when, and whether
/// it goes on by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProblemView {
    /// The kind, for programs.
    pub kind: ProblemKind,
    /// What happened and what happens next, in words, as of the answer.
    pub text: String,
    /// Since when (RFC 3339 UTC).
    pub since: String,
    /// Whether it goes on by itself once the cause goes (the next try,
    /// space freed, the quota raised); `false`: a person must fix it,
    /// then resume it (or restart the companion).
    pub goes_on_by_itself: bool,
    /// What to do, when a person can help.
    pub hint: Option<String>,
    /// For a download waiting for its peers: its tries.
    pub waiting: Option<WaitingView>,
    /// For a full disk: the free bytes it waits for.
    pub needs_free_bytes: Option<u64>,
}

/// A download between tries for its peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WaitingView {
    /// Tries in a row that verified nothing.
    pub tries: u32,
    /// When the last try ended (RFC 3339 UTC).
    pub last_try_at: String,
    /// When the next one starts (RFC 3339 UTC).
    pub next_try_at: String,
    /// Seconds since the last try, as of the answer.
    pub last_try_seconds_ago: u64,
    /// Seconds to the next try, as of the answer.
    pub next_try_in_seconds: u64,
    /// Addresses its node knew at its last try (named, remembered, told
    /// by peers, found on the DHT or the LAN).
    pub addresses_known: u64,
}

/// One peer's part of an item's transfers this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SourceView {
    /// The peer's id.
    pub peer_id: String,
    /// Verified bytes received from it.
    pub downloaded_bytes: u64,
    /// Bytes served to it while connected.
    pub uploaded_bytes: u64,
}

/// Where an item serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ServingView {
    /// The address it listens on.
    pub listen: String,
    /// The peer offer others fetch with (`minimodel-peer-offer-v1`).
    pub offer: serde_json::Value,
    /// The ticket others fetch with (`minimodel fetch TICKET`): the
    /// manifest's digest and this node; absent when its addresses make
    /// none.
    pub ticket: Option<String>,
}

/// How to open a verified download in TinyRustLM (nothing here opens or
/// runs it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Handoff {
    /// The verified `.slm` file.
    pub file: PathBuf,
    /// Its manifest.
    pub manifest: PathBuf,
    /// Its receipt.
    pub receipt: PathBuf,
    /// The sentence to show.
    pub text: String,
}

/// One item as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ItemView {
    /// Its id.
    pub id: String,
    /// Share or download.
    pub kind: ItemKind,
    /// The artifact's model id.
    pub model_id: String,
    /// Where it is.
    pub state: ItemState,
    /// Paused by the user.
    pub paused: bool,
    /// When it was added.
    pub added_at: String,
    /// The artifact's size.
    pub artifact_bytes: u64,
    /// Verified bytes (a share: all of them once verified).
    pub verified_bytes: u64,
    /// Verified bytes per second over the last five seconds.
    pub rate_bytes_per_second: f64,
    /// Bytes served per second over the last five seconds.
    pub upload_rate_bytes_per_second: f64,
    /// Peers connected.
    pub peers: u64,
    /// Bytes served this run.
    pub uploaded_bytes: u64,
    /// Where the bytes came from and went, per peer, this run.
    pub sources: Vec<SourceView>,
    /// The manifest's signature, as last checked.
    pub signature: Option<SignatureView>,
    /// Its own caps.
    pub caps: Caps,
    /// The caps in force: while it runs, as its node holds them (the
    /// lower of its own and its part of the library's, as the endpoint's
    /// gate grants it now); its own while it does not run.
    pub effective_caps: Caps,
    /// Where it serves, when it does.
    pub serving: Option<ServingView>,
    /// The local file: a share's, or a download's once delivered.
    pub file: Option<PathBuf>,
    /// A delivered download's receipt.
    pub receipt: Option<PathBuf>,
    /// How to open a delivered download.
    pub handoff: Option<Handoff>,
    /// Why it failed, in words (the text of `problem` when it failed).
    pub error: Option<String>,
    /// What holds it back (waiting for peers, a full disk, a refused
    /// signature, ...), when something does.
    pub problem: Option<ProblemView>,
    /// Runs of its node since the companion started (a restart of its
    /// node is one more; a change of caps is none).
    pub runs: u64,
    /// The consent it was added with.
    pub consent: Consent,
    /// A download's peers (`PEER_ID@IP:PORT`).
    pub peers_named: Vec<String>,
    /// A download serves while fetching.
    pub serve: bool,
    /// A download keeps serving once delivered.
    pub seed_after: bool,
    /// A download looks peers up on the DHT.
    pub dht: bool,
    /// Withdrawn by its publisher: not served (state `withdrawn`).
    pub withdrawn: Option<WithdrawnView>,
    /// Who can reach its node while it runs, as the node judges it.
    pub reach: Option<ReachView>,
    /// A download with older versions of its model here: what reading
    /// the new version's chunk list gave, in words (where it was read
    /// and that their shared chunks are copied first, or why no chunk is
    /// reused), as `minimodel follow` says it.
    pub reuse: Option<String>,
}

/// Whether, and how, peers on other networks reach an item's node
/// (`minimodel_swarm::node::Reach`), and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ReachView {
    /// `not-listening`, `host-only`, `lan-only`, `direct`, `mapped`,
    /// `punch` or `relay`.
    pub verdict: String,
    /// Nobody on another network can get in.
    pub unreachable: bool,
    /// The verdict in words.
    pub text: String,
    /// What to do about it, when something can be done.
    pub advice: Option<String>,
    /// The relays it is registered with (`[RELAY_ID@]IP:PORT`).
    pub relays: Vec<String>,
}

impl ReachView {
    /// The view of `reach`, its advice in the companion's own words.
    pub fn of(reach: &minimodel_swarm::node::Reach) -> Self {
        use minimodel_swarm::node::Reach;
        let relay = "start the companion with --relay HOST:PORT (a host with a public address that runs `minimodel relay`)";
        let advice = match reach {
            Reach::NotListening | Reach::Mapped { .. } => None,
            Reach::HostOnly { .. } => Some(
                "start the companion with --serve-ip 0.0.0.0 for other machines to reach its items"
                    .to_owned(),
            ),
            Reach::LanOnly { .. } => Some(format!(
                "peers on other networks cannot get in: {relay}, or start it with --port-mapping for the router to map its port"
            )),
            Reach::Direct {
                confirmed: false,
                via,
                ..
            } if via.is_empty() => Some(format!(
                "if a firewall in front of this host drops what comes in unasked, peers on other networks cannot get in: {relay}"
            )),
            Reach::Direct { .. } => None,
            Reach::Punch { via, .. } if via.is_empty() => Some(format!(
                "a peer that can get in only by a punch needs a peer both reach to introduce it: {relay}"
            )),
            Reach::Punch { .. } => None,
            Reach::Relayed { .. } => Some(
                "every byte to peers behind other routers goes through the relay, at its limits: start the companion with --port-mapping for direct connections"
                    .to_owned(),
            ),
        };
        let via: &[std::net::SocketAddr] = match reach {
            Reach::Direct { via, .. } | Reach::Punch { via, .. } | Reach::Relayed { via } => via,
            _ => &[],
        };
        ReachView {
            verdict: reach.name().to_owned(),
            unreachable: reach.is_unreachable(),
            text: reach.to_string(),
            advice,
            relays: via.iter().map(ToString::to_string).collect(),
        }
    }
}

/// A publisher's withdrawal of an item, as a followed channel lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WithdrawnView {
    /// The publisher key whose channel lists it (`mmpk1...`).
    pub publisher_key: String,
    /// Where the publisher says why.
    pub reason_route: String,
    /// When the companion read it.
    pub at: String,
}

/// The library's limits and what is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LimitsView {
    /// Caps over every item together.
    pub caps: Caps,
    /// The quota and what is taken.
    pub quota: QuotaView,
}

/// The companion itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CompanionView {
    /// Its peer id: one identity for every item.
    pub peer_id: String,
    /// Program and version.
    pub version: String,
    /// The library directory.
    pub library: PathBuf,
    /// The IP address items serve on.
    pub serve_ip: String,
    /// The UDP port every item serves on: one QUIC endpoint for all.
    pub port: u16,
    /// When it started.
    pub started_at: String,
}

/// `GET /api/v1/library`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LibraryView {
    /// [`VIEW_FORMAT`].
    pub format: String,
    /// The companion.
    pub companion: CompanionView,
    /// The limits.
    pub limits: LimitsView,
    /// Every item, in the order added.
    pub items: Vec<ItemView>,
}

/// `GET /api/v1/log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LogPage {
    /// The last entries, oldest first.
    pub entries: Vec<LogEntry>,
}

/// `DELETE /api/v1/items/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Removed {
    /// The item removed.
    pub id: String,
    /// Files removed with it (a download's, when asked).
    pub files_removed: Vec<PathBuf>,
    /// Why a download's files asked to be removed stayed (another process
    /// has the download open, or the disk refused); the item is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_kept: Option<String>,
}

/// Bytes per second, up (served) and down (verified).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RatePair {
    /// Bytes of chunks served per second.
    pub up: f64,
    /// Verified bytes per second.
    pub down: f64,
}

/// How a peer became known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum FoundBy {
    /// Named by the person: a `--peer`, an offer, a ticket, a request.
    Given,
    /// It served an earlier run of this download.
    Remembered,
    /// Another peer told of it (peer exchange).
    PeerExchange,
    /// A DHT lookup.
    Dht,
    /// Announced on the local network.
    Lan,
    /// It dialed us.
    Incoming,
}

impl FoundBy {
    /// How the node's address book says it became known.
    pub fn of(source: minimodel_swarm::node::Source) -> Self {
        use minimodel_swarm::node::Source;
        match source {
            Source::Offer => FoundBy::Given,
            Source::Remembered => FoundBy::Remembered,
            Source::Exchange => FoundBy::PeerExchange,
            Source::Dht => FoundBy::Dht,
            Source::Lan => FoundBy::Lan,
            Source::Incoming => FoundBy::Incoming,
        }
    }
}

/// Who opened a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum PeerDirection {
    /// We dialed it.
    Dialed,
    /// It dialed us.
    Incoming,
}

/// One peer of an item's run: a row of the page's peer table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PeerView {
    /// Its peer id.
    pub peer_id: String,
    /// Where it is connected (or was reached).
    pub address: Option<String>,
    /// How it became known.
    pub found_by: Option<FoundBy>,
    /// Who dialed, while it is connected.
    pub direction: Option<PeerDirection>,
    /// Connected now.
    pub connected: bool,
    /// Connected since (RFC 3339 UTC), while it is.
    pub since: Option<String>,
    /// Verified bytes per second from it, over the last second.
    pub download_rate_bytes_per_second: f64,
    /// Bytes per second served to it, over the last second.
    pub upload_rate_bytes_per_second: f64,
    /// Verified bytes received from it this run (duplicates included).
    pub downloaded_bytes: u64,
    /// Bytes served to it while connected.
    pub uploaded_bytes: u64,
    /// Banned for a chunk that failed its proof.
    pub banned: bool,
}

/// An item's chunks in cells (cell `i` of `n` holds chunks
/// `i * chunks / n` up to `(i + 1) * chunks / n`; at most 256 cells, one
/// chunk a cell when there are fewer chunks). The arrays have one entry
/// per cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ChunkMapView {
    /// Chunks in all.
    pub chunks: u32,
    /// Chunks in each cell.
    pub cell_chunks: Vec<u32>,
    /// Of those, verified here.
    pub verified: Vec<u32>,
    /// Of those, asked of a peer and not received yet.
    pub in_flight: Vec<u32>,
    /// The fewest connected peers that hold any one chunk of the cell.
    pub holders: Vec<u32>,
}

/// An item's run now: its chunks, its peers, its rates (`activity`
/// events, every second while it runs; `GET /api/v1/items/{id}/activity`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ActivityView {
    /// The item.
    pub id: String,
    /// When (RFC 3339 UTC).
    pub at: String,
    /// Its chunks.
    pub chunk_map: ChunkMapView,
    /// Its peers this run, connected ones first.
    pub peers: Vec<PeerView>,
    /// Its rates at the last sample.
    pub rates: RatePair,
}

/// One sample of the rates (`rates` events, every second).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RatesSample {
    /// When (RFC 3339 UTC).
    pub at: String,
    /// The library's: every item's together.
    pub library: RatePair,
    /// Each item's that moved bytes, by id (one left out moved none).
    pub items: std::collections::BTreeMap<String, RatePair>,
}

/// `GET /api/v1/rates`: the rates over the last minutes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RatesView {
    /// Seconds between samples.
    pub every_seconds: u64,
    /// The samples, oldest first (at most 300).
    pub samples: Vec<RatesSample>,
}

/// One server-sent event of `GET /api/v1/events`: its `event:` name and
/// its `data:` JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data", rename_all = "kebab-case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ApiEvent {
    /// An item changed (progress, state).
    Item(Box<ItemView>),
    /// An item was removed.
    Removed(Removed),
    /// A transfer was logged.
    Log(LogEntry),
    /// The limits changed.
    Limits(LimitsView),
    /// A running item's chunks, peers and rates (every second).
    Activity(Box<ActivityView>),
    /// The rates, per item and for the library (every second).
    Rates(RatesSample),
}

impl ApiEvent {
    /// The `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            ApiEvent::Item(_) => "item",
            ApiEvent::Removed(_) => "removed",
            ApiEvent::Log(_) => "log",
            ApiEvent::Limits(_) => "limits",
            ApiEvent::Activity(_) => "activity",
            ApiEvent::Rates(_) => "rates",
        }
    }

    /// The `data:` JSON.
    pub fn data(&self) -> String {
        let value = match self {
            ApiEvent::Item(item) => serde_json::to_string(item),
            ApiEvent::Removed(removed) => serde_json::to_string(removed),
            ApiEvent::Log(entry) => serde_json::to_string(entry),
            ApiEvent::Limits(limits) => serde_json::to_string(limits),
            ApiEvent::Activity(activity) => serde_json::to_string(activity),
            ApiEvent::Rates(rates) => serde_json::to_string(rates),
        };
        value.unwrap_or_else(|_| "null".to_owned())
    }
}
