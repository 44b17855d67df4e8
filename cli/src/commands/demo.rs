//! `minimodel demo`: the main job on an embedded default. A synthetic
//! artifact, its manifest, one seeder with a capped upload and several
//! downloading peers that serve what they verified, all on loopback in this
//! process. The peers start with the seeder's address only and find each
//! other by peer exchange. At the end: how long it took, where each peer's
//! bytes came from, how many copies the seeder uploaded, and a fresh check
//! of every downloaded file.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use minimodel_swarm::app::fetch::{DownloadPlan, Opened, Serving};
use minimodel_swarm::app::share::{SharePlan, VerifiedShare};
use minimodel_swarm::fetch::FetchOutcome;
use minimodel_swarm::node::NodeReport;
use minimodel_swarm::peers::PeerAddrs;
use minimodel_swarm::transport::Identity;
use minimodel_verifier::check::verify_local_file;
use minimodel_verifier::describe::{PublisherFields, describe_file};
use minimodel_verifier::receipt::ReceiptSource;
use minimodel_verifier::signing::trust::judge_without_pins;
use minimodel_verifier::slm::{FixtureSpec, write_fixture};
use minimodel_verifier::{Manifest, Sha256Digest};
use tokio::sync::{mpsc, watch};

use super::network::many_nodes_runtime;
use crate::events::Event;
use crate::exit::{Exit, Failure, OrExit};
use crate::output::{Output, counted};
use crate::units::{human_bytes, parse_rate, parse_size};

/// Arguments of `minimodel demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Size of the synthetic artifact.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub size: u64,
    /// Downloading peers (each also serves what it has verified).
    #[arg(long, default_value_t = 4)]
    pub peers: usize,
    /// The seeder's upload cap per second.
    #[arg(long, default_value = "8MiB", value_parser = parse_rate)]
    pub cap: u64,
    /// Chunk size.
    #[arg(long, default_value = "256KiB", value_parser = parse_size)]
    pub chunk_size: u64,
    /// Keep the files in this directory instead of a temporary one.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

struct PeerRun {
    index: usize,
    outcome: FetchOutcome,
}

/// What the swarm part of the demo produced.
struct SwarmRun {
    peers: Vec<PeerRun>,
    elapsed: Duration,
    /// Where the seeder listened, as the receipts name it.
    seeder_address: String,
}

pub fn run(args: DemoArgs, out: Output) -> Result<(), Failure> {
    if args.peers == 0 || args.peers > 16 {
        return Err(Failure::new(
            Exit::Usage,
            anyhow::anyhow!("--peers must be from 1 to 16"),
        ));
    }
    if args.size < minimodel_verifier::slm::MIN_FIXTURE_SIZE {
        return Err(Failure::new(
            Exit::Usage,
            anyhow::anyhow!(
                "--size {} is too small: the demo's artifact needs at least {}",
                human_bytes(args.size),
                human_bytes(minimodel_verifier::slm::MIN_FIXTURE_SIZE)
            ),
        ));
    }
    let chunk_size = u32::try_from(args.chunk_size)
        .map_err(|_| anyhow::anyhow!("--chunk-size is too large"))
        .or_exit(Exit::Usage)?;
    let temp;
    let root = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            dir.clone()
        }
        None => {
            temp = tempfile::tempdir().context("cannot create a temporary directory")?;
            temp.path().to_owned()
        }
    };
    out.say(format!(
        "demo: one seeder capped at {}/s, {}{}, a {} artifact",
        human_bytes(args.cap),
        counted(args.peers as u64, "downloading peer"),
        if args.peers > 1 {
            " that serve each other"
        } else {
            ""
        },
        human_bytes(args.size)
    ));
    let (manifest, share) = prepare(&root, args.size, chunk_size, args.cap, out)?;
    let runtime = many_nodes_runtime()?;
    let run = runtime.block_on(swarm(&root, &manifest, &share, &args, out))?;
    summarize(&manifest, &run, &args, out)
}

