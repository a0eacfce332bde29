//! A throwaway PKI for the mutual TLS tests, written as PEM files: a CA, a server certificate for
//! 127.0.0.1, two client certificates it signed (`client` and `stranger`), one signed by another
//! CA, and an expired one.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// Where each PEM file is.
pub struct Pki {
    pub ca: PathBuf,
    pub server: (PathBuf, PathBuf),
    pub client: (PathBuf, PathBuf),
    pub stranger: (PathBuf, PathBuf),
    pub untrusted: (PathBuf, PathBuf),
    pub expired: (PathBuf, PathBuf),
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA certificate")
}

/// Writes a certificate for `names` signed by `issuer` to `dir/stem.pem` and its key beside it.
fn issue(
    dir: &Path,
    stem: &str,
    names: &[&str],
    issuer: &CertifiedIssuer<'static, KeyPair>,
    expired: bool,
) -> (PathBuf, PathBuf) {
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
    params.distinguished_name.push(DnType::CommonName, stem);
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().expect("key");
    let certificate = params.signed_by(&key, issuer).expect("certificate");
    let (cert_path, key_path) = (dir.join(format!("{stem}.pem")), dir.join(format!("{stem}-key.pem")));
    std::fs::write(&cert_path, certificate.pem()).expect("write certificate");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (cert_path, key_path)
}

/// Creates the PKI under `dir`.
pub fn pki(dir: &Path) -> Pki {
    let (trusted, other) = (ca("Eventyard Test CA"), ca("Someone Else's CA"));
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, trusted.pem()).expect("write CA");
    Pki {
        ca: ca_path,
        server: issue(dir, "server", &["127.0.0.1", "localhost"], &trusted, false),
        client: issue(dir, "client", &[], &trusted, false),
        stranger: issue(dir, "stranger", &[], &trusted, false),
        untrusted: issue(dir, "untrusted", &[], &other, false),
        expired: issue(dir, "expired", &[], &trusted, true),
    }
}
