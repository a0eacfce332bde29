//! Host bindings generated from `wit/`, one module per world. The handler world's module owns the
//! shared types and host imports; the sink and auth-policy worlds reuse them through `with`, so an
//! event record is one Rust type whichever world it crosses.
//!
//! Kept small and apart: `bindgen!` expansion is the slowest part of the host to compile.

pub mod handler {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "eventyard:plugin/handler@0.1.0",
        exports: { default: async },
    });
}

pub mod sink {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "eventyard:plugin/sink@0.1.0",
        imports: {
            "eventyard:plugin/kafka-producer.send": async,
            "eventyard:plugin/nats-publisher.publish": async,
        },
        exports: { default: async },
        with: {
            "eventyard:plugin/types": super::handler::eventyard::plugin::types,
            "eventyard:plugin/log": super::handler::eventyard::plugin::log,
            "eventyard:plugin/clock": super::handler::eventyard::plugin::clock,
            "eventyard:plugin/metrics": super::handler::eventyard::plugin::metrics,
        },
    });
}

pub mod auth {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "eventyard:plugin/auth-policy@0.1.0",
        exports: { default: async },
        with: {
            "eventyard:plugin/types": super::handler::eventyard::plugin::types,
            "eventyard:plugin/log": super::handler::eventyard::plugin::log,
            "eventyard:plugin/clock": super::handler::eventyard::plugin::clock,
            "eventyard:plugin/metrics": super::handler::eventyard::plugin::metrics,
        },
    });
}

pub use handler::eventyard::plugin::types as wit;
