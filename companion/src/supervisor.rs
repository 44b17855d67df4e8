//! The library's decisions, sans-IO: which items run, their states and
//! the transitions between them, tries and their back-off, the caps each
//! run gets, what a full disk or a lowered quota holds back, and what
//! happens after a restart. Events and the time go in
//! ([`Supervisor::handle_run`], [`Supervisor::handle_timeout`], the
//! API's changes), [`Action`]s come out ([`Supervisor::poll_action`]),
//! as `NodeCore` does for a peer: no tokio, no files, no clock of its
//! own. The service (`crate::service`) carries the actions out and
//! nothing else decides.
//!
//! Each item is in one [`Phase`]:
//!
//! | phase | what | leaves when |
//! |---|---|---|
//! | `Idle` | not running: paused, or the companion stops | resumed |
//! | `Running` | a run of its node | it ends, or is stopped |
//! | `Stopping` | a stop was asked | the run's end came |
//! | `Waiting` | a download between tries for its peers | the next try is due, or a resume |
//! | `Failed` | stopped by what a person must fix | the cause goes (space freed, the quota raised), a resume, a restart |
//! | `Done` | a delivered download that does not serve | removed |
//!
//! **A download never gives up for want of peers.** Its node runs
//! without a give-up time; a try that verified nothing and had nothing
//! in flight for [`Patience::try_for`] is stopped, and the download waits
//! ([`Patience::first_wait`], doubling per try without progress, at most
//! [`Patience::longest_wait`]) before it tries again with every peer it
//! knows (named, remembered, the DHT and LAN when allowed). A try that
//! verified a chunk starts the back-off over. **A returning peer is found
//! within a minute whatever the back-off:** every [`Patience::dial_every`]
//! while it waits, a waiting download dials the addresses it knows, and
//! nothing else ([`Action::Start`] with `dial_only`: no DHT lookup, no
//! back-off spent); a dial that reaches no peer in [`Patience::dial_for`]
//! ends and the download waits on as before, one that reaches a peer
//! goes on as a try. A run that fails for its
//! peers or its network (no peer answered, the DHT could not start)
//! waits the same way. A run that fails for the disk waits for space
//! ([`Action::MeasureDisk`] every [`Patience::disk_every`], then a new
//! run once as much is free as it needs); a download the quota no longer
//! holds (the quota lowered below what the library takes: the newest
//! downloads not delivered are held) runs again once it fits. Anything
//! else (a refused manifest or signature, a file that does not pass, a
//! damaged disk) stays failed until a resume or a restart.
//!
//! **After a restart or a kill** every item that is not paused starts
//! again: failures and waits are not kept across runs (a restart is a
//! try), each download resumes from its own resume state.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use minimodel_verifier::{ModelId, Sha256Digest};

use crate::library::{
    Caps, ItemId, ItemKind, ItemRecord, LibraryState, Limits, MAX_ITEMS, WithdrawnRecord, Work,
};
use crate::quota::{self, QuotaRefusal};
use crate::view::{ItemState, ProblemKind};

/// How long downloads try and wait for their peers, and how often a full
/// disk is looked at. [`Default`] holds the product's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    /// A download's try that verified nothing and had nothing in flight
    /// for this long is stopped, and the download waits. Default 60 s.
    pub try_for: Duration,
    /// The first wait between tries; it doubles with every try that
    /// verified nothing. Default 15 s.
    pub first_wait: Duration,
    /// The longest wait between tries. Default 5 min.
    pub longest_wait: Duration,
    /// How often the free space is measured while an item waits for it.
    /// Default 5 s.
    pub disk_every: Duration,
    /// How often a waiting download dials the addresses it knows (a QUIC
    /// handshake each), whatever its wait. Default 60 s.
    pub dial_every: Duration,
    /// How long such a dial waits for a peer to answer before the
    /// download waits on. Default 15 s.
    pub dial_for: Duration,
}

impl Default for Patience {
    fn default() -> Self {
        Self {
            try_for: Duration::from_secs(60),
            first_wait: Duration::from_secs(15),
            longest_wait: Duration::from_secs(300),
            disk_every: Duration::from_secs(5),
            dial_every: Duration::from_secs(60),
            dial_for: Duration::from_secs(15),
        }
    }
}

impl Patience {
    /// The wait after `tries` tries in a row that verified nothing (at
    /// least one).
    pub fn wait_after(&self, tries: u32) -> Duration {
        let doublings = tries.saturating_sub(1).min(16);
        self.first_wait
            .saturating_mul(1 << doublings)
            .min(self.longest_wait)
    }
}

/// One run of an item's node (the item's id and this number name it):
/// the reports of a run being stopped are not taken for the next one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(pub u64);

/// What a run is doing, as the runner tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunPhase {
    /// Reading a file whole against its manifest (a share, or a delivered
    /// download before it serves again).
    Verifying,
    /// Opening a download's directory (a recheck reads it).
    Opening,
    /// Fetching.
    Fetching,
    /// A share serving.
    Serving,
    /// A delivered download serving its file.
    Seeding,
}

/// A running node's counters, every second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Verified bytes (earlier runs included).
    pub verified_bytes: u64,
    /// Bytes asked of peers and not received yet.
    pub in_flight_bytes: u64,
    /// Peers connected.
    pub peers: u64,
    /// Addresses the node may dial.
    pub addresses_known: u64,
    /// The caps in force (its own and its part of the library's).
    pub caps: Caps,
}

