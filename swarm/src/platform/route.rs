//! The routing table's default gateway, read from each system's own form
//! of the table: pure functions over bytes or rows, compiled and tested on
//! every system (the system adapters only fetch the table). Each reads at
//! most [`MAX_ROUTES`] routes and never panics on what it is given
//! (`fuzz/fuzz_targets/route_table.rs`, `route_dump.rs`).

use std::net::Ipv4Addr;

/// Most lines of a routing table read.
pub const MAX_ROUTES: usize = 4096;

/// The IPv4 default gateway in Linux's `/proc/net/route` text: of the
/// routes that are up (flag `RTF_UP`), go through a gateway
/// (`RTF_GATEWAY`) and match every destination (destination and mask 0),
/// the one with the lowest metric (the first of equals). Each address is a
/// 32-bit hexadecimal number holding the address's bytes in the host's
/// byte order. Lines that do not read so are skipped; the header line is
/// one of them.
pub fn proc_net_route_gateway(table: &str) -> Option<Ipv4Addr> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    let hex = |field: &str| {
        // Eight hex digits exactly: `from_str_radix` alone would take a
        // leading `+` and read a field the kernel never writes.
        (field.len() == 8 && field.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(field, 16).ok())
            .flatten()
    };
    table
        .lines()
        .take(MAX_ROUTES)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [
                _iface,
                destination,
                gateway,
                flags,
                _refcnt,
                _use,
                metric,
                mask,
                ..,
            ] = fields.as_slice()
            else {
                return None;
            };
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let gateway = hex(gateway)?;
            let usable = hex(destination)? == 0
                && hex(mask)? == 0
                && flags & (RTF_UP | RTF_GATEWAY) == RTF_UP | RTF_GATEWAY
                && gateway != 0;
            let metric: u32 = metric.parse().ok()?;
            usable.then(|| (metric, Ipv4Addr::from(gateway.to_ne_bytes())))
        })
        .enumerate()
        .min_by_key(|(index, (metric, _))| (*metric, *index))
        .map(|(_, (_, gateway))| gateway)
}

/// The IPv4 default gateway in macOS's routing dump (the bytes of
/// `sysctl {CTL_NET, PF_ROUTE, 0, AF_INET, NET_RT_FLAGS, RTF_GATEWAY}`):
/// a sequence of routing messages, each an `rt_msghdr` (92 bytes: length
/// `u16`, version `u8`, type `u8`, index `u16`, flags `i32` at 8, address
/// bits `i32` at 12, metrics) followed by the addresses its bits name, in
/// bit order, each padded to 4 bytes (`sa_len` 0 takes 4). Of the routes
/// that are up with a gateway (`RTF_UP | RTF_GATEWAY`), whose destination
/// is `0.0.0.0` and whose netmask is missing or zero, and whose gateway is
/// an IPv4 address other than `0.0.0.0`: the first not bound to one
/// interface (`RTF_IFSCOPE`: macOS keeps one such default per interface
/// beside the primary), else the first. A message that does not read so
/// is skipped; one whose length runs past the end, or is shorter than its
/// header, ends the reading.
pub fn route_dump_gateway(dump: &[u8]) -> Option<Ipv4Addr> {
    const HEADER: usize = 92;
    const RTM_VERSION: u8 = 5;
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    const RTF_IFSCOPE: u32 = 0x100_0000;
    const RTA_DST: u32 = 0x1;
    const RTA_GATEWAY: u32 = 0x2;
    const RTA_NETMASK: u32 = 0x4;
    const AF_INET: u8 = 2;
    let u16_at = |bytes: &[u8], at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let u32_at = |bytes: &[u8], at: usize| {
        u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
    };
    // The IPv4 address of a `sockaddr_in` (bytes 4..8), zeroes where it
    // is cut short (a netmask's `sa_len` counts only its nonzero bytes).
    let ipv4 = |sockaddr: &[u8]| {
        let mut octets = [0u8; 4];
        for (i, octet) in octets.iter_mut().enumerate() {
            *octet = sockaddr.get(4 + i).copied().unwrap_or(0);
        }
        Ipv4Addr::from(octets)
    };
    let mut rest = dump;
    let mut scoped = None;
    for _ in 0..MAX_ROUTES {
        if rest.len() < HEADER {
            break;
        }
        let len = usize::from(u16_at(rest, 0));
        if len < HEADER || len > rest.len() {
            break;
        }
        let (message, next) = rest.split_at(len);
        rest = next;
        let flags = u32_at(message, 8);
        let bits = u32_at(message, 12);
        if message[2] != RTM_VERSION
            || flags & (RTF_UP | RTF_GATEWAY) != RTF_UP | RTF_GATEWAY
            || bits & (RTA_DST | RTA_GATEWAY) != RTA_DST | RTA_GATEWAY
        {
            continue;
        }
        // The addresses, in bit order, up to the netmask.
        let mut at = HEADER;
        let mut found: [Option<&[u8]>; 3] = [None; 3];
        let mut readable = true;
        for (slot, bit) in [RTA_DST, RTA_GATEWAY, RTA_NETMASK].into_iter().enumerate() {
            if bits & bit == 0 {
                continue;
            }
            let Some(&sa_len) = message.get(at) else {
                readable = false;
                break;
            };
            let sa_len = usize::from(sa_len);
            let padded = if sa_len == 0 {
                4
            } else {
                sa_len.div_ceil(4) * 4
            };
            let Some(sockaddr) = message.get(at..at + sa_len.max(2)) else {
                readable = false;
                break;
            };
            found[slot] = Some(sockaddr);
            at += padded;
        }
        let [Some(destination), Some(gateway), netmask] = found else {
            continue;
        };
        let default = readable
            && destination[1] == AF_INET
            && ipv4(destination).is_unspecified()
            && netmask.is_none_or(|mask| ipv4(mask).is_unspecified())
            && gateway[1] == AF_INET
            && gateway.len() >= 8;
        if !default || ipv4(gateway).is_unspecified() {
            continue;
        }
        if flags & RTF_IFSCOPE == 0 {
            return Some(ipv4(gateway));
        }
        scoped.get_or_insert(ipv4(gateway));
    }
    scoped
}

