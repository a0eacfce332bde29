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
mod engine;
mod error;
mod host;
mod instance;
mod spec;

use std::sync::Arc;

use anyhow::Context as _;
use wasmtime::component::{HasSelf, Linker};

pub use adapter::{PluginMeta, WasmAuthPolicy, WasmHandler, WasmSink};
pub use artifact::{CACHE_DIR_ENV, cache_dir_from_env};
pub use component::{Capability, ComponentInfo, WIT_PACKAGE, WIT_VERSION, content_hash};
pub use engine::RuntimeOptions;
pub use error::PluginError;
pub use host::MetricValue;
pub use instance::CallStats;
pub use spec::{GUEST_DIR, Grants, Limits, PluginSpec, Role, Subjects, Topics};

use crate::capability::HostServices;
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
        // The sink world imports a superset of what the other worlds import.
        bindings::sink::Sink::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(anyhow::Error::from)
            .context("linking the eventyard host imports")?;
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
        let role = component::check(&spec, &info)?;
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
        Ok(match role {
            Role::Handler => {
                Plugin::Handler(Arc::new(WasmHandler { pool: self.pool(&spec, pre, shared).await?, meta }))
            }
            Role::Sink => Plugin::Sink(Arc::new(WasmSink { pool: self.pool(&spec, pre, shared).await?, meta })),
            Role::AuthPolicy => {
                Plugin::AuthPolicy(Arc::new(WasmAuthPolicy { pool: self.pool(&spec, pre, shared).await?, meta }))
            }
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
            Ok(Ok(done)) => Ok(done),
            Ok(Err(err)) => Err(invalid(format!("{err:#}"))),
            Err(join) => Err(invalid(format!("compiler thread failed: {join}"))),
        }
    }

    async fn pool<W: World>(
        &self,
        spec: &PluginSpec,
        pre: wasmtime::component::InstancePre<HostState>,
        shared: Arc<PluginShared>,
    ) -> Result<InstancePool<W>, PluginError> {
        let pre =
            W::prepare(pre).map_err(|err| PluginError::Link { name: spec.name.clone(), reason: format!("{err:#}") })?;
        let pool = InstancePool::new(self.engine.clone(), pre, shared, spec.config.clone(), spec.limits.clone());
        match pool.warm_up().await {
            Ok(()) => Ok(pool),
            Err(InitFailure::Guest(err)) => Err(PluginError::Init { name: spec.name.clone(), message: err.message }),
            Err(InitFailure::Fault(fault)) => Err(PluginError::InitFault { name: spec.name.clone(), fault }),
        }
    }
}
