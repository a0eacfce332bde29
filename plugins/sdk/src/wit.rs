//! The raw bindings generated from `wit/`, one module per world. Plugins rarely need these: the crate
//! root re-exports the types under plain names. All worlds share the types and host imports generated
//! in [`handler_world`], so an [`Event`](crate::Event) is the same type whatever the role.

#![allow(missing_docs)]

/// Bindings for the `handler` world; also the home of the shared types and host imports.
pub mod handler_world {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "eventyard:plugin/handler@0.2.0",
        pub_export_macro: true,
        export_macro_name: "__export_handler_world",
        default_bindings_module: "eventyard_sdk::__private::handler_world",
    });
}

/// Bindings for the `sink` world, including the capability imports.
pub mod sink_world {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "eventyard:plugin/sink@0.2.0",
        pub_export_macro: true,
        export_macro_name: "__export_sink_world",
        default_bindings_module: "eventyard_sdk::__private::sink_world",
        with: {
            "eventyard:plugin/types@0.2.0": crate::wit::types,
            "eventyard:plugin/log@0.2.0": crate::wit::handler_world::eventyard::plugin::log,
            "eventyard:plugin/clock@0.2.0": crate::wit::handler_world::eventyard::plugin::clock,
            "eventyard:plugin/metrics@0.2.0": crate::wit::handler_world::eventyard::plugin::metrics,
        },
    });
}

/// Bindings for the `auth-policy` world.
pub mod auth_world {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "eventyard:plugin/auth-policy@0.2.0",
        pub_export_macro: true,
        export_macro_name: "__export_auth_world",
        default_bindings_module: "eventyard_sdk::__private::auth_world",
        with: {
            "eventyard:plugin/types@0.2.0": crate::wit::types,
            "eventyard:plugin/log@0.2.0": crate::wit::handler_world::eventyard::plugin::log,
            "eventyard:plugin/clock@0.2.0": crate::wit::handler_world::eventyard::plugin::clock,
            "eventyard:plugin/metrics@0.2.0": crate::wit::handler_world::eventyard::plugin::metrics,
        },
    });
}

pub use handler_world::eventyard::plugin::types;
