//! Adapters: one folder per backend, each implementing ports from `crate::ports`.
//!
//! Nothing outside the `context` module names an adapter type; roles see only the ports.

pub mod http;
pub mod kafka;
pub mod memory;
pub mod postgres;
pub mod redis;
pub mod scylla;
mod sql;
pub mod sqlite;
pub mod telephony;
pub mod twilio;
