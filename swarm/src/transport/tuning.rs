//! Transport tuning: flow-control windows, stream limits, MTU, ACK
//! frequency, UDP socket buffers, timers and congestion control.
//!
//! [`TransportTuning::default`] is tuned for bulk transfer (chunks of a model
//! file) and [`TransportTuning::quinn_defaults`] reproduces quinn's own
//! defaults for comparison. `docs/transport.md` explains every value with the
//! measurement behind it; the field docs below say the default and why.

use std::sync::Arc;
use std::time::Duration;

use quinn::congestion::{BbrConfig, CubicConfig, NewRenoConfig};
use quinn::{AckFrequencyConfig, IdleTimeout, MtuDiscoveryConfig, VarInt};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// The largest value a QUIC variable-length integer holds (2^62 - 1).
const VARINT_MAX: u64 = (1 << 62) - 1;

/// The smallest UDP payload every QUIC path must carry (RFC 9000 §14).
pub const QUIC_MIN_MTU: u16 = 1200;

/// The largest UDP payload over IPv6 (65535 minus the 8-byte UDP header).
pub const MAX_UDP_PAYLOAD: u16 = 65527;

/// Which congestion controller paces the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CongestionControl {
    /// Delay-based ([`super::yielding`]): keeps the queue this node's
    /// uploads cause at its uplink near 50 ms, so that the acknowledgements
    /// of its downloads do not wait behind them, and takes a loss while the
    /// queue is short for noise of the path. The default.
    Delay,
    /// CUBIC (RFC 9438), quinn's default.
    Cubic,
    /// NewReno (RFC 9002 §7).
    NewReno,
    /// BBR (quinn's experimental BBRv1).
    Bbr,
}

impl CongestionControl {
    /// Its name on the command line (`--congestion`) and in reports.
    pub fn name(self) -> &'static str {
        match self {
            CongestionControl::Delay => "delay",
            CongestionControl::Cubic => "cubic",
            CongestionControl::NewReno => "new-reno",
            CongestionControl::Bbr => "bbr",
        }
    }

    /// The controller pacing what `connection` sends, read from the
    /// connection itself; `None` for one this crate does not make.
    pub fn in_use(connection: &quinn::Connection) -> Option<CongestionControl> {
        use quinn::congestion::{Bbr, Cubic, NewReno};
        let controller = connection.congestion_state().into_any();
        let controller = match controller.downcast::<super::yielding::YieldingController>() {
            Ok(_) => return Some(CongestionControl::Delay),
            Err(other) => other,
        };
        let controller = match controller.downcast::<Cubic>() {
            Ok(_) => return Some(CongestionControl::Cubic),
            Err(other) => other,
        };
        let controller = match controller.downcast::<NewReno>() {
            Ok(_) => return Some(CongestionControl::NewReno),
            Err(other) => other,
        };
        controller
            .downcast::<Bbr>()
            .ok()
            .map(|_| CongestionControl::Bbr)
    }
}

/// How often the peer should acknowledge (QUIC ACK frequency extension,
/// draft-ietf-quic-ack-frequency). Fewer ACKs cost the sender less CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckFrequency {
    /// Ack-eliciting packets the peer may receive before it must ACK.
    pub ack_eliciting_threshold: u32,
    /// The longest the peer may hold back an ACK (clamped by quinn to at
    /// most max(RTT, 25 ms)).
    pub max_ack_delay: Duration,
    /// Out-of-order packets that trigger an immediate ACK (quinn recommends
    /// the loss `packet_threshold` minus one: 2).
    pub reordering_threshold: u32,
}

