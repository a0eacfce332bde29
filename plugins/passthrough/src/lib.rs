//! `passthrough`: a handler that passes every event on unchanged. The smallest plugin there is,
//! and the baseline the benchmarks measure the Wasm boundary with.

use eventyard_sdk::{Config, Error, Event, Handler, Outcome};

struct Passthrough;

impl Handler for Passthrough {
    fn init(_config: Config) -> Result<Self, Error> {
        Ok(Passthrough)
    }

    fn handle(&mut self, _event: Event) -> Result<Outcome, Error> {
        Ok(Outcome::Keep)
    }
}

eventyard_sdk::export_handler!(Passthrough);
