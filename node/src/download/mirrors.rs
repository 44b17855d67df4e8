//! The download's mirrors: when a mirror is asked for a chunk, and what
//! happens when it fails.
//!
//! A mirror holds every chunk, and the picker counts it so (rarest first
//! sees a chunk only mirrors hold as the rarest). It is asked only for what
//! peers cannot supply fast enough, never raced against them:
//!
//! 1. Peers first: every fill round tops up the peers' pipelines before a
//!    mirror's.
//! 2. A chunk no connected peer holds (its availability is the number of
//!    mirrors) goes to a mirror with room when it is this node's to fetch:
//!    of this node and the downloaders it is connected to (peers that lack
//!    chunks), its id scores highest for that chunk ([`score`], rendezvous
//!    hashing). Every downloader that sees the same peers makes the same
//!    choice, so each such chunk is asked of a mirror by one of them and
//!    then traded, instead of by several at once (downloaders learn what
//!    another fetched only from its `Have`, once it is verified). Among
//!    its own, the first from a random place (with other downloaders
//!    around) or the lowest.
//! 3. Another downloader's chunk that no peer holds (that downloader may
//!    have no mirror, or be slow to ask) goes to a mirror only when this
//!    node has nothing else to do: no own chunk left, nothing under way
//!    from peers or at that mirror. The one it scores second for first,
//!    so that of several idle nodes one takes each.
//! 4. A chunk peers hold goes to a mirror only when peers are behind: no
//!    peer has a request of ours under way (they give us nothing now), the
//!    mirror is untried (one request, to learn its rate), or the mirror
//!    alone is [`DownloadConfig::slow_peer_factor`] times faster than every
//!    peer delivering to us together. Then the rarest first, as a peer
//!    would take it.
//! 5. A chunk held up at a much slower source is asked of a mirror too
//!    (the slow-peer rescue of [`Downloader::tick`]) only when peers are
//!    behind it as in 4; a mirror takes no endgame duplicate. (In a crowd
//!    a mirror's rate seen by one downloader says little of what it has
//!    left for the others: rescues by a mirror there sent it four copies
//!    of a file in the simulator's cold start.) A mirror's own chunks held
//!    up at it may be rescued by a peer.
//!
//! 6. In endgame (every chunk verified or in flight), an idle mirror
//!    takes the chunk held longest, once every owner of it has held it
//!    for two of the mirror's chunk times: the tail peers cannot supply
//!    fast enough. Within this node's part of a crowd's share of mirrors
//!    ([`MirrorConfig::crowd_copies`] of the file, over the most
//!    downloaders it saw at once and itself, everything it took from
//!    mirrors counted): a mirror's bytes cost its owner, and a crowd takes
//!    about one copy and a quarter from it, then trades.
//!
//! A mirror's ranges run side by side (a connection each), so each more
//! one splits its rate: among other downloaders it has one range of
//! ours at a time (a crowd's first ranges end together, and only then can
//! it trade them), alone as many as its rate and round trip call for, as
//! a peer's pipeline, at most [`MirrorConfig::max_requests`]. Its requests
//! count against the download's in-flight budget and rate cap, and
//! against its own cap ([`MirrorConfig::max_rate`]). A request that times
//! out is asked again (of anyone); a mirror that delivers nothing for
//! [`DownloadConfig::silence_timeout`] backs off, as one whose request
//! failed ([`Downloader::mirror_failed`]); only a run of
//! [`MirrorConfig::max_failures`] failures in a row gives it up for the
//! run. Slowness is never blamed.

use super::*;
use crate::mirror::MirrorTrouble;

