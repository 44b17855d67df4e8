//! The front door for programs that embed minimodel: [`fetch`] a verified
//! artifact from peers, or [`seed`] one, each a builder with sensible
//! defaults and an optional stream of [`NodeReport`]s for progress. The
//! builders fill in the use cases of [`crate::app`], which do the work.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use minimodel_swarm::{Fetched, fetch, seed};
//! use minimodel_verifier::describe::{PublisherFields, describe_file};
//! use minimodel_verifier::slm::{FixtureSpec, write_fixture};
//!
//! // A publisher's side: a .slm file and the manifest that describes it.
//! let publisher = tempfile::tempdir()?;
//! let slm = publisher.path().join("tiny.slm");
//! write_fixture(&mut std::fs::File::create(&slm)?, &FixtureSpec::new(3 << 20, 7))?;
//! let fields = PublisherFields::new(
//!     "tiny".parse()?,
//!     "acme".parse()?,
//!     "https://example.org/license".parse()?,
//!     "https://example.org/evidence".parse()?,
//! );
//! let manifest = describe_file(&slm, fields, Some(1 << 20), &|_| {})?.manifest;
//!
//! // Serve it (the file is verified against the manifest first).
//! let seeder = seed(manifest.clone(), &slm)
//!     .listen("127.0.0.1:0".parse()?)
//!     .start()?;
//! let peer = seeder.peer_addr().expect("a listening seeder has an address");
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let serving = tokio::spawn(seeder.run(async {
//!     let _ = stopped.await;
//! }));
//!
//! // Fetch it: every chunk proven, the whole file checked on disk.
//! let out = tempfile::tempdir()?;
//! let (reports, mut progress) = tokio::sync::mpsc::unbounded_channel();
//! let fetched = fetch(manifest, out.path()).peer(peer).reports(reports).run().await?;
//! let Fetched::Downloaded(outcome) = fetched else {
//!     panic!("the directory was empty: the file must have been downloaded");
//! };
//! assert_eq!(std::fs::read(&outcome.artifact_path)?, std::fs::read(&slm)?);
//! assert!(progress.try_recv().is_ok(), "the fetch reported its progress");
//!
//! let _ = stop.send(());
//! serving.await??;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use minimodel_node::report::{Failure, Fault};
use minimodel_verifier::Sha256Digest;
use minimodel_verifier::manifest::Manifest;
use minimodel_verifier::signing::trust::{SignatureCheck, judge_without_pins};
use minimodel_wire::PeerAddr;
use tokio::sync::mpsc;

use crate::app::Limits;
use crate::app::fetch::{DownloadPlan, Opened, Serving};
use crate::app::share::SharePlan;
use crate::fetch::{FetchError, FetchOutcome};
use crate::node::NodeReport;
use crate::peers::{PeerAddrs, merge_peers};
use crate::resume::CompleteDownload;
use crate::seed::{SeedError, Seeder};
use crate::transport::Identity;

/// Starts describing a download of the artifact `manifest` describes into
/// `out_dir`: `DIR/<model-id>.slm` and its receipt, resuming whatever a
/// previous run left there. Add peers, then [`Fetch::run`].
pub fn fetch(manifest: Manifest, out_dir: impl Into<PathBuf>) -> Fetch {
    Fetch {
        manifest_sha256: Sha256Digest::of(manifest.to_text().as_bytes()),
        manifest,
        out_dir: out_dir.into(),
        peers: Vec::new(),
        listen: None,
        recheck: false,
        give_up_after: None,
        max_download: None,
        identity: None,
        reports: None,
        signature: None,
        mirrors: None,
    }
}

/// Starts describing how to serve the artifact `manifest` describes from
/// the file at `path`. Set where to listen, then [`Seed::start`].
pub fn seed(manifest: Manifest, path: impl Into<PathBuf>) -> Seed {
    Seed {
        manifest,
        path: path.into(),
        listen: SocketAddr::from(([0, 0, 0, 0], 0)),
        identity: None,
        reports: None,
    }
}

/// A download to run; see [`fetch`].
#[derive(Debug)]
#[must_use = "a fetch does nothing until it is run"]
pub struct Fetch {
    manifest: Manifest,
    manifest_sha256: Sha256Digest,
    out_dir: PathBuf,
    peers: Vec<PeerAddr>,
    listen: Option<SocketAddr>,
    recheck: bool,
    give_up_after: Option<Duration>,
    max_download: Option<u64>,
    identity: Option<Arc<Identity>>,
    reports: Option<mpsc::UnboundedSender<NodeReport>>,
    signature: Option<SignatureCheck>,
    mirrors: Option<crate::mirror::MirrorSet>,
}

/// What a finished [`Fetch`] found.
#[derive(Debug)]
pub enum Fetched {
    /// Downloaded (or finished from a partial download) and delivered.
    Downloaded(Box<FetchOutcome>),
    /// The artifact was already in the directory with its receipt.
    AlreadyComplete(Box<CompleteDownload>),
}

impl Fetch {
    /// The SHA-256 of the manifest file as published, for the receipt.
    /// Default: of the manifest's canonical text.
    pub fn manifest_sha256(mut self, sha256: Sha256Digest) -> Self {
        self.manifest_sha256 = sha256;
        self
    }

    /// A peer to dial. The same id given with several addresses is one
    /// peer, tried at each.
    pub fn peer(mut self, peer: PeerAddr) -> Self {
        self.peers.push(peer);
        self
    }

    /// Peers to dial.
    pub fn peers(mut self, peers: impl IntoIterator<Item = PeerAddr>) -> Self {
        self.peers.extend(peers);
        self
    }

    /// Serve verified chunks to other peers while downloading, listening
    /// at `addr` (port 0 picks one). Default: download only, accept
    /// nothing.
    pub fn serve(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// Read a finished file in the directory again before calling it
    /// complete, and repair it from peers if it is damaged. Default: a
    /// finished file with its receipt is taken as it is.
    pub fn recheck(mut self, recheck: bool) -> Self {
        self.recheck = recheck;
        self
    }

    /// Give up after this long without a verified chunk. Default: the
    /// core's `give_up_after` (5 min).
    pub fn give_up_after(mut self, limit: Duration) -> Self {
        self.give_up_after = Some(limit);
        self
    }

    /// Download at most this many bytes per second. Default: no limit.
    pub fn max_download(mut self, bytes_per_second: u64) -> Self {
        self.max_download = Some(bytes_per_second);
        self
    }

    /// The node's identity (its peer id). Default: a fresh one for this
    /// run.
    pub fn identity(mut self, identity: Arc<Identity>) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Where the node's reports go while it runs: links, verified chunks,
    /// bans, delivery.
    pub fn reports(mut self, reports: mpsc::UnboundedSender<NodeReport>) -> Self {
        self.reports = Some(reports);
        self
    }

    /// The check of the manifest's signature against the caller's pins
    /// (`minimodel_verifier::signing::trust::judge`), which the receipt
    /// records. Default: checked here without pins, before anything else
    /// (a signature that does not verify is refused; a signed manifest's
    /// key counts as not pinned).
    pub fn signature(mut self, check: SignatureCheck) -> Self {
        self.signature = Some(check);
        self
    }

    /// HTTPS copies of the artifact to fetch from beside the peers
    /// (`docs/swarm.md`, "Mirrors"). Default: none.
    pub fn mirrors(mut self, mirrors: crate::mirror::MirrorSet) -> Self {
        self.mirrors = Some(mirrors);
        self
    }

    /// Runs the download to its end. What was verified stays on disk if it
    /// fails.
    pub async fn run(self) -> Result<Fetched, FetchError> {
        self.run_until(std::future::pending()).await
    }

    /// Runs the download until it ends or `stop` resolves; stopped, it
    /// checkpoints and returns [`FetchError::Interrupted`].
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> Result<Fetched, FetchError> {
        // First: nothing in the directory is touched for a refused manifest.
        let signature = match self.signature {
            Some(check) => check,
            None => judge_without_pins(&self.manifest)?,
        };
        let mut plan =
            DownloadPlan::new(self.manifest, self.manifest_sha256, signature, self.out_dir);
        plan.peers = merge_peers(self.peers.into_iter().map(|peer| PeerAddrs {
            id: peer.id,
            addrs: vec![peer.addr],
        }));
        plan.serving = self.listen.map(|listen| Serving {
            listen,
            seed_after: false,
            // The library asks nothing of the host's router.
            port_mapping: false,
        });
        plan.recheck = self.recheck;
        plan.mirrors = self.mirrors;
        Limits {
            max_download: self.max_download,
            give_up_after: self.give_up_after,
            ..Limits::default()
        }
        .apply(&mut plan.core);
        // Opening may read the whole file (a recheck, a bare `.part`): off
        // the runtime's threads.
        let opened = tokio::task::spawn_blocking(move || plan.open(&|_| {}))
            .await
            .map_err(|error| {
                FetchError::Failed(Failure::Storage(Fault::new(
                    crate::resume::DeliveryError::Worker(error.to_string()),
                )))
            })??;
        let ready = match opened {
            Opened::Complete(done) => return Ok(Fetched::AlreadyComplete(done)),
            Opened::Partial(ready) => *ready,
        };
        let identity = match self.identity {
            Some(identity) => identity,
            None => Arc::new(Identity::generate().map_err(FetchError::Identity)?),
        };
        let reports = self.reports.unwrap_or_else(|| mpsc::unbounded_channel().0);
        let fetcher = ready.start(identity, reports)?;
        fetcher
            .run(stop)
            .await
            .map(|outcome| Fetched::Downloaded(Box::new(outcome)))
    }
}

/// A seeder to start; see [`seed`].
#[derive(Debug)]
#[must_use = "a seeder does nothing until it is started"]
pub struct Seed {
    manifest: Manifest,
    path: PathBuf,
    listen: SocketAddr,
    identity: Option<Arc<Identity>>,
    reports: Option<mpsc::UnboundedSender<NodeReport>>,
}

impl Seed {
    /// Where to listen (port 0 picks one). Default `0.0.0.0:0`.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// The node's identity (its peer id). Default: a fresh one.
    pub fn identity(mut self, identity: Arc<Identity>) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Where the node's reports go while it runs.
    pub fn reports(mut self, reports: mpsc::UnboundedSender<NodeReport>) -> Self {
        self.reports = Some(reports);
        self
    }

    /// Checks the manifest's signature (without pins: a signed manifest
    /// must verify with its own key), verifies the file against the
    /// manifest (one full pass: container, header, every chunk, the Merkle
    /// root, the whole-file SHA-256) and starts listening. Serve with
    /// [`Seeder::run`].
    ///
    /// The verification blocks the calling thread for a full read of the
    /// file; inside an async task, call this through
    /// `tokio::task::spawn_blocking` (within the runtime) when that
    /// matters. Needs a tokio runtime (the QUIC endpoint runs on it).
    pub fn start(self) -> Result<Seeder, SeedError> {
        judge_without_pins(&self.manifest).map_err(SeedError::Signature)?;
        let verified = SharePlan::new(self.manifest, self.path, self.listen)
            .verify(&|_| {})
            .map_err(SeedError::Verify)?;
        let identity = match self.identity {
            Some(identity) => identity,
            None => Arc::new(Identity::generate().map_err(SeedError::Identity)?),
        };
        let reports = self.reports.unwrap_or_else(|| mpsc::unbounded_channel().0);
        verified.start(identity, reports)
    }
}
