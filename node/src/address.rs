//! Addresses: which ones may be dialed or passed on, and the network
//! prefix that connection limits count by.
//!
//! A peer's word about an address is not trusted (`docs/security.md`):
//! peer exchange could point honest nodes at a victim or at local UDP
//! services. An address learned from another peer is used only if it is a
//! unicast address with a port, and only within the scope it can be
//! reached from: a loopback address only between loopback peers, a private
//! one only to peers on the same private network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// How far an address reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Never dialed or passed on: unspecified, multicast, broadcast,
    /// link-local, documentation, port 0.
    Unusable,
    /// This host only (127/8, ::1).
    Loopback,
    /// A private network: 10/8, 172.16/12, 192.168/16, 100.64/10 (shared,
    /// carrier NAT), fc00::/7 (unique local). The number says which block,
    /// so that two addresses are "on the same private network" when they
    /// are in the same block.
    Private(u8),
    /// Anywhere.
    Global,
}

/// This node's own LAN addresses among `addrs` (a listener's addresses;
/// for a node that does not listen, its interfaces' with port 0, to tell
/// which LAN addresses it is told of are inside its networks): those that
/// pass [`minimodel_wire::is_lan_addr`], judged with a port as a LAN
/// address is, at most [`minimodel_wire::MAX_LAN_ADDRS`].
pub fn own_lan(addrs: impl IntoIterator<Item = SocketAddr>) -> Vec<SocketAddr> {
    addrs
        .into_iter()
        .filter(|addr| minimodel_wire::is_lan_addr(SocketAddr::new(addr.ip(), addr.port().max(1))))
        .take(minimodel_wire::MAX_LAN_ADDRS)
        .collect()
}

/// Whether `addr` is a LAN address inside the /24 (IPv4) or /64 (IPv6) of
/// one of `own` (our own LAN addresses, [`own_lan`]): the only neighbours
/// heard on the local network that are dialed (`docs/security.md`, "Local
/// discovery").
pub fn within_lan(own: &[SocketAddr], addr: SocketAddr) -> bool {
    minimodel_wire::is_lan_addr(addr)
        && (own.iter()).any(|own| Prefix::of(own.ip()) == Prefix::of(addr.ip()))
}

/// The scope of `addr` (see [`Scope`]).
pub fn scope(addr: SocketAddr) -> Scope {
    if addr.port() == 0 {
        return Scope::Unusable;
    }
    match canonical(addr.ip()) {
        IpAddr::V4(ip) => scope_v4(ip),
        IpAddr::V6(ip) => scope_v6(ip),
    }
}

fn scope_v4(ip: Ipv4Addr) -> Scope {
    let [a, b, _, _] = ip.octets();
    if ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_link_local()
        || ip.is_documentation()
        || a == 0
        || a >= 240
    {
        return Scope::Unusable;
    }
    if ip.is_loopback() {
        return Scope::Loopback;
    }
    match (a, b) {
        (10, _) => Scope::Private(1),
        (172, 16..=31) => Scope::Private(2),
        (192, 168) => Scope::Private(3),
        (100, 64..=127) => Scope::Private(4),
        _ => Scope::Global,
    }
}

fn scope_v6(ip: Ipv6Addr) -> Scope {
    let first = ip.segments()[0];
    if ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0x0db8
    {
        return Scope::Unusable;
    }
    if ip.is_loopback() {
        return Scope::Loopback;
    }
    if (first & 0xfe00) == 0xfc00 {
        return Scope::Private(6);
    }
    Scope::Global
}

/// An IPv4 address written as IPv6 (`::ffff:a.b.c.d`) is the IPv4 one.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Whether a node whose own address (as a peer sees it) is `seen_from`
/// may dial or be told of `addr`: unusable addresses never; loopback only
/// from loopback; a private address only from the same private block;
/// global addresses from anywhere.
pub fn reachable_from(addr: SocketAddr, seen_from: IpAddr) -> bool {
    let from = scope(SocketAddr::new(seen_from, 1));
    match scope(addr) {
        Scope::Unusable => false,
        Scope::Loopback => from == Scope::Loopback,
        Scope::Private(block) => from == Scope::Private(block) || from == Scope::Loopback,
        Scope::Global => true,
    }
}

/// The network a limit counts by: a prefix of an address. [`Prefix::of`]
/// is the /24 of an IPv4 address and the /64 of an IPv6 one (one host or
/// one site usually has a whole /64, so limits per exact address would
/// not limit it at all); [`Prefix::site`] the /24 or the /56 a home is
/// usually given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    ip: IpAddr,
    bits: u8,
}