/// Writes the fixture, describes it and checks it, as a publisher would;
/// the share is capped at `cap` bytes per second on loopback.
fn prepare(
    root: &std::path::Path,
    size: u64,
    chunk_size: u32,
    cap: u64,
    out: Output,
) -> Result<(Manifest, VerifiedShare), Failure> {
    let slm = root.join("demo.slm");
    let file =
        std::fs::File::create(&slm).with_context(|| format!("cannot create {}", slm.display()))?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
    write_fixture(&mut writer, &FixtureSpec::new(size, 1))
        .context("cannot write the fixture")
        .or_exit(Exit::Usage)?;
    drop(writer);
    let fields = PublisherFields::new(
        "demo-model".parse().context("model id")?,
        "demo-publisher".parse().context("publisher id")?,
        "https://example.org/demo/license"
            .parse()
            .context("route")?,
        "https://example.org/demo/evidence"
            .parse()
            .context("route")?,
    );
    let description = describe_file(&slm, fields, Some(chunk_size), &|_| {})
        .context("cannot describe the fixture")
        .or_exit(Exit::Usage)?;
    let manifest = description.manifest;
    std::fs::write(root.join("demo.manifest"), manifest.to_text())
        .context("cannot write the manifest")?;
    let mut plan = SharePlan::new(manifest.clone(), &slm, loopback());
    plan.limits.max_upload = Some(cap);
    let share = plan
        .verify(&|_| {})
        .context("the fixture does not verify")
        .or_exit(Exit::VerificationFailed)?;
    out.say(format!(
        "wrote {} ({} of {}) and its manifest in {}",
        slm.display(),
        counted(manifest.chunks.chunk_count, "chunk"),
        human_bytes(u64::from(chunk_size)),
        root.display()
    ));
    Ok((manifest, share))
}

/// Any free port on loopback.
fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

