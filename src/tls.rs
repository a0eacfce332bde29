//! TLS for the listeners (the gateway's `[tls]`, seed 000, and HTTP's `[http.tls]`): the settings,
//! the server's certificate chain and key, and with
//! `root_ca_path`, mutual TLS — every client must present a certificate that chains to that CA and
//! is valid now, or the handshake fails — and what a verified client certificate says about its
//! holder ([`PeerCertificate`]). Reads PEM files; never logs key material.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// `[tls]` or `[http.tls]`, checked: the certificate chain and key, and for mutual TLS the CA that
/// client certificates must chain to, and whether a verified certificate maps to a user.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub root_ca_path: Option<PathBuf>,
    pub verify_and_map: bool,
}

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

/// Who a verified client certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// The subject DN as RFC 4514 writes it (most specific first: `CN=app,O=Org`), as nats-server
    /// shows it.
    pub subject: String,
    /// Email, DNS and URI subject alternative names, in that order.
    pub sans: Vec<String>,
}

impl PeerCertificate {
    /// Reads the end-entity certificate of a verified chain; `None` when it does not parse.
    pub fn parse(der: &[u8]) -> Option<PeerCertificate> {
        use x509_parser::extensions::GeneralName;
        let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
        let mut rdns: Vec<String> = certificate
            .subject()
            .iter_rdn()
            .map(|rdn| {
                let attributes = rdn.iter().map(|attribute| {
                    let oid = attribute.attr_type();
                    let name = x509_parser::objects::oid2abbrev(oid, x509_parser::objects::oid_registry())
                        .map_or_else(|_| oid.to_id_string(), str::to_owned);
                    let value = attribute.as_str().map_or_else(|_| String::new(), rfc4514_escape);
                    format!("{name}={value}")
                });
                attributes.collect::<Vec<_>>().join("+")
            })
            .collect();
        rdns.reverse();
        let mut by_kind: [Vec<String>; 3] = Default::default();
        if let Ok(Some(names)) = certificate.subject_alternative_name() {
            for name in &names.value.general_names {
                match name {
                    GeneralName::RFC822Name(email) => by_kind[0].push(email.to_string()),
                    GeneralName::DNSName(dns) => by_kind[1].push(dns.to_string()),
                    GeneralName::URI(uri) => by_kind[2].push(uri.to_string()),
                    _ => {}
                }
            }
        }
        Some(PeerCertificate { subject: rdns.join(","), sans: by_kind.concat() })
    }
}

/// `value` escaped for an RFC 4514 DN string.
fn rfc4514_escape(value: &str) -> String {
    let last = value.chars().count().saturating_sub(1);
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_gives_its_subject_most_specific_first_and_its_sans() {
        let mut params = rcgen::CertificateParams::new(vec!["device.example".to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "Fleet, Inc");
        params.distinguished_name.push(rcgen::DnType::CommonName, "device-7");
        params.subject_alt_names.push(rcgen::SanType::Rfc822Name("ops@example.com".try_into().unwrap()));
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        let peer = PeerCertificate::parse(certificate.der()).unwrap();
        assert_eq!(peer.subject, "CN=device-7,O=Fleet\\, Inc");
        assert_eq!(peer.sans, ["ops@example.com", "device.example"]);
        assert_eq!(rfc4514_escape(" #x "), "\\ #x\\ ");
        assert_eq!(PeerCertificate::parse(b"not a certificate"), None);
    }
}
