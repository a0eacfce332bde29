//! Every end-to-end test, as one test binary: one link of wasmtime and librdkafka instead of one
//! per file. Each module starts the real `eventyard` binary or router, real brokers and real
//! clients, and talks to them over real sockets; `common` holds what they share.

#[path = "../common/mod.rs"]
mod common;

mod builtin_sinks;
mod cli;
mod cluster;
mod conformance;
mod contract;
mod durability;
mod examples;
mod fuzz_corpus;
mod gateway;
mod nats_bridge;
mod operator;
mod plugin_capabilities;
mod plugin_runtime;
mod polyglot;
mod reload;
mod resources;
mod rollout;
mod router;
mod sandbox;
mod security;
mod signed_plugins;
mod tap;
