//! Telephony providers. `mock` is the default and the only one today; a real provider plugs in
//! behind `ports::TelephonyProvider`, reporting outcomes as its webhooks arrive.

pub mod mock;

pub use mock::{MockConfig, MockProvider};
