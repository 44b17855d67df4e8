//! Addresses: which ones a listener advertises, and `HOST:PORT` text.
//!
//! A listener bound to a specific address advertises that address. One
//! bound to an unspecified address (`0.0.0.0`, or `[::]`, which is
//! dual-stack, `docs/transport.md` section 3) advertises the host's usable
//! interface addresses of the families it serves, with the bound port:
//! not loopback, link-local, multicast, broadcast or unspecified, since a
//! peer on another machine cannot reach those. Loopback addresses are
//! advertised only when nothing else exists (a host with no network, or a
//! test). Addresses the publisher names (`--public-addr`, for a NAT or a
//! port forward) always come first.
//!
//! The choice is a pure function over a list of interface addresses
//! ([`advertised_addrs`]), so it is tested without the host;
//! [`interface_ips`] reads the host's list (with `if-addrs`: `getifaddrs`
//! on Unix, `GetAdaptersAddresses` on Windows).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// Most addresses one peer advertises (and one offer carries).
pub const MAX_ADVERTISED: usize = 16;

/// Whether `ip` is an address a peer on another machine may reach us at:
/// not unspecified, loopback, link-local, multicast or broadcast (an
/// IPv4-mapped IPv6 address is judged as the IPv4 address).
pub fn is_usable(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.octets()[0] == 0)
        }
        IpAddr::V6(v6) => {
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || v6.is_unicast_link_local())
        }
    }
}

/// Whether a listener bound to `bound` is reached over `ip`'s family: an
/// IPv4 wildcard serves IPv4 only, the IPv6 wildcard both.
fn serves_family(bound: IpAddr, ip: IpAddr) -> bool {
    match (bound, ip.to_canonical()) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), _) => true,
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

/// The addresses a listener bound to `bound` (its real port, not 0)
/// advertises, given the host's interface addresses and the addresses the
/// publisher named (`public`): `public` first, then `bound` itself when it
/// is a specific address, or, when it is unspecified, every usable
/// interface address of the families it serves with `bound`'s port; the
/// loopback addresses among `interfaces` (or `127.0.0.1`, `::1`) only when
/// that gives nothing. No duplicates, at most [`MAX_ADVERTISED`].
pub fn advertised_addrs(
    bound: SocketAddr,
    interfaces: &[IpAddr],
    public: &[SocketAddr],
) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    let mut push = |addr: SocketAddr| {
        let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        if !out.contains(&addr) && out.len() < MAX_ADVERTISED {
            out.push(addr);
        }
    };
    public.iter().copied().for_each(&mut push);
    let port = bound.port();
    if !bound.ip().is_unspecified() {
        push(bound);
        return out;
    }
    let ours = |ip: &&IpAddr| serves_family(bound.ip(), **ip);
    let usable: Vec<IpAddr> = interfaces
        .iter()
        .filter(ours)
        .filter(|ip| is_usable(**ip))
        .copied()
        .collect();
    if !usable.is_empty() {
        usable
            .into_iter()
            .for_each(|ip| push(SocketAddr::new(ip, port)));
        return out;
    }
    if !public.is_empty() {
        return out;
    }
    let loopback: Vec<IpAddr> = interfaces
        .iter()
        .filter(ours)
        .filter(|ip| ip.to_canonical().is_loopback())
        .copied()
        .collect();
    if loopback.is_empty() {
        push(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port));
        if bound.is_ipv6() {
            push(SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port));
        }
    } else {
        loopback
            .into_iter()
            .for_each(|ip| push(SocketAddr::new(ip, port)));
    }
    out
}

/// The IP addresses of the host's interfaces, in the order the system
/// lists them.
pub fn interface_ips() -> std::io::Result<Vec<IpAddr>> {
    Ok(if_addrs::get_if_addrs()?
        .into_iter()
        .map(|interface| interface.ip())
        .collect())
}

/// [`advertised_addrs`] with the host's interfaces, read only when `bound`
/// is unspecified.
pub fn listener_addrs(
    bound: SocketAddr,
    public: &[SocketAddr],
) -> std::io::Result<Vec<SocketAddr>> {
    let interfaces = if bound.ip().is_unspecified() {
        interface_ips()?
    } else {
        Vec::new()
    };
    Ok(advertised_addrs(bound, &interfaces, public))
}