/// Why a run failed: its kind, for programs, and words for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The kind.
    pub kind: ProblemKind,
    /// What happened, in words.
    pub text: String,
    /// For a full disk: the free bytes it needs to go on.
    pub needed_bytes: Option<u64>,
}

impl Failure {
    /// A failure of `kind`, in `text`.
    pub fn new(kind: ProblemKind, text: impl Into<String>) -> Self {
        Self {
            kind,
            text: text.into(),
            needed_bytes: None,
        }
    }

    /// What becomes of an item that fails so.
    fn then(&self) -> AfterFailure {
        match self.kind {
            ProblemKind::NoPeersYet | ProblemKind::Network => AfterFailure::Wait,
            ProblemKind::DiskFull => AfterFailure::WaitForSpace,
            ProblemKind::OverQuota => AfterFailure::WaitForQuota,
            _ => AfterFailure::Stay,
        }
    }
}

enum AfterFailure {
    Wait,
    WaitForSpace,
    WaitForQuota,
    Stay,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// Stopped on request.
    Stopped,
    /// A download delivered, not serving on.
    Finished,
    /// Failed.
    Failed(Failure),
}

/// What a run tells the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunInput {
    /// Its phase changed.
    Phase(RunPhase),
    /// Its node's counters.
    Counters(Counters),
    /// The download is delivered (the file and its receipt are written);
    /// `seeding`: its node serves it on.
    Delivered {
        /// Whether it serves on.
        seeding: bool,
    },
    /// It ended (its last word).
    Ended(RunEnd),
}

/// What the supervisor asks to be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start run `run` of `item` (as its record says) with its own caps
    /// `caps` in the directions it moves bytes.
    Start {
        /// The item.
        item: ItemId,
        /// The run's number.
        run: RunId,
        /// Its own caps.
        caps: Caps,
        /// A waiting download's dial of the addresses it knows: no DHT
        /// lookup, no local discovery; stopped when no peer answers.
        dial_only: bool,
    },
    /// Stop run `run` of `item` (a download checkpoints); its end comes
    /// back as [`RunEnd::Stopped`] (or how else it ended).
    Stop {
        /// The item.
        item: ItemId,
        /// The run.
        run: RunId,
    },
    /// Put `caps` in force in run `run` of `item`, without a restart.
    SetCaps {
        /// The item.
        item: ItemId,
        /// The run.
        run: RunId,
        /// Its own caps now.
        caps: Caps,
    },
    /// Put the library's caps in force on the items' endpoint.
    LibraryCaps(Caps),
    /// Measure the free bytes of the downloads' disk and tell
    /// [`Supervisor::handle_disk`].
    MeasureDisk,
    /// Write the library's state ([`Supervisor::state`]).
    Save,
    /// The item's view changed (tell the API's event stream).
    Changed(ItemId),
}

/// Why an item is not added. Each says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The same item is in the library already.
    #[error("{model_id} is in the library already as a {} (item {id})", kind.name())]
    Exists {
        /// Its model id.
        model_id: String,
        /// Share or download.
        kind: ItemKind,
        /// The item.
        id: ItemId,
    },
    /// The artifact is in the library as the other kind: its swarm is
    /// served once.
    #[error("{model_id} is in the library as a {} already (item {id}); {}", kind.name(), match kind { ItemKind::Share => "the file is here", ItemKind::Download => "it serves from there" })]
    OtherKind {
        /// Its model id.
        model_id: String,
        /// The kind in the library.
        kind: ItemKind,
        /// That item.
        id: ItemId,
    },
    /// Another artifact with this model id is downloaded into the same
    /// directory already (their files would have the same names).
    #[error(
        "another artifact named {model_id} is downloaded into the library already (item {other}); remove it first"
    )]
    SameModelId {
        /// The model id.
        model_id: String,
        /// The other item.
        other: ItemId,
    },
    /// The library is full.
    #[error("the library holds {MAX_ITEMS} items already")]
    TooMany,
    /// The download does not fit.
    #[error("{model_id} does not fit: {refusal}")]
    DoesNotFit {
        /// The model id.
        model_id: String,
        /// Why.
        refusal: QuotaRefusal,
    },
    /// The item named is not in the library.
    #[error("no item {0} in the library")]
    NotFound(ItemId),
}

/// An item to add: what admission looks at.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// Share or download.
    pub kind: ItemKind,
    /// The artifact's model id.
    pub model_id: &'a ModelId,
    /// Its Merkle root.
    pub merkle_root: &'a Sha256Digest,
    /// Its size.
    pub artifact_bytes: u64,
    /// A download's version directory ([`Supervisor::placement`]).
    pub version_dir: Option<&'a Sha256Digest>,
}

impl Candidate<'_> {
    /// Its id.
    pub fn id(&self) -> ItemId {
        ItemId::of(self.kind, self.model_id, self.merkle_root)
    }
}

/// An item's status, for its view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Where it is.
    pub state: ItemState,
    /// What holds it back (waiting or failed), when something does.
    pub problem: Option<Problem>,
    /// Runs started since the companion started (a restart of its node
    /// is one more).
    pub runs: u64,
    /// The caps in force: as its running node holds them (its own and
    /// its part of the library's); its own while it does not run.
    pub caps: Caps,
    /// Its running node's last counters.
    pub counters: Option<Counters>,
}

/// What holds an item back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The kind.
    pub kind: ProblemKind,
    /// The failure's words (empty while waiting for peers).
    pub text: String,
    /// Since when.
    pub since: Instant,
    /// What makes it go on by itself, if anything does.
    pub resumes: Resumes,
}

