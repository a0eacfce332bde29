//! `eventyard plugin keygen` and `eventyard plugin sign`: an ed25519 key pair for signing plugins,
//! and a component's signature, detached beside it (`<file>.sig`) or embedded in it. The router
//! checks them against `[plugins] trusted_keys` ([`crate::plugin::signature`]).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::Failure;
use crate::plugin::signature::{self, SigningKey};

/// Writes a new key pair: the private key (base64 PKCS#8, readable by its owner only) to `out`,
/// the public key to `out.pub`; prints the public key for `trusted_keys`.
pub(crate) fn keygen(out: &Path) -> Result<(), Failure> {
    if out.exists() {
        return Err(Failure::input(format!("{} exists: a key is never overwritten", out.display())));
    }
    let (key, document) = SigningKey::generate().map_err(Failure::plugin)?;
    write_private(out, &format!("{}\n", BASE64.encode(document)))?;
    let public = key.public_key().to_string();
    let public_file = with_suffix(out, ".pub");
    std::fs::write(&public_file, format!("{public}\n"))
        .map_err(|err| Failure::input(format!("cannot write {}: {err}", public_file.display())))?;
    println!("private key: {} (keep it secret)", out.display());
    println!("public key:  {public}");
    println!("trust it with [plugins] trusted_keys = [\"{public}\"]");
    Ok(())
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> Result<(), Failure> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| Failure::input(format!("cannot write {}: {err}", path.display())))?;
    file.write_all(text.as_bytes()).map_err(|err| Failure::input(format!("cannot write {}: {err}", path.display())))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Signs component `file` with the private key in `key`: into `<file>.sig`, or (`embed`) into
/// the file itself, replacing it whole (write aside, then rename, as a deploy should).
pub(crate) fn sign(file: &Path, key: &Path, embed: bool) -> Result<(), Failure> {
    let read = |path: &Path| std::fs::read(path).map_err(|err| Failure::input(format!("{}: {err}", path.display())));
    let document = BASE64
        .decode(String::from_utf8_lossy(&read(key)?).trim())
        .map_err(|_| Failure::input(format!("{}: not a key written by `plugin keygen`", key.display())))?;
    let key = SigningKey::from_pkcs8(&document).map_err(Failure::input)?;
    let component = read(file)?;
    if !wasmparser::Parser::is_component(&component) {
        return Err(Failure::input(format!("{}: not a WebAssembly component", file.display())));
    }
    let write = |path: &Path, bytes: &[u8]| {
        let aside = with_suffix(path, ".signing");
        std::fs::write(&aside, bytes)
            .and_then(|()| std::fs::rename(&aside, path))
            .map_err(|err| Failure::input(format!("cannot write {}: {err}", path.display())))
    };
    let signer = if embed {
        let signed = key.embed(&component);
        write(file, &signed)?;
        signature::signer(&signed, None)
    } else {
        let detached = key.detached(&component);
        write(&with_suffix(file, ".sig"), detached.as_bytes())?;
        signature::signer(&component, Some(&detached))
    };
    match signer {
        Ok(Some(signer)) => {
            println!("{}: signed by {signer}", file.display());
            Ok(())
        }
        other => Err(Failure::plugin(format!("the signature just made does not verify: {other:?}"))),
    }
}
