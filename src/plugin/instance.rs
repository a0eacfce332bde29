//! [`InstancePool`]: the live instances of one plugin version and the rules of calling them.
//!
//! An instance is reused call after call; a call runs under the plugin's memory cap, an epoch-driven
//! deadline (yielding to the executor each tick, so a looping guest never holds a worker thread)
//! and optional fuel. A call that faults poisons its store, so that instance is dropped and the next
//! call gets a fresh one from the `InstancePre`. An instance whose memory has grown to three
//! quarters of the cap is replaced the same way after its call, before it fails one. Repeated
//! faults quarantine the plugin with a doubling backoff; its callers then get
//! [`Fault::Quarantined`] at once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};
use wasmtime::component::InstancePre;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::{v0_1, v0_2};
use super::engine::PluginEngine;
use super::host::{HostState, PluginShared};
use super::spec::Limits;
use crate::fault::Fault;

/// The generated bindings of one world, as the pool needs them.
pub(crate) trait World: Sized + Send + Sync + 'static {
    type Pre: Send + Sync + 'static;

    fn prepare(pre: InstancePre<HostState>) -> wasmtime::Result<Self::Pre>;

    fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<HostState>,
    ) -> impl Future<Output = wasmtime::Result<Self>> + Send;

    /// Runs the guest's `init`; its error is the guest's message.
    #[expect(clippy::ptr_arg, reason = "the generated bindings take the WIT list as &Vec")]
    fn init(
        &self,
        store: &mut Store<HostState>,
        config: &Vec<(String, String)>,
    ) -> impl Future<Output = wasmtime::Result<Result<(), String>>> + Send;
}

macro_rules! impl_world {
    ($world:ty, $pre:ty, $iface:ident) => {
        impl World for $world {
            type Pre = $pre;

            fn prepare(pre: InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
                <$pre>::new(pre)
            }

            async fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self> {
                pre.instantiate_async(store).await
            }

            async fn init(
                &self,
                store: &mut Store<HostState>,
                config: &Vec<(String, String)>,
            ) -> wasmtime::Result<Result<(), String>> {
                Ok(self.$iface().call_init(store, config).await?.map_err(|err| err.message))
            }
        }
    };
}

impl_world!(v0_1::handler::Handler, v0_1::handler::HandlerPre<HostState>, eventyard_plugin_event_handler);
impl_world!(v0_1::sink::Sink, v0_1::sink::SinkPre<HostState>, eventyard_plugin_event_sink);
impl_world!(v0_1::auth::AuthPolicy, v0_1::auth::AuthPolicyPre<HostState>, eventyard_plugin_authorizer);
impl_world!(v0_2::handler::Handler, v0_2::handler::HandlerPre<HostState>, eventyard_plugin_event_handler);
impl_world!(v0_2::sink::Sink, v0_2::sink::SinkPre<HostState>, eventyard_plugin_event_sink);
impl_world!(v0_2::auth::AuthPolicy, v0_2::auth::AuthPolicyPre<HostState>, eventyard_plugin_authorizer);

/// One instance and the store it lives in.
pub(crate) struct Slot<W> {
    pub store: Store<HostState>,
    pub bindings: W,
}

/// Why a new instance could not be made ready.
pub(crate) enum InitFailure {
    /// The guest's `init` returned an error with this message.
    Guest(String),
    Fault(Fault),
}

/// The least time a new instance has to start (instantiate and run `init`): a Python or JavaScript
/// component sets up its interpreter there, far longer than an event's call takes, and longer still
/// on a busy machine. A guest that loops in `init` is still stopped, after this.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Call counts for one plugin version.
#[derive(Debug, Default)]
pub struct CallStats {
    pub calls: AtomicU64,
    /// Calls the guest answered with an error value.
    pub errors: AtomicU64,
    /// Calls that faulted (trap, timeout, memory, fuel).
    pub faults: AtomicU64,
    /// Times the plugin was put in quarantine.
    pub quarantines: AtomicU64,
    /// Instances created (the first one, then one after every fault or replacement).
    pub instances: AtomicU64,
    /// Instances replaced after a call because their memory had grown near the cap.
    pub replaced: AtomicU64,
    /// Total time spent in calls, in nanoseconds.
    pub busy_nanos: AtomicU64,
    /// How long each call took.
    pub call_times: crate::telemetry::metrics::CallTimes,
}

/// Consecutive faults and quarantine state.
struct Health {
    consecutive_faults: u32,
    quarantined_until: Option<Instant>,
    backoff: Duration,
}

