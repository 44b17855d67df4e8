//! Uplinks and piece streams: uploads share their sender's uplink; their
//! headers, ends, resets and stops travel one latency.

use super::*;

pub(super) struct Transfer {
    pub(super) id: u64,
    pub(super) conn: usize,
    pub(super) from: usize,
    pub(super) chunk: u32,
    pub(super) remaining: f64,
    pub(super) pace: Option<f64>,
}

/// A node's uplink: its transfers share `rate` fairly, each at most its
/// pace; with `one_per_conn`, only the oldest transfer of each connection
/// sends (a peer's piece streams go one after another, as the transport
/// sends them).
pub(super) struct Uplink {
    pub(super) rate: f64,
    pub(super) transfers: Vec<Transfer>,
    pub(super) last: Duration,
    pub(super) version: u64,
    pub(super) one_per_conn: bool,
}

impl Uplink {
    pub(super) fn rates(&self) -> Vec<f64> {
        let mut order: Vec<usize> = (0..self.transfers.len()).collect();
        if self.one_per_conn {
            // The oldest transfer of each connection (ids grow).
            order.retain(|&i| {
                let t = &self.transfers[i];
                !self
                    .transfers
                    .iter()
                    .any(|other| other.conn == t.conn && other.from == t.from && other.id < t.id)
            });
        }
        let pace = |i: usize| self.transfers[i].pace.unwrap_or(f64::INFINITY);
        order.sort_by(|a, b| pace(*a).total_cmp(&pace(*b)));
        let mut rates = vec![0.0; self.transfers.len()];
        let mut left = self.rate;
        for (done, &i) in order.iter().enumerate() {
            let share = left / (order.len() - done) as f64;
            rates[i] = pace(i).min(share);
            left -= rates[i];
        }
        rates
    }

    /// Moves the transfers on to `now`; the bytes sent, in all and per
    /// connection side (`(conn, side, bytes)`).
    pub(super) fn advance(&mut self, now: Duration) -> (f64, Vec<(usize, usize, f64)>) {
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.last = now;
        if elapsed <= 0.0 {
            return (0.0, Vec::new());
        }
        let rates = self.rates();
        let mut sent = 0.0;
        let mut per_conn = Vec::new();
        for (transfer, rate) in self.transfers.iter_mut().zip(rates) {
            let bytes = (rate * elapsed).min(transfer.remaining);
            transfer.remaining -= bytes;
            sent += bytes;
            per_conn.push((transfer.conn, transfer.from, bytes));
        }
        (sent, per_conn)
    }

    pub(super) fn next_completion(&self, now: Duration) -> Option<Duration> {
        self.transfers
            .iter()
            .zip(self.rates())
            .filter(|(_, rate)| *rate > 0.0)
            .map(|(transfer, rate)| {
                now + Duration::from_secs_f64(transfer.remaining.max(0.0) / rate)
                    + Duration::from_nanos(1)
            })
            .min()
    }
}

impl Sim {
    pub(super) fn upload(
        &mut self,
        node: usize,
        conn: usize,
        side: usize,
        chunk: u32,
        pace: Option<u64>,
    ) {
        if let Behaviour::Staller(from) = self.specs[node].behaviour
            && self.now >= from
        {
            return;
        }
        let to = self.conns[conn].nodes[1 - side];
        self.nodes[node].record.uploads.push((self.now, to, chunk));
        self.next_transfer += 1;
        let id = self.next_transfer;
        let bytes = self
            .swarm
            .params()
            .chunk_len(ChunkIndex(chunk))
            .expect("a chunk of the swarm");
        let owner = self.uplink_of(node);
        // How long the receiver's link will have idled when the header
        // arrives: nothing while this side sends it another piece.
        let header_at = self.now + self.latency(conn);
        let sending = self.nodes[owner]
            .uplink
            .transfers
            .iter()
            .any(|t| t.conn == conn && t.from == side);
        let quiet = match self.conns[conn].pieces_until[side] {
            Some(until) if !sending => header_at.saturating_sub(until),
            _ => Duration::ZERO,
        };
        let mut pace = pace.map(|rate| rate as f64);
        // Through a relay: at most the pair's rate.
        if let Some(cap) = self.conns[conn]
            .via
            .and_then(|relay| self.specs[relay].relay.as_ref())
            .map(|config| config.pair_rate as f64)
            .filter(|cap| *cap > 0.0)
        {
            pace = Some(pace.map_or(cap, |pace| pace.min(cap)));
        }
        if let Some(slow) = self.slow_paths
            && self.path_rng.unit() < slow.share
        {
            let fraction = slow.fastest - self.path_rng.unit() * (slow.fastest - slow.slowest);
            let path = self.nodes[owner].uplink.rate * fraction;
            pace = Some(pace.map_or(path, |pace| pace.min(path)));
        }
        self.uplink_change(owner, |uplink| {
            uplink.transfers.push(Transfer {
                id,
                conn,
                from: side,
                chunk,
                remaining: f64::from(bytes),
                pace,
            });
        });
        let event = Event::Header(
            Stream {
                conn,
                to: 1 - side,
                chunk,
                transfer: id,
            },
            quiet,
        );
        self.push(header_at, event);
    }

