//! Host bindings generated from `wit/`, one module per contract version and world. Within a version
//! the handler world's module owns the shared types and host imports; the sink and auth-policy
//! worlds reuse them through `with`, so an event is one Rust type whichever world it crosses.
//!
//! `v0_2` is the contract of `wit/`; `v0_1` is the frozen `wit/0.1.0/`, kept so components built
//! against it still load.
//!
//! Kept small and apart: `bindgen!` expansion is the slowest part of the host to compile.

/// The bindings of one contract version: `wit` is its WIT directory, then its three worlds.
macro_rules! contract_bindings {
    ($wit:literal, $handler:literal, $sink:literal, $auth:literal, $($handler_imports:tt)*) => {
        pub mod handler {
            wasmtime::component::bindgen!({
                path: $wit,
                world: $handler,
                imports: { $($handler_imports)* },
                exports: { default: async },
            });
        }

        pub mod sink {
            wasmtime::component::bindgen!({
                path: $wit,
                world: $sink,
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
                path: $wit,
                world: $auth,
                exports: { default: async },
                with: {
                    "eventyard:plugin/types": super::handler::eventyard::plugin::types,
                    "eventyard:plugin/log": super::handler::eventyard::plugin::log,
                    "eventyard:plugin/clock": super::handler::eventyard::plugin::clock,
                    "eventyard:plugin/metrics": super::handler::eventyard::plugin::metrics,
                },
            });
        }

        pub use handler::eventyard::plugin::{clock, log, metrics, types as wit};
        pub use sink::eventyard::plugin::{kafka_producer, nats_publisher};
    };
}

pub mod v0_1 {
    contract_bindings!(
        "wit/0.1.0",
        "eventyard:plugin/handler@0.1.0",
        "eventyard:plugin/sink@0.1.0",
        "eventyard:plugin/auth-policy@0.1.0",
    );
}

pub mod v0_2 {
    contract_bindings!(
        "wit",
        "eventyard:plugin/handler@0.2.0",
        "eventyard:plugin/sink@0.2.0",
        "eventyard:plugin/auth-policy@0.2.0",
        // The event resource's functions trap a guest that holds more than its memory limit.
        "eventyard:plugin/types": trappable,
    );
}
