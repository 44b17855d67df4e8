//! What one system call sends on a real path's datagram size: the vendored
//! quinn (`vendor/quinn/PATCHES.md`) fills a GSO call with up to 64 KiB of
//! datagrams, where quinn as published stops at 10 of them. And on
//! loopback: the path climbs to the loopback bound, three datagrams a call.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use minimodel_wire::PeerAddr;

use crate::transport::{Identity, TransportTuning, accept, bind_endpoint, connect};

/// A UDP socket that notes the largest transmit it was handed: how many
/// datagrams, and how many bytes.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn quinn::AsyncUdpSocket>,
    most_datagrams: Arc<AtomicUsize>,
    most_bytes: Arc<AtomicUsize>,
    /// The largest datagram (a call's segment size, or its length).
    largest_datagram: Arc<AtomicUsize>,
}

impl quinn::AsyncUdpSocket for Recording {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn quinn::UdpPoller>> {
        Arc::clone(&self.inner).create_io_poller()
    }

    fn try_send(&self, transmit: &quinn::udp::Transmit) -> io::Result<()> {
        let bytes = transmit.contents.len();
        let datagrams = transmit
            .segment_size
            .map_or(1, |size| bytes.div_ceil(size.max(1)));
        self.most_datagrams.fetch_max(datagrams, Ordering::Relaxed);
        self.most_bytes.fetch_max(bytes, Ordering::Relaxed);
        self.largest_datagram
            .fetch_max(transmit.segment_size.unwrap_or(bytes), Ordering::Relaxed);
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [io::IoSliceMut<'_>],
        meta: &mut [quinn::udp::RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
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

/// What an upload from a client on a recording socket to a listener on
/// loopback made the client hand to its socket: 16 MiB, or, with a path
/// MTU to wait for, what went after the path reached it (4 MiB).
struct Sent {
    most_datagrams: usize,
    most_bytes: usize,
    largest_datagram: usize,
    /// The path's MTU at the end, as quinn's discovery left it.
    path_mtu: u16,
}

async fn upload(tuning: TransportTuning, climb_to: Option<u16>) -> Sent {
    let server_identity = Identity::generate().unwrap();
    let client_identity = Identity::generate().unwrap();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = bind_endpoint(loopback, &server_identity, &tuning).unwrap();
    let peer = PeerAddr {
        id: server_identity.peer_id(),
        addr: server.local_addr().unwrap(),
    };

    let runtime = quinn::default_runtime().unwrap();
    let socket = std::net::UdpSocket::bind(loopback).unwrap();
    let most_datagrams = Arc::new(AtomicUsize::new(0));
    let most_bytes = Arc::new(AtomicUsize::new(0));
    let largest_datagram = Arc::new(AtomicUsize::new(0));
    let recording = Arc::new(Recording {
        inner: runtime.wrap_udp_socket(socket).unwrap(),
        most_datagrams: Arc::clone(&most_datagrams),
        most_bytes: Arc::clone(&most_bytes),
        largest_datagram: Arc::clone(&largest_datagram),
    });
    let per_call = quinn::AsyncUdpSocket::max_transmit_segments(recording.as_ref());
    assert!(
        per_call > 10,
        "this host's UDP socket takes {per_call} datagrams per call (no GSO): the test needs GSO"
    );
    let mut config = quinn::EndpointConfig::default();
    config
        .max_udp_payload_size(tuning.max_udp_payload(true))
        .unwrap();
    let client = quinn::Endpoint::new_with_abstract_socket(config, None, recording, runtime)
        .expect("an endpoint on the recording socket");

    let listener = {
        let tuning = tuning.clone();
        tokio::spawn(async move {
            let incoming = server.accept().await.expect("an incoming connection");
            let (connection, _) = accept(incoming, &server_identity, &tuning).await.unwrap();
            let mut stream = connection.accept_uni().await.unwrap();
            let mut received = 0;
            while let Some(chunk) = stream.read_chunk(usize::MAX, true).await.unwrap() {
                received += chunk.bytes.len();
            }
            received
        })
    };
    let connection = connect(&client, &peer, &client_identity, &tuning)
        .await
        .unwrap();
    let mut stream = connection.open_uni().await.unwrap();
    let block = vec![7u8; 1 << 20];
    let mut sent = 0;
    if let Some(target) = climb_to {
        // MTU discovery climbs while the bytes flow, a probe a round trip.
        while connection.stats().path.current_mtu < target {
            assert!(
                sent < 1 << 30,
                "the path MTU is {} after {sent} bytes",
                connection.stats().path.current_mtu
            );
            stream.write_all(&block).await.unwrap();
            sent += block.len();
        }
        for counter in [&most_datagrams, &most_bytes, &largest_datagram] {
            counter.store(0, Ordering::Relaxed);
        }
    }
    let more = if climb_to.is_some() { 4 } else { 16 };
    for _ in 0..more {
        stream.write_all(&block).await.unwrap();
        sent += block.len();
    }
    stream.finish().unwrap();
    assert_eq!(listener.await.unwrap(), sent);
    Sent {
        most_datagrams: most_datagrams.load(Ordering::Relaxed),
        most_bytes: most_bytes.load(Ordering::Relaxed),
        largest_datagram: largest_datagram.load(Ordering::Relaxed),
        path_mtu: connection.stats().path.current_mtu,
    }
}

#[tokio::test]
async fn an_upload_on_a_1452_byte_path_fills_each_gso_call_to_64_kib() {
    // Loopback carrying a real path's datagrams: MTU discovery stops at
    // 1,452 bytes, as on Ethernet.
    let sent = upload(
        TransportTuning {
            loopback_mtu_discovery_upper_bound: 1452,
            ..TransportTuning::default()
        },
        None,
    )
    .await;
    let (datagrams, bytes) = (sent.most_datagrams, sent.most_bytes);
    // 45 datagrams of 1,452 bytes fill a call; quinn as published sends
    // at most 10 (14,520 bytes).
    assert!(
        datagrams > 10,
        "at most {datagrams} datagrams ({bytes} bytes) in one call"
    );
    assert!(
        bytes <= 65_507,
        "{bytes} bytes in one call: more than a UDP datagram's payload"
    );
    assert!(
        sent.largest_datagram <= 1452,
        "{} bytes",
        sent.largest_datagram
    );
}

#[tokio::test]
async fn a_loopback_path_climbs_to_the_loopback_bound_three_datagrams_a_call() {
    let tuning = TransportTuning::default();
    let bound = tuning.loopback_mtu_discovery_upper_bound;
    // Discovery searches to within 20 bytes of the bound.
    let sent = upload(tuning, Some(bound - 20)).await;
    assert!(
        sent.path_mtu <= bound,
        "path MTU {} with a loopback bound of {bound}",
        sent.path_mtu
    );
    assert!(
        sent.largest_datagram > usize::from(bound) - 20,
        "the largest datagram sent was {} bytes",
        sent.largest_datagram
    );
    // Three of them fill a call (65,400 of 65,507 bytes); the counts
    // start once the path is at the bound.
    assert_eq!(sent.most_datagrams, 3);
    assert!(
        sent.most_bytes <= 65_507,
        "{} bytes in one call",
        sent.most_bytes
    );
}
