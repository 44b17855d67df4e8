//! Every policy knob and timer of a node, with its default and why: the
//! driver has no clock of its own. Transport tuning (windows, congestion
//! control) is not here: it belongs to the transport.

use std::time::Duration;

pub use crate::upload::UploadConfig;

/// What a node may do and how much of it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// Most peers connected at once. Default 32.
    pub max_peers: usize,
    /// Upload cap in bytes per second, if any (`--max-upload`).
    pub max_upload: Option<u64>,
    /// Download cap in bytes per second, if any (`--max-download`):
    /// requests are spaced so that requested bytes stay within it, after a
    /// first burst of one chunk (at least 1 MiB). At least
    /// [`MIN_RATE_CAP`] when set, as is `max_upload`.
    pub max_download: Option<u64>,
    /// Chunks uploaded at once, over all peers. Default 8.
    pub upload_slots: usize,
    /// Chunks uploaded at once to one peer that hold upload slots. Default
    /// 2: one being sent, the next one ready, so the peer never waits.
    /// Past them a peer's uploads hold no slot: they wait behind these on
    /// its connection, and start only when no peer below its share asks
    /// (to one peer at most four times as many as may run in all, and
    /// 32 MiB of chunks; `docs/swarm.md`, "Serving").
    pub upload_slots_per_peer: usize,
    /// Uploads at once are as many as can each finish within this long at
    /// the uplink's measured rate (at least 1, at most `upload_slots`): a
    /// slow uplink sends whole chunks one after another, and each can be
    /// passed on soon, instead of sharing itself over eight for half a
    /// minute. One upload at a time until the rate is measured. Default
    /// 750 ms (so 1 upload at a time up to 11 Mbit/s with 1 MiB chunks, 2
    /// up to 22 Mbit/s, 4 at 40 Mbit/s, 8 from about 80 Mbit/s; with 256 KiB
    /// chunks 1 at 2 Mbit/s, 2 at 5, 4 at 10, 8 from 20): on a home
    /// path one upload alone often does not fill the uplink, likely because
    /// its receiver's acknowledgements wait behind that receiver's own
    /// uploads and hold its congestion window small; `None`: always
    /// `upload_slots`.
    pub upload_slot_time: Option<Duration>,
    /// An upload that runs this many times longer than the uplink's
    /// measured rate says it should (that rate shared with the uploads
    /// under way at its start or, if more, with the slots) gives up its
    /// slot, though it goes on: its path is slower than the uplink (a
    /// receiver whose acknowledgements wait behind its own full uplink, a
    /// congestion window still small), and the next upload starts beside
    /// it so that the uplink does not idle. At most twice the slots run at
    /// once (a peer's uploads past `upload_slots_per_peer` not counted),
    /// overdue ones included, and at most `upload_slots` or, on an
    /// endpoint shared with other swarms, the gate's grant. Uploads that
    /// start before the rate is measured are never overdue. Default 1.5;
    /// `None`: an upload holds its slot until it ends.
    pub upload_overdue: Option<f64>,
    /// Requests queued at most, over all peers: what the uplink sends in
    /// this long at its measured rate (`upload_slots` until measured); more
    /// are answered Busy at once, so that the peer asks another source
    /// instead of waiting. Default 10 s; `None`: only the per-peer limit of
    /// `upload`.
    pub upload_queue_time: Option<Duration>,
    /// A chunk this node sent before is sent again while other uploads are
    /// under way only to a peer whose oldest request has waited this long
    /// with nothing started for it. Default 1 s.
    pub resend_after: Duration,
    /// A node that seeds from its start and carries less than this share of
    /// what the swarm delivers (estimated, `docs/swarm.md`, "A sparing
    /// seed") sends a chunk again only when no peer linked to it that
    /// serves others holds it: it spares its uplink, and gives up at most
    /// this share of the swarm's capacity. Default 0.03; `None`: always
    /// send again on request.
    pub sparing_share: Option<f64>,
    /// The serving side's queue limits.
    pub upload: UploadConfig,
    /// The downloading side's pipelines, timeouts and budget.
    pub download: DownloadConfig,
    /// From the first packet of an incoming connection (or the start of a
    /// dial) to the end of the Hello exchange: one deadline for both the
    /// TLS handshake and the Hellos. Default 10 s.
    pub handshake_timeout: Duration,
    /// Incoming handshakes in progress at once; more are refused.
    /// Default 16.
    pub max_handshakes: usize,
    /// Incoming handshakes in progress at once from one prefix (a /24 of
    /// IPv4, a /64 of IPv6). Default 4: one network cannot hold more than a
    /// quarter of the handshake slots, so peers from elsewhere get in at
    /// once.
    pub max_handshakes_per_prefix: usize,
    /// Chunk list answers being sent at once (a chunk list query answered
    /// holds no handshake slot once answered, and its answer may be up to
    /// 18 MB: 500,000 chunks with their lengths); more are refused
    /// TooManyPeers. Default 4.
    pub max_chunk_list_answers: usize,
    /// Chunk list answers being sent at once to one prefix (a /24 of
    /// IPv4, a /64 of IPv6). Default 2.
    pub max_chunk_list_answers_per_prefix: usize,
    /// The slowest rate, in bytes a second, a chunk list answer is given
    /// time for: it may take `goodbye_wait` and its length at this rate
    /// before it is aborted. Default 128 KiB/s (about 1 Mbit/s: 4.3 MB,
    /// the list of 140 GB in 1 MiB chunks, in 35 s).
    pub chunk_list_answer_rate: u64,
    /// Once this many incoming handshakes are in progress, a source whose
    /// address QUIC has not validated yet is sent a Retry first, so that a
    /// spoofed source costs one stateless packet and holds nothing.
    /// Default 4.
    pub retry_above: usize,
    /// Incoming connections (admitted at their Hello) from one prefix at
    /// once; beyond, a Hello is refused with other peers to try, unless an
    /// incoming peer of that prefix has been idle for `evict_idle_after`,
    /// or `evict_for_refused_after` for a peer turned away before (it is
    /// closed for the new one). Default 16: room for peers behind
    /// one NAT and for a download restarted several times while its old
    /// connections time out.
    pub max_links_per_prefix: usize,
    /// When every peer slot is taken, a peer that has neither requested
    /// nor served anything for this long is closed to make room for a new
    /// one. Default 30 s. (10 s let the latecomers of a 40-peer crowd in
    /// sooner, but in a flash crowd of 1000 peers its 99th percentile
    /// finished at three times the bound: `docs/performance.md`.)
    pub evict_idle_after: Duration,
    /// The same for a peer this node turned away for lack of room before
    /// and that dials again: it found no room anywhere it heard of (in a
    /// crowd where every node is full, such a latecomer kept one or two
    /// links until the rest were nearly done), and a link idle this long
    /// gives it its place. Default 5 s; at most `evict_idle_after`. (In
    /// the simulator: 40 mixed 1.534 -> 1.333 T*, the 1000-peer flash
    /// crowd 1.65 -> 1.58 T* with its 99th percentile 54.6 -> 51.0 s:
    /// `docs/performance.md`.)
    pub evict_for_refused_after: Duration,
    /// How often peers are told of serving peers they have not heard of.
    /// Default 250 ms.
    pub peer_exchange_every: Duration,
    /// Addresses learned from one peer's Peers messages are dialed at most
    /// 32 at once and 32 per this interval. Default 2 s.
    pub peer_exchange_min_interval: Duration,
    /// Dials started from peer exchange and not answered yet, at most, over
    /// all peers. Default 8: junk addresses cost little.
    pub max_exchange_dials: usize,
    /// Peers heard on the local network (`--lan`) kept in the address book
    /// at most; more are not learned until one is dropped. Default 32.
    pub max_neighbours: usize,
    /// Refusals of a Hello for lack of room (every peer slot taken, or the
    /// dialer's prefix at `max_links_per_prefix`) that name other peers,
    /// per second (twice as many at once); beyond, a refusal names none.
    /// Default 8.
    pub refusal_peers_per_second: u64,
    /// Refusals that name peers may also take up to this share of the
    /// node's measured upload rate, each counted at [`REFUSAL_BYTES`],
    /// when that allows more than `refusal_peers_per_second` (at most
    /// [`REFUSAL_RATE_CEILING`] times it): a fast seeder in a rush of
    /// arrivals names peers to more of the turned away, a home uplink
    /// spends no more than the fixed rate. Default 0.02 (a 100 Mbit
    /// uplink: 64 a second; 20 Mbit: 35; 5 Mbit and below: 8).
    pub refusal_uplink_share: f64,
    /// A dial to an address learned from peer exchange or a DHT that has
    /// not completed its handshake by then is given up. Default 3 s.
    pub unverified_dial_timeout: Duration,
    /// Between dials to the addresses of one peer, tried in turn until one
    /// handshake completes. Default 250 ms.
    pub dial_stagger: Duration,
    /// The first wait before a peer that failed or dropped is dialed again;
    /// it doubles per failure. Default 1 s.
    pub redial_initial: Duration,
    /// The longest wait between dials to one peer. Default 30 s.
    pub redial_max: Duration,
    /// Peers and addresses kept in the address book, at most. Default 1024.
    pub max_known_peers: usize,
    /// An address learned from peer exchange or a DHT that failed this many
    /// times in a row is not dialed again. Default 5 (about a minute of
    /// back-off): a seeder that stopped is not dialed forever.
    pub max_unverified_failures: u32,
    /// With a DHT: look the swarm up again this often while fewer than
    /// `dht_enough_peers` serving peers are connected. Default 30 s.
    pub dht_lookup_every: Duration,
    /// With a DHT and no serving peer connected: look up again after this.
    /// Default 5 s.
    pub dht_lookup_retry: Duration,
    /// With this many serving peers connected, no more lookups. Default 8.
    pub dht_enough_peers: usize,
    /// A download with nothing verified for this long gives up, saying
    /// which peers it tried and why each failed. Default 5 min;
    /// `Duration::MAX`: never (a library that waits for its peers and
    /// decides itself when to stop a try, `docs/companion.md`).
    pub give_up_after: Duration,
    /// A checkpoint is written at least this often while chunks arrive.
    /// Default 2 s.
    pub checkpoint_every: Duration,
    /// And at the latest after this many new bytes. Default 64 MiB.
    pub checkpoint_bytes: u64,
    /// When the verified prefix is this far ahead of the trailing
    /// whole-file hasher, no new chunk is requested until it catches up.
    /// Default 4 MiB.
    pub trailing_lag: u64,
    /// How long the trailing hasher holds a chunk back, waiting for one to
    /// hash beside it (on a CPU that can; `docs/swarm.md`, "Delivery"):
    /// the next chunk of its pass, stored, with no chunk to verify in hand;
    /// or a chunk to verify, with neither the next chunk of the pass nor a
    /// second one to verify. Default 10 ms:
    /// at a few hundred MB/s the next chunk comes within a few
    /// milliseconds.
    pub trailing_pair_wait: Duration,
    /// While this node's router is first asked for a port mapping, the
    /// Hello of a link it dialed waits for the answer, at most this long
    /// from the node's start: a Hello names where the node listens, and a
    /// peer passes that address on (peer exchange, introductions). Behind
    /// a symmetric NAT the mapping is the only address other peers can
    /// reach, and the first dial's QUIC handshake often ends before the
    /// router answers. A router answers PCP or NAT-PMP in milliseconds; a
    /// network with none costs the start this long, and more (the lab's
    /// `uplinks-8x16-mixed`, where no router answers, finished 2.8 s later
    /// with a 2 s wait; `docs/performance.md`). Default 200 ms; below
    /// `unverified_dial_timeout`, which a held Hello counts against.
    pub mapping_wait: Duration,
    /// A Connect (an introduction) makes this node open its router toward
    /// the peer at once ([`crate::node::Action::Open`]: packets with a
    /// small TTL that leave the router but die before the peer's) and
    /// dial it this much later. Both sides get their Connect at about the
    /// same time; a router that takes what comes in unasked into its own
    /// connection tracking (a Linux box with no input firewall) would
    /// otherwise keep the peer's first packet as its own and map our
    /// reply to another outside port, and the punch would fail. Covers
    /// the skew between the two Connects' arrivals. Default 150 ms.
    pub punch_delay: Duration,
    /// After a relay's Connect that this node asked for, a punch that has
    /// no link up this long later falls back to the relay's channel
    /// (`docs/relay.md`). Default 2 s: a punch that works is up within a
    /// round trip or two after `punch_delay`, or one resent Initial (1 s)
    /// later behind a carrier's NAT; one that gets through later still
    /// takes the relayed link's place.
    pub relay_fallback_after: Duration,
    /// While a peer is linked through a relay only, a new introduction (a
    /// punch) is asked for this often, the wait doubling after each up to
    /// `relay_upgrade_max`. Default 30 s.
    pub relay_upgrade_every: Duration,
    /// The longest wait between two tries to leave a relay. Default 10 min.
    pub relay_upgrade_max: Duration,
    /// An introduction asked of a relay and not answered is asked again
    /// after this, at the soonest. Default 10 s.
    pub relay_ask_again: Duration,
    /// How long the first verdict on who can reach this node
    /// (`crate::reach`, [`crate::NodeReport::Reach`]) waits for the
    /// router's first answer about a port mapping. Default 5 s, as long
    /// as `seed` waits for it before it prints its offer.
    pub reach_wait: Duration,
    /// How often download progress is reported. Default 500 ms.
    pub progress_every: Duration,
    /// A chunk found bad on disk after it was verified more often than
    /// this is the disk's fault: the download stops. Default 3.
    pub max_repairs_per_chunk: u32,
    /// A peer we said nothing to for this long is sent a KeepAlive, so
    /// that neither side ends a quiet session as idle. Default 15 s.
    pub keep_alive_after: Duration,
    /// How long our Goodbye may take to be acknowledged before the
    /// connection is closed anyway. Default 2 s.
    pub goodbye_wait: Duration,
    /// The same when the node's work ends (a stop, a delivered download):
    /// nothing else holds the program then. Default 500 ms.
    pub goodbye_wait_at_end: Duration,
    /// When a download ends unfinished while chunks are being verified,
    /// its last checkpoint waits this long at most for them to be stored,
    /// so that it lists every chunk written (one stored later is in the
    /// journal, and the next run replays it). Default 2 s.
    pub verify_wait_at_end: Duration,
    /// Stopped while a download's final checks run: they may finish for
    /// this long, so that the stop reports the delivered file rather than
    /// an interruption. Default 30 s.
    pub stop_wait: Duration,
    /// A peer with uploads under way whose connection sent less than
    /// `upload_stall_bytes` in this long is closed: it holds upload slots
    /// and reads nothing. Default 20 s.
    pub upload_stall_timeout: Duration,
    /// See `upload_stall_timeout`. Default 64 KiB (3.2 KiB/s at the default
    /// timeout: a slow link that keeps draining is not a stall).
    pub upload_stall_bytes: u64,
    /// How often the connection of a peer with uploads under way is asked
    /// what it sent. A peer whose connection sent less than
    /// `upload_progress_bytes` since the last time makes no progress: its
    /// uploads give their slots back and it gets no new one until it reads
    /// again, so that a frozen peer does not hold a capped uplink until the
    /// stall rule closes it. Default 2 s.
    pub upload_progress_every: Duration,
    /// See `upload_progress_every`. Default 16 KiB (8 KiB/s at the default
    /// period: a QUIC sender whose peer acknowledges nothing sends its
    /// probes and little else; eight uploads at once on a 2 Mbit/s uplink
    /// send 31 KiB/s each).
    pub upload_progress_bytes: u64,
    /// Control messages queued for one peer at most: a peer that does not
    /// read its control stream while this many wait is dropped
    /// ([`crate::report::LinkEnd::NotReading`]). Default 4096.
    pub max_outbox: usize,
    /// How often a serving node without a download reports its uploads.
    /// Default 1 s.
    pub serving_report_every: Duration,
    /// Chunks verified and written at once (blocking jobs). Default 2: the
    /// proofs are checked on two cores while the network receives. The
    /// chunks waiting for a slot count against `max_in_flight_bytes`.
    pub verify_jobs: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            max_peers: 32,
            max_upload: None,
            max_download: None,
            upload_slots: 8,
            upload_slots_per_peer: 2,
            upload_slot_time: Some(Duration::from_millis(750)),
            upload_overdue: Some(1.5),
            upload_queue_time: Some(Duration::from_secs(10)),
            resend_after: Duration::from_secs(1),
            sparing_share: Some(0.03),
            upload: UploadConfig::default(),
            download: DownloadConfig::default(),
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 16,
            max_handshakes_per_prefix: 4,
            max_chunk_list_answers: 4,
            max_chunk_list_answers_per_prefix: 2,
            chunk_list_answer_rate: 128 * 1024,
            retry_above: 4,
            max_links_per_prefix: 16,
            evict_idle_after: Duration::from_secs(30),
            evict_for_refused_after: Duration::from_secs(5),
            peer_exchange_every: Duration::from_millis(250),
            peer_exchange_min_interval: Duration::from_secs(2),
            max_exchange_dials: 8,
            max_neighbours: 32,
            refusal_peers_per_second: 8,
            refusal_uplink_share: 0.02,
            unverified_dial_timeout: Duration::from_secs(3),
            dial_stagger: Duration::from_millis(250),
            redial_initial: Duration::from_secs(1),
            redial_max: Duration::from_secs(30),
            max_known_peers: 1024,
            max_unverified_failures: 5,
            dht_lookup_every: Duration::from_secs(30),
            dht_lookup_retry: Duration::from_secs(5),
            dht_enough_peers: 8,
            give_up_after: Duration::from_secs(300),
            checkpoint_every: Duration::from_secs(2),
            checkpoint_bytes: 64 << 20,
            trailing_lag: 4 << 20,
            trailing_pair_wait: Duration::from_millis(10),
            mapping_wait: Duration::from_millis(200),
            reach_wait: Duration::from_secs(5),
            punch_delay: Duration::from_millis(150),
            relay_fallback_after: Duration::from_secs(2),
            relay_upgrade_every: Duration::from_secs(30),
            relay_upgrade_max: Duration::from_secs(600),
            relay_ask_again: Duration::from_secs(10),
            progress_every: Duration::from_millis(500),
            max_repairs_per_chunk: 3,
            keep_alive_after: Duration::from_secs(15),
            goodbye_wait: Duration::from_secs(2),
            goodbye_wait_at_end: Duration::from_millis(500),
            verify_wait_at_end: Duration::from_secs(2),
            stop_wait: Duration::from_secs(30),
            upload_stall_timeout: Duration::from_secs(20),
            upload_stall_bytes: 64 << 10,
            upload_progress_every: Duration::from_secs(2),
            upload_progress_bytes: 16 << 10,
            max_outbox: 4096,
            serving_report_every: Duration::from_secs(1),
            verify_jobs: 2,
        }
    }
}

