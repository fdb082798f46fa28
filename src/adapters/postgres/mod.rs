//! The distributed store: PostgreSQL through diesel-async (tokio-postgres, no libpq) and a
//! deadpool pool. Same storage model and same behaviour as the embedded SQLite store, for
//! several processes writing at once.
//!
//! The queries are SQL text, as in the SQLite adapter, not diesel's DSL: the hot ones (claims
//! with `FOR UPDATE SKIP LOCKED` inside a data-modifying CTE, batch updates from `unnest`) have
//! no DSL form, and raw SQL lets both adapters share the row structs of `adapters::sql_rows`.
//!
//! # Concurrency
//!
//! Every port method that writes runs as one READ COMMITTED transaction. Where SQLite relied on
//! its single writer, this store takes row locks, always in the same order — the campaign row,
//! then its calls (in id order), then its statistics row — so concurrent writers queue instead
//! of deadlocking:
//!
//! - Status changes (`transition_campaign`, `update_campaign`, `enqueue_calls` and the
//!   completion sweep) lock the campaign row `FOR UPDATE`. `enqueue_calls` must: it may add work
//!   to a campaign that a concurrent report is about to complete.
//! - Writers of calls (`claim_calls`, `record_attempts`, `promote_due_retries`) take
//!   `FOR KEY SHARE` on the campaign row: they run beside each other but never beside a status
//!   change, so a pause or complete that committed first is always seen and one in flight waits.
//!   `KEY SHARE` still lets `record_attempts` mark the campaign completed itself.
//! - Claims pick queued calls with `FOR UPDATE SKIP LOCKED`: scheduler replicas never double
//!   dial and never wait on each other's rows; no global lock is involved. The locking SELECT
//!   is a `MATERIALIZED` CTE joined to the UPDATE, not `WHERE (campaign_id, id) IN (SELECT ..
//!   LIMIT n FOR UPDATE SKIP LOCKED)`: PostgreSQL plans that as a nested-loop semi join that
//!   re-scans the subquery for every outer row, each re-scan skips the rows the statement has
//!   already updated and returns fresh ones, and a claim of 2 moved 6 calls (EXPLAIN ANALYZE:
//!   `LockRows ... loops=6`).
//! - Counters only ever move by `x = x + delta` in the transaction that moves the calls, one
//!   UPDATE per campaign, so they stay exact under any number of writers.
//! - A campaign is completed only after its statistics row was updated (or locked) by the
//!   deciding transaction, so every transaction that could add work has either committed
//!   (and is counted) or is waiting.
//!
//! # Round trips
//!
//! Targets and calls go in multi-row `INSERT ... VALUES` of up to 5,000 rows, well under the
//! 65,535 bind parameters PostgreSQL accepts per statement. A claim is one statement (lock,
//! move, insert the attempts) plus the counter update. `record_attempts` handles a batch per
//! campaign in five statements whatever its size: lock the campaign, lock and read every
//! reported call (`id = ANY($2) ... FOR UPDATE`), move the calls and close their attempts in one
//! `UPDATE ... FROM unnest(...)`, update the counters, check for completion. Unlike SQLite,
//! calls are found by `(campaign_id, id)`: a report naming the wrong campaign counts as stale.
//!
//! # Citus
//!
//! Every table has `campaign_id` in its primary key and every write to a distributed table
//! filters on one campaign, so each is a single-shard (router) query once the tables are
//! distributed (this layout was checked against plain PostgreSQL 15 only):
//!
//! ```sql
//! SELECT create_reference_table('campaign_names');
//! SELECT create_reference_table('instances');
//! SELECT create_distributed_table('campaigns', 'id');
//! SELECT create_distributed_table('campaign_stats', 'campaign_id', colocate_with => 'campaigns');
//! SELECT create_distributed_table('targets', 'campaign_id', colocate_with => 'campaigns');
//! SELECT create_distributed_table('calls', 'campaign_id', colocate_with => 'campaigns');
//! SELECT create_distributed_table('attempts', 'campaign_id', colocate_with => 'campaigns');
//! ```
//!
//! Campaign names are unique case-insensitively through the `campaign_names` reference table,
//! since a distributed table cannot carry a unique index without its distribution column. The
//! cross-campaign reads (runnable campaigns, due retries, orphans, the completion sweep) only
//! select; their writes then go campaign by campaign. Plain PostgreSQL needs none of this.

mod rows;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{Array, BigInt, Double, Integer, Nullable, Text};
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use self::rows::{LockedCallRow, PhoneRow, RowCount, StatusCountRow, StatusRow};
use super::prepared::KeepPrepared;
use super::sql_rows::{
    from_ms, to_ms, AttemptRow, CallRow, CampaignRow, ClaimRow, CountRow, IdRow, MaybeMsRow,
    OrphanRow, RunnableRow, StatsDelta, StatsRow, TimelineRow, CALL_COLUMNS, CAMPAIGN_COLUMNS,
    STATS_COLUMNS, TIMELINE_COLUMNS,
};
use super::sql_rows::{timeline_after, timeline_page};
use crate::domain::call::{next_step, Attempt, AttemptOutcome, Call, CallStatus, NextStep};
use crate::domain::campaign::{
    Campaign, CampaignChanges, CampaignStatus, InvalidTransition, StatusAction, Transition,
};
use crate::domain::ids::{CallId, CampaignId, InstanceId};
use crate::domain::stats::CampaignStats;
use crate::ports::{
    AppliedReport, AttemptKey, AttemptReport, ClaimedCall, NewCampaign, NewTarget, OrphanedAttempt,
    RunnableCampaign, Store, StoreError, Timeline, TimelineEntry, TimelineError, TimelinePage,
};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

type Conn = AsyncPgConnection;

/// PostgreSQL refuses a statement with more bound parameters than this.
const BIND_LIMIT: usize = 65_535;
/// Rows per multi-row INSERT: big enough to amortise the round trip, small enough to keep one
/// statement's text and memory modest; always under `BIND_LIMIT`.
const MAX_INSERT_ROWS: usize = 5_000;
/// How long a caller waits for a pooled connection before the store reports itself unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Serialises `migrate` across processes starting at once (`pg_advisory_lock` key).
const MIGRATION_LOCK_KEY: i64 = 0x6f75_7462_6f75_6e64; // "outbound"

// ---------------------------------------------------------------------------------------------
// Errors

/// What a transaction body fails with: a database error, classified once at the end, or a
/// store error decided by the body itself.
#[derive(Debug)]
enum Failure {
    Db(DieselError),
    Store(StoreError),
}

impl From<DieselError> for Failure {
    fn from(err: DieselError) -> Self {
        Failure::Db(err)
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        Failure::Store(err)
    }
}

impl From<InvalidTransition> for Failure {
    fn from(err: InvalidTransition) -> Self {
        Failure::Store(StoreError::InvalidState(err))
    }
}

impl From<Failure> for StoreError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Db(err) => classify(err),
            Failure::Store(err) => err,
        }
    }
}

