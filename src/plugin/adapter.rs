//! `WasmHandler`, `WasmSink` and `WasmAuthPolicy`: the role traits implemented by calling a plugin's
//! instances, whichever contract version the plugin speaks. No wasmtime type or trap leaves this
//! file: guest errors become role errors, traps become [`Fault`]s.

use std::sync::Arc;

use async_trait::async_trait;

use wasmtime::component::Resource;

use super::bindings::v0_1::handler::exports::eventyard::plugin::event_handler as v0_1_handler;
use super::bindings::v0_2::handler::exports::eventyard::plugin::event_handler as v0_2_handler;
use super::bindings::{v0_1, v0_2};
use super::component::ComponentInfo;
use super::convert;
use super::events::EventTable;
use super::host::PluginShared;
use super::instance::{CallStats, InstancePool};
use crate::auth::{AuthPolicy, AuthRequest, Decision};
use crate::event::Event;
use crate::fault::Fault;
use crate::route::{Handler, HandlerError};
use crate::sink::{DeliveryError, Sink};

/// What every adapter knows about the plugin version behind it.
pub struct PluginMeta {
    pub name: String,
    pub info: ComponentInfo,
    pub(crate) shared: Arc<PluginShared>,
}

impl PluginMeta {
    /// Metrics the plugin recorded through the `metrics` import.
    pub fn guest_metrics(&self) -> std::collections::BTreeMap<String, super::host::MetricValue> {
        self.shared.metrics.snapshot()
    }
}

/// The events a contract 0.1 answer sends on. `input` is the record the host lowered: the call only
/// borrowed it, so `keep` hands it back without copying anything out of the guest.
fn v0_1_result(
    input: v0_1::wit::Event,
    result: Result<v0_1_handler::Outcome, v0_1::wit::Error>,
) -> Result<Vec<Event>, HandlerError> {
    match result {
        Ok(v0_1_handler::Outcome::Keep) => Ok(vec![convert::v0_1::from_record(input)]),
        Ok(v0_1_handler::Outcome::Emit(events)) => Ok(events.into_iter().map(convert::v0_1::from_record).collect()),
        Err(err) => Err(HandlerError::Rejected { message: err.message, retryable: err.retryable }),
    }
}

/// Collects the events a contract 0.2 answer sends on from the instance's table: for `keep`, the
/// event whose handle came back (the lent `input` as the guest left it, normally); for `emit`, the
/// events the guest handed over (the input among them, maybe). The input leaves the table
/// whatever the answer.
fn v0_2_result(
    events: &mut EventTable,
    input: &Resource<v0_2::wit::Event>,
    result: Result<v0_2_handler::Outcome, v0_2::wit::Error>,
) -> Result<Vec<Event>, HandlerError> {
    let missing = || HandlerError::Fault(Fault::Trap("answered with an event it had already sent on".into()));
    let outputs = match result {
        Ok(v0_2_handler::Outcome::Keep(kept)) => events.take(&kept).map(|event| vec![event]).ok_or_else(missing),
        Ok(v0_2_handler::Outcome::Drop(dropped)) => {
            events.take(&dropped);
            Ok(Vec::new())
        }
        Ok(v0_2_handler::Outcome::Emit(handles)) => {
            handles.iter().map(|handle| events.take(handle).ok_or_else(missing)).collect()
        }
        Err(err) => Err(HandlerError::Rejected { message: err.message, retryable: err.retryable }),
    };
    events.take(input);
    outputs
}

/// A handler plugin, of either contract version.
pub struct WasmHandler {
    pub meta: PluginMeta,
    pub(crate) pool: HandlerPool,
}

pub(crate) enum HandlerPool {
    V0_1(InstancePool<v0_1::handler::Handler>),
    V0_2(InstancePool<v0_2::handler::Handler>),
}

impl WasmHandler {
    pub fn stats(&self) -> &CallStats {
        match &self.pool {
            HandlerPool::V0_1(pool) => &pool.stats,
            HandlerPool::V0_2(pool) => &pool.stats,
        }
    }

    /// Counts the guest's error answers among `results`.
    fn count_errors(&self, results: &[Result<Vec<Event>, HandlerError>]) {
        for result in results {
            if matches!(result, Err(HandlerError::Rejected { .. })) {
                match &self.pool {
                    HandlerPool::V0_1(pool) => pool.record_guest_error(),
                    HandlerPool::V0_2(pool) => pool.record_guest_error(),
                }
            }
        }
    }
}

#[async_trait]
impl Handler for WasmHandler {
    async fn handle(&self, event: Event) -> Result<Vec<Event>, HandlerError> {
        let result = match &self.pool {
            HandlerPool::V0_1(pool) => {
                let input = convert::v0_1::to_record(event);
                let mut lease = pool.checkout().await?;
                let (bindings, store) = lease.parts();
                let result = pool.bounded(bindings.eventyard_plugin_event_handler().call_handle(store, &input)).await;
                let answer = pool.finish(lease, result)?;
                v0_1_result(input, answer)
            }
            HandlerPool::V0_2(pool) => {
                let mut lease = pool.checkout().await?;
                let (bindings, store) = lease.parts();
                let input = store.data_mut().events.lend_one(event);
                let handle = Resource::new_own(input.rep());
                let result =
                    pool.bounded(bindings.eventyard_plugin_event_handler().call_handle(&mut *store, handle)).await;
                let result = result.map(|answer| v0_2_result(&mut store.data_mut().events, &input, answer));
                pool.finish(lease, result)?
            }
        };
        self.count_errors(std::slice::from_ref(&result));
        result
    }

