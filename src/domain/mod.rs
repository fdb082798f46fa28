//! Pure types and rules of outbound: campaigns, calls, business hours, retry policy, phone numbers.
//!
//! Nothing here performs I/O, reads a clock or spawns a task; time and randomness are passed in,
//! so every rule is unit-tested with fixed inputs.

pub mod access;
pub mod admission;
pub mod answer;
pub mod business_hours;
pub mod call;
pub mod campaign;
pub mod carrier;
pub mod compliance;
pub mod duration;
pub mod forecast;
pub mod ids;
pub mod message;
pub mod metadata;
pub mod pacing;
pub mod phone;
pub mod settlement;
pub mod stats;
pub mod webhook;
