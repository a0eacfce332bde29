//! The CloudEvents decoder on any body, in each mode (the first byte picks it): structured,
//! batched, binary (headers from the input's first lines) and raw JSON. It never panics, and every
//! event it accepts has a routing subject a subscription can match.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eventyard_fuzz::cloudevents(data));
