//! Conversions between the host's types and the WIT records of both contract versions. The two
//! versions spell events, delivery errors and auth requests alike, so one macro writes both sets.
//! Only copies and moves fields: checking what a plugin sent is the caller's job.

macro_rules! conversions {
    ($version:ident, $record:ident) => {
        pub(crate) mod $version {
            use crate::auth::{AuthRequest, Decision, Grant, Permissions, Protocol};
            use crate::event::{Context, Event};
            use crate::plugin::bindings::$version::auth::exports::eventyard::plugin::authorizer as wit_auth;
            use crate::plugin::bindings::$version::wit;
            use crate::sink::{DeliveryError, EventFailure};

            /// The WIT record of `event`, moving its fields.
            pub fn to_record(event: Event) -> wit::$record {
                let c = event.context;
                wit::$record {
                    subject: event.subject,
                    context: wit::Context {
                        id: c.id,
                        source: c.source,
                        type_: c.ty,
                        specversion: c.specversion,
                        subject: c.subject,
                        time: c.time,
                        datacontenttype: c.datacontenttype,
                        dataschema: c.dataschema,
                    },
                    extensions: event.extensions,
                    data: event.data.into(),
                }
            }

            /// The event a plugin made, as the router has no other facts about it.
            pub fn from_record(event: wit::$record) -> Event {
                let c = event.context;
                Event {
                    subject: event.subject,
                    context: Context {
                        id: c.id,
                        source: c.source,
                        ty: c.type_,
                        specversion: c.specversion,
                        subject: c.subject,
                        time: c.time,
                        datacontenttype: c.datacontenttype,
                        dataschema: c.dataschema,
                    },
                    extensions: event.extensions,
                    data: event.data.into(),
                    nats: None,
                    completion: None,
                    arrived: None,
                }
            }

            pub fn delivery_error(err: wit::DeliveryError) -> DeliveryError {
                match err {
                    wit::DeliveryError::Retryable(message) => DeliveryError::Retryable(message),
                    wit::DeliveryError::Permanent(message) => DeliveryError::Permanent(message),
                    wit::DeliveryError::Partial(failures) => DeliveryError::Partial(
                        failures
                            .into_iter()
                            .map(|f| EventFailure {
                                index: f.index as usize,
                                message: f.message,
                                retryable: f.retryable,
                            })
                            .collect(),
                    ),
                }
            }

            pub fn auth_request(request: &AuthRequest) -> wit_auth::AuthRequest {
                wit_auth::AuthRequest {
                    protocol: match request.protocol {
                        Protocol::Nats => wit_auth::Protocol::Nats,
                        Protocol::Http => wit_auth::Protocol::Http,
                    },
                    client_name: request.client_name.clone(),
                    user: request.user.clone(),
                    token: request.token.clone(),
                    password: request.password.clone(),
                    tls_subject: request.tls_subject.clone(),
                    tls_sans: request.tls_sans.clone(),
                    remote_addr: request.remote_addr.clone(),
                }
            }

            pub fn decision(decision: wit_auth::Decision) -> Decision {
                let permissions = |p: wit_auth::Permissions| Permissions { allow: p.allow, deny: p.deny };
                match decision {
                    wit_auth::Decision::Allow(grant) => Decision::Allow(Grant {
                        account: grant.account,
                        publish: permissions(grant.publish),
                        subscribe: permissions(grant.subscribe),
                    }),
                    wit_auth::Decision::Deny(reason) => Decision::Deny(reason),
                }
            }
        }
    };
}

conversions!(v0_1, Event);
conversions!(v0_2, EventRecord);
