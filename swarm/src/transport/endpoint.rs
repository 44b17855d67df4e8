//! QUIC endpoints: one UDP socket per process that listens and dials, or
//! one that only dials.
//!
//! [`bind_endpoint`] sets the socket buffers before quinn takes the socket,
//! installs the listener's TLS and transport config, and sizes the largest
//! UDP payload for loopback when the endpoint may talk to loopback peers. A
//! listener on `[::]` is dual-stack (it serves IPv4 and IPv6); one on a
//! specific address serves that address only.
//! [`bind_client_endpoint`] makes an endpoint with no server config at all,
//! for a node that does not serve: it accepts nothing and holds nothing for
//! anyone who sends it Initials; it is dual-stack (`[::]:0`), so one
//! endpoint dials IPv4 and IPv6 peers, and falls back to IPv4 (`0.0.0.0:0`)
//! on a host without IPv6.
//! [`connect`] dials one peer with its id pinned; [`connect_any`] dials an
//! address whose peer id is not known yet and returns the id the peer
//! proved; [`accept`] completes an incoming handshake and returns the
//! dialer's verified id. All give the path its own transport config:
//! loopback (large MTU) or not.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use minimodel_wire::{ALPNS, PeerAddr, PeerId};
use quinn::{ConnectionError, TransportErrorCode};
use socket2::{Domain, Protocol, Socket, Type};

use super::error::{AcceptError, ConnectError, TransportError};
use super::identity::Identity;
use super::paths::Paths;
use super::tls::{self, SERVER_NAME, TlsConfigError, negotiated_alpn, remote_peer_id};
use super::tuning::TransportTuning;

/// TLS alert `no_application_protocol` (RFC 8446 §6.2, RFC 7301 §3.2).
const ALERT_NO_APPLICATION_PROTOCOL: u8 = 120;

/// Application close code sent when a finished handshake fails our own
/// post-handshake check (wrong key or protocol that TLS let through).
const CLOSE_HANDSHAKE_CHECK: u32 = 1;

/// Binds a UDP socket on `listen` (port 0 picks a free port; read it back
/// with `endpoint.local_addr()`) and makes it a QUIC endpoint that accepts
/// connections as `identity` and can dial with [`connect`]. On `[::]` the
/// socket is dual-stack (`IPV6_V6ONLY` off): it serves and dials both
/// families. Must run inside a tokio runtime.
///
/// An endpoint made here queues every incoming attempt until it is
/// accepted: run an accept loop, or use [`bind_client_endpoint`].
pub fn bind_endpoint(
    listen: SocketAddr,
    identity: &Identity,
    tuning: &TransportTuning,
) -> Result<quinn::Endpoint, TransportError> {
    bind_endpoint_with_paths(listen, identity, tuning).map(|(endpoint, _)| endpoint)
}

/// [`bind_endpoint`], with the handle on its socket's opening packets and
/// relay paths ([`Paths`]).
pub fn bind_endpoint_with_paths(
    listen: SocketAddr,
    identity: &Identity,
    tuning: &TransportTuning,
) -> Result<(quinn::Endpoint, Paths), TransportError> {
    tuning.validate()?;
    let runtime = quinn::default_runtime().ok_or(TransportError::NoRuntime)?;
    let socket = bind_udp_socket(listen, tuning)?;
    let server_config = server_config(identity, tuning, listen.ip().is_loopback())?;
    new_endpoint(listen, socket, Some(server_config), tuning, runtime)
}

/// Makes a QUIC endpoint that only dials: it has no server config, so
/// quinn answers an incoming Initial with at most a (rate-limited, smaller)
/// stateless reset and keeps nothing of it. The socket is `[::]:0`,
/// dual-stack, so the endpoint dials IPv4 and IPv6 peers; where the host
/// has no IPv6 it is `0.0.0.0:0` (IPv4 peers only). Must run inside a tokio
/// runtime.
pub fn bind_client_endpoint(tuning: &TransportTuning) -> Result<quinn::Endpoint, TransportError> {
    bind_client_endpoint_with_paths(tuning).map(|(endpoint, _)| endpoint)
}

/// [`bind_client_endpoint`], with the handle on its socket's opening
/// packets and relay paths ([`Paths`]).
pub fn bind_client_endpoint_with_paths(
    tuning: &TransportTuning,
) -> Result<(quinn::Endpoint, Paths), TransportError> {
    tuning.validate()?;
    let runtime = quinn::default_runtime().ok_or(TransportError::NoRuntime)?;
    let (addr, socket) = dual_stack_or_ipv4(|addr| bind_udp_socket(addr, tuning))?;
    new_endpoint(addr, socket, None, tuning, runtime)
}