/// Every knob of the QUIC transport. See the module docs and
/// `docs/transport.md`. Check a hand-made value with
/// [`TransportTuning::validate`]; `bind_endpoint` and `connect` do.
#[derive(Debug, Clone, PartialEq)]
pub struct TransportTuning {
    /// Bytes the peer may send on one stream beyond what we have read.
    /// Default 12 MiB: one stream alone can then fill the connection window,
    /// so a single large piece is never slower than many small ones; it
    /// costs no extra memory because the connection window caps the sum.
    pub stream_receive_window: u64,
    /// Bytes the peer may send on the whole connection beyond what we have
    /// read. Default 12 MiB: the bandwidth-delay product of 1 GiB/s at 10 ms
    /// RTT is 10.24 MiB, and quinn grants new credit once an eighth of the
    /// window is consumed, so 10.24 / (7/8) = 11.7 MiB, rounded up. It is
    /// also the most a peer can make us buffer, so it bounds memory per
    /// connection (quinn's default is unlimited).
    pub connection_receive_window: u64,
    /// Bytes we buffer for sending on a connection, written but not yet
    /// acknowledged. Default 32 MiB: anything smaller caps the upload rate
    /// at send_window / RTT, and on a path that loses packets a stream's
    /// bytes are freed only from its front, so those behind a lost packet
    /// stay until its repair is acknowledged, two or three round trips
    /// (12 MiB held 100 ms with 1 % loss to about 40 MB/s). The uploads
    /// under way bound what is buffered (the node core's upload slots).
    pub send_window: u64,
    /// Unidirectional streams the peer may have open at once. Default 74,
    /// the least that covers the longest request pipeline (64 pieces, one
    /// stream each; 74 - 74/8 = 65): quinn grants more only once an eighth
    /// is used, so a full pipeline never waits for stream credit. No more
    /// than that: quinn keeps the receive state of every stream the peer
    /// may open and reuses it, and each keeps its reassembly queue at the
    /// largest size it ever reached, for the life of the connection (one
    /// entry per STREAM frame: 15 times as many at 1452 bytes as at 21800).
    /// 128 put a four-seeder fetch over 1452-byte paths at 42 to 44 MiB,
    /// 74 at 39 to 40 MiB (see `docs/transport.md` 4.6); quinn's default is
    /// 100.
    pub max_concurrent_uni_streams: u32,
    /// Bidirectional streams the peer may have open at once. Default 16:
    /// the piece protocol uses one control stream; a few spare.
    pub max_concurrent_bidi_streams: u32,
    /// First UDP payload size on every path. Default 1200, the QUIC minimum
    /// every path carries; MTU discovery then climbs within a few round
    /// trips. Keep it low: before a path is validated the listener may send
    /// only 3x what it received (a 1200-byte client Initial), and quinn
    /// will not send a datagram smaller than the current MTU, so an initial
    /// MTU above 3600 stalls the handshake for several timeouts.
    pub initial_mtu: u16,
    /// Highest payload MTU discovery probes on a non-loopback path. Default
    /// 1452: Ethernet's 1500 minus IPv6 and UDP headers (quinn's value).
    pub mtu_discovery_upper_bound: u16,
    /// Highest payload MTU discovery probes when the peer is on a loopback
    /// address (whose link MTU is 64 KiB). Default 21800: three datagrams
    /// fill one GSO system call (65400 of its 65507 bytes), so a gigabyte
    /// is a third as many packets as at 6500 (one header, one AEAD call,
    /// one ACK range, one STREAM frame each) in as many calls. A 4 GiB
    /// fetch from one seeder took 15 % less CPU at both ends than with
    /// 6500; 32000 (two a call) the same within noise; 65000 (one a call,
    /// no GSO) more system time and a wider spread. Also the endpoint's
    /// `max_udp_payload_size` when it may have loopback peers. See
    /// `docs/transport.md` 4.2 and 4.7.
    pub loopback_mtu_discovery_upper_bound: u16,
    /// ACK frequency we ask the peer for; `None` keeps RFC 9000 behaviour
    /// (an ACK for every second packet). Default: every 16 packets or 10 ms,
    /// reordering threshold 2: the sender handles about an eighth as many
    /// ACKs; the gain on loopback is within noise, kept for slower CPUs.
    pub ack_frequency: Option<AckFrequency>,
    /// `SO_RCVBUF` of the UDP socket in bytes; `None` keeps the system
    /// default (208 KiB here). The kernel caps it at `net.core.rmem_max`.
    /// Default 1 MiB: a millisecond of slack at 1 GiB/s while the process
    /// is not scheduled. Larger buffers were at most a little faster on
    /// loopback (within noise) but add queueing delay and raise the
    /// receiver's peak RSS (4 MiB instead of 1 MiB: +6 to +11 MiB).
    pub udp_receive_buffer: Option<usize>,
    /// `SO_SNDBUF` of the UDP socket in bytes; `None` keeps the system
    /// default. The kernel caps it at `net.core.wmem_max`. Default 1 MiB,
    /// room for 16 full GSO batches (64 KiB each).
    pub udp_send_buffer: Option<usize>,
    /// Send a PING after this much silence, so a connection waiting for
    /// chunks does not hit the idle timeout. Default 3 s: five PINGs per
    /// idle timeout, so only a peer that stopped answering reaches it.
    pub keep_alive_interval: Option<Duration>,
    /// Close a connection after this much silence from the peer. Default
    /// 15 s: with keep-alives only a dead peer reaches it, and a dead
    /// peer's connection (a killed download, say) should free its slot and
    /// its share of the per-address limit soon enough for the restarted
    /// download to get in.
    pub idle_timeout: Duration,
    /// Give up a handshake (dialing or accepting) after this long. Default
    /// 10 s: a loopback handshake takes under a millisecond, a far peer a
    /// few round trips; a peer that does not answer is tried later.
    pub handshake_timeout: Duration,
    /// The congestion controller. Default delay-based
    /// ([`CongestionControl::Delay`]): CUBIC fills a home uplink's queue
    /// and the acknowledgements of the node's downloads wait behind it
    /// (see `docs/transport.md`). quinn's defaults keep CUBIC.
    pub congestion_control: CongestionControl,
    /// Let the kernel split one large send into MTU-sized datagrams (UDP
    /// GSO), as many per system call as fit in 64 KiB (the vendored quinn,
    /// `docs/transport.md` 4.7). Default on (quinn's default); off halved
    /// loopback throughput.
    pub segmentation_offload: bool,
    /// When an endpoint closes, how long its CONNECTION_CLOSE packets are
    /// given at most to leave before the program goes on (it goes on as
    /// soon as they left, `transport::Closing`). Default 100 ms: never the
    /// whole draining period (three probe timeouts, most of a second
    /// behind a full queue), which only answers stray packets and would
    /// hold up a finished command.
    pub close_flush: Duration,
}

