//! outbound: an engine for large outbound voice-call campaigns.
//!
//! One binary, five roles (`outbound serve --roles api,scheduler,call,status,retry`):
//!
//! ```text
//!  HTTP ─▶ api ──wake──▶ scheduler ──dispatch──▶ call ──status──▶ status ──retry──▶ retry
//!           │               │  ▲                   │                 │   │            │
//!           ▼               ▼  └──────── wake ─────┼─────────────────┘   │            │
//!         store ◀──── claims (slots)          provider             store           store
//! ```
//!
//! `domain` holds pure rules, `ports` the traits roles use, `adapters` the backends, `roles`
//! the task groups, `process` what they share (role names, health, backoff), `runtime` the
//! supervisor on top, and `context` the one place that wires adapters into ports.

pub mod adapters;
pub mod carrier_sim;
pub mod chaos;
pub mod cli;
pub mod context;
pub mod domain;
pub mod keys_command;
pub mod loadtest;
pub mod metrics;
pub mod ports;
pub mod process;
pub mod roles;
pub mod runtime;
pub mod settings;
pub mod telemetry;
