//! The embedded store: one SQLite file in WAL mode, through diesel-async's
//! `SyncConnectionWrapper`.
//!
//! SQLite has one writer at a time, so every write goes through a single connection and runs as
//! one `BEGIN IMMEDIATE` transaction on a blocking thread; reads use a few more connections,
//! which WAL lets run beside the writer. Each port method is one transaction, so statistics move
//! with the calls they count and a crash at any point leaves a consistent file.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{BigInt, Double, Integer, Nullable, Text};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, RunQueryDsl};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::AsyncConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use tokio::sync::Mutex;

use self::rows::{
    from_ms, to_ms, AttemptRow, CallRow, CampaignRow, ClaimRow, CountRow, DialingRow, IdRow,
    OrphanRow, RunnableRow, StatsDelta, StatsRow, TimelineRow, CALL_COLUMNS, CAMPAIGN_COLUMNS,
    STATS_COLUMNS, TIMELINE_COLUMNS,
};
use super::prepared::KeepPrepared;
use super::sql_rows as rows;
use super::sql_rows::{timeline_after, timeline_page};
use crate::domain::call::{next_step, Attempt, AttemptOutcome, Call, CallStatus, NextStep};
use crate::domain::campaign::{
    Campaign, CampaignChanges, CampaignStatus, StatusAction, Transition,
};
use crate::domain::ids::{CallId, CampaignId, InstanceId};
use crate::domain::stats::CampaignStats;
use crate::ports::{
    AppliedReport, AttemptKey, AttemptReport, ClaimedCall, NewCampaign, NewTarget, OrphanedAttempt,
    RunnableCampaign, Store, StoreError, Timeline, TimelineEntry, TimelineError, TimelinePage,
};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

type Conn = SyncConnectionWrapper<SqliteConnection>;

/// Rows per multi-row INSERT; keeps bound variables well under SQLite's 32,766.
const INSERT_CHUNK: usize = 2_000;
const READERS: usize = 4;

impl From<DieselError> for StoreError {
    fn from(err: DieselError) -> Self {
        match &err {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                StoreError::DuplicateName
            }
            DieselError::DatabaseError(_, info) if info.message().contains("locked") => {
                StoreError::Unavailable(err.to_string())
            }
            _ => StoreError::Internal(err.to_string()),
        }
    }
}

pub struct SqliteStore {
    writer: Mutex<Conn>,
    readers: Vec<Mutex<Conn>>,
    next_reader: AtomicUsize,
    /// Connections for one-row lookups (a campaign, its statistics), run on the calling thread:
    /// a primary-key read takes microseconds, less than a hop to the blocking pool and back.
    point_readers: Vec<std::sync::Mutex<SqliteConnection>>,
}

fn configure(conn: &mut SqliteConnection) -> Result<(), DieselError> {
    // NORMAL is durable against a process crash in WAL mode; only power loss can drop the
    // last transactions.
    conn.batch_execute(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; \
         PRAGMA foreign_keys = ON; PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;",
    )
}

/// Applies pending migrations to the SQLite file at `path`, creating it (and its folder).
pub fn migrate(path: &str) -> Result<Vec<String>, StoreError> {
    ensure_parent(path)?;
    let mut conn = SqliteConnection::establish(path)
        .map_err(|err| StoreError::Unavailable(format!("cannot open {path}: {err}")))?;
    configure(&mut conn)?;
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map_err(|err| StoreError::Internal(format!("migration failed: {err}")))?;
    Ok(applied.iter().map(|version| version.to_string()).collect())
}

fn ensure_parent(path: &str) -> Result<(), StoreError> {
    if let Some(parent) = Path::new(path).parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|err| {
                StoreError::Unavailable(format!("cannot create {}: {err}", parent.display()))
            })?;
        }
    }
    Ok(())
}

impl SqliteStore {
    pub async fn open(path: &str) -> Result<Self, StoreError> {
        ensure_parent(path)?;
        let writer = Self::connect(path).await?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(Mutex::new(Self::connect(path).await?));
        }
        let mut point_readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let mut conn = SqliteConnection::establish(path)
                .map_err(|err| StoreError::Unavailable(format!("cannot open {path}: {err}")))?;
            configure(&mut conn)?;
            point_readers.push(std::sync::Mutex::new(conn));
        }
        Ok(Self {
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
            point_readers,
        })
    }

    async fn connect(path: &str) -> Result<Conn, StoreError> {
        let mut conn = Conn::establish(path)
            .await
            .map_err(|err| StoreError::Unavailable(format!("cannot open {path}: {err}")))?;
        conn.spawn_blocking(configure).await?;
        Ok(conn)
    }

    /// Runs `work` as one immediate transaction on the writer connection.
    async fn write<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<R, StoreError> + Send + 'static,
    {
        let mut conn = self.writer.lock().await;
        conn.spawn_blocking(move |conn| Ok(conn.immediate_transaction(work)))
            .await?
    }

    /// Runs `work` on a reader connection. A single statement is its own snapshot; reads of
    /// several statements use `read_snapshot`.
    async fn read<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<R, StoreError> + Send + 'static,
    {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let slot = &self.readers[start % self.readers.len()];
        let mut conn = slot.lock().await;
        conn.spawn_blocking(move |conn| Ok(work(conn))).await?
    }

    /// Runs a one-row lookup on the calling thread when a point reader is free, otherwise on
    /// the blocking pool.
    async fn point_read<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<R, StoreError> + Send + 'static,
    {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let count = self.point_readers.len();
        for offset in 0..count {
            if let Ok(mut conn) = self.point_readers[(start + offset) % count].try_lock() {
                return work(&mut conn);
            }
        }
        self.read(work).await
    }

    /// Runs `work` in one read transaction, so its statements see one snapshot.
    async fn read_snapshot<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<R, StoreError> + Send + 'static,
    {
        self.read(move |conn| conn.transaction(work)).await
    }
}

