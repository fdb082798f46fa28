//! Calls: queueing registered numbers again, and reading one call or a page of them.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel::sqlite::SqliteConnection;
use diesel::RunQueryDsl;

use super::campaigns::{apply_stats, existing_campaign};
use super::keys::record;
use super::{insert_chunk, SqliteStore, INSERT_CHUNK};
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

/// Inserts queued calls, each claimable from the first instant its rules may allow it (as
/// `FirstDialable::queued_calls` orders and times them), taking them a chunk at a time; each
/// inserted call is then handed to `inserted`.
pub(super) fn insert_calls(
    conn: &mut SqliteConnection,
    mut calls: impl Iterator<Item = (Call, Option<DateTime<Utc>>)>,
    mut inserted: impl FnMut(Call),
) -> Result<(), Failure> {
    loop {
        let chunk: Vec<_> = calls.by_ref().take(INSERT_CHUNK).collect();
        if chunk.is_empty() {
            return Ok(());
        }
        let placeholders =
            vec!["(?, ?, ?, 'queued', 0, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let mut query = diesel::sql_query(format!(
            "INSERT INTO calls (id, campaign_id, phone_number, status, attempt_count, \
             max_attempts, scheduled_at, created_at, updated_at, metadata, time_zone, \
             dial_after) VALUES {placeholders}"
        ))
        .into_boxed();
        for (call, dial_after) in &chunk {
            let dial_after = dial_after.map_or(0, to_ms);
            query = query
                .bind::<Text, _>(call.id.to_string())
                .bind::<Text, _>(call.campaign_id.to_string())
                .bind::<Text, _>(call.phone_number.as_str().to_owned())
                .bind::<Integer, _>(call.max_attempts as i32)
                .bind::<BigInt, _>(to_ms(call.scheduled_at))
                .bind::<BigInt, _>(to_ms(call.created_at))
                .bind::<BigInt, _>(to_ms(call.updated_at))
                .bind::<Nullable<Text>, _>(call.metadata.as_ref().map(|m| m.as_json().to_owned()))
                .bind::<Nullable<Text>, _>(call.time_zone.map(|tz| tz.name().to_owned()))
                .bind::<BigInt, _>(dial_after);
        }
        insert_chunk(conn, query, chunk.len(), INSERT_CHUNK)?;
        chunk.into_iter().for_each(|(call, _)| inserted(call));
    }
}

fn load_call(conn: &mut SqliteConnection, id: CallId) -> Result<Option<Call>, Failure> {
    let rows: Vec<CallRow> =
        diesel::sql_query(format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = ?"))
            .bind::<Text, _>(id.to_string())
            .prepared()
            .load(conn)?;
    Ok(rows::first::<_, Call>(rows)?)
}

pub(super) async fn enqueue(
    store: &SqliteStore,
    campaign_id: CampaignId,
    targets: Vec<NewTarget>,
    now: DateTime<Utc>,
    audit: Option<AuditEntry>,
) -> Result<Vec<Call>, StoreError> {
    // A campaign's targets never change once registered: they are checked on a reader, in
    // batches, so the one writer is held only for the insert.
    let numbers: Vec<String> = targets
        .iter()
        .map(|target| target.phone_number.as_str().to_owned())
        .collect();
    let unregistered = store
        .read(move |conn| {
            let mut registered = std::collections::HashSet::with_capacity(numbers.len());
            for chunk in numbers.chunks(INSERT_CHUNK) {
                let list = vec!["?"; chunk.len()].join(", ");
                let mut query = diesel::sql_query(format!(
                    "SELECT phone_number FROM targets WHERE campaign_id = ? \
                     AND phone_number IN ({list})"
                ))
                .into_boxed()
                .bind::<Text, _>(campaign_id.to_string());
                for number in chunk {
                    query = query.bind::<Text, _>(number.clone());
                }
                let found: Vec<PhoneRow> = query.load(conn)?;
                registered.extend(found.into_iter().map(|row| row.phone_number));
            }
            Ok(numbers
                .into_iter()
                .filter(|number| !registered.contains(number))
                .collect::<Vec<_>>())
        })
        .await?;
    let policy = store.compliance.clone();
    store
        .write(move |conn| {
            record(conn, audit.as_ref())?;
            let campaign = existing_campaign(conn, campaign_id)?;
            campaign.status.ensure_mutable("queue calls for")?;
            if !unregistered.is_empty() {
                return Err(StoreError::NotRegistered(unregistered).into());
            }
            let max_attempts = campaign.retry_policy.max_attempts;
            let mut first = FirstDialable::new(&policy, &campaign, now);
            let calls = first.queued_calls(&targets, campaign_id, max_attempts);
            let mut queued = Vec::with_capacity(targets.len());
            insert_calls(conn, calls, |call| queued.push(call))?;
            let delta = StatsDelta::enqueued(as_bigint(queued.len()));
            apply_stats(conn, campaign_id, &delta, now)?;
            Ok(queued)
        })
        .await
}

pub(super) async fn get(
    store: &SqliteStore,
    id: CallId,
) -> Result<Option<(Call, Vec<Attempt>)>, StoreError> {
    store
        .read_snapshot(move |conn| {
            let Some(call) = load_call(conn, id)? else {
                return Ok(None);
            };
            let rows: Vec<AttemptRow> = diesel::sql_query(CALL_ATTEMPTS.sqlite())
                .bind::<Text, _>(call.campaign_id.to_string())
                .bind::<Text, _>(id.to_string())
                .prepared()
                .load(conn)?;
            let attempts = rows::all::<_, Attempt>(rows)?;
            Ok(Some((call, attempts)))
        })
        .await
}
