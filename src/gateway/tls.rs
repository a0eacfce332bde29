//! TLS for the gateway from `[tls]` (seed 000): the server's certificate chain and key, and with
//! `root_ca_path`, mutual TLS — every client must present a certificate that chains to that CA and
//! is valid now, or the handshake fails. Reads PEM files; never logs key material.

use std::sync::Arc;

use anyhow::Context as _;
use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsSettings;

/// The acceptor `tls` describes.
pub fn acceptor(tls: &TlsSettings) -> anyhow::Result<TlsAcceptor> {
    let certificates = CertificateDer::pem_file_iter(&tls.cert_path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("reading the certificate chain {}", tls.cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_path)
        .with_context(|| format!("reading the private key {}", tls.key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?;
    let builder = match &tls.root_ca_path {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for certificate in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("reading the client CA {}", path.display()))?
            {
                let certificate = certificate.with_context(|| format!("reading the client CA {}", path.display()))?;
                roots.add(certificate).with_context(|| format!("the client CA {}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("building the client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(certificates, key).context("the certificate does not match its key")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
