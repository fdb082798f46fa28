//! What the scheduler reads and moves: runnable campaigns, claims of queued calls, retries
//! whose backoff ended, and the completion of campaigns with nothing left to dial.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Text};
use diesel::sqlite::SqliteConnection;
use diesel::RunQueryDsl;

use super::campaigns::apply_stats;
use super::dnc::prior_of;
use super::SqliteStore;
use crate::adapters::sql::prepared::KeepPrepared;
use crate::adapters::sql::rows::{
    self, CampaignRow, CandidateRow, CapacityRow, ClaimRow, IdRow, PendingRow,
};
use crate::adapters::sql::statements::{
    CLAIM_CAPACITY, FORBID_QUEUED, LOAD_CAMPAIGN, SCREEN_CALLS, SET_ASIDE,
};
use crate::adapters::sql::{as_bigint, to_ms, Failure};
use crate::domain::admission::{CampaignRules, DialCheck, Screen};
use crate::domain::call::CallStatus;
use crate::domain::campaign::Campaign;
use crate::domain::compliance::Compliance;
use crate::domain::ids::{CampaignId, InstanceId};
use crate::domain::stats::StatsDelta;
use crate::ports::{ClaimedCall, StoreError};

/// Batches a claim's screen reads at most before it claims what it has.
pub(super) const SCREEN_ROUNDS: usize = 8;

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
    .run(conn)?;
    Ok(())
}

