//! The library directory: what the companion keeps, where, and how it is
//! written (`docs/companion.md`, "State files").
//!
//! | path | what |
//! |---|---|
//! | `library.json` | the items and the limits ([`LibraryState`], `minimodel-companion-library-v0`) |
//! | `manifests/<item>.manifest` | each item's manifest, the bytes as given |
//! | `downloads/` | every download's directory (`docs/resume.md`) |
//! | `identity/` | the node's key: one identity for every item |
//! | `token` | the API token, mode 0600 (an ACL for the user alone on Windows) |
//! | `api.json` | where the running companion's API listens |
//! | `companion.lock` | held (`flock`; `LockFileEx` on Windows) while a companion runs on the library |
//! | `log/transfers.jsonl` | the transfer log ([`crate::translog`]) |
//!
//! The directory is made mode 0700 and refused when another user owns it
//! or group or others may write it (on Windows: an ACL entry that lets
//! anyone else write; [`minimodel_swarm::platform::check_private_dir`]): whoever can write it could plant
//! links where the companion writes, or replace the state. Whole files
//! are written through [`minimodel_swarm::resume::write_file_atomically`]
//! (a temporary file, fsynced, renamed over the old one, the directory
//! fsynced), so a crash leaves the old file or the new one.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use minimodel_swarm::platform::{self, DirHandle, EntryKind, PrivacyProblem, PrivateOpen};
use minimodel_verifier::{ModelId, Sha256Digest};
use minimodel_wire::PeerAddr;
use serde::{Deserialize, Serialize};

/// The `format` of the state file.
pub const LIBRARY_FORMAT: &str = "minimodel-companion-library-v0";
/// The `format` of `api.json`.
pub const ENDPOINT_FORMAT: &str = "minimodel-companion-api-v0";
/// The largest state file read.
pub const MAX_STATE_BYTES: u64 = 4 << 20;
/// The most items a library holds.
pub const MAX_ITEMS: usize = 1024;
/// The largest manifest kept (a manifest is a few KiB).
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// The most peers a download keeps, and addresses each.
pub const MAX_PEERS: usize = 64;
/// The most publishers' channels a library follows.
pub const MAX_FOLLOWS: usize = 64;

/// Why the library cannot be used. Every variant names its file; all are
/// local.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// Another companion holds the library.
    #[error("another companion runs on the library {path}{}", pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default())]
    Locked {
        /// The library.
        path: PathBuf,
        /// The process that holds it, as its lock file says.
        pid: Option<u32>,
    },
    /// The directory or a file in it is not safe to use.
    #[error("{path} {problem}")]
    Unsafe {
        /// The directory or file.
        path: PathBuf,
        /// What is wrong, and what to do.
        problem: String,
    },
    /// The state file is refused (damaged, another format, too large);
    /// it is left as it is.
    #[error("{path} is refused: {reason}")]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A whole-file write failed; the old file is intact.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> LibraryError + '_ {
    move |source| LibraryError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The library directory and the names of its files.
#[derive(Debug, Clone)]
pub struct LibraryDir {
    root: PathBuf,
}

impl LibraryDir {
    /// Opens `root`, creating it (mode 0700) and its subdirectories when
    /// missing; refuses a directory another user owns or others may
    /// write.
    pub fn open(root: &Path) -> Result<Self, LibraryError> {
        let root = if root.is_absolute() {
            root.to_owned()
        } else {
            std::env::current_dir().map_err(io_error(root))?.join(root)
        };
        let library = Self { root };
        private_dir(&library.root)?;
        for dir in [
            library.manifests_dir(),
            library.downloads_dir(),
            library.log_dir(),
        ] {
            private_dir(&dir)?;
        }
        Ok(library)
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `library.json`.
    pub fn state_path(&self) -> PathBuf {
        self.root.join("library.json")
    }

    /// `manifests/`.
    pub fn manifests_dir(&self) -> PathBuf {
        self.root.join("manifests")
    }

    /// Where item `id` keeps its manifest.
    pub fn manifest_path(&self, id: &ItemId) -> PathBuf {
        self.manifests_dir().join(format!("{id}.manifest"))
    }

    /// `downloads/`: the directory of every download.
    pub fn downloads_dir(&self) -> PathBuf {
        self.root.join("downloads")
    }

    /// The directory of a download's files: `downloads/`, or
    /// `downloads/<manifest sha256>/` for a version added beside another
    /// of its model id.
    pub fn download_dir(&self, download: &DownloadRecord) -> PathBuf {
        self.download_dir_at(download.version_dir.as_ref())
    }

    /// [`Self::download_dir`] of a download placed in `version_dir`.
    pub fn download_dir_at(&self, version_dir: Option<&Sha256Digest>) -> PathBuf {
        match version_dir {
            Some(digest) => self.downloads_dir().join(digest.to_hex()),
            None => self.downloads_dir(),
        }
    }

    /// `identity/`: the node's key.
    pub fn identity_dir(&self) -> PathBuf {
        self.root.join("identity")
    }

    /// `token`.
    pub fn token_path(&self) -> PathBuf {
        self.root.join("token")
    }

    /// `api.json`.
    pub fn endpoint_path(&self) -> PathBuf {
        self.root.join("api.json")
    }

    /// `log/`.
    pub fn log_dir(&self) -> PathBuf {
        self.root.join("log")
    }

    /// `companion.lock`.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("companion.lock")
    }