/// Binds `[::]:0` with `bind`, or `0.0.0.0:0` when that fails (no IPv6 on
/// the host); the error is the IPv4 one when both fail.
pub(crate) fn dual_stack_or_ipv4<T>(
    mut bind: impl FnMut(SocketAddr) -> Result<T, TransportError>,
) -> Result<(SocketAddr, T), TransportError> {
    let dual = SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0));
    if let Ok(bound) = bind(dual) {
        return Ok((dual, bound));
    }
    let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    bind(v4).map(|bound| (v4, bound))
}

fn new_endpoint(
    addr: SocketAddr,
    socket: std::net::UdpSocket,
    server_config: Option<quinn::ServerConfig>,
    tuning: &TransportTuning,
    runtime: Arc<dyn quinn::Runtime>,
) -> Result<(quinn::Endpoint, Paths), TransportError> {
    let endpoint_config = endpoint_config(addr, tuning)?;
    let registered = |source| TransportError::Socket {
        addr,
        action: "register with the runtime",
        source,
    };
    let (socket, paths) = Paths::wrap(socket, runtime.as_ref()).map_err(registered)?;
    let endpoint =
        quinn::Endpoint::new_with_abstract_socket(endpoint_config, server_config, socket, runtime)
            .map_err(registered)?;
    Ok((endpoint, paths))
}

/// The endpoint config of every endpoint bound at `addr`.
pub(crate) fn endpoint_config(
    addr: SocketAddr,
    tuning: &TransportTuning,
) -> Result<quinn::EndpointConfig, TransportError> {
    // An endpoint on a loopback or wildcard address may have loopback peers,
    // which send (and receive) datagrams up to the loopback MTU.
    let may_talk_loopback = addr.ip().is_loopback() || addr.ip().is_unspecified();
    let mut endpoint_config = quinn::EndpointConfig::default();
    endpoint_config
        .max_udp_payload_size(tuning.max_udp_payload(may_talk_loopback))
        .map_err(|_| {
            TransportError::Tuning(super::tuning::TuningError::Mtu {
                field: "loopback_mtu_discovery_upper_bound",
                value: tuning.max_udp_payload(may_talk_loopback),
            })
        })?;
    // Peers keep QUIC's fixed bit set in what they send us, so a datagram
    // whose first byte has it clear is never a QUIC packet: a relay
    // datagram, or an opening packet (`Paths`).
    endpoint_config.grease_quic_bit(false);
    Ok(endpoint_config)
}