    /// Changes a node's transfers at the current time and schedules the
    /// next completion.
    pub(super) fn uplink_change(&mut self, node: usize, change: impl FnOnce(&mut Uplink)) {
        let now = self.now;
        let n = &mut self.nodes[node];
        if !n.uplink.transfers.is_empty() {
            n.record.busy += now.saturating_sub(n.uplink.last);
        }
        let (sent, per_conn) = n.uplink.advance(now);
        n.record.uploaded_bytes += sent;
        for (conn, side, bytes) in per_conn {
            self.conns[conn].sent[side] += bytes;
        }
        let n = &mut self.nodes[node];
        change(&mut n.uplink);
        n.record.peak_uploads = n.record.peak_uploads.max(n.uplink.transfers.len());
        n.uplink.version += 1;
        let version = n.uplink.version;
        let generation = n.generation;
        if let Some(at) = n.uplink.next_completion(now) {
            let event = Event::Uplink(node, generation, version);
            self.push(at, event);
        }
    }

    pub(super) fn uplink_due(&mut self, node: usize) {
        let mut done = Vec::new();
        self.uplink_change(node, |uplink| {
            uplink.transfers.retain(|t| {
                let finished = t.remaining <= 0.5;
                if finished {
                    done.push((t.id, t.conn, t.from, t.chunk));
                }
                !finished
            });
        });
        // On a shared host the finished uploads may be other nodes'.
        let mut senders = BTreeSet::new();
        for (transfer, conn, side, chunk) in done {
            let bytes = self
                .swarm
                .params()
                .chunk_len(ChunkIndex(chunk))
                .map_or(0, u64::from);
            let at = self.now + self.piece_delay(conn, bytes);
            let until = &mut self.conns[conn].pieces_until[side];
            *until = Some(until.map_or(at, |until| until.max(at)));
            self.push(
                at,
                Event::PieceDone(Stream {
                    conn,
                    to: 1 - side,
                    chunk,
                    transfer,
                }),
            );
            if self.acked_uploads {
                let back = at + self.delay(conn);
                self.push(
                    back,
                    Event::Acked(Stream {
                        conn,
                        to: side,
                        chunk,
                        transfer,
                    }),
                );
                continue;
            }
            senders.extend(self.upload_sent(conn, side, chunk));
        }
        senders.insert(node);
        for sender in senders {
            if self.nodes[sender].alive {
                self.pump(sender, false);
            }
        }
    }

    /// An upload's last bytes were acknowledged ([`Sim::acked_uploads`]).
    pub(super) fn upload_acked(&mut self, stream: Stream) {
        if let Some(node) = self.upload_sent(stream.conn, stream.to, stream.chunk)
            && self.nodes[node].alive
        {
            self.pump(node, false);
        }
    }

    /// The sender (`side` of `conn`) learns that its upload of `chunk`
    /// was sent; which node that is, if it is still there.
    fn upload_sent(&mut self, conn: usize, side: usize, chunk: u32) -> Option<usize> {
        let (node, link) = self.endpoint(conn, side)?;
        let now = self.instant();
        let params = self.swarm.params();
        let bytes = params
            .chunk_len(ChunkIndex(chunk))
            .map_or(u64::from(params.chunk_size()), u64::from);
        self.core_mut(node).handle_upload_done(
            link,
            ChunkIndex(chunk),
            UploadOutcome::Sent { bytes },
            now,
        );
        Some(node)
    }