async fn swarm(
    root: &std::path::Path,
    manifest: &Manifest,
    share: &VerifiedShare,
    args: &DemoArgs,
    out: Output,
) -> Result<SwarmRun, Failure> {
    let (seeder_reports, mut seeder_inbox) = mpsc::unbounded_channel();
    let seeder = share
        .start(
            Arc::new(Identity::generate().context("cannot create an identity")?),
            seeder_reports,
        )
        .context("cannot start the seeder")?;
    let seeder_addr = seeder.peer_addr().context("the seeder has no address")?;
    out.say(format!("seeder {seeder_addr}"));
    let (stop_all, stopped) = watch::channel(false);
    let stop = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let seeder_task = tokio::spawn(seeder.run(stop(stopped.clone())));
    tokio::spawn(async move { while seeder_inbox.recv().await.is_some() {} });

    let bars = Bars::new(args.peers, manifest.artifact_bytes, out);
    let (done_sender, mut done) = mpsc::unbounded_channel::<usize>();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for index in 0..args.peers {
        let dir = root.join(format!("peer{}", index + 1));
        let mut plan = DownloadPlan::new(
            manifest.clone(),
            Sha256Digest::of(manifest.to_text().as_bytes()),
            // The demo's own unsigned manifest: nothing to pin.
            judge_without_pins(manifest).context("the demo's manifest is refused")?,
            &dir,
        );
        plan.peers = vec![PeerAddrs {
            id: seeder_addr.id,
            addrs: vec![seeder_addr.addr],
        }];
        plan.serving = Some(Serving {
            listen: loopback(),
            seed_after: true,
            port_mapping: false,
        });
        plan.core.give_up_after = Duration::from_secs(60);
        let opened = plan
            .open(&|_| {})
            .with_context(|| format!("cannot open {}", dir.display()))?;
        let Opened::Partial(ready) = opened else {
            return Err(Failure::new(
                Exit::Usage,
                anyhow::anyhow!("{} already holds the artifact", dir.display()),
            ));
        };
        let (reports, mut inbox) = mpsc::unbounded_channel();
        let fetcher = ready
            .start(
                Arc::new(Identity::generate().context("cannot create an identity")?),
                reports,
            )
            .context("cannot start a downloading peer")?;
        let bar = bars.peer(index);
        let done_sender = done_sender.clone();
        tokio::spawn(async move {
            while let Some(report) = inbox.recv().await {
                match report {
                    NodeReport::Progress {
                        verified_bytes,
                        peers,
                        rate,
                        ..
                    } => {
                        bar.update(verified_bytes, peers, rate, out, index);
                    }
                    NodeReport::Delivered { .. } => {
                        bar.finish(out, index);
                        let _ = done_sender.send(index);
                    }
                    _ => {}
                }
            }
        });
        tasks.push((index, tokio::spawn(fetcher.run(stop(stopped.clone())))));
    }
    drop(done_sender);
    let mut finished = 0;
    let deadline = tokio::time::sleep(Duration::from_secs(600));
    tokio::pin!(deadline);
    let interrupted = crate::stop::Stop::default();
    let signal = interrupted.signal();
    tokio::pin!(signal);
    while finished < args.peers {
        tokio::select! {
            Some(_) = done.recv() => finished += 1,
            _ = &mut deadline => break,
            _ = &mut signal => break,
        }
    }
    let elapsed = started.elapsed();
    let _ = stop_all.send(true);
    if interrupted.fired() {
        for (_, task) in tasks {
            let _ = task.await;
        }
        let _ = seeder_task.await;
        bars.clear();
        return Err(Failure::new(
            Exit::Interrupted,
            anyhow::anyhow!("the demo was stopped before every peer finished"),
        ));
    }
    let mut runs = Vec::new();
    for (index, task) in tasks {
        let outcome = task
            .await
            .context("a peer's task failed")?
            .with_context(|| format!("peer {} did not finish", index + 1))?;
        runs.push(PeerRun { index, outcome });
    }
    let _ = seeder_task.await;
    bars.clear();
    out.say(format!(
        "{} finished in {:.1} s",
        match args.peers {
            1 => "the peer".to_owned(),
            peers => format!("all {peers} peers"),
        },
        elapsed.as_secs_f64()
    ));
    out.event(&Event::SwarmDone {
        peers: args.peers,
        elapsed_ms: elapsed.as_millis() as u64,
    });
    Ok(SwarmRun {
        peers: runs,
        elapsed,
        seeder_address: seeder_addr.addr.to_string(),
    })
}

fn summarize(
    manifest: &Manifest,
    run: &SwarmRun,
    args: &DemoArgs,
    out: Output,
) -> Result<(), Failure> {
    let size = manifest.artifact_bytes;
    let (runs, elapsed, seeder_address) = (&run.peers, run.elapsed, &run.seeder_address);
    let mut from_seeder_total = 0u64;
    let mut rows = Vec::new();
    for run in runs {
        let ReceiptSource::Peers(summary) = &run.outcome.receipt.source else {
            continue;
        };
        let from_seeder: u64 = summary
            .peers
            .iter()
            .filter(|p| &p.address == seeder_address)
            .map(|p| p.bytes)
            .sum();
        let from_peers: u64 = summary.peers.iter().map(|p| p.bytes).sum::<u64>() - from_seeder;
        from_seeder_total += from_seeder;
        let verified = verify_local_file(manifest, &run.outcome.artifact_path, &|_| {}).is_ok();
        rows.push((run.index, from_seeder, from_peers, verified));
    }
    let copies = from_seeder_total as f64 / size as f64;
    let alone = Duration::from_secs_f64(args.peers as f64 * size as f64 / args.cap as f64);
    out.say(String::new());
    out.say(format!(
        "{:<8} {:>14} {:>16} {:>10}",
        "peer", "from seeder", "from other peers", "verified"
    ));
    for (index, from_seeder, from_peers, verified) in &rows {
        out.say(format!(
            "{:<8} {:>14} {:>16} {:>10}",
            format!("peer{}", index + 1),
            human_bytes(*from_seeder),
            human_bytes(*from_peers),
            if *verified { "yes" } else { "NO" }
        ));
        out.event(&Event::PeerSummary {
            peer: index + 1,
            from_seeder_bytes: *from_seeder,
            from_peers_bytes: *from_peers,
            verified: *verified,
        });
    }
    let throughput = (runs.len() as u64 * size) as f64 / elapsed.as_secs_f64().max(1e-9);
    out.say(String::new());
    out.say(format!(
        "{} x {} in {:.1} s ({}/s delivered in all)",
        counted(runs.len() as u64, "peer"),
        human_bytes(size),
        elapsed.as_secs_f64(),
        human_bytes(throughput as u64)
    ));
    out.say(format!(
        "the seeder uploaded {copies:.2} copies of the file; alone it would need {:.1} s at its cap to send every peer a copy ({:.1}x slower)",
        alone.as_secs_f64(),
        alone.as_secs_f64() / elapsed.as_secs_f64().max(1e-9)
    ));
    let all_verified = rows.iter().all(|row| row.3) && rows.len() == args.peers;
    out.say(if all_verified {
        "every download verified against the manifest (chunk proofs, Merkle root, SHA-256, .slm container) and has its receipt"
    } else {
        "NOT every download verified"
    });
    out.event(&Event::DemoSummary {
        peers: runs.len(),
        artifact_bytes: size,
        elapsed_ms: elapsed.as_millis() as u64,
        seeder_copies: copies,
        seeder_alone_ms: alone.as_millis() as u64,
        all_verified,
    });
    if all_verified {
        Ok(())
    } else {
        Err(Failure::new(
            Exit::VerificationFailed,
            anyhow::anyhow!("a download did not verify"),
        ))
    }
}