/// What makes an item held back go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resumes {
    /// The next try, by itself.
    NextTry {
        /// Tries in a row that verified nothing.
        tries: u32,
        /// When the last try ended.
        last_try: Instant,
        /// When the next one starts.
        next_try: Instant,
        /// Addresses its node knew at the last try.
        addresses_known: u64,
    },
    /// This many bytes free on the downloads' disk.
    FreeBytes(u64),
    /// A quota that holds it (or another download removed).
    Quota,
    /// A person: a resume, or a restart of the companion.
    Person,
}

/// What follows a stop, once the run's end came.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Then {
    /// Decide again (paused: idle; else run).
    Settle,
    /// Wait for peers: the try verified nothing.
    Wait,
    /// Wait on as before the dial of the known addresses.
    WaitOn(Box<Waited>),
    /// Fail so (the quota holds it).
    Fail(Failure),
}

/// A waiting download's wait, kept while it dials its known addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Waited {
    kind: ProblemKind,
    text: String,
    last_try: Instant,
    next_try: Instant,
    since: Instant,
    /// When the dial started: the next is [`Patience::dial_every`] after.
    dialed: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Running {
    run: RunId,
    phase: Option<RunPhase>,
    /// When it last verified a chunk or had bytes in flight (or started
    /// fetching).
    last_progress: Instant,
    counters: Option<Counters>,
    /// A waiting download's dial of its known addresses (the wait it
    /// goes back to), until a peer answers.
    dial: Option<Box<Waited>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Idle,
    Running(Running),
    Stopping {
        run: RunId,
        then: Then,
        counters: Option<Counters>,
    },
    Waiting {
        kind: ProblemKind,
        text: String,
        last_try: Instant,
        next_try: Instant,
        since: Instant,
        /// When it dials its known addresses next.
        next_dial: Instant,
    },
    Failed {
        failure: Failure,
        since: Instant,
    },
    Done,
}

#[derive(Debug, Clone)]
struct Item {
    artifact_bytes: u64,
    phase: Phase,
    /// Tries in a row that verified nothing.
    tries: u32,
    runs: u64,
    /// Addresses the node knew at its last counters.
    addresses_known: u64,
}

/// The library's decisions. See the module docs.
#[derive(Debug)]
pub struct Supervisor {
    state: LibraryState,
    items: BTreeMap<ItemId, Item>,
    patience: Patience,
    next_run: u64,
    actions: VecDeque<Action>,
    /// The companion stops: nothing starts any more.
    stopping: bool,
    started: bool,
    /// When the free space is measured next, while an item waits for it.
    disk_due: Option<Instant>,
}

impl Supervisor {
    /// The library as `state` holds it; `loaded` says, for each item,
    /// its artifact's size, or why it cannot run (its manifest is gone or
    /// changed, a delivered file is gone). Nothing starts before
    /// [`Self::start`].
    pub fn new(
        state: LibraryState,
        loaded: BTreeMap<ItemId, Result<u64, Failure>>,
        patience: Patience,
        now: Instant,
    ) -> Self {
        let mut items = BTreeMap::new();
        for record in &state.items {
            let (artifact_bytes, phase) = match loaded.get(&record.id) {
                Some(Ok(bytes)) => (*bytes, Phase::Idle),
                Some(Err(failure)) => (
                    0,
                    Phase::Failed {
                        failure: failure.clone(),
                        since: now,
                    },
                ),
                None => (
                    0,
                    Phase::Failed {
                        failure: Failure::new(
                            ProblemKind::ManifestChanged,
                            "its manifest is not loaded",
                        ),
                        since: now,
                    },
                ),
            };
            items.insert(
                record.id.clone(),
                Item {
                    artifact_bytes,
                    phase,
                    tries: 0,
                    runs: 0,
                    addresses_known: 0,
                },
            );
        }
        Self {
            state,
            items,
            patience,
            next_run: 1,
            actions: VecDeque::new(),
            stopping: false,
            started: false,
            disk_due: None,
        }
    }

    /// The library's state as it is to be written.
    pub fn state(&self) -> &LibraryState {
        &self.state
    }

    /// Item `id`'s record.
    pub fn record(&self, id: &ItemId) -> Option<&ItemRecord> {
        self.state.item(id)
    }

    /// The next action.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Starts the library: the endpoint's caps, then every item that
    /// should run.
    pub fn start(&mut self, now: Instant) {
        self.started = true;
        self.actions
            .push_back(Action::LibraryCaps(self.state.limits.caps));
        self.settle_all(now);
    }

    /// The companion stops: every run is stopped and nothing starts any
    /// more.
    pub fn shut_down(&mut self) {
        self.stopping = true;
        let ids: Vec<ItemId> = self.items.keys().cloned().collect();
        for id in ids {
            self.stop(&id, Then::Settle);
        }
    }

    /// Whether no run is under way (after [`Self::shut_down`], every run
    /// has ended).
    pub fn is_idle(&self) -> bool {
        self.items
            .values()
            .all(|item| !matches!(item.phase, Phase::Running(_) | Phase::Stopping { .. }))
    }

    /// Where a new download of `model_id` whose manifest hashes to
    /// `manifest_sha256` goes: `None`, `downloads/` itself, unless a
    /// download of that model id is there already; then its own version
    /// directory, `downloads/<manifest sha256>/`, beside the other.
    pub fn placement(
        &self,
        model_id: &ModelId,
        manifest_sha256: &Sha256Digest,
    ) -> Option<Sha256Digest> {
        let taken = self.state.items.iter().any(|item| {
            item.model_id == model_id.as_str()
                && item
                    .download()
                    .is_some_and(|download| download.version_dir.is_none())
        });
        taken.then_some(*manifest_sha256)
    }