/// A chunk's score for a downloader, for rendezvous hashing: whoever among
/// a set of downloaders scores highest for a chunk no peer holds asks a
/// mirror for it. A hash of the id and the chunk (SplitMix64's finalizer);
/// ids are digests of keys, so any eight of their bytes are random.
pub fn score(id: &PeerId, chunk: u32) -> u64 {
    let mut head = [0; 8];
    head.copy_from_slice(&id.0[..8]);
    let mut z = u64::from_le_bytes(head) ^ u64::from(chunk).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Whether `chunk` is `me`'s to ask a mirror for among `others`: its
/// score is the highest (ties: the larger id).
fn is_mine(me: &PeerId, others: &[PeerId], chunk: u32) -> bool {
    let mine = (score(me, chunk), me);
    others
        .iter()
        .all(|other| (score(other, chunk), other) < mine)
}

/// Whether `me` scores second for `chunk` among `others` and itself.
fn is_second(me: &PeerId, others: &[PeerId], chunk: u32) -> bool {
    let mine = (score(me, chunk), me);
    others
        .iter()
        .filter(|other| (score(other, chunk), *other) > mine)
        .count()
        == 1
}

/// How many chunks no peer holds are looked at for one of this node's own
/// before it looks no further in this round.
const OWN_CHUNK_WALK: usize = 4096;

/// What the download does after a mirror's request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorVerdict {
    /// It is asked again after this back-off.
    Retry(Duration),
    /// It failed this many times in a row: it leaves the download.
    GiveUp {
        /// Failures in a row.
        failures: u32,
    },
}

impl Downloader {
    /// A mirror joins the download under `key` (unique among peers and
    /// mirrors); `mirror` is how its driver numbers it.
    pub fn add_mirror(&mut self, key: LinkId, mirror: u16, now: Instant) {
        self.deadline.take();
        if self.peers.contains_key(&key) || self.mirrors.contains_key(&key) {
            return;
        }
        let count = self.picker.chunk_count();
        self.picker.add_peer_chunks(&HaveBitfield::full(count));
        let burst = self.burst();
        self.mirrors.insert(
            key,
            MirrorSession::new(mirror, count, &self.config.mirrors, burst, now),
        );
        self.fill(now);
    }

    /// The mirror leaves the download (dropped, given up, or the driver
    /// stopped using it): its requests go back, its chunks no longer count.
    pub fn remove_mirror(&mut self, key: LinkId, now: Instant) {
        self.deadline.take();
        let Some(mirror) = self.mirrors.remove(&key) else {
            return;
        };
        self.picker.release_peer(key);
        let count = self.picker.chunk_count();
        self.picker.remove_peer_chunks(&HaveBitfield::full(count));
        self.departed_mirrors
            .entry(key)
            .or_default()
            .add(mirror.session.stats());
        self.fill(now);
    }

    /// This node's id (which chunks no peer holds are its own to ask a
    /// mirror for).
    pub fn set_local_id(&mut self, id: PeerId) {
        self.local_id = Some(id);
    }

    /// Whether `key` is a mirror's.
    pub fn is_mirror(&self, key: LinkId) -> bool {
        self.mirrors.contains_key(&key)
    }

    /// A mirror's session, while it takes part.
    pub fn mirror_session(&self, key: LinkId) -> Option<&PeerDownload> {
        self.mirrors.get(&key).map(|mirror| &mirror.session)
    }

    /// What every mirror that took part delivered, by key (those that left
    /// included).
    pub fn mirror_stats(&self) -> Vec<(LinkId, PeerStats)> {
        let mut all = self.departed_mirrors.clone();
        for (key, mirror) in &self.mirrors {
            all.entry(*key).or_default().add(mirror.session.stats());
        }
        all.into_iter().collect()
    }