/// What a refusal that names peers is counted at against the uplink
/// ([`NodeConfig::refusal_uplink_share`]): 32 entries of 43 bytes (an id,
/// an IPv4 address and port, flags), rounded up. IPv6 entries take 55
/// bytes, about 1,770 a refusal.
pub const REFUSAL_BYTES: u64 = 1400;

/// Refusals that name peers a second never go above this many times
/// [`NodeConfig::refusal_peers_per_second`], whatever the uplink.
pub const REFUSAL_RATE_CEILING: u64 = 8;

/// Refusals that name peers a second: `floor`
/// ([`NodeConfig::refusal_peers_per_second`]), or what `share` of an
/// uplink of `uplink` bytes a second (once measured) carries at
/// [`REFUSAL_BYTES`] each, when more, at most [`REFUSAL_RATE_CEILING`]
/// times `floor`.
pub fn refusal_rate(floor: u64, uplink: Option<f64>, share: f64) -> u64 {
    let carried = uplink.map_or(0.0, |rate| rate * share / REFUSAL_BYTES as f64);
    // A float cast saturates: NaN and negatives give 0.
    (carried as u64).clamp(floor, floor.saturating_mul(REFUSAL_RATE_CEILING))
}

/// The lowest upload or download cap a node takes, bytes per second: a
/// cap of a few bytes a second fetches nothing in any useful time (a
/// 1 MiB chunk every 12 days at 1 B/s) and only looks like a stalled
/// swarm.
pub const MIN_RATE_CAP: u64 = 1024;

