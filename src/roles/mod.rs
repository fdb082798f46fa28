//! The roles of `outbound serve --roles ...`, each a task group with one responsibility:
//!
//! | role | consumes | does | produces |
//! |---|---|---|---|
//! | api | HTTP | validates and stores campaigns, targets, triggered calls | `wake`, `retry` |
//! | scheduler | `wake`, timer | business hours, leases, claims queued calls | `dispatch` |
//! | call | `dispatch` | dials through the provider, renews leases | `status` |
//! | status | `status` | records outcomes and statistics, decides retries, frees leases; delivers webhooks; exports finished attempts to a separate timeline | `retry`, `wake`, webhook POSTs |
//! | retry | `retry`, timer | requeues calls whose backoff ended | `wake` |
//!
//! Roles depend on ports only; `crate::context` wires the adapters.

pub mod api;
pub mod call;
pub mod consume;
pub mod export;
pub mod messages;
pub mod outcomes;
pub mod retry;
pub mod scheduler;
pub mod status;
pub mod webhooks;
