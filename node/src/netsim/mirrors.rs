//! Mirrors in the simulator: HTTPS hosts whose uplink the responses share
//! fairly (one range per connection, as HTTP/1.1 runs them), each a
//! latency away, honest or lying in one of the ways a driver reports.
//!
//! A node's mirror is found usable two round trips after its start (the
//! chunk list and the first response's headers); a range request reaches
//! the mirror one latency after it is sent, its headers come back one
//! latency after its first bytes leave, its end one latency after its
//! last. A cancelled range stops at once at the node (its connection is
//! closed) and one latency later at the mirror.

use super::*;
use crate::mirror::{
    MirrorChunkOutcome, MirrorFailure, MirrorFault, MirrorId, MirrorUnusable, Validators,
};
use crate::node::RememberedMirror;

/// How a simulated mirror behaves.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MirrorBehaviour {
    /// Every range is the chunk asked.
    Honest,
    /// The range of this chunk holds other bytes.
    WrongRange(u32),
    /// It answers ranges with the whole file (its driver sees 200).
    IgnoresRange,
    /// It serves another file (its driver sees another length first).
    OtherFile,
    /// Nothing there (its driver sees 404 first).
    Missing,
    /// Its file is replaced at this moment: its validators change.
    ChangesAt(Duration),
}

/// One simulated mirror.
pub(crate) struct SimMirror {
    /// Uplink, bytes per second.
    pub rate: f64,
    /// One-way access latency.
    pub latency: Duration,
    /// What it does.
    pub behaviour: MirrorBehaviour,
    transfers: Vec<MirrorTransfer>,
    last: Duration,
    version: u64,
    /// Bytes its uplink carried (cancelled ranges' included).
    pub sent: f64,
    /// Ranges it was asked for.
    pub requests: u64,
}

impl SimMirror {
    pub(crate) fn new(rate: f64, latency: Duration, behaviour: MirrorBehaviour) -> Self {
        Self {
            rate,
            latency,
            behaviour,
            transfers: Vec::new(),
            last: Duration::ZERO,
            version: 0,
            sent: 0.0,
            requests: 0,
        }
    }

    fn validators(&self, at: Duration) -> Validators {
        let changed = matches!(self.behaviour, MirrorBehaviour::ChangesAt(when) if at >= when);
        Validators {
            etag: Some(if changed { "\"v2\"" } else { "\"v1\"" }.into()),
            last_modified: None,
        }
    }
}

struct MirrorTransfer {
    request: MirrorRequest,
    remaining: f64,
}

/// A range request in flight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct MirrorRequest {
    node: usize,
    generation: u32,
    /// The node's number for the mirror.
    local: u16,
    /// The simulator's.
    mirror: usize,
    chunk: u32,
    id: u64,
}

/// The labels a node starts with, one per mirror it is given.
pub(super) fn labels(mirrors: &[usize]) -> Vec<String> {
    mirrors
        .iter()
        .map(|m| format!("https://mirror{m}.example/model.slm"))
        .collect()
}

impl Sim {
    /// Adds a mirror; its index, for [`NodeSpec::mirrors`].
    pub(crate) fn add_mirror(&mut self, mirror: SimMirror) -> usize {
        self.mirrors.push(mirror);
        self.mirrors.len() - 1
    }

    /// Mirror `index`.
    pub(crate) fn mirror(&self, index: usize) -> &SimMirror {
        &self.mirrors[index]
    }

    /// A node started: what an earlier run saw of its mirrors, and each
    /// mirror found usable (or not) two round trips on.
    pub(super) fn start_mirrors(&mut self, node: usize) {
        if self.specs[node].mirrors.is_empty() {
            return;
        }
        let remembered = self.nodes[node].disk.mirrors.clone();
        self.core_mut(node).remember_mirrors_from(remembered);
        let generation = self.nodes[node].generation;
        for (local, &mirror) in self.specs[node].mirrors.clone().iter().enumerate() {
            let rtt = 2 * (self.specs[node].latency + self.mirrors[mirror].latency);
            let at = self.now + 2 * rtt;
            self.push(at, Event::MirrorUp(node, generation, local as u16));
        }
    }

