//! What the scheduler reads and moves: runnable campaigns, claims of queued calls, retries
//! whose backoff ended, and the completion of campaigns with nothing left to dial.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Integer, Text};
use diesel::sqlite::SqliteConnection;
use diesel::RunQueryDsl;

use super::campaigns::apply_stats;
use super::{SqliteStore, INSERT_CHUNK};
use crate::adapters::sql::prepared::KeepPrepared;
use crate::adapters::sql::rows::{self, ClaimRow, CountRow, IdRow, MaybeMsRow, RunnableRow};
use crate::adapters::sql::statements::RUNNABLE_CAMPAIGNS;
use crate::adapters::sql::{as_bigint, from_ms, to_ms, Failure};
use crate::domain::ids::{CampaignId, InstanceId};
use crate::domain::stats::StatsDelta;
use crate::ports::{ClaimedCall, RunnableCampaign, StoreError};

fn bad_id(err: uuid::Error) -> Failure {
    Failure::Store(StoreError::Internal(format!("bad campaign id: {err}")))
}

/// Completes the campaign if it is in progress with no call queued, retrying or dialing.
pub(super) fn complete_if_finished(
    conn: &mut SqliteConnection,
    campaign_id: CampaignId,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    diesel::sql_query(
        "UPDATE campaigns SET status = 'completed', completed_at = ?, updated_at = ? \
         WHERE id = ? AND status = 'in_progress' AND EXISTS (SELECT 1 FROM campaign_stats s \
         WHERE s.campaign_id = campaigns.id AND s.queued = 0 AND s.retrying = 0 AND s.dialing = 0)",
    )
    .bind::<BigInt, _>(to_ms(now))
    .bind::<BigInt, _>(to_ms(now))
    .bind::<Text, _>(campaign_id.to_string())
    .prepared()
    .execute(conn)?;
    Ok(())
}

pub(super) async fn runnable_campaigns(
    store: &SqliteStore,
) -> Result<Vec<RunnableCampaign>, StoreError> {
    store
        .read(|conn| {
            let rows: Vec<RunnableRow> = diesel::sql_query(RUNNABLE_CAMPAIGNS.sqlite())
                .prepared()
                .load(conn)?;
            Ok(rows::all::<_, RunnableCampaign>(rows)?)
        })
        .await
}

pub(super) async fn claim_calls(
    store: &SqliteStore,
    campaign_id: CampaignId,
    max: usize,
    owner: InstanceId,
    now: DateTime<Utc>,
) -> Result<Vec<ClaimedCall>, StoreError> {
    if max == 0 {
        return Ok(Vec::new());
    }
    store
        .write(move |conn| {
            // The status check and the claim share the transaction, so a pause or complete
            // that committed first is always seen.
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
            .bind::<BigInt, _>(as_bigint(max))
            .prepared()
            .load(conn)?;
            if claimed.is_empty() {
                return Ok(Vec::new());
            }
            start_attempts(conn, campaign_id, &claimed, now)?;
            let retries = claimed.iter().filter(|row| row.attempt_count > 1).count();
            let delta = StatsDelta::claimed(as_bigint(claimed.len()), as_bigint(retries));
            apply_stats(conn, campaign_id, &delta, now)?;
            Ok(claimed
                .into_iter()
                .map(|row| row.into_claimed(campaign_id, now))
                .collect::<Result<_, _>>()?)
        })
        .await
}

/// Opens the attempt record of each claimed call.
fn start_attempts(
    conn: &mut SqliteConnection,
    campaign_id: CampaignId,
    claimed: &[ClaimRow],
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    let campaign = campaign_id.to_string();
    for chunk in claimed.chunks(INSERT_CHUNK) {
        let placeholders = vec!["(?, ?, ?, 'dialing', ?)"; chunk.len()].join(", ");
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
    Ok(())
}

pub(super) async fn promote_due_retries(
    store: &SqliteStore,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<CampaignId>, StoreError> {
    store
        .write(move |conn| {
            let promoted: Vec<IdRow> = diesel::sql_query(
                "UPDATE calls SET status = 'queued', scheduled_at = next_attempt_at, \
                 next_attempt_at = NULL, updated_at = ? WHERE id IN (SELECT c.id FROM calls c \
                 JOIN campaigns k ON k.id = c.campaign_id WHERE c.status = 'retrying' \
                 AND c.next_attempt_at <= ? AND k.status = 'in_progress' LIMIT ?) \
                 RETURNING campaign_id AS id",
            )
            .bind::<BigInt, _>(to_ms(now))
            .bind::<BigInt, _>(to_ms(now))
            .bind::<BigInt, _>(as_bigint(limit))
            .prepared()
            .load(conn)?;
            let mut per_campaign: HashMap<String, i64> = HashMap::new();
            for row in promoted {
                *per_campaign.entry(row.id).or_default() += 1;
            }
            let mut touched = Vec::with_capacity(per_campaign.len());
            for (campaign, count) in per_campaign {
                let campaign_id: CampaignId = campaign.parse().map_err(bad_id)?;
                apply_stats(conn, campaign_id, &StatsDelta::promoted(count), now)?;
                touched.push(campaign_id);
            }
            Ok(touched)
        })
        .await
}

pub(super) async fn next_retry_due(
    store: &SqliteStore,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    store
        .read(|conn| {
            let rows: Vec<MaybeMsRow> = diesel::sql_query(
                "SELECT MIN(c.next_attempt_at) AS ms FROM calls c JOIN campaigns k \
                 ON k.id = c.campaign_id WHERE c.status = 'retrying' AND k.status = 'in_progress'",
            )
            .prepared()
            .load(conn)?;
            Ok(rows.into_iter().next().and_then(|row| row.ms).map(from_ms))
        })
        .await
}

pub(super) async fn complete_finished_campaigns(
    store: &SqliteStore,
    now: DateTime<Utc>,
) -> Result<Vec<CampaignId>, StoreError> {
    store
        .write(move |conn| {
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
                .map(|row| row.id.parse().map_err(bad_id))
                .collect()
        })
        .await
}