    pub(super) fn piece_done(&mut self, stream: Stream) {
        let Stream {
            conn,
            to,
            chunk,
            transfer,
        } = stream;
        if self.stopped.contains(&transfer) {
            return;
        }
        let Some((node, link)) = self.endpoint(conn, to) else {
            return;
        };
        let now = self.instant();
        let chunk = ChunkIndex(chunk);
        if self.core_mut(node).handle_piece_arrived(link, chunk, now) == PieceVerdict::Accept {
            let sender = self.conns[conn].nodes[1 - to];
            let outcome = if self.specs[sender].behaviour == Behaviour::Liar {
                VerifyOutcome::Bad(minimodel_verifier::chunk::ChunkError::Proof(
                    minimodel_verifier::merkle::ProofError::RootMismatch { index: chunk.0 },
                ))
            } else {
                self.store(node, chunk.0);
                VerifyOutcome::Stored
            };
            self.core_mut(node)
                .handle_verified(link, chunk, outcome, now);
        }
        self.pump(node, false);
    }

    /// A chunk a node verified from the network is written.
    pub(super) fn store(&mut self, node: usize, chunk: u32) {
        if self.nodes[node].disk.stored.insert(chunk) {
            self.count_holder(node, chunk, true);
        }
        let record = &mut self.nodes[node].record;
        record.verified += 1;
        if let Some(at) = record.verified_at.get_mut(chunk as usize) {
            *at = Some(self.now);
        }
        if self.specs[node].vanish_after == Some(record.verified) {
            self.push(self.now, Event::Kill(node));
        }
    }

    pub(super) fn cancel_upload(&mut self, node: usize, conn: usize, side: usize, chunk: u32) {
        let mut cancelled = None;
        self.uplink_change(node, |uplink| {
            uplink.transfers.retain(|t| {
                let it = t.conn == conn && t.from == side && t.chunk == chunk;
                if it {
                    cancelled = Some(t.id);
                }
                !it
            });
        });
        if let Some(transfer) = cancelled {
            self.nodes[node].record.uploads_cancelled += 1;
            let at = self.now + self.latency(conn);
            let stream = Stream {
                conn,
                to: 1 - side,
                chunk,
                transfer,
            };
            self.push(at, Event::Reset(stream));
        }
    }

    pub(super) fn header(&mut self, stream: Stream, quiet: Duration) {
        let Some((node, link)) = self.endpoint(stream.conn, stream.to) else {
            return;
        };
        let now = self.instant();
        let chunk = ChunkIndex(stream.chunk);
        if self
            .core_mut(node)
            .handle_piece_header(link, chunk, 0, quiet, now)
            == PieceVerdict::Stop
        {
            self.stopped.insert(stream.transfer);
            let at = self.now + self.latency(stream.conn);
            let back = Stream {
                to: 1 - stream.to,
                ..stream
            };
            self.push(at, Event::StopSending(back));
        }
        self.pump(node, false);
    }

    pub(super) fn reset(&mut self, stream: Stream) {
        if self.stopped.contains(&stream.transfer) {
            return;
        }
        if let Some((node, link)) = self.endpoint(stream.conn, stream.to) {
            let now = self.instant();
            let chunk = Some(ChunkIndex(stream.chunk));
            self.core_mut(node)
                .handle_piece_failed(link, chunk, PieceEnd::Reset, now);
            self.pump(node, false);
        }
    }

    /// The receiver stopped the stream: the sender's upload ends there.
    pub(super) fn stop_sending(&mut self, stream: Stream) {
        let sender = self.uplink_of(self.conns[stream.conn].nodes[stream.to]);
        let before = self.nodes[sender].uplink.transfers.len();
        self.uplink_change(sender, |uplink| {
            uplink.transfers.retain(|t| t.id != stream.transfer);
        });
        let was_sending = self.nodes[sender].uplink.transfers.len() < before;
        if let (true, Some((node, link))) = (was_sending, self.endpoint(stream.conn, stream.to)) {
            let now = self.instant();
            let chunk = ChunkIndex(stream.chunk);
            self.core_mut(node)
                .handle_upload_done(link, chunk, UploadOutcome::Stopped, now);
            self.pump(node, false);
        }
    }

    /// A connection is gone: its streams die with it.
    pub(super) fn drop_transfers(&mut self, conn: usize) {
        for side in 0..2 {
            let node = self.uplink_of(self.conns[conn].nodes[side]);
            if self.nodes[node]
                .uplink
                .transfers
                .iter()
                .any(|t| t.conn == conn)
            {
                self.uplink_change(node, |uplink| uplink.transfers.retain(|t| t.conn != conn));
            }
        }
    }
}