// ---------------------------------------------------------------------------------------------
// Statement helpers, all synchronous, run inside a transaction.

fn load_campaign(
    conn: &mut SqliteConnection,
    id: CampaignId,
) -> Result<Option<Campaign>, StoreError> {
    let rows: Vec<CampaignRow> = diesel::sql_query(format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = ?"
    ))
    .bind::<Text, _>(id.to_string())
    .prepared()
    .load(conn)?;
    rows.into_iter().next().map(Campaign::try_from).transpose()
}

fn load_call(conn: &mut SqliteConnection, id: CallId) -> Result<Option<Call>, StoreError> {
    let rows: Vec<CallRow> =
        diesel::sql_query(format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = ?"))
            .bind::<Text, _>(id.to_string())
            .prepared()
            .load(conn)?;
    rows.into_iter().next().map(Call::try_from).transpose()
}

fn apply_stats(
    conn: &mut SqliteConnection,
    campaign_id: CampaignId,
    delta: &StatsDelta,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    diesel::sql_query(
        "UPDATE campaign_stats SET total_calls = total_calls + ?, queued = queued + ?, \
         retrying = retrying + ?, dialing = dialing + ?, completed = completed + ?, \
         failed = failed + ?, canceled = canceled + ?, attempts_total = attempts_total + ?, \
         retries_attempted = retries_attempted + ?, duration_ms_total = duration_ms_total + ?, \
         finished_attempts = finished_attempts + ?, updated_at = ? WHERE campaign_id = ?",
    )
    .bind::<BigInt, _>(delta.total_calls)
    .bind::<BigInt, _>(delta.queued)
    .bind::<BigInt, _>(delta.retrying)
    .bind::<BigInt, _>(delta.dialing)
    .bind::<BigInt, _>(delta.completed)
    .bind::<BigInt, _>(delta.failed)
    .bind::<BigInt, _>(delta.canceled)
    .bind::<BigInt, _>(delta.attempts_total)
    .bind::<BigInt, _>(delta.retries_attempted)
    .bind::<BigInt, _>(delta.duration_ms_total)
    .bind::<BigInt, _>(delta.finished_attempts)
    .bind::<BigInt, _>(to_ms(now))
    .bind::<Text, _>(campaign_id.to_string())
    .prepared()
    .execute(conn)?;
    Ok(())
}

fn insert_targets(
    conn: &mut SqliteConnection,
    campaign_id: CampaignId,
    targets: &[NewTarget],
) -> Result<(), StoreError> {
    let campaign = campaign_id.to_string();
    for chunk in targets.chunks(INSERT_CHUNK) {
        let placeholders = vec!["(?, ?, ?)"; chunk.len()].join(", ");
        let mut query = diesel::sql_query(format!(
            "INSERT INTO targets (campaign_id, phone_number, metadata) VALUES {placeholders}"
        ))
        .into_boxed();
        for target in chunk {
            query = query
                .bind::<Text, _>(campaign.clone())
                .bind::<Text, _>(target.phone_number.as_str().to_owned())
                .bind::<Nullable<Text>, _>(target.metadata.as_ref().map(|m| m.to_string()));
        }
        query.execute(conn)?;
    }
    Ok(())
}

fn insert_calls(conn: &mut SqliteConnection, calls: &[Call]) -> Result<(), StoreError> {
    for chunk in calls.chunks(INSERT_CHUNK) {
        let placeholders = vec!["(?, ?, ?, 'queued', 0, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let mut query = diesel::sql_query(format!(
            "INSERT INTO calls (id, campaign_id, phone_number, status, attempt_count, \
             max_attempts, scheduled_at, created_at, updated_at, metadata) VALUES {placeholders}"
        ))
        .into_boxed();
        for call in chunk {
            query = query
                .bind::<Text, _>(call.id.to_string())
                .bind::<Text, _>(call.campaign_id.to_string())
                .bind::<Text, _>(call.phone_number.as_str().to_owned())
                .bind::<Integer, _>(call.max_attempts as i32)
                .bind::<BigInt, _>(to_ms(call.scheduled_at))
                .bind::<BigInt, _>(to_ms(call.created_at))
                .bind::<BigInt, _>(to_ms(call.updated_at))
                .bind::<Nullable<Text>, _>(call.metadata.as_ref().map(|m| m.to_string()));
        }
        query.execute(conn)?;
    }
    Ok(())
}

