//! Plugins: loading WebAssembly components and running them as handlers, sinks and auth policies.
//!
//! The only module that uses wasmtime. It owns the engine ([`engine`]), compiles and caches
//! components ([`artifact`]), checks what a component exports and imports against its
//! [`PluginSpec`] ([`component`]), provides the host imports ([`host`]), runs calls under limits and
//! replaces faulted instances ([`instance`]), and adapts plugins to the host's role traits
//! ([`adapter`]). It must never let a wasmtime type or a trap escape, nor compile on an async worker.
//!
//! Flow of a load: read the file → (blocking) hash, compile or fetch from cache, describe → check
//! world, WIT version and grants → link → make the first instance and run `init` → adapter.

mod adapter;
mod artifact;
mod bindings;
mod component;
mod convert;
mod engine;
mod error;
mod events;
mod host;
mod instance;
pub mod signature;
mod spec;

use std::sync::Arc;

use anyhow::Context as _;
use wasmtime::component::{HasSelf, Linker};

pub use adapter::{PluginMeta, WasmAuthPolicy, WasmHandler, WasmSink};
pub use artifact::{CACHE_DIR_ENV, cache_dir_from_env};
pub use component::{Capability, ComponentInfo, Contract, WIT_PACKAGE, WIT_VERSION, content_hash};
pub use engine::RuntimeOptions;
pub use error::PluginError;
pub use host::MetricValue;
pub use instance::CallStats;
pub use signature::{PublicKey, Signer};
pub use spec::{GUEST_DIR, Grants, Limits, PluginSpec, Role, Subjects, Topics};

use crate::capability::HostServices;
use adapter::{AuthPool, HandlerPool, SinkPool};
use artifact::ArtifactCache;
use engine::PluginEngine;
use host::{HostState, PluginShared};
use instance::{InitFailure, InstancePool, World};

/// A loaded plugin, by role.
#[derive(Clone)]
pub enum Plugin {
    Handler(Arc<WasmHandler>),
    Sink(Arc<WasmSink>),
    AuthPolicy(Arc<WasmAuthPolicy>),
}

impl Plugin {
    pub fn meta(&self) -> &PluginMeta {
        match self {
            Plugin::Handler(p) => &p.meta,
            Plugin::Sink(p) => &p.meta,
            Plugin::AuthPolicy(p) => &p.meta,
        }
    }

    pub fn role(&self) -> Role {
        match self {
            Plugin::Handler(_) => Role::Handler,
            Plugin::Sink(_) => Role::Sink,
            Plugin::AuthPolicy(_) => Role::AuthPolicy,
        }
    }

    pub fn stats(&self) -> &CallStats {
        match self {
            Plugin::Handler(p) => p.stats(),
            Plugin::Sink(p) => p.stats(),
            Plugin::AuthPolicy(p) => p.stats(),
        }
    }
}

/// Loads plugins. One per process: every plugin shares its engine, linker and artifact cache.
pub struct PluginRuntime {
    engine: Arc<PluginEngine>,
    linker: Linker<HostState>,
    cache: Option<Arc<ArtifactCache>>,
    /// The connections behind the Kafka and NATS grants.
    services: HostServices,
}

