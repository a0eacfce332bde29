//! `WasmHandler`, `WasmSink` and `WasmAuthPolicy`: the role traits implemented by calling a plugin's
//! instances, plus the conversions between host types and WIT records. No wasmtime type or trap
//! leaves this file: guest errors become role errors, traps become [`Fault`]s.

use std::sync::Arc;

use async_trait::async_trait;

use super::bindings::auth::exports::eventyard::plugin::authorizer as wit_auth;
use super::bindings::handler::exports::eventyard::plugin::event_handler::Outcome;
use super::bindings::{auth, handler, sink, wit};
use super::component::ComponentInfo;
use super::host::PluginShared;
use super::instance::{CallStats, InstancePool};
use crate::auth::{AuthPolicy, AuthRequest, Decision, Grant, Permissions, Protocol};
use crate::event::{Context, Event};
use crate::fault::Fault;
use crate::route::{Handler, HandlerError};
use crate::sink::{DeliveryError, EventFailure, Sink};

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

fn to_wit(event: Event) -> wit::Event {
    let c = event.context;
    wit::Event {
        subject: event.subject,
        context: wit::Context {
            id: c.id,
            source: c.source,
            type_: c.ty,
            specversion: c.specversion,
            subject: c.subject,
            time: c.time,
            datacontenttype: c.datacontenttype,
            dataschema: c.dataschema,
        },
        extensions: event.extensions,
        data: event.data.into(),
    }
}

fn from_wit(event: wit::Event) -> Event {
    let c = event.context;
    Event {
        subject: event.subject,
        context: Context {
            id: c.id,
            source: c.source,
            ty: c.type_,
            specversion: c.specversion,
            subject: c.subject,
            time: c.time,
            datacontenttype: c.datacontenttype,
            dataschema: c.dataschema,
        },
        extensions: event.extensions,
        data: event.data.into(),
        nats: None,
        completion: None,
        arrived: None,
    }
}

/// The events a handler's answer sends on. `input` is the event as the host lowered it: the call
/// borrowed it, so `keep` hands it back without copying anything out of the guest.
fn handler_result(input: wit::Event, result: Result<Outcome, wit::Error>) -> Result<Vec<Event>, HandlerError> {
    match result {
        Ok(Outcome::Keep) => Ok(vec![from_wit(input)]),
        Ok(Outcome::Emit(events)) => Ok(events.into_iter().map(from_wit).collect()),
        Err(err) => Err(HandlerError::Rejected { message: err.message, retryable: err.retryable }),
    }
}

/// A handler plugin.
pub struct WasmHandler {
    pub meta: PluginMeta,
    pub(crate) pool: InstancePool<handler::Handler>,
}

impl WasmHandler {
    pub fn stats(&self) -> &CallStats {
        &self.pool.stats
    }
}

#[async_trait]
impl Handler for WasmHandler {
    async fn handle(&self, event: Event) -> Result<Vec<Event>, HandlerError> {
        let input = to_wit(event);
        let mut lease = self.pool.checkout().await?;
        let (bindings, store) = lease.parts();
        let result = self.pool.bounded(bindings.eventyard_plugin_event_handler().call_handle(store, &input)).await;
        let answer = self.pool.finish(lease, result)?;
        if answer.is_err() {
            self.pool.record_guest_error();
        }
        handler_result(input, answer)
    }

    async fn handle_batch(&self, events: Vec<Event>) -> Vec<Result<Vec<Event>, HandlerError>> {
        let count = events.len();
        let batch: Vec<wit::Event> = events.into_iter().map(to_wit).collect();
        let outcome = async {
            let mut lease = self.pool.checkout().await?;
            let (bindings, store) = lease.parts();
            let result =
                self.pool.bounded(bindings.eventyard_plugin_event_handler().call_handle_batch(store, &batch)).await;
            self.pool.finish(lease, result)
        }
        .await;
        match outcome {
            Ok(results) if results.len() == count => batch
                .into_iter()
                .zip(results)
                .map(|(input, result)| {
                    if result.is_err() {
                        self.pool.record_guest_error();
                    }
                    handler_result(input, result)
                })
                .collect(),
            Ok(results) => {
                let fault = Fault::Trap(format!("handle-batch returned {} results for {count} events", results.len()));
                vec![Err(HandlerError::Fault(fault)); count]
            }
            Err(fault) => vec![Err(HandlerError::Fault(fault)); count],
        }
    }
}

/// A sink plugin.
pub struct WasmSink {
    pub meta: PluginMeta,
    pub(crate) pool: InstancePool<sink::Sink>,
}

impl WasmSink {
    pub fn stats(&self) -> &CallStats {
        &self.pool.stats
    }
}

#[async_trait]
impl Sink for WasmSink {
    async fn deliver(&self, batch: &[Event]) -> Result<(), DeliveryError> {
        let events: Vec<wit::Event> = batch.iter().cloned().map(to_wit).collect();
        let mut lease = self.pool.checkout().await?;
        let (bindings, store) = lease.parts();
        let result = self.pool.bounded(bindings.eventyard_plugin_event_sink().call_deliver(store, &events)).await;
        let answer = self.pool.finish(lease, result)?;
        answer.map_err(|err| {
            self.pool.record_guest_error();
            match err {
                wit::DeliveryError::Retryable(message) => DeliveryError::Retryable(message),
                wit::DeliveryError::Permanent(message) => DeliveryError::Permanent(message),
                wit::DeliveryError::Partial(failures) => DeliveryError::Partial(
                    failures
                        .into_iter()
                        .map(|f| EventFailure { index: f.index as usize, message: f.message, retryable: f.retryable })
                        .collect(),
                ),
            }
        })
    }
}

/// An auth-policy plugin. A policy that faults denies.
pub struct WasmAuthPolicy {
    pub meta: PluginMeta,
    pub(crate) pool: InstancePool<auth::AuthPolicy>,
}

impl WasmAuthPolicy {
    pub fn stats(&self) -> &CallStats {
        &self.pool.stats
    }
}

fn permissions(p: wit_auth::Permissions) -> Permissions {
    Permissions { allow: p.allow, deny: p.deny }
}

#[async_trait]
impl AuthPolicy for WasmAuthPolicy {
    async fn authorize(&self, request: &AuthRequest) -> Decision {
        let request = wit_auth::AuthRequest {
            protocol: match request.protocol {
                Protocol::Nats => wit_auth::Protocol::Nats,
                Protocol::Http => wit_auth::Protocol::Http,
            },
            client_name: request.client_name.clone(),
            user: request.user.clone(),
            token: request.token.clone(),
            password: request.password.clone(),
            tls_subject: request.tls_subject.clone(),
            tls_sans: request.tls_sans.clone(),
            remote_addr: request.remote_addr.clone(),
        };
        let outcome = async {
            let mut lease = self.pool.checkout().await?;
            let (bindings, store) = lease.parts();
            let result =
                self.pool.bounded(bindings.eventyard_plugin_authorizer().call_authorize(store, &request)).await;
            self.pool.finish(lease, result)
        }
        .await;
        match outcome {
            Ok(wit_auth::Decision::Allow(grant)) => Decision::Allow(Grant {
                account: grant.account,
                publish: permissions(grant.publish),
                subscribe: permissions(grant.subscribe),
            }),
            Ok(wit_auth::Decision::Deny(reason)) => Decision::Deny(reason),
            Err(fault) => Decision::Deny(format!("auth policy `{}` {fault}", self.meta.name)),
        }
    }
}
