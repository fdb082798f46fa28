//! Calls: queueing registered numbers again, and reading one call or a page of them.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};
use diesel_async::RunQueryDsl;
use futures::FutureExt;

use super::campaigns::{apply_stats, load_campaign, Lock};
use super::keys::record;
use super::{rows_per_insert, Conn, PgStore};
use crate::adapters::sql::prepared::KeepPrepared;
use crate::adapters::sql::rows::{self, AttemptRow, CallRow, PhoneRow, CALL_COLUMNS};
use crate::adapters::sql::statements::CALL_ATTEMPTS;
use crate::adapters::sql::{as_bigint, to_ms, Failure};
use crate::domain::access::AuditEntry;
use crate::domain::admission::FirstDialable;
use crate::domain::call::{Attempt, Call};
use crate::domain::ids::{CallId, CampaignId};
use crate::domain::stats::StatsDelta;
use crate::ports::{NewTarget, StoreError};

/// Calls per multi-row INSERT: five values each, three shared.
fn calls_per_insert() -> usize {
    rows_per_insert(5, 3)
}

/// Inserts queued calls of one campaign; all share `max_attempts` and were made at `now`. Each
/// is claimable from the first instant its rules may allow it (as `FirstDialable::queued_calls`
/// orders and times them), taken a chunk at a time; each inserted call is then handed to
/// `inserted`.
pub(super) async fn insert_calls(
    conn: &mut Conn,
    campaign: &str,
    max_attempts: u32,
    now: DateTime<Utc>,
    mut calls: impl Iterator<Item = (Call, Option<DateTime<Utc>>)> + Send,
    mut inserted: impl FnMut(Call) + Send,
) -> Result<(), Failure> {
    loop {
        let chunk: Vec<_> = calls.by_ref().take(calls_per_insert()).collect();
        if chunk.is_empty() {
            return Ok(());
        }
        let values: Vec<String> = (0..chunk.len())
            .map(|row| {
                let first = 4 + 5 * row;
                format!(
                    "($1, ${first}, ${}, 'queued', 0, $2, $3, $3, $3, ${}, ${}, ${})",
                    first + 1,
                    first + 2,
                    first + 3,
                    first + 4
                )
            })
            .collect();
        let mut query = diesel::sql_query(format!(
            "INSERT INTO calls (campaign_id, id, phone_number, status, attempt_count, \
             max_attempts, scheduled_at, created_at, updated_at, metadata, time_zone, \
             dial_after) VALUES {}",
            values.join(", ")
        ))
        .into_boxed()
        .bind::<Text, _>(campaign.to_owned())
        .bind::<Integer, _>(max_attempts as i32)
        .bind::<BigInt, _>(to_ms(now));
        for (call, dial_after) in &chunk {
            debug_assert!(call.scheduled_at == now && call.max_attempts == max_attempts);
            query = query
                .bind::<Text, _>(call.id.to_string())
                .bind::<Text, _>(call.phone_number.as_str().to_owned())
                .bind::<Nullable<Text>, _>(call.metadata.as_ref().map(|m| m.as_json().to_owned()))
                .bind::<Nullable<Text>, _>(call.time_zone.map(|tz| tz.name().to_owned()))
                .bind::<BigInt, _>(dial_after.map_or(0, to_ms));
        }
        query.execute(conn).await?;
        chunk.into_iter().for_each(|(call, _)| inserted(call));
    }
}

pub(super) async fn enqueue(
    store: &PgStore,
    campaign_id: CampaignId,
    targets: Vec<NewTarget>,
    now: DateTime<Utc>,
    audit: Option<AuditEntry>,
) -> Result<Vec<Call>, StoreError> {
    let policy = store.compliance.clone();
    store
        .transaction(move |conn| {
            async move {
                record(conn, audit.as_ref()).await?;
                // FOR UPDATE, not KEY SHARE: a report completing the campaign concurrently
                // must either see these calls or finish before they are added.
                let campaign = load_campaign(conn, campaign_id, Lock::ForUpdate)
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
                let mut first = FirstDialable::new(&policy, &campaign, now);
                let calls = first.queued_calls(&targets, campaign_id, max_attempts);
                let mut queued = Vec::with_capacity(targets.len());
                insert_calls(conn, &id, max_attempts, now, calls, |call| {
                    queued.push(call)
                })
                .await?;
                let delta = StatsDelta::enqueued(as_bigint(queued.len()));
                apply_stats(conn, &id, &delta, now).await?;
                Ok(queued)
            }
            .boxed()
        })
        .await
}

pub(super) async fn get(
    store: &PgStore,
    id: CallId,
) -> Result<Option<(Call, Vec<Attempt>)>, StoreError> {
    store
        .snapshot(move |conn| {
            async move {
                let rows: Vec<CallRow> = diesel::sql_query(format!(
                    "SELECT {CALL_COLUMNS} FROM calls WHERE id = $1 LIMIT 1"
                ))
                .bind::<Text, _>(id.to_string())
                .prepared()
                .load(conn)
                .await?;
                let Some(call) = rows::first::<_, Call>(rows)? else {
                    return Ok(None);
                };
                let rows: Vec<AttemptRow> = diesel::sql_query(CALL_ATTEMPTS.postgres())
                    .bind::<Text, _>(call.campaign_id.to_string())
                    .bind::<Text, _>(id.to_string())
                    .prepared()
                    .load(conn)
                    .await?;
                let attempts = rows::all::<_, Attempt>(rows)?;
                Ok(Some((call, attempts)))
            }
            .boxed()
        })
        .await
}
