//! A userspace UDP relay that impairs a link: loss, delay, jitter,
//! reordering, duplication and a rate cap, for machines where kernel
//! traffic shaping (netem) is not available.
//!
//! It binds 127.0.0.1:0 (or, with `Relay::start_on`, the addresses it is
//! given) and forwards datagrams between one client (the address that sent
//! to it last) and one upstream address, each direction through its own
//! delay line. It stops when dropped. The network lab runs it as a program:
//! `swarm/examples/relay.rs`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::hostile::Rng;

/// What the relay does to each datagram, in each direction.
#[derive(Debug, Clone)]
pub struct Impairment {
    /// Probability that a datagram is dropped.
    pub loss: f64,
    /// One-way delay added to every datagram.
    pub delay: Duration,
    /// A further delay drawn uniformly from `[0, jitter)` (reorders too).
    pub jitter: Duration,
    /// Probability that a datagram is held back one more `delay` (at least
    /// a millisecond), so the ones behind it overtake it.
    pub reorder: f64,
    /// Probability that a datagram is sent twice.
    pub duplicate: f64,
    /// Bytes per second the link carries; `None` for no cap.
    pub rate: Option<u64>,
    /// Bytes that may wait for the rate cap; beyond, datagrams are dropped
    /// (a router's tail drop).
    pub buffer: usize,
    /// The largest IP packet the path carries (UDP payload plus 28 bytes
    /// of IPv4 and UDP headers, 48 over IPv6); a larger datagram is
    /// dropped, as a real path drops a packet over its MTU that may not be
    /// fragmented. `None`: whatever the sockets carry (loopback: 64 KiB).
    pub mtu: Option<usize>,
    /// Seed of the random choices.
    pub seed: u64,
}

impl Impairment {
    /// A perfect link.
    pub fn none() -> Self {
        Self {
            loss: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder: 0.0,
            duplicate: 0.0,
            rate: None,
            buffer: 256 * 1024,
            mtu: None,
            seed: 1,
        }
    }
}

/// What the relay did, both directions together.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Datagrams that reached the other side (duplicates included).
    pub forwarded: AtomicU64,
    /// Datagrams dropped (loss, blackhole, full buffer, over the MTU).
    pub dropped: AtomicU64,
    /// Of those, datagrams over the MTU.
    pub too_large: AtomicU64,
    /// Extra copies sent.
    pub duplicated: AtomicU64,
    /// Datagrams held back to be overtaken.
    pub reordered: AtomicU64,
    /// Payload bytes forwarded.
    pub bytes: AtomicU64,
}

/// A running relay.
pub struct Relay {
    /// Where the client sends to.
    pub addr: SocketAddr,
    stats: Arc<RelayStats>,
    blackhole: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

struct Shared {
    impairment: Impairment,
    stats: Arc<RelayStats>,
    blackhole: Arc<AtomicBool>,
}

impl Relay {
    /// Starts relaying to `upstream` with `impairment`.
    pub async fn start(upstream: SocketAddr, impairment: Impairment) -> std::io::Result<Relay> {
        Self::start_on(LOOPBACK_ANY_PORT, LOOPBACK_ANY_PORT, upstream, impairment).await
    }

    /// Starts relaying to `upstream` with `impairment`, taking the client's
    /// datagrams on `front` and sending to `upstream` from `back` (port 0
    /// picks a free one). `back` must be able to reach `upstream`: a
    /// loopback address reaches only loopback.
    pub async fn start_on(
        front: SocketAddr,
        back: SocketAddr,
        upstream: SocketAddr,
        impairment: Impairment,
    ) -> std::io::Result<Relay> {
        let front = Arc::new(bind_on(front)?);
        let back = Arc::new(bind_on(back)?);
        let addr = front.local_addr()?;
        let stats = Arc::new(RelayStats::default());
        let blackhole = Arc::new(AtomicBool::new(false));
        let client = Arc::new(Mutex::new(None::<SocketAddr>));
        let shared = Arc::new(Shared {
            impairment: impairment.clone(),
            stats: Arc::clone(&stats),
            blackhole: Arc::clone(&blackhole),
        });
        let forward = tokio::spawn(delay_line(
            Arc::clone(&front),
            Arc::clone(&back),
            Destination::Upstream(upstream),
            Arc::clone(&client),
            Arc::clone(&shared),
            Rng(impairment.seed),
        ));
        let backward = tokio::spawn(delay_line(
            back,
            front,
            Destination::Client,
            client,
            shared,
            Rng(impairment.seed ^ 0x5555_5555_5555_5555),
        ));
        Ok(Relay {
            addr,
            stats,
            blackhole,
            tasks: vec![forward, backward],
        })
    }

