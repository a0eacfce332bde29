//! Authentication: the [`AuthPolicy`] role, the [`AuthRequest`] it judges and the [`Grant`] it gives.
//!
//! Native policies (token, user/password, TLS subject) and Wasm policies implement the same trait.
//! This module never parses a wire protocol and never logs a secret: [`AuthRequest`]'s `Debug`
//! redacts the token and password.

use std::fmt;

use async_trait::async_trait;

use crate::slot::Slot;

/// The protocol a client connects with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Nats,
    Http,
}

/// Everything known about a client when it connects.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthRequest {
    pub protocol: Protocol,
    /// The name the client gave itself, if any.
    pub client_name: Option<String>,
    pub user: Option<String>,
    pub token: Option<String>,
    pub password: Option<String>,
    /// Subject DN of the verified TLS client certificate.
    pub tls_subject: Option<String>,
    /// Subject alternative names of that certificate.
    pub tls_sans: Vec<String>,
    /// `ip:port` of the client.
    pub remote_addr: String,
}

impl fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("AuthRequest")
            .field("protocol", &self.protocol)
            .field("client_name", &self.client_name)
            .field("user", &self.user)
            .field("token", &redact(&self.token))
            .field("password", &redact(&self.password))
            .field("tls_subject", &self.tls_subject)
            .field("tls_sans", &self.tls_sans)
            .field("remote_addr", &self.remote_addr)
            .finish()
    }
}

/// Subject patterns a client may use; deny wins over allow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

/// What an accepted client may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The account the client belongs to; accounts isolate subjects.
    pub account: String,
    pub publish: Permissions,
    pub subscribe: Permissions,
}

/// A policy's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(Grant),
    /// Refused; the reason is for the host's log, never for the client.
    Deny(String),
}

/// Decides whether a client may connect and what it may do. A policy that cannot answer denies.
#[async_trait]
pub trait AuthPolicy: Send + Sync {
    async fn authorize(&self, request: &AuthRequest) -> Decision;
}

#[async_trait]
impl AuthPolicy for Slot<dyn AuthPolicy> {
    async fn authorize(&self, request: &AuthRequest) -> Decision {
        let (_, policy) = self.current();
        policy.authorize(request).await
    }
}

/// Compares secrets in a time that depends on neither how much of one matched nor their lengths:
/// both are hashed to 32 bytes first, and those compared without an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre") && !constant_time_eq(b"", b"x"));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let request = AuthRequest {
            protocol: Protocol::Nats,
            client_name: None,
            user: Some("alice".into()),
            token: Some("s3cret-token".into()),
            password: Some("hunter2".into()),
            tls_subject: None,
            tls_sans: vec![],
            remote_addr: "127.0.0.1:1".into(),
        };
        let shown = format!("{request:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("alice") && shown.contains("<redacted>"));
    }
}