    /// Takes the library's lock, or says who holds it. The lock is an
    /// advisory lock on `companion.lock` ([`platform::try_lock`]),
    /// released when the returned guard is dropped or the process ends (a
    /// `kill -9` included).
    pub fn lock(&self) -> Result<LibraryLock, LibraryError> {
        let path = self.lock_path();
        let mut file =
            platform::open_private(&path, PrivateOpen::ReadWriteCreate).map_err(io_error(&path))?;
        check_own_file(&file, &path)?;
        if !platform::try_lock(&file) {
            // The holder's pid, which it wrote under its lock. (Windows
            // locks are mandatory: the bytes cannot be read while held, and
            // the pid goes unsaid.)
            let mut text = String::new();
            let _ = (&file).take(32).read_to_string(&mut text);
            return Err(LibraryError::Locked {
                path: self.root.clone(),
                pid: text.trim().parse().ok(),
            });
        }
        file.set_len(0).map_err(io_error(&path))?;
        writeln!(file, "{}", std::process::id()).map_err(io_error(&path))?;
        Ok(LibraryLock { _file: file })
    }

    /// Reads the state: an empty library when there is no file yet.
    pub fn load_state(&self) -> Result<LibraryState, LibraryError> {
        let path = self.state_path();
        let Some(bytes) = read_own_file(&path, MAX_STATE_BYTES)? else {
            return Ok(LibraryState::default());
        };
        LibraryState::parse(&bytes).map_err(|reason| LibraryError::State { path, reason })
    }

    /// Writes the state whole, crash-safely.
    pub fn save_state(&self, state: &LibraryState) -> Result<(), LibraryError> {
        let mut text = serde_json::to_vec_pretty(state).map_err(|e| LibraryError::Write {
            path: self.state_path(),
            reason: e.to_string(),
        })?;
        text.push(b'\n');
        self.write_whole(&self.state_path(), &text)
    }

    /// Writes `bytes` as `path` (a file of the library) crash-safely.
    pub fn write_whole(&self, path: &Path, bytes: &[u8]) -> Result<(), LibraryError> {
        minimodel_swarm::resume::write_file_atomically(path, bytes).map_err(|error| {
            LibraryError::Write {
                path: path.to_owned(),
                reason: minimodel_swarm::resume::describe(&error),
            }
        })
    }

    /// Reads item `id`'s manifest bytes.
    pub fn read_manifest(&self, id: &ItemId) -> Result<Vec<u8>, LibraryError> {
        let path = self.manifest_path(id);
        read_own_file(&path, MAX_MANIFEST_BYTES)?.ok_or_else(|| LibraryError::Io {
            path,
            source: io::ErrorKind::NotFound.into(),
        })
    }
}

/// Holds the library's lock while it lives.
#[derive(Debug)]
pub struct LibraryLock {
    _file: File,
}

/// Makes `dir` (mode 0700) when missing; refuses one another user owns,
/// or that group or others may write.
fn private_dir(dir: &Path) -> Result<(), LibraryError> {
    platform::create_private_dir(dir).map_err(io_error(dir))?;
    match platform::check_private_dir(dir).map_err(io_error(dir))? {
        Ok(()) => Ok(()),
        Err(PrivacyProblem::ForeignOwner { owner, expected }) => Err(LibraryError::Unsafe {
            path: dir.to_owned(),
            problem: format!(
                "belongs to another user ({owner}, not {expected}); use a directory of your own"
            ),
        }),
        Err(PrivacyProblem::OpenToOthers(access)) => Err(LibraryError::Unsafe {
            path: dir.to_owned(),
            problem: format!(
                "{access}, which lets others write into it; {}",
                access.fix_dir(dir)
            ),
        }),
    }
}

/// Refuses a file another user owns or that has more than one name.
fn check_own_file(file: &File, path: &Path) -> Result<(), LibraryError> {
    let facts = DirHandle::facts_of(file).map_err(io_error(path))?;
    if facts.kind != EntryKind::Regular {
        return Err(LibraryError::Unsafe {
            path: path.to_owned(),
            problem: "is not a regular file".to_owned(),
        });
    }
    if !facts.owned_by_us {
        return Err(LibraryError::Unsafe {
            path: path.to_owned(),
            problem: format!("belongs to another user ({})", facts.owner),
        });
    }
    if facts.links > 1 {
        return Err(LibraryError::Unsafe {
            path: path.to_owned(),
            problem: format!("has {} hard links", facts.links),
        });
    }
    Ok(())
}