/// Live progress: a bar per peer on a terminal, lines otherwise.
struct Bars {
    bars: Vec<ProgressBar>,
    multi: Option<MultiProgress>,
}

impl Bars {
    fn new(peers: usize, total: u64, out: Output) -> Self {
        if !out.draws_progress() {
            return Self {
                bars: (0..peers).map(|_| ProgressBar::hidden()).collect(),
                multi: None,
            };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style =
            ProgressStyle::with_template("{prefix:>6} [{bar:30}] {bytes:>9}/{total_bytes} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        let bars = (0..peers)
            .map(|index| {
                let bar = multi.add(ProgressBar::new(total));
                bar.set_style(style.clone());
                bar.set_prefix(format!("peer{}", index + 1));
                bar
            })
            .collect();
        Self {
            bars,
            multi: Some(multi),
        }
    }

    fn peer(&self, index: usize) -> PeerBar {
        PeerBar {
            bar: self.bars[index].clone(),
            last_line: Arc::new(std::sync::Mutex::new(Instant::now())),
        }
    }

    fn clear(&self) {
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
    }
}

#[derive(Clone)]
struct PeerBar {
    bar: ProgressBar,
    last_line: Arc<std::sync::Mutex<Instant>>,
}

impl PeerBar {
    fn update(&self, verified: u64, peers: usize, rate: f64, out: Output, index: usize) {
        self.bar.set_position(verified);
        self.bar.set_message(format!(
            "{} {}/s",
            counted(peers as u64, "peer"),
            human_bytes(rate as u64)
        ));
        if out.json {
            out.event(&Event::PeerProgress {
                peer: index + 1,
                verified_bytes: verified,
                peers,
                rate_bytes_per_second: rate,
            });
        } else if self.bar.is_hidden() {
            let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= Duration::from_secs(2) {
                *last = Instant::now();
                out.say(format!(
                    "peer{}: {} verified, {}, {}/s",
                    index + 1,
                    human_bytes(verified),
                    counted(peers as u64, "peer"),
                    human_bytes(rate as u64)
                ));
            }
        }
    }

    fn finish(&self, out: Output, index: usize) {
        self.bar.finish_with_message("verified");
        if self.bar.is_hidden() {
            out.say(format!("peer{}: complete and verified", index + 1));
        }
        out.event(&Event::PeerComplete { peer: index + 1 });
    }
}