fn set_campaign_completed(
    conn: &mut SqliteConnection,
    campaign_id: CampaignId,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let changed = diesel::sql_query(
        "UPDATE campaigns SET status = 'completed', completed_at = ?, updated_at = ? \
         WHERE id = ? AND status = 'in_progress' AND EXISTS (SELECT 1 FROM campaign_stats s \
         WHERE s.campaign_id = campaigns.id AND s.queued = 0 AND s.retrying = 0 AND s.dialing = 0)",
    )
    .bind::<BigInt, _>(to_ms(now))
    .bind::<BigInt, _>(to_ms(now))
    .bind::<Text, _>(campaign_id.to_string())
    .prepared()
    .execute(conn)?;
    Ok(changed > 0)
}

// ---------------------------------------------------------------------------------------------

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
        self.write(move |conn| {
            let NewCampaign {
                id,
                name,
                description,
                time_zone,
                max_concurrent_calls,
                retry_policy,
                business_hours,
                targets,
            } = new;
            let hours = serde_json::to_string(business_hours.windows())
                .map_err(|err| StoreError::Internal(err.to_string()))?;
            diesel::sql_query(
                "INSERT INTO campaigns (id, name, name_key, description, time_zone, status, \
                 max_concurrent_calls, max_attempts, base_delay_ms, max_delay_ms, jitter, \
                 business_hours, target_count, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind::<Text, _>(id.to_string())
            .bind::<Text, _>(name.clone())
            .bind::<Text, _>(name.to_lowercase())
            .bind::<Text, _>(description)
            .bind::<Text, _>(time_zone.name().to_owned())
            .bind::<Integer, _>(max_concurrent_calls as i32)
            .bind::<Integer, _>(retry_policy.max_attempts as i32)
            .bind::<BigInt, _>(retry_policy.base_delay.as_millis() as i64)
            .bind::<BigInt, _>(retry_policy.max_delay.as_millis() as i64)
            .bind::<Double, _>(retry_policy.jitter)
            .bind::<Text, _>(hours)
            .bind::<BigInt, _>(targets.len() as i64)
            .bind::<BigInt, _>(to_ms(now))
            .bind::<BigInt, _>(to_ms(now))
            .prepared()
            .execute(conn)?;
            diesel::sql_query(
                "INSERT INTO campaign_stats (campaign_id, total_targets, updated_at) VALUES (?, ?, ?)",
            )
            .bind::<Text, _>(id.to_string())
            .bind::<BigInt, _>(targets.len() as i64)
            .bind::<BigInt, _>(to_ms(now))
            .prepared()
            .execute(conn)?;
            insert_targets(conn, id, &targets)?;
            let calls: Vec<Call> = targets
                .into_iter()
                .map(|target| target.queued_call(id, retry_policy.max_attempts, now))
                .collect();
            insert_calls(conn, &calls)?;
            let delta = StatsDelta {
                total_calls: calls.len() as i64,
                queued: calls.len() as i64,
                ..StatsDelta::default()
            };
            apply_stats(conn, id, &delta, now)?;
            load_campaign(conn, id)?.ok_or(StoreError::NotFound)
        })
        .await
    }

    async fn get_campaign(&self, id: CampaignId) -> Result<Option<Campaign>, StoreError> {
        self.point_read(move |conn| load_campaign(conn, id)).await
    }

    async fn list_campaigns(
        &self,
        status: Option<CampaignStatus>,
        after: Option<CampaignId>,
        limit: usize,
    ) -> Result<Vec<Campaign>, StoreError> {
        self.read(move |conn| {
            let rows: Vec<CampaignRow> = diesel::sql_query(format!(
                "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE (? IS NULL OR status = ?) \
                 AND id > ? ORDER BY id LIMIT ?"
            ))
            .bind::<Nullable<Text>, _>(status.map(|s| s.as_str()))
            .bind::<Nullable<Text>, _>(status.map(|s| s.as_str()))
            .bind::<Text, _>(after.map(|id| id.to_string()).unwrap_or_default())
            .bind::<BigInt, _>(limit as i64)
            .prepared()
            .load(conn)?;
            rows.into_iter().map(Campaign::try_from).collect()
        })
        .await
    }

    async fn update_campaign(
        &self,
        id: CampaignId,
        changes: CampaignChanges,
        now: DateTime<Utc>,
    ) -> Result<Campaign, StoreError> {
        self.write(move |conn| {
            let current = load_campaign(conn, id)?.ok_or(StoreError::NotFound)?;
            current.status.ensure_mutable("update")?;
            let name = changes.name.unwrap_or(current.name);
            let description = changes.description.unwrap_or(current.description);
            let max_concurrent = changes
                .max_concurrent_calls
                .unwrap_or(current.max_concurrent_calls);
            let policy = changes.retry_policy.unwrap_or(current.retry_policy);
            let hours = changes.business_hours.unwrap_or(current.business_hours);
            let hours = serde_json::to_string(hours.windows())
                .map_err(|err| StoreError::Internal(err.to_string()))?;
            diesel::sql_query(
                "UPDATE campaigns SET name = ?, name_key = ?, description = ?, \
                 max_concurrent_calls = ?, max_attempts = ?, base_delay_ms = ?, max_delay_ms = ?, \
                 jitter = ?, business_hours = ?, updated_at = ? WHERE id = ?",
            )
            .bind::<Text, _>(name.clone())
            .bind::<Text, _>(name.to_lowercase())
            .bind::<Text, _>(description)
            .bind::<Integer, _>(max_concurrent as i32)
            .bind::<Integer, _>(policy.max_attempts as i32)
            .bind::<BigInt, _>(policy.base_delay.as_millis() as i64)
            .bind::<BigInt, _>(policy.max_delay.as_millis() as i64)
            .bind::<Double, _>(policy.jitter)
            .bind::<Text, _>(hours)
            .bind::<BigInt, _>(to_ms(now))
            .bind::<Text, _>(id.to_string())
            .prepared()
            .execute(conn)?;
            load_campaign(conn, id)?.ok_or(StoreError::NotFound)
        })
        .await
    }

    async fn transition_campaign(
        &self,
        id: CampaignId,
        action: StatusAction,
        now: DateTime<Utc>,
    ) -> Result<Transition, StoreError> {
        self.write(move |conn| {
            let current = load_campaign(conn, id)?.ok_or(StoreError::NotFound)?;
            let transition = current.status.apply(action)?;
            let Transition::To(next) = transition else {
                return Ok(transition);
            };
            diesel::sql_query(
                "UPDATE campaigns SET status = ?, updated_at = ?, \
                 started_at = CASE WHEN ? = 'in_progress' THEN COALESCE(started_at, ?) ELSE started_at END, \
                 completed_at = CASE WHEN ? = 'completed' THEN ? ELSE completed_at END WHERE id = ?",
            )
            .bind::<Text, _>(next.as_str())
            .bind::<BigInt, _>(to_ms(now))
            .bind::<Text, _>(next.as_str())
            .bind::<BigInt, _>(to_ms(now))
            .bind::<Text, _>(next.as_str())
            .bind::<BigInt, _>(to_ms(now))
            .bind::<Text, _>(id.to_string())
            .prepared()
            .execute(conn)?;
            if next == CampaignStatus::Completed {
                let mut delta = StatsDelta::default();
                for from in [CallStatus::Queued, CallStatus::Retrying] {
                    let canceled = diesel::sql_query(
                        "UPDATE calls SET status = 'canceled', next_attempt_at = NULL, updated_at = ? \
                         WHERE campaign_id = ? AND status = ?",
                    )
                    .bind::<BigInt, _>(to_ms(now))
                    .bind::<Text, _>(id.to_string())
                    .bind::<Text, _>(from.as_str())
                    .prepared()
                    .execute(conn)? as i64;
                    delta.bucket(from, -canceled);
                    delta.canceled += canceled;
                }
                apply_stats(conn, id, &delta, now)?;
            }
            Ok(transition)
        })
        .await
    }

    async fn campaign_stats(&self, id: CampaignId) -> Result<Option<CampaignStats>, StoreError> {
        self.point_read(move |conn| {
            let rows: Vec<StatsRow> = diesel::sql_query(format!(
                "SELECT {STATS_COLUMNS} FROM campaign_stats WHERE campaign_id = ?"
            ))
            .bind::<Text, _>(id.to_string())
            .prepared()
            .load(conn)?;
            rows.into_iter()
                .next()
                .map(CampaignStats::try_from)
                .transpose()
        })
        .await
    }

    async fn enqueue_calls(
        &self,
        campaign_id: CampaignId,
        targets: Vec<NewTarget>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Call>, StoreError> {
        self.write(move |conn| {
            let campaign = load_campaign(conn, campaign_id)?.ok_or(StoreError::NotFound)?;
            campaign.status.ensure_mutable("queue calls for")?;
            let mut unregistered = Vec::new();
            for target in &targets {
                let found: Vec<CountRow> = diesel::sql_query(
                    "SELECT 1 AS n FROM targets WHERE campaign_id = ? AND phone_number = ?",
                )
                .bind::<Text, _>(campaign_id.to_string())
                .bind::<Text, _>(target.phone_number.as_str().to_owned())
                .prepared()
                .load(conn)?;
                if found.is_empty() {
                    unregistered.push(target.phone_number.as_str().to_owned());
                }
            }
            if !unregistered.is_empty() {
                return Err(StoreError::NotRegistered(unregistered));
            }
            let calls: Vec<Call> = targets
                .into_iter()
                .map(|target| {
                    target.queued_call(campaign_id, campaign.retry_policy.max_attempts, now)
                })
                .collect();
            insert_calls(conn, &calls)?;
            let delta = StatsDelta {
                total_calls: calls.len() as i64,
                queued: calls.len() as i64,
                ..StatsDelta::default()
            };
            apply_stats(conn, campaign_id, &delta, now)?;
            Ok(calls)
        })
        .await
    }

    async fn get_call(&self, id: CallId) -> Result<Option<(Call, Vec<Attempt>)>, StoreError> {
        self.read_snapshot(move |conn| {
            let Some(call) = load_call(conn, id)? else {
                return Ok(None);
            };
            let rows: Vec<AttemptRow> = diesel::sql_query(
                "SELECT attempt, status, error, started_at, ended_at, duration_ms FROM attempts \
                 WHERE campaign_id = ? AND call_id = ? ORDER BY attempt",
            )
            .bind::<Text, _>(call.campaign_id.to_string())
            .bind::<Text, _>(id.to_string())
            .prepared()
            .load(conn)?;
            let attempts = rows
                .into_iter()
                .map(Attempt::try_from)
                .collect::<Result<_, _>>()?;
            Ok(Some((call, attempts)))
        })
        .await
    }

    async fn list_calls(
        &self,
        campaign_id: CampaignId,
        status: Option<CallStatus>,
        after: Option<CallId>,
        limit: usize,
    ) -> Result<Vec<Call>, StoreError> {
        self.read(move |conn| {
            let after = after.map(|id| id.to_string()).unwrap_or_default();
            let rows: Vec<CallRow> = match status {
                Some(status) => diesel::sql_query(format!(
                    "SELECT {CALL_COLUMNS} FROM calls WHERE campaign_id = ? AND status = ? \
                     AND id > ? ORDER BY id LIMIT ?"
                ))
                .bind::<Text, _>(campaign_id.to_string())
                .bind::<Text, _>(status.as_str())
                .bind::<Text, _>(after)
                .bind::<BigInt, _>(limit as i64)
                .prepared()
                .load(conn)?,
                None => diesel::sql_query(format!(
                    "SELECT {CALL_COLUMNS} FROM calls WHERE campaign_id = ? AND id > ? \
                     ORDER BY id LIMIT ?"
                ))
                .bind::<Text, _>(campaign_id.to_string())
                .bind::<Text, _>(after)
                .bind::<BigInt, _>(limit as i64)
                .prepared()
                .load(conn)?,
            };
            rows.into_iter().map(Call::try_from).collect()
        })
        .await
    }

    async fn runnable_campaigns(&self) -> Result<Vec<RunnableCampaign>, StoreError> {
        self.read(|conn| {
            let rows: Vec<RunnableRow> = diesel::sql_query(format!(
                "SELECT {CAMPAIGN_COLUMNS}, s.queued AS queued FROM campaigns \
                 JOIN campaign_stats s ON s.campaign_id = campaigns.id \
                 WHERE campaigns.status = 'in_progress' AND s.queued > 0 ORDER BY campaigns.id"
            ))
            .prepared()
            .load(conn)?;
            rows.into_iter()
                .map(|row| {
                    let queued = row.queued.max(0) as u64;
                    let campaign = Campaign::try_from(row.campaign)?;
                    Ok(RunnableCampaign {
                        id: campaign.id,
                        time_zone: campaign.time_zone,
                        business_hours: campaign.business_hours,
                        max_concurrent_calls: campaign.max_concurrent_calls,
                        retry_policy: campaign.retry_policy,
                        queued_calls: queued,
                    })
                })
                .collect()
        })
        .await
    }

    async fn claim_calls(
        &self,
        campaign_id: CampaignId,
        max: usize,
        owner: InstanceId,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedCall>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.write(move |conn| {
            // The status check and the claim share the transaction, so a pause or complete that
            // committed first is always seen.
            let live: Vec<CountRow> = diesel::sql_query(
                "SELECT 1 AS n FROM campaigns WHERE id = ? AND status = 'in_progress'",
            )
            .bind::<Text, _>(campaign_id.to_string())
            .prepared()
            .load(conn)?;
            if live.is_empty() {
                return Ok(Vec::new());
            }
            let claimed: Vec<ClaimRow> = diesel::sql_query(
                "UPDATE calls SET status = 'dialing', attempt_count = attempt_count + 1, \
                 last_attempt_at = ?, updated_at = ?, next_attempt_at = NULL, owner = ? \
                 WHERE id IN (SELECT id FROM calls WHERE campaign_id = ? AND status = 'queued' \
                 ORDER BY id LIMIT ?) RETURNING id, phone_number, attempt_count",
            )
            .bind::<BigInt, _>(to_ms(now))
            .bind::<BigInt, _>(to_ms(now))
            .bind::<Text, _>(owner.to_string())
            .bind::<Text, _>(campaign_id.to_string())
            .bind::<BigInt, _>(max as i64)
            .prepared()
            .load(conn)?;
            if claimed.is_empty() {
                return Ok(Vec::new());
            }
            let campaign = campaign_id.to_string();
            for chunk in claimed.chunks(INSERT_CHUNK) {
                let placeholders =
                    vec!["(?, ?, ?, 'dialing', ?)"; chunk.len()].join(", ");
                let mut query = diesel::sql_query(format!(
                    "INSERT OR REPLACE INTO attempts (call_id, attempt, campaign_id, status, started_at) \
                     VALUES {placeholders}"
                ))
                .into_boxed();
                for row in chunk {
                    query = query
                        .bind::<Text, _>(row.id.clone())
                        .bind::<Integer, _>(row.attempt_count)
                        .bind::<Text, _>(campaign.clone())
                        .bind::<BigInt, _>(to_ms(now));
                }
                query.execute(conn)?;
            }
            let retries = claimed.iter().filter(|row| row.attempt_count > 1).count() as i64;
            let delta = StatsDelta {
                queued: -(claimed.len() as i64),
                dialing: claimed.len() as i64,
                attempts_total: claimed.len() as i64,
                retries_attempted: retries,
                ..StatsDelta::default()
            };
            apply_stats(conn, campaign_id, &delta, now)?;
            claimed
                .into_iter()
                .map(|row| row.into_claimed(campaign_id, now))
                .collect()
        })
        .await
    }

    async fn record_attempts(
        &self,
        reports: &[AttemptReport],
        now: DateTime<Utc>,
    ) -> Result<Vec<AppliedReport>, StoreError> {
        let reports = reports.to_vec();
        self.write(move |conn| {
            let mut applied = Vec::with_capacity(reports.len());
            let mut deltas: BTreeMap<CampaignId, StatsDelta> = BTreeMap::new();
            for report in reports {
                let rows: Vec<DialingRow> = diesel::sql_query(
                    "SELECT c.status AS status, c.attempt_count AS attempt_count, \
                     c.max_attempts AS max_attempts, k.status AS campaign_status, \
                     a.started_at AS started_at, c.owner AS owner FROM calls c \
                     JOIN campaigns k ON k.id = c.campaign_id \
                     LEFT JOIN attempts a ON a.campaign_id = c.campaign_id AND a.call_id = c.id \
                     AND a.attempt = c.attempt_count \
                     WHERE c.id = ?",
                )
                .bind::<Text, _>(report.call_id.to_string())
                .prepared()
                .load(conn)?;
                let current = rows.into_iter().next();
                let fresh = current.as_ref().filter(|row| {
                    row.status == CallStatus::Dialing.as_str()
                        && row.attempt_count == report.attempt as i32
                        && rows::owner_matches(report.expected_owner, row.owner.as_deref())
                });
                let Some(current) = fresh else {
                    applied.push(AppliedReport {
                        call_id: report.call_id,
                        campaign_id: report.campaign_id,
                        attempt: report.attempt,
                        step: None,
                    });
                    continue;
                };
                let mut step = next_step(
                    &report.outcome,
                    report.attempt,
                    current.max_attempts.max(0) as u32,
                    report.retry_at,
                );
                if current.campaign_status == CampaignStatus::Completed.as_str()
                    && matches!(step, NextStep::RetryAt(_))
                {
                    step = NextStep::Cancel;
                }
                let (status, next_at) = match step {
                    NextStep::Complete => (CallStatus::Completed, None),
                    NextStep::Fail => (CallStatus::Failed, None),
                    NextStep::Cancel => (CallStatus::Canceled, None),
                    NextStep::RetryAt(at) => (CallStatus::Retrying, Some(to_ms(at))),
                };
                let (attempt_status, error) = match &report.outcome {
                    AttemptOutcome::Answered => ("completed", None),
                    AttemptOutcome::Failed { error, .. } => ("failed", Some(error.clone())),
                };
                diesel::sql_query(
                    "UPDATE calls SET status = ?, next_attempt_at = ?, last_error = ?, \
                     updated_at = ?, owner = NULL WHERE id = ?",
                )
                .bind::<Text, _>(status.as_str())
                .bind::<Nullable<BigInt>, _>(next_at)
                .bind::<Nullable<Text>, _>(error.clone())
                .bind::<BigInt, _>(to_ms(now))
                .bind::<Text, _>(report.call_id.to_string())
                .prepared()
                .execute(conn)?;
                let started = current.started_at.unwrap_or(to_ms(report.ended_at));
                let duration = (to_ms(report.ended_at) - started).max(0);
                diesel::sql_query(
                    "UPDATE attempts SET status = ?, error = ?, ended_at = ?, duration_ms = ? \
                     WHERE campaign_id = ? AND call_id = ? AND attempt = ?",
                )
                .bind::<Text, _>(attempt_status)
                .bind::<Nullable<Text>, _>(error)
                .bind::<BigInt, _>(to_ms(report.ended_at))
                .bind::<BigInt, _>(duration)
                .bind::<Text, _>(report.campaign_id.to_string())
                .bind::<Text, _>(report.call_id.to_string())
                .bind::<Integer, _>(report.attempt as i32)
                .prepared()
                .execute(conn)?;
                let delta = deltas.entry(report.campaign_id).or_default();
                delta.dialing -= 1;
                delta.bucket(status, 1);
                delta.duration_ms_total += duration;
                delta.finished_attempts += 1;
                applied.push(AppliedReport {
                    call_id: report.call_id,
                    campaign_id: report.campaign_id,
                    attempt: report.attempt,
                    step: Some(step),
                });
            }
            for (campaign_id, delta) in &deltas {
                apply_stats(conn, *campaign_id, delta, now)?;
                set_campaign_completed(conn, *campaign_id, now)?;
            }
            Ok(applied)
        })
        .await
    }

    async fn promote_due_retries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<CampaignId>, StoreError> {
        self.write(move |conn| {
            let promoted: Vec<IdRow> = diesel::sql_query(
                "UPDATE calls SET status = 'queued', scheduled_at = next_attempt_at, \
                 next_attempt_at = NULL, updated_at = ? WHERE id IN (SELECT c.id FROM calls c \
                 JOIN campaigns k ON k.id = c.campaign_id WHERE c.status = 'retrying' \
                 AND c.next_attempt_at <= ? AND k.status = 'in_progress' LIMIT ?) \
                 RETURNING campaign_id AS id",
            )
            .bind::<BigInt, _>(to_ms(now))
            .bind::<BigInt, _>(to_ms(now))
            .bind::<BigInt, _>(limit as i64)
            .prepared()
            .load(conn)?;
            let mut per_campaign: HashMap<String, i64> = HashMap::new();
            for row in promoted {
                *per_campaign.entry(row.id).or_default() += 1;
            }
            let mut touched = Vec::with_capacity(per_campaign.len());
            for (campaign, count) in per_campaign {
                let campaign_id: CampaignId = campaign
                    .parse()
                    .map_err(|err| StoreError::Internal(format!("bad campaign id: {err}")))?;
                let delta = StatsDelta {
                    retrying: -count,
                    queued: count,
                    ..StatsDelta::default()
                };
                apply_stats(conn, campaign_id, &delta, now)?;
                touched.push(campaign_id);
            }
            Ok(touched)
        })
        .await
    }

    async fn next_retry_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read(|conn| {
            let rows: Vec<rows::MaybeMsRow> = diesel::sql_query(
                "SELECT MIN(c.next_attempt_at) AS ms FROM calls c JOIN campaigns k \
                 ON k.id = c.campaign_id WHERE c.status = 'retrying' AND k.status = 'in_progress'",
            )
            .prepared()
            .load(conn)?;
            Ok(rows.into_iter().next().and_then(|row| row.ms).map(from_ms))
        })
        .await
    }

    async fn complete_finished_campaigns(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<CampaignId>, StoreError> {
        self.write(move |conn| {
            let rows: Vec<IdRow> = diesel::sql_query(
                "UPDATE campaigns SET status = 'completed', completed_at = ?, updated_at = ? \
                 WHERE status = 'in_progress' AND EXISTS (SELECT 1 FROM campaign_stats s \
                 WHERE s.campaign_id = campaigns.id AND s.queued = 0 AND s.retrying = 0 \
                 AND s.dialing = 0) RETURNING id",
            )
            .bind::<BigInt, _>(to_ms(now))
            .bind::<BigInt, _>(to_ms(now))
            .prepared()
            .load(conn)?;
            rows.into_iter()
                .map(|row| {
                    row.id
                        .parse()
                        .map_err(|err| StoreError::Internal(format!("bad campaign id: {err}")))
                })
                .collect()
        })
        .await
    }

    async fn adopt_attempts(
        &self,
        attempts: &[(CampaignId, CallId, u32, InstanceId)],
        owner: InstanceId,
    ) -> Result<Vec<bool>, StoreError> {
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        let attempts = attempts.to_vec();
        self.write(move |conn| {
            let mut adopted = Vec::with_capacity(attempts.len());
            for (_, call_id, attempt, claimer) in attempts {
                let changed = diesel::sql_query(
                    "UPDATE calls SET owner = ? WHERE id = ? AND status = 'dialing' \
                     AND attempt_count = ? AND owner = ?",
                )
                .bind::<Text, _>(owner.to_string())
                .bind::<Text, _>(call_id.to_string())
                .bind::<Integer, _>(attempt as i32)
                .bind::<Text, _>(claimer.to_string())
                .prepared()
                .execute(conn)?;
                adopted.push(changed > 0);
            }
            Ok(adopted)
        })
        .await
    }

    async fn heartbeat(&self, instance: InstanceId, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.write(move |conn| {
            diesel::sql_query(
                "INSERT INTO instances (id, heartbeat_at) VALUES (?, ?) \
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
            )
            .bind::<Text, _>(instance.to_string())
            .bind::<BigInt, _>(to_ms(now))
            .prepared()
            .execute(conn)?;
            Ok(())
        })
        .await
    }

    async fn orphaned_attempts(
        &self,
        stale_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OrphanedAttempt>, StoreError> {
        self.read(move |conn| {
            let rows: Vec<OrphanRow> = diesel::sql_query(
                "SELECT c.id AS call_id, c.campaign_id AS campaign_id, c.attempt_count AS attempt, \
                 k.max_attempts AS max_attempts, k.base_delay_ms AS base_delay_ms, \
                 k.max_delay_ms AS max_delay_ms, k.jitter AS jitter, c.owner AS owner FROM calls c \
                 JOIN campaigns k ON k.id = c.campaign_id \
                 LEFT JOIN instances i ON i.id = c.owner \
                 WHERE c.status = 'dialing' AND (i.heartbeat_at IS NULL OR i.heartbeat_at < ?) \
                 LIMIT ?",
            )
            .bind::<BigInt, _>(to_ms(stale_before))
            .bind::<BigInt, _>(limit as i64)
            .prepared()
            .load(conn)?;
            rows.into_iter().map(OrphanedAttempt::try_from).collect()
        })
        .await
    }

    async fn timeline_backlog(&self, limit: usize) -> Result<Vec<TimelineEntry>, StoreError> {
        self.read(move |conn| {
            let rows: Vec<TimelineRow> = diesel::sql_query(format!(
                "SELECT {TIMELINE_COLUMNS} FROM attempts WHERE ended_at IS NOT NULL LIMIT ?"
            ))
            .bind::<BigInt, _>(limit as i64)
            .prepared()
            .load(conn)?;
            Ok(super::sql_rows::readable_backlog(rows))
        })
        .await
    }

    async fn forget_attempts(&self, keys: &[AttemptKey]) -> Result<u64, StoreError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let keys = keys.to_vec();
        self.write(move |conn| {
            let mut deleted = 0;
            for key in keys {
                deleted += diesel::sql_query(
                    "DELETE FROM attempts WHERE campaign_id = ? AND call_id = ? AND attempt = ? \
                     AND ended_at IS NOT NULL",
                )
                .bind::<Text, _>(key.campaign_id.to_string())
                .bind::<Text, _>(key.call_id.to_string())
                .bind::<Integer, _>(key.attempt as i32)
                .prepared()
                .execute(conn)? as u64;
            }
            Ok(deleted)
        })
        .await
    }
}

