//! Attempts: settling the provider's reports, the dialer's begin (or hand-back) of claimed
//! attempts, attempts whose process died, and the finished attempts the timeline exporter moves
//! out.

mod begin;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use futures::FutureExt;

use self::begin::{lock_held_calls, write_decisions};
use super::campaigns::apply_stats;
use super::dispatch::complete_if_finished;
use super::{Conn, PgStore};
use crate::adapters::sql::prepared::KeepPrepared;
use crate::adapters::sql::rows::{self, carrier_json, CountRow, CurrentCallRow};
use crate::adapters::sql::statements::CURRENT_CALLS;
use crate::adapters::sql::webhooks::{self, Finished};
use crate::adapters::sql::{to_ms, Failure};
use crate::domain::admission::{Release, Unspent};
use crate::domain::call::CallStatus;
use crate::domain::carrier::CarrierCall;
use crate::domain::settlement::{AppliedReport, AttemptReport, CurrentCall, Settlement};
use crate::domain::stats::StatsDelta;
use crate::ports::{AttemptKey, HeldAttempt, StoreError};

pub(super) use self::begin::{begin, recheck};

/// Records a batch of reports in one transaction, campaign by campaign in id order (the text
/// order the database sorts by), so two batches spanning the same campaigns lock them in the
/// same order.
pub(super) async fn record(
    store: &PgStore,
    reports: &[AttemptReport],
    now: DateTime<Utc>,
) -> Result<Vec<AppliedReport>, StoreError> {
    if reports.is_empty() {
        return Ok(Vec::new());
    }
    let reports = reports.to_vec();
    let mut by_campaign: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (index, report) in reports.iter().enumerate() {
        by_campaign
            .entry(report.campaign_id.to_string())
            .or_default()
            .push(index);
    }
    store
        .transaction(move |conn| {
            async move {
                let mut applied: Vec<AppliedReport> =
                    reports.iter().map(AppliedReport::stale).collect();
                for (campaign, indexes) in &by_campaign {
                    record_campaign(conn, campaign, &reports, indexes, &mut applied, now).await?;
                }
                Ok(applied)
            }
            .boxed()
        })
        .await
}

/// Settles the reports of one campaign (`indexes` into `reports`), marking in `applied` those
/// that changed their call. Locks the campaign (`KEY SHARE`), then its reported calls in id
/// order, then its statistics.
async fn record_campaign(
    conn: &mut Conn,
    campaign: &str,
    reports: &[AttemptReport],
    indexes: &[usize],
    applied: &mut [AppliedReport],
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    let exists: Vec<CountRow> =
        diesel::sql_query("SELECT 1 AS n FROM campaigns WHERE id = $1 FOR KEY SHARE")
            .bind::<Text, _>(campaign.to_owned())
            .prepared()
            .load(conn)
            .await?;
    if exists.is_empty() {
        // No such campaign: every report is stale.
        return Ok(());
    }
    let mut current = lock_reported_calls(conn, campaign, reports, indexes).await?;
    let mut settled: Vec<(String, u32, Settlement)> = Vec::new();
    let mut finished = Vec::new();
    let mut delta = StatsDelta::default();
    for &index in indexes {
        let report = &reports[index];
        let key = report.call_id.to_string();
        let Some(call) = current.get_mut(&key) else {
            continue;
        };
        let Some(settlement) = call.settle(report) else {
            continue;
        };
        call.mark_settled(&settlement);
        delta += settlement.delta;
        applied[index] = AppliedReport::settled(report, settlement.step);
        finished.extend(Finished::settled(report, &settlement));
        settled.push((key, report.attempt, settlement));
    }
    if settled.is_empty() {
        return Ok(());
    }
    write_settlements(conn, campaign, &settled, now).await?;
    // The statement itself checks for an endpoint: a separate read would be a round trip.
    if let Some(events) = webhooks::finished_events::<Pg>(&finished, now) {
        events.prepared().execute(conn).await?;
    }
    apply_stats(conn, campaign, &delta, now).await?;
    complete_if_finished(conn, campaign, now).await
}

/// The reported calls of one campaign, locked `FOR UPDATE` in id order, by id.
async fn lock_reported_calls(
    conn: &mut Conn,
    campaign: &str,
    reports: &[AttemptReport],
    indexes: &[usize],
) -> Result<HashMap<String, CurrentCall>, Failure> {
    let mut call_ids: Vec<String> = indexes
        .iter()
        .map(|&index| reports[index].call_id.to_string())
        .collect();
    call_ids.sort_unstable();
    call_ids.dedup();
    let rows: Vec<CurrentCallRow> = diesel::sql_query(CURRENT_CALLS.postgres())
        .bind::<Text, _>(campaign.to_owned())
        .bind::<Array<Text>, _>(call_ids)
        .prepared()
        .load(conn)
        .await?;
    Ok(rows::current_calls_by_id(rows))
}