/// Messages of server errors that go away by themselves (SQLSTATE classes 40, 53, 57 and
/// 08), for the kinds diesel does not name.
const TRANSIENT_MESSAGES: [&str; 7] = [
    "deadlock detected",
    "canceling statement",
    "terminating connection",
    "the database system is",
    "too many clients",
    "remaining connection slots",
    "could not serialize",
];

/// Connection trouble and transient server states are `Unavailable` (the caller may retry);
/// everything else is `Internal`. Unique violations are not special here: only the name
/// statements map them, through `name_taken`.
fn classify(err: DieselError) -> StoreError {
    let transient = match &err {
        DieselError::DatabaseError(kind, info) => {
            matches!(
                kind,
                DatabaseErrorKind::ClosedConnection
                    | DatabaseErrorKind::UnableToSendCommand
                    | DatabaseErrorKind::SerializationFailure
            ) || TRANSIENT_MESSAGES
                .iter()
                .any(|needle| info.message().contains(needle))
        }
        DieselError::BrokenTransactionManager => true,
        _ => false,
    };
    if transient {
        StoreError::Unavailable(err.to_string())
    } else {
        StoreError::Internal(err.to_string())
    }
}

/// For the statements that write `campaign_names`: a unique violation is a taken name.
fn name_taken(err: DieselError) -> Failure {
    match err {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            Failure::Store(StoreError::DuplicateName)
        }
        other => Failure::Db(other),
    }
}

fn bad_id(err: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("bad id in store: {err}"))
}

// ---------------------------------------------------------------------------------------------
// Setup

/// Applies pending migrations to the database at `url`; returns the versions applied. Holds a
/// session advisory lock meanwhile, so processes starting together migrate one after another.
pub async fn migrate(url: &str) -> Result<Vec<String>, StoreError> {
    let mut conn = Conn::establish(url)
        .await
        .map_err(|err| StoreError::Unavailable(format!("cannot connect to postgres: {err}")))?;
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK_KEY)
        .prepared()
        .execute(&mut conn)
        .await
        .map_err(classify)?;
    // The harness blocks on the runtime (`block_in_place`); a blocking thread works under
    // either runtime flavour.
    let (conn, applied) = tokio::task::spawn_blocking(move || {
        let mut harness = AsyncMigrationHarness::new(conn);
        let applied = harness
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| {
                versions
                    .iter()
                    .map(|version| version.to_string())
                    .collect::<Vec<_>>()
            })
            .map_err(|err| StoreError::Internal(format!("migration failed: {err}")));
        (harness.into_inner(), applied)
    })
    .await
    .map_err(|err| StoreError::Internal(format!("migration task failed: {err}")))?;
    let mut conn = conn;
    // Closing the connection would release the lock too; unlocking keeps it explicit.
    diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK_KEY)
        .prepared()
        .execute(&mut conn)
        .await
        .map_err(classify)?;
    applied
}

/// Creates database `name` through the server at `server_url` (any database the user may
/// connect to, usually `postgres`) and returns the URL of the new one. For tests and
/// `init`-style scripts.
pub async fn create_database(server_url: &str, name: &str) -> Result<String, StoreError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::Internal(format!(
            "database name {name:?} must be letters, digits and underscores"
        )));
    }
    let mut conn = Conn::establish(server_url)
        .await
        .map_err(|err| StoreError::Unavailable(format!("cannot connect to postgres: {err}")))?;
    diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .map_err(classify)?;
    Ok(with_database(server_url, name))
}

/// `url` with its database (the path) replaced by `name`, query string kept.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |at| at + 3);
    let root = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{root}/{name}?{query}"),
        None => format!("{root}/{name}"),
    }
}

pub struct PgStore {
    pool: Pool<Conn>,
}

impl PgStore {
    /// Builds a pool of up to `pool_size` connections and checks that one can be opened.
    pub async fn connect(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        let mut config = ManagerConfig::<Conn>::default();
        // A pooled connection is checked for an open transaction and a closed socket before
        // reuse; skipping the `SELECT 1` round trip keeps point reads to one round trip.
        config.recycling_method = RecyclingMethod::Fast;
        let manager = AsyncDieselConnectionManager::<Conn>::new_with_config(url, config);
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .build()
            .map_err(|err| StoreError::Internal(format!("postgres pool: {err}")))?;
        let store = Self { pool };
        drop(store.conn().await?);
        Ok(store)
    }

    async fn conn(&self) -> Result<Object<Conn>, StoreError> {
        match tokio::time::timeout(ACQUIRE_TIMEOUT, self.pool.get()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(err)) => Err(StoreError::Unavailable(format!("postgres: {err}"))),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no postgres connection free after {} s",
                ACQUIRE_TIMEOUT.as_secs()
            ))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Statement helpers, run inside a transaction.

const CAMPAIGN_COMPLETED_SQL: &str = "UPDATE campaigns SET status = 'completed', \
     completed_at = $1, updated_at = $1 WHERE id = $2 AND status = 'in_progress' \
     AND EXISTS (SELECT 1 FROM campaign_stats s WHERE s.campaign_id = $2 AND s.queued = 0 \
     AND s.retrying = 0 AND s.dialing = 0)";

/// Loads a campaign; `lock` is empty or a row-locking clause such as `FOR UPDATE`.
async fn load_campaign(
    conn: &mut Conn,
    id: CampaignId,
    lock: &str,
) -> Result<Option<Campaign>, Failure> {
    let rows: Vec<CampaignRow> = diesel::sql_query(format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1 {lock}"
    ))
    .bind::<Text, _>(id.to_string())
    .prepared()
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .next()
        .map(Campaign::try_from)
        .transpose()?)
}

/// Takes `FOR KEY SHARE` on the campaign if it is `in_progress`; false if it is not.
async fn lock_in_progress(conn: &mut Conn, campaign: &str) -> Result<bool, Failure> {
    let live: Vec<CountRow> = diesel::sql_query(
        "SELECT 1 AS n FROM campaigns WHERE id = $1 AND status = 'in_progress' FOR KEY SHARE",
    )
    .bind::<Text, _>(campaign.to_owned())
    .prepared()
    .load(conn)
    .await?;
    Ok(!live.is_empty())
}