/// The store as its own timeline (`timeline.url = "store"`): the attempts table, which the
/// store's transactions already keep; `write` upserts, for a timeline fed from elsewhere.
#[async_trait]
impl Timeline for SqliteStore {
    async fn ping(&self) -> Result<(), TimelineError> {
        Ok(Store::ping(self).await?)
    }

    async fn write(&self, entries: &[TimelineEntry]) -> Result<(), TimelineError> {
        if entries.is_empty() {
            return Ok(());
        }
        let entries = entries.to_vec();
        let result = self
            .write(move |conn| {
                for chunk in entries.chunks(INSERT_CHUNK / 4) {
                    let placeholders = vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
                    let mut query = diesel::sql_query(format!(
                        "INSERT INTO attempts ({TIMELINE_COLUMNS}) VALUES {placeholders} \
                         ON CONFLICT (campaign_id, call_id, attempt) DO UPDATE SET \
                         status = excluded.status, \
                         error = excluded.error, started_at = excluded.started_at, \
                         ended_at = excluded.ended_at, duration_ms = excluded.duration_ms"
                    ))
                    .into_boxed();
                    for entry in chunk {
                        let attempt = &entry.attempt;
                        query = query
                            .bind::<Text, _>(entry.campaign_id.to_string())
                            .bind::<Text, _>(entry.call_id.to_string())
                            .bind::<Integer, _>(attempt.attempt as i32)
                            .bind::<Text, _>(attempt.status.as_str())
                            .bind::<Nullable<Text>, _>(attempt.error.clone())
                            .bind::<BigInt, _>(to_ms(attempt.started_at))
                            .bind::<Nullable<BigInt>, _>(attempt.ended_at.map(to_ms))
                            .bind::<Nullable<BigInt>, _>(
                                attempt.duration_ms.map(|ms| ms.min(i64::MAX as u64) as i64),
                            );
                    }
                    query.execute(conn)?;
                }
                Ok(())
            })
            .await;
        Ok(result?)
    }

