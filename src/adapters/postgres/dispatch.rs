//! What the scheduler reads and moves: runnable campaigns, claims of queued calls, retries
//! whose backoff ended, and the completion of campaigns with nothing left to dial.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::RunQueryDsl;
use futures::FutureExt;

use super::campaigns::apply_stats;
use super::dnc::prior_of;
use super::error::bad_id;
use super::{Conn, PgStore};
use crate::adapters::sql::prepared::KeepPrepared;
use crate::adapters::sql::rows::{
    self, CampaignRow, CapacityRow, ClaimRow, CountRow, IdRow, PendingRow, TotalRow,
};
use crate::adapters::sql::statements::{CLAIM_CAPACITY, LOAD_CAMPAIGN, SCREEN_CALLS};
use crate::adapters::sql::{as_bigint, to_ms, Failure};
use crate::domain::admission::{CampaignRules, DialCheck, Screen};
use crate::domain::call::CallStatus;
use crate::domain::campaign::Campaign;
use crate::domain::compliance::Compliance;
use crate::domain::ids::{CampaignId, InstanceId};
use crate::domain::stats::StatsDelta;
use crate::ports::{ClaimedCall, StoreError};

/// Takes `FOR KEY SHARE` on the campaign if it is `in_progress`; false if it is not.
pub(super) async fn lock_in_progress(conn: &mut Conn, campaign: &str) -> Result<bool, Failure> {
    let live: Vec<CountRow> = diesel::sql_query(
        "SELECT 1 AS n FROM campaigns WHERE id = $1 AND status = 'in_progress' FOR KEY SHARE",
    )
    .bind::<Text, _>(campaign.to_owned())
    .prepared()
    .load(conn)
    .await?;
    Ok(!live.is_empty())
}

/// Completes the campaign if it is in progress with no call queued, retrying or dialing. The
/// caller holds its statistics row and KEY SHARE on the campaign: no enqueue can be in flight,
/// and every other writer's work is counted in what this statement reads.
pub(super) async fn complete_if_finished(
    conn: &mut Conn,
    campaign: &str,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    diesel::sql_query(
        "UPDATE campaigns SET status = 'completed', completed_at = $1, updated_at = $1 \
         WHERE id = $2 AND status = 'in_progress' AND EXISTS (SELECT 1 FROM campaign_stats s \
         WHERE s.campaign_id = $2 AND s.queued = 0 AND s.retrying = 0 AND s.dialing = 0)",
    )
    .bind::<BigInt, _>(to_ms(now))
    .bind::<Text, _>(campaign.to_owned())
    .prepared()
    .execute(conn)
    .await?;
    Ok(())
}

/// Serializes claims across the deployment: the count of dialing calls a claim reads stays true
/// until it commits, since only claims add to it. Reports and hand-backs only free slots, so
/// they never wait for it.
const CLAIM_LOCK: i64 = 0x6f75_7462_6f75;