pub(super) async fn claim_calls(
    store: &SqliteStore,
    campaign_id: CampaignId,
    max: usize,
    owner: InstanceId,
    global_cap: u32,
    now: DateTime<Utc>,
) -> Result<Vec<ClaimedCall>, StoreError> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let policy = store.compliance.clone();
    store
        .write(move |conn| {
            // One writer: what this reads is exact until the transaction ends, so the status
            // check, the capacity and the live numbers all hold for the claim.
            let capacity: Vec<CapacityRow> = diesel::sql_query(CLAIM_CAPACITY.sqlite())
                .bind::<Text, _>(campaign_id.to_string())
                .prepared()
                .load(conn)?;
            let Some(capacity) = capacity.into_iter().next() else {
                return Ok(Vec::new());
            };
            let admit = capacity.capacity(global_cap).admits(max as u64);
            if admit == 0 {
                return Ok(Vec::new());
            }
            let forbidden = screen(conn, &policy, campaign_id, admit, now)?;
            if forbidden > 0 {
                let delta = StatsDelta::canceled_from(CallStatus::Queued, forbidden);
                apply_stats(conn, campaign_id, &delta, now)?;
                complete_if_finished(conn, campaign_id, now)?;
            }
            let candidates: Vec<CandidateRow> = diesel::sql_query(
                "SELECT id, phone_number FROM calls c WHERE campaign_id = ? AND status = 'queued' \
                 AND dial_after <= ? AND NOT EXISTS (SELECT 1 FROM live_numbers l \
                 WHERE l.phone_number = c.phone_number) ORDER BY dial_after, id LIMIT ?",
            )
            .bind::<Text, _>(campaign_id.to_string())
            .bind::<BigInt, _>(to_ms(now))
            .bind::<BigInt, _>(i64::try_from(admit).unwrap_or(i64::MAX))
            .prepared()
            .load(conn)?;
            // Two queued calls to one number: the older goes now, the other waits for it.
            let mut numbers = HashSet::with_capacity(candidates.len());
            let picked: Vec<CandidateRow> = candidates
                .into_iter()
                .filter(|row| numbers.insert(row.phone_number.clone()))
                .collect();
            if picked.is_empty() {
                return Ok(Vec::new());
            }
            // The batch travels as one JSON array, so each statement's text is fixed and stays
            // prepared: a list of placeholders per batch size was parsed anew every claim.
            let ids = id_list(picked.iter().map(|row| row.id.as_str()));
            diesel::sql_query(
                "INSERT INTO live_numbers (phone_number, campaign_id, call_id) \
                 SELECT phone_number, campaign_id, id FROM calls \
                 WHERE id IN (SELECT value FROM json_each(?))",
            )
            .bind::<Text, _>(ids.clone())
            .prepared()
            .run(conn)?;
            let mut claimed: Vec<ClaimRow> = diesel::sql_query(
                "UPDATE calls SET status = 'dialing', attempt_count = attempt_count + 1, \
                 last_attempt_at = ?, updated_at = ?, next_attempt_at = NULL, owner = ?, \
                 placed_at = NULL WHERE id IN (SELECT value FROM json_each(?)) \
                 RETURNING id, phone_number, attempt_count",
            )
            .bind::<BigInt, _>(to_ms(now))
            .bind::<BigInt, _>(to_ms(now))
            .bind::<Text, _>(owner.to_string())
            .bind::<Text, _>(ids.clone())
            .prepared()
            .load(conn)?;
            claimed.sort_by(|a, b| a.id.cmp(&b.id));
            start_attempts(conn, &ids, now)?;
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

/// Sets aside the queued calls a claim would take that the calling rules hold now (each until
/// its rules allow it, so no later claim reads it before then) and cancels those to listed
/// numbers; returns how many it canceled. Reads at most `SCREEN_ROUNDS` batches of `admit`.
fn screen(
    conn: &mut SqliteConnection,
    policy: &Compliance,
    campaign_id: CampaignId,
    admit: u64,
    now: DateTime<Utc>,
) -> Result<i64, Failure> {
    let campaign: Vec<CampaignRow> = diesel::sql_query(LOAD_CAMPAIGN.sqlite())
        .bind::<Text, _>(campaign_id.to_string())
        .prepared()
        .load(conn)?;
    let Some(campaign) = rows::first::<_, Campaign>(campaign)? else {
        return Ok(0);
    };
    let rules = CampaignRules::of(&campaign);
    let batch = i64::try_from(admit).unwrap_or(i64::MAX);
    let mut forbidden = 0;
    for _ in 0..SCREEN_ROUNDS {
        let rows: Vec<PendingRow> = diesel::sql_query(SCREEN_CALLS.sqlite())
            .bind::<Text, _>(campaign_id.to_string())
            .bind::<BigInt, _>(to_ms(now))
            .bind::<BigInt, _>(batch)
            .prepared()
            .load(conn)?;
        let complete = i64::try_from(rows.len()).unwrap_or(0) < batch;
        let prior = prior_of(conn, &rows, now)?;
        let mut set_aside = 0;
        for row in rows {
            let (id, call) = row.into_pending(campaign_id, &prior)?;
            let check = DialCheck::for_call(policy, rules.clone(), &call.phone_number, call.facts);
            match check.screen(now) {
                Screen::Take => continue,
                Screen::HoldUntil(until) => {
                    diesel::sql_query(SET_ASIDE.sqlite())
                        .bind::<BigInt, _>(to_ms(until))
                        .bind::<Text, _>(id.to_string())
                        .prepared()
                        .run(conn)?;
                }
                Screen::Forbid => {
                    forbidden += diesel::sql_query(FORBID_QUEUED.sqlite())
                        .bind::<BigInt, _>(to_ms(now))
                        .bind::<Text, _>(id.to_string())
                        .prepared()
                        .run_counted(conn)? as i64;
                }
            }
            set_aside += 1;
        }
        // Everything read may be taken, or there is nothing more to read.
        if set_aside == 0 || complete {
            break;
        }
    }
    Ok(forbidden)
}

/// The ids as one JSON array, for `json_each`.
fn id_list<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    serde_json::Value::Array(ids.map(serde_json::Value::from).collect()).to_string()
}

/// Opens the attempt record of each claimed call (`ids`, a JSON array).
fn start_attempts(
    conn: &mut SqliteConnection,
    ids: &str,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    diesel::sql_query(
        "INSERT OR REPLACE INTO attempts (call_id, attempt, campaign_id, status, started_at) \
         SELECT id, attempt_count, campaign_id, 'dialing', ? FROM calls \
         WHERE id IN (SELECT value FROM json_each(?))",
    )
    .bind::<BigInt, _>(to_ms(now))
    .bind::<Text, _>(ids.to_owned())
    .prepared()
    .run(conn)?;
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
