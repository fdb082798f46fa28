//! Live campaign statistics, kept as counters that change in the same transaction as the calls.

use chrono::{DateTime, Utc};

use super::ids::CampaignId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignStats {
    pub campaign_id: CampaignId,
    pub total_targets: u64,
    pub total_calls: u64,
    pub queued_calls: u64,
    pub retrying_calls: u64,
    pub dialing_calls: u64,
    pub completed_calls: u64,
    pub failed_calls: u64,
    pub canceled_calls: u64,
    pub attempts_total: u64,
    pub retries_attempted: u64,
    pub duration_ms_total: u64,
    pub finished_attempts: u64,
    pub updated_at: DateTime<Utc>,
}

impl CampaignStats {
    pub fn pending_calls(&self) -> u64 {
        self.queued_calls + self.retrying_calls
    }

    pub fn avg_duration_ms(&self) -> f64 {
        if self.finished_attempts == 0 {
            0.0
        } else {
            self.duration_ms_total as f64 / self.finished_attempts as f64
        }
    }

    /// The API's invariant: every call is in exactly one bucket.
    pub fn is_consistent(&self) -> bool {
        self.total_calls
            == self.pending_calls()
                + self.dialing_calls
                + self.completed_calls
                + self.failed_calls
                + self.canceled_calls
    }

    pub fn has_open_calls(&self) -> bool {
        self.queued_calls + self.retrying_calls + self.dialing_calls > 0
    }
}
