//! TLS 1.3 with raw public keys (RFC 7250) on both sides.
//!
//! There are no certificates: each side presents its Ed25519 key as a DER
//! SPKI and proves possession with a CertificateVerify signature. The dialer
//! pins the key it expects ([`ServerKeyVerifier`]): another key aborts the
//! handshake before any application data; a dialer that knows only an
//! address (a peer found on a DHT) pins nothing and learns the proven key.
//! The listener accepts any key
//! ([`AnyClientKey`]) but checks its signature; the swarm reads the key with
//! [`remote_peer_id`] and bans by it.
//!
//! Fixed choices: TLS 1.3 only, ALPN `minimodel/3` or `minimodel/2` on both
//! sides (the listener's order picks v3 when both offer it),
//! cipher suites AES-128-GCM (preferred: cheapest with AES-NI, and the one
//! QUIC initial packets use anyway), then AES-256-GCM, then ChaCha20-Poly1305;
//! X25519 key exchange; `ring` as provider. No session tickets, no
//! resumption, no 0-RTT: a resumed session would skip the key check, and a
//! handshake costs one round trip on connections that live for a whole
//! download. Server name indication is off (the name means nothing here).

use std::sync::{Arc, LazyLock, Mutex};

use minimodel_wire::{ALPNS, PeerId};
use quinn::crypto::rustls::{HandshakeData, QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{AlwaysResolvesClientRawPublicKeys, Resumption};
use rustls::crypto::{CryptoProvider, ring as ring_provider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{AlwaysResolvesServerRawPublicKeys, NoServerSessionStorage};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error as TlsError, OtherError,
    PeerMisbehaved, SignatureScheme,
};

use super::identity::Identity;
use super::spki::{SpkiError, parse_ed25519_spki};

/// The server name the dialer passes to quinn. SNI is disabled, so it never
/// leaves the process; raw-public-key verification ignores it.
pub(crate) const SERVER_NAME: &str = "minimodel";

/// Why the key of a connection's peer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerIdentityError {
    /// The handshake has not completed, so no key was verified.
    #[error("the connection has no verified peer key (handshake not complete)")]
    NotAuthenticated,
    /// The peer presented a chain instead of one raw public key.
    #[error("the peer presented {0} keys; exactly one raw public key is allowed")]
    KeyCount(usize),
    /// The presented key is not an Ed25519 SPKI.
    #[error(transparent)]
    Spki(#[from] SpkiError),
}

/// The verified key of the peer at the other end of an established
/// connection: for the listener, the dialer's id; for the dialer, the
/// pinned id it asked for.
pub fn remote_peer_id(connection: &quinn::Connection) -> Result<PeerId, PeerIdentityError> {
    let identity = connection
        .peer_identity()
        .ok_or(PeerIdentityError::NotAuthenticated)?;
    let keys = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| PeerIdentityError::NotAuthenticated)?;
    match keys.as_slice() {
        [key] => Ok(parse_ed25519_spki(key.as_ref())?),
        other => Err(PeerIdentityError::KeyCount(other.len())),
    }
}

/// The ALPN protocol the handshake settled on, if any.
pub(crate) fn negotiated_alpn(connection: &quinn::Connection) -> Option<Vec<u8>> {
    let data = connection.handshake_data()?;
    let data = data.downcast::<HandshakeData>().ok()?;
    data.protocol
}

/// The `ring` provider restricted to our suites and key exchange.
static PROVIDER: LazyLock<Arc<CryptoProvider>> = LazyLock::new(|| {
    use ring_provider::cipher_suite::{
        TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
    };
    Arc::new(CryptoProvider {
        cipher_suites: vec![
            TLS13_AES_128_GCM_SHA256,
            TLS13_AES_256_GCM_SHA384,
            TLS13_CHACHA20_POLY1305_SHA256,
        ],
        kx_groups: vec![ring_provider::kx_group::X25519],
        ..ring_provider::default_provider()
    })
});

/// A local TLS configuration error: never a peer's fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// rustls refused the configuration.
    #[error("rustls refused the TLS configuration: {0}")]
    Rustls(#[from] TlsError),
    /// The provider lacks the suite QUIC initial packets need.
    #[error("the TLS provider lacks TLS13_AES_128_GCM_SHA256, which QUIC needs")]
    NoInitialCipherSuite,
}

/// The listener's TLS config: presents `identity`, requires a client key.
pub(crate) fn server_crypto(identity: &Identity) -> Result<QuicServerConfig, TlsConfigError> {
    server_crypto_with_alpn(identity, &ALPNS)
}