async fn apply_stats(
    conn: &mut Conn,
    campaign: &str,
    delta: &StatsDelta,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    diesel::sql_query(
        "UPDATE campaign_stats SET total_calls = total_calls + $1, queued = queued + $2, \
         retrying = retrying + $3, dialing = dialing + $4, completed = completed + $5, \
         failed = failed + $6, canceled = canceled + $7, attempts_total = attempts_total + $8, \
         retries_attempted = retries_attempted + $9, duration_ms_total = duration_ms_total + $10, \
         finished_attempts = finished_attempts + $11, updated_at = $12 WHERE campaign_id = $13",
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
    .bind::<Text, _>(campaign.to_owned())
    .prepared()
    .execute(conn)
    .await?;
    Ok(())
}

/// Rows per multi-row INSERT binding `per_row` parameters a row and `shared` once.
fn rows_per_insert(per_row: usize, shared: usize) -> usize {
    ((BIND_LIMIT - shared) / per_row).min(MAX_INSERT_ROWS)
}

async fn insert_targets(
    conn: &mut Conn,
    campaign: &str,
    targets: &[NewTarget],
) -> Result<(), Failure> {
    for chunk in targets.chunks(rows_per_insert(2, 1)) {
        let values: Vec<String> = (0..chunk.len())
            .map(|row| format!("($1, ${}, ${})", 2 + 2 * row, 3 + 2 * row))
            .collect();
        let mut query = diesel::sql_query(format!(
            "INSERT INTO targets (campaign_id, phone_number, metadata) VALUES {}",
            values.join(", ")
        ))
        .into_boxed()
        .bind::<Text, _>(campaign.to_owned());
        for target in chunk {
            query = query
                .bind::<Text, _>(target.phone_number.as_str().to_owned())
                .bind::<Nullable<Text>, _>(target.metadata.as_ref().map(|m| m.to_string()));
        }
        query.execute(conn).await?;
    }
    Ok(())
}

/// Inserts queued calls of one campaign; all share `max_attempts` and were made at `now`.
async fn insert_calls(
    conn: &mut Conn,
    campaign: &str,
    max_attempts: u32,
    now: DateTime<Utc>,
    calls: &[Call],
) -> Result<(), Failure> {
    for chunk in calls.chunks(rows_per_insert(3, 3)) {
        let values: Vec<String> = (0..chunk.len())
            .map(|row| {
                let first = 4 + 3 * row;
                format!(
                    "($1, ${first}, ${}, 'queued', 0, $2, $3, $3, $3, ${})",
                    first + 1,
                    first + 2
                )
            })
            .collect();
        let mut query = diesel::sql_query(format!(
            "INSERT INTO calls (campaign_id, id, phone_number, status, attempt_count, \
             max_attempts, scheduled_at, created_at, updated_at, metadata) VALUES {}",
            values.join(", ")
        ))
        .into_boxed()
        .bind::<Text, _>(campaign.to_owned())
        .bind::<Integer, _>(max_attempts as i32)
        .bind::<BigInt, _>(to_ms(now));
        for call in chunk {
            debug_assert!(call.scheduled_at == now && call.max_attempts == max_attempts);
            query = query
                .bind::<Text, _>(call.id.to_string())
                .bind::<Text, _>(call.phone_number.as_str().to_owned())
                .bind::<Nullable<Text>, _>(call.metadata.as_ref().map(|m| m.to_string()));
        }
        query.execute(conn).await?;
    }
    Ok(())
}

/// What `record_attempts` writes for one fresh report.
struct ReportWrite {
    call_id: String,
    status: CallStatus,
    next_attempt_at: Option<i64>,
    error: Option<String>,
    attempt: i32,
    attempt_status: &'static str,
    ended_at: i64,
    duration_ms: i64,
}

/// Records the fresh reports of one campaign (`indexes` into `reports`), filling `applied`.
/// Locks the campaign (`KEY SHARE`), then its reported calls in id order, then its statistics.
async fn record_campaign(
    conn: &mut Conn,
    campaign_id: CampaignId,
    reports: &[AttemptReport],
    indexes: &[usize],
    applied: &mut [Option<AppliedReport>],
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    let campaign = campaign_id.to_string();
    let status: Vec<StatusRow> =
        diesel::sql_query("SELECT status FROM campaigns WHERE id = $1 FOR KEY SHARE")
            .bind::<Text, _>(campaign.clone())
            .prepared()
            .load(conn)
            .await?;
    let Some(campaign_status) = status.into_iter().next().map(|row| row.status) else {
        // No such campaign: every report is stale, as in SQLite's join.
        return Ok(());
    };
    let mut call_ids: Vec<String> = indexes
        .iter()
        .map(|&index| reports[index].call_id.to_string())
        .collect();
    call_ids.sort_unstable();
    call_ids.dedup();
    let locked: Vec<LockedCallRow> = diesel::sql_query(
        "SELECT c.id AS id, c.status AS status, c.attempt_count AS attempt_count, \
         c.max_attempts AS max_attempts, a.started_at AS started_at, c.owner AS owner FROM calls c \
         LEFT JOIN attempts a ON a.campaign_id = c.campaign_id AND a.call_id = c.id \
         AND a.attempt = c.attempt_count \
         WHERE c.campaign_id = $1 AND c.id = ANY($2) ORDER BY c.id FOR UPDATE OF c",
    )
    .bind::<Text, _>(campaign.clone())
    .bind::<Array<Text>, _>(call_ids)
    .prepared()
    .load(conn)
    .await?;
    let mut current: HashMap<String, LockedCallRow> = locked
        .into_iter()
        .map(|row| (row.id.clone(), row))
        .collect();

    let mut writes = Vec::new();
    let mut delta = StatsDelta::default();
    for &index in indexes {
        let report = &reports[index];
        let key = report.call_id.to_string();
        let fresh = current.get_mut(&key).filter(|row| {
            row.status == CallStatus::Dialing.as_str()
                && row.attempt_count == report.attempt as i32
                && crate::adapters::sql_rows::owner_matches(
                    report.expected_owner,
                    row.owner.as_deref(),
                )
        });
        let Some(row) = fresh else {
            continue;
        };
        let mut step = next_step(
            &report.outcome,
            report.attempt,
            row.max_attempts.max(0) as u32,
            report.retry_at,
        );
        if campaign_status == CampaignStatus::Completed.as_str()
            && matches!(step, NextStep::RetryAt(_))
        {
            step = NextStep::Cancel;
        }
        let (status, next_attempt_at) = match step {
            NextStep::Complete => (CallStatus::Completed, None),
            NextStep::Fail => (CallStatus::Failed, None),
            NextStep::Cancel => (CallStatus::Canceled, None),
            NextStep::RetryAt(at) => (CallStatus::Retrying, Some(to_ms(at))),
        };
        let (attempt_status, error) = match &report.outcome {
            AttemptOutcome::Answered => ("completed", None),
            AttemptOutcome::Failed { error, .. } => ("failed", Some(error.clone())),
        };
        let ended_at = to_ms(report.ended_at);
        let duration_ms = (ended_at - row.started_at.unwrap_or(ended_at)).max(0);
        // A second report of the same attempt in this batch is a duplicate.
        row.status = status.as_str().to_owned();
        writes.push(ReportWrite {
            call_id: key,
            status,
            next_attempt_at,
            error,
            attempt: report.attempt as i32,
            attempt_status,
            ended_at,
            duration_ms,
        });
        delta.dialing -= 1;
        delta.bucket(status, 1);
        delta.duration_ms_total += duration_ms;
        delta.finished_attempts += 1;
        applied[index] = Some(AppliedReport {
            call_id: report.call_id,
            campaign_id: report.campaign_id,
            attempt: report.attempt,
            step: Some(step),
        });
    }
    if writes.is_empty() {
        return Ok(());
    }
    // One statement moves every call and closes every attempt of the batch.
    diesel::sql_query(
        "WITH v AS (SELECT * FROM unnest($2::text[], $3::text[], $4::int8[], $5::text[], \
         $6::int4[], $7::text[], $8::int8[], $9::int8[]) \
         AS v(id, status, next_attempt_at, error, attempt, attempt_status, ended_at, \
         duration_ms)), \
         moved AS (UPDATE calls c SET status = v.status, next_attempt_at = v.next_attempt_at, \
         last_error = v.error, updated_at = $10, owner = NULL FROM v \
         WHERE c.campaign_id = $1 AND c.id = v.id) \
         UPDATE attempts a SET status = v.attempt_status, error = v.error, \
         ended_at = v.ended_at, duration_ms = v.duration_ms FROM v \
         WHERE a.campaign_id = $1 AND a.call_id = v.id AND a.attempt = v.attempt",
    )
    .bind::<Text, _>(campaign.clone())
    .bind::<Array<Text>, _>(writes.iter().map(|w| w.call_id.clone()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(
        writes
            .iter()
            .map(|w| w.status.as_str().to_owned())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Nullable<BigInt>>, _>(
        writes.iter().map(|w| w.next_attempt_at).collect::<Vec<_>>(),
    )
    .bind::<Array<Nullable<Text>>, _>(writes.iter().map(|w| w.error.clone()).collect::<Vec<_>>())
    .bind::<Array<Integer>, _>(writes.iter().map(|w| w.attempt).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(
        writes
            .iter()
            .map(|w| w.attempt_status.to_owned())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<BigInt>, _>(writes.iter().map(|w| w.ended_at).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(writes.iter().map(|w| w.duration_ms).collect::<Vec<_>>())
    .bind::<BigInt, _>(to_ms(now))
    .prepared()
    .execute(conn)
    .await?;
    apply_stats(conn, &campaign, &delta, now).await?;
    // This transaction holds the statistics row and KEY SHARE on the campaign: no enqueue can
    // be in flight, and every other writer's work is counted in what this statement reads.
    diesel::sql_query(CAMPAIGN_COMPLETED_SQL)
        .bind::<BigInt, _>(to_ms(now))
        .bind::<Text, _>(campaign)
        .prepared()
        .execute(conn)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let _: Vec<CountRow> = diesel::sql_query("SELECT 1 AS n")
            .prepared()
            .load(&mut conn)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn create_campaign(
        &self,
        new: NewCampaign,
        now: DateTime<Utc>,
    ) -> Result<Campaign, StoreError> {
        let mut conn = self.conn().await?;
        let result = conn
            .transaction::<_, Failure, _>(async move |conn| {
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
                let campaign = id.to_string();
                let hours = serde_json::to_string(business_hours.windows())
                    .map_err(|err| StoreError::Internal(err.to_string()))?;
                diesel::sql_query(
                    "INSERT INTO campaign_names (name_key, campaign_id) VALUES ($1, $2)",
                )
                .bind::<Text, _>(name.to_lowercase())
                .bind::<Text, _>(campaign.clone())
                .prepared()
                .execute(conn)
                .await
                .map_err(name_taken)?;
                diesel::sql_query(
                    "INSERT INTO campaigns (id, name, description, time_zone, status, \
                     max_concurrent_calls, max_attempts, base_delay_ms, max_delay_ms, jitter, \
                     business_hours, target_count, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, $10, $11, $12, $12)",
                )
                .bind::<Text, _>(campaign.clone())
                .bind::<Text, _>(name)
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
                .prepared()
                .execute(conn)
                .await?;
                // Every target starts as one queued call.
                diesel::sql_query(
                    "INSERT INTO campaign_stats (campaign_id, total_targets, total_calls, \
                     queued, updated_at) VALUES ($1, $2, $2, $2, $3)",
                )
                .bind::<Text, _>(campaign.clone())
                .bind::<BigInt, _>(targets.len() as i64)
                .bind::<BigInt, _>(to_ms(now))
                .prepared()
                .execute(conn)
                .await?;
                insert_targets(conn, &campaign, &targets).await?;
                let calls: Vec<Call> = targets
                    .into_iter()
                    .map(|target| target.queued_call(id, retry_policy.max_attempts, now))
                    .collect();
                insert_calls(conn, &campaign, retry_policy.max_attempts, now, &calls).await?;
                load_campaign(conn, id, "")
                    .await?
                    .ok_or(Failure::Store(StoreError::NotFound))
            })
            .await;
        result.map_err(StoreError::from)
    }

    async fn get_campaign(&self, id: CampaignId) -> Result<Option<Campaign>, StoreError> {
        let mut conn = self.conn().await?;
        load_campaign(&mut conn, id, "")
            .await
            .map_err(StoreError::from)
    }

    async fn list_campaigns(
        &self,
        status: Option<CampaignStatus>,
        after: Option<CampaignId>,
        limit: usize,
    ) -> Result<Vec<Campaign>, StoreError> {
        let mut conn = self.conn().await?;
        let after = after.map(|id| id.to_string()).unwrap_or_default();
        let rows: Vec<CampaignRow> = match status {
            Some(status) => diesel::sql_query(format!(
                "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE status = $1 AND id > $2 \
                 ORDER BY id LIMIT $3"
            ))
            .bind::<Text, _>(status.as_str())
            .bind::<Text, _>(after)
            .bind::<BigInt, _>(limit as i64)
            .prepared()
            .load(&mut conn)
            .await
            .map_err(classify)?,
            None => diesel::sql_query(format!(
                "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id > $1 ORDER BY id LIMIT $2"
            ))
            .bind::<Text, _>(after)
            .bind::<BigInt, _>(limit as i64)
            .prepared()
            .load(&mut conn)
            .await
            .map_err(classify)?,
        };
        rows.into_iter().map(Campaign::try_from).collect()
    }

    async fn update_campaign(
        &self,
        id: CampaignId,
        changes: CampaignChanges,
        now: DateTime<Utc>,
    ) -> Result<Campaign, StoreError> {
        let mut conn = self.conn().await?;
        let result = conn
            .transaction::<_, Failure, _>(async move |conn| {
                let current = load_campaign(conn, id, "FOR UPDATE")
                    .await?
                    .ok_or(Failure::Store(StoreError::NotFound))?;
                current.status.ensure_mutable("update")?;
                let campaign = id.to_string();
                let old_key = current.name.to_lowercase();
                let name = changes.name.unwrap_or(current.name);
                let new_key = name.to_lowercase();
                if new_key != old_key {
                    diesel::sql_query(
                        "INSERT INTO campaign_names (name_key, campaign_id) VALUES ($1, $2)",
                    )
                    .bind::<Text, _>(new_key)
                    .bind::<Text, _>(campaign.clone())
                    .prepared()
                    .execute(conn)
                    .await
                    .map_err(name_taken)?;
                    diesel::sql_query(
                        "DELETE FROM campaign_names WHERE name_key = $1 AND campaign_id = $2",
                    )
                    .bind::<Text, _>(old_key)
                    .bind::<Text, _>(campaign.clone())
                    .prepared()
                    .execute(conn)
                    .await?;
                }
                let description = changes.description.unwrap_or(current.description);
                let max_concurrent = changes
                    .max_concurrent_calls
                    .unwrap_or(current.max_concurrent_calls);
                let policy = changes.retry_policy.unwrap_or(current.retry_policy);
                let hours = changes.business_hours.unwrap_or(current.business_hours);
                let hours = serde_json::to_string(hours.windows())
                    .map_err(|err| StoreError::Internal(err.to_string()))?;
                diesel::sql_query(
                    "UPDATE campaigns SET name = $1, description = $2, max_concurrent_calls = $3, \
                     max_attempts = $4, base_delay_ms = $5, max_delay_ms = $6, jitter = $7, \
                     business_hours = $8, updated_at = $9 WHERE id = $10",
                )
                .bind::<Text, _>(name)
                .bind::<Text, _>(description)
                .bind::<Integer, _>(max_concurrent as i32)
                .bind::<Integer, _>(policy.max_attempts as i32)
                .bind::<BigInt, _>(policy.base_delay.as_millis() as i64)
                .bind::<BigInt, _>(policy.max_delay.as_millis() as i64)
                .bind::<Double, _>(policy.jitter)
                .bind::<Text, _>(hours)
                .bind::<BigInt, _>(to_ms(now))
                .bind::<Text, _>(campaign)
                .prepared()
                .execute(conn)
                .await?;
                load_campaign(conn, id, "")
                    .await?
                    .ok_or(Failure::Store(StoreError::NotFound))
            })
            .await;
        result.map_err(StoreError::from)
    }

    async fn transition_campaign(
        &self,
        id: CampaignId,
        action: StatusAction,
        now: DateTime<Utc>,
    ) -> Result<Transition, StoreError> {
        let mut conn = self.conn().await?;
        let result = conn
            .transaction::<_, Failure, _>(async move |conn| {
                // FOR UPDATE waits for claims and reports in flight (they hold KEY SHARE) and
                // keeps new ones out until this commits.
                let current = load_campaign(conn, id, "FOR UPDATE")
                    .await?
                    .ok_or(Failure::Store(StoreError::NotFound))?;
                let transition = current.status.apply(action)?;
                let Transition::To(next) = transition else {
                    return Ok(transition);
                };
                let campaign = id.to_string();
                diesel::sql_query(
                    "UPDATE campaigns SET status = $1, updated_at = $2, \
                     started_at = CASE WHEN $1 = 'in_progress' THEN COALESCE(started_at, $2) \
                     ELSE started_at END, \
                     completed_at = CASE WHEN $1 = 'completed' THEN $2 ELSE completed_at END \
                     WHERE id = $3",
                )
                .bind::<Text, _>(next.as_str())
                .bind::<BigInt, _>(to_ms(now))
                .bind::<Text, _>(campaign.clone())
                .prepared()
                .execute(conn)
                .await?;
                if next == CampaignStatus::Completed {
                    // Cancels every call not dialing, counting what each was.
                    let canceled: Vec<StatusCountRow> = diesel::sql_query(
                        "WITH waiting AS (SELECT id, status FROM calls WHERE campaign_id = $1 \
                         AND status IN ('queued', 'retrying') ORDER BY id FOR UPDATE), \
                         canceled AS (UPDATE calls c SET status = 'canceled', \
                         next_attempt_at = NULL, updated_at = $2 FROM waiting w \
                         WHERE c.campaign_id = $1 AND c.id = w.id RETURNING w.status AS status) \
                         SELECT status, count(*) AS n FROM canceled GROUP BY status",
                    )
                    .bind::<Text, _>(campaign.clone())
                    .bind::<BigInt, _>(to_ms(now))
                    .prepared()
                    .load(conn)
                    .await?;
                    let mut delta = StatsDelta::default();
                    for row in canceled {
                        let from = CallStatus::parse(&row.status).ok_or_else(|| {
                            StoreError::Internal(format!("bad call status {:?}", row.status))
                        })?;
                        delta.bucket(from, -row.n);
                        delta.canceled += row.n;
                    }
                    apply_stats(conn, &campaign, &delta, now).await?;
                }
                Ok(transition)
            })
            .await;
        result.map_err(StoreError::from)
    }

    async fn campaign_stats(&self, id: CampaignId) -> Result<Option<CampaignStats>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<StatsRow> = diesel::sql_query(format!(
            "SELECT {STATS_COLUMNS} FROM campaign_stats WHERE campaign_id = $1"
        ))
        .bind::<Text, _>(id.to_string())
        .prepared()
        .load(&mut conn)
        .await
        .map_err(classify)?;
        rows.into_iter()
            .next()
            .map(CampaignStats::try_from)
            .transpose()
    }

    async fn enqueue_calls(
        &self,
        campaign_id: CampaignId,
        targets: Vec<NewTarget>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Call>, StoreError> {
        let mut conn = self.conn().await?;
        let result = conn
            .transaction::<_, Failure, _>(async move |conn| {
                // FOR UPDATE, not KEY SHARE: a report completing the campaign concurrently
                // must either see these calls or finish before they are added.
                let campaign = load_campaign(conn, campaign_id, "FOR UPDATE")
                    .await?
                    .ok_or(Failure::Store(StoreError::NotFound))?;
                campaign.status.ensure_mutable("queue calls for")?;
                let id = campaign_id.to_string();
                let numbers: Vec<String> = targets
                    .iter()
                    .map(|target| target.phone_number.as_str().to_owned())
                    .collect();
                let found: Vec<PhoneRow> = diesel::sql_query(
                    "SELECT phone_number FROM targets WHERE campaign_id = $1 \
                     AND phone_number = ANY($2)",
                )
                .bind::<Text, _>(id.clone())
                .bind::<Array<Text>, _>(numbers.clone())
                .prepared()
                .load(conn)
                .await?;
                let registered: HashSet<String> =
                    found.into_iter().map(|row| row.phone_number).collect();
                let unregistered: Vec<String> = numbers
                    .into_iter()
                    .filter(|number| !registered.contains(number))
                    .collect();
                if !unregistered.is_empty() {
                    return Err(StoreError::NotRegistered(unregistered).into());
                }
                let max_attempts = campaign.retry_policy.max_attempts;
                let calls: Vec<Call> = targets
                    .into_iter()
                    .map(|target| target.queued_call(campaign_id, max_attempts, now))
                    .collect();
                insert_calls(conn, &id, max_attempts, now, &calls).await?;
                let delta = StatsDelta {
                    total_calls: calls.len() as i64,
                    queued: calls.len() as i64,
                    ..StatsDelta::default()
                };
                apply_stats(conn, &id, &delta, now).await?;
                Ok(calls)
            })
            .await;
        result.map_err(StoreError::from)
    }

    async fn get_call(&self, id: CallId) -> Result<Option<(Call, Vec<Attempt>)>, StoreError> {
        let mut conn = self.conn().await?;
        // One snapshot for the call and its attempts.
        let result = conn
            .build_transaction()
            .read_only()
            .repeatable_read()
            .run::<_, Failure, _>(async move |conn| {
                let rows: Vec<CallRow> = diesel::sql_query(format!(
                    "SELECT {CALL_COLUMNS} FROM calls WHERE id = $1 LIMIT 1"
                ))
                .bind::<Text, _>(id.to_string())
                .prepared()
                .load(conn)
                .await?;
                let Some(call) = rows.into_iter().next().map(Call::try_from).transpose()? else {
                    return Ok(None);
                };
                let rows: Vec<AttemptRow> = diesel::sql_query(
                    "SELECT attempt, status, error, started_at, ended_at, duration_ms \
                     FROM attempts WHERE campaign_id = $1 AND call_id = $2 ORDER BY attempt",
                )
                .bind::<Text, _>(call.campaign_id.to_string())
                .bind::<Text, _>(id.to_string())
                .prepared()
                .load(conn)
                .await?;
                let attempts = rows
                    .into_iter()
                    .map(Attempt::try_from)
                    .collect::<Result<_, _>>()?;
                Ok(Some((call, attempts)))
            })
            .await;
        result.map_err(StoreError::from)
    }

    async fn list_calls(
        &self,
        campaign_id: CampaignId,
        status: Option<CallStatus>,
        after: Option<CallId>,
        limit: usize,
    ) -> Result<Vec<Call>, StoreError> {
        let mut conn = self.conn().await?;
        let after = after.map(|id| id.to_string()).unwrap_or_default();
        let rows: Vec<CallRow> = match status {
            Some(status) => diesel::sql_query(format!(
                "SELECT {CALL_COLUMNS} FROM calls WHERE campaign_id = $1 AND status = $2 \
                 AND id > $3 ORDER BY id LIMIT $4"
            ))
            .bind::<Text, _>(campaign_id.to_string())
            .bind::<Text, _>(status.as_str())
            .bind::<Text, _>(after)
            .bind::<BigInt, _>(limit as i64)
            .prepared()
            .load(&mut conn)
            .await
            .map_err(classify)?,
            None => diesel::sql_query(format!(
                "SELECT {CALL_COLUMNS} FROM calls WHERE campaign_id = $1 AND id > $2 \
                 ORDER BY id LIMIT $3"
            ))
            .bind::<Text, _>(campaign_id.to_string())
            .bind::<Text, _>(after)
            .bind::<BigInt, _>(limit as i64)
            .prepared()
            .load(&mut conn)
            .await
            .map_err(classify)?,
        };
        rows.into_iter().map(Call::try_from).collect()
    }

    async fn runnable_campaigns(&self) -> Result<Vec<RunnableCampaign>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<RunnableRow> = diesel::sql_query(format!(
            "SELECT {CAMPAIGN_COLUMNS}, s.queued AS queued FROM campaigns \
             JOIN campaign_stats s ON s.campaign_id = campaigns.id \
             WHERE campaigns.status = 'in_progress' AND s.queued > 0 ORDER BY campaigns.id"
        ))
        .prepared()
        .load(&mut conn)
        .await
        .map_err(classify)?;
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
        let mut conn = self.conn().await?;
        let result = conn
            .transaction::<_, Failure, _>(async move |conn| {
                let campaign = campaign_id.to_string();
                // The status check and the claim share the transaction: a pause or complete
                // that committed first is seen, one in flight waits for this to finish.
                if !lock_in_progress(conn, &campaign).await? {
                    return Ok(Vec::new());
                }
                // SKIP LOCKED: concurrent claimers take disjoint calls without waiting.
                let claimed: Vec<ClaimRow> = diesel::sql_query(
                    "WITH picked AS MATERIALIZED (SELECT campaign_id, id FROM calls \
                     WHERE campaign_id = $3 AND status = 'queued' ORDER BY id LIMIT $4 \
                     FOR UPDATE SKIP LOCKED), \
                     claimed AS (UPDATE calls c SET status = 'dialing', \
                     attempt_count = c.attempt_count + 1, last_attempt_at = $1, updated_at = $1, \
                     next_attempt_at = NULL, owner = $2 FROM picked p \
                     WHERE c.campaign_id = $3 AND c.campaign_id = p.campaign_id AND c.id = p.id \
                     RETURNING c.id AS id, c.phone_number AS phone_number, \
                     c.attempt_count AS attempt_count), \
                     started AS (INSERT INTO attempts (campaign_id, call_id, attempt, status, \
                     started_at) SELECT $3, id, attempt_count, 'dialing', $1 FROM claimed \
                     ON CONFLICT (campaign_id, call_id, attempt) DO UPDATE SET \
                     status = excluded.status, error = NULL, started_at = excluded.started_at, \
                     ended_at = NULL, duration_ms = NULL) \
                     SELECT id, phone_number, attempt_count FROM claimed ORDER BY id",
                )
                .bind::<BigInt, _>(to_ms(now))
                .bind::<Text, _>(owner.to_string())
                .bind::<Text, _>(campaign.clone())
                .bind::<BigInt, _>(max.min(i64::MAX as usize) as i64)
                .prepared()
                .load(conn)
                .await?;
                if claimed.is_empty() {
                    return Ok(Vec::new());
                }
                let retries = claimed.iter().filter(|row| row.attempt_count > 1).count() as i64;
                let delta = StatsDelta {
                    queued: -(claimed.len() as i64),
                    dialing: claimed.len() as i64,
                    attempts_total: claimed.len() as i64,
                    retries_attempted: retries,
                    ..StatsDelta::default()
                };
                apply_stats(conn, &campaign, &delta, now).await?;
                claimed
                    .into_iter()
                    .map(|row| row.into_claimed(campaign_id, now).map_err(Failure::from))
                    .collect()
            })
            .await;
        result.map_err(StoreError::from)
    }

    async fn record_attempts(
        &self,
        reports: &[AttemptReport],
        now: DateTime<Utc>,
    ) -> Result<Vec<AppliedReport>, StoreError> {
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        let reports = reports.to_vec();
        // Campaigns in id order (the text order the database sorts by), so two batches
        // spanning the same campaigns lock them in the same order.
        let mut by_campaign: BTreeMap<String, (CampaignId, Vec<usize>)> = BTreeMap::new();
        for (index, report) in reports.iter().enumerate() {
            by_campaign
                .entry(report.campaign_id.to_string())
                .or_insert_with(|| (report.campaign_id, Vec::new()))
                .1
                .push(index);
        }
        let mut conn = self.conn().await?;
        let result = conn
            .transaction::<_, Failure, _>(async move |conn| {
                let mut applied: Vec<Option<AppliedReport>> = vec![None; reports.len()];
                for (campaign_id, indexes) in by_campaign.values() {
                    record_campaign(conn, *campaign_id, &reports, indexes, &mut applied, now)
                        .await?;
                }
                Ok(reports
                    .iter()
                    .zip(applied)
                    .map(|(report, applied)| {
                        applied.unwrap_or(AppliedReport {
                            call_id: report.call_id,
                            campaign_id: report.campaign_id,
                            attempt: report.attempt,
                            step: None,
                        })
                    })
                    .collect())
            })
            .await;
        result.map_err(StoreError::from)
    }

    async fn promote_due_retries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<CampaignId>, StoreError> {
        let mut conn = self.conn().await?;
        let candidates: Vec<IdRow> = diesel::sql_query(
            "SELECT k.id AS id FROM campaigns k JOIN campaign_stats s ON s.campaign_id = k.id \
             WHERE k.status = 'in_progress' AND s.retrying > 0 AND EXISTS (SELECT 1 FROM calls c \
             WHERE c.campaign_id = k.id AND c.status = 'retrying' AND c.next_attempt_at <= $1) \
             ORDER BY k.id",
        )
        .bind::<BigInt, _>(to_ms(now))
        .prepared()
        .load(&mut conn)
        .await
        .map_err(classify)?;
        let mut touched = Vec::new();
        let mut left = limit;
        // One transaction per campaign: each moves its calls and their counts together.
        for candidate in candidates {
            if left == 0 {
                break;
            }
            let campaign = candidate.id;
            let budget = left;
            let moved = conn
                .transaction::<_, Failure, _>(async |conn| {
                    // A pause or complete in flight is waited for; one that committed is seen.
                    if !lock_in_progress(conn, &campaign).await? {
                        return Ok(0);
                    }
                    let moved: Vec<RowCount> = diesel::sql_query(
                        "WITH due AS MATERIALIZED (SELECT campaign_id, id FROM calls \
                         WHERE campaign_id = $2 AND status = 'retrying' AND next_attempt_at <= $1 \
                         ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED), \
                         moved AS (UPDATE calls c SET status = 'queued', \
                         scheduled_at = c.next_attempt_at, next_attempt_at = NULL, updated_at = $1 \
                         FROM due d WHERE c.campaign_id = $2 AND c.campaign_id = d.campaign_id \
                         AND c.id = d.id RETURNING 1) \
                         SELECT count(*) AS n FROM moved",
                    )
                    .bind::<BigInt, _>(to_ms(now))
                    .bind::<Text, _>(campaign.clone())
                    .bind::<BigInt, _>(budget.min(i64::MAX as usize) as i64)
                    .prepared()
                    .load(conn)
                    .await?;
                    let count = moved.into_iter().next().map_or(0, |row| row.n);
                    if count > 0 {
                        let delta = StatsDelta {
                            retrying: -count,
                            queued: count,
                            ..StatsDelta::default()
                        };
                        apply_stats(conn, &campaign, &delta, now).await?;
                    }
                    Ok(count)
                })
                .await
                .map_err(StoreError::from)?;
            if moved > 0 {
                left = left.saturating_sub(moved as usize);
                touched.push(campaign.parse().map_err(bad_id)?);
            }
        }
        Ok(touched)
    }

    async fn next_retry_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut conn = self.conn().await?;
        // One index probe per running campaign with retries, not a scan of every retry.
        let rows: Vec<MaybeMsRow> = diesel::sql_query(
            "SELECT MIN(d.due) AS ms FROM campaigns k \
             JOIN campaign_stats s ON s.campaign_id = k.id \
             CROSS JOIN LATERAL (SELECT c.next_attempt_at AS due FROM calls c \
             WHERE c.campaign_id = k.id AND c.status = 'retrying' \
             ORDER BY c.next_attempt_at LIMIT 1) d \
             WHERE k.status = 'in_progress' AND s.retrying > 0",
        )
        .prepared()
        .load(&mut conn)
        .await
        .map_err(classify)?;
        Ok(rows.into_iter().next().and_then(|row| row.ms).map(from_ms))
    }

    async fn complete_finished_campaigns(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<CampaignId>, StoreError> {
        let mut conn = self.conn().await?;
        let candidates: Vec<IdRow> = diesel::sql_query(
            "SELECT k.id AS id FROM campaigns k JOIN campaign_stats s ON s.campaign_id = k.id \
             WHERE k.status = 'in_progress' AND s.queued = 0 AND s.retrying = 0 \
             AND s.dialing = 0 ORDER BY k.id",
        )
        .prepared()
        .load(&mut conn)
        .await
        .map_err(classify)?;
        let mut completed = Vec::new();
        for candidate in candidates {
            // Locking both rows makes the check see the latest committed counters: an
            // enqueue or report in flight is waited for, then the row is re-checked.
            let rows: Vec<IdRow> = diesel::sql_query(
                "WITH done AS MATERIALIZED (SELECT k.id FROM campaigns k \
                 JOIN campaign_stats s ON s.campaign_id = k.id WHERE k.id = $2 \
                 AND k.status = 'in_progress' AND s.queued = 0 AND s.retrying = 0 \
                 AND s.dialing = 0 FOR UPDATE OF k, s) \
                 UPDATE campaigns c SET status = 'completed', completed_at = $1, updated_at = $1 \
                 FROM done WHERE c.id = done.id RETURNING c.id AS id",
            )
            .bind::<BigInt, _>(to_ms(now))
            .bind::<Text, _>(candidate.id)
            .prepared()
            .load(&mut conn)
            .await
            .map_err(classify)?;
            for row in rows {
                completed.push(row.id.parse().map_err(bad_id)?);
            }
        }
        Ok(completed)
    }

    async fn adopt_attempts(
        &self,
        attempts: &[(CampaignId, CallId, u32, InstanceId)],
        owner: InstanceId,
    ) -> Result<Vec<bool>, StoreError> {
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        let campaigns: Vec<String> = attempts.iter().map(|(c, _, _, _)| c.to_string()).collect();
        let calls: Vec<String> = attempts.iter().map(|(_, c, _, _)| c.to_string()).collect();
        let numbers: Vec<i32> = attempts.iter().map(|(_, _, a, _)| *a as i32).collect();
        let claimers: Vec<String> = attempts.iter().map(|(_, _, _, o)| o.to_string()).collect();
        let mut conn = self.conn().await?;
        // One statement for the batch; each row changes only if still dialing that attempt.
        let adopted: Vec<IdRow> = diesel::sql_query(
            "WITH v AS (SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $5::text[]) \
             AS v(campaign_id, id, attempt, claimer)) \
             UPDATE calls c SET owner = $4 FROM v WHERE c.campaign_id = v.campaign_id \
             AND c.id = v.id AND c.status = 'dialing' AND c.attempt_count = v.attempt \
             AND c.owner = v.claimer RETURNING c.id AS id",
        )
        .bind::<Array<Text>, _>(campaigns)
        .bind::<Array<Text>, _>(calls)
        .bind::<Array<Integer>, _>(numbers)
        .bind::<Text, _>(owner.to_string())
        .bind::<Array<Text>, _>(claimers)
        .prepared()
        .load(&mut conn)
        .await
        .map_err(classify)?;
        let adopted: HashSet<String> = adopted.into_iter().map(|row| row.id).collect();
        Ok(attempts
            .iter()
            .map(|(_, call_id, _, _)| adopted.contains(&call_id.to_string()))
            .collect())
    }

    async fn heartbeat(&self, instance: InstanceId, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        diesel::sql_query(
            "INSERT INTO instances (id, heartbeat_at) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind::<Text, _>(instance.to_string())
        .bind::<BigInt, _>(to_ms(now))
        .prepared()
        .execute(&mut conn)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn orphaned_attempts(
        &self,
        stale_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OrphanedAttempt>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<OrphanRow> = diesel::sql_query(
            "SELECT c.id AS call_id, c.campaign_id AS campaign_id, c.attempt_count AS attempt, \
             k.max_attempts AS max_attempts, k.base_delay_ms AS base_delay_ms, \
             k.max_delay_ms AS max_delay_ms, k.jitter AS jitter, c.owner AS owner FROM calls c \
             JOIN campaigns k ON k.id = c.campaign_id \
             LEFT JOIN instances i ON i.id = c.owner \
             WHERE c.status = 'dialing' AND (i.heartbeat_at IS NULL OR i.heartbeat_at < $1) \
             LIMIT $2",
        )
        .bind::<BigInt, _>(to_ms(stale_before))
        .bind::<BigInt, _>(limit.min(i64::MAX as usize) as i64)
        .prepared()
        .load(&mut conn)
        .await
        .map_err(classify)?;
        rows.into_iter().map(OrphanedAttempt::try_from).collect()
    }

    async fn timeline_backlog(&self, limit: usize) -> Result<Vec<TimelineEntry>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<TimelineRow> = diesel::sql_query(format!(
            "SELECT {TIMELINE_COLUMNS} FROM attempts WHERE ended_at IS NOT NULL LIMIT $1"
        ))
        .bind::<BigInt, _>(limit as i64)
        .prepared()
        .load(&mut conn)
        .await
        .map_err(classify)?;
        Ok(super::sql_rows::readable_backlog(rows))
    }

    async fn forget_attempts(&self, keys: &[AttemptKey]) -> Result<u64, StoreError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn().await?;
        let deleted = diesel::sql_query(
            "DELETE FROM attempts a USING unnest($1::text[], $2::text[], $3::int[]) \
             AS v(campaign_id, call_id, attempt) WHERE a.campaign_id = v.campaign_id \
             AND a.call_id = v.call_id AND a.attempt = v.attempt AND a.ended_at IS NOT NULL",
        )
        .bind::<Array<Text>, _>(
            keys.iter()
                .map(|k| k.campaign_id.to_string())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(
            keys.iter()
                .map(|k| k.call_id.to_string())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Integer>, _>(keys.iter().map(|k| k.attempt as i32).collect::<Vec<_>>())
        .prepared()
        .execute(&mut conn)
        .await
        .map_err(classify)?;
        Ok(deleted as u64)
    }
}

/// The store as its own timeline (`timeline.url = "store"`): the attempts table, which the
/// store's transactions already keep; `write` upserts, for a timeline fed from elsewhere.
#[async_trait]
impl Timeline for PgStore {
    async fn ping(&self) -> Result<(), TimelineError> {
        Ok(Store::ping(self).await?)
    }

    async fn write(&self, entries: &[TimelineEntry]) -> Result<(), TimelineError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        diesel::sql_query(format!(
            "INSERT INTO attempts ({TIMELINE_COLUMNS}) SELECT * FROM unnest($1::text[], \
             $2::text[], $3::int[], $4::text[], $5::text[], $6::int8[], $7::int8[], $8::int8[]) \
             ON CONFLICT (campaign_id, call_id, attempt) DO UPDATE SET status = excluded.status, \
             error = excluded.error, started_at = excluded.started_at, \
             ended_at = excluded.ended_at, duration_ms = excluded.duration_ms"
        ))
        .bind::<Array<Text>, _>(
            entries
                .iter()
                .map(|e| e.campaign_id.to_string())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(
            entries
                .iter()
                .map(|e| e.call_id.to_string())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Integer>, _>(
            entries
                .iter()
                .map(|e| e.attempt.attempt as i32)
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(
            entries
                .iter()
                .map(|e| e.attempt.status.as_str().to_owned())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Text>>, _>(
            entries
                .iter()
                .map(|e| e.attempt.error.clone())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<BigInt>, _>(
            entries
                .iter()
                .map(|e| to_ms(e.attempt.started_at))
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<BigInt>>, _>(
            entries
                .iter()
                .map(|e| e.attempt.ended_at.map(to_ms))
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<BigInt>>, _>(
            entries
                .iter()
                .map(|e| {
                    e.attempt
                        .duration_ms
                        .map(|ms| ms.min(i64::MAX as u64) as i64)
                })
                .collect::<Vec<_>>(),
        )
        .prepared()
        .execute(&mut conn)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn call_attempts(
        &self,
        campaign_id: CampaignId,
        call_id: CallId,
    ) -> Result<Vec<Attempt>, TimelineError> {
        let mut conn = self.conn().await?;
        let rows: Vec<AttemptRow> = diesel::sql_query(
            "SELECT attempt, status, error, started_at, ended_at, duration_ms FROM attempts \
             WHERE campaign_id = $1 AND call_id = $2 AND ended_at IS NOT NULL ORDER BY attempt",
        )
        .bind::<Text, _>(campaign_id.to_string())
        .bind::<Text, _>(call_id.to_string())
        .prepared()
        .load(&mut conn)
        .await
        .map_err(classify)?;
        Ok(rows
            .into_iter()
            .map(Attempt::try_from)
            .collect::<Result<Vec<_>, _>>()?)
    }

    async fn campaign_attempts(
        &self,
        campaign_id: CampaignId,
        page_token: Option<&str>,
        limit: usize,
    ) -> Result<TimelinePage, TimelineError> {
        let (after_call, after_attempt) = timeline_after(page_token)?;
        let limit = limit.max(1);
        let mut conn = self.conn().await?;
        // The primary key (campaign_id, call_id, attempt) serves both the filter and the order.
        let rows: Vec<TimelineRow> = diesel::sql_query(format!(
            "SELECT {TIMELINE_COLUMNS} FROM attempts WHERE campaign_id = $1 \
             AND (call_id, attempt) > ($2, $3::int) AND ended_at IS NOT NULL \
             ORDER BY call_id, attempt LIMIT $4"
        ))
        .bind::<Text, _>(campaign_id.to_string())
        .bind::<Text, _>(after_call)
        .bind::<BigInt, _>(after_attempt)
        .bind::<BigInt, _>(limit as i64 + 1)
        .prepared()
        .load(&mut conn)
        .await
        .map_err(classify)?;
        let entries = rows
            .into_iter()
            .map(TimelineEntry::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(timeline_page(entries, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_swap_only_the_path() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432/postgres", "t_1"),
            "postgres://u@127.0.0.1:5432/t_1"
        );
        assert_eq!(
            with_database("postgresql://u:p@h/postgres?sslmode=disable", "t_1"),
            "postgresql://u:p@h/t_1?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "t_1"), "postgres://h:1/t_1");
    }

    #[test]
    fn inserts_stay_under_the_bind_limit() {
        for (per_row, shared) in [(2, 1), (3, 3)] {
            assert!(rows_per_insert(per_row, shared) * per_row + shared <= BIND_LIMIT);
        }
    }
}