    /// Drops every datagram from now on (or forwards again).
    pub fn set_blackhole(&self, on: bool) {
        self.blackhole.store(on, Ordering::SeqCst);
    }

    /// What it did so far.
    pub fn stats(&self) -> &RelayStats {
        &self.stats
    }
}

const LOOPBACK_ANY_PORT: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    0,
));

/// A socket on 127.0.0.1 with large buffers, so a burst is queued rather
/// than lost before the relay decides what to lose (or, at an endpoint,
/// after it decided).
pub fn bind() -> std::io::Result<UdpSocket> {
    bind_on(LOOPBACK_ANY_PORT)
}

/// A socket on `addr` (IPv4 or IPv6) with the large buffers of `bind`.
pub fn bind_on(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.set_recv_buffer_size(4 << 20)?;
    socket.set_send_buffer_size(4 << 20)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

#[derive(Clone, Copy)]
enum Destination {
    Upstream(SocketAddr),
    Client,
}

/// One direction: receive on `from`, hold each datagram until its time,
/// send it on `to`.
async fn delay_line(
    from: Arc<UdpSocket>,
    to: Arc<UdpSocket>,
    destination: Destination,
    client: Arc<Mutex<Option<SocketAddr>>>,
    shared: Arc<Shared>,
    mut rng: Rng,
) {
    let impairment = &shared.impairment;
    let stats = &shared.stats;
    let mut queue: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>> = BinaryHeap::new();
    let mut sequence = 0u64;
    let mut link_free = Instant::now();
    let mut buf = vec![0u8; 65536];
    loop {
        let next = queue.peek().map(|Reverse((at, _, _))| *at);
        tokio::select! {
            received = from.recv_from(&mut buf) => {
                let Ok((len, source)) = received else { continue };
                match destination {
                    // The client is the address that sent last: a
                    // program that dials again from another port (a
                    // download's read-ahead, then its node) takes the
                    // relay over, as a NAT's mapping would follow it.
                    Destination::Upstream(_) => {
                        *client.lock().expect("client address") = Some(source);
                    }
                    Destination::Client => {}
                }
                let headers = if source.is_ipv4() { 28 } else { 48 };
                if impairment.mtu.is_some_and(|mtu| len + headers > mtu) {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    stats.too_large.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if shared.blackhole.load(Ordering::SeqCst) || rng.unit() < impairment.loss {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let now = Instant::now();
                let mut depart = now;
                if let Some(rate) = impairment.rate {
                    depart = link_free.max(now);
                    let backlog = depart.saturating_duration_since(now).as_secs_f64() * rate as f64;
                    if backlog > impairment.buffer as f64 {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    link_free = depart + Duration::from_secs_f64(len as f64 / rate as f64);
                }
                let copies = if rng.unit() < impairment.duplicate {
                    stats.duplicated.fetch_add(1, Ordering::Relaxed);
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let mut at = depart + impairment.delay + impairment.jitter.mul_f64(rng.unit());
                    if rng.unit() < impairment.reorder {
                        stats.reordered.fetch_add(1, Ordering::Relaxed);
                        at += impairment.delay.max(Duration::from_millis(1));
                    }
                    sequence += 1;
                    queue.push(Reverse((at, sequence, buf[..len].to_vec())));
                }
            }
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                let now = Instant::now();
                while queue.peek().is_some_and(|Reverse((at, _, _))| *at <= now) {
                    let Some(Reverse((_, _, datagram))) = queue.pop() else { break };
                    let target = match destination {
                        Destination::Upstream(addr) => Some(addr),
                        Destination::Client => *client.lock().expect("client address"),
                    };
                    if let Some(target) = target
                        && to.send_to(&datagram, target).await.is_ok() {
                            stats.forwarded.fetch_add(1, Ordering::Relaxed);
                            stats.bytes.fetch_add(datagram.len() as u64, Ordering::Relaxed);
                        }
                }
            }
        }
    }
}
