//! The relay protocol's vectors (`fixtures/wire/relay/`, written by
//! `vectors.py` from their fields): each reads to its value and writes
//! back byte for byte; the fuzz target's seeds are the same bytes and
//! decode through its entry point; every message kind has a vector.

mod common;

use common::{fixture_bytes, parse_annotated_hex};
use minimodel_wire::PeerId;
use minimodel_wire::relay::{
    ChannelEnd, ConnectRole, IntroduceRefusal, MappingKind, RegisterRefusal, RelayLimits,
    RelayMessage, relay_datagram,
};

fn sa(text: &str) -> std::net::SocketAddr {
    text.parse().unwrap()
}

fn vectors() -> Vec<(&'static str, RelayMessage)> {
    let peer = PeerId([0x33; 32]);
    vec![
        (
            "register",
            RelayMessage::Register {
                agent: "minimodel/0.1.0".into(),
                addrs: vec![sa("[2a01:4f8::2]:4433"), sa("192.168.1.2:4433")],
                mapping: MappingKind::OnePort,
            },
        ),
        ("introduce", RelayMessage::Introduce { peer }),
        (
            "registered",
            RelayMessage::Registered {
                observed: sa("81.2.69.30:4433"),
                limits: RelayLimits {
                    pair_rate: 2_500_000,
                    pair_bytes_per_hour: 1 << 30,
                    channel_idle_secs: 60,
                },
            },
        ),
        (
            "register_refused",
            RelayMessage::RegisterRefused {
                reason: RegisterRefusal::Full,
            },
        ),
        (
            "register_refused_network",
            RelayMessage::RegisterRefused {
                reason: RegisterRefusal::NetworkFull,
            },
        ),
        (
            "connect",
            RelayMessage::Connect {
                peer,
                addrs: vec![sa("[2a01:4f8:1::2]:4433"), sa("81.2.69.31:61000")],
                channel: 0x0102_0304_0506_0708,
                role: ConnectRole::Open,
            },
        ),
        (
            "introduce_failed",
            RelayMessage::IntroduceFailed {
                peer,
                reason: IntroduceRefusal::NotRegistered,
            },
        ),
        (
            "channel_closed",
            RelayMessage::ChannelClosed {
                channel: 0x0102_0304_0506_0708,
                reason: ChannelEnd::HourUsed,
            },
        ),
    ]
}

fn seed(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus/relay_message")
        .join(format!("seed-{name}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_vector_reads_to_its_value_and_writes_back_byte_for_byte() {
    for (name, expected) in vectors() {
        let bytes = fixture_bytes(&format!("relay/{name}.hex"));
        assert_eq!(
            RelayMessage::decode_exact(&bytes).unwrap_or_else(|e| panic!("{name}: {e}")),
            expected,
            "{name}"
        );
        assert_eq!(
            expected.encode().unwrap(),
            bytes,
            "{name}: encoding differs"
        );
        assert_eq!(seed(name), bytes, "{name}: the fuzz seed is the vector");
        assert_eq!(minimodel_wire::fuzzing::relay_message(&bytes), [expected]);
    }
    let names: Vec<&str> = vectors().iter().map(|(_, m)| m.name()).collect();
    for kind in [
        "Register",
        "Introduce",
        "Registered",
        "RegisterRefused",
        "Connect",
        "IntroduceFailed",
        "ChannelClosed",
    ] {
        assert!(names.contains(&kind), "no vector for {kind}");
    }
}

#[test]
fn the_datagram_vector_is_a_packet_on_its_channel() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/wire/relay/datagram.hex"),
    )
    .unwrap();
    let bytes = parse_annotated_hex(&text);
    assert_eq!(seed("datagram"), bytes);
    let (channel, packet) = relay_datagram(&bytes).unwrap();
    assert_eq!(channel, 0x0102_0304_0506_0708);
    assert_eq!(packet, [0x40, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]);
    assert!(minimodel_wire::fuzzing::relay_message(&bytes).is_empty());
}

mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn addr() -> impl Strategy<Value = std::net::SocketAddr> {
        prop_oneof![
            (1u8..=223, any::<[u8; 3]>(), 1u16..).prop_map(|(a, rest, port)| {
                std::net::SocketAddr::from(([a, rest[0], rest[1], rest[2]], port))
            }),
            (0x2000u16..0x3fff, any::<[u16; 7]>(), 1u16..).prop_map(|(first, rest, port)| {
                let ip = std::net::Ipv6Addr::new(
                    first, rest[0], rest[1], rest[2], rest[3], rest[4], rest[5], rest[6],
                );
                std::net::SocketAddr::new(ip.into(), port)
            }),
        ]
    }

    fn message() -> impl Strategy<Value = RelayMessage> {
        prop_oneof![
            (
                "[ -~]{1,64}",
                proptest::collection::vec(addr(), 0..=4),
                0u8..3
            )
                .prop_map(|(agent, addrs, mapping)| RelayMessage::Register {
                    agent,
                    addrs,
                    mapping: [
                        MappingKind::Unknown,
                        MappingKind::OnePort,
                        MappingKind::PortPerPeer
                    ][mapping as usize],
                }),
            any::<[u8; 32]>().prop_map(|id| RelayMessage::Introduce { peer: PeerId(id) }),
            (addr(), any::<u64>(), any::<u64>(), any::<u32>()).prop_map(
                |(observed, pair_rate, pair_bytes_per_hour, channel_idle_secs)| {
                    RelayMessage::Registered {
                        observed,
                        limits: RelayLimits {
                            pair_rate,
                            pair_bytes_per_hour,
                            channel_idle_secs,
                        },
                    }
                }
            ),
            (
                any::<[u8; 32]>(),
                proptest::collection::vec(addr(), 0..=8),
                any::<u64>(),
                any::<bool>()
            )
                .prop_map(|(id, addrs, channel, dial)| RelayMessage::Connect {
                    peer: PeerId(id),
                    addrs,
                    channel,
                    role: if dial {
                        ConnectRole::Dial
                    } else {
                        ConnectRole::Open
                    },
                }),
        ]
    }

    proptest! {
        #[test]
        fn every_message_round_trips(message in message()) {
            let frame = message.encode().unwrap();
            prop_assert_eq!(RelayMessage::decode_exact(&frame).unwrap(), message);
        }
    }
}
