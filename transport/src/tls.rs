//! TLS for links: the crypto provider, and the verifiers that accept a peer
//! only if its certificate key is pinned and its handshake signature verifies.
//!
//! Both sides of every link present a certificate (mutual TLS 1.3). Session
//! resumption and early data are disabled, so every connection runs the
//! verifiers against the pinned set as it is at that moment.

use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::error::TransportError;
use crate::identity::{NodeIdentity, PeerId};
use crate::pins::PeerSet;
use crate::stats::LinkStats;

/// ALPN protocol id of mixnet links.
pub const ALPN: &[u8] = b"mixnet-link/1";

/// Server name used when dialing; peers are told apart by key, not by name.
pub(crate) const SERVER_NAME: &str = "mixnet-node";

/// The crypto provider of all links: rustls' aws-lc-rs provider, offering
/// only the hybrid post-quantum X25519MLKEM768 key exchange first and
/// X25519 as the classical fallback.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    use rustls::crypto::aws_lc_rs::{default_provider, kx_group};
    let mut provider = default_provider();
    provider.kx_groups = vec![kx_group::X25519MLKEM768, kx_group::X25519];
    Arc::new(provider)
}

/// Who may connect to this node's listening side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InboundPolicy {
    /// Only peers in the pinned set (the default for mix nodes).
    #[default]
    PinnedOnly,
    /// Extension point for gateways: any peer that proves possession of an
    /// Ed25519 key in the handshake is accepted; its [`PeerId`] is handed to
    /// the caller with every packet (`Received::pinned == false`) and the
    /// caller authenticates it by other means. Dialing out stays pinned-only.
    AcceptUnpinned,
}

fn reject(stats: &LinkStats) -> rustls::Error {
    stats.count_peer_rejected();
    rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure)
}

fn verify_ed25519_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
    }
    rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
}

fn tls12_refused() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::PeerIncompatible::Tls12NotOfferedOrEnabled.into())
}

/// Dialing side: accepts the server only if its certificate key is the
/// expected peer and that peer is pinned now.
#[derive(Debug)]
pub struct PinnedServerVerifier {
    expected: PeerId,
    pins: PeerSet,
    stats: Arc<LinkStats>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let peer = PeerId::from_certificate(end_entity)?;
        if !intermediates.is_empty() || peer != self.expected || !self.pins.contains(&peer) {
            return Err(reject(&self.stats));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_ed25519_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Listening side: requires a client certificate and accepts it only if its
/// key is pinned now (or, with [`InboundPolicy::AcceptUnpinned`], any
/// Ed25519 key whose handshake signature verifies).
#[derive(Debug)]
pub struct PinnedClientVerifier {
    pins: PeerSet,
    policy: InboundPolicy,
    stats: Arc<LinkStats>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PinnedClientVerifier {
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
    ) -> Result<ClientCertVerified, rustls::Error> {
        let peer = PeerId::from_certificate(end_entity)?;
        let allowed = match self.policy {
            InboundPolicy::PinnedOnly => self.pins.contains(&peer),
            InboundPolicy::AcceptUnpinned => true,
        };
        if !intermediates.is_empty() || !allowed {
            return Err(reject(&self.stats));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_ed25519_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

fn tls_error(e: impl std::error::Error + Send + Sync + 'static) -> TransportError {
    TransportError::Tls(Box::new(e))
}

/// QUIC server crypto for a node's listening side: presents `identity` and
/// verifies clients with [`PinnedClientVerifier`].
pub fn server_crypto(
    identity: &NodeIdentity,
    pins: PeerSet,
    policy: InboundPolicy,
    stats: Arc<LinkStats>,
) -> Result<Arc<QuicServerConfig>, TransportError> {
    let provider = identity.provider();
    let verifier = PinnedClientVerifier {
        pins,
        policy,
        stats,
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
            identity.certified_key(),
        )));
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    let quic = QuicServerConfig::try_from(config).map_err(tls_error)?;
    Ok(Arc::new(quic))
}

/// QUIC client crypto for dialing `expected`: presents `identity` and accepts
/// the server only through [`PinnedServerVerifier`].
pub fn client_crypto(
    identity: &NodeIdentity,
    expected: PeerId,
    pins: PeerSet,
    stats: Arc<LinkStats>,
) -> Result<Arc<QuicClientConfig>, TransportError> {
    let provider = identity.provider();
    let verifier = PinnedServerVerifier {
        expected,
        pins,
        stats,
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
            identity.certified_key(),
        )));
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    config.enable_early_data = false;
    let quic = QuicClientConfig::try_from(config).map_err(tls_error)?;
    Ok(Arc::new(quic))
}

/// The peer id of an established connection, read from its certificate.
pub fn connection_peer(connection: &quinn::Connection) -> Option<PeerId> {
    let identity = connection.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    PeerId::from_certificate(certs.first()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_prefers_hybrid_post_quantum_exchange() {
        let provider = crypto_provider();
        let first = provider.kx_groups.first().unwrap();
        assert_eq!(first.name(), rustls::NamedGroup::X25519MLKEM768);
        assert!(
            provider
                .kx_groups
                .iter()
                .all(|g| g.name() == rustls::NamedGroup::X25519MLKEM768
                    || g.name() == rustls::NamedGroup::X25519)
        );
    }
}

#[cfg(test)]
#[path = "tls_forgery_tests.rs"]
mod forgery_tests;