    /// A request to a mirror failed without a lie (or the mirror as a
    /// whole did, `chunk` `None`): the chunk goes back, the mirror backs
    /// off, and after [`crate::mirror::MirrorConfig::max_failures`] in a row it leaves.
    pub fn mirror_failed(
        &mut self,
        key: LinkId,
        chunk: Option<u32>,
        _trouble: &MirrorTrouble,
        now: Instant,
    ) -> Option<MirrorVerdict> {
        self.deadline.take();
        let mirror = self.mirrors.get_mut(&key)?;
        if let Some(chunk) = chunk {
            mirror.started.remove(&chunk);
            if mirror.session.finish_request(chunk).is_some() {
                self.picker.release(chunk, key);
            }
        }
        let mirror = self.mirrors.get_mut(&key)?;
        mirror.failures += 1;
        let failures = mirror.failures;
        if failures >= self.config.mirrors.max_failures {
            let chunks: Vec<u32> = mirror.session.requests().map(|(c, _)| c).collect();
            for chunk in chunks {
                self.actions.push_back(Action::Cancel { peer: key, chunk });
            }
            self.remove_mirror(key, now);
            return Some(MirrorVerdict::GiveUp { failures });
        }
        let backoff = MirrorSession::backoff(&self.config.mirrors, failures);
        mirror.session.back_off(now + backoff);
        self.fill(now);
        Some(MirrorVerdict::Retry(backoff))
    }

    /// Whether a mirror may rescue a chunk held up at a slow source: it
    /// is not backing off, it delivered before, and it is
    /// [`DownloadConfig::slow_peer_factor`] times faster than every peer
    /// delivering to us together (rule 4's "peers are behind").
    pub(super) fn mirror_may_help(&self, key: LinkId, now: Instant) -> bool {
        let Some(mirror) = self.mirrors.get(&key) else {
            return false;
        };
        let session = &mirror.session;
        if session.is_backing_off(now) || session.stats().chunks == 0 {
            return false;
        }
        session.rate() >= self.config.slow_peer_factor * self.peers_rate(now)
    }

    /// Rule 6: in endgame, the chunk in flight longest, for an idle
    /// mirror that delivered before, when every owner of that chunk has
    /// held it for two of the mirror's chunk times, within this node's
    /// part of the crowd's share of mirrors
    /// ([`MirrorConfig::crowd_copies`] of the file over the most
    /// downloaders seen at once and this node, everything taken from
    /// mirrors counted).
    fn pick_tail(&mut self, key: LinkId, now: Instant) -> Option<u32> {
        if self.picker.missing_count() > 0 {
            return None;
        }
        let rate = self.mirrors.get(&key)?.session.rate();
        if rate <= 0.0 {
            return None;
        }
        let count = self.picker.chunk_count();
        let part = self.config.mirrors.crowd_copies * f64::from(count) / (self.crowd + 1) as f64;
        let chunk_bytes = u64::from(self.chunk_size.max(1));
        let taken: u64 = self
            .mirror_stats()
            .iter()
            .map(|(_, stats)| stats.chunks + stats.wasted_bytes.div_ceil(chunk_bytes))
            .sum::<u64>()
            + self
                .mirrors
                .values()
                .map(|m| m.session.requests_in_flight() as u64)
                .sum::<u64>();
        if (taken + 1) as f64 > part {
            return None;
        }
        let patience = Duration::from_secs_f64(2.0 * f64::from(self.chunk_size) / rate);
        self.picker
            .pick_duplicate(key, &HaveBitfield::full(count), now, |owners| {
                owners
                    .iter()
                    .all(|owner| now.saturating_duration_since(owner.since) > patience)
            })
    }

    /// What the peers with requests of ours under way deliver together.
    fn peers_rate(&self, now: Instant) -> f64 {
        self.peers
            .values()
            .filter(|session| session.requests_in_flight() > 0)
            .map(|session| session.effective_rate(now, self.chunk_size))
            .sum()
    }

    /// The earliest deadline of any mirror: a request expires, it counts
    /// as silent, or its back-off ends.
    pub(super) fn next_mirror_deadline(&self, now: Instant) -> Option<Instant> {
        let config = &self.config;
        self.mirrors
            .values()
            .filter_map(|mirror| {
                mirror.session.next_deadline(
                    now,
                    self.chunk_size,
                    config.min_request_timeout,
                    config.request_timeout_factor,
                    config.silence_timeout,
                )
            })
            .min()
    }

