//! The relay's UDP socket as its QUIC endpoint sees it: a relay datagram
//! (`docs/relay.md`, section 4) never reaches quinn; the relay's core
//! decides where it goes ([`RelayCore::handle_datagram`]) and it is sent
//! there at once, as it is, from the same socket. Everything else (the
//! nodes' QUIC connections to the relay) passes to quinn.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use minimodel_node::relay::{Forward, RelayCore};
use minimodel_wire::relay::{RELAYED_TAG, relay_datagram};
use quinn::udp::{RecvMeta, Transmit};

/// The relay's socket.
#[derive(Debug)]
pub(super) struct RelaySocket {
    pub(super) inner: Arc<dyn quinn::AsyncUdpSocket>,
    pub(super) core: Arc<Mutex<RelayCore>>,
    pub(super) ipv6: bool,
    /// Datagrams the core let through that the socket did not take (its
    /// buffer full): dropped, as on any congested path.
    pub(super) send_failed: AtomicU64,
}

impl RelaySocket {
    fn family(&self, addr: SocketAddr) -> SocketAddr {
        match (self.ipv6, addr) {
            (true, SocketAddr::V4(v4)) => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            _ => addr,
        }
    }

    /// Passes on each relay datagram of a received batch (one datagram,
    /// or several of one size from one source).
    fn pass_on(&self, data: &[u8], meta: &RecvMeta) {
        let stride = meta.stride.max(1);
        let now = Instant::now();
        for datagram in data.chunks(stride) {
            let Some((channel, _)) = relay_datagram(datagram) else {
                continue;
            };
            let decision = self
                .core
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .handle_datagram(meta.addr, channel, datagram.len(), now);
            if let Forward::To(to) = decision {
                let transmit = Transmit {
                    destination: self.family(to),
                    ecn: None,
                    contents: datagram,
                    segment_size: None,
                    src_ip: None,
                };
                if self.inner.try_send(&transmit).is_err() {
                    self.send_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

impl quinn::AsyncUdpSocket for RelaySocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn quinn::UdpPoller>> {
        Arc::clone(&self.inner).create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [io::IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(self.inner.poll_recv(cx, bufs, meta))?;
        for (buf, meta) in bufs.iter().zip(meta.iter_mut()).take(n) {
            if buf.first() == Some(&RELAYED_TAG) {
                self.pass_on(&buf[..meta.len], meta);
                // Nothing of it for quinn.
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
