//! The integration test binary: starts the real roles in-process on port 0 (and, for crash
//! tests, the real executable), against a fresh SQLite file per test.

// A failed expectation is a failed test here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod browser;
mod carrier;
mod console;
mod contract;
mod crash;
mod distributed;
mod engine;
mod faults;
mod fixtures;
mod helpers;
mod process;
mod scheduler;
mod security;
mod telephony;
mod voice;
mod webhooks;
