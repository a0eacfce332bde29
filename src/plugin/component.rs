//! What a component is, from its bytes and its compiled type: which world it exports and against
//! which WIT version, what it imports, which capabilities those imports ask for, its size, content
//! hash and SDK version. Also the load-time checks of those facts against a [`PluginSpec`].

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::error::PluginError;
use super::spec::{PluginSpec, Role};

/// The WIT package this host implements.
pub const WIT_PACKAGE: &str = "eventyard:plugin";
/// The WIT package version of `wit/`: what the SDK and `plugin build` build against.
pub const WIT_VERSION: &str = "0.2.0";

/// A version of the plugin contract this host loads. A component speaks one: its export and every
/// `eventyard:plugin` import it has name the same version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// `eventyard:plugin@0.1.0`: events cross as records, copied whole each way.
    V0_1,
    /// `eventyard:plugin@0.2.0`: handlers get events as resources and read what they need.
    V0_2,
}

impl Contract {
    /// The versions this host loads, for error messages.
    pub const SUPPORTED: &str = "eventyard:plugin@0.1.0 and eventyard:plugin@0.2.0";

    fn from_version(version: &str) -> Option<Contract> {
        match version {
            "0.1.0" => Some(Contract::V0_1),
            "0.2.0" => Some(Contract::V0_2),
            _ => None,
        }
    }
}
/// The custom section the SDK writes its version into.
const SDK_SECTION: &str = "eventyard-sdk";

/// A capability a component asks for through its imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// Outbound HTTP (`wasi:http/outgoing-handler`).
    Http,
    /// Files (`wasi:filesystem`): only the granted directory is visible, so this is always linked.
    Filesystem,
    /// `eventyard:plugin/kafka-producer`.
    Kafka,
    /// `eventyard:plugin/nats-publisher`.
    Nats,
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Capability::Http => "http",
            Capability::Filesystem => "filesystem",
            Capability::Kafka => "kafka",
            Capability::Nats => "nats",
        })
    }
}

/// Facts about one component, as `eventyard plugin inspect` prints them.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentInfo {
    /// The role whose interface the component exports, if any.
    pub world: Option<String>,
    /// The version of `eventyard:plugin` it was built against.
    pub wit_version: Option<String>,
    pub exports: Vec<String>,
    pub imports: Vec<String>,
    pub capabilities: Vec<Capability>,
    pub size: usize,
    pub sha256: String,
    /// The `eventyard-sdk` version that built it, when it was built with the SDK.
    pub sdk_version: Option<String>,
    /// Who signed it, when it carries a valid signature (`ed25519:<key> (embedded|detached)`).
    pub signed_by: Option<String>,
    #[serde(skip)]
    pub(crate) role: Option<Role>,
}

/// `namespace:package/interface@version` split into its parts.
struct InterfaceName<'a> {
    package: &'a str,
    interface: &'a str,
    version: Option<&'a str>,
}

fn parse_name(name: &str) -> Option<InterfaceName<'_>> {
    let (package, rest) = name.split_once('/')?;
    let (interface, version) = match rest.split_once('@') {
        Some((interface, version)) => (interface, Some(version)),
        None => (rest, None),
    };
    Some(InterfaceName { package, interface, version })
}

/// The hex SHA-256 of `bytes`.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Fails unless `bytes` look like a component (not a core module, not something else).
pub(crate) fn check_is_component(spec: &PluginSpec, bytes: &[u8]) -> Result<(), PluginError> {
    let reason = if wasmparser::Parser::is_component(bytes) {
        return Ok(());
    } else if wasmparser::Parser::is_core_wasm(bytes) {
        "it is a core wasm module; build plugins for the wasm32-wasip2 target".to_owned()
    } else {
        let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!(
            "no component header (file starts with {})",
            if head.is_empty() { "nothing".into() } else { head.join(" ") }
        )
    };
    Err(PluginError::NotAComponent { name: spec.name.clone(), path: spec.path.clone(), reason })
}

/// Describes a compiled component.
pub(crate) fn describe(engine: &Engine, component: &Component, bytes: &[u8]) -> ComponentInfo {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_owned()).collect();
    let imports: Vec<String> = ty.imports(engine).map(|(name, _)| name.to_owned()).collect();
    let (mut role, mut wit_version) = (None, None);
    for name in &exports {
        if let Some(parsed) = parse_name(name).filter(|n| n.package == WIT_PACKAGE)
            && let Some(found) = Role::from_export_interface(parsed.interface)
        {
            role = Some(found);
            wit_version = parsed.version.map(str::to_owned);
        }
    }
    let mut capabilities: Vec<Capability> = imports.iter().filter_map(|name| capability_of(name)).collect();
    capabilities.sort();
    capabilities.dedup();
    ComponentInfo {
        world: role.map(|r| r.world().to_owned()),
        wit_version,
        exports,
        imports,
        capabilities,
        size: bytes.len(),
        sha256: content_hash(bytes),
        sdk_version: sdk_version(bytes),
        signed_by: None,
        role,
    }
}