impl Default for TransportTuning {
    fn default() -> Self {
        TransportTuning {
            stream_receive_window: 12 * MIB,
            connection_receive_window: 12 * MIB,
            send_window: 32 * MIB,
            max_concurrent_uni_streams: 74,
            max_concurrent_bidi_streams: 16,
            initial_mtu: QUIC_MIN_MTU,
            mtu_discovery_upper_bound: 1452,
            loopback_mtu_discovery_upper_bound: 21800,
            ack_frequency: Some(AckFrequency {
                ack_eliciting_threshold: 16,
                max_ack_delay: Duration::from_millis(10),
                reordering_threshold: 2,
            }),
            udp_receive_buffer: Some(MIB as usize),
            udp_send_buffer: Some(MIB as usize),
            keep_alive_interval: Some(Duration::from_secs(3)),
            idle_timeout: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(10),
            congestion_control: CongestionControl::Delay,
            segmentation_offload: true,
            close_flush: Duration::from_millis(100),
        }
    }
}

/// A tuning value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TuningError {
    /// A window is zero or larger than a QUIC varint holds.
    #[error("{field} is {value}; it must be between 1 and 2^62 - 1")]
    Window {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// An MTU is outside 1200..=65527 or an upper bound is below the
    /// initial MTU.
    #[error(
        "{field} is {value}; MTUs lie between {QUIC_MIN_MTU} and {MAX_UDP_PAYLOAD} \
         and the discovery upper bound is at least the initial MTU"
    )]
    Mtu {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u16,
    },
    /// A timer is zero, too large, or the keep-alive is not shorter than
    /// the idle timeout.
    #[error("{field} is {value:?}: {why}")]
    Timer {
        /// The field.
        field: &'static str,
        /// Its value.
        value: Duration,
        /// The rule it breaks.
        why: &'static str,
    },
    /// A UDP socket buffer of zero bytes.
    #[error("{field} is 0; use None for the system default")]
    SocketBuffer {
        /// The field.
        field: &'static str,
    },
}