    /// Whether `candidate` may be added: not in the library already as
    /// either kind, no other download of its model id in its directory, room in the
    /// library, and for a download room in the quota and on the disk
    /// (`free_bytes` free there, when known).
    pub fn admit(&self, candidate: &Candidate, free_bytes: Option<u64>) -> Result<(), Refusal> {
        let id = candidate.id();
        let model_id = candidate.model_id.to_string();
        if self.state.item(&id).is_some() {
            return Err(Refusal::Exists {
                model_id,
                kind: candidate.kind,
                id,
            });
        }
        let other_kind = match candidate.kind {
            ItemKind::Share => ItemKind::Download,
            ItemKind::Download => ItemKind::Share,
        };
        let other = ItemId::of(other_kind, candidate.model_id, candidate.merkle_root);
        if self.state.item(&other).is_some() {
            return Err(Refusal::OtherKind {
                model_id,
                kind: other_kind,
                id: other,
            });
        }
        if candidate.kind == ItemKind::Download
            && let Some(same) = self.state.items.iter().find(|item| {
                item.download().is_some_and(|download| {
                    item.model_id == candidate.model_id.as_str()
                        && download.version_dir.as_ref() == candidate.version_dir
                })
            })
        {
            return Err(Refusal::SameModelId {
                model_id,
                other: same.id.clone(),
            });
        }
        if self.state.items.len() >= MAX_ITEMS {
            return Err(Refusal::TooMany);
        }
        if candidate.kind == ItemKind::Download {
            quota::check(
                candidate.artifact_bytes,
                self.used_bytes(),
                self.state.limits.quota_bytes,
                free_bytes,
            )
            .map_err(|refusal| Refusal::DoesNotFit { model_id, refusal })?;
        }
        Ok(())
    }

    /// Adds `record` (of an artifact of `artifact_bytes`), admitted again
    /// with `free_bytes`, and starts it.
    pub fn add(
        &mut self,
        record: ItemRecord,
        model_id: &ModelId,
        merkle_root: &Sha256Digest,
        artifact_bytes: u64,
        free_bytes: Option<u64>,
        now: Instant,
    ) -> Result<(), Refusal> {
        let candidate = Candidate {
            kind: record.kind(),
            model_id,
            merkle_root,
            artifact_bytes,
            version_dir: record
                .download()
                .and_then(|download| download.version_dir.as_ref()),
        };
        self.admit(&candidate, free_bytes)?;
        let id = record.id.clone();
        self.state.items.push(record);
        self.items.insert(
            id.clone(),
            Item {
                artifact_bytes,
                phase: Phase::Idle,
                tries: 0,
                runs: 0,
                addresses_known: 0,
            },
        );
        self.actions.push_back(Action::Save);
        self.settle(&id, now);
        self.actions.push_back(Action::Changed(id));
        Ok(())
    }

    /// Takes `record` back out (its state could not be written): it was
    /// never there.
    pub fn unadd(&mut self, id: &ItemId) {
        self.stop(id, Then::Settle);
        self.state.items.retain(|item| &item.id != id);
        self.items.remove(id);
    }

    /// Removes item `id`: its run is stopped, and it is forgotten (the
    /// run's end, when it comes, changes nothing). Its record.
    pub fn remove(&mut self, id: &ItemId, now: Instant) -> Result<ItemRecord, Refusal> {
        let record = self
            .state
            .item(id)
            .cloned()
            .ok_or_else(|| Refusal::NotFound(id.clone()))?;
        self.stop(id, Then::Settle);
        self.state.items.retain(|item| &item.id != id);
        self.items.remove(id);
        self.actions.push_back(Action::Save);
        // The space it took may let a download the quota held go on.
        self.settle_all(now);
        Ok(record)
    }

    /// Puts back a record [`Self::remove`] took out (its state could not
    /// be written).
    pub fn unremove(&mut self, record: ItemRecord, artifact_bytes: u64, now: Instant) {
        let id = record.id.clone();
        self.state.items.push(record);
        self.items.insert(
            id.clone(),
            Item {
                artifact_bytes,
                phase: Phase::Idle,
                tries: 0,
                runs: 0,
                addresses_known: 0,
            },
        );
        self.settle(&id, now);
    }

    /// Pauses item `id` (its run stops) or resumes it: a resume tries
    /// again at once whatever held it (a wait, a failure). `reloaded`:
    /// its artifact's size or why it cannot run, when its manifest was
    /// read again for the resume.
    pub fn set_paused(
        &mut self,
        id: &ItemId,
        paused: bool,
        reloaded: Option<Result<u64, Failure>>,
        now: Instant,
    ) -> Result<(), Refusal> {
        let record = self
            .state
            .item_mut(id)
            .ok_or_else(|| Refusal::NotFound(id.clone()))?;
        record.paused = paused;
        self.actions.push_back(Action::Save);
        if paused {
            self.stop(id, Then::Settle);
        } else if let Some(item) = self.items.get_mut(id) {
            match reloaded {
                Some(Ok(bytes)) => item.artifact_bytes = bytes,
                Some(Err(failure)) => {
                    item.phase = Phase::Failed {
                        failure,
                        since: now,
                    };
                    self.actions.push_back(Action::Changed(id.clone()));
                    return Ok(());
                }
                None => {}
            }
            if matches!(item.phase, Phase::Waiting { .. } | Phase::Failed { .. }) {
                item.phase = Phase::Idle;
                item.tries = 0;
            }
            // Dialing its known addresses while it waits: a full try now.
            if matches!(item.phase, Phase::Running(Running { dial: Some(_), .. })) {
                item.tries = 0;
                self.stop(id, Then::Settle);
            }
        }
        self.settle(id, now);
        self.actions.push_back(Action::Changed(id.clone()));
        Ok(())
    }