    async fn handle_batch(&self, events: Vec<Event>) -> Vec<Result<Vec<Event>, HandlerError>> {
        let count = events.len();
        let results = match &self.pool {
            HandlerPool::V0_1(pool) => {
                let batch: Vec<v0_1::wit::Event> = events.into_iter().map(convert::v0_1::to_record).collect();
                let answers = async {
                    let mut lease = pool.checkout().await?;
                    let (bindings, store) = lease.parts();
                    let result =
                        pool.bounded(bindings.eventyard_plugin_event_handler().call_handle_batch(store, &batch)).await;
                    pool.finish(lease, result)
                }
                .await;
                match answers {
                    Ok(answers) if answers.len() == count => {
                        Ok(batch.into_iter().zip(answers).map(|(input, answer)| v0_1_result(input, answer)).collect())
                    }
                    Ok(answers) => Err(miscounted(answers.len(), count)),
                    Err(fault) => Err(fault),
                }
            }
            HandlerPool::V0_2(pool) => {
                async {
                    let mut lease = pool.checkout().await?;
                    let (bindings, store) = lease.parts();
                    let inputs = store.data_mut().events.lend(events);
                    let result = pool
                        .bounded(bindings.eventyard_plugin_event_handler().call_handle_batch(&mut *store, &inputs))
                        .await;
                    let table = &mut store.data_mut().events;
                    let result = result.map(|answers| {
                        if answers.len() != count {
                            inputs.iter().for_each(|input| drop(table.take(input)));
                            return Err(miscounted(answers.len(), count));
                        }
                        Ok(inputs
                            .iter()
                            .zip(answers)
                            .map(|(input, answer)| v0_2_result(table, input, answer))
                            .collect())
                    });
                    pool.finish(lease, result)?
                }
                .await
            }
        };
        let results = results.unwrap_or_else(|fault| vec![Err(HandlerError::Fault(fault)); count]);
        self.count_errors(&results);
        results
    }
}

fn miscounted(results: usize, count: usize) -> Fault {
    Fault::Trap(format!("handle-batch returned {results} results for {count} events"))
}

/// A sink plugin, of either contract version.
pub struct WasmSink {
    pub meta: PluginMeta,
    pub(crate) pool: SinkPool,
}

pub(crate) enum SinkPool {
    V0_1(InstancePool<v0_1::sink::Sink>),
    V0_2(InstancePool<v0_2::sink::Sink>),
}

impl WasmSink {
    pub fn stats(&self) -> &CallStats {
        match &self.pool {
            SinkPool::V0_1(pool) => &pool.stats,
            SinkPool::V0_2(pool) => &pool.stats,
        }
    }
}

/// Delivers `batch` through `pool` of one contract version: its record conversions are `$convert`.
macro_rules! deliver {
    ($pool:expr, $batch:expr, $convert:path) => {{
        use $convert as convert;
        let pool = $pool;
        let events: Vec<_> = $batch.iter().cloned().map(convert::to_record).collect();
        let mut lease = pool.checkout().await?;
        let (bindings, store) = lease.parts();
        let result = pool.bounded(bindings.eventyard_plugin_event_sink().call_deliver(store, &events)).await;
        let answer = pool.finish(lease, result)?;
        answer.map_err(|err| {
            pool.record_guest_error();
            convert::delivery_error(err)
        })
    }};
}

#[async_trait]
impl Sink for WasmSink {
    async fn deliver(&self, batch: &[Event]) -> Result<(), DeliveryError> {
        match &self.pool {
            SinkPool::V0_1(pool) => deliver!(pool, batch, convert::v0_1),
            SinkPool::V0_2(pool) => deliver!(pool, batch, convert::v0_2),
        }
    }
}

/// An auth-policy plugin, of either contract version. A policy that faults denies.
pub struct WasmAuthPolicy {
    pub meta: PluginMeta,
    pub(crate) pool: AuthPool,
}

pub(crate) enum AuthPool {
    V0_1(InstancePool<v0_1::auth::AuthPolicy>),
    V0_2(InstancePool<v0_2::auth::AuthPolicy>),
}

impl WasmAuthPolicy {
    pub fn stats(&self) -> &CallStats {
        match &self.pool {
            AuthPool::V0_1(pool) => &pool.stats,
            AuthPool::V0_2(pool) => &pool.stats,
        }
    }
}

/// Asks `pool` of one contract version to decide on `request`.
macro_rules! authorize {
    ($pool:expr, $request:expr, $convert:path) => {{
        use $convert as convert;
        let pool = $pool;
        let request = convert::auth_request($request);
        async {
            let mut lease = pool.checkout().await?;
            let (bindings, store) = lease.parts();
            let result = pool.bounded(bindings.eventyard_plugin_authorizer().call_authorize(store, &request)).await;
            pool.finish(lease, result)
        }
        .await
        .map(convert::decision)
    }};
}

#[async_trait]
impl AuthPolicy for WasmAuthPolicy {
    async fn authorize(&self, request: &AuthRequest) -> Decision {
        let decision = match &self.pool {
            AuthPool::V0_1(pool) => authorize!(pool, request, convert::v0_1),
            AuthPool::V0_2(pool) => authorize!(pool, request, convert::v0_2),
        };
        decision.unwrap_or_else(|fault| Decision::Deny(format!("auth policy `{}` {fault}", self.meta.name)))
    }
}
