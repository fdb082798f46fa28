//! The do-not-call list: entries, the cancellation of waiting calls to listed numbers in the
//! transaction that lists them, and what the calling rules read of a number.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use futures::FutureExt;

use super::campaigns::apply_stats;
use super::dispatch::complete_if_finished;
use super::keys::record;
use super::{Conn, PgStore};
use crate::adapters::sql::prepared::KeepPrepared;
use crate::adapters::sql::rows::{self, scope_column, IdRow, PendingRow, PriorRow};
use crate::adapters::sql::statements::PENDING_CALLS;
use crate::adapters::sql::{as_bigint, millis, to_ms, Failure};
use crate::domain::access::AuditEntry;
use crate::domain::call::CallStatus;
use crate::domain::compliance::caps;
use crate::domain::ids::{CallId, CampaignId};
use crate::domain::phone::PhoneNumber;
use crate::domain::stats::StatsDelta;
use crate::ports::{DncAdded, DncScope, PendingCall, StoreError};

/// Numbers per statement: one array bind each, so only the statement's size bounds it.
const NUMBERS_PER_STATEMENT: usize = 10_000;

#[derive(QueryableByName)]
struct CanceledRow {
    #[diesel(sql_type = Text)]
    campaign_id: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

pub(super) async fn add(
    store: &PgStore,
    scope: DncScope,
    numbers: Vec<(PhoneNumber, Option<String>)>,
    now: DateTime<Utc>,
    audit: Option<AuditEntry>,
) -> Result<DncAdded, StoreError> {
    store
        .transaction(move |conn| {
            async move {
                if let DncScope::Campaign(id) = scope {
                    let found: Vec<IdRow> =
                        diesel::sql_query("SELECT id FROM campaigns WHERE id = $1")
                            .bind::<Text, _>(id.to_string())
                            .load(conn)
                            .await?;
                    if found.is_empty() {
                        return Err(Failure::Store(StoreError::NotFound));
                    }
                }
                record(conn, audit.as_ref()).await?;
                add_in(conn, scope, &numbers, now).await
            }
            .boxed()
        })
        .await
}

/// Lists `numbers` under `scope` in the caller's transaction, cancelling the scope's waiting
/// calls to them.
pub(super) async fn add_in(
    conn: &mut Conn,
    scope: DncScope,
    numbers: &[(PhoneNumber, Option<String>)],
    now: DateTime<Utc>,
) -> Result<DncAdded, Failure> {
    let column = scope_column(scope);
    let mut added = DncAdded::default();
    let mut canceled: BTreeMap<(String, CallStatus), i64> = BTreeMap::new();
    for chunk in numbers.chunks(NUMBERS_PER_STATEMENT) {
        let listed: Vec<String> = chunk.iter().map(|(n, _)| n.as_str().to_owned()).collect();
        let reasons: Vec<Option<String>> = chunk.iter().map(|(_, r)| r.clone()).collect();
        added.added += diesel::sql_query(
            "INSERT INTO do_not_call (phone_number, scope, reason, created_at) \
                         SELECT n, $2, r, $4 FROM unnest($1::text[], $3::text[]) AS v(n, r) \
                         ON CONFLICT DO NOTHING",
        )
        .bind::<Array<Text>, _>(listed.clone())
        .bind::<Text, _>(column.clone())
        .bind::<Array<Nullable<Text>>, _>(reasons)
        .bind::<BigInt, _>(to_ms(now))
        .execute(conn)
        .await? as u64;
        for row in cancel_waiting(conn, scope, listed, now).await? {
            let status = CallStatus::parse(&row.status).ok_or_else(|| {
                Failure::Store(StoreError::Internal(format!(
                    "canceled a call in status {:?}",
                    row.status
                )))
            })?;
            *canceled.entry((row.campaign_id, status)).or_default() += row.n;
        }
    }
    let mut touched = Vec::new();
    for ((campaign, status), n) in canceled {
        apply_stats(conn, &campaign, &StatsDelta::canceled_from(status, n), now).await?;
        added.canceled += n as u64;
        touched.push(campaign);
    }
    touched.dedup();
    for campaign in touched {
        complete_if_finished(conn, &campaign, now).await?;
    }
    Ok(added)
}

/// Cancels the scope's queued and retrying calls to `numbers`, locked in the (campaign, id)
/// order every other writer of calls locks them in; counts them by campaign and former status.
async fn cancel_waiting(
    conn: &mut Conn,
    scope: DncScope,
    numbers: Vec<String>,
    now: DateTime<Utc>,
) -> Result<Vec<CanceledRow>, Failure> {
    let campaign = match scope {
        DncScope::Global => None,
        DncScope::Campaign(id) => Some(id.to_string()),
    };
    Ok(diesel::sql_query(
        "WITH old AS (SELECT campaign_id, id, status FROM calls \
         WHERE phone_number = ANY($1) AND status IN ('queued', 'retrying') \
         AND ($3::text IS NULL OR campaign_id = $3) ORDER BY campaign_id, id FOR UPDATE), \
         moved AS (UPDATE calls c SET status = 'canceled', last_error = 'do_not_call', \
         next_attempt_at = NULL, dial_after = 0, updated_at = $2 FROM old \
         WHERE c.campaign_id = old.campaign_id AND c.id = old.id \
         RETURNING c.campaign_id, old.status) \
         SELECT campaign_id, status, count(*) AS n FROM moved GROUP BY campaign_id, status",
    )
    .bind::<Array<Text>, _>(numbers)
    .bind::<BigInt, _>(to_ms(now))
    .bind::<Nullable<Text>, _>(campaign)
    .load(conn)
    .await?)
}

pub(super) async fn pending_calls(
    store: &PgStore,
    campaign_id: CampaignId,
    after: Option<CallId>,
    limit: usize,
    now: DateTime<Utc>,
) -> Result<Vec<(CallId, PendingCall)>, StoreError> {
    store
        .read(move |conn| {
            async move {
                let rows: Vec<PendingRow> = diesel::sql_query(PENDING_CALLS.postgres())
                    .bind::<Text, _>(campaign_id.to_string())
                    .bind::<Text, _>(after.map(|id| id.to_string()).unwrap_or_default())
                    .bind::<BigInt, _>(as_bigint(limit))
                    .prepared()
                    .load(conn)
                    .await?;
                let numbers = rows.iter().map(|r| r.phone_number.clone()).collect();
                let prior = prior_of(conn, numbers, now).await?;
                Ok(rows
                    .into_iter()
                    .map(|row| row.into_pending(campaign_id, &prior))
                    .collect::<Result<_, _>>()?)
            }
            .boxed()
        })
        .await
}

/// The attempts to `numbers` within the longest cap window before `now`, by number.
pub(super) async fn prior_of(
    conn: &mut Conn,
    numbers: Vec<String>,
    now: DateTime<Utc>,
) -> Result<HashMap<String, Vec<PriorRow>>, Failure> {
    if numbers.is_empty() {
        return Ok(HashMap::new());
    }
    let prior: Vec<PriorRow> = diesel::sql_query(
        "SELECT phone_number, campaign_id, started_at FROM number_attempts \
         WHERE phone_number = ANY($1) AND started_at > $2",
    )
    .bind::<Array<Text>, _>(numbers)
    .bind::<BigInt, _>(to_ms(now) - millis(caps::MAX_WINDOW))
    .prepared()
    .load(conn)
    .await?;
    Ok(rows::prior_by_number(prior))
}
