//! Adapters: one folder per backend, each implementing ports from `crate::ports`.
//!
//! Nothing outside `crate::context` names an adapter type; roles see only the ports.

pub mod kafka;
pub mod memory;
pub mod postgres;
mod prepared;
pub mod redis;
pub mod scylla;
mod sql_rows;
pub mod sqlite;
pub mod telephony;
