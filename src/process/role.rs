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

    /// When the role stops at shutdown; phases stop in order, each within the shutdown grace.
    pub fn shutdown_phase(self) -> ShutdownPhase {
        match self {
            Self::Api | Self::Scheduler | Self::All => ShutdownPhase::Intake,
            Self::Call => ShutdownPhase::Dialing,
            Self::Status | Self::Retry => ShutdownPhase::Recording,
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

/// The order in which a process stops its roles: no new work first, then the calls being dialed
/// end (within `runtime.shutdown_grace`), then their outcomes are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ShutdownPhase {
    /// The api stops accepting requests and the scheduler stops claiming.
    Intake,
    /// The call role lets dialing calls end and publishes their outcomes.
    Dialing,
    /// Status and retry record what the call role published, then commit.
    Recording,
}

impl ShutdownPhase {
    pub const IN_ORDER: [ShutdownPhase; 3] = [Self::Intake, Self::Dialing, Self::Recording];
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intake_stops_before_dialing_and_recording_last() {
        let phase = |role: RoleName| role.shutdown_phase();
        assert!(phase(RoleName::Api) < phase(RoleName::Call));
        assert!(phase(RoleName::Scheduler) < phase(RoleName::Call));
        assert!(phase(RoleName::Call) < phase(RoleName::Status));
        assert!(phase(RoleName::Call) < phase(RoleName::Retry));
        let mut phases: Vec<_> = RoleName::ROLES.map(phase).to_vec();
        phases.sort();
        phases.dedup();
        assert_eq!(
            phases,
            ShutdownPhase::IN_ORDER.to_vec(),
            "every phase has a role"
        );
    }
}