pub(crate) struct InstancePool<W: World> {
    engine: Arc<PluginEngine>,
    pre: W::Pre,
    shared: Arc<PluginShared>,
    config: Vec<(String, String)>,
    limits: Limits,
    idle: Mutex<Vec<Slot<W>>>,
    permits: Semaphore,
    health: Mutex<Health>,
    /// True while `health` holds faults or a quarantine: the healthy path skips the lock.
    unhealthy: AtomicBool,
    pub stats: CallStats,
}

/// A checked-out instance; hand it back through [`InstancePool::finish`].
pub(crate) struct Lease<'a, W> {
    slot: Slot<W>,
    started: Instant,
    _permit: SemaphorePermit<'a>,
}

impl<W> Lease<'_, W> {
    /// The bindings and the store, to make one call with.
    pub fn parts(&mut self) -> (&W, &mut Store<HostState>) {
        (&self.slot.bindings, &mut self.slot.store)
    }
}

impl<W: World> InstancePool<W> {
    pub fn new(
        engine: Arc<PluginEngine>,
        pre: W::Pre,
        shared: Arc<PluginShared>,
        config: Vec<(String, String)>,
        limits: Limits,
    ) -> Self {
        InstancePool {
            permits: Semaphore::new(limits.max_instances.max(1)),
            health: Mutex::new(Health {
                consecutive_faults: 0,
                quarantined_until: None,
                backoff: limits.quarantine_backoff,
            }),
            unhealthy: AtomicBool::new(false),
            idle: Mutex::new(Vec::new()),
            stats: CallStats::default(),
            engine,
            pre,
            shared,
            config,
            limits,
        }
    }

    /// Makes the first instance and keeps it; its `init` failing refuses the plugin.
    pub async fn warm_up(&self) -> Result<(), InitFailure> {
        let slot = self.new_slot().await?;
        self.idle.lock().map_err(|_| InitFailure::Fault(poisoned()))?.push(slot);
        Ok(())
    }

