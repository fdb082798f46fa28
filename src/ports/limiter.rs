//! The concurrency limiter: leases per campaign and the carrier's pace.

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::ids::{CampaignId, LeaseId};

#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error("limiter unavailable: {0}")]
    Unavailable(String),
}

/// Counts calls dialing per campaign and in the whole system. A lease expires unless renewed,
/// so a holder that dies cannot leak capacity.
#[async_trait]
pub trait ConcurrencyLimiter: Send + Sync + 'static {
    /// Takes up to `want` leases for `campaign_id`, never going above `limit` for the campaign
    /// nor above the global cap.
    async fn acquire(
        &self,
        campaign_id: CampaignId,
        limit: u32,
        want: u32,
    ) -> Result<Vec<LeaseId>, LimiterError>;
    async fn release(&self, leases: &[(CampaignId, LeaseId)]) -> Result<(), LimiterError>;
    /// Extends live leases; returns, per lease, whether it was still alive (an expired lease
    /// is never revived: its slot may already be someone else's).
    async fn renew(&self, leases: &[(CampaignId, LeaseId)]) -> Result<Vec<bool>, LimiterError>;
    async fn active(&self, campaign_id: CampaignId) -> Result<u32, LimiterError>;
    async fn active_total(&self) -> Result<u32, LimiterError>;

    /// Takes one event from the pacing bucket `key` (shared by every process using this
    /// limiter), refilled at `per_second` with room for `burst`: `None` when the event may
    /// happen now, else how long to wait before asking again.
    async fn pace(
        &self,
        key: &str,
        per_second: f64,
        burst: u32,
    ) -> Result<Option<Duration>, LimiterError>;
}
