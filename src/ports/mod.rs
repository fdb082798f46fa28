//! The narrow traits the roles talk to. Each has an embedded adapter (SQLite, in-process bus,
//! local limiter, mock telephony) and, in distributed mode, a networked one; the contract tests
//! in `tests/` run against every adapter of a port.
//!
//! Only `domain` types cross these traits; no adapter type leaks out of `adapters/`.

mod bus;
mod limiter;
mod store;
mod telephony;
mod timeline;
mod webhooks;

pub use self::bus::*;
pub use self::limiter::*;
pub use self::store::*;
pub use self::telephony::*;
pub use self::timeline::*;
pub use self::webhooks::*;
