//! The config parser and validator on any text: it never panics; it accepts or names its errors.
#![no_main]

mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::config(data));