/// The limits of a node that may change while it runs
/// ([`crate::NodeCore::set_limits`]), as quinn-proto's `Connection` has
/// setters for its stream limits: its peer budget and its own caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeLimits {
    /// [`NodeConfig::max_peers`].
    pub max_peers: usize,
    /// [`NodeConfig::max_upload`].
    pub max_upload: Option<u64>,
    /// [`NodeConfig::max_download`].
    pub max_download: Option<u64>,
}

impl NodeLimits {
    /// Refuses a cap below [`MIN_RATE_CAP`], with which a node would only
    /// look stalled. (A peer budget of zero is a node that takes no
    /// peer.)
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_upload.is_some_and(|rate| rate < MIN_RATE_CAP)
            || self.max_download.is_some_and(|rate| rate < MIN_RATE_CAP)
        {
            return Err(ConfigError {
                setting: "max_upload and max_download",
                rule: "at least 1 KiB per second when set",
            });
        }
        Ok(())
    }
}

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting} must be {rule}")]
pub struct ConfigError {
    /// Which setting.
    pub setting: &'static str,
    /// What it must be.
    pub rule: &'static str,
}

impl NodeConfig {
    /// The limits that may change while the node runs.
    pub fn limits(&self) -> NodeLimits {
        NodeLimits {
            max_peers: self.max_peers,
            max_upload: self.max_upload,
            max_download: self.max_download,
        }
    }