impl PluginRuntime {
    pub fn new(options: RuntimeOptions) -> anyhow::Result<Self> {
        let engine = PluginEngine::new(options)?;
        let mut linker = Linker::new(&engine.engine);
        // In each contract version the sink world imports a superset of what the other worlds import.
        bindings::v0_1::sink::Sink::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(anyhow::Error::from)
            .context("linking the eventyard:plugin@0.1.0 host imports")?;
        bindings::v0_2::sink::Sink::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(anyhow::Error::from)
            .context("linking the eventyard:plugin@0.2.0 host imports")?;
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from).context("linking WASI")?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking wasi:http")?;
        let cache = engine.options.cache_dir.clone().map(|dir| Arc::new(ArtifactCache::new(dir, &engine.engine)));
        Ok(PluginRuntime { engine: Arc::new(engine), linker, cache, services: HostServices::default() })
    }

    /// Lends `services` to the plugins this runtime loads from now on, each as its grants allow.
    pub fn with_services(mut self, services: HostServices) -> Self {
        self.services = services;
        self
    }

    /// Describes the component at `path` without checking it against any spec.
    pub async fn inspect(&self, path: &std::path::Path) -> Result<ComponentInfo, PluginError> {
        let spec = PluginSpec::new(path.display().to_string(), path, Role::Handler);
        let (_, info) = self.compile(&spec).await?;
        Ok(info)
    }

    /// Loads, checks and initialises the plugin `spec` describes.
    pub async fn load(&self, spec: PluginSpec) -> Result<Plugin, PluginError> {
        if spec.limits.memory_limit > self.engine.options.max_memory_limit {
            return Err(PluginError::Link {
                name: spec.name.clone(),
                reason: format!(
                    "memory_limit {} exceeds the runtime's maximum of {} bytes",
                    spec.limits.memory_limit, self.engine.options.max_memory_limit
                ),
            });
        }
        if let Some(dir) = &spec.grants.directory
            && !dir.is_dir()
        {
            return Err(PluginError::Directory {
                name: spec.name.clone(),
                path: dir.clone(),
                reason: "not an existing directory".into(),
            });
        }
        let (component, info) = self.compile(&spec).await?;
        let (role, contract) = component::check(&spec, &info)?;
        let link_error =
            |err: wasmtime::Error| PluginError::Link { name: spec.name.clone(), reason: format!("{err:#}") };
        let pre = self.linker.instantiate_pre(&component).map_err(link_error)?;
        let shared = Arc::new(PluginShared {
            name: spec.name.clone(),
            grants: spec.grants.clone(),
            services: self.services.clone(),
            metrics: Default::default(),
            frozen_clock: self.engine.options.frozen_clock,
        });
        let meta = PluginMeta { name: spec.name.clone(), info, shared: shared.clone() };
        let pool = PoolMaker { runtime: self, spec: &spec, pre, shared };
        Ok(match (role, contract) {
            (Role::Handler, Contract::V0_1) => handler(meta, HandlerPool::V0_1(pool.make().await?)),
            (Role::Handler, Contract::V0_2) => handler(meta, HandlerPool::V0_2(pool.make().await?)),
            (Role::Sink, Contract::V0_1) => sink(meta, SinkPool::V0_1(pool.make().await?)),
            (Role::Sink, Contract::V0_2) => sink(meta, SinkPool::V0_2(pool.make().await?)),
            (Role::AuthPolicy, Contract::V0_1) => auth(meta, AuthPool::V0_1(pool.make().await?)),
            (Role::AuthPolicy, Contract::V0_2) => auth(meta, AuthPool::V0_2(pool.make().await?)),
        })
    }

    /// Reads and compiles the component (on a blocking thread) and describes it.
    async fn compile(&self, spec: &PluginSpec) -> Result<(wasmtime::component::Component, ComponentInfo), PluginError> {
        let bytes = tokio::fs::read(&spec.path).await.map_err(|source| PluginError::Read {
            name: spec.name.clone(),
            path: spec.path.clone(),
            source,
        })?;
        component::check_is_component(spec, &bytes)?;
        let signer = self.check_signature(spec, &bytes).await?;
        let engine = self.engine.engine.clone();
        let cache = self.cache.clone();
        let compiled = tokio::task::spawn_blocking(move || -> wasmtime::Result<_> {
            let sha256 = content_hash(&bytes);
            let component = match &cache {
                Some(cache) => cache.load_or_compile(&engine, &bytes, &sha256),
                None => wasmtime::component::Component::new(&engine, &bytes),
            }?;
            let info = component::describe(&engine, &component, &bytes);
            Ok((component, info))
        })
        .await;
        let invalid =
            |reason: String| PluginError::Invalid { name: spec.name.clone(), path: spec.path.clone(), reason };
        match compiled {
            Ok(Ok((component, mut info))) => {
                info.signed_by = signer.map(|signer| signer.to_string());
                Ok((component, info))
            }
            Ok(Err(err)) => Err(invalid(format!("{err:#}"))),
            Err(join) => Err(invalid(format!("compiler thread failed: {join}"))),
        }
    }
}

impl PluginRuntime {
    /// Who signed the component `bytes` (embedded, or in `<file>.sig` beside it); with trusted
    /// keys configured, an error unless one of them did.
    async fn check_signature(&self, spec: &PluginSpec, bytes: &[u8]) -> Result<Option<Signer>, PluginError> {
        let mut detached_path = spec.path.clone().into_os_string();
        detached_path.push(".sig");
        let detached = tokio::fs::read_to_string(&detached_path).await.ok();
        signature::check(bytes, detached.as_deref(), &self.engine.options.trusted_keys)
            .map_err(|reason| PluginError::Signature { name: spec.name.clone(), path: spec.path.clone(), reason })
    }
}

/// Makes the instance pool of a plugin being loaded, for whichever world and version it exports.
struct PoolMaker<'a> {
    runtime: &'a PluginRuntime,
    spec: &'a PluginSpec,
    pre: wasmtime::component::InstancePre<HostState>,
    shared: Arc<PluginShared>,
}

impl PoolMaker<'_> {
    async fn make<W: World>(self) -> Result<InstancePool<W>, PluginError> {
        let PoolMaker { runtime, spec, pre, shared } = self;
        let pre =
            W::prepare(pre).map_err(|err| PluginError::Link { name: spec.name.clone(), reason: format!("{err:#}") })?;
        let pool = InstancePool::new(runtime.engine.clone(), pre, shared, spec.config.clone(), spec.limits.clone());
        match pool.warm_up().await {
            Ok(()) => Ok(pool),
            Err(InitFailure::Guest(message)) => Err(PluginError::Init { name: spec.name.clone(), message }),
            Err(InitFailure::Fault(fault)) => Err(PluginError::InitFault { name: spec.name.clone(), fault }),
        }
    }
}

fn handler(meta: PluginMeta, pool: HandlerPool) -> Plugin {
    Plugin::Handler(Arc::new(WasmHandler { meta, pool }))
}

fn sink(meta: PluginMeta, pool: SinkPool) -> Plugin {
    Plugin::Sink(Arc::new(WasmSink { meta, pool }))
}

fn auth(meta: PluginMeta, pool: AuthPool) -> Plugin {
    Plugin::AuthPolicy(Arc::new(WasmAuthPolicy { meta, pool }))
}
