//! Webhooks in the Standard Webhooks format (standardwebhooks.com): which events an endpoint
//! listens to, which URLs it may have and which addresses they may reach, how a delivery is
//! signed, when a failed one is tried again, and the bodies the events are sent with.
//!
//! Everything here is a pure rule: the caller passes the clock, the random bytes and what the
//! network did, so the delivery worker, the API and the tests that play a receiver all agree.

pub mod address;
pub mod delivery;
pub mod events;
pub mod payload;
pub mod signature;

pub use self::address::{forbidden, EndpointUrl, MAX_URL_CHARS};
pub use self::delivery::{is_success, RetrySchedule, TryResult};
pub use self::events::{EventType, Subscription};
pub use self::payload::{
    body, AttemptFinished, CallFinished, CallOptedOut, CampaignStatusChanged, Event,
};
pub use self::signature::{sign, verify, Secret};

/// Why an endpoint's definition is refused; the messages are the API's `validation_failed`
/// details, so they name what is wrong but never echo a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("events must list at least one event type, or \"*\"")]
    NoEvents,
    #[error("unknown event type {0:?}")]
    UnknownEvent(String),
    #[error("url must be at most {MAX_URL_CHARS} characters, has {0}")]
    UrlTooLong(usize),
    #[error("url is not an absolute URL: {0}")]
    UrlMalformed(String),
    #[error("url must use https, not {0:?}")]
    UrlScheme(String),
    #[error("url must name a host")]
    UrlNoHost,
    #[error("url must not carry a user name or password")]
    UrlUserInfo,
    #[error("secret must be \"whsec_\" followed by the base64 of 24 to 64 bytes")]
    Secret,
}