fn capability_of(import: &str) -> Option<Capability> {
    let name = parse_name(import)?;
    match (name.package, name.interface) {
        ("wasi:http", "outgoing-handler") => Some(Capability::Http),
        ("wasi:filesystem", _) => Some(Capability::Filesystem),
        (WIT_PACKAGE, "kafka-producer") => Some(Capability::Kafka),
        (WIT_PACKAGE, "nats-publisher") => Some(Capability::Nats),
        _ => None,
    }
}

/// The SDK version recorded in the component's `eventyard-sdk` custom section, if any.
fn sdk_version(bytes: &[u8]) -> Option<String> {
    wasmparser::Parser::new(0).parse_all(bytes).find_map(|payload| match payload {
        Ok(wasmparser::Payload::CustomSection(section)) if section.name() == SDK_SECTION => {
            String::from_utf8(section.data().to_vec()).ok()
        }
        _ => None,
    })
}

/// Checks the component against what its spec says: the right world, a contract version this host
/// loads, and a grant for every capability it imports. Returns the component's role and contract.
pub(crate) fn check(spec: &PluginSpec, info: &ComponentInfo) -> Result<(Role, Contract), PluginError> {
    let name = || spec.name.clone();
    let Some(role) = info.role else {
        let expected = match spec.role {
            Some(role) => format!("{WIT_PACKAGE}/{}@{WIT_VERSION}", role.export_interface()),
            None => format!("one of {WIT_PACKAGE}/{{event-handler,event-sink,authorizer}}@{WIT_VERSION}"),
        };
        return Err(PluginError::NoWorld {
            name: name(),
            expected,
            exports: if info.exports.is_empty() { "nothing".into() } else { info.exports.join(", ") },
        });
    };
    let found_version = info.wit_version.clone().unwrap_or_else(|| "(unversioned)".into());
    let Some(contract) = Contract::from_version(&found_version) else {
        return Err(PluginError::WitVersion {
            name: name(),
            found: found_version,
            supported: Contract::SUPPORTED.into(),
        });
    };
    if let Some(expected) = spec.role
        && role != expected
    {
        return Err(PluginError::WrongWorld {
            name: name(),
            found: role.world().into(),
            expected: expected.world().into(),
            export: format!("{WIT_PACKAGE}/{}@{found_version}", role.export_interface()),
        });
    }
    for import in &info.imports {
        let Some(parsed) = parse_name(import) else {
            return Err(PluginError::UnknownImport { name: name(), import: import.clone() });
        };
        if parsed.package == WIT_PACKAGE && parsed.version != Some(found_version.as_str()) {
            return Err(PluginError::WitVersion {
                name: name(),
                found: format!(
                    "{} (imported beside an export of {found_version})",
                    parsed.version.unwrap_or("(unversioned)")
                ),
                supported: Contract::SUPPORTED.into(),
            });
        }
        if parsed.package != WIT_PACKAGE && !parsed.package.starts_with("wasi:") {
            return Err(PluginError::UnknownImport { name: name(), import: import.clone() });
        }
        let granted = match capability_of(import) {
            Some(Capability::Http) => spec.grants.http_hosts.as_ref().is_some_and(|hosts| !hosts.is_empty()),
            Some(Capability::Kafka) => spec.grants.kafka.is_some(),
            Some(Capability::Nats) => spec.grants.nats.is_some(),
            Some(Capability::Filesystem) | None => true,
        };
        if !granted {
            return Err(PluginError::CapabilityNotGranted {
                name: name(),
                capability: capability_of(import).map(|c| c.to_string()).unwrap_or_default(),
                import: import.clone(),
            });
        }
    }
    Ok((role, contract))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_split_into_parts() {
        let n = parse_name("eventyard:plugin/event-handler@0.1.0").unwrap();
        assert_eq!((n.package, n.interface, n.version), ("eventyard:plugin", "event-handler", Some("0.1.0")));
        assert!(parse_name("plain").is_none());
        assert_eq!(capability_of("wasi:http/outgoing-handler@0.2.6"), Some(Capability::Http));
        assert_eq!(capability_of("eventyard:plugin/kafka-producer@0.1.0"), Some(Capability::Kafka));
        assert_eq!(capability_of("wasi:cli/stdout@0.2.6"), None);
    }

    #[test]
    fn garbage_and_core_modules_are_not_components() {
        let spec = PluginSpec::new("p", "p.wasm", Role::Handler);
        let err = check_is_component(&spec, b"hello world").unwrap_err().to_string();
        assert!(err.contains("not a WebAssembly component") && err.contains("68 65 6c"), "{err}");
        let core = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
        assert!(check_is_component(&spec, &core).unwrap_err().to_string().contains("core wasm module"));
    }
}