/// One statement moves every settled call and closes its attempt.
async fn write_settlements(
    conn: &mut Conn,
    campaign: &str,
    settled: &[(String, u32, Settlement)],
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    let column = |value: fn(&(String, u32, Settlement)) -> String| -> Vec<String> {
        settled.iter().map(value).collect()
    };
    diesel::sql_query(
        "WITH v AS (SELECT * FROM unnest($2::text[], $3::text[], $4::int8[], $5::text[], \
         $6::int4[], $7::text[], $8::int8[], $9::int8[], $11::text[]) \
         AS v(id, status, next_attempt_at, error, attempt, attempt_status, ended_at, \
         duration_ms, carrier)), \
         moved AS (UPDATE calls c SET status = v.status, next_attempt_at = v.next_attempt_at, \
         last_error = v.error, updated_at = $10, owner = NULL, placed_at = NULL FROM v \
         WHERE c.campaign_id = $1 AND c.id = v.id RETURNING c.id, c.phone_number), \
         freed AS (DELETE FROM live_numbers l USING moved m \
         WHERE l.phone_number = m.phone_number AND l.call_id = m.id) \
         UPDATE attempts a SET status = v.attempt_status, error = v.error, \
         ended_at = v.ended_at, duration_ms = v.duration_ms, \
         carrier = coalesce(v.carrier, a.carrier) FROM v \
         WHERE a.campaign_id = $1 AND a.call_id = v.id AND a.attempt = v.attempt",
    )
    .bind::<Text, _>(campaign.to_owned())
    .bind::<Array<Text>, _>(column(|(id, _, _)| id.clone()))
    .bind::<Array<Text>, _>(column(|(_, _, s)| s.call_status.as_str().to_owned()))
    .bind::<Array<Nullable<BigInt>>, _>(
        settled
            .iter()
            .map(|(_, _, s)| s.next_attempt_at.map(to_ms))
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Nullable<Text>>, _>(
        settled
            .iter()
            .map(|(_, _, s)| s.error.clone())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Integer>, _>(
        settled
            .iter()
            .map(|(_, attempt, _)| *attempt as i32)
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Text>, _>(column(|(_, _, s)| s.attempt_status.as_str().to_owned()))
    .bind::<Array<BigInt>, _>(
        settled
            .iter()
            .map(|(_, _, s)| to_ms(s.ended_at))
            .collect::<Vec<_>>(),
    )
    .bind::<Array<BigInt>, _>(
        settled
            .iter()
            .map(|(_, _, s)| i64::try_from(s.duration_ms).unwrap_or(i64::MAX))
            .collect::<Vec<_>>(),
    )
    .bind::<BigInt, _>(to_ms(now))
    .bind::<Array<Nullable<Text>>, _>(
        settled
            .iter()
            .map(|(_, _, s)| s.carrier.clone())
            .collect::<Vec<_>>(),
    )
    .prepared()
    .execute(conn)
    .await?;
    Ok(())
}

/// What one transaction over held attempts decided: per attempt in the caller's order, and the
/// releases to write per campaign.
struct Decisions<T> {
    answers: Vec<T>,
    dial: Vec<(String, String)>,
    releases: BTreeMap<String, Vec<(String, u32, Release)>>,
    /// The calls the releases finish, for their events.
    finished: Vec<Finished>,
}

impl<T> Decisions<T> {
    fn new(capacity: usize) -> Self {
        Self {
            answers: Vec::with_capacity(capacity),
            dial: Vec::new(),
            releases: BTreeMap::new(),
            finished: Vec::new(),
        }
    }

    fn release(&mut self, held: &HeldAttempt, release: Release) {
        if release.call_status.is_terminal() {
            self.finished.push(Finished::Call {
                campaign_id: held.key.campaign_id,
                call_id: held.key.call_id,
            });
        }
        self.releases
            .entry(held.key.campaign_id.to_string())
            .or_default()
            .push((held.key.call_id.to_string(), held.key.attempt, release));
    }
}

#[derive(QueryableByName)]
struct HandedRow {
    #[diesel(sql_type = Text)]
    call_id: String,
}

pub(super) async fn hand_to_carrier(
    store: &PgStore,
    attempts: &[(HeldAttempt, CarrierCall)],
    now: DateTime<Utc>,
) -> Result<Vec<bool>, StoreError> {
    if attempts.is_empty() {
        return Ok(Vec::new());
    }
    let column = |value: &dyn Fn(&(HeldAttempt, CarrierCall)) -> String| -> Vec<String> {
        attempts.iter().map(value).collect()
    };
    let campaigns = column(&|(held, _)| held.key.campaign_id.to_string());
    let calls = column(&|(held, _)| held.key.call_id.to_string());
    let numbers: Vec<i32> = attempts
        .iter()
        .map(|(held, _)| held.key.attempt as i32)
        .collect();
    // An attempt without a holder matches no owner.
    let owners = column(&|(held, _)| held.holder.map(|h| h.to_string()).unwrap_or_default());
    let carriers: Vec<Option<String>> = attempts
        .iter()
        .map(|(_, carrier)| carrier_json(Some(carrier)))
        .collect();
    let order = calls.clone();
    let handed: Vec<HandedRow> = store
        .read(move |conn| {
            async move {
                let rows = diesel::sql_query(
                    "WITH v AS (SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], \
                     $4::text[], $5::text[]) AS v(campaign_id, id, attempt, owner, carrier)), \
                     moved AS (UPDATE calls c SET owner = NULL, updated_at = $6 FROM v \
                     WHERE c.campaign_id = v.campaign_id AND c.id = v.id \
                     AND c.status = 'dialing' AND c.attempt_count = v.attempt \
                     AND c.owner = v.owner AND c.placed_at IS NOT NULL \
                     RETURNING c.campaign_id, c.id) \
                     UPDATE attempts a SET carrier = v.carrier FROM v JOIN moved m \
                     ON m.campaign_id = v.campaign_id AND m.id = v.id \
                     WHERE a.campaign_id = v.campaign_id AND a.call_id = v.id \
                     AND a.attempt = v.attempt RETURNING a.call_id AS call_id",
                )
                .bind::<Array<Text>, _>(campaigns)
                .bind::<Array<Text>, _>(calls)
                .bind::<Array<Integer>, _>(numbers)
                .bind::<Array<Text>, _>(owners)
                .bind::<Array<Nullable<Text>>, _>(carriers)
                .bind::<BigInt, _>(to_ms(now))
                .prepared()
                .load(conn)
                .await?;
                Ok(rows)
            }
            .boxed()
        })
        .await?;
    let handed: std::collections::HashSet<String> =
        handed.into_iter().map(|row| row.call_id).collect();
    Ok(order.iter().map(|call| handed.contains(call)).collect())
}

pub(super) async fn release(
    store: &PgStore,
    attempts: &[HeldAttempt],
    unspent: Unspent,
    now: DateTime<Utc>,
) -> Result<Vec<bool>, StoreError> {
    if attempts.is_empty() {
        return Ok(Vec::new());
    }
    let attempts = attempts.to_vec();
    store
        .transaction(move |conn| {
            async move {
                let mut current = lock_held_calls(conn, &attempts).await?;
                let mut decisions = Decisions::new(attempts.len());
                for held in &attempts {
                    let release =
                        current
                            .get_mut(&held.key.call_id.to_string())
                            .and_then(|facts| {
                                let call = &mut facts.call;
                                let release = call.release(
                                    held.key.attempt,
                                    held.holder,
                                    held.began_at,
                                    unspent,
                                )?;
                                call.status = CallStatus::Queued;
                                Some(release)
                            });
                    decisions.answers.push(release.is_some());
                    if let Some(release) = release {
                        decisions.release(held, release);
                    }
                }
                write_decisions(conn, &decisions, None, now).await?;
                Ok(decisions.answers)
            }
            .boxed()
        })
        .await
}

pub(super) async fn forget(store: &PgStore, keys: &[AttemptKey]) -> Result<u64, StoreError> {
    if keys.is_empty() {
        return Ok(0);
    }
    let campaigns: Vec<String> = keys.iter().map(|k| k.campaign_id.to_string()).collect();
    let calls: Vec<String> = keys.iter().map(|k| k.call_id.to_string()).collect();
    let numbers: Vec<i32> = keys.iter().map(|k| k.attempt as i32).collect();
    store
        .read(move |conn| {
            async move {
                let deleted = diesel::sql_query(
                    "DELETE FROM attempts a USING unnest($1::text[], $2::text[], $3::int[]) \
                     AS v(campaign_id, call_id, attempt) WHERE a.campaign_id = v.campaign_id \
                     AND a.call_id = v.call_id AND a.attempt = v.attempt \
                     AND a.ended_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
                     WHERE d.body IS NULL AND d.type = 'attempt.finished' \
                     AND d.call_id = a.call_id AND d.attempt = a.attempt) \
                     AND NOT EXISTS (SELECT 1 FROM webhook_events ev \
                     WHERE ev.type = 'attempt.finished' AND ev.call_id = a.call_id \
                     AND ev.attempt = a.attempt)",
                )
                .bind::<Array<Text>, _>(campaigns)
                .bind::<Array<Text>, _>(calls)
                .bind::<Array<Integer>, _>(numbers)
                .prepared()
                .execute(conn)
                .await?;
                Ok(deleted as u64)
            }
            .boxed()
        })
        .await
}
