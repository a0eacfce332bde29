//! The config parser and validator on any text: it never panics; it accepts or names its errors.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eventyard_fuzz::config(data));