/// Reads a regular file of ours (no link followed, no FIFO waited on) of
/// at most `max` bytes; `None` when it does not exist.
pub(crate) fn read_own_file(path: &Path, max: u64) -> Result<Option<Vec<u8>>, LibraryError> {
    let file = match platform::open_no_follow(path) {
        Ok(file) => file,
        Err(platform::OpenRefusal::Io(error)) if error.kind() == io::ErrorKind::NotFound => {
            return Ok(None);
        }
        Err(platform::OpenRefusal::Link) => {
            return Err(LibraryError::Unsafe {
                path: path.to_owned(),
                problem: "is a symbolic link; it must be a regular file".to_owned(),
            });
        }
        Err(platform::OpenRefusal::Io(error)) => return Err(io_error(path)(error)),
    };
    check_own_file(&file, path)?;
    let input = minimodel_swarm::input::Input::json("file", max);
    minimodel_swarm::input::read_open(file, path, input)
        .map(Some)
        .map_err(|error| match error {
            minimodel_swarm::input::InputError::TooLarge { .. } => LibraryError::State {
                path: path.to_owned(),
                reason: format!("larger than {max} bytes"),
            },
            minimodel_swarm::input::InputError::NotRegular { kind, .. } => LibraryError::Unsafe {
                path: path.to_owned(),
                problem: format!("is {kind}, not a regular file"),
            },
            minimodel_swarm::input::InputError::Open { source, .. }
            | minimodel_swarm::input::InputError::Read { source, .. } => io_error(path)(source),
        })
}

/// An item's id: 16 lowercase hex digits, the first 8 bytes of the
/// SHA-256 of its kind, model id and Merkle root (so the same artifact
/// cannot be added twice as the same kind).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemId(String);

impl ItemId {
    /// The id of a `kind` item of the artifact `model_id` with `merkle_root`.
    pub fn of(kind: ItemKind, model_id: &ModelId, merkle_root: &Sha256Digest) -> Self {
        let mut text = Vec::new();
        text.extend_from_slice(kind.name().as_bytes());
        text.push(0);
        text.extend_from_slice(model_id.as_str().as_bytes());
        text.push(0);
        text.extend_from_slice(&merkle_root.0);
        let digest = Sha256Digest::of(&text).to_hex();
        Self(digest[..16].to_owned())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ItemId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ItemId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() == 16
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Self(text.to_owned()))
        } else {
            Err(format!(
                "not an item id (16 lowercase hex digits): {:?}",
                text.chars().take(40).collect::<String>()
            ))
        }
    }
}

impl Serialize for ItemId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ItemId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Shares and downloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ItemKind {
    /// A verified local file, served.
    Share,
    /// An artifact fetched from peers.
    Download,
}

impl ItemKind {
    /// `share` or `download`.
    pub fn name(self) -> &'static str {
        match self {
            ItemKind::Share => "share",
            ItemKind::Download => "download",
        }
    }
}

/// Rate caps, bytes per second; `None` is no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Caps {
    /// Upload cap.
    pub max_upload: Option<u64>,
    /// Download cap.
    pub max_download: Option<u64>,
}

impl Caps {
    /// Each cap at least [`MIN_RATE_CAP`](minimodel_swarm::node::MIN_RATE_CAP).
    pub fn raised_to_floor(self) -> Self {
        let floor =
            |cap: Option<u64>| cap.map(|rate| rate.max(minimodel_swarm::node::MIN_RATE_CAP));
        Self {
            max_upload: floor(self.max_upload),
            max_download: floor(self.max_download),
        }
    }

    /// Refuses a cap below [`MIN_RATE_CAP`](minimodel_swarm::node::MIN_RATE_CAP)
    /// (zero among them), which a node would refuse to start with: a
    /// request that sets one is turned away before anything changes.
    pub fn check(&self) -> Result<(), String> {
        let floor = minimodel_swarm::node::MIN_RATE_CAP;
        for (name, cap) in [
            ("max_upload", self.max_upload),
            ("max_download", self.max_download),
        ] {
            if cap.is_some_and(|rate| rate < floor) {
                return Err(format!(
                    "{name}: a cap is at least {floor} bytes per second (null for none)"
                ));
            }
        }
        Ok(())
    }
}

/// The library's own limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Limits {
    /// Caps over every item together (upload: shared among the items that
    /// upload; download: divided among the items that download;
    /// `docs/companion.md`, "Rates").
    pub caps: Caps,
    /// The most bytes the library's downloads may take; `None`: no quota
    /// (the disk's free space still decides).
    pub quota_bytes: Option<u64>,
}

