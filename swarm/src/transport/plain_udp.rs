//! The UDP socket quinn gets when the system refuses quinn-udp's socket
//! options: one datagram a call, each way, through the runtime's plain
//! `send_to` and `recv_from`.
//!
//! quinn-udp sets, before it hands out a socket, the options it reads
//! each datagram's destination address and ECN bits with and keeps IP
//! from fragmenting (`IP_PKTINFO`, `IP_RECVECN`, `IP_DONTFRAGMENT` and
//! their IPv6 twins on Windows). A system without one of them (Wine 8,
//! a stripped-down or older network stack) refuses it, and without this
//! socket no endpoint would open at all. What the plain socket gives up,
//! and why QUIC still works without it:
//! - no ECN: quinn sees no marks and reacts to loss alone, as on a path
//!   that bleaches them;
//! - no destination address: replies leave from the address the system
//!   picks, which on a host with one address per family is the same one;
//! - no "don't fragment": a datagram over the path's MTU may be
//!   fragmented instead of dropped; quinn's MTU discovery then settles on
//!   a size that gets through either way (fragments it cannot tell from
//!   whole datagrams only make it keep a larger size);
//! - no GSO or GRO: one datagram a system call, as quinn-udp does on a
//!   system without them.
//!
//! Whether to use it is decided once, when the socket is wrapped
//! ([`wrap_udp_socket`]): quinn-udp's socket when the system takes its
//! options, this one, with a warning naming the refusal, when it does not.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Runtime, UdpPoller};

/// Wraps `socket` for quinn: quinn-udp's socket (GSO, GRO, ECN, the
/// destination address) through `runtime`, or, when the system refuses
/// one of quinn-udp's options, a [`PlainUdp`] on the same socket. The
/// error is the plain socket's, when it too cannot be made (no runtime).
pub(crate) fn wrap_udp_socket(
    runtime: &dyn Runtime,
    socket: std::net::UdpSocket,
) -> io::Result<Arc<dyn AsyncUdpSocket>> {
    // quinn-udp takes the socket by value and drops it when it refuses;
    // a second handle on it keeps it open for the plain socket.
    let spare = socket.try_clone()?;
    match runtime.wrap_udp_socket(socket) {
        Ok(wrapped) => Ok(wrapped),
        Err(refused) => {
            let plain = PlainUdp::new(spare).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{e} (a plain socket, as quinn-udp's was refused: {refused})"),
                )
            })?;
            tracing::warn!(
                local = ?plain.local_addr().ok(),
                "the system refused a socket option quinn-udp sets ({refused}): this \
                 endpoint sends and receives one plain datagram a call, without ECN, \
                 GSO or GRO"
            );
            Ok(Arc::new(plain))
        }
    }
}

/// A UDP socket for quinn through tokio's `send_to` and `recv_from` alone.
pub(crate) struct PlainUdp {
    io: tokio::net::UdpSocket,
}

impl PlainUdp {
    /// Registers `socket` with the tokio runtime this runs in.
    pub(crate) fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        Ok(Self {
            io: tokio::net::UdpSocket::from_std(socket)?,
        })
    }
}

impl fmt::Debug for PlainUdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainUdp")
            .field("local", &self.io.local_addr().ok())
            .finish()
    }
}

/// Waits until the socket can send again. Each connection and the
/// endpoint have a poller of their own on the one socket, so each waits
/// through a future of its own (tokio's `writable`, which wakes every
/// waiter): `poll_send_ready` would wake only the last caller and leave
/// the others asleep.
struct Writable {
    socket: Arc<PlainUdp>,
    waiting: Option<Pin<Box<dyn Future<Output = io::Result<()>> + Send + Sync>>>,
}

impl fmt::Debug for Writable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writable")
            .field("socket", &self.socket)
            .field("waiting", &self.waiting.is_some())
            .finish()
    }
}

impl UdpPoller for Writable {
    fn poll_writable(mut self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let waiting = this.waiting.get_or_insert_with(|| {
            let socket = Arc::clone(&this.socket);
            Box::pin(async move { socket.io.writable().await })
        });
        let ready = waiting.as_mut().poll(cx);
        if ready.is_ready() {
            this.waiting = None;
        }
        ready
    }
}

