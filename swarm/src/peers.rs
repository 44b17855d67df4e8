//! Peers to fetch from, each with every address it may be reached at.
//!
//! A peer is named on the command line (`--peer ID@HOST:PORT`, a host name
//! resolving to several addresses), in offers (`--offer FILE`, an offer
//! listing several addresses) and in import requests. The same id given
//! several times with different addresses is one peer with several
//! addresses: [`merge_peers`] folds them into one [`PeerAddrs`] per id.
//! Which address to dial first, and when to try the next, is the node's
//! business.

use std::fmt;
use std::net::SocketAddr;

use minimodel_wire::{PeerAddr, PeerId, PeerIdError};

use crate::addrs::{HostPortError, resolve_host_port};

/// One peer and the addresses it may be reached at, in order of
/// preference (the order they were given in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddrs {
    /// The key the peer must prove.
    pub id: PeerId,
    /// Where it may listen: at least one, no duplicates.
    pub addrs: Vec<SocketAddr>,
}

impl PeerAddrs {
    /// One [`PeerAddr`] per address of each peer, peers in order: for a
    /// driver that dials one address at a time.
    pub fn flatten(peers: &[PeerAddrs]) -> Vec<PeerAddr> {
        peers
            .iter()
            .flat_map(|peer| {
                peer.addrs
                    .iter()
                    .map(move |&addr| PeerAddr { id: peer.id, addr })
            })
            .collect()
    }
}

impl From<PeerAddr> for PeerAddrs {
    fn from(peer: PeerAddr) -> Self {
        PeerAddrs {
            id: peer.id,
            addrs: vec![peer.addr],
        }
    }
}

impl fmt::Display for PeerAddrs {
    /// `ID@ADDR` for one address, `ID@ADDR,ADDR` for more.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@", self.id)?;
        for (i, addr) in self.addrs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{addr}")?;
        }
        Ok(())
    }
}

