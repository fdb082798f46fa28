//! The embedded store: one SQLite file in WAL mode, through diesel-async's
//! `SyncConnectionWrapper`.
//!
//! SQLite has one writer at a time, so every write goes through a single connection and runs as
//! one `BEGIN IMMEDIATE` transaction on a blocking thread; reads use a few more connections,
//! which WAL lets run beside the writer. Each port method is one transaction, so statistics move
//! with the calls they count and a crash at any point leaves a consistent file.
//!
//! The modules follow the aggregates, as in the PostgreSQL store: `campaigns`, `calls`,
//! `dispatch`, `attempts`, `instances`, and `timeline` for the store as its own timeline.

mod attempts;
mod calls;
mod campaigns;
mod dispatch;
mod error;
mod instances;
mod migrator;
mod pool;
mod timeline;

use std::sync::atomic::AtomicUsize;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::sqlite::SqliteConnection;
use diesel::RunQueryDsl;
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use tokio::sync::Mutex;

pub use self::migrator::{migrate, MIGRATIONS};
use crate::adapters::sql::rows::CountRow;
use crate::domain::call::{Attempt, Call, CallStatus};
use crate::domain::campaign::{
    Campaign, CampaignChanges, CampaignStatus, StatusAction, Transition,
};
use crate::domain::ids::{CallId, CampaignId, InstanceId};
use crate::domain::stats::CampaignStats;
use crate::ports::{
    AppliedReport, AttemptKey, AttemptReport, ClaimedCall, NewCampaign, NewTarget, OrphanedAttempt,
    RunnableCampaign, Store, StoreError, TimelineEntry,
};

type Conn = SyncConnectionWrapper<SqliteConnection>;

/// Rows per multi-row INSERT; keeps bound variables well under SQLite's 32,766.
const INSERT_CHUNK: usize = 2_000;

pub struct SqliteStore {
    writer: Mutex<Conn>,
    readers: Vec<Mutex<Conn>>,
    next_reader: AtomicUsize,
    /// Connections for one-row lookups (a campaign, its statistics), run on the calling thread:
    /// a primary-key read takes microseconds, less than a hop to the blocking pool and back.
    point_readers: Vec<std::sync::Mutex<SqliteConnection>>,
}

/// Each method runs in the module of its aggregate: `campaigns`, `calls`, `dispatch` (what the
/// scheduler claims and completes), `attempts` (reports, adoption, orphans, the export
/// backlog) and `instances`.
#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| {
            let _: Vec<CountRow> = diesel::sql_query("SELECT 1 AS n").load(conn)?;
            Ok(())
        })
        .await
    }

    async fn create_campaign(
        &self,
        new: NewCampaign,
        now: DateTime<Utc>,
    ) -> Result<Campaign, StoreError> {
        campaigns::create(self, new, now).await
    }

    async fn get_campaign(&self, id: CampaignId) -> Result<Option<Campaign>, StoreError> {
        campaigns::get(self, id).await
    }

    async fn list_campaigns(
        &self,
        status: Option<CampaignStatus>,
        after: Option<CampaignId>,
        limit: usize,
    ) -> Result<Vec<Campaign>, StoreError> {
        campaigns::list(self, status, after, limit).await
    }

    async fn update_campaign(
        &self,
        id: CampaignId,
        changes: CampaignChanges,
        now: DateTime<Utc>,
    ) -> Result<Campaign, StoreError> {
        campaigns::update(self, id, changes, now).await
    }

    async fn transition_campaign(
        &self,
        id: CampaignId,
        action: StatusAction,
        now: DateTime<Utc>,
    ) -> Result<Transition, StoreError> {
        campaigns::transition(self, id, action, now).await
    }

    async fn campaign_stats(&self, id: CampaignId) -> Result<Option<CampaignStats>, StoreError> {
        campaigns::stats(self, id).await
    }

    async fn enqueue_calls(
        &self,
        campaign_id: CampaignId,
        targets: Vec<NewTarget>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Call>, StoreError> {
        calls::enqueue(self, campaign_id, targets, now).await
    }

    async fn get_call(&self, id: CallId) -> Result<Option<(Call, Vec<Attempt>)>, StoreError> {
        calls::get(self, id).await
    }

    async fn list_calls(
        &self,
        campaign_id: CampaignId,
        status: Option<CallStatus>,
        after: Option<CallId>,
        limit: usize,
    ) -> Result<Vec<Call>, StoreError> {
        calls::list(self, campaign_id, status, after, limit).await
    }

    async fn runnable_campaigns(&self) -> Result<Vec<RunnableCampaign>, StoreError> {
        dispatch::runnable_campaigns(self).await
    }

    async fn claim_calls(
        &self,
        campaign_id: CampaignId,
        max: usize,
        owner: InstanceId,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedCall>, StoreError> {
        dispatch::claim_calls(self, campaign_id, max, owner, now).await
    }

    async fn record_attempts(
        &self,
        reports: &[AttemptReport],
        now: DateTime<Utc>,
    ) -> Result<Vec<AppliedReport>, StoreError> {
        attempts::record(self, reports, now).await
    }

    async fn promote_due_retries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<CampaignId>, StoreError> {
        dispatch::promote_due_retries(self, now, limit).await
    }

    async fn next_retry_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        dispatch::next_retry_due(self).await
    }

    async fn complete_finished_campaigns(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<CampaignId>, StoreError> {
        dispatch::complete_finished_campaigns(self, now).await
    }

    async fn adopt_attempts(
        &self,
        attempts: &[(CampaignId, CallId, u32, InstanceId)],
        owner: InstanceId,
    ) -> Result<Vec<bool>, StoreError> {
        attempts::adopt(self, attempts, owner).await
    }

    async fn heartbeat(&self, instance: InstanceId, now: DateTime<Utc>) -> Result<(), StoreError> {
        instances::heartbeat(self, instance, now).await
    }

    async fn orphaned_attempts(
        &self,
        stale_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OrphanedAttempt>, StoreError> {
        attempts::orphaned(self, stale_before, limit).await
    }

    async fn timeline_backlog(&self, limit: usize) -> Result<Vec<TimelineEntry>, StoreError> {
        attempts::backlog(self, limit).await
    }

    async fn forget_attempts(&self, keys: &[AttemptKey]) -> Result<u64, StoreError> {
        attempts::forget(self, keys).await
    }
}
