//! The closed set of roles, shared by the CLI (`--roles`) and the configuration.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum RoleName {
    /// REST API, health and metrics.
    Api,
    /// Admits calls: business hours, concurrency leases, claims, dispatch.
    Scheduler,
    /// Dials through the telephony provider and reports outcomes.
    Call,
    /// Records outcomes, statistics and retry decisions.
    Status,
    /// Brings calls back when their backoff ends.
    Retry,
    /// Every role above.
    All,
}

impl RoleName {
    /// Every concrete role, in start order (and reverse stop order for intake).
    pub const ROLES: [RoleName; 5] = [
        Self::Status,
        Self::Retry,
        Self::Call,
        Self::Scheduler,
        Self::Api,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Scheduler => "scheduler",
            Self::Call => "call",
            Self::Status => "status",
            Self::Retry => "retry",
            Self::All => "all",
        }
    }

    /// The concrete roles named by a list that may contain `all`.
    pub fn expand(names: &[RoleName]) -> BTreeSet<RoleName> {
        if names.contains(&Self::All) {
            return Self::ROLES.into_iter().collect();
        }
        names.iter().copied().collect()
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
