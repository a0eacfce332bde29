//! The [`Sink`] role and [`export_sink!`](crate::export_sink).

pub use crate::wit::types::{DeliveryError, EventFailure};
use crate::{Config, Error, Event};

/// A plugin that delivers batches of events to a destination.
///
/// `deliver` succeeds only once every event of the batch is at the destination. On failure, say
/// whether retrying may help ([`DeliveryError::Retryable`]), will not ([`DeliveryError::Permanent`],
/// the batch goes to dead letters), or which events failed ([`DeliveryError::Partial`]).
pub trait Sink: Sized + 'static {
    /// Builds the sink from its config; an error refuses the plugin at load.
    fn init(config: Config) -> Result<Self, Error>;

    /// Delivers one batch.
    fn deliver(&mut self, batch: Vec<Event>) -> Result<(), DeliveryError>;
}

impl From<Error> for DeliveryError {
    fn from(err: Error) -> Self {
        if err.retryable { DeliveryError::Retryable(err.message) } else { DeliveryError::Permanent(err.message) }
    }
}

/// Exports a [`Sink`] type as the plugin's `sink` world.
///
/// ```ignore
/// eventyard_sdk::export_sink!(MySink);
/// ```
#[rustfmt::skip] // rustfmt mis-indents bodies holding the `with_types_in` syntax
#[macro_export]
macro_rules! export_sink {
    ($ty:ty) => {
        const _: () = {
            use $crate::__private::sink_world::exports::eventyard::plugin::event_sink as __wit;

            ::std::thread_local! {
                static __STATE: ::std::cell::RefCell<::std::option::Option<$ty>> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }

            struct __Export;

            impl __wit::Guest for __Export {
                fn init(config: $crate::wit::types::Config) -> ::std::result::Result<(), $crate::Error> {
                    let sink = <$ty as $crate::Sink>::init($crate::Config::new(config))?;
                    __STATE.with_borrow_mut(|state| *state = ::std::option::Option::Some(sink));
                    ::std::result::Result::Ok(())
                }

                fn deliver(batch: ::std::vec::Vec<$crate::EventRecord>) -> ::std::result::Result<(), $crate::DeliveryError> {
                    let batch = batch.into_iter().map($crate::Event::from).collect();
                    __STATE.with_borrow_mut(|state| match state {
                        ::std::option::Option::Some(sink) => $crate::Sink::deliver(sink, batch),
                        ::std::option::Option::None => ::std::result::Result::Err($crate::DeliveryError::Permanent(
                            $crate::__private::NOT_INITIALISED.into(),
                        )),
                    })
                }
            }

            $crate::__private::sink_world::__export_sink_world!(__Export with_types_in $crate::__private::sink_world);
            $crate::__record_sdk_version!();
        };
    };
}
