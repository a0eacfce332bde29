//! Ingest: how events get into Eventyard from the outside.
//!
//! Owns turning what a client sent into [`crate::event::Event`]s. Today that is [`cloudevents`],
//! the decoder for CloudEvents over HTTP; the axum router that calls it (status codes, body limits,
//! queueing) and the NATS gateway come later. Nothing here may route, queue or run handlers, and
//! the decoders do no I/O: the transport hands them bytes, headers and the time.

pub mod cloudevents;
pub mod http;
