//! The integration test binary: starts the real roles in-process on port 0 (and, for crash
//! tests, the real executable), against a fresh SQLite file per test.

mod api;
mod crash;
mod engine;
mod helpers;
mod ports;
