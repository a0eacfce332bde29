//! Eventyard: a WebAssembly-extensible event router.
//!
//! Layout, in the order an event crosses it (ARCHITECTURE.md has the whole map, and the layers
//! `tests/layering.rs` holds the modules to):
//! - [`event`]: the event type (CloudEvents context, extensions, routing subject, data).
//! - [`codec`]: the CloudEvents codec: structured, batch, binary and raw modes, the NATS binding,
//!   the rules every event meets.
//! - [`ingest`]: events in over HTTP.
//! - [`gateway`]: events in and out over the NATS client protocol.
//! - [`source`]: events pulled from elsewhere (an external NATS server), with [`nats_client`] the
//!   connection settings that sources and the NATS sink share.
//! - [`broker`]: subjects, patterns, accounts as subject namespaces, the subscription index, the
//!   [`broker::Broker`] trait and the embedded broker.
//! - [`permission`]: what a client may publish and subscribe to (allow, deny, queues, responses).
//! - [`route`]: the [`route::Handler`] role and failure policies.
//! - [`queue`]: bounded per-sink queues with overflow policies.
//! - [`sink`]: the [`sink::Sink`] role, delivery errors, the sink worker (batching, retries, dead
//!   letters) and built-in sinks.
//! - [`auth`]: the [`auth::AuthPolicy`] role, requests and grants.
//! - [`completion`]: tells the one who handed over an event when every copy of it is done with.
//! - [`dead_letter`]: republishing what could not be handled or delivered on `$DLQ.<name>`.
//! - [`unrouted`]: events no route took, counted by subject family and optionally dead-lettered.
//! - [`fault`]: how a call into any role can fail without answering.
//! - [`capability`]: the Kafka and NATS services the host lends to sinks; [`kafka`] the Kafka one.
//! - [`plugin`]: the only wasmtime user: loads components and adapts them to the role traits.
//! - [`config`]: the TOML config: parse, validate (every error with key and line).
//! - [`slot`]: a replaceable role implementation with generations (what hot swaps go through).
//! - [`pipeline`]: the running sinks and routes, and how a config becomes them.
//! - [`reload`]: hot reload: the plugins and the pipeline, reapplied from the config file and the
//!   plugin directory on a file change, SIGHUP or `/v1/admin/reload`.
//! - [`admin`]: `/metrics` and the admin endpoints.
//! - [`server`]: starts the router from a validated config, serves until a signal, shuts down.
//! - [`cli`]: the `eventyard` command line.
//! - [`telemetry`]: logging setup.
//! - [`tls`]: TLS settings and acceptors for the HTTP and NATS listeners, and client certificates.
//! - [`wal`]: the write-ahead log of durable embedded mode (segment files with checksums).
#![deny(clippy::print_stdout)]

pub mod admin;
pub mod auth;
pub mod broker;
pub mod capability;
pub mod cli;
pub mod codec;
pub mod completion;
pub mod config;
pub mod dead_letter;
pub mod event;
pub mod fault;
pub mod gateway;
pub mod ingest;
pub mod kafka;
pub mod nats_client;
pub mod permission;
pub mod pipeline;
pub mod plugin;
pub mod queue;
pub mod reload;
pub mod route;
pub mod server;
pub mod sink;
pub mod slot;
pub mod source;
pub mod tap;
pub mod telemetry;
pub mod tls;
pub mod unrouted;
pub mod wal;
