//! The [`Handler`] role, its [`Outcome`], and [`export_handler!`](crate::export_handler).

use crate::wit::handler_world::exports::eventyard::plugin::event_handler::Outcome as WitOutcome;
use crate::wit::types::Event as HostEvent;
use crate::{Config, Error, Event};

/// A plugin that filters, transforms or fans out events.
///
/// `handle` answers with an [`Outcome`]: [`Outcome::Keep`] passes the event on (with any changes
/// made to it), [`Outcome::DROP`] drops it, and `event.into()` or `vec![a, b].into()` send on what
/// the handler made. An `Err` is handled by the plugin's failure policy in the router config.
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

/// What a handler does with one event.
#[derive(Debug)]
pub enum Outcome {
    /// Pass the event on, with whatever was changed in it. The cheapest answer: nothing that was
    /// not changed travels back to the host.
    Keep,
    /// Send these events on instead: none drops the input, one replaces it, several fan it out.
    Emit(Vec<Event>),
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

    /// The answer to the host about its lent input (`input` is its handle): sending on the input
    /// itself, changed or not, is `keep`, so nothing of it crosses back.
    fn into_wit(self, input: u32) -> WitOutcome {
        match self {
            Outcome::Keep => WitOutcome::Keep,
            Outcome::Emit(events) if events.is_empty() => WitOutcome::Drop,
            Outcome::Emit(events) if events.len() == 1 && events[0].is_lent(input) => WitOutcome::Keep,
            Outcome::Emit(events) => WitOutcome::Emit(events.into_iter().map(Event::into_host).collect()),
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

/// The export glue's `handle`: hands the lent `input` to the handler and answers the host.
#[doc(hidden)]
pub fn handle<H: Handler>(handler: &mut H, input: HostEvent) -> Result<WitOutcome, Error> {
    let handle = input.handle();
    let outcome = handler.handle(Event::lent(input));
    let answer = outcome.map(|outcome| outcome.into_wit(handle));
    crate::event::end_call();
    answer
}

/// The export glue's `handle-batch`.
#[doc(hidden)]
pub fn handle_batch<H: Handler>(handler: &mut H, inputs: Vec<HostEvent>) -> Vec<Result<WitOutcome, Error>> {
    let handles: Vec<u32> = inputs.iter().map(HostEvent::handle).collect();
    let outcomes = handler.handle_batch(inputs.into_iter().map(Event::lent).collect());
    let answers =
        outcomes.into_iter().zip(handles).map(|(outcome, handle)| outcome.map(|o| o.into_wit(handle))).collect();
    crate::event::end_call();
    answers
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

                fn handle(event: $crate::wit::types::Event) -> ::std::result::Result<__wit::Outcome, $crate::Error> {
                    __STATE.with_borrow_mut(|state| match state {
                        ::std::option::Option::Some(handler) => $crate::__private::handle(handler, event),
                        ::std::option::Option::None => {
                            ::std::result::Result::Err($crate::Error::permanent($crate::__private::NOT_INITIALISED))
                        }
                    })
                }

                fn handle_batch(
                    events: ::std::vec::Vec<$crate::wit::types::Event>,
                ) -> ::std::vec::Vec<::std::result::Result<__wit::Outcome, $crate::Error>> {
                    __STATE.with_borrow_mut(|state| match state {
                        ::std::option::Option::Some(handler) => $crate::__private::handle_batch(handler, events),
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
