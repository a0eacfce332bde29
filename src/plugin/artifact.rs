//! Compiles components, keeping the compiled artifacts in a directory keyed by content hash and
//! engine configuration, so a restart or reload of an unchanged plugin skips Cranelift. Blocking:
//! call it from `spawn_blocking`.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use wasmtime::Engine;
use wasmtime::component::Component;

/// The environment variable naming the directory of compiled components when the config names
/// none (`[plugins] cache_dir`), and the one the `eventyard plugin` commands use.
pub const CACHE_DIR_ENV: &str = "EVENTYARD_CACHE_DIR";

/// The directory `EVENTYARD_CACHE_DIR` names, if it names one.
pub fn cache_dir_from_env() -> Option<PathBuf> {
    std::env::var_os(CACHE_DIR_ENV).filter(|dir| !dir.is_empty()).map(PathBuf::from)
}

/// A directory of precompiled components.
pub(crate) struct ArtifactCache {
    dir: PathBuf,
    /// Distinguishes artifacts of differently configured engines and wasmtime versions.
    engine_key: String,
}

impl ArtifactCache {
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ArtifactCache { dir, engine_key: format!("{:016x}", hasher.finish()) }
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// The compiled component for `bytes` (whose hash is `sha256`), from the cache when present.
    /// A cache that cannot be read or written only costs a compile; it never fails the load.
    pub fn load_or_compile(&self, engine: &Engine, bytes: &[u8], sha256: &str) -> wasmtime::Result<Component> {
        let path = self.path(sha256);
        // Read into memory rather than `deserialize_file`: that maps the file, and anyone truncating
        // it while the plugin runs (clearing the cache, say) would crash the host with SIGBUS.
        if let Ok(artifact) = std::fs::read(&path) {
            // SAFETY: the file was written by `store` below from `Component::serialize` of an engine
            // with the same compatibility hash (it is in the file name), in a directory the host owns.
            // wasmtime still checks the header and refuses an artifact from another configuration.
            match unsafe { Component::deserialize(engine, &artifact) } {
                Ok(component) => return Ok(component),
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = format!("{err:#}"), "ignoring unreadable compiled plugin")
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(err) = self.store(&component, &path) {
            tracing::warn!(path = %path.display(), error = format!("{err:#}"), "cannot cache compiled plugin");
        }
        Ok(component)
    }

    fn store(&self, component: &Component, path: &std::path::Path) -> anyhow::Result<()> {
        // Unique per process and call: routers and threads sharing the directory may compile the
        // same component at once; each writes its own file and the last rename wins.
        static STORES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        std::fs::create_dir_all(&self.dir)?;
        let n = STORES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
        std::fs::write(&tmp, component.serialize()?)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}
