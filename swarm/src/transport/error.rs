//! Transport errors, split by who is to blame: our configuration or system
//! (local), the peer (misbehaved, wrong key, incompatible), or the path
//! (timeout).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use minimodel_wire::PeerId;

use super::tls::{PeerIdentityError, TlsConfigError};
use super::tuning::TuningError;

/// A duration as people read it in a message: "10 s", "2.5 s", "0.25 s".
pub(crate) fn seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs >= 10.0 {
        format!("{secs:.0} s")
    } else if secs >= 1.0 {
        format!("{secs:.1} s")
    } else {
        format!("{secs:.2} s")
    }
}

/// The endpoint could not be set up. Always local: configuration, socket or
/// runtime.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A tuning value is out of range.
    #[error("invalid transport tuning: {0}")]
    Tuning(#[from] TuningError),
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    /// Creating, configuring or binding the UDP socket failed.
    #[error("UDP socket on {addr}: {action} failed: {source}")]
    Socket {
        /// The listen address.
        addr: SocketAddr,
        /// What was being done (`"bind"`, `"set SO_RCVBUF"`, ...).
        action: &'static str,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// Called outside a tokio runtime.
    #[error("the QUIC endpoint needs a running tokio runtime")]
    NoRuntime,
}

/// Dialing a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Local: a tuning value is out of range.
    #[error("invalid transport tuning: {0}")]
    Tuning(#[from] TuningError),
    /// Local: the TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    /// Local: the endpoint would not start the connection (it is shutting
    /// down, the address is unusable, ...).
    #[error("cannot dial {addr}: {source}")]
    Endpoint {
        /// The peer's address.
        addr: SocketAddr,
        /// What quinn said.
        #[source]
        source: quinn::ConnectError,
    },
    /// Local: the connection was closed on our side during the handshake.
    #[error("dialing {addr} was aborted locally: {source}")]
    Aborted {
        /// The peer's address.
        addr: SocketAddr,
        /// What quinn said.
        #[source]
        source: quinn::ConnectionError,
    },
    /// The peer proved a key other than the pinned one. The handshake was
    /// aborted before any application data moved.
    #[error(
        "{addr} is peer {presented}, not the expected peer {expected}; \
         connection refused before any data was exchanged"
    )]
    PeerIdMismatch {
        /// The peer's address.
        addr: SocketAddr,
        /// The id we pinned.
        expected: PeerId,
        /// The id whose key the peer presented.
        presented: PeerId,
    },
    /// The peer speaks no version of the piece protocol we do
    /// (`minimodel/3`, `minimodel/2`) over ALPN.
    #[error("{addr} speaks neither minimodel/3 nor minimodel/2 (no common ALPN protocol)")]
    NoCommonProtocol {
        /// The peer's address.
        addr: SocketAddr,
    },
    /// The peer broke TLS or QUIC: a malformed key, a bad signature, a
    /// protocol violation.
    #[error("{addr} broke the handshake: {source}")]
    PeerMisbehaved {
        /// The peer's address.
        addr: SocketAddr,
        /// What quinn detected.
        #[source]
        source: quinn::ConnectionError,
    },
    /// The peer closed or reset the connection during the handshake (for
    /// instance it refused our key, or it is shutting down).
    #[error("{addr} refused the connection: {source}")]
    Refused {
        /// The peer's address.
        addr: SocketAddr,
        /// How the peer closed it.
        #[source]
        source: quinn::ConnectionError,
    },
    /// No handshake within the time limit: nobody answers there, or the
    /// path drops packets.
    #[error("no handshake with {addr} after {}", seconds(*.after))]
    Timeout {
        /// The peer's address.
        addr: SocketAddr,
        /// How long we waited.
        after: Duration,
    },
}

impl ConnectError {
    /// True when the peer itself is at fault (wrong key, broken protocol):
    /// grounds to stop dialing it. Refusals and timeouts are not.
    pub fn is_peer_misbehaviour(&self) -> bool {
        matches!(
            self,
            ConnectError::PeerIdMismatch { .. } | ConnectError::PeerMisbehaved { .. }
        )
    }
}

/// Accepting an incoming connection failed.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// Local: a tuning value is out of range.
    #[error("invalid transport tuning: {0}")]
    Tuning(#[from] TuningError),
    /// Local: the TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    /// Local: the endpoint or the connection was closed on our side.
    #[error("accepting {addr} was aborted locally: {source}")]
    Aborted {
        /// The dialer's address.
        addr: SocketAddr,
        /// What quinn said.
        #[source]
        source: quinn::ConnectionError,
    },
    /// The dialer speaks neither `minimodel/3` nor `minimodel/2`.
    #[error("{addr} speaks neither minimodel/3 nor minimodel/2 (no common ALPN protocol)")]
    NoCommonProtocol {
        /// The dialer's address.
        addr: SocketAddr,
    },
    /// The dialer broke TLS or QUIC: a malformed key, a bad signature, a
    /// protocol violation.
    #[error("{addr} broke the handshake: {source}")]
    PeerMisbehaved {
        /// The dialer's address.
        addr: SocketAddr,
        /// What quinn detected.
        #[source]
        source: quinn::ConnectionError,
    },
    /// The dialer's key could not be read after the handshake.
    #[error("{addr}: {source}")]
    PeerIdentity {
        /// The dialer's address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: PeerIdentityError,
    },
    /// The dialer closed the connection during the handshake (for instance
    /// it expected another peer id).
    #[error("{addr} gave up the handshake: {source}")]
    Closed {
        /// The dialer's address.
        addr: SocketAddr,
        /// How the dialer closed it.
        #[source]
        source: quinn::ConnectionError,
    },
    /// No handshake within the time limit.
    #[error("no handshake with {addr} after {}", seconds(*.after))]
    Timeout {
        /// The dialer's address.
        addr: SocketAddr,
        /// How long we waited.
        after: Duration,
    },
}

impl AcceptError {
    /// True when the dialer itself is at fault (broken protocol).
    pub fn is_peer_misbehaviour(&self) -> bool {
        matches!(
            self,
            AcceptError::PeerMisbehaved { .. } | AcceptError::PeerIdentity { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_messages_read_as_seconds_without_debug_digits() {
        assert_eq!(seconds(Duration::from_nanos(10_001_187_673)), "10 s");
        assert_eq!(seconds(Duration::from_millis(2_540)), "2.5 s");
        assert_eq!(seconds(Duration::from_millis(250)), "0.25 s");
        let error = ConnectError::Timeout {
            addr: "127.0.0.1:4433".parse().unwrap(),
            after: Duration::from_nanos(10_001_187_673),
        };
        assert_eq!(
            error.to_string(),
            "no handshake with 127.0.0.1:4433 after 10 s"
        );
    }
}