/// [`server_crypto`] for another protocol on the same keys (the relay
/// protocol, `docs/relay.md`).
pub(crate) fn server_crypto_with_alpn(
    identity: &Identity,
    alpns: &[&[u8]],
) -> Result<QuicServerConfig, TlsConfigError> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::clone(&PROVIDER))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(AnyClientKey))
        .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(
            identity.certified_key(),
        )));
    // rustls takes the first of ours the client offers: the latest
    // version both speak.
    config.alpn_protocols = alpns.iter().map(|alpn| alpn.to_vec()).collect();
    // Our suite order (AES-128-GCM first) wins over the client's.
    config.ignore_client_order = true;
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.max_early_data_size = 0;
    QuicServerConfig::try_from(Arc::new(config)).map_err(|_| TlsConfigError::NoInitialCipherSuite)
}

/// The dialer's TLS config for one connection to `expected` (`None`: any
/// peer that proves its key), and the verifier, which records the key the
/// server presented.
pub(crate) fn client_crypto(
    identity: &Identity,
    expected: Option<PeerId>,
) -> Result<(QuicClientConfig, Arc<ServerKeyVerifier>), TlsConfigError> {
    client_crypto_with_alpn(
        identity,
        expected,
        ALPNS.iter().map(|alpn| alpn.to_vec()).collect(),
    )
}

/// [`client_crypto`] with a chosen ALPN list: the relay's, or in tests
/// one version alone, or none of ours, to check what the listener does.
pub(crate) fn client_crypto_with_alpn(
    identity: &Identity,
    expected: Option<PeerId>,
    alpn_protocols: Vec<Vec<u8>>,
) -> Result<(QuicClientConfig, Arc<ServerKeyVerifier>), TlsConfigError> {
    let verifier = Arc::new(ServerKeyVerifier::new(expected));
    // `dangerous()` is rustls's door to any verifier that is not WebPKI;
    // `ServerKeyVerifier` checks the key and the signature itself.
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&PROVIDER))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::clone(&verifier) as Arc<dyn ServerCertVerifier>)
        .with_client_cert_resolver(Arc::new(AlwaysResolvesClientRawPublicKeys::new(
            identity.certified_key(),
        )));
    config.alpn_protocols = alpn_protocols;
    config.enable_sni = false;
    config.resumption = Resumption::disabled();
    config.enable_early_data = false;
    let quic = QuicClientConfig::try_from(Arc::new(config))
        .map_err(|_| TlsConfigError::NoInitialCipherSuite)?;
    Ok((quic, verifier))
}

/// The dialer's verifier: accepts exactly one Ed25519 key, the pinned one
/// (or, with nothing pinned, any), and a valid Ed25519 signature by it.
#[derive(Debug)]
pub(crate) struct ServerKeyVerifier {
    expected: Option<PeerId>,
    /// The key the server presented, recorded even when it is refused, so
    /// the dialer can name it in its error.
    presented: Mutex<Option<PeerId>>,
}

/// The pinned key differs from the presented one; carried inside the rustls
/// error so that logs of the TLS layer say it too.
#[derive(Debug, thiserror::Error)]
#[error("peer presented key {presented}, expected {expected}")]
struct KeyMismatch {
    expected: PeerId,
    presented: PeerId,
}

impl ServerKeyVerifier {
    fn new(expected: Option<PeerId>) -> Self {
        ServerKeyVerifier {
            expected,
            presented: Mutex::new(None),
        }
    }