/// Why `HOST:PORT` text gives no address to use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostPortError {
    /// No `:PORT`, or a port that is not 1 to 65535.
    #[error("'{0}' is not HOST:PORT with a port from 1 to 65535")]
    Port(String),
    /// An IPv6 address without brackets.
    #[error("'{0}': write an IPv6 address in brackets, like [2001:db8::1]:4433")]
    Brackets(String),
    /// The name did not resolve.
    #[error("cannot resolve '{text}': {reason}")]
    Resolve {
        /// The text.
        text: String,
        /// What the resolver said.
        reason: String,
    },
    /// It resolved to no address, or only to unspecified ones.
    #[error("'{0}' has no address to dial")]
    NoAddress(String),
}

/// Every address `text` names: `IP:PORT`, `[IPv6]:PORT`, or `NAME:PORT`
/// resolved now to all its addresses (both families, in the resolver's
/// order, without duplicates). Port 0, unbracketed IPv6 and unspecified
/// addresses are refused.
pub fn resolve_host_port(text: &str) -> Result<Vec<SocketAddr>, HostPortError> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| HostPortError::Port(text.to_owned()))?;
    match port.parse::<u16>() {
        Ok(port) if port != 0 => {}
        _ => return Err(HostPortError::Port(text.to_owned())),
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(HostPortError::Brackets(text.to_owned()));
    }
    let resolved = match text.parse::<SocketAddr>() {
        Ok(addr) => vec![addr],
        Err(_) => text
            .to_socket_addrs()
            .map_err(|error| HostPortError::Resolve {
                text: text.to_owned(),
                reason: error.to_string(),
            })?
            .collect(),
    };
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in resolved {
        let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        if !addr.ip().is_unspecified() && !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err(HostPortError::NoAddress(text.to_owned()));
    }
    Ok(addrs)
}

