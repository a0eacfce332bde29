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

    /// The answer to the host about its lent input at position `at`: sending on the input itself,
    /// changed or not, is `keep` with its handle, so nothing else of it crosses back.
    fn into_wit(self, at: usize) -> WitOutcome {
        let lent = |answer: fn(HostEvent) -> WitOutcome| {
            // Always there, by `answer`'s order: an input's own outcome takes its handle first.
            crate::lend::take_lent(at).map_or(WitOutcome::Emit(Vec::new()), answer)
        };
        match self {
            Outcome::Keep => lent(WitOutcome::Keep),
            Outcome::Emit(events) if events.is_empty() => lent(WitOutcome::Drop),
            Outcome::Emit(mut events) if events.len() == 1 && events[0].is_lent_at(at) => {
                events.pop().map_or(WitOutcome::Emit(Vec::new()), |event| WitOutcome::Keep(event.into_host()))
            }
            Outcome::Emit(events) => WitOutcome::Emit(events.into_iter().map(Event::into_host).collect()),
        }
    }

    /// Whether the answer takes only this outcome's own input: `keep`, a drop, the input sent on.
    fn answers_with_its_input(&self, at: usize) -> bool {
        match self {
            Outcome::Keep => true,
            Outcome::Emit(events) => events.is_empty() || (events.len() == 1 && events[0].is_lent_at(at)),
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
    let answer = handler.handle(crate::lend::lend_one(input)).map(|outcome| outcome.into_wit(0));
    crate::lend::end_call();
    answer
}

/// The export glue's `handle-batch`.
#[doc(hidden)]
pub fn handle_batch<H: Handler>(handler: &mut H, inputs: Vec<HostEvent>) -> Vec<Result<WitOutcome, Error>> {
    answer(inputs, |events| handler.handle_batch(events))
}

/// Lends `inputs` to `handle` and turns its outcomes into answers: first those that answer with
/// their own input, so each takes its input's handle before a fan-out could take that input as an
/// event of its own; then the rest.
fn answer(
    inputs: Vec<HostEvent>,
    handle: impl FnOnce(Vec<Event>) -> Vec<Result<Outcome, Error>>,
) -> Vec<Result<WitOutcome, Error>> {
    let mut outcomes: Vec<Option<Result<Outcome, Error>>> =
        handle(crate::lend::lend(inputs)).into_iter().map(Some).collect();
    let mut answers: Vec<Option<Result<WitOutcome, Error>>> = outcomes.iter().map(|_| None).collect();
    for own_input_first in [true, false] {
        for (at, slot) in outcomes.iter_mut().enumerate() {
            let now = match slot {
                Some(Ok(outcome)) => outcome.answers_with_its_input(at) == own_input_first,
                Some(Err(_)) => own_input_first,
                None => false,
            };
            if let (true, Some(outcome)) = (now, slot.take()) {
                answers[at] = Some(outcome.map(|outcome| outcome.into_wit(at)));
            }
        }
    }
    crate::lend::end_call();
    answers.into_iter().flatten().collect()
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
