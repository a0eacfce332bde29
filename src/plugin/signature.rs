//! Signed plugins: an ed25519 signature over a component, detached beside it (`<file>.sig`) or
//! embedded as its last custom section (`eventyard-signature`). With `[plugins] trusted_keys`,
//! a component must carry a valid signature by one of them to load; without, a signature is only
//! reported (`plugin inspect`, the admin API). Verifies and signs; never decides anything else.
//!
//! What is signed: `eventyard-plugin-signature-v1\0` followed by the SHA-256 of the component's
//! bytes — the file's, or for an embedded signature, the file's before its signature section.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The custom section an embedded signature is.
pub const SECTION: &str = "eventyard-signature";

/// What is signed before the component's hash.
const DOMAIN: &[u8] = b"eventyard-plugin-signature-v1\0";

/// An ed25519 public key, written `ed25519:<base64>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey([u8; 32]);

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ed25519:{}", BASE64.encode(self.0))
    }
}

impl FromStr for PublicKey {
    type Err = String;

    fn from_str(text: &str) -> Result<PublicKey, String> {
        let encoded = text.strip_prefix("ed25519:").ok_or_else(|| format!("`{text}` is not `ed25519:<base64>`"))?;
        let bytes = BASE64.decode(encoded).map_err(|_| format!("`{text}`: not base64"))?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| format!("`{text}`: an ed25519 key is 32 bytes"))?;
        Ok(PublicKey(key))
    }
}

/// A signature as it is written, detached or embedded: who signed, and the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    key: String,
    signature: String,
}

/// Where a component's signature was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    Embedded,
    Detached,
}

/// A valid signature: the key that made it and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub key: PublicKey,
    pub placement: Placement,
}

impl fmt::Display for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let placement = match self.placement {
            Placement::Embedded => "embedded",
            Placement::Detached => "detached",
        };
        write!(f, "{} ({placement})", self.key)
    }
}

/// Why a component's signature does not stand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("it is not signed (trusted keys are configured)")]
    Unsigned,
    #[error("its signature is unreadable: {0}")]
    Unreadable(String),
    #[error("its signature by {0} does not match its content (changed after signing?)")]
    Mismatch(PublicKey),
    #[error("it is signed by {0}, which is not one of [plugins] trusted_keys")]
    Untrusted(PublicKey),
}

/// A signing key: an ed25519 key pair in a PKCS#8 document.
pub struct SigningKey(Ed25519KeyPair);

impl SigningKey {
    /// A new key pair, and its PKCS#8 document to keep (the private key: keep it secret).
    pub fn generate() -> Result<(SigningKey, Vec<u8>), String> {
        let random = ring::rand::SystemRandom::new();
        let document = Ed25519KeyPair::generate_pkcs8(&random).map_err(|_| "no randomness for a new key")?;
        let key = SigningKey::from_pkcs8(document.as_ref())?;
        Ok((key, document.as_ref().to_vec()))
    }

    pub fn from_pkcs8(document: &[u8]) -> Result<SigningKey, String> {
        Ed25519KeyPair::from_pkcs8(document).map(SigningKey).map_err(|err| format!("not an ed25519 key: {err}"))
    }

    pub fn public_key(&self) -> PublicKey {
        let mut key = [0; 32];
        key.copy_from_slice(self.0.public_key().as_ref());
        PublicKey(key)
    }

    fn sign(&self, content: &[u8]) -> Written {
        Written { key: self.public_key().to_string(), signature: BASE64.encode(self.0.sign(&message(content))) }
    }

    /// The detached signature of `component`, the text of its `.sig` file.
    pub fn detached(&self, component: &[u8]) -> String {
        toml::to_string(&self.sign(component)).unwrap_or_default()
    }

    /// `component` with its signature embedded as its last section (any signature it had
    /// embedded is replaced).
    pub fn embed(&self, component: &[u8]) -> Vec<u8> {
        let content = embedded(component).map_or(component, |(content, _)| content);
        let payload = toml::to_string(&self.sign(content)).unwrap_or_default();
        let mut section = Vec::new();
        leb128(&mut section, SECTION.len());
        section.extend_from_slice(SECTION.as_bytes());
        section.extend_from_slice(payload.as_bytes());
        let mut signed = content.to_vec();
        signed.push(0);
        leb128(&mut signed, section.len());
        signed.extend_from_slice(&section);
        signed
    }
}

fn message(content: &[u8]) -> Vec<u8> {
    let mut message = DOMAIN.to_vec();
    message.extend_from_slice(&Sha256::digest(content));
    message
}

fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The component's signature section, when it ends the file: the bytes before it, and its payload.
fn embedded(component: &[u8]) -> Option<(&[u8], &[u8])> {
    wasmparser::Parser::new(0).parse_all(component).find_map(|payload| match payload {
        Ok(wasmparser::Payload::CustomSection(section))
            if section.name() == SECTION && section.data_offset() + section.data().len() == component.len() =>
        {
            let mut header = Vec::new();
            let mut contents = Vec::new();
            leb128(&mut contents, SECTION.len());
            let size = contents.len() + SECTION.len() + section.data().len();
            header.push(0);
            leb128(&mut header, size);
            let start = component.len().checked_sub(header.len() + size)?;
            (component.get(start..start + header.len()) == Some(header.as_slice()))
                .then(|| (&component[..start], section.data()))
        }
        _ => None,
    })
}

/// Who signed `component`, checking the signature: an embedded one, else `detached` (the text of
/// its `.sig` file); `None` when it has neither.
pub fn signer(component: &[u8], detached: Option<&str>) -> Result<Option<Signer>, SignatureError> {
    let (content, text, placement) = match (embedded(component), detached) {
        (Some((content, payload)), _) => {
            let text = std::str::from_utf8(payload).map_err(|_| SignatureError::Unreadable("not text".into()))?;
            (content, text, Placement::Embedded)
        }
        (None, Some(text)) => (component, text, Placement::Detached),
        (None, None) => return Ok(None),
    };
    let written: Written = toml::from_str(text).map_err(|err| SignatureError::Unreadable(err.message().to_owned()))?;
    let key: PublicKey = written.key.parse().map_err(SignatureError::Unreadable)?;
    let signature = BASE64
        .decode(&written.signature)
        .map_err(|_| SignatureError::Unreadable("the signature is not base64".into()))?;
    UnparsedPublicKey::new(&ED25519, key.0)
        .verify(&message(content), &signature)
        .map_err(|_| SignatureError::Mismatch(key))?;
    Ok(Some(Signer { key, placement }))
}

/// Checks `component` may load under `trusted` keys: with none, anything may (a bad signature
/// included: it is reported, not enforced); with some, only a valid signature by one of them.
pub fn check(
    component: &[u8],
    detached: Option<&str>,
    trusted: &[PublicKey],
) -> Result<Option<Signer>, SignatureError> {
    let signer = signer(component, detached);
    if trusted.is_empty() {
        return Ok(signer.ok().flatten());
    }
    match signer? {
        None => Err(SignatureError::Unsigned),
        Some(signer) if trusted.contains(&signer.key) => Ok(Some(signer)),
        Some(signer) => Err(SignatureError::Untrusted(signer.key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component: the preamble alone.
    const COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

    #[test]
    fn a_signature_holds_for_its_component_and_no_other() {
        let (key, _) = SigningKey::generate().expect("a key");
        let other = SigningKey::generate().expect("a key").0.public_key();
        let trusted = [key.public_key()];
        let detached = key.detached(COMPONENT);
        let signer = check(COMPONENT, Some(&detached), &trusted).expect("signed");
        assert_eq!(signer, Some(Signer { key: key.public_key(), placement: Placement::Detached }));
        let embedded = key.embed(COMPONENT);
        assert!(wasmparser::Parser::is_component(&embedded));
        let signer = check(&embedded, None, &trusted).expect("signed");
        assert_eq!(signer.map(|s| s.placement), Some(Placement::Embedded));
        assert_eq!(key.embed(&embedded), embedded, "signing again replaces the signature");

        let mut tampered = COMPONENT.to_vec();
        tampered.push(0);
        assert_eq!(check(&tampered, Some(&detached), &trusted), Err(SignatureError::Mismatch(key.public_key())));
        assert_eq!(check(COMPONENT, None, &trusted), Err(SignatureError::Unsigned));
        assert_eq!(check(COMPONENT, Some(&detached), &[other]), Err(SignatureError::Untrusted(key.public_key())));
        assert!(matches!(check(COMPONENT, Some("key = 1"), &trusted), Err(SignatureError::Unreadable(_))));
        assert_eq!(check(&tampered, Some(&detached), &[]), Ok(None), "without trusted keys nothing is enforced");
    }

    #[test]
    fn public_keys_read_as_they_are_written() {
        let key = SigningKey::generate().expect("a key").0.public_key();
        assert_eq!(key.to_string().parse::<PublicKey>(), Ok(key));
        assert!("ed25519:AAAA".parse::<PublicKey>().is_err());
        assert!("rsa:AAAA".parse::<PublicKey>().is_err());
    }
}
