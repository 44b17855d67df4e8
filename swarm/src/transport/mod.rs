//! QUIC transport: peer identity, TLS with raw public keys, and a quinn
//! endpoint tuned for bulk transfer. Spec: `docs/transport.md`.
//!
//! What it is: everything below the piece protocol. A peer's identity is
//! its Ed25519 key ([`Identity`]), kept in an identity directory across
//! runs; its [`PeerId`](minimodel_wire::PeerId) is that public key. Peers
//! authenticate each other with TLS 1.3 raw public keys (RFC 7250), no
//! certificates: the dialer pins the id it expects ([`connect`]) or, knowing
//! only an address, learns the id the peer proves ([`connect_any`]); the
//! listener learns the dialer's id ([`accept`], [`remote_peer_id`]). A node
//! that does not serve dials from an endpoint with no server config
//! ([`bind_client_endpoint`]), which accepts nothing.
//! Each side offers ALPN `minimodel/3` and `minimodel/2`, and one of them
//! is required ([`protocol_version`] says which the connection speaks).
//!
//! What it is not: it knows no messages (that is `minimodel-wire`), no
//! pieces and no files. It opens connections; the swarm drives them.
//!
//! Invariants:
//! - no connection completes unless the peer proved the key the dialer
//!   pinned (or, with [`connect_any`], proved some key, which the caller
//!   gets); there is no option to skip the signature check, not even in
//!   tests;
//! - no TLS session resumption or 0-RTT, so every connection proves its key;
//! - every error says whose fault it is: local (config, socket), the peer
//!   (wrong key, broken protocol, incompatible), or the path (timeout).

mod close;
mod endpoint;
pub(crate) mod error;
mod identity;
pub mod oneway;
pub mod paths;
pub mod pathtrace;
mod plain_udp;
mod spki;
mod tls;
mod tuning;
pub mod yielding;

#[cfg(test)]
mod endpoint_tests;
#[cfg(test)]
mod gso_tests;

pub use close::Closing;
pub(crate) use endpoint::{bind_udp_socket, endpoint_config};
pub(crate) use plain_udp::wrap_udp_socket;

/// The relay's TLS config (`docs/relay.md`): its key, a client key
/// required, ALPN `minimodel-relay/1`.
pub(crate) fn relay_server_crypto(
    identity: &Identity,
) -> Result<quinn::crypto::rustls::QuicServerConfig, TlsConfigError> {
    tls::server_crypto_with_alpn(identity, &[minimodel_wire::relay::RELAY_ALPN])
}
pub use endpoint::{
    accept, accept_relay, bind_client_endpoint, bind_client_endpoint_with_paths, bind_endpoint,
    bind_endpoint_with_paths, canonical_addr, connect, connect_any, connect_relay,
    protocol_version,
};
pub use error::{AcceptError, ConnectError, TransportError};
pub use identity::{Identity, IdentityError, KEY_FILE_NAME};
pub use paths::{Paths, RelayPath, is_relay_path};
pub use spki::SpkiError;
pub use tls::{PeerIdentityError, TlsConfigError, remote_peer_id};
pub use tuning::{
    AckFrequency, CongestionControl, MAX_UDP_PAYLOAD, QUIC_MIN_MTU, TransportTuning, TuningError,
};