/// What the user consented to for an item, and when.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentRecord {
    /// Serving (a share, or a download's chunks while fetching).
    pub serve: bool,
    /// Fetching.
    pub fetch: bool,
    /// Serving a download's finished file until it is paused or removed.
    pub seed_after: bool,
    /// Announcing or looking up on the DHT.
    pub dht: bool,
    /// When (RFC 3339 UTC).
    pub at: String,
}

/// A share's own fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareRecord {
    /// The local `.slm` file, an absolute path.
    pub file: PathBuf,
    /// Mirrors the share's ticket names (`https://`, no query).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<String>,
}

/// A download's own fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadRecord {
    /// Peers to dial, `PEER_ID@IP:PORT`, one entry per address.
    pub peers: Vec<String>,
    /// Serve verified chunks while fetching.
    pub serve: bool,
    /// Keep serving the finished file.
    pub seed_after: bool,
    /// Find peers on the DHT (and announce there when serving).
    pub dht: bool,
    /// DHT nodes to join through instead of the public ones.
    #[serde(default)]
    pub dht_bootstrap: Vec<std::net::SocketAddrV4>,
    /// Mirror URLs as given (a query may hold a credential: the library
    /// is the user's alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<String>,
    /// `http://` mirrors were allowed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_plain_http_mirror: bool,
    /// The relays its peers name ("reach me via": a ticket's or an
    /// offer's): the companion's endpoint registers with them too, and
    /// asks them to introduce those peers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peer_relays: Vec<PeerRelaysRecord>,
    /// Delivered: the file and its receipt are in its directory.
    pub delivered: bool,
    /// Set when another download of the same model id was in `downloads/`
    /// when this one was added: this one's files are in
    /// `downloads/<manifest sha256>/` (its own manifest's), beside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_dir: Option<Sha256Digest>,
}

/// The relays one peer of a download names, as the state file keeps
/// them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerRelaysRecord {
    /// The peer's id.
    pub peer: String,
    /// Its relays, `[RELAY_ID@]IP:PORT`.
    pub relays: Vec<String>,
}

impl PeerRelaysRecord {
    /// The peer and its relays, those that still read (a relay that does
    /// not is left out).
    pub fn parsed(
        &self,
    ) -> Option<(
        minimodel_wire::PeerId,
        Vec<minimodel_swarm::relay::RelayAddr>,
    )> {
        let peer = self.peer.parse().ok()?;
        let relays: Vec<_> = (self.relays.iter())
            .filter_map(|text| text.parse().ok())
            .collect();
        (!relays.is_empty()).then_some((peer, relays))
    }
}

/// What an item is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Work {
    /// A share.
    Share(ShareRecord),
    /// A download.
    Download(DownloadRecord),
}

/// One item of the library as the state file keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemRecord {
    /// Its id.
    pub id: ItemId,
    /// The artifact's model id.
    pub model_id: String,
    /// SHA-256 of its manifest's bytes (`manifests/<id>.manifest`).
    pub manifest_sha256: String,
    /// When it was added (RFC 3339 UTC).
    pub added_at: String,
    /// Paused by the user: not run until resumed.
    pub paused: bool,
    /// Its own caps.
    pub caps: Caps,
    /// The port it listens on when it serves, kept across restarts so
    /// that its offer stays good; `None` until it first listened.
    pub port: Option<u16>,
    /// The consent given for it.
    pub consent: ConsentRecord,
    /// A publisher key the user named for it (`mmpk1...`).
    pub publisher_key: Option<String>,
    /// Refuse an unsigned manifest.
    pub require_signature: bool,
    /// A share or a download.
    pub work: Work,
    /// Withdrawn by its publisher, as a followed channel said: not run
    /// (not served) until it is no longer withdrawn; its files stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<WithdrawnRecord>,
}

/// A publisher's withdrawal of an item's manifest, as a followed channel
/// listed it (`docs/channel.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawnRecord {
    /// The publisher key whose channel lists it (`mmpk1...`), the key
    /// that signed the item's manifest.
    pub publisher_key: String,
    /// Where the publisher says why.
    pub reason_route: String,
    /// When the companion read it (RFC 3339 UTC).
    pub at: String,
}

/// Whether a follow asks before it fetches a new version, or fetches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum FollowPolicy {
    /// A new version is offered: the user adds it (consent each time).
    Ask,
    /// A new version is fetched beside the old one, with the consent
    /// given when the follow was added.
    Auto,
}