impl Prefix {
    /// The /24 or /64 of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        Self::within(ip, 24, 64)
    }

    /// The /24 or /56 of `ip`: one home or one host, for limits that keep
    /// one of them to its share (a relay's).
    pub fn site(ip: IpAddr) -> Self {
        Self::within(ip, 24, 56)
    }

    /// The first `v4_bits` of an IPv4 `ip`, or `v6_bits` of an IPv6 one.
    pub fn within(ip: IpAddr, v4_bits: u8, v6_bits: u8) -> Self {
        match canonical(ip) {
            IpAddr::V4(v4) => {
                let bits = v4_bits.min(32);
                let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
                Prefix {
                    ip: IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask)),
                    bits,
                }
            }
            IpAddr::V6(v6) => {
                let bits = v6_bits.min(128);
                let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
                Prefix {
                    ip: IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)),
                    bits,
                }
            }
        }
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ip, self.bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_neighbour_is_dialed_only_inside_the_24_or_64_of_one_of_our_lan_addresses() {
        let own = [a("192.168.1.5:0"), a("[fd00::5]:4433")];
        assert!(within_lan(&own, a("192.168.1.77:4433")));
        assert!(within_lan(&own, a("[fd00::9]:4433")));
        // Another /24 of the same private range, a public address, port 0,
        // loopback: not a neighbour's.
        assert!(!within_lan(&own, a("192.168.2.77:4433")));
        assert!(!within_lan(&own, a("203.0.113.9:4433")));
        assert!(!within_lan(&own, a("192.168.1.77:0")));
        assert!(!within_lan(&own, a("127.0.0.1:4433")));
        assert!(!within_lan(&[], a("192.168.1.77:4433")));
    }

    #[test]
    fn our_lan_is_the_lan_addresses_we_have_with_or_without_a_port_at_most_four() {
        let listener = [
            "127.0.0.1:4433",
            "192.168.1.5:4433",
            "203.0.113.7:4433",
            "[fd00::5]:4433",
        ];
        assert_eq!(
            own_lan(listener.map(a)),
            [a("192.168.1.5:4433"), a("[fd00::5]:4433")]
        );
        // A node that does not listen: its interfaces, port 0, kept so.
        let interfaces = ["10.0.0.2:0", "203.0.113.7:0", "172.16.0.1:0"];
        assert_eq!(
            own_lan(interfaces.map(a)),
            [a("10.0.0.2:0"), a("172.16.0.1:0")]
        );
        let many = (1..=6).map(|host| a(&format!("10.0.{host}.1:0")));
        assert_eq!(own_lan(many).len(), minimodel_wire::MAX_LAN_ADDRS);
    }

    #[test]
    fn special_ranges_are_unusable() {
        for text in [
            "0.0.0.0:1",
            "224.0.0.1:5",
            "255.255.255.255:5",
            "169.254.1.1:5",
            "192.0.2.1:5",
            "10.0.0.1:0",
            "[::]:5",
            "[ff02::1]:5",
            "[fe80::1]:5",
            "[2001:db8::1]:5",
            "240.0.0.1:5",
        ] {
            assert_eq!(scope(a(text)), Scope::Unusable, "{text}");
        }
        assert_eq!(scope(a("127.0.0.5:9")), Scope::Loopback);
        assert_eq!(scope(a("[::1]:9")), Scope::Loopback);
        assert_eq!(scope(a("[::ffff:127.0.0.1]:9")), Scope::Loopback);
        assert_eq!(scope(a("10.1.2.3:9")), Scope::Private(1));
        assert_eq!(scope(a("172.20.0.1:9")), Scope::Private(2));
        assert_eq!(scope(a("172.32.0.1:9")), Scope::Global);
        assert_eq!(scope(a("192.168.1.1:9")), Scope::Private(3));
        assert_eq!(scope(a("[fd00::2]:9")), Scope::Private(6));
        assert_eq!(scope(a("8.8.8.8:9")), Scope::Global);
        assert_eq!(scope(a("[2606:4700::1]:9")), Scope::Global);
    }

    #[test]
    fn addresses_are_passed_on_only_within_their_scope() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let lan: IpAddr = "10.0.0.7".parse().unwrap();
        let other_lan: IpAddr = "192.168.0.7".parse().unwrap();
        let internet: IpAddr = "93.184.216.34".parse().unwrap();
        assert!(reachable_from(a("127.0.0.1:4433"), loopback));
        assert!(!reachable_from(a("127.0.0.1:4433"), lan));
        assert!(!reachable_from(a("127.0.0.1:4433"), internet));
        assert!(reachable_from(a("10.0.0.2:4433"), lan));
        assert!(!reachable_from(a("10.0.0.2:4433"), other_lan));
        assert!(!reachable_from(a("10.0.0.2:4433"), internet));
        assert!(reachable_from(a("10.0.0.2:4433"), loopback));
        assert!(reachable_from(a("8.8.8.8:4433"), lan));
        assert!(!reachable_from(a("224.0.0.1:4433"), loopback));
    }

    #[test]
    fn limits_count_by_slash_24_and_slash_64() {
        let p = |text: &str| Prefix::of(text.parse().unwrap());
        assert_eq!(p("10.1.2.3"), p("10.1.2.200"));
        assert_ne!(p("10.1.2.3"), p("10.1.3.3"));
        assert_eq!(p("::ffff:10.1.2.3"), p("10.1.2.9"));
        assert_eq!(p("2001:db8:1:2::1"), p("2001:db8:1:2:ffff::9"));
        assert_ne!(p("2001:db8:1:2::1"), p("2001:db8:1:3::1"));
        assert_eq!(p("10.1.2.3").to_string(), "10.1.2.0/24");
        // A site: one home's /56, whichever /64 of it.
        let site = |text: &str| Prefix::site(text.parse().unwrap());
        assert_eq!(site("2001:db8:1:200::1"), site("2001:db8:1:2ff:ffff::9"));
        assert_ne!(site("2001:db8:1:200::1"), site("2001:db8:1:300::1"));
        assert_eq!(site("::ffff:10.1.2.3"), site("10.1.2.9"));
        assert_eq!(site("2001:db8:1:2ab::1").to_string(), "2001:db8:1:200::/56");
        assert_eq!(p("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
    }
}
