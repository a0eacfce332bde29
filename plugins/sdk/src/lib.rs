//! # eventyard-sdk
//!
//! Write Eventyard plugins in Rust. A plugin is a type that implements one role trait —
//! [`Handler`], [`Sink`] or [`AuthPolicy`] — plus one export macro. Build it with
//! `cargo build --release --target wasm32-wasip2` and drop the `.wasm` file into the router's
//! plugin directory.
//!
//! The examples below compile as doc tests (on the host target their exports are never called).
//!
//! ## A handler: filter, transform, fan out
//!
//! ```no_run
//! use eventyard_sdk::{Config, Error, Event, Handler, Outcome};
//!
//! /// Drops events without data and upper-cases the rest.
//! struct Shout;
//!
//! impl Handler for Shout {
//!     fn init(_config: Config) -> Result<Self, Error> {
//!         Ok(Shout)
//!     }
//!
//!     fn handle(&mut self, mut event: Event) -> Result<Outcome, Error> {
//!         if event.data.is_empty() {
//!             return Ok(Outcome::DROP);
//!         }
//!         event.data = event.data.to_ascii_uppercase();
//!         Ok(event.into())
//!     }
//! }
//!
//! eventyard_sdk::export_handler!(Shout);
//! # fn main() {}
//! ```
//!
//! ## A sink: deliver batches
//!
//! ```no_run
//! use eventyard_sdk::{Config, DeliveryError, Error, Event, EventFailure, Sink};
//!
//! /// Accepts events whose data is JSON; reports the others as failed.
//! struct JsonOnly;
//!
//! impl Sink for JsonOnly {
//!     fn init(_config: Config) -> Result<Self, Error> {
//!         Ok(JsonOnly)
//!     }
//!
//!     fn deliver(&mut self, batch: Vec<Event>) -> Result<(), DeliveryError> {
//!         let failed: Vec<EventFailure> = batch
//!             .iter()
//!             .enumerate()
//!             .filter(|(_, event)| event.json::<serde_json::Value>().is_err())
//!             .map(|(i, _)| EventFailure { index: i as u32, message: "not JSON".into(), retryable: false })
//!             .collect();
//!         if failed.is_empty() { Ok(()) } else { Err(DeliveryError::Partial(failed)) }
//!     }
//! }
//!
//! eventyard_sdk::export_sink!(JsonOnly);
//! # fn main() {}
//! ```
//!
//! ## An auth policy: admit clients and scope them
//!
//! ```no_run
//! use eventyard_sdk::{AuthPolicy, AuthRequest, Config, Decision, Error, Grant, Permissions};
//!
//! /// Admits anyone with a user name into their own subject space.
//! struct PerUser;
//!
//! impl AuthPolicy for PerUser {
//!     fn init(_config: Config) -> Result<Self, Error> {
//!         Ok(PerUser)
//!     }
//!
//!     fn authorize(&mut self, request: AuthRequest) -> Decision {
//!         let Some(user) = request.user else { return Decision::Deny("no user name".into()) };
//!         let own = Permissions { allow: vec![format!("users.{user}.>")], deny: vec![] };
//!         Decision::Allow(Grant { account: "USERS".into(), publish: own.clone(), subscribe: own })
//!     }
//! }
//!
//! eventyard_sdk::export_auth_policy!(PerUser);
//! # fn main() {}
//! ```
//!
//! Layout:
//! - [`Handler`], [`Sink`], [`AuthPolicy`] and their export macros: the three plugin roles.
//! - [`Event`], [`Context`]: the event, with helpers for JSON data, extensions and building new events.
//! - [`Config`]: the plugin's settings from the router config.
//! - [`Error`], [`DeliveryError`]: failures, retryable or permanent.
//! - [`subject`]: NATS-style subject patterns (`*`, `>`).
//! - [`log`], [`metrics`], [`clock`]: host services every plugin may use.
//! - [`kafka`], [`nats`]: capabilities a sink may use when its config grants them.
//!
//! Each plugin instance handles one call at a time, so the role methods take `&mut self`; the host
//! may run several instances of one plugin side by side, each initialised with the same config.
#![deny(missing_docs)]

mod auth;
mod config;
mod event;
mod handler;
mod host;
#[cfg(feature = "http")]
pub mod http;
mod lend;
mod sink;
pub mod subject;
pub mod wit;

pub use auth::{AuthPolicy, AuthRequest, Decision, Grant, Permissions, Protocol};
pub use config::Config;
pub use event::{Context, Event, EventRecord};
pub use handler::{Handler, Outcome};
pub use host::{clock, kafka, log, metrics, nats};
pub use sink::{DeliveryError, EventFailure, Sink};
pub use wit::types::Error;

/// The version of this SDK, recorded in every plugin it builds (`eventyard plugin inspect` shows it).
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The WIT package version this SDK targets.
pub const WIT_VERSION: &str = "0.2.0";

impl Error {
    /// A failure that will not go away by retrying the same input.
    pub fn permanent(message: impl Into<String>) -> Self {
        Error { message: message.into(), retryable: false }
    }

    /// A failure that may go away if the same input is tried again later.
    pub fn retryable(message: impl Into<String>) -> Self {
        Error { message: message.into(), retryable: true }
    }
}

/// Used by the export macros; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::handler::{handle, handle_batch};
    pub use crate::wit::{auth_world, handler_world, sink_world};

    const VERSION: &str = env!("CARGO_PKG_VERSION");
    /// Length of [`SDK_VERSION_SECTION`].
    pub const SDK_VERSION_LEN: usize = VERSION.len();
    /// The SDK version as bytes, stored in the `eventyard-sdk` custom section of every plugin.
    pub const SDK_VERSION_SECTION: [u8; SDK_VERSION_LEN] = {
        let bytes = VERSION.as_bytes();
        let mut out = [0u8; SDK_VERSION_LEN];
        let mut i = 0;
        while i < bytes.len() {
            out[i] = bytes[i];
            i += 1;
        }
        out
    };

    /// Records the SDK version in the plugin's `eventyard-sdk` custom section.
    #[macro_export]
    #[doc(hidden)]
    macro_rules! __record_sdk_version {
        () => {
            #[cfg(target_family = "wasm")]
            #[unsafe(link_section = "eventyard-sdk")]
            #[used]
            static __EVENTYARD_SDK_VERSION: [u8; $crate::__private::SDK_VERSION_LEN] =
                $crate::__private::SDK_VERSION_SECTION;
        };
    }

    /// Message for a call that arrives before `init` succeeded (the host never does this).
    pub const NOT_INITIALISED: &str = "plugin called before init succeeded";
}
