//! The timeline: every finished attempt, kept apart from the store when it is Scylla.

use async_trait::async_trait;

use crate::domain::call::Attempt;
use crate::domain::ids::{CallId, CampaignId};

/// One finished attempt of one call, as the timeline keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEntry {
    pub campaign_id: CampaignId,
    pub call_id: CallId,
    pub attempt: Attempt,
}

impl TimelineEntry {
    pub fn key(&self) -> AttemptKey {
        AttemptKey {
            campaign_id: self.campaign_id,
            call_id: self.call_id,
            attempt: self.attempt.attempt,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptKey {
    pub campaign_id: CampaignId,
    pub call_id: CallId,
    pub attempt: u32,
}

/// One page of a campaign's attempts; `next_page_token` is absent on the last page.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelinePage {
    pub entries: Vec<TimelineEntry>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    #[error("invalid page token")]
    InvalidPageToken,
    #[error("timeline unavailable: {0}")]
    Unavailable(String),
    #[error("timeline failure: {0}")]
    Internal(String),
}

/// The history of finished attempts: the SQL store itself (`timeline.url = "store"`), or
/// Scylla, fed from the store by the status role's exporter.
#[async_trait]
pub trait Timeline: Send + Sync + 'static {
    async fn ping(&self) -> Result<(), TimelineError>;
    /// Keeps finished attempts. Writing an attempt again (same call and attempt number)
    /// replaces it, so a repeated export is harmless.
    async fn write(&self, entries: &[TimelineEntry]) -> Result<(), TimelineError>;
    /// The finished attempts of one call, by attempt number.
    async fn call_attempts(
        &self,
        campaign_id: CampaignId,
        call_id: CallId,
    ) -> Result<Vec<Attempt>, TimelineError>;
    /// A campaign's finished attempts, at most `limit` per page, in an order that is stable
    /// across pages: paging from no token to the last page visits each attempt once. The last
    /// page (the one without a token) may be empty.
    async fn campaign_attempts(
        &self,
        campaign_id: CampaignId,
        page_token: Option<&str>,
        limit: usize,
    ) -> Result<TimelinePage, TimelineError>;
}