/// Whether an offered address can be dialed at all: a port, and an
/// address that is not unspecified, multicast, broadcast, in 0.0.0.0/8 or
/// reserved (240.0.0.0/4).
pub fn check_offer_addr(addr: SocketAddr) -> Result<(), String> {
    let ip = addr.ip().to_canonical();
    // 0.0.0.0/8 ("this network"), 240.0.0.0/4 (reserved) and the
    // broadcast address name no peer.
    let broadcast =
        matches!(ip, std::net::IpAddr::V4(v4) if v4.octets()[0] == 0 || v4.octets()[0] >= 240);
    if addr.port() == 0 {
        Err(format!("{addr} has port 0"))
    } else if ip.is_unspecified() || ip.is_multicast() || broadcast {
        Err(format!("{addr} is not a unicast address to dial"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    /// A host with a loopback, a LAN address, a ULA, link-local addresses
    /// and a Docker bridge.
    fn host() -> Vec<IpAddr> {
        [
            "127.0.0.1",
            "10.0.0.2",
            "169.254.7.1",
            "172.17.0.1",
            "::1",
            "fd00::2",
            "fe80::fc:ff:fe00:1",
        ]
        .map(ip)
        .to_vec()
    }

    #[test]
    fn usable_addresses_are_those_another_machine_can_reach() {
        for usable in [
            "10.0.0.2",
            "192.0.2.7",
            "172.17.0.1",
            "fd00::2",
            "2001:db8::1",
            "::ffff:10.0.0.2",
        ] {
            assert!(is_usable(ip(usable)), "{usable}");
        }
        for unusable in [
            "0.0.0.0",
            "127.0.0.1",
            "127.5.5.5",
            "169.254.1.1",
            "224.0.0.1",
            "255.255.255.255",
            "0.1.2.3",
            "::",
            "::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_usable(ip(unusable)), "{unusable}");
        }
    }

    #[test]
    fn an_ipv4_wildcard_advertises_the_ipv4_interfaces() {
        assert_eq!(
            advertised_addrs(addr("0.0.0.0:4433"), &host(), &[]),
            vec![addr("10.0.0.2:4433"), addr("172.17.0.1:4433")]
        );
    }

    #[test]
    fn an_ipv6_wildcard_advertises_both_families() {
        assert_eq!(
            advertised_addrs(addr("[::]:4433"), &host(), &[]),
            vec![
                addr("10.0.0.2:4433"),
                addr("172.17.0.1:4433"),
                addr("[fd00::2]:4433")
            ]
        );
    }

    #[test]
    fn loopback_only_when_nothing_else_exists() {
        let lonely = [ip("127.0.0.1"), ip("::1"), ip("fe80::1")];
        assert_eq!(
            advertised_addrs(addr("0.0.0.0:7"), &lonely, &[]),
            vec![addr("127.0.0.1:7")]
        );
        assert_eq!(
            advertised_addrs(addr("[::]:7"), &lonely, &[]),
            vec![addr("127.0.0.1:7"), addr("[::1]:7")]
        );
        // No interfaces at all (the list could not be read).
        assert_eq!(
            advertised_addrs(addr("0.0.0.0:7"), &[], &[]),
            vec![addr("127.0.0.1:7")]
        );
        // An IPv6-only host and an IPv4 wildcard: still something to say.
        assert_eq!(
            advertised_addrs(addr("0.0.0.0:7"), &[ip("::1"), ip("fd00::2")], &[]),
            vec![addr("127.0.0.1:7")]
        );
    }

    #[test]
    fn public_addresses_come_first_and_replace_loopback() {
        let public = [addr("203.0.113.9:443"), addr("[2001:db8::9]:443")];
        assert_eq!(
            advertised_addrs(addr("0.0.0.0:4433"), &host(), &public),
            vec![
                public[0],
                public[1],
                addr("10.0.0.2:4433"),
                addr("172.17.0.1:4433")
            ]
        );
        let lonely = [ip("127.0.0.1")];
        assert_eq!(
            advertised_addrs(addr("0.0.0.0:4433"), &lonely, &public),
            public.to_vec()
        );
    }

    #[test]
    fn a_specific_address_advertises_itself() {
        assert_eq!(
            advertised_addrs(addr("10.0.0.2:4433"), &host(), &[]),
            vec![addr("10.0.0.2:4433")]
        );
        assert_eq!(
            advertised_addrs(addr("127.0.0.1:9"), &host(), &[addr("203.0.113.9:9")]),
            vec![addr("203.0.113.9:9"), addr("127.0.0.1:9")]
        );
    }

    #[test]
    fn duplicates_and_mapped_addresses_are_folded_and_the_list_is_capped() {
        let interfaces = [ip("10.0.0.2"), ip("::ffff:10.0.0.2"), ip("10.0.0.2")];
        assert_eq!(
            advertised_addrs(addr("[::]:1"), &interfaces, &[addr("10.0.0.2:1")]),
            vec![addr("10.0.0.2:1")]
        );
        let many: Vec<IpAddr> = (1..=40).map(|i| IpAddr::from([10, 1, 0, i])).collect();
        let advertised = advertised_addrs(addr("0.0.0.0:1"), &many, &[addr("203.0.113.9:1")]);
        assert_eq!(advertised.len(), MAX_ADVERTISED);
        assert_eq!(advertised[0], addr("203.0.113.9:1"));
    }

    #[test]
    fn host_port_text_resolves_or_says_why_not() {
        assert_eq!(
            resolve_host_port("10.0.0.2:4433").unwrap(),
            vec![addr("10.0.0.2:4433")]
        );
        assert_eq!(
            resolve_host_port("[::1]:4433").unwrap(),
            vec![addr("[::1]:4433")]
        );
        let localhost = resolve_host_port("localhost:4433").unwrap();
        assert!(localhost.contains(&addr("127.0.0.1:4433")), "{localhost:?}");
        assert!(
            localhost
                .iter()
                .all(|a| a.port() == 4433 && a.ip().is_loopback())
        );
        for (text, expected) in [
            ("10.0.0.2", HostPortError::Port("10.0.0.2".into())),
            ("10.0.0.2:0", HostPortError::Port("10.0.0.2:0".into())),
            (
                "10.0.0.2:70000",
                HostPortError::Port("10.0.0.2:70000".into()),
            ),
            ("::1:4433", HostPortError::Brackets("::1:4433".into())),
            (
                "0.0.0.0:4433",
                HostPortError::NoAddress("0.0.0.0:4433".into()),
            ),
        ] {
            assert_eq!(resolve_host_port(text).unwrap_err(), expected, "{text}");
        }
    }

    #[test]
    fn the_host_lists_its_interfaces() {
        let ips = interface_ips().unwrap();
        assert!(ips.iter().any(|ip| ip.is_loopback()), "{ips:?}");
    }
}
