//! The wasmtime [`Engine`] every plugin shares: component model, async calls, epoch interruption
//! driven by one ticker thread, optional fuel, and the pooling allocator when the host can reserve
//! its address space. Nothing else in the tree configures wasmtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Engine-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeOptions {
    /// Component instances the pooling allocator reserves room for, across all plugins.
    pub pool_instances: u32,
    /// The largest `memory_limit` any plugin may have.
    pub max_memory_limit: usize,
    /// Meter fuel, so plugins can have a `fuel` limit (costs some speed for every plugin).
    pub consume_fuel: bool,
    /// Where compiled plugins are cached by content hash; `None` compiles every time.
    pub cache_dir: Option<std::path::PathBuf>,
    /// How often the epoch advances: the granularity of timeouts.
    pub epoch_tick: Duration,
    /// A fixed time for the `clock` import, for reproducible tests.
    pub frozen_clock: Option<u64>,
    /// `[plugins] trusted_keys`: when any, only components one of them signed load.
    pub trusted_keys: Vec<super::signature::PublicKey>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            pool_instances: 128,
            max_memory_limit: 1 << 30,
            consume_fuel: false,
            cache_dir: None,
            epoch_tick: Duration::from_millis(5),
            frozen_clock: None,
            trusted_keys: Vec::new(),
        }
    }
}

/// The engine plus the thread that advances its epoch.
pub(crate) struct PluginEngine {
    pub engine: Engine,
    pub options: RuntimeOptions,
    /// Kept for its `Drop`, which stops the thread.
    _ticker: Ticker,
}

impl PluginEngine {
    pub fn new(options: RuntimeOptions) -> anyhow::Result<Self> {
        let engine = match Engine::new(&config(&options, true)) {
            Ok(engine) => engine,
            Err(err) => {
                tracing::warn!(
                    error = format!("{err:#}"),
                    "pooling allocator unavailable, allocating instances on demand"
                );
                Engine::new(&config(&options, false))
                    .map_err(anyhow::Error::from)
                    .context("creating the wasmtime engine")?
            }
        };
        let ticker = Ticker::start(engine.clone(), options.epoch_tick)?;
        Ok(PluginEngine { engine, options, _ticker: ticker })
    }
}

fn config(options: &RuntimeOptions, pooling: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // On by default in wasmtime 48 and costly on every call (25-43 % measured); only the
    // component-model async ABI needs it, and no world of ours uses that.
    config.concurrency_support(false);
    config.consume_fuel(options.consume_fuel);
    if pooling {
        let instances = options.pool_instances;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(instances)
            .total_core_instances(instances * 8)
            .total_memories(instances * 2)
            .total_tables(instances * 2)
            .max_memory_size(options.max_memory_limit);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Advances the engine's epoch every `tick` until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine, tick: Duration) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("eventyard-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::park_timeout(tick);
                    engine.increment_epoch();
                }
            })
            .context("starting the epoch ticker thread")?;
        Ok(Ticker { stop, thread: Some(thread) })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