    /// The key the server presented, if it got that far.
    pub(crate) fn presented(&self) -> Option<PeerId> {
        match self.presented.lock() {
            Ok(guard) => *guard,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }
}

impl ServerCertVerifier for ServerKeyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let presented = parse_single_key(end_entity, intermediates)?;
        match self.presented.lock() {
            Ok(mut guard) => *guard = Some(presented),
            Err(poisoned) => *poisoned.into_inner() = Some(presented),
        }
        if let Some(expected) = self.expected
            && presented != expected
        {
            return Err(TlsError::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(KeyMismatch {
                    expected,
                    presented,
                })),
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        Err(TlsError::General("TLS 1.2 is never negotiated".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_ed25519_signature(message, cert, dss.scheme, dss.signature())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// The listener's verifier: any Ed25519 key, with a valid signature.
#[derive(Debug)]
pub(crate) struct AnyClientKey;

impl ClientCertVerifier for AnyClientKey {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, TlsError> {
        parse_single_key(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        Err(TlsError::General("TLS 1.2 is never negotiated".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_ed25519_signature(message, cert, dss.scheme, dss.signature())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// The one raw key a peer presented; a chain or a non-Ed25519 key is a
/// malformed certificate.
fn parse_single_key(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<PeerId, TlsError> {
    if !intermediates.is_empty() {
        return Err(TlsError::InvalidCertificate(CertificateError::BadEncoding));
    }
    parse_ed25519_spki(end_entity.as_ref())
        .map_err(|_| TlsError::InvalidCertificate(CertificateError::BadEncoding))
}

/// Checks a TLS 1.3 CertificateVerify: the scheme must be Ed25519 (the only
/// one we advertise) and the signature must verify under the raw key.
fn verify_ed25519_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    scheme: SignatureScheme,
    signature: &[u8],
) -> Result<HandshakeSignatureValid, TlsError> {
    if scheme != SignatureScheme::ED25519 {
        return Err(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
    }
    let key = parse_ed25519_spki(cert.as_ref())
        .map_err(|_| TlsError::InvalidCertificate(CertificateError::BadEncoding))?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key.as_bytes())
        .verify(message, signature)
        .map_err(|_| TlsError::InvalidCertificate(CertificateError::BadSignature))?;
    Ok(HandshakeSignatureValid::assertion())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::spki::ed25519_spki;

    fn der(bytes: &[u8]) -> CertificateDer<'static> {
        CertificateDer::from(bytes.to_vec())
    }

    #[test]
    fn pinned_verifier_records_and_refuses_another_key() {
        let expected = Identity::generate().unwrap().peer_id();
        let other = Identity::generate().unwrap().peer_id();
        let verifier = ServerKeyVerifier::new(Some(expected));
        let name = ServerName::try_from(SERVER_NAME).unwrap();
        let result = verifier.verify_server_cert(
            &der(&ed25519_spki(&other)),
            &[],
            &name,
            &[],
            UnixTime::now(),
        );
        assert!(matches!(
            result,
            Err(TlsError::InvalidCertificate(CertificateError::Other(_)))
        ));
        assert_eq!(verifier.presented(), Some(other));
        assert!(
            verifier
                .verify_server_cert(
                    &der(&ed25519_spki(&expected)),
                    &[],
                    &name,
                    &[],
                    UnixTime::now()
                )
                .is_ok()
        );
    }

    #[test]
    fn an_unpinned_verifier_takes_any_single_key_and_records_it() {
        let verifier = ServerKeyVerifier::new(None);
        let name = ServerName::try_from(SERVER_NAME).unwrap();
        let key = Identity::generate().unwrap().peer_id();
        let spki = der(&ed25519_spki(&key));
        assert!(
            verifier
                .verify_server_cert(&spki, &[], &name, &[], UnixTime::now())
                .is_ok()
        );
        assert_eq!(verifier.presented(), Some(key));
        // Still exactly one well-formed Ed25519 key.
        assert!(
            verifier
                .verify_server_cert(
                    &spki,
                    std::slice::from_ref(&spki),
                    &name,
                    &[],
                    UnixTime::now()
                )
                .is_err()
        );
        assert!(
            verifier
                .verify_server_cert(&der(&spki.as_ref()[1..]), &[], &name, &[], UnixTime::now())
                .is_err()
        );
    }

    #[test]
    fn a_chain_or_a_malformed_key_is_refused() {
        let key = der(&ed25519_spki(&Identity::generate().unwrap().peer_id()));
        assert!(parse_single_key(&key, &[]).is_ok());
        assert!(matches!(
            parse_single_key(&key, std::slice::from_ref(&key)),
            Err(TlsError::InvalidCertificate(CertificateError::BadEncoding))
        ));
        assert!(matches!(
            parse_single_key(&der(&key.as_ref()[1..]), &[]),
            Err(TlsError::InvalidCertificate(CertificateError::BadEncoding))
        ));
    }

    #[test]
    fn signature_check_accepts_the_key_owner_only() {
        let signer = Identity::generate().unwrap();
        let certified = signer.certified_key();
        let message = b"transcript hash stand-in";
        let scheme_signer = certified
            .key
            .choose_scheme(&[SignatureScheme::ED25519])
            .expect("ed25519 signer");
        let signature = scheme_signer.sign(message).unwrap();
        let ed25519 = SignatureScheme::ED25519;
        let own_key = der(&ed25519_spki(&signer.peer_id()));
        assert!(verify_ed25519_signature(message, &own_key, ed25519, &signature).is_ok());

        let other_key = der(&ed25519_spki(&Identity::generate().unwrap().peer_id()));
        assert!(matches!(
            verify_ed25519_signature(message, &other_key, ed25519, &signature),
            Err(TlsError::InvalidCertificate(CertificateError::BadSignature))
        ));
        assert!(
            verify_ed25519_signature(b"another message", &own_key, ed25519, &signature).is_err()
        );
        let mut flipped = signature.clone();
        flipped[0] ^= 1;
        assert!(verify_ed25519_signature(message, &own_key, ed25519, &flipped).is_err());

        let ecdsa = SignatureScheme::ECDSA_NISTP256_SHA256;
        assert!(matches!(
            verify_ed25519_signature(message, &own_key, ecdsa, &signature),
            Err(TlsError::PeerMisbehaved(_))
        ));
    }

    #[test]
    fn configs_build_with_tls13_and_alpn() {
        let identity = Identity::generate().unwrap();
        assert!(server_crypto(&identity).is_ok());
        assert!(client_crypto(&identity, Some(identity.peer_id())).is_ok());
        assert!(client_crypto(&identity, None).is_ok());
    }
}
