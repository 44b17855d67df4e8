//! Local discovery (`--lan`): a node announces its swarm on the local
//! network with DNS-SD over multicast DNS (RFC 6762, 6763; the `mdns-sd`
//! crate), and listens for other nodes' announcements of the same swarm.
//!
//! An announcement is a service of type [`SERVICE_TYPE`] whose TXT record
//! names the format ([`FORMAT_KEY`] = [`FORMAT`]), the swarm key
//! ([`SWARM_KEY`], the DHT's key of the manifest's Merkle root, 40 hex
//! digits) and the peer id ([`PEER_KEY`]); its SRV and address records give
//! the port and the addresses. Nothing else is sent: no model id, no file
//! name. A node that does not listen sends no announcement; its browse
//! query names only the service type, so the network learns that a
//! minimodel node looks for peers, not which swarm.
//!
//! What is heard goes to the core ([`minimodel_node::NodeCore::handle_neighbour`]),
//! which decides: only addresses inside one of our own LAN networks, a
//! bounded number of such peers, dialed like peer-exchange addresses. This
//! module only talks (`docs/swarm.md`, "Neighbours"; `docs/security.md`,
//! "Local discovery").

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use minimodel_wire::PeerId;

use crate::dht::SwarmKey;

/// The steps a node reports ([`crate::node::NodeReport::Lan`]).
pub use minimodel_node::report::LanStep;

/// The DNS-SD service type of an announcement.
pub const SERVICE_TYPE: &str = "_minimodel._udp.local.";
/// The TXT key of the announcement's format.
pub const FORMAT_KEY: &str = "v";
/// The format this code writes and reads.
pub const FORMAT: &str = "0";
/// The TXT key of the swarm key.
pub const SWARM_KEY: &str = "swarm";
/// The TXT key of the peer id.
pub const PEER_KEY: &str = "id";
/// Addresses of one announcement looked at, at most.
pub const MAX_HEARD_ADDRS: usize = 8;
/// How long a stop waits for the goodbye of the announcement to leave.
const GOODBYE_WAIT: Duration = Duration::from_millis(500);

/// Why an announcement is not a neighbour of this swarm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeardError {
    /// A TXT key is missing, or another format.
    #[error("not a minimodel-lan-v0 announcement ({0})")]
    Format(&'static str),
    /// Another swarm's announcement (not an error to report: every node on
    /// the network hears every swarm's).
    #[error("another swarm")]
    OtherSwarm,
    /// The peer id is not one.
    #[error("the peer id is invalid: {0}")]
    PeerId(String),
    /// Port 0, or no address.
    #[error("no address to dial")]
    NoAddress,
}

/// The TXT record of this node's announcement of `key` as `peer`.
pub fn announcement_txt(key: &SwarmKey, peer: &PeerId) -> [(&'static str, String); 3] {
    [
        (FORMAT_KEY, FORMAT.to_owned()),
        (SWARM_KEY, key.to_string()),
        (PEER_KEY, peer.to_string()),
    ]
}

/// The peer and the addresses an announcement heard on the network names,
/// when it announces swarm `key`: `txt` is its TXT record (key, value),
/// `port` and `ips` its SRV and address records. At most
/// [`MAX_HEARD_ADDRS`] addresses; the core filters them.
pub fn neighbour_of<'a>(
    key: &SwarmKey,
    txt: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    port: u16,
    ips: impl IntoIterator<Item = IpAddr>,
) -> Result<(PeerId, Vec<SocketAddr>), HeardError> {
    let (mut format, mut swarm, mut peer) = (None, None, None);
    for (name, value) in txt {
        // RFC 6763 6.4: the first of a repeated key counts.
        let slot = match name.to_ascii_lowercase().as_str() {
            FORMAT_KEY => &mut format,
            SWARM_KEY => &mut swarm,
            PEER_KEY => &mut peer,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value.unwrap_or_default());
        }
    }
    if format != Some(FORMAT.as_bytes()) {
        return Err(HeardError::Format("v"));
    }
    let swarm = swarm.ok_or(HeardError::Format("swarm"))?;
    if swarm != key.to_string().as_bytes() {
        return Err(HeardError::OtherSwarm);
    }
    let peer = peer.ok_or(HeardError::Format("id"))?;
    let peer: PeerId = std::str::from_utf8(peer)
        .map_err(|_| HeardError::PeerId("not UTF-8".into()))?
        .parse()
        .map_err(|error: minimodel_wire::PeerIdError| HeardError::PeerId(error.to_string()))?;
    if port == 0 {
        return Err(HeardError::NoAddress);
    }
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for ip in ips {
        let ip = ip.to_canonical();
        // An IPv6 link-local address means nothing without its interface,
        // which an mDNS answer does not carry: every link shares fe80::/64.
        if matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local()) {
            continue;
        }
        let addr = SocketAddr::new(ip, port);
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
        if addrs.len() == MAX_HEARD_ADDRS {
            break;
        }
    }
    if addrs.is_empty() {
        return Err(HeardError::NoAddress);
    }
    Ok((peer, addrs))
}