impl TransportTuning {
    /// quinn 0.11's own defaults, with the system's socket buffers: the
    /// baseline the tuned values are measured against.
    pub fn quinn_defaults() -> Self {
        // quinn: 100 ms RTT x 100 Mbit/s = 1.25 MB stream window, unlimited
        // connection window, send window 8 stream windows.
        let stream_window = 12_500 * 100;
        TransportTuning {
            stream_receive_window: stream_window,
            connection_receive_window: VARINT_MAX,
            send_window: 8 * stream_window,
            max_concurrent_uni_streams: 100,
            max_concurrent_bidi_streams: 100,
            initial_mtu: QUIC_MIN_MTU,
            mtu_discovery_upper_bound: 1452,
            loopback_mtu_discovery_upper_bound: 1452,
            ack_frequency: None,
            udp_receive_buffer: None,
            udp_send_buffer: None,
            keep_alive_interval: None,
            idle_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            congestion_control: CongestionControl::Cubic,
            segmentation_offload: true,
            close_flush: Duration::from_millis(100),
        }
    }

    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), TuningError> {
        for (field, value) in [
            ("stream_receive_window", self.stream_receive_window),
            ("connection_receive_window", self.connection_receive_window),
            ("send_window", self.send_window),
        ] {
            if value == 0 || value > VARINT_MAX {
                return Err(TuningError::Window { field, value });
            }
        }
        if !(QUIC_MIN_MTU..=MAX_UDP_PAYLOAD).contains(&self.initial_mtu) {
            return Err(TuningError::Mtu {
                field: "initial_mtu",
                value: self.initial_mtu,
            });
        }
        for (upper_field, upper) in [
            ("mtu_discovery_upper_bound", self.mtu_discovery_upper_bound),
            (
                "loopback_mtu_discovery_upper_bound",
                self.loopback_mtu_discovery_upper_bound,
            ),
        ] {
            if upper < self.initial_mtu || upper > MAX_UDP_PAYLOAD {
                return Err(TuningError::Mtu {
                    field: upper_field,
                    value: upper,
                });
            }
        }
        // QUIC carries the idle timeout in milliseconds as a varint.
        if self.idle_timeout.is_zero() || self.idle_timeout > Duration::from_secs(24 * 3600) {
            return Err(TuningError::Timer {
                field: "idle_timeout",
                value: self.idle_timeout,
                why: "it must be between 1 ms and 24 h",
            });
        }
        if let Some(interval) = self.keep_alive_interval
            && (interval.is_zero() || interval >= self.idle_timeout)
        {
            return Err(TuningError::Timer {
                field: "keep_alive_interval",
                value: interval,
                why: "it must be non-zero and shorter than idle_timeout",
            });
        }
        if self.handshake_timeout.is_zero() {
            return Err(TuningError::Timer {
                field: "handshake_timeout",
                value: self.handshake_timeout,
                why: "it must be non-zero",
            });
        }
        if let Some(ack) = self.ack_frequency
            && ack.max_ack_delay > Duration::from_secs(1)
        {
            return Err(TuningError::Timer {
                field: "ack_frequency.max_ack_delay",
                value: ack.max_ack_delay,
                why: "it must be at most 1 s",
            });
        }
        for (field, value) in [
            ("udp_receive_buffer", self.udp_receive_buffer),
            ("udp_send_buffer", self.udp_send_buffer),
        ] {
            if value == Some(0) {
                return Err(TuningError::SocketBuffer { field });
            }
        }
        Ok(())
    }

    /// The quinn transport config for a path to a loopback address or not.
    /// Call [`TransportTuning::validate`] first: out-of-range values are
    /// clamped here, not reported.
    pub(crate) fn transport_config(&self, loopback: bool) -> quinn::TransportConfig {
        let varint = |value: u64| VarInt::from_u64(value.min(VARINT_MAX)).unwrap_or(VarInt::MAX);
        let mut config = quinn::TransportConfig::default();
        config
            .stream_receive_window(varint(self.stream_receive_window))
            .receive_window(varint(self.connection_receive_window))
            .send_window(self.send_window)
            .max_concurrent_uni_streams(VarInt::from_u32(self.max_concurrent_uni_streams))
            .max_concurrent_bidi_streams(VarInt::from_u32(self.max_concurrent_bidi_streams))
            .keep_alive_interval(self.keep_alive_interval)
            .max_idle_timeout(IdleTimeout::try_from(self.idle_timeout).ok());
        let upper_bound = if loopback {
            self.loopback_mtu_discovery_upper_bound
        } else {
            self.mtu_discovery_upper_bound
        };
        let mut discovery = MtuDiscoveryConfig::default();
        discovery.upper_bound(upper_bound);
        config
            .initial_mtu(self.initial_mtu)
            .mtu_discovery_config(Some(discovery));
        config.enable_segmentation_offload(self.segmentation_offload);
        config.ack_frequency_config(self.ack_frequency.map(|ack| {
            let mut quinn_ack = AckFrequencyConfig::default();
            quinn_ack
                .ack_eliciting_threshold(VarInt::from_u32(ack.ack_eliciting_threshold))
                .max_ack_delay(Some(ack.max_ack_delay))
                .reordering_threshold(VarInt::from_u32(ack.reordering_threshold));
            quinn_ack
        }));
        match self.congestion_control {
            CongestionControl::Delay => {
                config.congestion_controller_factory(Arc::new(super::yielding::YieldingConfig))
            }
            CongestionControl::Cubic => {
                config.congestion_controller_factory(Arc::new(CubicConfig::default()))
            }
            CongestionControl::NewReno => {
                config.congestion_controller_factory(Arc::new(NewRenoConfig::default()))
            }
            CongestionControl::Bbr => {
                config.congestion_controller_factory(Arc::new(BbrConfig::default()))
            }
        };
        config
    }

    /// The largest UDP payload the endpoint accepts (and advertises), for an
    /// endpoint listening on a loopback address or not.
    pub(crate) fn max_udp_payload(&self, loopback: bool) -> u16 {
        if loopback {
            self.loopback_mtu_discovery_upper_bound
                .max(self.mtu_discovery_upper_bound)
        } else {
            self.mtu_discovery_upper_bound
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default tuning with one change.
    fn with(change: impl FnOnce(&mut TransportTuning)) -> TransportTuning {
        let mut tuning = TransportTuning::default();
        change(&mut tuning);
        tuning
    }

    fn field_of(error: TuningError) -> &'static str {
        match error {
            TuningError::Window { field, .. }
            | TuningError::Mtu { field, .. }
            | TuningError::Timer { field, .. }
            | TuningError::SocketBuffer { field } => field,
        }
    }

    fn refused_field(change: impl FnOnce(&mut TransportTuning)) -> &'static str {
        field_of(with(change).validate().expect_err("must be refused"))
    }

    #[test]
    fn defaults_validate() {
        assert_eq!(TransportTuning::default().validate(), Ok(()));
        assert_eq!(TransportTuning::quinn_defaults().validate(), Ok(()));
    }

    #[test]
    fn windows_cover_1_gib_per_s_at_10_ms() {
        let tuning = TransportTuning::default();
        let bdp = (1u64 << 30) / 100;
        assert!(tuning.connection_receive_window >= bdp);
        assert!(tuning.stream_receive_window >= bdp);
        assert!(tuning.send_window >= bdp);
        // ...without oversizing: the fetch process must stay under 40 MiB.
        assert!(tuning.connection_receive_window <= 16 * MIB);
    }

    #[test]
    fn uni_streams_cover_a_full_pipeline_and_no_more() {
        let limit = TransportTuning::default().max_concurrent_uni_streams as usize;
        let pipeline = minimodel_node::download::DownloadConfig::default().max_pipeline;
        // quinn re-grants streams once an eighth of the limit is used: a
        // pipeline of `pipeline` pieces must fit in what remains before that.
        assert!(
            limit - limit / 8 >= pipeline,
            "{limit} streams for {pipeline}"
        );
        // Every allowed stream keeps receive state for the connection's
        // life: the peak memory of a long download grows with the limit.
        assert!(limit <= 2 * pipeline, "{limit} streams for {pipeline}");
    }

    #[test]
    fn zero_and_huge_windows_are_refused() {
        assert_eq!(
            refused_field(|t| t.stream_receive_window = 0),
            "stream_receive_window"
        );
        assert_eq!(
            refused_field(|t| t.connection_receive_window = 0),
            "connection_receive_window"
        );
        assert_eq!(refused_field(|t| t.send_window = 1 << 62), "send_window");
    }

    #[test]
    fn bad_mtus_are_refused() {
        assert_eq!(refused_field(|t| t.initial_mtu = 1199), "initial_mtu");
        assert_eq!(
            refused_field(|t| t.initial_mtu = MAX_UDP_PAYLOAD + 1),
            "initial_mtu"
        );
        assert_eq!(
            refused_field(|t| t.loopback_mtu_discovery_upper_bound = t.initial_mtu - 1),
            "loopback_mtu_discovery_upper_bound"
        );
        assert_eq!(
            refused_field(|t| t.mtu_discovery_upper_bound = MAX_UDP_PAYLOAD + 1),
            "mtu_discovery_upper_bound"
        );
    }

    #[test]
    fn bad_timers_are_refused() {
        assert_eq!(
            refused_field(|t| t.keep_alive_interval = Some(t.idle_timeout)),
            "keep_alive_interval"
        );
        assert_eq!(
            refused_field(|t| t.keep_alive_interval = Some(Duration::ZERO)),
            "keep_alive_interval"
        );
        assert_eq!(
            refused_field(|t| t.idle_timeout = Duration::ZERO),
            "idle_timeout"
        );
        assert_eq!(
            refused_field(|t| t.idle_timeout = Duration::from_secs(25 * 3600)),
            "idle_timeout"
        );
        assert_eq!(
            refused_field(|t| t.handshake_timeout = Duration::ZERO),
            "handshake_timeout"
        );
        assert_eq!(
            refused_field(|t| {
                t.ack_frequency = Some(AckFrequency {
                    ack_eliciting_threshold: 1,
                    max_ack_delay: Duration::from_secs(2),
                    reordering_threshold: 2,
                })
            }),
            "ack_frequency.max_ack_delay"
        );
    }

    #[test]
    fn zero_socket_buffer_is_refused() {
        assert_eq!(
            refused_field(|t| t.udp_send_buffer = Some(0)),
            "udp_send_buffer"
        );
        assert_eq!(
            refused_field(|t| t.udp_receive_buffer = Some(0)),
            "udp_receive_buffer"
        );
    }

    #[test]
    fn loopback_gets_its_own_mtu() {
        let tuning = TransportTuning::default();
        assert_eq!(tuning.max_udp_payload(false), 1452);
        assert_eq!(
            tuning.max_udp_payload(true),
            tuning.loopback_mtu_discovery_upper_bound
        );
        // Three datagrams at the loopback bound fill a GSO call (64 KiB)
        // and a fourth would not fit.
        let bound = u32::from(tuning.loopback_mtu_discovery_upper_bound);
        assert_eq!(65_507 / bound, 3);
    }
}
