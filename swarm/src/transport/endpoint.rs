//! The QUIC endpoint: one UDP socket that both listens and dials.
//!
//! [`bind_endpoint`] sets the socket buffers before quinn takes the socket,
//! installs the listener's TLS and transport config, and sizes the largest
//! UDP payload for loopback when the endpoint may talk to loopback peers.
//! [`connect`] dials one peer with its id pinned; [`accept`] completes an
//! incoming handshake and returns the dialer's verified id. Both give the
//! path its own transport config: loopback (large MTU) or not.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use minimodel_wire::{ALPN, PeerAddr, PeerId};
use quinn::{ConnectionError, TransportErrorCode};
use socket2::{Domain, Protocol, Socket, Type};

use super::error::{AcceptError, ConnectError, TransportError};
use super::identity::Identity;
use super::tls::{self, SERVER_NAME, TlsConfigError, negotiated_alpn, remote_peer_id};
use super::tuning::TransportTuning;

/// TLS alert `no_application_protocol` (RFC 8446 §6.2, RFC 7301 §3.2).
const ALERT_NO_APPLICATION_PROTOCOL: u8 = 120;

/// Application close code sent when a finished handshake fails our own
/// post-handshake check (wrong key or protocol that TLS let through).
const CLOSE_HANDSHAKE_CHECK: u32 = 1;

/// Binds a UDP socket on `listen` (port 0 picks a free port; read it back
/// with `endpoint.local_addr()`) and makes it a QUIC endpoint that accepts
/// connections as `identity` and can dial with [`connect`]. Must run inside
/// a tokio runtime.
pub fn bind_endpoint(
    listen: SocketAddr,
    identity: &Identity,
    tuning: &TransportTuning,
) -> Result<quinn::Endpoint, TransportError> {
    tuning.validate()?;
    let runtime = quinn::default_runtime().ok_or(TransportError::NoRuntime)?;
    let socket = bind_udp_socket(listen, tuning)?;
    // An endpoint on a loopback or wildcard address may have loopback peers,
    // which send (and receive) datagrams up to the loopback MTU.
    let may_talk_loopback = listen.ip().is_loopback() || listen.ip().is_unspecified();
    let mut endpoint_config = quinn::EndpointConfig::default();
    endpoint_config
        .max_udp_payload_size(tuning.max_udp_payload(may_talk_loopback))
        .map_err(|_| {
            TransportError::Tuning(super::tuning::TuningError::Mtu {
                field: "loopback_mtu_discovery_upper_bound",
                value: tuning.max_udp_payload(may_talk_loopback),
            })
        })?;
    let server_config = server_config(identity, tuning, listen.ip().is_loopback())?;
    quinn::Endpoint::new(endpoint_config, Some(server_config), socket, runtime).map_err(|source| {
        TransportError::Socket {
            addr: listen,
            action: "register with the runtime",
            source,
        }
    })
}

/// Creates the UDP socket with its buffer sizes set before binding, so the
/// kernel never queues into a small default buffer.
fn bind_udp_socket(
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

/// The listener's quinn config for paths to loopback or not.
fn server_config(
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
    let (crypto, verifier) = tls::client_crypto(identity, peer.id)?;
    dial(endpoint, peer, tuning, crypto, &verifier).await
}

/// [`connect`] after the TLS config is built (tests use their own ALPN).
pub(crate) async fn dial(
    endpoint: &quinn::Endpoint,
    peer: &PeerAddr,
    tuning: &TransportTuning,
    crypto: quinn::crypto::rustls::QuicClientConfig,
    verifier: &tls::PinnedServerKey,
) -> Result<quinn::Connection, ConnectError> {
    let addr = peer.addr;
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
            if let Some(presented) = verifier.presented()
                && presented != peer.id
            {
                return Err(ConnectError::PeerIdMismatch {
                    addr,
                    expected: peer.id,
                    presented,
                });
            }
            return Err(classify_connect_error(addr, error, started));
        }
        Ok(Ok(connection)) => connection,
    };
    // rustls has enforced both already; these checks keep it that way if a
    // configuration change ever loosened them.
    let presented = remote_peer_id(&connection).ok();
    if presented != Some(peer.id) {
        connection.close(CLOSE_HANDSHAKE_CHECK.into(), b"peer id");
        return Err(match presented {
            Some(presented) => ConnectError::PeerIdMismatch {
                addr,
                expected: peer.id,
                presented,
            },
            None => ConnectError::PeerMisbehaved {
                addr,
                source: ConnectionError::LocallyClosed,
            },
        });
    }
    if negotiated_alpn(&connection).as_deref() != Some(ALPN) {
        connection.close(CLOSE_HANDSHAKE_CHECK.into(), b"alpn");
        return Err(ConnectError::NoCommonProtocol { addr });
    }
    Ok(connection)
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
/// loopback address. A dialer without ALPN `minimodel/1`, without a raw
/// Ed25519 key or with a bad signature is refused during the handshake.
pub async fn accept(
    incoming: quinn::Incoming,
    identity: &Identity,
    tuning: &TransportTuning,
) -> Result<(quinn::Connection, PeerId), AcceptError> {
    tuning.validate()?;
    let addr = incoming.remote_address();
    let config = server_config(identity, tuning, addr.ip().is_loopback())?;
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
    if negotiated_alpn(&connection).as_deref() != Some(ALPN) {
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

/// Whether the handshake failed on ALPN, detected by either side.
fn is_no_common_protocol(error: &ConnectionError) -> bool {
    let no_alpn = TransportErrorCode::crypto(ALERT_NO_APPLICATION_PROTOCOL);
    match error {
        ConnectionError::TransportError(local) => local.code == no_alpn,
        ConnectionError::ConnectionClosed(close) => close.error_code == no_alpn,
        _ => false,
    }
}
