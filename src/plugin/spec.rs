//! [`PluginSpec`]: everything the runtime needs to load one plugin — where it is, which world it
//! must export, its settings, its limits and the capabilities it is granted.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The three plugin roles, one WIT world each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Handler,
    Sink,
    AuthPolicy,
}

impl Role {
    /// The WIT world name.
    pub fn world(self) -> &'static str {
        match self {
            Role::Handler => "handler",
            Role::Sink => "sink",
            Role::AuthPolicy => "auth-policy",
        }
    }

    /// The interface the world exports, which identifies it in a component.
    pub(crate) fn export_interface(self) -> &'static str {
        match self {
            Role::Handler => "event-handler",
            Role::Sink => "event-sink",
            Role::AuthPolicy => "authorizer",
        }
    }

    pub(crate) fn from_export_interface(name: &str) -> Option<Role> {
        [Role::Handler, Role::Sink, Role::AuthPolicy].into_iter().find(|role| role.export_interface() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.world())
    }
}

/// Per-plugin resource limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory an instance may grow to, in bytes.
    pub memory_limit: usize,
    /// Longest one call may run before it is interrupted.
    pub timeout: Duration,
    /// Fuel per call, when the runtime meters fuel; `None` for unmetered.
    pub fuel: Option<u64>,
    /// How many instances may run calls at once (each is a separate copy of the plugin's state).
    pub max_instances: usize,
    /// Consecutive faults after which the plugin is quarantined.
    pub quarantine_after: u32,
    /// First quarantine period; it doubles on each repeat up to `quarantine_max`.
    pub quarantine_backoff: Duration,
    pub quarantine_max: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_limit: 64 << 20,
            timeout: Duration::from_millis(500),
            fuel: None,
            max_instances: 4,
            quarantine_after: 5,
            quarantine_backoff: Duration::from_secs(1),
            quarantine_max: Duration::from_secs(60),
        }
    }
}

/// Capabilities a plugin's config grants. Nothing is granted by default. The connections behind
/// Kafka and NATS are the runtime's ([`crate::capability::HostServices`]), not the grant's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Outbound HTTP through `wasi:http`, only to these hosts (`host` or `host:port`; `*.example.com`
    /// matches subdomains).
    pub http_hosts: Option<Vec<String>>,
    /// One host directory, visible to the plugin at [`GUEST_DIR`].
    pub directory: Option<PathBuf>,
    /// The Kafka producer, for these topics.
    pub kafka: Option<Topics>,
    /// The NATS publisher, for these subjects (never `$A` or `$SYS` ones).
    pub nats: Option<Subjects>,
}

/// The subjects a NATS grant allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subjects {
    Any,
    Only(Vec<crate::broker::Pattern>),
}

impl Subjects {
    /// True when `subject` may be published to.
    pub fn allows(&self, subject: &str) -> bool {
        match self {
            Subjects::Any => true,
            Subjects::Only(patterns) => patterns.iter().any(|pattern| pattern.matches(subject)),
        }
    }
}

/// The Kafka topics a grant allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topics {
    Any,
    Only(Vec<String>),
}

impl Topics {
    pub fn allows(&self, topic: &str) -> bool {
        match self {
            Topics::Any => true,
            Topics::Only(topics) => topics.iter().any(|t| t == topic),
        }
    }
}

/// Where a granted directory appears inside the plugin.
pub const GUEST_DIR: &str = "/data";

/// One plugin to load.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// The name routes and logs use.
    pub name: String,
    pub path: PathBuf,
    /// The world the plugin must export; `None` accepts whichever world it exports.
    pub role: Option<Role>,
    /// Passed to the plugin's `init`.
    pub config: Vec<(String, String)>,
    pub limits: Limits,
    pub grants: Grants,
}

impl PluginSpec {
    /// A spec with default limits and no grants.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>, role: Role) -> Self {
        PluginSpec {
            name: name.into(),
            path: path.into(),
            role: Some(role),
            config: Vec::new(),
            limits: Limits::default(),
            grants: Grants::default(),
        }
    }
}
