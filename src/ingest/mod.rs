//! Ingest: how events get into Eventyard from the outside.
//!
//! Owns taking what a client sent over HTTP to the broker: [`http`], the axum router (auth, status
//! codes, body limits) that decodes with [`crate::codec`]; [`serve`], the listener that serves that
//! router (connection cap, timeouts, TLS); [`console`], the operator console's files. Nothing here
//! may route, queue or run handlers.

pub mod console;
pub mod http;
pub mod serve;