    /// Takes an idle instance, or makes one, waiting while `max_instances` calls are running.
    pub async fn checkout(&self) -> Result<Lease<'_, W>, Fault> {
        self.check_quarantine()?;
        let permit = self.permits.acquire().await.map_err(|_| Fault::Unavailable("plugin is shutting down".into()))?;
        let idle = self.idle.lock().map_err(|_| poisoned())?.pop();
        let slot = match idle {
            Some(slot) => slot,
            None => self.new_slot().await.map_err(|failure| match failure {
                InitFailure::Guest(message) => Fault::Unavailable(format!("a new instance failed init: {message}")),
                InitFailure::Fault(fault) => fault,
            })?,
        };
        let mut lease = Lease { slot, started: Instant::now(), _permit: permit };
        self.arm(&mut lease.slot.store, lease.started);
        Ok(lease)
    }

    /// Ends a call: returns the instance to the pool if the call finished, or drops it and records
    /// the fault if the call trapped.
    pub fn finish<T>(&self, lease: Lease<'_, W>, result: wasmtime::Result<T>) -> Result<T, Fault> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let elapsed = lease.started.elapsed();
        self.stats.busy_nanos.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        self.stats.call_times.record(elapsed);
        match result {
            Ok(value) => {
                self.record_success();
                if lease.slot.store.data().limiter.nearly_full() {
                    self.stats.replaced.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(plugin = %self.shared.name, "instance memory near its cap: replaced");
                } else if let Ok(mut idle) = self.idle.lock() {
                    idle.push(lease.slot);
                }
                Ok(value)
            }
            Err(err) => {
                let fault = self.classify(&lease.slot.store, &err, self.limits.timeout);
                self.record_fault(&fault, &err);
                Err(fault)
            }
        }
    }

    /// Runs one call into the guest under the plugin's timeout. The epoch deadline stops guest code
    /// that runs too long; this stops a call that waits too long in a host import (an HTTP request,
    /// a Kafka send). Either way the call fails as a timeout and its instance is dropped.
    pub async fn bounded<T>(&self, call: impl Future<Output = wasmtime::Result<T>>) -> wasmtime::Result<T> {
        self.bounded_by(self.limits.timeout, call).await
    }

    /// [`bounded`](Self::bounded) by `timeout`.
    async fn bounded_by<T>(
        &self,
        timeout: Duration,
        call: impl Future<Output = wasmtime::Result<T>>,
    ) -> wasmtime::Result<T> {
        let mut call = std::pin::pin!(call);
        // Most calls finish on their first poll, without waiting: they need no timer.
        if let Poll::Ready(result) = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await {
            return result;
        }
        // A little past the epoch deadline, so guest code is stopped by the epoch when it can be.
        let limit = timeout + timeout / 10 + Duration::from_millis(10);
        match tokio::time::timeout(limit, call).await {
            Ok(result) => result,
            Err(_) => Err(wasmtime::Error::from(Trap::Interrupt)),
        }
    }

    /// Counts a call the guest answered with an error value.
    pub fn record_guest_error(&self) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
    }

    async fn new_slot(&self) -> Result<Slot<W>, InitFailure> {
        self.stats.instances.fetch_add(1, Ordering::Relaxed);
        let state = HostState::new(self.shared.clone(), self.limits.memory_limit, self.limits.timeout)
            .map_err(|err| InitFailure::Fault(Fault::Unavailable(format!("{err:#}"))))?;
        let mut store = Store::new(&self.engine.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_callback(|ctx| {
            Ok(if Instant::now() >= ctx.data().deadline { UpdateDeadline::Interrupt } else { UpdateDeadline::Yield(1) })
        });
        let startup = self.limits.timeout.max(STARTUP_TIMEOUT);
        self.arm_for(&mut store, Instant::now(), startup);
        let bindings = match self.bounded_by(startup, W::instantiate(&self.pre, &mut store)).await {
            Ok(bindings) => bindings,
            Err(err) => return Err(InitFailure::Fault(self.classify(&store, &err, startup))),
        };
        match self.bounded_by(startup, bindings.init(&mut store, &self.config)).await {
            Ok(Ok(())) => Ok(Slot { store, bindings }),
            Ok(Err(err)) => Err(InitFailure::Guest(err)),
            Err(err) => Err(InitFailure::Fault(self.classify(&store, &err, startup))),
        }
    }

    /// Sets the deadline and fuel for a call starting at `now`.
    fn arm(&self, store: &mut Store<HostState>, now: Instant) {
        self.arm_for(store, now, self.limits.timeout);
    }

    /// [`arm`](Self::arm) with a deadline `timeout` from `now`.
    fn arm_for(&self, store: &mut Store<HostState>, now: Instant, timeout: Duration) {
        store.data_mut().deadline = now + timeout;
        // One tick ahead: the callback then checks the wall-clock deadline at every tick.
        store.set_epoch_deadline(1);
        if self.engine.options.consume_fuel {
            // Cannot fail: fuel metering is on for this engine.
            let _ = store.set_fuel(self.limits.fuel.unwrap_or(u64::MAX));
        }
    }

    /// What fault `err` of a call bounded by `timeout` is.
    fn classify(&self, store: &Store<HostState>, err: &wasmtime::Error, timeout: Duration) -> Fault {
        if store.data().limiter.exceeded {
            return Fault::OutOfMemory(self.limits.memory_limit);
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => Fault::Timeout(timeout),
            Some(Trap::OutOfFuel) => Fault::OutOfFuel(self.limits.fuel.unwrap_or(u64::MAX)),
            _ => Fault::Trap(err.root_cause().to_string()),
        }
    }

    fn check_quarantine(&self) -> Result<(), Fault> {
        if !self.unhealthy.load(Ordering::Acquire) {
            return Ok(());
        }
        let health = self.health.lock().map_err(|_| poisoned())?;
        match health.quarantined_until {
            Some(until) if until > Instant::now() => Err(Fault::Quarantined(until - Instant::now())),
            _ => Ok(()),
        }
    }

    fn record_success(&self) {
        if !self.unhealthy.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut health) = self.health.lock() {
            self.unhealthy.store(false, Ordering::Release);
            health.consecutive_faults = 0;
            health.quarantined_until = None;
            health.backoff = self.limits.quarantine_backoff;
        }
    }

    fn record_fault(&self, fault: &Fault, err: &wasmtime::Error) {
        self.stats.faults.fetch_add(1, Ordering::Relaxed);
        let plugin = self.shared.name.as_str();
        tracing::warn!(plugin, %fault, detail = format!("{err:?}"), "plugin call faulted, its instance is replaced");
        let Ok(mut health) = self.health.lock() else { return };
        self.unhealthy.store(true, Ordering::Release);
        health.consecutive_faults += 1;
        if health.consecutive_faults >= self.limits.quarantine_after {
            let backoff = health.backoff;
            health.quarantined_until = Some(Instant::now() + backoff);
            health.backoff = (backoff * 2).min(self.limits.quarantine_max);
            self.stats.quarantines.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                plugin,
                faults = health.consecutive_faults,
                backoff_ms = backoff.as_millis() as u64,
                "plugin quarantined"
            );
        }
    }
}

fn poisoned() -> Fault {
    Fault::Unavailable("plugin state lock poisoned".into())
}