    /// The follows are now `follows` (as [`crate::follow::add_follow`]
    /// checked them); the state is written.
    pub fn set_follows(&mut self, follows: Vec<crate::library::FollowRecord>) {
        self.state.follows = follows;
        self.actions.push_back(Action::Save);
    }

    /// Item `id` is withdrawn by its publisher (a followed channel lists
    /// its manifest): its run stops and it does not run again, whatever
    /// a resume says, while the record says so. Nothing is deleted.
    pub fn withdraw(
        &mut self,
        id: &ItemId,
        withdrawn: WithdrawnRecord,
        now: Instant,
    ) -> Result<(), Refusal> {
        let record = self
            .state
            .item_mut(id)
            .ok_or_else(|| Refusal::NotFound(id.clone()))?;
        if record.withdrawn.as_ref() == Some(&withdrawn) {
            return Ok(());
        }
        record.withdrawn = Some(withdrawn);
        self.actions.push_back(Action::Save);
        self.stop(id, Then::Settle);
        self.settle(id, now);
        self.actions.push_back(Action::Changed(id.clone()));
        Ok(())
    }

    /// Item `id`'s own caps: in force at once in its run, no restart.
    pub fn set_caps(&mut self, id: &ItemId, caps: Caps) -> Result<(), Refusal> {
        let record = self
            .state
            .item_mut(id)
            .ok_or_else(|| Refusal::NotFound(id.clone()))?;
        record.caps = caps;
        self.actions.push_back(Action::Save);
        if let Some(Phase::Running(running)) = self.items.get(id).map(|item| &item.phase) {
            let run = running.run;
            let caps = self.run_caps(id);
            self.actions.push_back(Action::SetCaps {
                item: id.clone(),
                run,
                caps,
            });
        }
        self.actions.push_back(Action::Changed(id.clone()));
        Ok(())
    }

    /// The library's limits: its caps in force on the endpoint at once
    /// (no restart), its quota holding back or letting go the newest
    /// downloads not delivered.
    pub fn set_limits(&mut self, limits: Limits, now: Instant) {
        let caps_changed = limits.caps != self.state.limits.caps;
        self.state.limits = limits;
        self.actions.push_back(Action::Save);
        if caps_changed {
            self.actions.push_back(Action::LibraryCaps(limits.caps));
        }
        self.settle_all(now);
    }

    /// The item's port, once it served: kept so that its offers stay
    /// good.
    pub fn note_port(&mut self, id: &ItemId, port: u16) {
        if let Some(record) = self.state.item_mut(id)
            && record.port != Some(port)
        {
            record.port = Some(port);
            self.actions.push_back(Action::Save);
        }
    }

    /// Free bytes on the downloads' disk, as measured after
    /// [`Action::MeasureDisk`]: items that waited for this much go on.
    pub fn handle_disk(&mut self, free_bytes: u64, now: Instant) {
        let ready: Vec<ItemId> = self
            .items
            .iter()
            .filter(|(_, item)| {
                matches!(&item.phase, Phase::Failed { failure, .. }
                    if failure.kind == ProblemKind::DiskFull
                        && failure.needed_bytes.unwrap_or(0) <= free_bytes)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in ready {
            if let Some(item) = self.items.get_mut(&id) {
                item.phase = Phase::Idle;
            }
            self.settle(&id, now);
        }
    }

    /// What run `run` of item `id` reports.
    pub fn handle_run(&mut self, id: &ItemId, run: RunId, input: RunInput, now: Instant) {
        let Some(item) = self.items.get_mut(id) else {
            // Removed while its run stopped.
            return;
        };
        let current = match &item.phase {
            Phase::Running(running) => running.run == run,
            Phase::Stopping { run: stopping, .. } => *stopping == run,
            _ => false,
        };
        if !current {
            return;
        }
        match input {
            RunInput::Phase(phase) => {
                if let Phase::Running(running) = &mut item.phase {
                    running.phase = Some(phase);
                    if phase == RunPhase::Fetching {
                        running.last_progress = now;
                    }
                }
                self.actions.push_back(Action::Changed(id.clone()));
            }
            RunInput::Counters(counters) => {
                item.addresses_known = counters.addresses_known;
                match &mut item.phase {
                    Phase::Running(running) => {
                        let verified_more = running
                            .counters
                            .is_some_and(|last| counters.verified_bytes > last.verified_bytes);
                        if verified_more {
                            // A try that verified a chunk starts the
                            // back-off over.
                            item.tries = 0;
                        }
                        if verified_more || counters.in_flight_bytes > 0 {
                            running.last_progress = now;
                        }
                        // A dial of the known addresses that reached a
                        // peer goes on as a try (and its fetching shows).
                        if running.dial.is_some() && (counters.peers > 0 || verified_more) {
                            running.dial = None;
                            running.last_progress = now;
                            self.actions.push_back(Action::Changed(id.clone()));
                        }
                        running.counters = Some(counters);
                    }
                    Phase::Stopping { counters: last, .. } => *last = Some(counters),
                    _ => {}
                }
            }
            RunInput::Delivered { seeding } => {
                self.mark_delivered(id);
                if let Some(Phase::Running(running)) =
                    self.items.get_mut(id).map(|item| &mut item.phase)
                {
                    running.phase = Some(if seeding {
                        RunPhase::Seeding
                    } else {
                        RunPhase::Fetching
                    });
                }
                self.actions.push_back(Action::Changed(id.clone()));
            }
            RunInput::Ended(end) => self.ended(id, end, now),
        }
    }

    /// Time passed: tries that found no peer stop, waits that are over
    /// start a try, a full disk is measured again.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.stopping {
            return;
        }
        let mut quiet = Vec::new();
        let mut due = Vec::new();
        let mut dials = Vec::new();
        let mut answered_by_none = Vec::new();
        let mut try_due = Vec::new();
        for (id, item) in &self.items {
            match &item.phase {
                Phase::Running(Running {
                    dial: Some(waited), ..
                }) if waited.next_try <= now => try_due.push(id.clone()),
                Phase::Running(
                    running @ Running {
                        dial: Some(waited), ..
                    },
                ) if running.last_progress + self.patience.dial_for <= now => {
                    answered_by_none.push((id.clone(), waited.clone()));
                }
                Phase::Running(running)
                    if running.dial.is_none()
                        && running.phase == Some(RunPhase::Fetching)
                        && running.last_progress + self.patience.try_for <= now =>
                {
                    quiet.push(id.clone());
                }
                Phase::Waiting { next_try, .. } if *next_try <= now => due.push(id.clone()),
                Phase::Waiting { next_dial, .. } if *next_dial <= now => dials.push(id.clone()),
                _ => {}
            }
        }
        for id in quiet {
            self.stop(&id, Then::Wait);
            self.actions.push_back(Action::Changed(id));
        }
        for (id, waited) in answered_by_none {
            self.stop(&id, Then::WaitOn(waited));
        }
        // The full try is due while it dials: it starts again as one.
        for id in try_due {
            self.stop(&id, Then::Settle);
        }
        for id in due {
            if let Some(item) = self.items.get_mut(&id) {
                item.phase = Phase::Idle;
            }
            self.settle(&id, now);
        }
        for id in dials {
            self.dial(&id, now);
        }
        if self.disk_due.is_some_and(|due| due <= now) {
            self.disk_due = None;
            self.watch_disk(now);
        }
    }