    /// Checks the settings that would make a node stall or misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.limits().validate()?;
        let rules: [(bool, &'static str, &'static str); 18] = [
            (self.upload_slots > 0, "upload_slots", "at least 1"),
            (
                self.upload_slots_per_peer > 0,
                "upload_slots_per_peer",
                "at least 1",
            ),
            (self.max_handshakes > 0, "max_handshakes", "at least 1"),
            (
                self.chunk_list_answer_rate > 0,
                "chunk_list_answer_rate",
                "at least 1 byte a second",
            ),
            (
                self.max_handshakes_per_prefix > 0,
                "max_handshakes_per_prefix",
                "at least 1",
            ),
            (
                self.max_links_per_prefix > 0,
                "max_links_per_prefix",
                "at least 1",
            ),
            (
                self.redial_initial > Duration::ZERO && self.redial_initial <= self.redial_max,
                "redial_initial",
                "above zero and at most redial_max",
            ),
            (
                self.download.max_timeouts > 0,
                "download.max_timeouts",
                "at least 1",
            ),
            (
                self.download.max_in_flight_bytes > 0,
                "download.max_in_flight_bytes",
                "above zero",
            ),
            (self.verify_jobs > 0, "verify_jobs", "at least 1"),
            (
                (0.0..=0.2).contains(&self.refusal_uplink_share),
                "refusal_uplink_share",
                "between 0 and 0.2",
            ),
            (
                self.sparing_share
                    .is_none_or(|share| (0.0..=0.5).contains(&share)),
                "sparing_share",
                "between 0 and 0.5 when set",
            ),
            (
                self.upload_overdue.is_none_or(|factor| factor >= 1.0),
                "upload_overdue",
                "at least 1 when set",
            ),
            (
                self.keep_alive_after > Duration::ZERO,
                "keep_alive_after",
                "above zero",
            ),
            (
                self.upload_stall_timeout > Duration::ZERO && self.upload_stall_bytes > 0,
                "upload_stall_timeout and upload_stall_bytes",
                "above zero",
            ),
            (
                self.upload_progress_every > Duration::ZERO,
                "upload_progress_every",
                "above zero",
            ),
            (self.max_outbox > 0, "max_outbox", "at least 1"),
            // A held Hello counts against its dial's deadline: a short dial
            // made at the start must keep time for its handshake.
            (
                self.mapping_wait < self.unverified_dial_timeout,
                "mapping_wait",
                "below unverified_dial_timeout",
            ),
        ];
        match rules.iter().find(|(ok, _, _)| !ok) {
            Some(&(_, setting, rule)) => Err(ConfigError { setting, rule }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_rate_follows_the_uplink_between_the_fixed_rate_and_its_ceiling() {
        let share = NodeConfig::default().refusal_uplink_share;
        let mbit = |m: f64| Some(m * 1e6 / 8.0);
        // Not measured yet, or slow: the fixed rate.
        assert_eq!(refusal_rate(8, None, share), 8);
        assert_eq!(refusal_rate(8, mbit(2.0), share), 8);
        assert_eq!(refusal_rate(8, mbit(5.0), share), 8);
        // 20 Mbit: 2 % is 50,000 bytes a second, 35 refusals of 1,400.
        assert_eq!(refusal_rate(8, mbit(20.0), share), 35);
        // 100 Mbit and more: the ceiling.
        assert_eq!(refusal_rate(8, mbit(100.0), share), 64);
        assert_eq!(refusal_rate(8, mbit(10_000.0), share), 64);
        // No share: the fixed rate; a fixed rate of 0 is not raised.
        assert_eq!(refusal_rate(8, mbit(100.0), 0.0), 8);
        assert_eq!(refusal_rate(0, mbit(100.0), share), 0);
    }

    #[test]
    fn defaults_are_valid_and_bad_settings_are_named() {
        assert_eq!(NodeConfig::default().validate(), Ok(()));
        let zero_slots = NodeConfig {
            upload_slots: 0,
            ..NodeConfig::default()
        };
        assert_eq!(zero_slots.validate().unwrap_err().setting, "upload_slots");
        let zero_rate = NodeConfig {
            max_download: Some(0),
            ..NodeConfig::default()
        };
        assert!(zero_rate.validate().is_err());
        let crawl = NodeConfig {
            max_upload: Some(MIN_RATE_CAP - 1),
            ..NodeConfig::default()
        };
        assert_eq!(
            crawl.validate().unwrap_err().setting,
            "max_upload and max_download"
        );
        let slowest = NodeConfig {
            max_upload: Some(MIN_RATE_CAP),
            max_download: Some(MIN_RATE_CAP),
            ..NodeConfig::default()
        };
        assert_eq!(slowest.validate(), Ok(()));
        // No timeouts allowed would drop every peer at its first tick.
        let mut zero_timeouts = NodeConfig::default();
        zero_timeouts.download.max_timeouts = 0;
        assert_eq!(
            zero_timeouts.validate().unwrap_err().setting,
            "download.max_timeouts"
        );
        // A Hello held as long as a short dial lasts would fail it.
        let held = NodeConfig {
            mapping_wait: Duration::from_secs(3),
            ..NodeConfig::default()
        };
        assert_eq!(held.validate().unwrap_err().setting, "mapping_wait");
        // An upload cannot be overdue before it is due, nor at NaN.
        for factor in [0.5, f64::NAN] {
            let early = NodeConfig {
                upload_overdue: Some(factor),
                ..NodeConfig::default()
            };
            assert_eq!(early.validate().unwrap_err().setting, "upload_overdue");
        }
    }
}

/// Tunables of the download state machine.
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadConfig {
    /// Requests in flight per peer before its rate is known. Default 4.
    pub initial_pipeline: usize,
    /// Fewest requests kept in flight per peer. Default 2: the next chunk
    /// is always queued at the peer when the current one ends.
    pub min_pipeline: usize,
    /// Round trips of a peer's measured rate that its pipeline holds
    /// (plus the chunk being sent). Default 3: two to let a peer's rate
    /// grow past what the pipeline lets it show, and one more because a
    /// chunk with a lost packet is whole only about a round trip later
    /// (the loss found and the packet sent again). With 2, a fetch from
    /// four seeders through 50 ms and 1 % loss each way kept two or three
    /// requests at each seeder, and the seeders idled between them.
    pub pipeline_round_trips: f64,
    /// Most requests in flight per peer. Default 64 (64 MiB at 1 MiB
    /// chunks: 1 GiB/s at 60 ms). The peer queues requests, the bytes in
    /// transit are bounded by QUIC flow control.
    pub max_pipeline: usize,
    /// A request never times out sooner than this. Default 15 s.
    pub min_request_timeout: Duration,
    /// A request times out after this many times the time the peer's own
    /// rate predicts for everything queued before it. Default 4.
    pub request_timeout_factor: u32,
    /// A peer with requests in flight that delivers nothing for this long
    /// is dropped. Default 30 s.
    pub silence_timeout: Duration,
    /// Timeouts after which a peer is dropped. Default 3.
    pub max_timeouts: u32,
    /// A chunk whose owner is this many times slower than another peer
    /// with a free slot is requested from that peer too. Default 4.
    pub slow_peer_factor: f64,
    /// After a busy or rate-limited reject, wait this long before asking
    /// that peer again. Default 500 ms.
    pub busy_backoff: Duration,
    /// A request still waiting in its peer's queue this long (its piece
    /// stream not begun) is asked again of a peer that has the chunk and
    /// nothing else to do for us; whichever begins first keeps it, the
    /// other is cancelled. `None`: never. Default 500 ms: a crowd's
    /// requests pile up in the queues of some peers while others that
    /// hold the same chunks idle.
    pub reask_after: Option<Duration>,
    /// Chunk bytes requested and not yet verified and written, at most,
    /// over all peers, not counting up to as much again of requests to
    /// far peers (a smallest round trip of 20 ms or more) whose pieces
    /// have not begun, each peer's at most what its rate brings in two
    /// round trips: a hard bound whatever the number of peers, rounded
    /// down to whole chunks but never below one chunk (a chunk larger than
    /// the budget is requested alone). A peer waits for budget rather
    /// than going over it.
    /// Default 16 MiB: every requested byte is held in memory (by QUIC or
    /// by us) between its arrival and its write; this bounds them whatever
    /// the number of peers and their round trips (twice that from far
    /// peers, whose pieces would all have to begin at once). A far request
    /// not begun holds nothing: it waits a round trip for its piece, and
    /// on a lossy path a lost packet's repair holds the piece about one
    /// more (nearly every 1 MiB piece has one at 1 % loss): 32 MiB covers
    /// 1 Gbit/s at 130 ms without loss, and 500 Mbit/s at 100 ms with 1 %.
    /// Pipelines follow the peers' smallest round trip, so on a short path
    /// far less is outstanding.
    pub max_in_flight_bytes: u64,
    /// Requested bytes per second at most (`--max-download`), if set:
    /// requests wait for their bytes in a token bucket with a burst of one
    /// chunk (or 1 MiB, whichever is more).
    pub max_rate: Option<u64>,
    /// Seed of the picker's random tie-break.
    pub seed: u64,
    /// Break ties over the whole file until the first chunk of this run
    /// is verified, even with no other downloader connected (see
    /// `Downloader::update_spread`). Default false; a node that serves
    /// sets it: in a crowd its first requests, made while it knows only
    /// the seeder, would otherwise ask for the same first chunks as every
    /// other newcomer's. Alone with seeders it costs the chunks requested
    /// before the first one arrives (at most the in-flight budget) out of
    /// order, then the download moves front to back.
    pub spread_from_start: bool,
    /// The mirrors' tunables.
    pub mirrors: MirrorConfig,
    /// In endgame, a chunk in flight is asked of another peer only while
    /// every piece stream of it that has begun comes from a peer this
    /// many times slower than that one (a peer that has delivered nothing
    /// yet counts as slower than any that has). `None`: any chunk in
    /// flight with room for another owner. Default 8: both streams of a
    /// race run until the first copy is verified, so the loser's bytes
    /// are sent for nothing; in the simulator's flash crowd of 1,000 home
    /// peers at 512 MiB the copies wasted fell from 13.68 to 10.86 with
    /// the last peer's time unchanged (4: 12.42; never: 10.65), while a
    /// chunk stuck behind a much slower peer is still raced.
    pub endgame_duplicate_factor: Option<f64>,
}

impl Default for DownloadConfig {
    fn default() -> Self {
        Self {
            initial_pipeline: 4,
            min_pipeline: 2,
            pipeline_round_trips: 3.0,
            max_pipeline: 64,
            min_request_timeout: Duration::from_secs(15),
            request_timeout_factor: 4,
            silence_timeout: Duration::from_secs(30),
            max_timeouts: 3,
            slow_peer_factor: 4.0,
            busy_backoff: Duration::from_millis(500),
            reask_after: Some(Duration::from_millis(500)),
            max_in_flight_bytes: 16 << 20,
            max_rate: None,
            seed: 0x6d69_6e69_6d6f_6465,
            spread_from_start: false,
            mirrors: MirrorConfig::default(),
            endgame_duplicate_factor: Some(8.0),
        }
    }
}

/// Tunables of the mirrors of a download.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorConfig {
    /// Requests in flight at one mirror at most (each is one range of one
    /// chunk; over HTTP/1.1 one connection each). Default 4.
    pub max_requests: usize,
    /// Each mirror's own cap, bytes per second (under the download's),
    /// if set.
    pub max_rate: Option<u64>,
    /// The first back-off after a failure; it doubles with every failure
    /// in a row. Default 1 s.
    pub first_backoff: Duration,
    /// The longest back-off. Default 60 s.
    pub max_backoff: Duration,
    /// The copies of the file a crowd of downloaders takes from mirrors
    /// for its tail, each downloader its part (`crate::download`'s mirror
    /// rule 6); what peers cannot supply at all is taken whatever this
    /// says. Default 1.25.
    pub crowd_copies: f64,
    /// Failures in a row after which a mirror is given up for this run
    /// ([`crate::mirror::MirrorUnusable::GaveUp`]). Default 8 (about 4 minutes of
    /// back-offs).
    pub max_failures: u32,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        Self {
            max_requests: 4,
            max_rate: None,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            crowd_copies: 1.25,
            max_failures: 8,
        }
    }
}