/// A publisher's channel the library follows, for one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowRecord {
    /// The publisher key (`mmpk1...`): the channel's and its manifests'.
    pub publisher_key: String,
    /// The model followed.
    pub model_id: String,
    /// Ask or fetch by itself.
    pub policy: FollowPolicy,
    /// When it was added (RFC 3339 UTC).
    pub added_at: String,
    /// The newest channel item accepted: a lower sequence number is
    /// refused as a replay after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<SeenRecord>,
    /// The consent given for an `auto` follow when it was added: to fetch
    /// each new version, and to pin the key at the first one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<FollowConsent>,
    /// Copies of the model's latest version on the web (`https://` only;
    /// a query may hold a credential): each new version is fetched from
    /// them beside its peers, and its chunk list read beside them
    /// (`URL.chunk-list`) when its manifest names no chunk-list-route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<String>,
}

/// What an `auto` follow was given consent to, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowConsent {
    /// Fetch each new version.
    pub fetch: bool,
    /// Pin the key at the first version, if it is not pinned.
    pub trust_key: bool,
}

/// The newest channel item accepted of a follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeenRecord {
    /// Its sequence number.
    pub seq: i64,
    /// SHA-256 of its value.
    pub value_sha256: Sha256Digest,
}

impl FollowRecord {
    /// The publisher key and model id, checked.
    pub fn key(&self) -> Result<(minimodel_verifier::signing::PublicKey, ModelId), String> {
        let key = self
            .publisher_key
            .parse()
            .map_err(|e| format!("follow {}: publisher_key: {e}", self.publisher_key))?;
        let model = self
            .model_id
            .parse()
            .map_err(|e| format!("follow {}: model_id: {e}", self.publisher_key))?;
        minimodel_swarm::mirror::given::parse_given(
            &self.mirrors,
            minimodel_swarm::mirror::given::plain_if(false),
        )
        .map_err(|e| format!("follow {}: mirrors: {e}", self.publisher_key))?;
        Ok((key, model))
    }
}

impl ItemRecord {
    /// Share or download.
    pub fn kind(&self) -> ItemKind {
        match self.work {
            Work::Share(_) => ItemKind::Share,
            Work::Download(_) => ItemKind::Download,
        }
    }

    /// The download's fields, when it is one.
    pub fn download(&self) -> Option<&DownloadRecord> {
        match &self.work {
            Work::Download(download) => Some(download),
            Work::Share(_) => None,
        }
    }

    /// Checks what serde cannot: ids, digests, peers, consent.
    fn check(&self) -> Result<(), String> {
        let name = format!("item {}", self.id);
        self.model_id
            .parse::<ModelId>()
            .map_err(|e| format!("{name}: model_id: {e}"))?;
        self.manifest_sha256
            .parse::<Sha256Digest>()
            .map_err(|e| format!("{name}: manifest_sha256: {e}"))?;
        if let Some(key) = &self.publisher_key {
            key.parse::<minimodel_verifier::signing::PublicKey>()
                .map_err(|e| format!("{name}: publisher_key: {e}"))?;
        }
        match &self.work {
            Work::Share(share) => {
                if !share.file.is_absolute() {
                    return Err(format!("{name}: file must be an absolute path"));
                }
                if !self.consent.serve {
                    return Err(format!("{name}: a share without consent to serve"));
                }
            }
            Work::Download(download) => {
                if !self.consent.fetch {
                    return Err(format!("{name}: a download without consent to fetch"));
                }
                if download.serve && !self.consent.serve {
                    return Err(format!("{name}: serving without consent to serve"));
                }
                if download.seed_after && !(download.serve && self.consent.seed_after) {
                    return Err(format!("{name}: seed_after without serve and its consent"));
                }
                if download.dht && !self.consent.dht {
                    return Err(format!("{name}: dht without consent"));
                }
                if download
                    .version_dir
                    .is_some_and(|dir| dir.to_hex() != self.manifest_sha256)
                {
                    return Err(format!("{name}: version_dir is not its manifest_sha256"));
                }
                if download.peers.len() > MAX_PEERS * 16 {
                    return Err(format!(
                        "{name}: more than {} peer addresses",
                        MAX_PEERS * 16
                    ));
                }
                for peer in &download.peers {
                    peer.parse::<PeerAddr>()
                        .map_err(|e| format!("{name}: peer {peer:?}: {e}"))?;
                }
            }
        }
        Ok(())
    }
}

/// The state file: every item and the library's limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibraryState {
    /// [`LIBRARY_FORMAT`].
    pub format: String,
    /// The library's limits.
    pub limits: Limits,
    /// The items, in the order they were added.
    pub items: Vec<ItemRecord>,
    /// The channels followed, in the order they were added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub follows: Vec<FollowRecord>,
}

impl Default for LibraryState {
    fn default() -> Self {
        Self {
            format: LIBRARY_FORMAT.to_owned(),
            limits: Limits::default(),
            items: Vec::new(),
            follows: Vec::new(),
        }
    }
}

