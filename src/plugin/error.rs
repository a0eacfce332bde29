//! [`PluginError`]: why a plugin could not be loaded. Faults during calls are [`crate::fault::Fault`].

use std::path::PathBuf;

use crate::fault::Fault;

/// Why a plugin was refused at load. Every message names the plugin and the problem.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin `{name}`: cannot read {}: {source}", path.display())]
    Read { name: String, path: PathBuf, source: std::io::Error },
    #[error("plugin `{name}`: {} is not a WebAssembly component: {reason}", path.display())]
    NotAComponent { name: String, path: PathBuf, reason: String },
    #[error("plugin `{name}`: {} is not a valid component: {reason}", path.display())]
    Invalid { name: String, path: PathBuf, reason: String },
    #[error("plugin `{name}` exports no Eventyard world (expected {expected}); its exports: {exports}")]
    NoWorld { name: String, expected: String, exports: String },
    #[error("plugin `{name}` exports the {found} world (`{export}`) but its config asks for the {expected} world")]
    WrongWorld { name: String, found: String, expected: String, export: String },
    #[error("plugin `{name}` was built against WIT eventyard:plugin@{found}; this host loads {supported}")]
    WitVersion { name: String, found: String, supported: String },
    #[error("plugin `{name}` imports capability `{capability}` (`{import}`) which its config does not grant")]
    CapabilityNotGranted { name: String, capability: String, import: String },
    #[error("plugin `{name}` imports `{import}`, which this host does not provide")]
    UnknownImport { name: String, import: String },
    #[error("plugin `{name}`: granted directory {}: {reason}", path.display())]
    Directory { name: String, path: PathBuf, reason: String },
    #[error("plugin `{name}`: init failed: {message}")]
    Init { name: String, message: String },
    #[error("plugin `{name}`: init {fault}")]
    InitFault { name: String, fault: Fault },
    #[error("plugin `{name}`: {reason}")]
    Link { name: String, reason: String },
    #[error("plugin `{name}`: {} is refused: {reason}", path.display())]
    Signature { name: String, path: PathBuf, reason: super::signature::SignatureError },
}