    pub(super) fn mirror_up(&mut self, node: usize, generation: u32, local: u16) {
        if !self.is_current(node, generation) {
            return;
        }
        let mirror = self.specs[node].mirrors[usize::from(local)];
        let now = self.instant();
        let id = MirrorId(local);
        match self.mirrors[mirror].behaviour {
            MirrorBehaviour::OtherFile => {
                let fault = MirrorFault::OtherLength {
                    expected: self.swarm.params().artifact_bytes(),
                    got: 1,
                };
                self.core_mut(node).handle_mirror_failed(
                    id,
                    None,
                    MirrorFailure::Fault(fault),
                    now,
                );
            }
            MirrorBehaviour::Missing => {
                let reason = MirrorUnusable::Status { status: 404 };
                self.core_mut(node).handle_mirror_failed(
                    id,
                    None,
                    MirrorFailure::Unusable(reason),
                    now,
                );
            }
            _ => {
                let validators = self.mirrors[mirror].validators(self.now);
                self.core_mut(node).handle_mirror_up(id, validators, now);
            }
        }
        self.pump(node, false);
    }

    fn mirror_path(&self, node: usize, mirror: usize) -> Duration {
        self.specs[node].latency + self.mirrors[mirror].latency
    }

    /// The node asks its `local`-th mirror for `chunk`.
    pub(super) fn mirror_fetch(&mut self, node: usize, local: MirrorId, chunk: u32) {
        let mirror = self.specs[node].mirrors[usize::from(local.0)];
        self.next_transfer += 1;
        let request = MirrorRequest {
            node,
            generation: self.nodes[node].generation,
            local: local.0,
            mirror,
            chunk,
            id: self.next_transfer,
        };
        let at = self.now + self.mirror_path(node, mirror);
        self.push(at, Event::MirrorAsked(request));
    }