impl AsyncUdpSocket for PlainUdp {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Writable {
            socket: self,
            waiting: None,
        })
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        // quinn asks for one segment a call (`max_transmit_segments`), but
        // a batch is still sent whole, a datagram at a time.
        let stride = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        for datagram in transmit.contents.chunks(stride) {
            match self.io.try_send_to(datagram, transmit.destination) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
                // As quinn-udp does: a datagram the system would not send
                // (no route, a message too long) is lost, as on the path;
                // QUIC's loss recovery covers it.
                Err(e) => {
                    tracing::debug!(to = %transmit.destination, "a datagram was not sent: {e}");
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(slot)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        loop {
            ready!(self.io.poll_recv_ready(cx))?;
            match self.io.try_recv_from(buf) {
                Ok((len, addr)) => {
                    *slot = RecvMeta {
                        addr,
                        len,
                        stride: len,
                        ecn: None,
                        dst_ip: None,
                    };
                    return Poll::Ready(Ok(1));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        1
    }

    fn may_fragment(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(bind: &str) -> Arc<PlainUdp> {
        let socket = std::net::UdpSocket::bind(bind).expect("bind loopback");
        Arc::new(PlainUdp::new(socket).expect("register with tokio"))
    }

    #[tokio::test]
    async fn a_batch_leaves_as_its_datagrams_and_each_arrives_with_its_sender() {
        let (a, b) = (plain("127.0.0.1:0"), plain("127.0.0.1:0"));
        let contents: Vec<u8> = (0..250u8).collect();
        let transmit = Transmit {
            destination: b.local_addr().unwrap(),
            ecn: None,
            contents: &contents,
            segment_size: Some(100),
            src_ip: None,
        };
        let mut writable = Arc::clone(&a).create_io_poller();
        std::future::poll_fn(|cx| writable.as_mut().poll_writable(cx))
            .await
            .unwrap();
        a.try_send(&transmit).unwrap();
        let mut got = Vec::new();
        for _ in 0..3 {
            let mut buf = [0u8; 1500];
            let mut meta = [RecvMeta::default()];
            let n = std::future::poll_fn(|cx| {
                b.poll_recv(cx, &mut [IoSliceMut::new(&mut buf)], &mut meta)
            })
            .await
            .unwrap();
            assert_eq!(n, 1);
            assert_eq!(meta[0].addr, a.local_addr().unwrap());
            assert_eq!(meta[0].stride, meta[0].len);
            got.push(buf[..meta[0].len].to_vec());
        }
        assert_eq!(
            got.iter().map(Vec::len).collect::<Vec<_>>(),
            [100, 100, 50],
            "three datagrams, the last one short"
        );
        assert_eq!(got.concat(), contents);
    }

    /// quinn over the plain socket on both sides: a handshake that proves
    /// the keys, and a stream of 4 MiB, each byte as sent.
    #[tokio::test]
    async fn quinn_runs_a_connection_over_plain_sockets() {
        use crate::transport::{Identity, TransportTuning, accept, connect};
        use minimodel_wire::PeerAddr;
        let tuning = TransportTuning::default();
        let runtime = quinn::default_runtime().expect("inside tokio");
        let server_id = Identity::generate().unwrap();
        let client_id = Identity::generate().unwrap();
        let endpoint = |server: Option<quinn::ServerConfig>| {
            let socket = plain("127.0.0.1:0");
            let addr = socket.local_addr().unwrap();
            let config = crate::transport::endpoint_config(addr, &tuning).expect("endpoint config");
            quinn::Endpoint::new_with_abstract_socket(config, server, socket, Arc::clone(&runtime))
                .expect("endpoint")
        };
        let server_config = super::super::endpoint::server_config(&server_id, &tuning, true)
            .expect("server config");
        let server = endpoint(Some(server_config));
        let client = endpoint(None);
        let peer = PeerAddr {
            id: server_id.peer_id(),
            addr: server.local_addr().unwrap(),
        };
        let body: Vec<u8> = (0..4u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
        let serve = tokio::spawn({
            let body = body.clone();
            let tuning = tuning.clone();
            async move {
                let incoming = server.accept().await.expect("an incoming connection");
                let (conn, dialer) = accept(incoming, &server_id, &tuning).await.expect("accept");
                let mut send = conn.open_uni().await.expect("stream");
                send.write_all(&body).await.expect("write");
                send.finish().expect("finish");
                conn.closed().await;
                dialer
            }
        });
        let conn = connect(&client, &peer, &client_id, &tuning)
            .await
            .expect("connect over plain sockets");
        let mut recv = conn.accept_uni().await.expect("stream");
        let got = recv.read_to_end(8 << 20).await.expect("read");
        assert!(
            got == body,
            "the stream arrives as sent ({} bytes)",
            got.len()
        );
        conn.close(0u32.into(), b"done");
        assert_eq!(
            serve.await.unwrap(),
            client_id.peer_id(),
            "the dialer proved its key"
        );
    }
}
