//! The endpoint's UDP socket as quinn sees it: quinn's datagrams pass as
//! they are, and two things more go through the one socket (so through
//! the one mapping a home router keeps for it):
//!
//! - **Opening packets** ([`Paths::open`]): before a punch, a node sends
//!   the peer's address a datagram of one byte with a small TTL
//!   ([`OPEN_TTL`]). It leaves our router, which makes the mapping (and
//!   the way in for the peer's answers), and dies at the next hop, before
//!   the peer's router: a router with no input firewall would keep a
//!   packet that came before its host sent anything as its own, and map
//!   the host's own packets to another outside port (`docs/swarm.md`,
//!   "Through NAT routers"). The TTL is set on the socket for the send and
//!   put back, while quinn's sends wait (a read-write lock: quinn's sends
//!   share it, an opening takes it alone).
//! - **Relay paths** ([`Paths::add_relay_path`]): a peer reached through a
//!   relay (`docs/relay.md`) is, to quinn, an address in `240.0.0.0/8`
//!   that nothing else uses. A datagram quinn sends there leaves as a
//!   relay datagram (a tag byte, the channel, the QUIC packet as it is) to
//!   the relay's address; one that comes from a relay with that tag and a
//!   known channel reaches quinn from the path's address, the QUIC packet
//!   as it was. The two ends' TLS runs through it: the relay reads and
//!   changes nothing.
//!
//! Nothing here decides when to open or which path to use: the node's
//! core does.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll, ready};

use minimodel_wire::relay::{DATAGRAM_HEADER_LEN, RELAYED_TAG};
use quinn::udp::{RecvMeta, Transmit};

/// The TTL (hop limit) of an opening packet: it passes the home router
/// (hop 1) and dies at the next one.
pub const OPEN_TTL: u32 = 2;

/// The one byte of an opening packet (no QUIC packet starts with it: a
/// long header has its top bit set, a short one its second).
pub const OPEN_TAG: u8 = 0x1f;

/// How many relay paths one endpoint keeps; the oldest goes first.
pub const MAX_RELAY_PATHS: usize = 1024;

/// The socket's relay paths.
#[derive(Debug, Default)]
struct RelayPaths {
    /// Path address -> (relay, channel).
    by_path: HashMap<SocketAddr, (SocketAddr, u64)>,
    /// (relay, channel) -> path address.
    by_channel: HashMap<(SocketAddr, u64), SocketAddr>,
    /// Relays with paths, and how many each.
    relays: HashMap<SocketAddr, usize>,
    /// Paths in the order they were made (the oldest is dropped first).
    order: std::collections::VecDeque<SocketAddr>,
    /// The next path number.
    next: u32,
}

/// Bytes through relay paths, for the figures.
#[derive(Debug, Default)]
struct Counts {
    relayed_out: AtomicU64,
    relayed_in: AtomicU64,
    opened: AtomicU64,
    dropped: AtomicU64,
}

/// The wrapper quinn is given.
#[derive(Debug)]
struct PathSocket {
    inner: Arc<dyn quinn::AsyncUdpSocket>,
    /// The same socket (a duplicate descriptor), for the TTL and the
    /// opening packets.
    raw: std::net::UdpSocket,
    /// An IPv6 socket (dual-stack or not): IPv4 addresses are written
    /// mapped.
    ipv6: bool,
    sending: RwLock<()>,
    paths: Mutex<RelayPaths>,
    /// Whether any relay path exists (the receive path looks no further
    /// when none does).
    any_path: std::sync::atomic::AtomicBool,
    counts: Counts,
}

/// A handle on an endpoint's socket: opening packets and relay paths.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Paths {
    socket: Arc<PathSocket>,
}

/// What a relay path is, to the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayPath {
    /// The relay's address.
    pub relay: SocketAddr,
    /// The channel the relay gave this pair.
    pub channel: u64,
}

