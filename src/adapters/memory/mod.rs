//! The embedded bus and limiter: real adapters for single-machine deployments, not test fakes.
//! Their state lives in the process, so they require every role in one process (the settings
//! check refuses a role subset with them); durability comes from the store, which the roles
//! re-read after a restart.

mod bus;
mod limiter;

pub use bus::MemoryBus;
pub use limiter::LocalLimiter;