/// Creates the UDP socket with its buffer sizes set before binding, so the
/// kernel never queues into a small default buffer. `[::]` is made
/// dual-stack.
pub(crate) fn bind_udp_socket(
    listen: SocketAddr,
    tuning: &TransportTuning,
) -> Result<std::net::UdpSocket, TransportError> {
    let fail = |action: &'static str| {
        move |source| TransportError::Socket {
            addr: listen,
            action,
            source,
        }
    };
    let socket = Socket::new(
        Domain::for_address(listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
    .map_err(fail("create"))?;
    if let SocketAddr::V6(v6) = listen
        && v6.ip().is_unspecified()
    {
        socket
            .set_only_v6(false)
            .map_err(fail("clear IPV6_V6ONLY"))?;
    }
    if let Some(bytes) = tuning.udp_receive_buffer {
        socket
            .set_recv_buffer_size(bytes)
            .map_err(fail("set SO_RCVBUF"))?;
    }
    if let Some(bytes) = tuning.udp_send_buffer {
        socket
            .set_send_buffer_size(bytes)
            .map_err(fail("set SO_SNDBUF"))?;
    }
    socket.bind(&listen.into()).map_err(fail("bind"))?;
    Ok(socket.into())
}

/// The address as its own family: an IPv4-mapped IPv6 address (what a
/// dual-stack socket reports for an IPv4 peer) becomes the IPv4 address.
pub fn canonical_addr(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The listener's quinn config for paths to loopback or not.
pub(super) fn server_config(
    identity: &Identity,
    tuning: &TransportTuning,
    loopback: bool,
) -> Result<quinn::ServerConfig, TlsConfigError> {
    let crypto = tls::server_crypto(identity)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(tuning.transport_config(loopback)));
    Ok(config)
}

/// Dials `peer` from `endpoint` as `identity` and completes the handshake.
///
/// The peer must prove the key `peer.id`; any other key aborts the
/// handshake before application data and gives
/// [`ConnectError::PeerIdMismatch`] naming both ids.
pub async fn connect(
    endpoint: &quinn::Endpoint,
    peer: &PeerAddr,
    identity: &Identity,
    tuning: &TransportTuning,
) -> Result<quinn::Connection, ConnectError> {
    tuning.validate()?;
    let (crypto, verifier) = tls::client_crypto(identity, Some(peer.id))?;
    let (connection, _) = dial(
        endpoint,
        peer.addr,
        Some(peer.id),
        tuning,
        crypto,
        &verifier,
        &ALPNS,
    )
    .await?;
    Ok(connection)
}

/// Dials `addr`, whose peer id is not known yet (a peer found on a DHT),
/// and returns the connection with the [`PeerId`] the peer proved.
///
/// The peer must present exactly one raw Ed25519 public key and prove it
/// with a valid signature, as with [`connect`]; only the comparison with an
/// expected id is left to the caller, who learns the id here (and may ban
/// it, or close the connection when it is not a peer it wants).
pub async fn connect_any(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    identity: &Identity,
    tuning: &TransportTuning,
) -> Result<(quinn::Connection, PeerId), ConnectError> {
    tuning.validate()?;
    let (crypto, verifier) = tls::client_crypto(identity, None)?;
    dial(endpoint, addr, None, tuning, crypto, &verifier, &ALPNS).await
}

/// Dials a relay at `addr` (ALPN `minimodel-relay/1`, `docs/relay.md`)
/// with its id pinned when `expected` names one, and returns the
/// connection with the id the relay proved.
pub async fn connect_relay(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    expected: Option<PeerId>,
    identity: &Identity,
    tuning: &TransportTuning,
) -> Result<(quinn::Connection, PeerId), ConnectError> {
    tuning.validate()?;
    let (crypto, verifier) = tls::client_crypto_with_alpn(
        identity,
        expected,
        vec![minimodel_wire::relay::RELAY_ALPN.to_vec()],
    )?;
    dial(
        endpoint,
        addr,
        expected,
        tuning,
        crypto,
        &verifier,
        &[minimodel_wire::relay::RELAY_ALPN],
    )
    .await
}

/// [`connect`] and [`connect_any`] after the TLS config is built (tests use
/// their own ALPN): the connection must settle on one of `alpns`. Returns the
/// connection and the peer's proven id.
pub(crate) async fn dial(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    expected: Option<PeerId>,
    tuning: &TransportTuning,
    crypto: quinn::crypto::rustls::QuicClientConfig,
    verifier: &tls::ServerKeyVerifier,
    alpns: &[&[u8]],
) -> Result<(quinn::Connection, PeerId), ConnectError> {
    let addr = canonical_addr(addr);
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(tuning.transport_config(addr.ip().is_loopback())));
    let started = Instant::now();
    let connecting = endpoint
        .connect_with(config, addr, SERVER_NAME)
        .map_err(|source| ConnectError::Endpoint { addr, source })?;
    let connection = match tokio::time::timeout(tuning.handshake_timeout, connecting).await {
        Err(_elapsed) => {
            return Err(ConnectError::Timeout {
                addr,
                after: started.elapsed(),
            });
        }
        Ok(Err(error)) => {
            // The verifier saw the key even if the error says little.
            if let (Some(expected), Some(presented)) = (expected, verifier.presented())
                && presented != expected
            {
                return Err(ConnectError::PeerIdMismatch {
                    addr,
                    expected,
                    presented,
                });
            }
            return Err(classify_connect_error(addr, error, started));
        }
        Ok(Ok(connection)) => connection,
    };
    // rustls has enforced both already; these checks keep it that way if a
    // configuration change ever loosened them.
    let presented = match remote_peer_id(&connection) {
        Ok(presented) => presented,
        Err(_) => {
            connection.close(CLOSE_HANDSHAKE_CHECK.into(), b"peer id");
            return Err(ConnectError::PeerMisbehaved {
                addr,
                source: ConnectionError::LocallyClosed,
            });
        }
    };
    if let Some(expected) = expected
        && presented != expected
    {
        connection.close(CLOSE_HANDSHAKE_CHECK.into(), b"peer id");
        return Err(ConnectError::PeerIdMismatch {
            addr,
            expected,
            presented,
        });
    }
    if !settled_on(&connection, alpns) {
        connection.close(CLOSE_HANDSHAKE_CHECK.into(), b"alpn");
        return Err(ConnectError::NoCommonProtocol { addr });
    }
    Ok((connection, presented))
}

fn classify_connect_error(
    addr: SocketAddr,
    error: ConnectionError,
    started: Instant,
) -> ConnectError {
    if is_no_common_protocol(&error) {
        return ConnectError::NoCommonProtocol { addr };
    }
    match error {
        ConnectionError::TimedOut => ConnectError::Timeout {
            addr,
            after: started.elapsed(),
        },
        ConnectionError::TransportError(_) => ConnectError::PeerMisbehaved {
            addr,
            source: error,
        },
        ConnectionError::ConnectionClosed(_)
        | ConnectionError::ApplicationClosed(_)
        | ConnectionError::Reset
        | ConnectionError::VersionMismatch => ConnectError::Refused {
            addr,
            source: error,
        },
        ConnectionError::LocallyClosed | ConnectionError::CidsExhausted => ConnectError::Aborted {
            addr,
            source: error,
        },
    }
}

