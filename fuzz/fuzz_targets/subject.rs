//! Subject matching, two ways: `Pattern::matches` and the broker's `SubscriptionIndex` trie must
//! agree on every valid pattern and subject (the input is `pattern NUL subject`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eventyard_fuzz::subject(data));