    /// Timeouts of mirrors' requests: an expired request is cancelled and
    /// its chunk asked again; a mirror silent for `silence_timeout` has
    /// every request cancelled and backs off as after a failure.
    pub(super) fn tick_mirrors(&mut self, now: Instant) {
        let keys: Vec<LinkId> = self.mirrors.keys().copied().collect();
        for key in keys {
            let Some(mirror) = self.mirrors.get_mut(&key) else {
                continue;
            };
            let config = &self.config;
            if mirror.session.is_silent(now, config.silence_timeout) {
                let chunks: Vec<u32> = mirror.session.requests().map(|(c, _)| c).collect();
                for chunk in chunks {
                    mirror.session.finish_request(chunk);
                    mirror.started.remove(&chunk);
                    self.picker.release(chunk, key);
                    self.actions.push_back(Action::Cancel { peer: key, chunk });
                }
                if let Some(MirrorVerdict::GiveUp { .. }) =
                    self.mirror_failed(key, None, &MirrorTrouble::Timeout, now)
                {
                    self.actions.push_back(Action::Disconnect {
                        peer: key,
                        reason: DisconnectReason::Silent,
                    });
                }
                continue;
            }
            let expired = mirror.session.expired_requests(
                now,
                self.chunk_size,
                config.min_request_timeout,
                config.request_timeout_factor,
            );
            for chunk in expired {
                mirror.session.finish_request(chunk);
                mirror.session.record_timeout();
                mirror.started.remove(&chunk);
                self.picker.release(chunk, key);
                self.actions.push_back(Action::Cancel { peer: key, chunk });
            }
        }
    }