/// Completes an incoming connection (from `endpoint.accept().await`) and
/// returns it with the dialer's verified [`PeerId`], the key to ban by.
///
/// The path gets the loopback transport config when the dialer is on a
/// loopback address (an IPv4-mapped one on a dual-stack listener too). A dialer that offers neither `minimodel/3` nor `minimodel/2`, without a raw
/// Ed25519 key or with a bad signature is refused during the handshake.
pub async fn accept(
    incoming: quinn::Incoming,
    identity: &Identity,
    tuning: &TransportTuning,
) -> Result<(quinn::Connection, PeerId), AcceptError> {
    accept_with_alpn(incoming, identity, tuning, &ALPNS).await
}

/// [`accept`] on a relay (ALPN `minimodel-relay/1`, `docs/relay.md`): the
/// node must prove its key, which is its id at the relay.
pub async fn accept_relay(
    incoming: quinn::Incoming,
    identity: &Identity,
    tuning: &TransportTuning,
) -> Result<(quinn::Connection, PeerId), AcceptError> {
    accept_with_alpn(
        incoming,
        identity,
        tuning,
        &[minimodel_wire::relay::RELAY_ALPN],
    )
    .await
}

async fn accept_with_alpn(
    incoming: quinn::Incoming,
    identity: &Identity,
    tuning: &TransportTuning,
    alpns: &[&[u8]],
) -> Result<(quinn::Connection, PeerId), AcceptError> {
    tuning.validate()?;
    let addr = canonical_addr(incoming.remote_address());
    let crypto = tls::server_crypto_with_alpn(identity, alpns)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(tuning.transport_config(addr.ip().is_loopback())));
    let started = Instant::now();
    // quinn reads the ClientHello here, so a refused ALPN already fails.
    let connecting = incoming
        .accept_with(Arc::new(config))
        .map_err(|error| classify_accept_error(addr, error, started))?;
    let connection = match tokio::time::timeout(tuning.handshake_timeout, connecting).await {
        Err(_elapsed) => {
            return Err(AcceptError::Timeout {
                addr,
                after: started.elapsed(),
            });
        }
        Ok(Err(error)) => return Err(classify_accept_error(addr, error, started)),
        Ok(Ok(connection)) => connection,
    };
    if !settled_on(&connection, alpns) {
        connection.close(CLOSE_HANDSHAKE_CHECK.into(), b"alpn");
        return Err(AcceptError::NoCommonProtocol { addr });
    }
    match remote_peer_id(&connection) {
        Ok(peer_id) => Ok((connection, peer_id)),
        Err(source) => {
            connection.close(CLOSE_HANDSHAKE_CHECK.into(), b"peer id");
            Err(AcceptError::PeerIdentity { addr, source })
        }
    }
}

fn classify_accept_error(
    addr: SocketAddr,
    error: ConnectionError,
    started: Instant,
) -> AcceptError {
    if is_no_common_protocol(&error) {
        return AcceptError::NoCommonProtocol { addr };
    }
    match error {
        ConnectionError::TimedOut => AcceptError::Timeout {
            addr,
            after: started.elapsed(),
        },
        ConnectionError::TransportError(_) => AcceptError::PeerMisbehaved {
            addr,
            source: error,
        },
        ConnectionError::ConnectionClosed(_)
        | ConnectionError::ApplicationClosed(_)
        | ConnectionError::Reset
        | ConnectionError::VersionMismatch => AcceptError::Closed {
            addr,
            source: error,
        },
        ConnectionError::LocallyClosed | ConnectionError::CidsExhausted => AcceptError::Aborted {
            addr,
            source: error,
        },
    }
}

/// Whether the handshake settled on one of `alpns`.
fn settled_on(connection: &quinn::Connection, alpns: &[&[u8]]) -> bool {
    negotiated_alpn(connection).is_some_and(|alpn| alpns.contains(&alpn.as_slice()))
}

/// The piece protocol version a connection of ours speaks: the one its
/// ALPN names (`connect`, `connect_any` and `accept` allow no other). A
/// connection that negotiated none of ours (a relay's) reads as v2, which
/// sends nothing v3 adds.
pub fn protocol_version(connection: &quinn::Connection) -> u16 {
    negotiated_alpn(connection)
        .and_then(|alpn| minimodel_wire::protocol_version_of(&alpn))
        .unwrap_or(2)
}

/// Whether the handshake failed on ALPN, detected by either side.
fn is_no_common_protocol(error: &ConnectionError) -> bool {
    let no_alpn = TransportErrorCode::crypto(ALERT_NO_APPLICATION_PROTOCOL);
    match error {
        ConnectionError::TransportError(local) => local.code == no_alpn,
        ConnectionError::ConnectionClosed(close) => close.error_code == no_alpn,
        _ => false,
    }
}
