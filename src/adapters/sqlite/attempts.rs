//! Attempts: settling the provider's reports, adoption of dispatched attempts by the process
//! that dials them, attempts whose process died, and the finished attempts the timeline
//! exporter moves out.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel::sqlite::SqliteConnection;
use diesel::RunQueryDsl;

use super::campaigns::apply_stats;
use super::dispatch::complete_if_finished;
use super::SqliteStore;
use crate::adapters::sql::prepared::KeepPrepared;
use crate::adapters::sql::rows::{self, readable_backlog, CurrentCallRow, OrphanRow, TimelineRow};
use crate::adapters::sql::statements::{CURRENT_CALLS, ORPHANED_ATTEMPTS, TIMELINE_BACKLOG};
use crate::adapters::sql::{as_bigint, to_ms, Failure};
use crate::domain::ids::{CallId, CampaignId, InstanceId};
use crate::domain::settlement::{AppliedReport, AttemptReport, CurrentCall, Settlement};
use crate::domain::stats::StatsDelta;
use crate::ports::{AttemptKey, OrphanedAttempt, StoreError, TimelineEntry};

pub(super) async fn record(
    store: &SqliteStore,
    reports: &[AttemptReport],
    now: DateTime<Utc>,
) -> Result<Vec<AppliedReport>, StoreError> {
    let reports = reports.to_vec();
    store
        .write(move |conn| {
            let mut applied = Vec::with_capacity(reports.len());
            let mut deltas: BTreeMap<CampaignId, StatsDelta> = BTreeMap::new();
            for report in &reports {
                // Read report by report: a second report of one attempt sees the first's write.
                let settlement =
                    current_call(conn, report.call_id)?.and_then(|call| call.settle(report));
                let Some(settlement) = settlement else {
                    applied.push(AppliedReport::stale(report));
                    continue;
                };
                write_settlement(conn, report, &settlement, now)?;
                *deltas.entry(report.campaign_id).or_default() += settlement.delta;
                applied.push(AppliedReport::settled(report, settlement.step));
            }
            for (campaign_id, delta) in &deltas {
                apply_stats(conn, *campaign_id, delta, now)?;
                complete_if_finished(conn, *campaign_id, now)?;
            }
            Ok(applied)
        })
        .await
}

fn current_call(
    conn: &mut SqliteConnection,
    call_id: CallId,
) -> Result<Option<CurrentCall>, Failure> {
    let rows: Vec<CurrentCallRow> =
        diesel::sql_query(format!("{} WHERE c.id = ?", CURRENT_CALLS.sqlite()))
            .bind::<Text, _>(call_id.to_string())
            .prepared()
            .load(conn)?;
    Ok(rows
        .into_iter()
        .next()
        .and_then(rows::readable_current_call))
}

/// Moves the call and closes its attempt.
fn write_settlement(
    conn: &mut SqliteConnection,
    report: &AttemptReport,
    settlement: &Settlement,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    diesel::sql_query(
        "UPDATE calls SET status = ?, next_attempt_at = ?, last_error = ?, \
         updated_at = ?, owner = NULL WHERE id = ?",
    )
    .bind::<Text, _>(settlement.call_status.as_str())
    .bind::<Nullable<BigInt>, _>(settlement.next_attempt_at.map(to_ms))
    .bind::<Nullable<Text>, _>(settlement.error.clone())
    .bind::<BigInt, _>(to_ms(now))
    .bind::<Text, _>(report.call_id.to_string())
    .prepared()
    .execute(conn)?;
    diesel::sql_query(
        "UPDATE attempts SET status = ?, error = ?, ended_at = ?, duration_ms = ? \
         WHERE campaign_id = ? AND call_id = ? AND attempt = ?",
    )
    .bind::<Text, _>(settlement.attempt_status.as_str())
    .bind::<Nullable<Text>, _>(settlement.error.clone())
    .bind::<BigInt, _>(to_ms(settlement.ended_at))
    .bind::<BigInt, _>(i64::try_from(settlement.duration_ms).unwrap_or(i64::MAX))
    .bind::<Text, _>(report.campaign_id.to_string())
    .bind::<Text, _>(report.call_id.to_string())
    .bind::<Integer, _>(report.attempt as i32)
    .prepared()
    .execute(conn)?;
    Ok(())
}

pub(super) async fn adopt(
    store: &SqliteStore,
    attempts: &[(CampaignId, CallId, u32, InstanceId)],
    owner: InstanceId,
) -> Result<Vec<bool>, StoreError> {
    if attempts.is_empty() {
        return Ok(Vec::new());
    }
    let attempts = attempts.to_vec();
    store
        .write(move |conn| {
            let mut adopted = Vec::with_capacity(attempts.len());
            for (_, call_id, attempt, claimer) in attempts {
                // Changes the row only if it is still dialing that attempt for its claimer.
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

pub(super) async fn orphaned(
    store: &SqliteStore,
    stale_before: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<OrphanedAttempt>, StoreError> {
    store
        .read(move |conn| {
            let rows: Vec<OrphanRow> = diesel::sql_query(ORPHANED_ATTEMPTS.sqlite())
                .bind::<BigInt, _>(to_ms(stale_before))
                .bind::<BigInt, _>(as_bigint(limit))
                .prepared()
                .load(conn)?;
            Ok(rows::all::<_, OrphanedAttempt>(rows)?)
        })
        .await
}

pub(super) async fn backlog(
    store: &SqliteStore,
    limit: usize,
) -> Result<Vec<TimelineEntry>, StoreError> {
    store
        .read(move |conn| {
            let rows: Vec<TimelineRow> = diesel::sql_query(TIMELINE_BACKLOG.sqlite())
                .bind::<BigInt, _>(as_bigint(limit))
                .prepared()
                .load(conn)?;
            Ok(readable_backlog(rows))
        })
        .await
}

pub(super) async fn forget(store: &SqliteStore, keys: &[AttemptKey]) -> Result<u64, StoreError> {
    if keys.is_empty() {
        return Ok(0);
    }
    let keys = keys.to_vec();
    store
        .write(move |conn| {
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