/// Why a `--peer` value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerArgError {
    /// No `@` between id and address.
    #[error("not a peer address: expected PEER_ID@HOST:PORT")]
    MissingAt,
    /// The id is not a peer id.
    #[error(transparent)]
    Id(#[from] PeerIdError),
    /// The address part names nothing to dial.
    #[error(transparent)]
    Addr(#[from] HostPortError),
    /// An address that is not one peer's (broadcast, multicast).
    #[error("{0}")]
    NotUnicast(String),
    /// More addresses after one id than a peer is given.
    #[error("{0} addresses for one peer; at most {MAX_PEER_ARG_ADDRS}, separated by commas")]
    TooManyAddrs(usize),
}

/// The most addresses one `--peer` value may list.
pub const MAX_PEER_ARG_ADDRS: usize = 8;

/// Parses a `--peer` value: `PEER_ID@IP:PORT`, `PEER_ID@[IPv6]:PORT` or
/// `PEER_ID@NAME:PORT`, a name being resolved now to all its addresses;
/// or several of them after one id, `PEER_ID@HOST:PORT,HOST:PORT` (as
/// [`PeerAddrs`] is written, e.g. by `ticket show`), at most
/// [`MAX_PEER_ARG_ADDRS`].
pub fn parse_peer_arg(text: &str) -> Result<PeerAddrs, PeerArgError> {
    let (id, hosts) = split_peer_arg(text)?;
    let mut addrs = Vec::new();
    for host in hosts {
        for addr in resolve_host_port(host)? {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
    }
    // What an offer or a ticket may not name, `--peer` may not either.
    for addr in &addrs {
        crate::addrs::check_offer_addr(*addr).map_err(PeerArgError::NotUnicast)?;
    }
    Ok(PeerAddrs { id, addrs })
}

/// A `--peer` value's id and its `HOST:PORT` parts, not resolved yet (no
/// name is looked up): 1 to [`MAX_PEER_ARG_ADDRS`] of them.
pub fn split_peer_arg(text: &str) -> Result<(PeerId, Vec<&str>), PeerArgError> {
    let (id, hosts) = text.split_once('@').ok_or(PeerArgError::MissingAt)?;
    let id: PeerId = id.parse()?;
    // `ID@A, B` as a person writes a list.
    let hosts: Vec<&str> = hosts.split(',').map(str::trim).collect();
    if hosts.len() > MAX_PEER_ARG_ADDRS {
        return Err(PeerArgError::TooManyAddrs(hosts.len()));
    }
    Ok((id, hosts))
}

/// Folds peers given several times into one entry per id, with every
/// address once: peers in the order their id first appeared, each one's
/// addresses in the order they were given.
pub fn merge_peers(peers: impl IntoIterator<Item = PeerAddrs>) -> Vec<PeerAddrs> {
    let mut merged: Vec<PeerAddrs> = Vec::new();
    for peer in peers {
        let entry = match merged.iter().position(|known| known.id == peer.id) {
            Some(index) => &mut merged[index],
            None => {
                merged.push(PeerAddrs {
                    id: peer.id,
                    addrs: Vec::new(),
                });
                merged.last_mut().expect("just pushed")
            }
        };
        for addr in peer.addrs {
            if !entry.addrs.contains(&addr) {
                entry.addrs.push(addr);
            }
        }
    }
    merged.retain(|peer| !peer.addrs.is_empty());
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "baaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn peer(id: &str, addrs: &[&str]) -> PeerAddrs {
        PeerAddrs {
            id: id.parse().unwrap(),
            addrs: addrs.iter().map(|a| addr(a)).collect(),
        }
    }

    #[test]
    fn peer_arguments_refuse_addresses_that_are_no_ones() {
        for host in [
            "255.255.255.255:4433",
            "224.0.0.1:4433",
            "[ff02::1]:4433",
            "0.1.2.3:4433",
            "240.0.0.1:4433",
        ] {
            assert!(
                matches!(
                    parse_peer_arg(&format!("{A}@{host}")),
                    Err(PeerArgError::NotUnicast(_))
                ),
                "{host}"
            );
        }
    }

    #[test]
    fn peer_arguments_take_ip_bracketed_v6_and_names() {
        assert_eq!(
            parse_peer_arg(&format!("{A}@10.0.0.2:4433")).unwrap(),
            peer(A, &["10.0.0.2:4433"])
        );
        assert_eq!(
            parse_peer_arg(&format!("{A}@[fd00::2]:4433")).unwrap(),
            peer(A, &["[fd00::2]:4433"])
        );
        let named = parse_peer_arg(&format!("{A}@localhost:4433")).unwrap();
        assert!(named.addrs.contains(&addr("127.0.0.1:4433")), "{named}");
        // Several after one id, as a peer is written: read back the same.
        let several = peer(A, &["10.0.0.2:4433", "[fd00::2]:4433"]);
        assert_eq!(
            parse_peer_arg(&several.to_string()).unwrap(),
            several.clone()
        );
        assert_eq!(
            parse_peer_arg(&format!("{A}@10.0.0.2:4433, [fd00::2]:4433,10.0.0.2:4433")).unwrap(),
            several
        );
    }

    #[test]
    fn bad_peer_arguments_say_what_is_wrong() {
        assert_eq!(
            parse_peer_arg("10.0.0.2:4433").unwrap_err(),
            PeerArgError::MissingAt
        );
        assert!(matches!(
            parse_peer_arg("shortid@10.0.0.2:4433"),
            Err(PeerArgError::Id(_))
        ));
        let unbracketed = parse_peer_arg(&format!("{A}@fd00::2:4433")).unwrap_err();
        assert!(
            unbracketed.to_string().contains("brackets"),
            "{unbracketed}"
        );
        assert!(matches!(
            parse_peer_arg(&format!("{A}@10.0.0.2:0")),
            Err(PeerArgError::Addr(HostPortError::Port(_)))
        ));
        for hosts in [
            "10.0.0.2:4433,",
            ",10.0.0.2:4433",
            "10.0.0.2:4433,,10.0.0.3:4433",
        ] {
            assert!(
                matches!(
                    parse_peer_arg(&format!("{A}@{hosts}")),
                    Err(PeerArgError::Addr(HostPortError::Port(_)))
                ),
                "{hosts}"
            );
        }
        let many = ["10.0.0.2:4433"; MAX_PEER_ARG_ADDRS + 1].join(",");
        assert_eq!(
            parse_peer_arg(&format!("{A}@{many}")).unwrap_err(),
            PeerArgError::TooManyAddrs(MAX_PEER_ARG_ADDRS + 1)
        );
    }

    #[test]
    fn one_id_at_several_addresses_is_one_peer() {
        let merged = merge_peers([
            peer(A, &["10.0.0.9:1"]),
            peer(B, &["10.0.0.3:1"]),
            peer(A, &["10.0.0.2:1", "10.0.0.9:1"]),
            peer(A, &["[fd00::2]:1"]),
        ]);
        assert_eq!(
            merged,
            vec![
                peer(A, &["10.0.0.9:1", "10.0.0.2:1", "[fd00::2]:1"]),
                peer(B, &["10.0.0.3:1"]),
            ]
        );
        assert_eq!(
            PeerAddrs::flatten(&merged)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec![
                format!("{A}@10.0.0.9:1"),
                format!("{A}@10.0.0.2:1"),
                format!("{A}@[fd00::2]:1"),
                format!("{B}@10.0.0.3:1"),
            ]
        );
        assert_eq!(
            merged[0].to_string(),
            format!("{A}@10.0.0.9:1,10.0.0.2:1,[fd00::2]:1")
        );
    }
}
