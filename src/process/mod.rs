//! What every role of a process shares, below the supervisor that runs them: the closed set
//! of role names, each role's health, and the backoff a role waits out a failing backend with.

pub mod backoff;
pub mod health;
pub mod role;