impl LibraryState {
    /// Parses a state file; refuses another format, unknown or missing
    /// fields, bad ids, digests or peers, an item twice, more than
    /// [`MAX_ITEMS`].
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() as u64 > MAX_STATE_BYTES {
            return Err(format!("larger than {MAX_STATE_BYTES} bytes"));
        }
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        match value.get("format").and_then(|f| f.as_str()) {
            Some(LIBRARY_FORMAT) => {}
            Some(other) => {
                return Err(format!(
                    "format {other:?} is not supported (this version reads {LIBRARY_FORMAT})"
                ));
            }
            None => return Err("no format field".to_owned()),
        }
        let mut state: LibraryState = serde_json::from_value(value).map_err(|e| e.to_string())?;
        // A cap saved by a version that took less than the floor is raised
        // to it: a node would not start with it.
        state.limits.caps = state.limits.caps.raised_to_floor();
        for item in &mut state.items {
            item.caps = item.caps.raised_to_floor();
        }
        if state.items.len() > MAX_ITEMS {
            return Err(format!("more than {MAX_ITEMS} items"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for item in &state.items {
            if !seen.insert(item.id.clone()) {
                return Err(format!("item {} is listed twice", item.id));
            }
            item.check()?;
        }
        if state.follows.len() > MAX_FOLLOWS {
            return Err(format!("more than {MAX_FOLLOWS} follows"));
        }
        let mut followed = std::collections::BTreeSet::new();
        for follow in &state.follows {
            let (key, model) = follow.key()?;
            if follow.policy == FollowPolicy::Auto && !follow.consent.is_some_and(|c| c.fetch) {
                return Err(format!(
                    "follow {} of {}: auto without consent to fetch",
                    follow.publisher_key, follow.model_id
                ));
            }
            if !followed.insert((*key.as_bytes(), model)) {
                return Err(format!(
                    "follow {} of {} is listed twice",
                    follow.publisher_key, follow.model_id
                ));
            }
        }
        Ok(state)
    }

    /// The item `id`.
    pub fn item(&self, id: &ItemId) -> Option<&ItemRecord> {
        self.items.iter().find(|item| &item.id == id)
    }

    /// The item `id`, to change.
    pub fn item_mut(&mut self, id: &ItemId) -> Option<&mut ItemRecord> {
        self.items.iter_mut().find(|item| &item.id == id)
    }
}

/// `api.json`: where the running companion's API listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// [`ENDPOINT_FORMAT`].
    pub format: String,
    /// `http://HOST:PORT` (no path).
    pub url: String,
    /// The companion's process id.
    pub pid: u32,
}

impl Endpoint {
    /// Reads `api.json` of `library`; `None` when no companion wrote one.
    pub fn read(library: &LibraryDir) -> Result<Option<Endpoint>, LibraryError> {
        let path = library.endpoint_path();
        let Some(bytes) = read_own_file(&path, 64 * 1024)? else {
            return Ok(None);
        };
        let endpoint: Endpoint =
            serde_json::from_slice(&bytes).map_err(|e| LibraryError::State {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if endpoint.format != ENDPOINT_FORMAT || !endpoint.url.starts_with("http://") {
            return Err(LibraryError::State {
                path,
                reason: format!("not a {ENDPOINT_FORMAT} file"),
            });
        }
        Ok(Some(endpoint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(id: &str) -> ItemRecord {
        ItemRecord {
            id: id.parse().unwrap(),
            model_id: "tiny".to_owned(),
            manifest_sha256: "ab".repeat(32),
            added_at: "2026-01-02T03:04:05Z".to_owned(),
            paused: false,
            caps: Caps::default(),
            port: Some(4433),
            consent: ConsentRecord {
                serve: true,
                at: "2026-01-02T03:04:05Z".to_owned(),
                ..ConsentRecord::default()
            },
            publisher_key: None,
            require_signature: false,
            work: Work::Share(ShareRecord {
                // Absolute on every system (a Windows path has a drive).
                file: std::env::temp_dir().join("models").join("tiny.slm"),
                mirrors: Vec::new(),
            }),
            withdrawn: None,
        }
    }

    fn download(id: &str) -> ItemRecord {
        ItemRecord {
            consent: ConsentRecord {
                fetch: true,
                serve: true,
                at: "2026-01-02T03:04:05Z".to_owned(),
                ..ConsentRecord::default()
            },
            work: Work::Download(DownloadRecord {
                peers: vec![format!("{}@127.0.0.1:4433", "a".repeat(52))],
                serve: true,
                seed_after: false,
                dht: false,
                dht_bootstrap: Vec::new(),
                mirrors: vec!["https://mirror.example/x.slm?t=1".to_owned()],
                allow_plain_http_mirror: false,
                peer_relays: Vec::new(),
                delivered: false,
                version_dir: None,
            }),
            ..share(id)
        }
    }

    fn text(state: &LibraryState) -> Vec<u8> {
        serde_json::to_vec_pretty(state).unwrap()
    }

    #[test]
    fn a_state_round_trips() {
        let state = LibraryState {
            items: vec![share("0123456789abcdef"), download("fedcba9876543210")],
            limits: Limits {
                caps: Caps {
                    max_upload: Some(1 << 20),
                    max_download: None,
                },
                quota_bytes: Some(1 << 30),
            },
            ..LibraryState::default()
        };
        assert_eq!(LibraryState::parse(&text(&state)).unwrap(), state);
    }

    #[test]
    fn follows_round_trip_and_an_auto_follow_needs_its_consent() {
        let key = minimodel_verifier::signing::SecretKey::from_seed(&[1; 32]).public_key();
        let follow = FollowRecord {
            publisher_key: key.to_string(),
            model_id: "tiny".to_owned(),
            policy: FollowPolicy::Auto,
            added_at: "2026-01-02T03:04:05Z".to_owned(),
            last_seen: Some(SeenRecord {
                seq: 3,
                value_sha256: Sha256Digest([7; 32]),
            }),
            consent: Some(FollowConsent {
                fetch: true,
                trust_key: true,
            }),
            mirrors: vec!["https://mirror.example/tiny.slm?token=1".to_owned()],
        };
        let state = LibraryState {
            follows: vec![follow.clone()],
            ..LibraryState::default()
        };
        assert_eq!(LibraryState::parse(&text(&state)).unwrap(), state);
        let twice = LibraryState {
            follows: vec![follow.clone(), follow.clone()],
            ..LibraryState::default()
        };
        assert!(
            LibraryState::parse(&text(&twice))
                .unwrap_err()
                .contains("listed twice")
        );
        let unconsented = LibraryState {
            follows: vec![FollowRecord {
                consent: None,
                ..follow.clone()
            }],
            ..LibraryState::default()
        };
        assert!(
            LibraryState::parse(&text(&unconsented))
                .unwrap_err()
                .contains("auto without consent")
        );
        let bad_key = LibraryState {
            follows: vec![FollowRecord {
                publisher_key: "mmpk1nope".to_owned(),
                ..follow.clone()
            }],
            ..LibraryState::default()
        };
        assert!(
            LibraryState::parse(&text(&bad_key))
                .unwrap_err()
                .contains("publisher_key")
        );
        for bad in [
            "http://mirror.example/tiny.slm",
            "ftp://x.example/a",
            "not a url",
        ] {
            let bad_mirror = LibraryState {
                follows: vec![FollowRecord {
                    mirrors: vec![bad.to_owned()],
                    ..follow.clone()
                }],
                ..LibraryState::default()
            };
            assert!(
                LibraryState::parse(&text(&bad_mirror))
                    .unwrap_err()
                    .contains("mirrors"),
                "{bad}"
            );
        }
    }

    #[test]
    fn caps_below_the_floor_saved_by_an_older_version_are_raised_to_it() {
        let mut item = share("0123456789abcdef");
        item.caps = Caps {
            max_upload: Some(100),
            max_download: Some(0),
        };
        let state = LibraryState {
            items: vec![item],
            limits: Limits {
                caps: Caps {
                    max_upload: Some(1),
                    max_download: Some(1 << 20),
                },
                quota_bytes: None,
            },
            ..LibraryState::default()
        };
        let loaded = LibraryState::parse(&text(&state)).unwrap();
        let floor = Some(minimodel_swarm::node::MIN_RATE_CAP);
        assert_eq!(loaded.items[0].caps.max_upload, floor);
        assert_eq!(loaded.items[0].caps.max_download, floor);
        assert_eq!(loaded.limits.caps.max_upload, floor);
        assert_eq!(loaded.limits.caps.max_download, Some(1 << 20));
        assert!(loaded.items[0].caps.check().is_ok());
    }

    #[test]
    fn bad_states_are_refused_with_their_reason() {
        let good = LibraryState {
            items: vec![share("0123456789abcdef")],
            ..LibraryState::default()
        };
        let value = serde_json::to_value(&good).unwrap();
        let refused = |value: serde_json::Value, expected: &str| {
            let error = LibraryState::parse(&serde_json::to_vec(&value).unwrap()).unwrap_err();
            assert!(error.contains(expected), "{error} (expected {expected})");
        };
        let mut other = value.clone();
        other["format"] = "minimodel-companion-library-v9".into();
        refused(other, "not supported");
        let mut unknown = value.clone();
        unknown["extra"] = 1.into();
        refused(unknown, "unknown field");
        let mut bad_id = value.clone();
        bad_id["items"][0]["id"] = "XYZ".into();
        refused(bad_id, "not an item id");
        let mut bad_digest = value.clone();
        bad_digest["items"][0]["manifest_sha256"] = "00".into();
        refused(bad_digest, "manifest_sha256");
        let mut twice = value.clone();
        let item = twice["items"][0].clone();
        twice["items"].as_array_mut().unwrap().push(item);
        refused(twice, "listed twice");
        let mut relative = value.clone();
        relative["items"][0]["work"]["share"]["file"] = "tiny.slm".into();
        refused(relative, "absolute");
        let mut no_consent = value.clone();
        no_consent["items"][0]["consent"]["serve"] = false.into();
        refused(no_consent, "without consent to serve");
        let mut bad_model = value.clone();
        bad_model["items"][0]["model_id"] = "../x".into();
        refused(bad_model, "model_id");

        let download = serde_json::to_value(LibraryState {
            items: vec![download("0123456789abcdef")],
            ..LibraryState::default()
        })
        .unwrap();
        let mut bad_peer = download.clone();
        bad_peer["items"][0]["work"]["download"]["peers"][0] = "nobody@nowhere".into();
        refused(bad_peer, "peer");
        let mut no_fetch = download.clone();
        no_fetch["items"][0]["consent"]["fetch"] = false.into();
        refused(no_fetch, "without consent to fetch");
        // A version directory is named by the item's own manifest: never a
        // path, never another digest.
        let mut escape = download.clone();
        escape["items"][0]["work"]["download"]["version_dir"] = "../../etc".into();
        refused(escape, "64 hex digits");
        let mut other_dir = download.clone();
        other_dir["items"][0]["work"]["download"]["version_dir"] = "cd".repeat(32).into();
        refused(other_dir, "version_dir is not its manifest_sha256");
        let mut own_dir = download.clone();
        own_dir["items"][0]["work"]["download"]["version_dir"] =
            own_dir["items"][0]["manifest_sha256"].clone();
        LibraryState::parse(&serde_json::to_vec(&own_dir).unwrap())
            .expect("a version directory named by its own manifest");

        for junk in [&b""[..], b"{", b"[]", b"{\"format\":1}", b"\xff\xfe"] {
            assert!(LibraryState::parse(junk).is_err(), "{junk:?}");
        }
        let huge = vec![b' '; MAX_STATE_BYTES as usize + 1];
        assert!(LibraryState::parse(&huge).unwrap_err().contains("larger"));
    }

    #[test]
    fn ids_are_fixed_by_kind_model_and_root() {
        let model: ModelId = "tiny".parse().unwrap();
        let root = Sha256Digest::of(b"root");
        let share = ItemId::of(ItemKind::Share, &model, &root);
        assert_eq!(share, ItemId::of(ItemKind::Share, &model, &root));
        assert_ne!(share, ItemId::of(ItemKind::Download, &model, &root));
        assert_ne!(
            share,
            ItemId::of(ItemKind::Share, &model, &Sha256Digest::of(b"other"))
        );
        assert_eq!(share.as_str().len(), 16);
        assert!("0123456789ABCDEF".parse::<ItemId>().is_err());
        assert!("../../etc/passwd".parse::<ItemId>().is_err());
    }

    #[test]
    fn a_second_lock_on_one_library_is_refused_with_the_holder() {
        let temp = tempfile::tempdir().unwrap();
        let library = LibraryDir::open(&temp.path().join("lib")).unwrap();
        let lock = library.lock().unwrap();
        match library.lock() {
            Err(LibraryError::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected a refusal, got {other:?}"),
        }
        drop(lock);
        library.lock().unwrap();
    }

    /// Unix only: modes (`scripts/windows-tests`).
    #[cfg(unix)]
    #[test]
    fn a_library_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("lib");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = LibraryDir::open(&root).unwrap_err();
        assert!(error.to_string().contains("chmod 700"), "{error}");
    }

    #[test]
    fn the_state_is_saved_and_read_back_and_a_damaged_one_is_kept() {
        let temp = tempfile::tempdir().unwrap();
        let library = LibraryDir::open(temp.path()).unwrap();
        assert_eq!(library.load_state().unwrap(), LibraryState::default());
        let state = LibraryState {
            items: vec![share("0123456789abcdef")],
            ..LibraryState::default()
        };
        library.save_state(&state).unwrap();
        assert_eq!(library.load_state().unwrap(), state);
        std::fs::write(library.state_path(), b"{\"format\": \"minimodel-compan").unwrap();
        assert!(matches!(
            library.load_state(),
            Err(LibraryError::State { .. })
        ));
        assert_eq!(
            std::fs::read(library.state_path()).unwrap(),
            b"{\"format\": \"minimodel-compan"
        );
        std::fs::remove_file(library.state_path()).unwrap();
        let elsewhere = temp.path().join("elsewhere.json");
        std::fs::write(&elsewhere, b"{}").unwrap();
        platform::plant_link(&elsewhere, &library.state_path()).unwrap();
        assert!(matches!(
            library.load_state(),
            Err(LibraryError::Unsafe { .. })
        ));
    }
}