pub(super) async fn claim_calls(
    store: &PgStore,
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
        .transaction(move |conn| {
            async move {
                let campaign = campaign_id.to_string();
                diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                    .bind::<BigInt, _>(CLAIM_LOCK)
                    .prepared()
                    .execute(conn)
                    .await?;
                // The status check and the claim share the transaction: a pause or complete
                // that committed first is seen, one in flight waits for this to finish.
                let capacity: Vec<CapacityRow> = diesel::sql_query(format!(
                    "{} FOR KEY SHARE OF k",
                    CLAIM_CAPACITY.postgres()
                ))
                .bind::<Text, _>(campaign.clone())
                .prepared()
                .load(conn)
                .await?;
                let Some(capacity) = capacity.into_iter().next() else {
                    return Ok(Vec::new());
                };
                let admit = capacity.capacity(global_cap).admits(max as u64);
                if admit == 0 {
                    return Ok(Vec::new());
                }
                let forbidden = screen(conn, &policy, campaign_id, admit, now).await?;
                if forbidden > 0 {
                    let delta = StatsDelta::canceled_from(CallStatus::Queued, forbidden);
                    apply_stats(conn, &campaign, &delta, now).await?;
                    complete_if_finished(conn, &campaign, now).await?;
                }
                // Calls whose number is live anywhere are skipped; of two queued calls to one
                // number the older goes now. Each claimed number becomes live in the same
                // statement.
                let claimed: Vec<ClaimRow> = diesel::sql_query(
                    "WITH picked AS MATERIALIZED (SELECT campaign_id, id, phone_number FROM calls c \
                     WHERE campaign_id = $3 AND status = 'queued' AND dial_after <= $1 \
                     AND NOT EXISTS \
                     (SELECT 1 FROM live_numbers l WHERE l.phone_number = c.phone_number) \
                     ORDER BY dial_after, id LIMIT $4 FOR UPDATE SKIP LOCKED), \
                     live AS (INSERT INTO live_numbers (phone_number, campaign_id, call_id) \
                     SELECT DISTINCT ON (phone_number) phone_number, campaign_id, id FROM picked \
                     ORDER BY phone_number, id ON CONFLICT (phone_number) DO NOTHING \
                     RETURNING call_id), \
                     claimed AS (UPDATE calls c SET status = 'dialing', \
                     attempt_count = c.attempt_count + 1, last_attempt_at = $1, updated_at = $1, \
                     next_attempt_at = NULL, owner = $2, placed_at = NULL FROM live \
                     WHERE c.campaign_id = $3 AND c.id = live.call_id \
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
                .bind::<BigInt, _>(i64::try_from(admit).unwrap_or(i64::MAX))
                .prepared()
                .load(conn)
                .await?;
                if claimed.is_empty() {
                    return Ok(Vec::new());
                }
                let retries = claimed.iter().filter(|row| row.attempt_count > 1).count();
                let delta = StatsDelta::claimed(as_bigint(claimed.len()), as_bigint(retries));
                apply_stats(conn, &campaign, &delta, now).await?;
                Ok(claimed
                    .into_iter()
                    .map(|row| row.into_claimed(campaign_id, now))
                    .collect::<Result<_, _>>()?)
            }
            .boxed()
        })
        .await
}

/// Batches a claim's screen reads at most before it claims what it has.
const SCREEN_ROUNDS: usize = 8;

/// Sets aside the queued calls a claim would take that the calling rules hold now (each until
/// its rules allow it, so no later claim reads it before then) and cancels those to listed
/// numbers; returns how many it canceled. Reads at most `SCREEN_ROUNDS` batches of `admit`.
async fn screen(
    conn: &mut Conn,
    policy: &Compliance,
    campaign_id: CampaignId,
    admit: u64,
    now: DateTime<Utc>,
) -> Result<i64, Failure> {
    let campaign: Vec<CampaignRow> = diesel::sql_query(LOAD_CAMPAIGN.postgres())
        .bind::<Text, _>(campaign_id.to_string())
        .prepared()
        .load(conn)
        .await?;
    let Some(campaign) = rows::first::<_, Campaign>(campaign)? else {
        return Ok(0);
    };
    let rules = CampaignRules::of(&campaign);
    let batch = i64::try_from(admit).unwrap_or(i64::MAX);
    let mut forbidden = 0;
    for _ in 0..SCREEN_ROUNDS {
        let rows: Vec<PendingRow> = diesel::sql_query(SCREEN_CALLS.postgres())
            .bind::<Text, _>(campaign_id.to_string())
            .bind::<BigInt, _>(to_ms(now))
            .bind::<BigInt, _>(batch)
            .prepared()
            .load(conn)
            .await?;
        let complete = i64::try_from(rows.len()).unwrap_or(0) < batch;
        let numbers = rows.iter().map(|r| r.phone_number.clone()).collect();
        let prior = prior_of(conn, numbers, now).await?;
        let (mut held, mut until, mut listed) = (Vec::new(), Vec::new(), Vec::new());
        for row in rows {
            let (id, call) = row.into_pending(campaign_id, &prior)?;
            let check = DialCheck::for_call(policy, rules.clone(), &call.phone_number, call.facts);
            match check.screen(now) {
                Screen::Take => {}
                Screen::HoldUntil(at) => {
                    held.push(id.to_string());
                    until.push(to_ms(at));
                }
                Screen::Forbid => listed.push(id.to_string()),
            }
        }
        if held.is_empty() && listed.is_empty() {
            break;
        }
        if !held.is_empty() {
            diesel::sql_query(
                "UPDATE calls c SET dial_after = v.until \
                 FROM unnest($2::text[], $3::int8[]) AS v(id, until) \
                 WHERE c.campaign_id = $1 AND c.id = v.id AND c.status = 'queued'",
            )
            .bind::<Text, _>(campaign_id.to_string())
            .bind::<Array<Text>, _>(held)
            .bind::<Array<BigInt>, _>(until)
            .prepared()
            .execute(conn)
            .await?;
        }
        if !listed.is_empty() {
            forbidden += diesel::sql_query(
                "UPDATE calls SET status = 'canceled', last_error = 'do_not_call', \
                 dial_after = 0, updated_at = $3 \
                 WHERE campaign_id = $1 AND id = ANY($2) AND status = 'queued'",
            )
            .bind::<Text, _>(campaign_id.to_string())
            .bind::<Array<Text>, _>(listed)
            .bind::<BigInt, _>(to_ms(now))
            .prepared()
            .execute(conn)
            .await? as i64;
        }
        if complete {
            break;
        }
    }
    Ok(forbidden)
}

pub(super) async fn promote_due_retries(
    store: &PgStore,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<CampaignId>, StoreError> {
    let candidates: Vec<IdRow> = store
        .read(move |conn| {
            async move {
                Ok(diesel::sql_query(
                    "SELECT k.id AS id FROM campaigns k \
                     JOIN campaign_stats s ON s.campaign_id = k.id \
                     WHERE k.status = 'in_progress' AND s.retrying > 0 \
                     AND EXISTS (SELECT 1 FROM calls c WHERE c.campaign_id = k.id \
                     AND c.status = 'retrying' AND c.next_attempt_at <= $1) ORDER BY k.id",
                )
                .bind::<BigInt, _>(to_ms(now))
                .prepared()
                .load(conn)
                .await?)
            }
            .boxed()
        })
        .await?;
    let mut touched = Vec::new();
    let mut left = limit;
    // One transaction per campaign: each moves its calls and their counts together.
    for candidate in candidates {
        if left == 0 {
            break;
        }
        let campaign = candidate.id;
        let budget = left;
        let transaction_campaign = campaign.clone();
        let moved = store
            .transaction(move |conn| {
                async move {
                    let campaign = transaction_campaign;
                    // A pause or complete in flight is waited for; one that committed is seen.
                    if !lock_in_progress(conn, &campaign).await? {
                        return Ok(0);
                    }
                    let moved: Vec<TotalRow> = diesel::sql_query(
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
                    .bind::<BigInt, _>(as_bigint(budget))
                    .prepared()
                    .load(conn)
                    .await?;
                    let count = moved.into_iter().next().map_or(0, |row| row.n);
                    if count > 0 {
                        apply_stats(conn, &campaign, &StatsDelta::promoted(count), now).await?;
                    }
                    Ok(count)
                }
                .boxed()
            })
            .await?;
        if moved > 0 {
            left = left.saturating_sub(usize::try_from(moved).unwrap_or(usize::MAX));
            touched.push(campaign.parse().map_err(bad_id)?);
        }
    }
    Ok(touched)
}

pub(super) async fn complete_finished_campaigns(
    store: &PgStore,
    now: DateTime<Utc>,
) -> Result<Vec<CampaignId>, StoreError> {
    store
        .read(move |conn| {
            async move {
                let candidates: Vec<IdRow> = diesel::sql_query(
                    "SELECT k.id AS id FROM campaigns k \
                     JOIN campaign_stats s ON s.campaign_id = k.id \
                     WHERE k.status = 'in_progress' AND s.queued = 0 AND s.retrying = 0 \
                     AND s.dialing = 0 ORDER BY k.id",
                )
                .prepared()
                .load(conn)
                .await?;
                let mut completed = Vec::new();
                for candidate in candidates {
                    // Locking both rows makes the check see the latest committed counters: an
                    // enqueue or report in flight is waited for, then the row is re-checked.
                    let rows: Vec<IdRow> = diesel::sql_query(
                        "WITH done AS MATERIALIZED (SELECT k.id FROM campaigns k \
                         JOIN campaign_stats s ON s.campaign_id = k.id WHERE k.id = $2 \
                         AND k.status = 'in_progress' AND s.queued = 0 AND s.retrying = 0 \
                         AND s.dialing = 0 FOR UPDATE OF k, s) \
                         UPDATE campaigns c SET status = 'completed', completed_at = $1, \
                         updated_at = $1 FROM done WHERE c.id = done.id RETURNING c.id AS id",
                    )
                    .bind::<BigInt, _>(to_ms(now))
                    .bind::<Text, _>(candidate.id)
                    .prepared()
                    .load(conn)
                    .await?;
                    for row in rows {
                        completed.push(row.id.parse().map_err(bad_id)?);
                    }
                }
                Ok(completed)
            }
            .boxed()
        })
        .await
}
