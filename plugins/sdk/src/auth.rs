//! The [`AuthPolicy`] role and [`export_auth_policy!`](crate::export_auth_policy).

pub use crate::wit::auth_world::exports::eventyard::plugin::authorizer::{
    AuthRequest, Decision, Grant, Permissions, Protocol,
};
use crate::{Config, Error};

/// A plugin that authenticates clients and decides what they may publish and subscribe to.
///
/// The host asks once per connection (NATS) or request (HTTP). A policy that fails in any way
/// (a trap, a timeout) denies: it never lets a client in by accident.
pub trait AuthPolicy: Sized + 'static {
    /// Builds the policy from its config; an error refuses the plugin at load.
    fn init(config: Config) -> Result<Self, Error>;

    /// Decides on one client.
    fn authorize(&mut self, request: AuthRequest) -> Decision;
}

impl Permissions {
    /// Allows every subject.
    pub fn all() -> Self {
        Permissions { allow: vec![">".into()], deny: Vec::new() }
    }

    /// Allows nothing.
    pub fn none() -> Self {
        Permissions { allow: Vec::new(), deny: Vec::new() }
    }

    /// True when `subject` matches an allow pattern and no deny pattern.
    pub fn permits(&self, subject: &str) -> bool {
        let matches = |patterns: &[String]| patterns.iter().any(|p| crate::subject::matches(p, subject));
        matches(&self.allow) && !matches(&self.deny)
    }
}

/// Exports an [`AuthPolicy`] type as the plugin's `auth-policy` world.
///
/// ```ignore
/// eventyard_sdk::export_auth_policy!(MyPolicy);
/// ```
#[rustfmt::skip] // rustfmt mis-indents bodies holding the `with_types_in` syntax
#[macro_export]
macro_rules! export_auth_policy {
    ($ty:ty) => {
        const _: () = {
            use $crate::__private::auth_world::exports::eventyard::plugin::authorizer as __wit;

            ::std::thread_local! {
                static __STATE: ::std::cell::RefCell<::std::option::Option<$ty>> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }

            struct __Export;

            impl __wit::Guest for __Export {
                fn init(config: $crate::wit::types::Config) -> ::std::result::Result<(), $crate::Error> {
                    let policy = <$ty as $crate::AuthPolicy>::init($crate::Config::new(config))?;
                    __STATE.with_borrow_mut(|state| *state = ::std::option::Option::Some(policy));
                    ::std::result::Result::Ok(())
                }

                fn authorize(request: $crate::AuthRequest) -> $crate::Decision {
                    __STATE.with_borrow_mut(|state| match state {
                        ::std::option::Option::Some(policy) => $crate::AuthPolicy::authorize(policy, request),
                        ::std::option::Option::None => $crate::Decision::Deny($crate::__private::NOT_INITIALISED.into()),
                    })
                }
            }

            $crate::__private::auth_world::__export_auth_world!(__Export with_types_in $crate::__private::auth_world);
            $crate::__record_sdk_version!();
        };
    };
}
