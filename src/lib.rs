//! Eventyard: a WebAssembly-extensible event router.
//!
//! Layout, in the order an event crosses it (see ARCHITECTURE.md for the whole map):
//! - [`event`]: the event type (CloudEvents context, extensions, routing subject, data).
//! - [`route`]: the [`route::Handler`] role and failure policies.
//! - [`sink`]: the [`sink::Sink`] role and delivery errors.
//! - [`auth`]: the [`auth::AuthPolicy`] role, requests and grants.
//! - [`fault`]: how a call into any role can fail without answering.
//! - [`capability`]: the Kafka and NATS services the host lends to sinks.
//! - [`plugin`]: the only wasmtime user: loads components and adapts them to the role traits.
//! - [`config`]: the TOML config: parse, validate (every error with key and line).
//! - [`server`]: turns a validated config into running parts (today: the plugin set).
//! - [`cli`]: the `eventyard` command line.
//! - [`telemetry`]: logging setup.
#![deny(clippy::print_stdout)]

pub mod auth;
pub mod capability;
pub mod cli;
pub mod config;
pub mod event;
pub mod fault;
pub mod plugin;
pub mod route;
pub mod server;
pub mod sink;
pub mod telemetry;
