//! The [`Handler`] role, its [`Outcome`], and [`export_handler!`](crate::export_handler).

pub use crate::wit::handler_world::exports::eventyard::plugin::event_handler::Outcome;
use crate::{Config, Error, Event};

/// A plugin that filters, transforms or fans out events.
///
/// `handle` answers with an [`Outcome`]: [`Outcome::Keep`] passes the event on as it arrived,
/// [`Outcome::DROP`] drops it, and `event.into()` or `vec![a, b].into()` send on what the handler
/// made. An `Err` is handled by the plugin's failure policy in the router config.
pub trait Handler: Sized + 'static {
    /// Builds the handler from its config; an error refuses the plugin at load.
    fn init(config: Config) -> Result<Self, Error>;

    /// Handles one event.
    fn handle(&mut self, event: Event) -> Result<Outcome, Error>;

    /// Handles a batch, one result per event in order. The default calls [`Handler::handle`] for each.
    fn handle_batch(&mut self, events: Vec<Event>) -> Vec<Result<Outcome, Error>> {
        events.into_iter().map(|event| self.handle(event)).collect()
    }
}

impl Outcome {
    /// Drops the event.
    pub const DROP: Outcome = Outcome::Emit(Vec::new());

    /// The events that go on, given the `input` the outcome answers (handy in a plugin's tests).
    pub fn into_events(self, input: Event) -> Vec<Event> {
        match self {
            Outcome::Keep => vec![input],
            Outcome::Emit(events) => events,
        }
    }
}

/// Sends on this one event (a transformation of the input, typically).
impl From<Event> for Outcome {
    fn from(event: Event) -> Self {
        Outcome::Emit(vec![event])
    }
}

/// Sends on these events: none drops the input, several fan it out.
impl From<Vec<Event>> for Outcome {
    fn from(events: Vec<Event>) -> Self {
        Outcome::Emit(events)
    }
}

/// Exports a [`Handler`] type as the plugin's `handler` world.
///
/// ```ignore
/// eventyard_sdk::export_handler!(MyHandler);
/// ```
#[rustfmt::skip] // rustfmt mis-indents bodies holding the `with_types_in` syntax
#[macro_export]
macro_rules! export_handler {
    ($ty:ty) => {
        const _: () = {
            use $crate::__private::handler_world::exports::eventyard::plugin::event_handler as __wit;

            ::std::thread_local! {
                static __STATE: ::std::cell::RefCell<::std::option::Option<$ty>> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }

            struct __Export;

            impl __wit::Guest for __Export {
                fn init(config: $crate::wit::types::Config) -> ::std::result::Result<(), $crate::Error> {
                    let handler = <$ty as $crate::Handler>::init($crate::Config::new(config))?;
                    __STATE.with_borrow_mut(|state| *state = ::std::option::Option::Some(handler));
                    ::std::result::Result::Ok(())
                }

                fn handle(event: $crate::Event) -> ::std::result::Result<$crate::Outcome, $crate::Error> {
                    __STATE.with_borrow_mut(|state| match state {
                        ::std::option::Option::Some(handler) => $crate::Handler::handle(handler, event),
                        ::std::option::Option::None => {
                            ::std::result::Result::Err($crate::Error::permanent($crate::__private::NOT_INITIALISED))
                        }
                    })
                }

                fn handle_batch(
                    events: ::std::vec::Vec<$crate::Event>,
                ) -> ::std::vec::Vec<::std::result::Result<$crate::Outcome, $crate::Error>> {
                    __STATE.with_borrow_mut(|state| match state {
                        ::std::option::Option::Some(handler) => $crate::Handler::handle_batch(handler, events),
                        ::std::option::Option::None => events
                            .iter()
                            .map(|_| ::std::result::Result::Err($crate::Error::permanent($crate::__private::NOT_INITIALISED)))
                            .collect(),
                    })
                }
            }

            $crate::__private::handler_world::__export_handler_world!(__Export with_types_in $crate::__private::handler_world);
            $crate::__record_sdk_version!();
        };
    };
}