/// Bytes an endpoint sent and received through relay paths (relay
/// datagrams, headers included), and opening packets sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathCounts {
    /// Sent to relays.
    pub relayed_out: u64,
    /// Received from relays.
    pub relayed_in: u64,
    /// Opening packets sent.
    pub opened: u64,
    /// Relay datagrams dropped (an unknown channel, a path gone).
    pub dropped: u64,
}

/// Whether `addr` is a relay path's address (`240.0.0.0/8`, mapped or
/// not): never a host's.
pub fn is_relay_path(addr: SocketAddr) -> bool {
    matches!(addr.ip().to_canonical(), IpAddr::V4(v4) if v4.octets()[0] == 240)
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

impl PathSocket {
    /// `addr` as this socket writes it.
    fn family(&self, addr: SocketAddr) -> SocketAddr {
        match (self.ipv6, addr) {
            (true, SocketAddr::V4(v4)) => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            _ => addr,
        }
    }

    fn lock_paths(&self) -> std::sync::MutexGuard<'_, RelayPaths> {
        self.paths
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A transmit to a relay path, as relay datagrams to the relay.
    fn send_relayed(&self, transmit: &Transmit, path: SocketAddr) -> io::Result<()> {
        let Some((relay, channel)) = self.lock_paths().by_path.get(&path).copied() else {
            // The path is gone: as a packet lost on the way.
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        let segment = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        let segments = transmit.contents.len().div_ceil(segment);
        let mut wrapped =
            Vec::with_capacity(transmit.contents.len() + segments * DATAGRAM_HEADER_LEN);
        for packet in transmit.contents.chunks(segment) {
            wrapped.push(RELAYED_TAG);
            wrapped.extend_from_slice(&channel.to_be_bytes());
            wrapped.extend_from_slice(packet);
        }
        let relayed = Transmit {
            destination: self.family(relay),
            ecn: transmit.ecn,
            contents: &wrapped,
            segment_size: (segments > 1).then_some(segment + DATAGRAM_HEADER_LEN),
            src_ip: transmit.src_ip,
        };
        self.inner.try_send(&relayed)?;
        self.counts
            .relayed_out
            .fetch_add(wrapped.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Unwraps the relay datagrams among what was received (in place); a
    /// datagram that cannot be unwrapped is dropped (its length set to 0,
    /// which quinn skips).
    fn unwrap_relayed(&self, bufs: &mut [io::IoSliceMut<'_>], meta: &mut [RecvMeta], n: usize) {
        let paths = self.lock_paths();
        for (buf, meta) in bufs.iter_mut().zip(meta.iter_mut()).take(n) {
            let from = canonical(meta.addr);
            if !paths.relays.contains_key(&from) {
                continue;
            }
            let data = &mut buf[..meta.len];
            if data.first() != Some(&RELAYED_TAG) {
                // The relay's own QUIC: the control connection.
                continue;
            }
            let stride = meta.stride.max(1);
            let mut path = None;
            let mut kept = 0;
            let mut read = 0;
            let mut dropped = 0;
            while read < data.len() {
                let end = (read + stride).min(data.len());
                let segment = read..end;
                read = end;
                let Some(header) = data
                    .get(segment.clone())
                    .and_then(|s| s.get(..DATAGRAM_HEADER_LEN))
                else {
                    dropped += 1;
                    continue;
                };
                let channel = u64::from_be_bytes(header[1..].try_into().expect("8 bytes"));
                let this = (header[0] == RELAYED_TAG)
                    .then(|| paths.by_channel.get(&(from, channel)).copied())
                    .flatten();
                // One path per received batch: what belongs to another
                // (coalesced by the kernel) is dropped, as a lost packet.
                match (this, path) {
                    (Some(this), None) => path = Some(this),
                    (Some(this), Some(first)) if this == first => {}
                    _ => {
                        dropped += 1;
                        continue;
                    }
                }
                let payload = segment.start + DATAGRAM_HEADER_LEN..segment.end;
                let len = payload.len();
                data.copy_within(payload, kept);
                kept += len;
            }
            self.counts.dropped.fetch_add(dropped, Ordering::Relaxed);
            self.counts
                .relayed_in
                .fetch_add(meta.len as u64, Ordering::Relaxed);
            match path {
                Some(path) => {
                    meta.addr = self.family(path);
                    meta.len = kept;
                    meta.stride = stride.saturating_sub(DATAGRAM_HEADER_LEN).max(1);
                }
                None => meta.len = 0,
            }
        }
    }
}

impl quinn::AsyncUdpSocket for PathSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn quinn::UdpPoller>> {
        Arc::clone(&self.inner).create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let _sending = self
            .sending
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let destination = canonical(transmit.destination);
        if is_relay_path(destination) {
            return self.send_relayed(transmit, destination);
        }
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [io::IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(self.inner.poll_recv(cx, bufs, meta))?;
        if self.any_path.load(Ordering::Acquire) {
            self.unwrap_relayed(bufs, meta, n);
        }
        for (buf, meta) in bufs.iter().zip(meta.iter_mut()).take(n) {
            // A peer's opening packet that got this far: nothing for quinn.
            if meta.len == 1 && buf.first() == Some(&OPEN_TAG) {
                meta.len = 0;
            }
        }
        Poll::Ready(Ok(n))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

impl Paths {
    /// Wraps `socket` (bound, with its options set) for quinn: the socket
    /// quinn is given, and the handle on it.
    pub(crate) fn wrap(
        socket: std::net::UdpSocket,
        runtime: &dyn quinn::Runtime,
    ) -> io::Result<(Arc<dyn quinn::AsyncUdpSocket>, Paths)> {
        let raw = socket.try_clone()?;
        let ipv6 = socket.local_addr()?.is_ipv6();
        let inner = super::plain_udp::wrap_udp_socket(runtime, socket)?;
        let socket = Arc::new(PathSocket {
            inner,
            raw,
            ipv6,
            sending: RwLock::new(()),
            paths: Mutex::new(RelayPaths::default()),
            any_path: std::sync::atomic::AtomicBool::new(false),
            counts: Counts::default(),
        });
        let quinn_socket: Arc<dyn quinn::AsyncUdpSocket> = socket.clone();
        Ok((quinn_socket, Paths { socket }))
    }

    /// Sends one opening packet ([`OPEN_TTL`]) to each of `addrs` from the
    /// endpoint's socket. Best effort: a system that will not set the TTL
    /// sends nothing (the punch may still get through: most routers drop
    /// what comes in unasked and keep nothing of it).
    pub fn open(&self, addrs: &[SocketAddr]) {
        let socket = &self.socket;
        let _alone = socket
            .sending
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let raw = socket2::SockRef::from(&socket.raw);
        for &addr in addrs {
            let addr = canonical(addr);
            if is_relay_path(addr) {
                continue;
            }
            let sent = match addr {
                SocketAddr::V4(_) => with_ttl(
                    || raw.ttl_v4(),
                    |ttl| raw.set_ttl_v4(ttl),
                    || socket.raw.send_to(&[OPEN_TAG], socket.family(addr)),
                ),
                SocketAddr::V6(_) => with_ttl(
                    || raw.unicast_hops_v6(),
                    |hops| raw.set_unicast_hops_v6(hops),
                    || socket.raw.send_to(&[OPEN_TAG], addr),
                ),
            };
            if sent {
                socket.counts.opened.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Makes a relay path for `path` and returns its address (what quinn
    /// dials, and sees the peer at); the same address again for a path it
    /// has. The oldest path goes when there are [`MAX_RELAY_PATHS`].
    pub fn add_relay_path(&self, path: RelayPath) -> SocketAddr {
        let relay = canonical(path.relay);
        let mut paths = self.socket.lock_paths();
        if let Some(&addr) = paths.by_channel.get(&(relay, path.channel)) {
            return addr;
        }
        while paths.order.len() >= MAX_RELAY_PATHS {
            if let Some(old) = paths.order.pop_front() {
                remove_path(&mut paths, old);
            }
        }
        // A /24 of its own for each path (connection limits count by
        // /24): 240.X.Y.1, X.Y from a counter.
        let address = loop {
            let n = paths.next;
            paths.next = paths.next.wrapping_add(1) & 0xffff;
            let [_, _, x, y] = n.to_be_bytes();
            let candidate = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(240, x, y, 1)), 4433);
            if !paths.by_path.contains_key(&candidate) {
                break candidate;
            }
        };
        paths.by_path.insert(address, (relay, path.channel));
        paths.by_channel.insert((relay, path.channel), address);
        *paths.relays.entry(relay).or_default() += 1;
        paths.order.push_back(address);
        self.socket.any_path.store(true, Ordering::Release);
        address
    }

    /// The relay path behind `addr`, when it is one.
    pub fn relay_path(&self, addr: SocketAddr) -> Option<RelayPath> {
        (self.socket.lock_paths().by_path.get(&canonical(addr)))
            .map(|&(relay, channel)| RelayPath { relay, channel })
    }

    /// Forgets the relay path of `channel` at `relay`, and says which it
    /// was.
    pub fn remove_relay_channel(&self, relay: SocketAddr, channel: u64) -> Option<SocketAddr> {
        let path = (self.socket.lock_paths().by_channel)
            .get(&(canonical(relay), channel))
            .copied()?;
        self.remove_relay_path(path);
        Some(path)
    }

    /// Forgets the relay path at `addr`.
    pub fn remove_relay_path(&self, addr: SocketAddr) {
        let mut paths = self.socket.lock_paths();
        remove_path(&mut paths, canonical(addr));
        paths.order.retain(|kept| *kept != canonical(addr));
        let any = !paths.by_path.is_empty();
        self.socket.any_path.store(any, Ordering::Release);
    }

    /// What went through relay paths so far, and the opening packets.
    pub fn counts(&self) -> PathCounts {
        let counts = &self.socket.counts;
        PathCounts {
            relayed_out: counts.relayed_out.load(Ordering::Relaxed),
            relayed_in: counts.relayed_in.load(Ordering::Relaxed),
            opened: counts.opened.load(Ordering::Relaxed),
            dropped: counts.dropped.load(Ordering::Relaxed),
        }
    }
}

fn remove_path(paths: &mut RelayPaths, addr: SocketAddr) {
    if let Some((relay, channel)) = paths.by_path.remove(&addr) {
        paths.by_channel.remove(&(relay, channel));
        if let Some(count) = paths.relays.get_mut(&relay) {
            *count -= 1;
            if *count == 0 {
                paths.relays.remove(&relay);
            }
        }
    }
}

/// Sends with the TTL (hop limit) at [`OPEN_TTL`] and puts it back;
/// whether it was sent.
fn with_ttl(
    get: impl Fn() -> io::Result<u32>,
    set: impl Fn(u32) -> io::Result<()>,
    send: impl FnOnce() -> io::Result<usize>,
) -> bool {
    let Ok(before) = get() else {
        return false;
    };
    if set(OPEN_TTL).is_err() {
        return false;
    }
    let sent = send().is_ok();
    let _ = set(before);
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped(bind: &str) -> (Arc<dyn quinn::AsyncUdpSocket>, Paths) {
        let socket = std::net::UdpSocket::bind(bind).unwrap();
        socket.set_ttl(64).unwrap();
        let runtime = quinn::default_runtime().unwrap();
        Paths::wrap(socket, runtime.as_ref()).unwrap()
    }

    #[tokio::test]
    async fn an_opening_packet_goes_out_with_a_small_ttl_that_is_put_back_after() {
        let (_, paths) = wrapped("127.0.0.1:0");
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        // The TTL the socket has while it sends is OPEN_TTL: seen from
        // the socket itself, between the set and the send.
        let seen = std::cell::Cell::new(0);
        let raw = socket2::SockRef::from(&paths.socket.raw);
        let sent = with_ttl(
            || raw.ttl_v4(),
            |ttl| raw.set_ttl_v4(ttl),
            || {
                seen.set(raw.ttl_v4().unwrap());
                Ok(0)
            },
        );
        assert!(sent);
        assert_eq!(seen.get(), OPEN_TTL);
        assert_eq!(raw.ttl_v4().unwrap(), 64, "put back");
        paths.open(&[peer.local_addr().unwrap()]);
        let mut buf = [0u8; 16];
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[OPEN_TAG]);
        assert_eq!(from, paths.socket.raw.local_addr().unwrap());
        assert_eq!(raw.ttl_v4().unwrap(), 64, "put back after the opening");
        assert_eq!(paths.counts().opened, 1);
    }

    #[tokio::test]
    async fn a_relay_path_wraps_what_quinn_sends_and_unwraps_what_the_relay_brings() {
        let (socket, paths) = wrapped("127.0.0.1:0");
        let relay = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        relay
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let relay_addr = relay.local_addr().unwrap();
        let path = paths.add_relay_path(RelayPath {
            relay: relay_addr,
            channel: 77,
        });
        assert!(is_relay_path(path));
        assert_eq!(
            paths.add_relay_path(RelayPath {
                relay: relay_addr,
                channel: 77
            }),
            path,
            "the same path again"
        );
        // Two packets in one GSO transmit: two relay datagrams.
        let contents = [[0x40u8; 10], [0x41u8; 10]].concat();
        let transmit = Transmit {
            destination: path,
            ecn: None,
            contents: &contents,
            segment_size: Some(10),
            src_ip: None,
        };
        // As quinn sends: try, and wait for the socket when it would block.
        let mut poller = Arc::clone(&socket).create_io_poller();
        loop {
            match socket.try_send(&transmit) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::future::poll_fn(|cx| poller.as_mut().poll_writable(cx))
                        .await
                        .unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        }
        let mut buf = [0u8; 64];
        for fill in [0x40u8, 0x41] {
            let (n, _) = relay.recv_from(&mut buf).unwrap();
            let (channel, packet) = minimodel_wire::relay::relay_datagram(&buf[..n]).unwrap();
            assert_eq!(channel, 77);
            assert_eq!(packet, [fill; 10]);
        }
        // What the relay sends on the channel reaches quinn from the path;
        // another channel, or a stranger's datagram, does not.
        let local = paths.socket.raw.local_addr().unwrap();
        let mut datagram = Vec::new();
        minimodel_wire::relay::write_relay_datagram(77, &[0x42; 20], &mut datagram);
        relay.send_to(&datagram, local).unwrap();
        let mut other = Vec::new();
        minimodel_wire::relay::write_relay_datagram(78, &[0x43; 20], &mut other);
        relay.send_to(&other, local).unwrap();
        let mut storage = [[0u8; 1500]; 4];
        let mut received = Vec::new();
        while received.len() < 2 {
            let mut bufs: Vec<io::IoSliceMut<'_>> =
                storage.iter_mut().map(|b| io::IoSliceMut::new(b)).collect();
            let mut meta = [RecvMeta::default(); 4];
            let n = std::future::poll_fn(|cx| socket.poll_recv(cx, &mut bufs, &mut meta))
                .await
                .unwrap();
            for (buf, meta) in bufs.iter().zip(&meta).take(n) {
                received.push((canonical(meta.addr), buf[..meta.len].to_vec()));
            }
        }
        assert_eq!(received[0], (path, vec![0x42; 20]));
        assert_eq!(
            received[1].1,
            Vec::<u8>::new(),
            "an unknown channel is dropped"
        );
        let counts = paths.counts();
        assert_eq!(counts.relayed_out, 2 * (10 + DATAGRAM_HEADER_LEN as u64));
        assert_eq!(counts.dropped, 1);
        paths.remove_relay_path(path);
        assert_eq!(paths.relay_path(path), None);
    }
}