    async fn call_attempts(
        &self,
        campaign_id: CampaignId,
        call_id: CallId,
    ) -> Result<Vec<Attempt>, TimelineError> {
        let rows = self
            .read(move |conn| {
                let rows: Vec<AttemptRow> = diesel::sql_query(
                    "SELECT attempt, status, error, started_at, ended_at, duration_ms \
                     FROM attempts WHERE campaign_id = ? AND call_id = ? \
                     AND ended_at IS NOT NULL ORDER BY attempt",
                )
                .bind::<Text, _>(campaign_id.to_string())
                .bind::<Text, _>(call_id.to_string())
                .prepared()
                .load(conn)?;
                rows.into_iter()
                    .map(Attempt::try_from)
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        Ok(rows)
    }

    async fn campaign_attempts(
        &self,
        campaign_id: CampaignId,
        page_token: Option<&str>,
        limit: usize,
    ) -> Result<TimelinePage, TimelineError> {
        let (after_call, after_attempt) = timeline_after(page_token)?;
        let limit = limit.max(1);
        let entries = self
            .read(move |conn| {
                // The primary key (campaign_id, call_id, attempt) serves the filter, the start
                // after the token and the order: one range scan.
                let rows: Vec<TimelineRow> = diesel::sql_query(format!(
                    "SELECT {TIMELINE_COLUMNS} FROM attempts WHERE campaign_id = ? \
                     AND (call_id, attempt) > (?, ?) AND ended_at IS NOT NULL \
                     ORDER BY call_id, attempt LIMIT ?"
                ))
                .bind::<Text, _>(campaign_id.to_string())
                .bind::<Text, _>(after_call)
                .bind::<BigInt, _>(after_attempt)
                .bind::<BigInt, _>(limit as i64 + 1)
                .prepared()
                .load(conn)?;
                rows.into_iter()
                    .map(TimelineEntry::try_from)
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        Ok(timeline_page(entries, limit))
    }
}
