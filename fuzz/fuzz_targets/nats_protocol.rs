//! The gateway's NATS protocol parser on any bytes: it never panics, and the ops it parses do not
//! depend on how the bytes were split into reads (the first byte sets the read size).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eventyard_fuzz::nats_protocol(data));