    /// When [`Self::handle_timeout`] is due next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.stopping {
            return None;
        }
        self.items
            .values()
            .filter_map(|item| match &item.phase {
                Phase::Running(Running {
                    dial: Some(waited),
                    last_progress,
                    ..
                }) => Some((*last_progress + self.patience.dial_for).min(waited.next_try)),
                Phase::Running(running) if running.phase == Some(RunPhase::Fetching) => {
                    Some(running.last_progress + self.patience.try_for)
                }
                Phase::Waiting {
                    next_try,
                    next_dial,
                    ..
                } => Some((*next_try).min(*next_dial)),
                _ => None,
            })
            .chain(self.disk_due)
            .min()
    }

    /// Item `id`'s status at `now`.
    pub fn status(&self, id: &ItemId, now: Instant) -> Option<Status> {
        let record = self.state.item(id)?;
        let item = self.items.get(id)?;
        let own = self.own_caps(record);
        let withdrawn = |counters| {
            let withdrawn = record.withdrawn.as_ref()?;
            Some((
                ItemState::Withdrawn,
                Some(Problem {
                    kind: ProblemKind::Withdrawn,
                    text: format!(
                        "withdrawn by its publisher: reason at {}; not served, its files kept",
                        withdrawn.reason_route
                    ),
                    since: now,
                    resumes: Resumes::Person,
                }),
                counters,
            ))
        };
        let (state, problem, counters) = match &item.phase {
            Phase::Running(_) => None,
            Phase::Stopping { counters, .. } => withdrawn(*counters),
            _ => withdrawn(None),
        }
        .unwrap_or_else(|| match &item.phase {
            Phase::Idle if record.paused => (ItemState::Paused, None, None),
            Phase::Idle => (ItemState::Starting, None, None),
            // Dialing its known addresses: still waiting, as it shows.
            Phase::Running(Running {
                dial: Some(waited), ..
            }) => waiting_status(waited, item, now),
            Phase::Running(running) => {
                let state = match running.phase {
                    None => ItemState::Starting,
                    Some(RunPhase::Verifying) => ItemState::Verifying,
                    Some(RunPhase::Opening) => ItemState::Opening,
                    Some(RunPhase::Fetching) => ItemState::Fetching,
                    Some(RunPhase::Serving) => ItemState::Serving,
                    Some(RunPhase::Seeding) => ItemState::Seeding,
                };
                (state, None, running.counters)
            }
            Phase::Stopping {
                then: Then::WaitOn(waited),
                ..
            } if !record.paused => waiting_status(waited, item, now),
            Phase::Stopping { then, counters, .. } => {
                let state = match then {
                    _ if record.paused => ItemState::Paused,
                    Then::Wait | Then::WaitOn(_) => ItemState::Waiting,
                    Then::Fail(_) => ItemState::Failed,
                    Then::Settle => ItemState::Starting,
                };
                (state, None, *counters)
            }
            Phase::Waiting {
                kind,
                text,
                last_try,
                next_try,
                since,
                ..
            } => waiting_status(
                &Waited {
                    kind: *kind,
                    text: text.clone(),
                    last_try: *last_try,
                    next_try: *next_try,
                    since: *since,
                    dialed: now,
                },
                item,
                now,
            ),
            Phase::Failed { failure, since } => (
                ItemState::Failed,
                Some(Problem {
                    kind: failure.kind,
                    text: failure.text.clone(),
                    since: *since,
                    resumes: match failure.then() {
                        AfterFailure::WaitForSpace => {
                            Resumes::FreeBytes(failure.needed_bytes.unwrap_or(0))
                        }
                        AfterFailure::WaitForQuota => Resumes::Quota,
                        AfterFailure::Wait | AfterFailure::Stay => Resumes::Person,
                    },
                }),
                None,
            ),
            Phase::Done => (ItemState::Done, None, None),
        });
        Some(Status {
            state,
            problem,
            runs: item.runs,
            caps: counters
                .filter(|_| matches!(item.phase, Phase::Running(_)))
                .map_or(own, |counters| counters.caps),
            counters,
        })
    }

    /// Bytes the library's downloads take: each one's whole artifact (a
    /// download reserves its size at once), delivered or not.
    pub fn used_bytes(&self) -> u64 {
        self.state
            .items
            .iter()
            .filter(|record| record.kind() == ItemKind::Download)
            .filter_map(|record| self.items.get(&record.id))
            .map(|item| item.artifact_bytes)
            .sum()
    }

    /// The downloads the quota holds back: with the library over its
    /// quota, the newest ones not delivered, until the rest fit.
    fn held_by_quota(&self) -> BTreeSet<ItemId> {
        let mut held = BTreeSet::new();
        let Some(quota) = self.state.limits.quota_bytes else {
            return held;
        };
        let mut used = self.used_bytes();
        for record in self.state.items.iter().rev() {
            if used <= quota {
                break;
            }
            if let Some(download) = record.download()
                && !download.delivered
            {
                used -= self.items.get(&record.id).map_or(0, |i| i.artifact_bytes);
                held.insert(record.id.clone());
            }
        }
        held
    }

    /// An item's own caps in the directions it moves bytes now.
    fn own_caps(&self, record: &ItemRecord) -> Caps {
        let (up, down) = match &record.work {
            Work::Share(_) => (true, false),
            Work::Download(download) if download.delivered => (download.serve, false),
            Work::Download(download) => (download.serve, true),
        };
        Caps {
            max_upload: record.caps.max_upload.filter(|_| up),
            max_download: record.caps.max_download.filter(|_| down),
        }
    }

    fn run_caps(&self, id: &ItemId) -> Caps {
        self.state
            .item(id)
            .map_or_else(Caps::default, |record| self.own_caps(record))
    }

    fn mark_delivered(&mut self, id: &ItemId) {
        if let Some(Work::Download(download)) =
            self.state.item_mut(id).map(|record| &mut record.work)
            && !download.delivered
        {
            download.delivered = true;
            self.actions.push_back(Action::Save);
        }
    }

    /// Stops item `id`'s run, if it has one, with `then` to follow its end.
    fn stop(&mut self, id: &ItemId, then: Then) {
        let Some(item) = self.items.get_mut(id) else {
            return;
        };
        match &mut item.phase {
            Phase::Running(running) => {
                let run = running.run;
                if then == Then::Wait {
                    item.tries += 1;
                }
                item.phase = Phase::Stopping {
                    run,
                    then,
                    counters: running.counters,
                };
                self.actions.push_back(Action::Stop {
                    item: id.clone(),
                    run,
                });
            }
            Phase::Stopping { then: pending, .. } => {
                // A pause or a stop of the companion overrides a wait.
                if then == Then::Settle {
                    *pending = then;
                }
            }
            Phase::Waiting { .. } | Phase::Idle => item.phase = Phase::Idle,
            Phase::Failed { .. } | Phase::Done => {}
        }
    }

    /// A run ended.
    fn ended(&mut self, id: &ItemId, end: RunEnd, now: Instant) {
        let Some(item) = self.items.get_mut(id) else {
            return;
        };
        let then = match std::mem::replace(&mut item.phase, Phase::Idle) {
            Phase::Stopping { then, .. } => then,
            _ => Then::Settle,
        };
        let paused = self
            .state
            .item(id)
            .is_some_and(|record| record.paused || record.withdrawn.is_some());
        match end {
            RunEnd::Finished => {
                self.mark_delivered(id);
                if let Some(item) = self.items.get_mut(id) {
                    item.phase = Phase::Done;
                }
            }
            RunEnd::Failed(failure) if !paused && !self.stopping => self.fail(id, failure, now),
            RunEnd::Stopped | RunEnd::Failed(_) => match then {
                _ if paused || self.stopping => {}
                Then::Wait => self.wait(id, ProblemKind::NoPeersYet, String::new(), now),
                Then::WaitOn(waited) => self.wait_on(id, *waited, now),
                Then::Fail(failure) => self.fail(id, failure, now),
                Then::Settle => self.settle(id, now),
            },
        }
        self.actions.push_back(Action::Changed(id.clone()));
    }

    fn fail(&mut self, id: &ItemId, failure: Failure, now: Instant) {
        match failure.then() {
            AfterFailure::Wait => {
                if let Some(item) = self.items.get_mut(id) {
                    item.tries += 1;
                }
                self.wait(id, failure.kind, failure.text, now);
            }
            after => {
                if let Some(item) = self.items.get_mut(id) {
                    item.phase = Phase::Failed {
                        failure,
                        since: now,
                    };
                }
                if matches!(after, AfterFailure::WaitForSpace) {
                    self.watch_disk(now);
                }
            }
        }
    }

    fn wait(&mut self, id: &ItemId, kind: ProblemKind, text: String, now: Instant) {
        let Some(item) = self.items.get_mut(id) else {
            return;
        };
        let since = match &item.phase {
            Phase::Waiting { since, .. } => *since,
            _ => now,
        };
        item.phase = Phase::Waiting {
            kind,
            text,
            last_try: now,
            next_try: now + self.patience.wait_after(item.tries.max(1)),
            since,
            next_dial: now + self.patience.dial_every,
        };
    }

    /// Goes back to the wait `waited` after a dial of the known addresses
    /// that reached no peer: the next full try as it was, the next dial
    /// [`Patience::dial_every`] after this one started.
    fn wait_on(&mut self, id: &ItemId, waited: Waited, now: Instant) {
        if let Some(item) = self.items.get_mut(id) {
            item.phase = Phase::Waiting {
                kind: waited.kind,
                text: waited.text,
                last_try: waited.last_try,
                next_try: waited.next_try,
                since: waited.since,
                next_dial: (waited.dialed + self.patience.dial_every).max(now),
            };
        }
    }

    /// A waiting download dials the addresses it knows.
    fn dial(&mut self, id: &ItemId, now: Instant) {
        let Some(item) = self.items.get_mut(id) else {
            return;
        };
        let Phase::Waiting {
            kind,
            text,
            last_try,
            next_try,
            since,
            ..
        } = &item.phase
        else {
            return;
        };
        let waited = Waited {
            kind: *kind,
            text: text.clone(),
            last_try: *last_try,
            next_try: *next_try,
            since: *since,
            dialed: now,
        };
        let run = RunId(self.next_run);
        self.next_run += 1;
        item.runs += 1;
        item.phase = Phase::Running(Running {
            run,
            phase: None,
            last_progress: now,
            counters: None,
            dial: Some(Box::new(waited)),
        });
        let caps = self.run_caps(id);
        self.actions.push_back(Action::Start {
            item: id.clone(),
            run,
            caps,
            dial_only: true,
        });
    }

    /// Asks for the free space now, and again every `disk_every` while an
    /// item waits for it.
    fn watch_disk(&mut self, now: Instant) {
        let waiting = self.items.values().any(|item| {
            matches!(&item.phase, Phase::Failed { failure, .. } if failure.kind == ProblemKind::DiskFull)
        });
        if waiting && self.disk_due.is_none() {
            self.actions.push_back(Action::MeasureDisk);
            self.disk_due = Some(now + self.patience.disk_every);
        }
    }

    fn settle_all(&mut self, now: Instant) {
        let ids: Vec<ItemId> = self.state.items.iter().map(|r| r.id.clone()).collect();
        for id in ids {
            self.settle(&id, now);
        }
    }

    /// Decides what item `id` does now that nothing runs for it (or
    /// whether its run must stop for the quota).
    fn settle(&mut self, id: &ItemId, now: Instant) {
        if !self.started {
            return;
        }
        let held = self.held_by_quota().contains(id);
        let Some(record) = self.state.item(id) else {
            return;
        };
        // Paused by the user, or withdrawn by its publisher: not run.
        let paused = record.paused || record.withdrawn.is_some();
        let delivered_done = record
            .download()
            .is_some_and(|d| d.delivered && !(d.serve && d.seed_after));
        let Some(item) = self.items.get_mut(id) else {
            return;
        };
        let over_quota = || {
            Failure::new(
                ProblemKind::OverQuota,
                "the library's downloads take more than its quota; the newest downloads not delivered wait until it holds them",
            )
        };
        match &item.phase {
            Phase::Running(_) if held => {
                self.stop(id, Then::Fail(over_quota()));
                self.actions.push_back(Action::Changed(id.clone()));
                return;
            }
            Phase::Running(_) | Phase::Stopping { .. } | Phase::Done => return,
            Phase::Waiting { .. } => return,
            Phase::Failed { failure, .. } => match failure.then() {
                AfterFailure::WaitForQuota if !held => {}
                _ => return,
            },
            Phase::Idle => {}
        }
        if paused || self.stopping {
            item.phase = Phase::Idle;
            return;
        }
        if held {
            item.phase = Phase::Failed {
                failure: over_quota(),
                since: now,
            };
            self.actions.push_back(Action::Changed(id.clone()));
            return;
        }
        if delivered_done {
            item.phase = Phase::Done;
            self.actions.push_back(Action::Changed(id.clone()));
            return;
        }
        let run = RunId(self.next_run);
        self.next_run += 1;
        item.runs += 1;
        item.phase = Phase::Running(Running {
            run,
            phase: None,
            last_progress: now,
            counters: None,
            dial: None,
        });
        let caps = self.run_caps(id);
        self.actions.push_back(Action::Start {
            item: id.clone(),
            run,
            caps,
            dial_only: false,
        });
        self.actions.push_back(Action::Changed(id.clone()));
    }
}

/// A waiting download's status: its wait, and when it tries next.
fn waiting_status(
    waited: &Waited,
    item: &Item,
    now: Instant,
) -> (ItemState, Option<Problem>, Option<Counters>) {
    (
        ItemState::Waiting,
        Some(Problem {
            kind: waited.kind,
            text: waited.text.clone(),
            since: waited.since,
            resumes: Resumes::NextTry {
                tries: item.tries,
                last_try: waited.last_try,
                next_try: waited.next_try.max(now),
                addresses_known: item.addresses_known,
            },
        }),
        None,
    )
}

#[cfg(test)]
mod tests;