/// One IPv4 route of Windows' forward table (`GetIpForwardTable2`'s
/// `MIB_IPFORWARD_ROW2`, as far as the choice needs it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardRow {
    /// The destination prefix.
    pub prefix: Ipv4Addr,
    /// Its length in bits.
    pub prefix_len: u8,
    /// The next hop; `0.0.0.0` for an on-link route.
    pub next_hop: Ipv4Addr,
    /// The route's metric (lower is preferred).
    pub metric: u32,
}

/// The default gateway of Windows' forward table: of the routes to
/// `0.0.0.0/0` through a next hop, the one with the lowest metric (the
/// first of equals).
pub fn forward_table_gateway(rows: &[ForwardRow]) -> Option<Ipv4Addr> {
    rows.iter()
        .take(MAX_ROUTES)
        .enumerate()
        .filter(|(_, row)| {
            row.prefix_len == 0 && row.prefix.is_unspecified() && !row.next_hop.is_unspecified()
        })
        .min_by_key(|(index, row)| (row.metric, *index))
        .map(|(_, row)| row.next_hop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A routing message as macOS's dump writes it: flags, and the
    /// addresses (each a `sockaddr` as bytes, padding added here).
    fn message(flags: u32, addresses: &[(u32, Vec<u8>)]) -> Vec<u8> {
        let mut bytes = vec![0u8; 92];
        bytes[2] = 5;
        bytes[3] = 4;
        bytes[8..12].copy_from_slice(&flags.to_le_bytes());
        let bits = addresses.iter().fold(0, |bits, (bit, _)| bits | bit);
        bytes[12..16].copy_from_slice(&bits.to_le_bytes());
        for (_, sockaddr) in addresses {
            bytes.extend_from_slice(sockaddr);
            let padded = if sockaddr.is_empty() {
                4
            } else {
                sockaddr.len().div_ceil(4) * 4
            };
            bytes.resize(bytes.len() + padded - sockaddr.len(), 0);
        }
        let len = bytes.len() as u16;
        bytes[0..2].copy_from_slice(&len.to_le_bytes());
        bytes
    }

    fn sockaddr_in(ip: [u8; 4]) -> Vec<u8> {
        let mut bytes = vec![16, 2, 0, 0];
        bytes.extend_from_slice(&ip);
        bytes.extend_from_slice(&[0; 8]);
        bytes
    }

    /// `sa_len` 0: a netmask of all zeroes, as the kernel writes it for a
    /// default route.
    fn empty_mask() -> Vec<u8> {
        vec![0, 0, 0, 0]
    }

    const UP_GATEWAY: u32 = 0x1 | 0x2;

    #[test]
    fn the_unscoped_default_route_names_the_gateway() {
        let mut dump = Vec::new();
        // A scoped default through another interface, first.
        dump.extend(message(
            UP_GATEWAY | 0x100_0000,
            &[
                (1, sockaddr_in([0, 0, 0, 0])),
                (2, sockaddr_in([10, 0, 0, 1])),
                (4, empty_mask()),
            ],
        ));
        // A route to one network.
        dump.extend(message(
            UP_GATEWAY,
            &[
                (1, sockaddr_in([10, 1, 0, 0])),
                (2, sockaddr_in([10, 0, 0, 9])),
                (4, vec![6, 2, 0, 0, 255, 255]),
            ],
        ));
        dump.extend(message(
            UP_GATEWAY,
            &[
                (1, sockaddr_in([0, 0, 0, 0])),
                (2, sockaddr_in([192, 168, 1, 1])),
                (4, empty_mask()),
            ],
        ));
        assert_eq!(
            route_dump_gateway(&dump),
            Some(Ipv4Addr::new(192, 168, 1, 1))
        );
        // Only the scoped one: it is used.
        let scoped = message(
            UP_GATEWAY | 0x100_0000,
            &[
                (1, sockaddr_in([0, 0, 0, 0])),
                (2, sockaddr_in([10, 0, 0, 1])),
            ],
        );
        assert_eq!(
            route_dump_gateway(&scoped),
            Some(Ipv4Addr::new(10, 0, 0, 1))
        );
    }

    #[test]
    fn no_usable_default_route_in_a_dump_names_none() {
        let default = |flags, gateway: Vec<u8>| {
            message(
                flags,
                &[
                    (1, sockaddr_in([0, 0, 0, 0])),
                    (2, gateway),
                    (4, empty_mask()),
                ],
            )
        };
        // Down; not through a gateway; a link-level gateway (AF_LINK 18);
        // a gateway of 0.0.0.0.
        let link = vec![20, 18, 4, 0, 6, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        for dump in [
            default(0x2, sockaddr_in([192, 168, 1, 1])),
            default(0x1, sockaddr_in([192, 168, 1, 1])),
            default(UP_GATEWAY, link),
            default(UP_GATEWAY, sockaddr_in([0, 0, 0, 0])),
        ] {
            assert_eq!(route_dump_gateway(&dump), None, "{dump:?}");
        }
        // Another message version.
        let mut other = default(UP_GATEWAY, sockaddr_in([192, 168, 1, 1]));
        other[2] = 4;
        assert_eq!(route_dump_gateway(&other), None);
    }

    #[test]
    fn bytes_that_are_not_a_dump_name_none() {
        let good = message(
            UP_GATEWAY,
            &[
                (1, sockaddr_in([0, 0, 0, 0])),
                (2, sockaddr_in([192, 168, 1, 1])),
            ],
        );
        assert!(route_dump_gateway(&good).is_some());
        // Cut anywhere: nothing, never a panic.
        for end in 0..good.len() {
            assert_eq!(route_dump_gateway(&good[..end]), None, "cut at {end}");
        }
        // A length shorter than the header, or past the end.
        for len in [0u16, 91, good.len() as u16 + 1] {
            let mut bad = good.clone();
            bad[0..2].copy_from_slice(&len.to_le_bytes());
            assert_eq!(route_dump_gateway(&bad), None, "length {len}");
        }
        // The gateway's sockaddr claims more bytes than the message has.
        let mut long = good.clone();
        long[92 + 16] = 200;
        assert_eq!(route_dump_gateway(&long), None);
        assert_eq!(route_dump_gateway(&[0xff; 300]), None);
    }

    #[test]
    fn the_forward_table_default_with_the_lowest_metric_is_the_gateway() {
        let row = |prefix: [u8; 4], prefix_len, next_hop: [u8; 4], metric| ForwardRow {
            prefix: prefix.into(),
            prefix_len,
            next_hop: next_hop.into(),
            metric,
        };
        let rows = [
            row([192, 168, 1, 0], 24, [0, 0, 0, 0], 0),
            row([0, 0, 0, 0], 0, [192, 168, 8, 1], 50),
            row([0, 0, 0, 0], 0, [192, 168, 1, 1], 25),
            row([0, 0, 0, 0], 0, [10, 0, 0, 1], 25),
            row([10, 0, 0, 0], 8, [192, 168, 1, 254], 0),
        ];
        assert_eq!(
            forward_table_gateway(&rows),
            Some(Ipv4Addr::new(192, 168, 1, 1))
        );
        // On-link defaults (next hop 0.0.0.0) and non-defaults name none.
        assert_eq!(forward_table_gateway(&[rows[0], rows[4]]), None);
        assert_eq!(
            forward_table_gateway(&[row([0, 0, 0, 0], 0, [0, 0, 0, 0], 1)]),
            None
        );
        assert_eq!(forward_table_gateway(&[]), None);
    }
}
