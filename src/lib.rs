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
pub mod cli;
pub mod context;
pub mod domain;
pub mod keys_command;
pub mod metrics;
pub mod ports;
pub mod process;
pub mod roles;
pub mod runtime;
pub mod settings;
pub mod telemetry;

// What exercises the engine from outside (the Twilio-compatible carrier simulator, the load
// test and benchmarks, fault injection) lives in `tools/`, so that `src/` reads as the engine;
// it ships in the same executable, as `outbound carrier-sim`, `load-test`, `bench` and `chaos`.
#[path = "../tools/carrier_sim/mod.rs"]
pub mod carrier_sim;
#[path = "../tools/chaos/mod.rs"]
pub mod chaos;
#[path = "../tools/loadtest/mod.rs"]
pub mod loadtest;
#[path = "../tools/webhook_receiver/mod.rs"]
pub mod webhook_receiver;