/// Local discovery while a node runs: its announcement (when it listens)
/// and what it hears. [`LanTask::stop`] says goodbye and ends it; dropped
/// without it, the daemon ends without the goodbye (neighbours forget the
/// announcement when its records expire).
pub(crate) struct LanTask {
    daemon: ServiceDaemon,
    announced: Option<String>,
    stopped: bool,
}

impl Drop for LanTask {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.daemon.shutdown();
        }
    }
}

impl LanTask {
    /// Starts announcing `key` as `peer` at `port` and `ips` (when
    /// `announce` is given) and listening for others; `heard` gets each
    /// neighbour of this swarm (from a thread of its own: return false to
    /// stop).
    pub(crate) fn start(
        key: SwarmKey,
        peer: PeerId,
        announce: Option<(u16, Vec<IpAddr>)>,
        heard: impl Fn(PeerId, Vec<SocketAddr>) -> bool + Send + 'static,
    ) -> Result<LanTask, mdns_sd::Error> {
        // Made first, so that an error below still ends the daemon (Drop).
        let mut task = LanTask {
            daemon: ServiceDaemon::new()?,
            announced: None,
            stopped: false,
        };
        let daemon = &task.daemon;
        // Loopback is this host only: never announced there, nor heard.
        daemon.disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6])?;
        if let Some((port, ips)) = announce.filter(|(_, ips)| !ips.is_empty()) {
            let peer_text = peer.to_string();
            let key_text = key.to_string();
            let instance = format!("mm-{}-{}-{port}", &key_text[..8], &peer_text[..16]);
            let host = format!("{instance}.local.");
            let txt = announcement_txt(&key, &peer);
            let info = ServiceInfo::new(SERVICE_TYPE, &instance, &host, &ips[..], port, &txt[..])?;
            let fullname = info.get_fullname().to_owned();
            daemon.register(info)?;
            task.announced = Some(fullname);
        }
        let events = daemon.browse(SERVICE_TYPE)?;
        std::thread::Builder::new()
            .name("minimodel-lan".into())
            .spawn(move || {
                while let Ok(event) = events.recv() {
                    let ServiceEvent::ServiceResolved(service) = event else {
                        continue;
                    };
                    let txt = service
                        .txt_properties
                        .iter()
                        .map(|property| (property.key(), property.val()));
                    let ips = service.addresses.iter().map(|ip| ip.to_ip_addr());
                    // Another swarm's, or not one: nothing to say (every
                    // node hears every announcement).
                    if let Ok((peer, addrs)) = neighbour_of(&key, txt, service.port, ips)
                        && !heard(peer, addrs)
                    {
                        return;
                    }
                }
            })
            .map_err(|error| mdns_sd::Error::Msg(format!("cannot start a thread: {error}")))?;
        Ok(task)
    }

    /// Whether this node announces itself.
    pub(crate) fn announces(&self) -> bool {
        self.announced.is_some()
    }

    /// Says goodbye (the announcement withdrawn, so that neighbours stop
    /// dialing here) and ends the daemon and the listening thread.
    pub(crate) async fn stop(mut self) {
        if let Some(fullname) = &self.announced
            && let Ok(status) = self.daemon.unregister(fullname)
        {
            let _ = tokio::time::timeout(GOODBYE_WAIT, status.recv_async()).await;
        }
        self.stopped = true;
        let _ = self.daemon.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SwarmKey {
        SwarmKey::of(&minimodel_verifier::Sha256Digest([7; 32]))
    }

    fn peer() -> PeerId {
        PeerId([3; 32])
    }

    fn txt(pairs: &[(&'static str, String)]) -> Vec<(&'static str, Option<Vec<u8>>)> {
        pairs
            .iter()
            .map(|(k, v)| (*k, Some(v.as_bytes().to_vec())))
            .collect()
    }

    fn hear(
        pairs: &[(&'static str, Option<Vec<u8>>)],
        port: u16,
        ips: &[&str],
    ) -> Result<(PeerId, Vec<SocketAddr>), HeardError> {
        neighbour_of(
            &key(),
            pairs.iter().map(|(k, v)| (*k, v.as_deref())),
            port,
            ips.iter().map(|ip| ip.parse().unwrap()),
        )
    }

    #[test]
    fn an_announcement_is_read_back_as_its_peer_and_addresses() {
        let ours = txt(&announcement_txt(&key(), &peer()));
        let (id, addrs) = hear(
            &ours,
            4433,
            &["192.168.1.7", "::ffff:192.168.1.7", "fe80::7", "fd00::7"],
        )
        .expect("our own announcement");
        assert_eq!(id, peer());
        assert_eq!(
            addrs,
            [
                "192.168.1.7:4433".parse().unwrap(),
                "[fd00::7]:4433".parse().unwrap()
            ]
        );
    }

    #[test]
    fn an_announcement_that_is_not_one_of_this_swarm_names_nobody() {
        let good = announcement_txt(&key(), &peer());
        let without = |name: &str| -> Vec<(&'static str, String)> {
            good.iter().filter(|(k, _)| *k != name).cloned().collect()
        };
        let with = |name: &'static str, value: &str| -> Vec<(&'static str, String)> {
            let mut pairs = without(name);
            pairs.insert(0, (name, value.to_owned()));
            pairs
        };
        let other = SwarmKey::of(&minimodel_verifier::Sha256Digest([8; 32])).to_string();
        for (pairs, port, expected) in [
            (without("v"), 4433, HeardError::Format("v")),
            (with("v", "1"), 4433, HeardError::Format("v")),
            (without("swarm"), 4433, HeardError::Format("swarm")),
            (with("swarm", &other), 4433, HeardError::OtherSwarm),
            (
                with("swarm", &key().to_string().to_uppercase()),
                4433,
                HeardError::OtherSwarm,
            ),
            (without("id"), 4433, HeardError::Format("id")),
            (good.to_vec(), 0, HeardError::NoAddress),
        ] {
            assert_eq!(
                hear(&txt(&pairs), port, &["192.168.1.7"]),
                Err(expected),
                "{pairs:?}"
            );
        }
        assert!(matches!(
            hear(&txt(&with("id", "nope")), 4433, &["192.168.1.7"]),
            Err(HeardError::PeerId(_))
        ));
        let mut not_utf8 = txt(&good);
        not_utf8.retain(|(k, _)| *k != "id");
        not_utf8.push(("id", Some(vec![0xff, 0xfe])));
        assert!(matches!(
            hear(&not_utf8, 4433, &["192.168.1.7"]),
            Err(HeardError::PeerId(_))
        ));
        // A key without a value, and no address at all.
        let mut empty = txt(&without("v"));
        empty.push(("v", None));
        assert_eq!(
            hear(&empty, 4433, &["192.168.1.7"]),
            Err(HeardError::Format("v"))
        );
        assert_eq!(hear(&txt(&good), 4433, &[]), Err(HeardError::NoAddress));
    }

    #[test]
    fn the_first_of_a_repeated_key_counts_and_addresses_are_bounded() {
        let other = SwarmKey::of(&minimodel_verifier::Sha256Digest([8; 32])).to_string();
        let mut pairs = vec![("SWARM", other)];
        pairs.extend(announcement_txt(&key(), &peer()));
        assert_eq!(
            hear(&txt(&pairs), 4433, &["10.0.0.1"]),
            Err(HeardError::OtherSwarm)
        );
        let many: Vec<String> = (1..=20).map(|n| format!("10.0.0.{n}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let (_, addrs) = hear(&txt(&announcement_txt(&key(), &peer())), 4433, &many).unwrap();
        assert_eq!(addrs.len(), MAX_HEARD_ADDRS);
    }
}