    /// The node abandons its range (`chunk`), or every range of that
    /// mirror (`None`).
    pub(super) fn mirror_cancel(&mut self, node: usize, local: MirrorId, chunk: Option<u32>) {
        let generation = self.nodes[node].generation;
        let abandoned: Vec<u64> = self
            .mirror_requests
            .iter()
            .filter(|(_, r)| {
                r.node == node
                    && r.generation == generation
                    && r.local == local.0
                    && chunk.is_none_or(|c| c == r.chunk)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in abandoned {
            if let Some(request) = self.mirror_requests.remove(&id) {
                let at = self.now + self.mirror_path(node, request.mirror);
                self.push(at, Event::MirrorGone(request.mirror, id));
            }
        }
    }

    /// A killed node's ranges die with its connections.
    pub(super) fn mirrors_forget(&mut self, node: usize) {
        let ids: Vec<(usize, u64)> = self
            .mirror_requests
            .iter()
            .filter(|(_, r)| r.node == node)
            .map(|(id, r)| (r.mirror, *id))
            .collect();
        for (mirror, id) in ids {
            self.mirror_requests.remove(&id);
            self.mirror_change(mirror, |m| m.transfers.retain(|t| t.request.id != id));
        }
    }

    /// A range request reaches its mirror.
    pub(super) fn mirror_asked(&mut self, request: MirrorRequest) {
        self.mirror_requests.insert(request.id, request);
        let m = &mut self.mirrors[request.mirror];
        m.requests += 1;
        if m.behaviour == MirrorBehaviour::IgnoresRange {
            let at = self.now + self.mirror_path(request.node, request.mirror);
            self.push(at, Event::MirrorIgnored(request));
            return;
        }
        let bytes = self
            .swarm
            .params()
            .chunk_len(ChunkIndex(request.chunk))
            .expect("a chunk of the swarm");
        self.mirror_change(request.mirror, |m| {
            m.transfers.push(MirrorTransfer {
                request,
                remaining: f64::from(bytes),
            });
        });
        let at = self.now + self.mirror_path(request.node, request.mirror);
        self.push(at, Event::MirrorHeader(request, self.now));
    }

    /// Whether the node still waits for this request.
    fn awaited(&self, request: &MirrorRequest) -> bool {
        self.mirror_requests.contains_key(&request.id)
            && self.is_current(request.node, request.generation)
    }

    pub(super) fn mirror_ignored(&mut self, request: MirrorRequest) {
        if !self.awaited(&request) {
            return;
        }
        self.mirror_requests.remove(&request.id);
        let now = self.instant();
        let fault = MirrorFault::IgnoredRange {
            chunk: request.chunk,
        };
        self.core_mut(request.node).handle_mirror_failed(
            MirrorId(request.local),
            Some(ChunkIndex(request.chunk)),
            MirrorFailure::Fault(fault),
            now,
        );
        self.pump(request.node, false);
    }

    /// A response's headers reach the node (sent at `sent`).
    pub(super) fn mirror_header(&mut self, request: MirrorRequest, sent: Duration) {
        if !self.awaited(&request) {
            return;
        }
        let now = self.instant();
        let validators = self.mirrors[request.mirror].validators(sent);
        let verdict = self.core_mut(request.node).handle_mirror_started(
            MirrorId(request.local),
            ChunkIndex(request.chunk),
            &validators,
            now,
        );
        if verdict == PieceVerdict::Stop {
            self.mirror_requests.remove(&request.id);
            let at = self.now + self.mirror_path(request.node, request.mirror);
            self.push(at, Event::MirrorGone(request.mirror, request.id));
        }
        self.pump(request.node, false);
    }

    /// A cancelled range stops at its mirror.
    pub(super) fn mirror_gone(&mut self, mirror: usize, id: u64) {
        self.mirror_change(mirror, |m| m.transfers.retain(|t| t.request.id != id));
    }

    /// A range's last bytes reach the node.
    pub(super) fn mirror_done(&mut self, request: MirrorRequest) {
        if !self.awaited(&request) {
            return;
        }
        self.mirror_requests.remove(&request.id);
        let (node, chunk) = (request.node, ChunkIndex(request.chunk));
        let now = self.instant();
        let local = MirrorId(request.local);
        if self.core_mut(node).handle_mirror_arrived(local, chunk, now) == PieceVerdict::Accept {
            let outcome = match self.mirrors[request.mirror].behaviour {
                MirrorBehaviour::WrongRange(bad) if bad == chunk.0 => MirrorChunkOutcome::Bad {
                    expected: minimodel_verifier::Sha256Digest([1; 32]),
                    got: minimodel_verifier::Sha256Digest([2; 32]),
                },
                _ => {
                    self.store(node, chunk.0);
                    MirrorChunkOutcome::Stored
                }
            };
            self.core_mut(node)
                .handle_mirror_verified(local, chunk, outcome, now);
        }
        self.pump(node, false);
    }

    /// Moves a mirror's responses on to now, changes them, and schedules
    /// the next one to end.
    fn mirror_change(&mut self, mirror: usize, change: impl FnOnce(&mut SimMirror)) {
        let now = self.now;
        let m = &mut self.mirrors[mirror];
        let elapsed = now.saturating_sub(m.last).as_secs_f64();
        m.last = now;
        if elapsed > 0.0 && !m.transfers.is_empty() {
            let share = m.rate / m.transfers.len() as f64;
            for transfer in &mut m.transfers {
                let bytes = (share * elapsed).min(transfer.remaining);
                transfer.remaining -= bytes;
                m.sent += bytes;
            }
        }
        change(m);
        m.version += 1;
        let version = m.version;
        if !m.transfers.is_empty() {
            let share = m.rate / m.transfers.len() as f64;
            let least = m
                .transfers
                .iter()
                .map(|t| t.remaining.max(0.0))
                .fold(f64::INFINITY, f64::min);
            let at = now + Duration::from_secs_f64(least / share) + Duration::from_nanos(1);
            self.push(at, Event::MirrorUplink(mirror, version));
        }
    }

    pub(super) fn mirror_uplink_due(&mut self, mirror: usize, version: u64) {
        if self.mirrors[mirror].version != version {
            return;
        }
        let mut done = Vec::new();
        self.mirror_change(mirror, |m| {
            m.transfers.retain(|t| {
                let finished = t.remaining <= 0.5;
                if finished {
                    done.push(t.request);
                }
                !finished
            });
        });
        for request in done {
            let at = self.now + self.mirror_path(request.node, request.mirror);
            self.push(at, Event::MirrorDone(request));
        }
    }

    /// The node writes what its core would remember of its mirrors (at a
    /// checkpoint).
    pub(super) fn save_mirrors(&mut self, node: usize) {
        if let Some(list) = self.core(node).mirrors_to_remember() {
            self.nodes[node].disk.mirrors = list;
        }
    }
}

/// What a simulated node keeps of its mirrors on disk.
pub(super) type SavedMirrors = Vec<RememberedMirror>;

#[cfg(test)]
mod tests {
    use super::super::crowds::{MBIT, MIB, geometry, mixed};
    use super::*;
    use crate::mirror::MirrorEnd;

    /// What a cold start gave.
    #[derive(Debug)]
    struct ColdStart {
        last: f64,
        median: f64,
        bound: f64,
        mirror_copies: f64,
    }

    impl ColdStart {
        fn ratio(&self) -> f64 {
            self.last / self.bound
        }
    }

    /// One mirror at `mirror_mbit` and no seeder, one serving peer per
    /// uplink, each told of every other (as a tracker would) and of the
    /// mirror, all started at once, `mib` MiB in the default chunks. With
    /// `NETSIM_LAB_START` set, started as the lab's `mirror-cold-24x32`
    /// starts them: the first alone, the others 2 s later told of the
    /// first only (peer exchange does the rest).
    fn cold_start(mirror_mbit: f64, uplinks: &[f64], mib: u32, seed: u64) -> ColdStart {
        let (chunks, chunk_size) = geometry(mib);
        let peers = uplinks.len();
        let specs: Vec<NodeSpec> = uplinks
            .iter()
            .enumerate()
            .map(|(index, &uplink)| {
                let lab = std::env::var_os("NETSIM_LAB_START").is_some();
                let others: Vec<usize> = if lab {
                    // As the lab starts them: the first alone, the others
                    // 2 s later knowing the first (peer exchange the rest).
                    if index == 0 { Vec::new() } else { vec![0] }
                } else {
                    (0..peers).filter(|&other| other != index).collect()
                };
                NodeSpec {
                    mirrors: vec![0],
                    starts_at: if lab && index > 0 {
                        Duration::from_secs(2)
                    } else {
                        Duration::ZERO
                    },
                    ..NodeSpec::fetcher(index, chunks, uplink, true, &others)
                }
            })
            .collect();
        let mut sim = Sim::new(chunk_size, chunks, specs);
        sim.add_mirror(SimMirror::new(
            mirror_mbit * MBIT,
            Duration::from_millis(5),
            MirrorBehaviour::Honest,
        ));
        sim.seed_offset = seed;
        sim.run(Duration::from_secs(3600), Sim::downloads_over);
        if std::env::var_os("NETSIM_TRACE").is_some() {
            let mut line = String::new();
            for second in (0..40).step_by(2) {
                let t = Duration::from_secs(second);
                let total: usize = (0..peers)
                    .map(|index| {
                        sim.record(index)
                            .verified_at
                            .iter()
                            .filter(|at| at.is_some_and(|at| at <= t))
                            .count()
                    })
                    .sum();
                line.push_str(&format!(" {second}s:{total}"));
            }
            println!("verified over time:{line}");
            let mut firsts: Vec<f64> = (0..chunks as usize)
                .map(|chunk| {
                    (0..peers)
                        .filter_map(|index| sim.record(index).verified_at[chunk])
                        .min()
                        .map_or(f64::NAN, |at| at.as_secs_f64())
                })
                .collect();
            firsts.sort_by(f64::total_cmp);
            println!(
                "every chunk in the crowd by {:.1} s (half by {:.1} s)",
                firsts[firsts.len() - 1],
                firsts[firsts.len() / 2]
            );
            for (index, uplink) in uplinks.iter().enumerate() {
                let r = sim.record(index);
                println!(
                    "peer {index}: uplink {:.0} Mbit, sent {:.2} copies, busy {:.1} s, done {:.1} s",
                    uplink / MBIT,
                    r.uploaded_bytes / f64::from(mib) / f64::from(MIB),
                    r.busy.as_secs_f64(),
                    r.delivered_at.map_or(f64::NAN, |d| d.as_secs_f64())
                );
            }
        }
        if std::env::var_os("NETSIM_TRACE").is_some() {
            let sent: f64 = (0..peers).map(|i| sim.record(i).uploaded_bytes).sum();
            let wasted: u64 = (0..peers)
                .map(|i| sim.core(i).transfer().map_or(0, |t| t.bytes_wasted))
                .sum();
            let cancelled: u64 = (0..peers).map(|i| sim.record(i).uploads_cancelled).sum();
            let size = f64::from(mib) * f64::from(MIB);
            println!(
                "peers sent {:.2} copies, wasted (verified twice) {:.2} copies, uploads cancelled {cancelled}",
                sent / size,
                wasted as f64 / size
            );
        }
        let mut done: Vec<f64> = (0..peers)
            .map(|index| {
                let record = sim.record(index);
                record
                    .delivered_at
                    .unwrap_or_else(|| panic!("peer {index} did not complete: {:?}", record.ended))
                    .as_secs_f64()
            })
            .collect();
        done.sort_by(f64::total_cmp);
        let size = f64::from(mib) * f64::from(MIB);
        let u_s = mirror_mbit * MBIT;
        let bound = (size / u_s).max(peers as f64 * size / (u_s + uplinks.iter().sum::<f64>()));
        let figures = ColdStart {
            last: done[peers - 1],
            median: done[peers / 2],
            bound,
            mirror_copies: sim.mirror(0).sent / size,
        };
        println!(
            "cold start: {peers} peers, {mib} MiB in {chunks} chunks, mirror at {mirror_mbit} Mbit: \
             last {:.1} s, median {:.1} s, T* {:.1} s: {:.2}x; mirror {:.2} copies in {} ranges",
            figures.last,
            figures.median,
            figures.bound,
            figures.ratio(),
            figures.mirror_copies,
            sim.mirror(0).requests
        );
        figures
    }

    /// The lab's cold start (`docs/lab.md`, `mirror-cold-24x32`): the
    /// mirror as the seeder of the heterogeneous bound. 1.26 to 1.28 T*
    /// with 1.19 to 1.23 copies from the mirror over six draws
    /// (`NETSIM_SEED=N`): with a mirror that sends a copy and a quarter
    /// the peers' uplinks carry the rest, 22.8 copies at 222 Mbit, 1.11 T*
    /// before their trades' overhead and the first second, in which they
    /// have nothing to trade yet.
    #[test]
    fn a_cold_start_from_one_mirror_and_no_seeder() {
        let seed = std::env::var("NETSIM_SEED")
            .ok()
            .and_then(|seed| seed.parse().ok())
            .unwrap_or(0);
        let figures = cold_start(40.0, &mixed(24), 32, seed);
        assert!(figures.mirror_copies <= 1.3, "{figures:?}");
        assert!(figures.ratio() <= 1.32, "{figures:?}");
    }

    /// A lone fetch with a slow seeder and a fast mirror: the mirror takes
    /// what the seeder cannot keep up with.
    #[test]
    fn a_fast_mirror_carries_a_fetch_whose_seeder_is_slow() {
        let (chunks, chunk_size) = geometry(32);
        let specs = vec![
            NodeSpec::seeder(0, chunks, 2.0 * MBIT),
            NodeSpec {
                mirrors: vec![0],
                ..NodeSpec::fetcher(1, chunks, 10.0 * MBIT, false, &[0])
            },
        ];
        let mut sim = Sim::new(chunk_size, chunks, specs);
        sim.add_mirror(SimMirror::new(
            80.0 * MBIT,
            Duration::from_millis(10),
            MirrorBehaviour::Honest,
        ));
        sim.run(Duration::from_secs(600), Sim::downloads_over);
        let done = sim.record(1).delivered_at.expect("delivered").as_secs_f64();
        let size = 32.0 * f64::from(MIB);
        let alone = size / (80.0 * MBIT);
        let copies = sim.mirror(0).sent / size;
        println!(
            "slow seeder and a fast mirror: {done:.1} s ({alone:.1} s at the mirror's rate), mirror {copies:.2} copies"
        );
        assert!(done < 1.3 * alone, "{done} s");
        assert!(copies < 1.0, "the seeder gave some: {copies}");
        assert!(copies > 0.8, "the mirror took most: {copies}");
    }

    /// Peers that keep up with a fetch leave a mirror idle but for what
    /// they do not hold.
    #[test]
    fn a_mirror_is_not_raced_against_peers_that_keep_up() {
        let (chunks, chunk_size) = geometry(32);
        let specs = vec![
            NodeSpec::seeder(0, chunks, 100.0 * MBIT),
            NodeSpec {
                mirrors: vec![0],
                ..NodeSpec::fetcher(1, chunks, 10.0 * MBIT, false, &[0])
            },
        ];
        let mut sim = Sim::new(chunk_size, chunks, specs);
        sim.add_mirror(SimMirror::new(
            100.0 * MBIT,
            Duration::from_millis(10),
            MirrorBehaviour::Honest,
        ));
        sim.run(Duration::from_secs(600), Sim::downloads_over);
        assert!(sim.record(1).delivered_at.is_some());
        let size = 32.0 * f64::from(MIB);
        let copies = sim.mirror(0).sent / size;
        println!("a seeder as fast as the mirror: mirror {copies:.3} copies");
        // Its probe, and at most a pipeline's worth more.
        assert!(copies <= 5.0 / f64::from(chunks), "{copies}");
    }

    fn ends(sim: &Sim, node: usize) -> Vec<(MirrorId, MirrorEnd)> {
        sim.record(node)
            .reports
            .iter()
            .filter_map(|(_, report)| match report {
                NodeReport::MirrorEnded { mirror, end, .. } => Some((*mirror, end.clone())),
                _ => None,
            })
            .collect()
    }

    /// Four lying mirrors and an honest one: each liar is dropped with its
    /// reason, the download completes from the others.
    #[test]
    fn lying_mirrors_are_dropped_with_their_reasons_and_the_download_completes() {
        let (chunks, chunk_size) = geometry(16);
        let specs = vec![NodeSpec {
            mirrors: vec![0, 1, 2, 3, 4],
            ..NodeSpec::fetcher(0, chunks, 10.0 * MBIT, false, &[])
        }];
        let mut sim = Sim::new(chunk_size, chunks, specs);
        let ms = Duration::from_millis(5);
        let wrong = 3;
        for behaviour in [
            MirrorBehaviour::WrongRange(wrong),
            MirrorBehaviour::IgnoresRange,
            MirrorBehaviour::OtherFile,
            MirrorBehaviour::Missing,
            MirrorBehaviour::Honest,
        ] {
            sim.add_mirror(SimMirror::new(20.0 * MBIT, ms, behaviour));
        }
        // The liar of chunk 3 is the only one asked for it at first.
        sim.run(Duration::from_secs(600), Sim::downloads_over);
        assert!(
            sim.record(0).delivered_at.is_some(),
            "{:?}",
            sim.record(0).ended
        );
        let ends = ends(&sim, 0);
        let by = |id: u16| {
            ends.iter()
                .find(|(mirror, _)| mirror.0 == id)
                .map(|(_, end)| end.clone())
        };
        match by(0) {
            Some(MirrorEnd::Dropped {
                fault: MirrorFault::BadChunk { chunk, .. },
            }) => assert_eq!(chunk, wrong),
            // It may have delivered its other chunks before being asked
            // for chunk 3, or never been asked for it.
            None => assert!(
                sim.mirror(0).requests > 0,
                "the wrong-range mirror was never asked"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            by(1),
            Some(MirrorEnd::Dropped {
                fault: MirrorFault::IgnoredRange { .. }
            })
        ));
        assert!(matches!(
            by(2),
            Some(MirrorEnd::Dropped {
                fault: MirrorFault::OtherLength { .. }
            })
        ));
        assert!(matches!(
            by(3),
            Some(MirrorEnd::Unusable {
                reason: MirrorUnusable::Status { status: 404 }
            })
        ));
        assert_eq!(by(4), None, "the honest mirror stays");
        let stats = sim.core(0).transfer().expect("a download");
        let honest = stats
            .mirrors
            .iter()
            .find(|m| m.mirror.0 == 4)
            .expect("the honest mirror took part");
        assert!(honest.download.chunks > 0);
        assert_eq!(
            stats.mirrors.iter().map(|m| m.download.chunks).sum::<u64>(),
            u64::from(chunks)
        );
    }

    /// The mirror that sends a wrong range for a chunk is asked for it for
    /// sure here (it is the only source), and dropped naming it.
    #[test]
    fn a_wrong_range_drops_its_mirror_naming_the_chunk() {
        let (chunks, chunk_size) = geometry(8);
        let specs = vec![NodeSpec {
            mirrors: vec![0, 1],
            ..NodeSpec::fetcher(0, chunks, 10.0 * MBIT, false, &[])
        }];
        let mut sim = Sim::new(chunk_size, chunks, specs);
        let ms = Duration::from_millis(5);
        sim.add_mirror(SimMirror::new(
            40.0 * MBIT,
            ms,
            MirrorBehaviour::WrongRange(0),
        ));
        sim.add_mirror(SimMirror::new(1.0 * MBIT, ms, MirrorBehaviour::Honest));
        sim.run(Duration::from_secs(600), Sim::downloads_over);
        assert!(sim.record(0).delivered_at.is_some());
        let stats = sim.core(0).transfer().expect("a download");
        let liar = &stats.mirrors[0];
        assert!(
            matches!(
                liar.end,
                Some(MirrorEnd::Dropped {
                    fault: MirrorFault::BadChunk { chunk: 0, .. }
                })
            ),
            "{liar:?}"
        );
        assert_eq!(liar.download.bad_chunks, 1);
    }

    /// Killed in the middle and started again: no verified chunk is asked
    /// again, and a mirror whose file changed meanwhile is noticed.
    #[test]
    fn a_resumed_download_asks_no_verified_chunk_again_and_notices_a_changed_mirror() {
        let (chunks, chunk_size) = geometry(32);
        let specs = vec![
            NodeSpec::seeder(0, chunks, 10.0 * MBIT),
            NodeSpec {
                mirrors: vec![0, 1],
                killed_at: Some(Duration::from_secs(3)),
                restarts_at: Some(Duration::from_secs(5)),
                ..NodeSpec::fetcher(1, chunks, 10.0 * MBIT, false, &[0])
            },
        ];
        let mut sim = Sim::new(chunk_size, chunks, specs);
        let ms = Duration::from_millis(5);
        sim.add_mirror(SimMirror::new(20.0 * MBIT, ms, MirrorBehaviour::Honest));
        sim.add_mirror(SimMirror::new(
            20.0 * MBIT,
            ms,
            MirrorBehaviour::ChangesAt(Duration::from_secs(4)),
        ));
        sim.run(Duration::from_secs(600), Sim::downloads_over);
        let record = sim.record(1);
        assert!(record.delivered_at.is_some(), "{:?}", record.ended);
        // Every chunk verified once: none fetched again after the restart.
        assert_eq!(record.verified, chunks, "chunks verified in both runs");
        let changed = ends(&sim, 1);
        assert!(
            changed.iter().any(|(mirror, end)| mirror.0 == 1
                && matches!(
                    end,
                    MirrorEnd::Dropped {
                        fault: MirrorFault::Changed {
                            validator: "ETag",
                            ..
                        }
                    }
                )),
            "{changed:?}"
        );
    }
}
