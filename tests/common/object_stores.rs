//! Real object stores for the object storage sink's tests: `s3s-fs` (an S3-protocol server over a
//! directory, installed with `cargo install`) and `azurite` (Azure's Blob Storage emulator, from
//! tests/clients/node_modules), each on a free port and killed on drop; and what is in them, read
//! with independent clients (boto3, azure-storage-blob: `tests/clients/object_stores.py`).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// Azure's well-known development account, which azurite serves (public, documented by Microsoft).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Runs `tests/clients/object_stores.py` with `args`; its JSON output.
fn client(args: &[&str]) -> Value {
    let output = Command::new("python3")
        .arg(super::repo_root().join("tests/clients/object_stores.py"))
        .args(args)
        .output()
        .expect("python3 runs object_stores.py");
    assert!(output.status.success(), "object_stores.py {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("object_stores.py prints JSON")
}

/// An S3-protocol server with `buckets` made, its access key `AK` and secret `SK`.
pub struct S3Server {
    child: Child,
    pub addr: SocketAddr,
    _root: tempfile::TempDir,
}

impl S3Server {
    pub const ACCESS_KEY: &str = "AK";
    pub const SECRET_KEY: &str = "SK";

    pub async fn start(buckets: &[&str]) -> S3Server {
        let root = super::tempdir();
        for bucket in buckets {
            std::fs::create_dir(root.path().join(bucket)).expect("a bucket is a directory");
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], super::free_port()));
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
            .args(["--access-key", Self::ACCESS_KEY, "--secret-key", Self::SECRET_KEY])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs runs (scripts/setup --test installs it)");
        super::wait_for_port(addr, "s3s-fs").await;
        S3Server { child, addr, _root: root }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every object of `bucket`, by key: its text, gunzipped.
    pub fn objects(&self, bucket: &str) -> serde_json::Map<String, Value> {
        let listed = client(&["s3", &self.endpoint(), Self::ACCESS_KEY, Self::SECRET_KEY, bucket]);
        listed.as_object().cloned().unwrap_or_default()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Azure's Blob Storage emulator.
pub struct Azurite {
    child: Child,
    pub addr: SocketAddr,
    _location: tempfile::TempDir,
}

impl Azurite {
    pub async fn start() -> Azurite {
        let location = super::tempdir();
        let addr = SocketAddr::from(([127, 0, 0, 1], super::free_port()));
        let child = Command::new(super::repo_root().join("tests/clients/node_modules/.bin/azurite-blob"))
            .args(["--blobHost", "127.0.0.1", "--blobPort", &addr.port().to_string(), "--skipApiVersionCheck"])
            .arg("--location")
            .arg(location.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("azurite runs (scripts/setup --test installs it)");
        super::wait_for_port(addr, "azurite").await;
        Azurite { child, addr, _location: location }
    }

    /// The emulator's blob endpoint, as object_store reads it from `AZURITE_BLOB_STORAGE_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={}/{AZURITE_ACCOUNT};",
            self.url()
        )
    }

    pub fn create_container(&self, container: &str) {
        client(&["azure-create", &self.connection_string(), container]);
    }

    /// Every blob of `container`, by name: its text, gunzipped.
    pub fn objects(&self, container: &str) -> serde_json::Map<String, Value> {
        client(&["azure", &self.connection_string(), container]).as_object().cloned().unwrap_or_default()
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