    /// Gives mirrors with room the chunks the rules of this module give
    /// them. Runs after the peers' round.
    pub(super) fn fill_mirrors(&mut self, now: Instant) {
        if self.mirrors.is_empty() || self.is_complete() || self.hold || self.rate_wait.is_some() {
            return;
        }
        let mut budget = self.budget();
        if budget.is_spent() {
            return;
        }
        let chunk_size = self.chunk_size;
        let chunk_bytes = u64::from(chunk_size);
        // What the peers deliver now, together.
        let peers_busy = self
            .peers
            .values()
            .any(|session| session.requests_in_flight() > 0);
        let peers_rate = self.peers_rate(now);
        let only_mirrors = u16::try_from(self.mirrors.len()).unwrap_or(u16::MAX);
        let capped = self.max_rate().is_some();
        if let Some(max_rate) = self.max_rate() {
            let burst = self.burst();
            self.rate_limit
                .get_or_insert_with(|| crate::upload::TokenBucket::new(max_rate, burst, now));
        }
        let factor = self.config.slow_peer_factor;
        // The downloaders this node sees: peers that lack chunks.
        let others: Vec<PeerId> = self
            .peers
            .values()
            .filter(|session| !session.has().is_full())
            .map(PeerDownload::peer_id)
            .collect();
        let me = self.local_id;
        // The most downloaders seen at once: the crowd's share of mirrors
        // is split among them (rule 6), and a downloader that finished
        // still had its part.
        self.crowd = self.crowd.max(others.len());
        let keys: Vec<LinkId> = self.mirrors.keys().copied().collect();
        for key in keys {
            loop {
                if budget.is_spent() {
                    return;
                }
                let Some(mirror) = self.mirrors.get(&key) else {
                    break;
                };
                let session = &mirror.session;
                if session.is_backing_off(now)
                    || session.requests_in_flight() >= self.depth_of(key, session)
                {
                    break;
                }
                let untried = session.stats().chunks == 0;
                let probing = untried && session.requests_in_flight() == 0;
                let behind =
                    !peers_busy || probing || (!untried && session.rate() >= factor * peers_rate);
                let own = self.picker.pick_at_availability_if(
                    key,
                    only_mirrors,
                    now,
                    OWN_CHUNK_WALK,
                    |chunk| me.is_none_or(|me| is_mine(&me, &others, chunk)),
                );
                // Another downloader's chunk only when this node has
                // nothing else to do: no own chunk left, nothing from peers,
                // nothing at this mirror; the one it scores second for
                // first (of several such idle nodes, one takes each).
                let idle = !peers_busy && session.requests_in_flight() == 0;
                let chunk = match own {
                    Some(chunk) => Some(chunk),
                    None if idle => self
                        .picker
                        .pick_at_availability_if(key, only_mirrors, now, OWN_CHUNK_WALK, |chunk| {
                            me.is_none_or(|me| is_second(&me, &others, chunk))
                        })
                        .or_else(|| self.picker.pick_at_availability(key, only_mirrors, now)),
                    None => None,
                };
                let chunk = match chunk {
                    Some(chunk) => Some(chunk),
                    None if behind => {
                        self.picker
                            .pick(key, &HaveBitfield::full(self.picker.chunk_count()), now)
                    }
                    None => None,
                };
                let chunk = match chunk {
                    Some(chunk) => Some(chunk),
                    None if session.requests_in_flight() == 0 => self.pick_tail(key, now),
                    None => None,
                };
                let Some(chunk) = chunk else {
                    break;
                };
                let Some(mirror) = self.mirrors.get_mut(&key) else {
                    break;
                };
                if let Some(bucket) = &mut mirror.bucket
                    && let Err(wait) = bucket.try_spend(chunk_bytes, now)
                {
                    // Over its own cap: asked again when the bucket refilled.
                    self.picker.release(chunk, key);
                    mirror.session.back_off(now + wait);
                    break;
                }
                if let (true, Some(bucket)) = (capped, &mut self.rate_limit)
                    && let Err(wait) = bucket.try_spend(chunk_bytes, now)
                {
                    // Over the download's cap: everything waits for it.
                    if let Some(own) = &mut mirror.bucket {
                        own.refund(chunk_bytes);
                    }
                    self.picker.release(chunk, key);
                    self.rate_wait = Some(now + wait);
                    return;
                }
                mirror.session.start_request(chunk, now);
                budget.ask(false);
                self.actions.push_back(Action::Request { peer: key, chunk });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::MirrorConfig;

    const CHUNK: u32 = 1 << 20;

    fn drain(core: &mut Downloader) -> Vec<Action> {
        std::iter::from_fn(|| core.poll_action()).collect()
    }

    fn requests_to(actions: &[Action], to: LinkId) -> Vec<u32> {
        actions
            .iter()
            .filter_map(|action| match action {
                Action::Request { peer, chunk } if *peer == to => Some(*chunk),
                _ => None,
            })
            .collect()
    }

    fn some(count: u32, held: impl IntoIterator<Item = u32>) -> HaveBitfield {
        let mut chunks = HaveBitfield::new(count);
        for chunk in held {
            chunks.set(minimodel_wire::ChunkIndex(chunk), true).unwrap();
        }
        chunks
    }

    const MIRROR: LinkId = LinkId(100);

    #[test]
    fn a_mirror_counts_as_holding_every_chunk() {
        let mut core = Downloader::new(CHUNK, &HaveBitfield::new(8), DownloadConfig::default());
        let t0 = Instant::now();
        core.add_mirror(MIRROR, 0, t0);
        for chunk in 0..8 {
            assert_eq!(core.picker().availability(chunk), 1);
        }
        drain(&mut core);
        core.remove_mirror(MIRROR, t0);
        for chunk in 0..8 {
            assert_eq!(core.picker().availability(chunk), 0);
        }
        core.picker.check_invariant();
    }

    #[test]
    fn alone_a_mirror_is_asked_front_to_back_up_to_its_pipeline() {
        let mut core = Downloader::new(CHUNK, &HaveBitfield::new(16), DownloadConfig::default());
        let t0 = Instant::now();
        core.add_mirror(MIRROR, 0, t0);
        // Nobody else holds anything: every chunk is the mirror's to give,
        // four at a time (its initial pipeline, at most `max_requests`).
        assert_eq!(requests_to(&drain(&mut core), MIRROR), [0, 1, 2, 3]);
        core.on_piece_started(MIRROR, 0, t0 + Duration::from_millis(10));
        core.on_chunk_verified(MIRROR, 0, CHUNK.into(), t0 + Duration::from_millis(20));
        assert_eq!(requests_to(&drain(&mut core), MIRROR), [4]);
        core.picker.check_invariant();
    }

    #[test]
    fn peers_first_and_the_mirror_only_for_what_no_peer_holds() {
        let count = 16;
        let mut core = Downloader::new(CHUNK, &HaveBitfield::new(count), DownloadConfig::default());
        let t0 = Instant::now();
        let peer = LinkId(1);
        core.add_peer(peer, PeerId([1; 32]), some(count, 0..12), t0)
            .unwrap();
        // A peer that lacks chunks is another downloader: picks spread.
        let to_peer = requests_to(&drain(&mut core), peer);
        assert_eq!(to_peer.len(), 4, "{to_peer:?}");
        assert!(to_peer.iter().all(|&chunk| chunk < 12), "{to_peer:?}");
        // The peer delivers: it has a rate, and requests under way.
        core.on_piece_started(peer, to_peer[0], t0 + Duration::from_millis(50));
        core.on_chunk_verified(
            peer,
            to_peer[0],
            CHUNK.into(),
            t0 + Duration::from_millis(100),
        );
        drain(&mut core);
        core.add_mirror(MIRROR, 0, t0 + Duration::from_millis(100));
        // Chunks 12..16 only the mirror holds: they are its.
        // Among other downloaders, one range at a time.
        let t1 = t0 + Duration::from_millis(1100);
        let mut to_mirror = Vec::new();
        for _ in 0..4 {
            let asked = requests_to(&drain(&mut core), MIRROR);
            assert_eq!(asked.len(), 1, "{asked:?}");
            core.on_piece_started(MIRROR, asked[0], t1);
            core.on_chunk_verified(MIRROR, asked[0], CHUNK.into(), t1);
            to_mirror.extend(asked);
        }
        to_mirror.sort_unstable();
        assert_eq!(to_mirror, [12, 13, 14, 15]);
        core.picker.check_invariant();
        // Once it delivered, it is not handed the peer's chunks while the
        // peer keeps up (the mirror is not much faster than it).
        let actions = drain(&mut core);
        assert!(requests_to(&actions, MIRROR).is_empty(), "{actions:?}");
        core.picker.check_invariant();
    }

    #[test]
    fn a_mirror_much_faster_than_the_peers_together_takes_what_they_cannot() {
        let count = 64;
        let mut core = Downloader::new(CHUNK, &HaveBitfield::new(count), DownloadConfig::default());
        let t0 = Instant::now();
        let slow = LinkId(1);
        core.add_peer(slow, PeerId([1; 32]), HaveBitfield::full(count), t0)
            .unwrap();
        assert_eq!(requests_to(&drain(&mut core), slow), [0, 1, 2, 3]);
        // The seeder gives 1 MiB in 4 s.
        let t1 = t0 + Duration::from_secs(4);
        core.on_piece_started(slow, 0, t0 + Duration::from_millis(50));
        core.on_chunk_verified(slow, 0, CHUNK.into(), t1);
        drain(&mut core);
        core.add_mirror(MIRROR, 0, t1);
        // Untried: one request, to learn its rate.
        let probe = requests_to(&drain(&mut core), MIRROR);
        assert_eq!(probe.len(), 1, "{probe:?}");
        let t2 = t1 + Duration::from_millis(20);
        core.on_piece_started(MIRROR, probe[0], t1 + Duration::from_millis(5));
        core.on_chunk_verified(MIRROR, probe[0], CHUNK.into(), t2);
        // 50 MiB/s against 256 KiB/s: the mirror takes what the seeder's
        // pipeline leaves, up to its own.
        let more = requests_to(&drain(&mut core), MIRROR);
        assert_eq!(more.len(), 4, "{more:?}");
        core.picker.check_invariant();
    }

    #[test]
    fn a_failing_mirror_backs_off_doubling_and_is_given_up_after_its_limit() {
        let config = DownloadConfig {
            mirrors: MirrorConfig {
                max_failures: 3,
                ..MirrorConfig::default()
            },
            ..DownloadConfig::default()
        };
        let mut core = Downloader::new(CHUNK, &HaveBitfield::new(8), config);
        let t0 = Instant::now();
        core.add_mirror(MIRROR, 0, t0);
        let asked = requests_to(&drain(&mut core), MIRROR);
        let trouble = MirrorTrouble::Status { status: 503 };
        assert_eq!(
            core.mirror_failed(MIRROR, Some(asked[0]), &trouble, t0),
            Some(MirrorVerdict::Retry(Duration::from_secs(1)))
        );
        // Its chunk is missing again; the mirror waits out its back-off.
        assert_eq!(
            core.picker().state(asked[0]),
            Some(&crate::picker::ChunkState::Missing)
        );
        assert!(requests_to(&drain(&mut core), MIRROR).is_empty());
        assert_eq!(
            core.next_deadline(t0),
            Some(t0 + Duration::from_secs(1)),
            "due when the back-off ends"
        );
        let t1 = t0 + Duration::from_secs(1);
        core.tick(t1);
        assert_eq!(requests_to(&drain(&mut core), MIRROR), [asked[0]]);
        assert_eq!(
            core.mirror_failed(MIRROR, Some(asked[0]), &trouble, t1),
            Some(MirrorVerdict::Retry(Duration::from_secs(2)))
        );
        assert_eq!(
            core.mirror_failed(MIRROR, None, &trouble, t1),
            Some(MirrorVerdict::GiveUp { failures: 3 })
        );
        assert!(!core.is_mirror(MIRROR));
        for chunk in 0..8 {
            assert_eq!(core.picker().availability(chunk), 0);
        }
        core.picker.check_invariant();
    }

    #[test]
    fn a_slow_mirror_is_not_dropped_its_late_requests_go_back() {
        let mut core = Downloader::new(CHUNK, &HaveBitfield::new(8), DownloadConfig::default());
        let t0 = Instant::now();
        core.add_mirror(MIRROR, 0, t0);
        let asked = requests_to(&drain(&mut core), MIRROR);
        // It delivers one chunk in 2 s, then the next ones lag far behind.
        core.on_piece_started(MIRROR, asked[0], t0);
        core.on_chunk_verified(MIRROR, asked[0], CHUNK.into(), t0 + Duration::from_secs(2));
        drain(&mut core);
        // Still delivering (progress), but its oldest request is long past
        // four chunk times (and the 15 s floor).
        for second in 3..=20 {
            core.on_progress(MIRROR, t0 + Duration::from_secs(second));
        }
        core.tick(t0 + Duration::from_secs(20));
        let actions = drain(&mut core);
        assert!(
            actions
                .iter()
                .any(|action| matches!(action, Action::Cancel { peer, .. } if *peer == MIRROR)),
            "{actions:?}"
        );
        assert!(core.is_mirror(MIRROR), "slowness is never blamed");
        assert!(!actions.iter().any(|action| matches!(
            action,
            Action::Disconnect { peer, .. } if *peer == MIRROR
        )));
        core.picker.check_invariant();
    }

    #[test]
    fn a_mirror_over_its_own_cap_waits_for_its_bucket() {
        let config = DownloadConfig {
            mirrors: MirrorConfig {
                max_rate: Some(u64::from(CHUNK)),
                ..MirrorConfig::default()
            },
            ..DownloadConfig::default()
        };
        let mut core = Downloader::new(CHUNK, &HaveBitfield::new(8), config);
        let t0 = Instant::now();
        core.add_mirror(MIRROR, 0, t0);
        // A burst of one chunk (1 MiB, at least), then it is in debt.
        let first = requests_to(&drain(&mut core), MIRROR);
        assert_eq!(first.len(), 2, "{first:?}");
        let due = core.next_deadline(t0).expect("a wait for the bucket");
        assert!(due > t0 && due <= t0 + Duration::from_secs(1), "{due:?}");
        core.tick(due);
        assert_eq!(requests_to(&drain(&mut core), MIRROR).len(), 1);
        core.picker.check_invariant();
    }
}
