//! Ingest: how events get into Eventyard from the outside.
//!
//! Owns turning what a client sent into [`crate::event::Event`]s: [`cloudevents`], the decoder for
//! CloudEvents over HTTP; [`http`], the axum router that calls it (auth, status codes, body limits);
//! [`serve`], the listener that serves that router (connection cap, timeouts, TLS). Nothing here
//! may route, queue or run handlers, and the decoders do no I/O: the transport hands them bytes,
//! headers and the time.

pub mod cloudevents;
pub mod http;
pub mod serve;
