//! Attempts: settling the provider's reports, the dialer's begin (or hand-back) of claimed
//! attempts, attempts whose process died, and the finished attempts the timeline exporter moves
//! out.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel::sqlite::{Sqlite, SqliteConnection};
use diesel::RunQueryDsl;

use super::campaigns::apply_stats;
use super::dispatch::complete_if_finished;
use super::dnc::prior_of_numbers;
use super::SqliteStore;
use crate::adapters::sql::bound::answers::FORGET_KEPT_MESSAGE;
use crate::adapters::sql::prepared::KeepPrepared;
use crate::adapters::sql::rows::{
    self, carrier_json, BeginFacts, BeginRow, CurrentCallRow, TotalRow,
};
use crate::adapters::sql::statements::{
    BEGIN_CALLS, CURRENT_CALL, CURRENT_CALLS, FORBID_CALL, FORGET_NUMBER_ATTEMPT, HOLD_CALL,
};
use crate::adapters::sql::webhooks::{self, Finished};
use crate::adapters::sql::{to_ms, Failure};
use crate::domain::admission::{Begin, DialDecision, Release, Unspent};
use crate::domain::carrier::CarrierCall;
use crate::domain::ids::{CallId, CampaignId, InstanceId};
use crate::domain::settlement::{AppliedReport, AttemptReport, CurrentCall, Settlement};
use crate::domain::stats::StatsDelta;
use crate::ports::{AttemptKey, HeldAttempt, StoreError};

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
            let mut finished = Vec::new();
            let mut current = current_calls(conn, &reports)?;
            let mut settled: Vec<(&AttemptReport, Settlement)> = Vec::new();
            for report in &reports {
                // A second report of one attempt sees the first's settlement.
                let call = current.get_mut(&report.call_id.to_string());
                let Some((call, settlement)) =
                    call.and_then(|call| call.settle(report).map(|s| (call, s)))
                else {
                    applied.push(AppliedReport::stale(report));
                    continue;
                };
                call.mark_settled(&settlement);
                finished.extend(Finished::settled(report, &settlement));
                *deltas.entry(report.campaign_id).or_default() += settlement.delta;
                applied.push(AppliedReport::settled(report, settlement.step));
                settled.push((report, settlement));
            }
            write_settlements(conn, &settled, now)?;
            if !finished.is_empty() && listening(conn)? {
                if let Some(events) = webhooks::finished_events::<Sqlite>(&finished, now) {
                    events.prepared().run(conn)?;
                }
            }
            for (campaign_id, delta) in &deltas {
                apply_stats(conn, *campaign_id, delta, now)?;
                complete_if_finished(conn, *campaign_id, now)?;
            }
            Ok(applied)
        })
        .await
}

/// Whether an endpoint listens for the events this transaction would write.
fn listening(conn: &mut SqliteConnection) -> Result<bool, Failure> {
    let rows: Vec<TotalRow> = diesel::sql_query(webhooks::ANY_ENDPOINT.sqlite())
        .prepared()
        .load(conn)?;
    Ok(webhooks::listening(&rows))
}

fn current_call(
    conn: &mut SqliteConnection,
    call_id: CallId,
) -> Result<Option<CurrentCall>, Failure> {
    let rows: Vec<CurrentCallRow> = diesel::sql_query(CURRENT_CALL.sqlite())
        .bind::<Text, _>(call_id.to_string())
        .prepared()
        .load(conn)?;
    Ok(rows
        .into_iter()
        .next()
        .and_then(rows::readable_current_call))
}

/// The reported calls as they are, by id, read in one statement.
fn current_calls(
    conn: &mut SqliteConnection,
    reports: &[AttemptReport],
) -> Result<HashMap<String, CurrentCall>, Failure> {
    let ids: Vec<String> = reports.iter().map(|r| r.call_id.to_string()).collect();
    let ids = serde_json::Value::from(ids).to_string();
    let rows: Vec<CurrentCallRow> = diesel::sql_query(CURRENT_CALLS.sqlite())
        .bind::<Text, _>(ids)
        .prepared()
        .load(conn)?;
    Ok(rows::current_calls_by_id(rows))
}

/// Frees the settled calls' numbers, moves the calls and closes their attempts: three
/// statements whatever the batch's size, each taking the batch as one JSON array.
fn write_settlements(
    conn: &mut SqliteConnection,
    settled: &[(&AttemptReport, Settlement)],
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    if settled.is_empty() {
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = settled
        .iter()
        .map(|(report, s)| {
            serde_json::json!([
                report.call_id.to_string(),
                report.campaign_id.to_string(),
                report.attempt,
                s.call_status.as_str(),
                s.next_attempt_at.map(to_ms),
                s.error,
                s.attempt_status.as_str(),
                to_ms(s.ended_at),
                i64::try_from(s.duration_ms).unwrap_or(i64::MAX),
                s.carrier,
            ])
        })
        .collect();
    let batch = serde_json::Value::Array(rows).to_string();
    diesel::sql_query(FREE_SETTLED_NUMBERS)
        .bind::<Text, _>(batch.clone())
        .prepared()
        .run(conn)?;
    diesel::sql_query(SETTLE_CALLS)
        .bind::<BigInt, _>(to_ms(now))
        .bind::<Text, _>(batch.clone())
        .prepared()
        .run(conn)?;
    diesel::sql_query(CLOSE_ATTEMPTS)
        .bind::<Text, _>(batch)
        .prepared()
        .run(conn)?;
    Ok(())
}

/// The settled batch's rows: `[call_id, campaign_id, attempt, call_status, next_attempt_at,
/// error, attempt_status, ended_at, duration_ms, carrier]`.
const FREE_SETTLED_NUMBERS: &str = "DELETE FROM live_numbers WHERE (phone_number, call_id) IN \
     (SELECT c.phone_number, c.id FROM json_each(?) j \
     JOIN calls c ON c.id = json_extract(j.value, '$[0]'))";
const SETTLE_CALLS: &str = "UPDATE calls SET status = json_extract(j.value, '$[3]'), \
     next_attempt_at = json_extract(j.value, '$[4]'), last_error = json_extract(j.value, '$[5]'), \
     updated_at = ?, owner = NULL, placed_at = NULL \
     FROM json_each(?) j WHERE calls.id = json_extract(j.value, '$[0]')";
const CLOSE_ATTEMPTS: &str = "UPDATE attempts SET status = json_extract(j.value, '$[6]'), \
     error = json_extract(j.value, '$[5]'), ended_at = json_extract(j.value, '$[7]'), \
     duration_ms = json_extract(j.value, '$[8]'), \
     carrier = coalesce(json_extract(j.value, '$[9]'), carrier) FROM json_each(?) j \
     WHERE attempts.call_id = json_extract(j.value, '$[0]') \
     AND attempts.attempt = json_extract(j.value, '$[2]') \
     AND attempts.campaign_id = json_extract(j.value, '$[1]')";

/// The call's number is no longer live: the call left `dialing`.
fn free_number(conn: &mut SqliteConnection, call_id: CallId) -> Result<(), Failure> {
    diesel::sql_query(
        "DELETE FROM live_numbers WHERE call_id = ? \
         AND phone_number = (SELECT phone_number FROM calls WHERE id = ?)",
    )
    .bind::<Text, _>(call_id.to_string())
    .bind::<Text, _>(call_id.to_string())
    .prepared()
    .run(conn)?;
    Ok(())
}

pub(super) async fn begin(
    store: &SqliteStore,
    attempts: &[HeldAttempt],
    owner: InstanceId,
    now: DateTime<Utc>,
) -> Result<Vec<Begin>, StoreError> {
    decide(store, attempts.to_vec(), DialDecision::Begin { owner }, now).await
}

pub(super) async fn recheck(
    store: &SqliteStore,
    attempts: &[AttemptKey],
    dialer: InstanceId,
    now: DateTime<Utc>,
) -> Result<Vec<Begin>, StoreError> {
    let held = attempts
        .iter()
        .map(|key| HeldAttempt {
            key: *key,
            holder: Some(dialer),
            began_at: None,
        })
        .collect();
    decide(store, held, DialDecision::Recheck { dialer }, now).await
}

/// Decides each attempt with the dialer's check at `now` and writes the answer: a begun
/// attempt is placed and owned by the dialer, a refused one goes back unspent (`hand_back`),
/// and a dialed attempt's entry in its number's log is at `now`.
async fn decide(
    store: &SqliteStore,
    attempts: Vec<HeldAttempt>,
    decision: DialDecision,
    now: DateTime<Utc>,
) -> Result<Vec<Begin>, StoreError> {
    if attempts.is_empty() {
        return Ok(Vec::new());
    }
    let policy = store.compliance.clone();
    store
        .write(move |conn| {
            let mut current = held_calls(conn, &attempts)?;
            if let Some(dialer) = decision.rechecking() {
                // The attempts' own entries would count against their own caps.
                for held in &attempts {
                    let Some(facts) = current.get(&held.key.call_id.to_string()) else {
                        continue;
                    };
                    if facts.call.is_placing(held.key.attempt, dialer) {
                        forget_number_attempt(conn, &facts.phone_number, &held.key)?;
                    }
                }
            }
            // Read once for the batch: a number is live in one call at a time (`live_numbers`),
            // so no attempt of the batch counts another's entry against its caps.
            let numbers = current.values().map(|facts| facts.phone_number.clone());
            let prior = prior_of_numbers(conn, numbers.collect(), now)?;
            let mut answers = Vec::with_capacity(attempts.len());
            let mut deltas: BTreeMap<CampaignId, StatsDelta> = BTreeMap::new();
            // Campaigns whose last call may have just ended.
            let mut complete = Vec::new();
            let mut placed = Vec::new();
            let mut dialed = Vec::new();
            for held in &attempts {
                let Some(facts) = current.get_mut(&held.key.call_id.to_string()) else {
                    answers.push(Begin::Stale);
                    continue;
                };
                let numbers_prior = prior
                    .get(&facts.phone_number)
                    .map_or(&[][..], Vec::as_slice);
                let check = facts.check(&policy, numbers_prior);
                let answer = decision.answer(
                    &facts.call,
                    held.key.attempt,
                    held.holder,
                    held.began_at,
                    &check,
                    now,
                );
                match answer {
                    Begin::Dial => {
                        if decision.placed_by().is_some() {
                            placed.push(held.key.call_id.to_string());
                        }
                        dialed.push(serde_json::json!([
                            facts.phone_number,
                            held.key.campaign_id.to_string(),
                            held.key.call_id.to_string(),
                            held.key.attempt,
                        ]));
                    }
                    Begin::Forbidden | Begin::Held(_) => {
                        let delta = hand_back(conn, &held.key, &facts.call, answer, now)?;
                        *deltas.entry(held.key.campaign_id).or_default() += delta;
                        complete.push(held.key.campaign_id);
                    }
                    Begin::Stale => {}
                }
                decision.leave(&mut facts.call, answer);
                answers.push(answer);
            }
            if let (Some(owner), false) = (decision.placed_by(), placed.is_empty()) {
                diesel::sql_query(
                    "UPDATE calls SET owner = ?, placed_at = ?, updated_at = ? \
                     WHERE id IN (SELECT value FROM json_each(?))",
                )
                .bind::<Text, _>(owner.to_string())
                .bind::<BigInt, _>(to_ms(now))
                .bind::<BigInt, _>(to_ms(now))
                .bind::<Text, _>(serde_json::Value::from(placed).to_string())
                .prepared()
                .run(conn)?;
            }
            if !dialed.is_empty() {
                diesel::sql_query(RECORD_DIALED)
                    .bind::<BigInt, _>(to_ms(now))
                    .bind::<Text, _>(serde_json::Value::from(dialed).to_string())
                    .prepared()
                    .run(conn)?;
            }
            for (campaign_id, delta) in &deltas {
                apply_stats(conn, *campaign_id, delta, now)?;
            }
            for campaign_id in complete {
                complete_if_finished(conn, campaign_id, now)?;
            }
            Ok(answers)
        })
        .await
}

/// The dialed attempts' entries in their numbers' log, which frequency caps count: rows of
/// `[phone_number, campaign_id, call_id, attempt]`, all started at the one instant bound first.
const RECORD_DIALED: &str = "INSERT INTO number_attempts \
     (phone_number, started_at, campaign_id, call_id, attempt) \
     SELECT value ->> 0, ?, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?) \
     WHERE true ON CONFLICT DO NOTHING";

/// The held attempts' calls with what their checks need, by call id: one statement for the
/// batch.
fn held_calls(
    conn: &mut SqliteConnection,
    attempts: &[HeldAttempt],
) -> Result<HashMap<String, BeginFacts>, Failure> {
    let ids: Vec<String> = attempts
        .iter()
        .map(|held| held.key.call_id.to_string())
        .collect();
    let rows: Vec<BeginRow> = diesel::sql_query(BEGIN_CALLS.sqlite())
        .bind::<Text, _>(serde_json::Value::from(ids).to_string())
        .prepared()
        .load(conn)?;
    let mut held = HashMap::with_capacity(rows.len());
    for row in rows {
        let id = row.call.id.clone();
        held.insert(id, BeginFacts::try_from(row)?);
    }
    Ok(held)
}

/// Writes a begin's (or a recheck's) refusal: the attempt goes back unspent, the call ends
/// `canceled` on `Forbidden` or waits for the instant its rules allow on `Held`. Returns the
/// statistics' change.
fn hand_back(
    conn: &mut SqliteConnection,
    key: &AttemptKey,
    call: &CurrentCall,
    answer: Begin,
    now: DateTime<Utc>,
) -> Result<StatsDelta, Failure> {
    match answer {
        Begin::Forbidden => {
            let end = call.forbid();
            write_release(conn, key, &end, now)?;
            diesel::sql_query(FORBID_CALL.sqlite())
                .bind::<Text, _>(key.call_id.to_string())
                .prepared()
                .run(conn)?;
            Ok(end.delta)
        }
        Begin::Held(reason) => {
            let release = call.release_unchecked();
            write_release(conn, key, &release, now)?;
            if let Some(until) = reason.until {
                diesel::sql_query(HOLD_CALL.sqlite())
                    .bind::<BigInt, _>(to_ms(until))
                    .bind::<Text, _>(key.call_id.to_string())
                    .prepared()
                    .run(conn)?;
            }
            Ok(release.delta)
        }
        Begin::Dial | Begin::Stale => Ok(StatsDelta::default()),
    }
}

fn forget_number_attempt(
    conn: &mut SqliteConnection,
    phone_number: &str,
    key: &AttemptKey,
) -> Result<(), Failure> {
    diesel::sql_query(FORGET_NUMBER_ATTEMPT.sqlite())
        .bind::<Text, _>(phone_number)
        .bind::<Text, _>(key.call_id.to_string())
        .bind::<Integer, _>(key.attempt as i32)
        .prepared()
        .run(conn)?;
    Ok(())
}

pub(super) async fn hand_to_carrier(
    store: &SqliteStore,
    attempts: &[(HeldAttempt, CarrierCall)],
    now: DateTime<Utc>,
) -> Result<Vec<bool>, StoreError> {
    if attempts.is_empty() {
        return Ok(Vec::new());
    }
    let attempts = attempts.to_vec();
    store
        .write(move |conn| {
            let mut handed = Vec::with_capacity(attempts.len());
            for (held, carrier) in &attempts {
                let Some(holder) = held.holder else {
                    handed.push(false);
                    continue;
                };
                let moved = diesel::sql_query(
                    "UPDATE calls SET owner = NULL, updated_at = ? WHERE id = ? \
                     AND status = 'dialing' AND attempt_count = ? AND owner = ? \
                     AND placed_at IS NOT NULL",
                )
                .bind::<BigInt, _>(to_ms(now))
                .bind::<Text, _>(held.key.call_id.to_string())
                .bind::<Integer, _>(held.key.attempt as i32)
                .bind::<Text, _>(holder.to_string())
                .prepared()
                .run_counted(conn)?;
                if moved == 1 {
                    diesel::sql_query(
                        "UPDATE attempts SET carrier = ? \
                         WHERE campaign_id = ? AND call_id = ? AND attempt = ?",
                    )
                    .bind::<Nullable<Text>, _>(carrier_json(Some(carrier)))
                    .bind::<Text, _>(held.key.campaign_id.to_string())
                    .bind::<Text, _>(held.key.call_id.to_string())
                    .bind::<Integer, _>(held.key.attempt as i32)
                    .prepared()
                    .run(conn)?;
                }
                handed.push(moved == 1);
            }
            Ok(handed)
        })
        .await
}

pub(super) async fn release(
    store: &SqliteStore,
    attempts: &[HeldAttempt],
    unspent: Unspent,
    now: DateTime<Utc>,
) -> Result<Vec<bool>, StoreError> {
    if attempts.is_empty() {
        return Ok(Vec::new());
    }
    let attempts = attempts.to_vec();
    store
        .write(move |conn| {
            let mut released = Vec::with_capacity(attempts.len());
            let mut deltas: BTreeMap<CampaignId, StatsDelta> = BTreeMap::new();
            for held in &attempts {
                let release = current_call(conn, held.key.call_id)?.and_then(|call| {
                    call.release(held.key.attempt, held.holder, held.began_at, unspent)
                });
                let Some(release) = release else {
                    released.push(false);
                    continue;
                };
                write_release(conn, &held.key, &release, now)?;
                *deltas.entry(held.key.campaign_id).or_default() += release.delta;
                released.push(true);
            }
            for (campaign_id, delta) in &deltas {
                apply_stats(conn, *campaign_id, delta, now)?;
            }
            Ok(released)
        })
        .await
}

/// Hands back an attempt that was never placed: the call is queued (or canceled) again as if
/// the attempt had not been made.
fn write_release(
    conn: &mut SqliteConnection,
    key: &AttemptKey,
    release: &Release,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    free_number(conn, key.call_id)?;
    // An attempt handed back rang no one: it counts toward no cap.
    diesel::sql_query(
        "DELETE FROM number_attempts WHERE call_id = ? AND attempt = ? \
         AND phone_number = (SELECT phone_number FROM calls WHERE id = ?)",
    )
    .bind::<Text, _>(key.call_id.to_string())
    .bind::<Integer, _>(key.attempt as i32)
    .bind::<Text, _>(key.call_id.to_string())
    .prepared()
    .run(conn)?;
    diesel::sql_query(
        "UPDATE calls SET status = ?, attempt_count = attempt_count - 1, owner = NULL, \
         placed_at = NULL, updated_at = ? WHERE id = ?",
    )
    .bind::<Text, _>(release.call_status.as_str())
    .bind::<BigInt, _>(to_ms(now))
    .bind::<Text, _>(key.call_id.to_string())
    .prepared()
    .run(conn)?;
    if release.call_status.is_terminal() && listening(conn)? {
        let call = [Finished::Call {
            campaign_id: key.campaign_id,
            call_id: key.call_id,
        }];
        if let Some(event) = webhooks::finished_events::<Sqlite>(&call, now) {
            event.prepared().run(conn)?;
        }
    }
    diesel::sql_query("DELETE FROM attempts WHERE campaign_id = ? AND call_id = ? AND attempt = ?")
        .bind::<Text, _>(key.campaign_id.to_string())
        .bind::<Text, _>(key.call_id.to_string())
        .bind::<Integer, _>(key.attempt as i32)
        .prepared()
        .run(conn)?;
    diesel::sql_query(FORGET_KEPT_MESSAGE.sqlite())
        .bind::<Text, _>(key.campaign_id.to_string())
        .bind::<Text, _>(key.call_id.to_string())
        .bind::<Integer, _>(key.attempt as i32)
        .prepared()
        .run(conn)?;
    Ok(())
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
                     AND ended_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
                     WHERE d.body IS NULL AND d.type = 'attempt.finished' \
                     AND d.call_id = attempts.call_id AND d.attempt = attempts.attempt) \
                     AND NOT EXISTS (SELECT 1 FROM webhook_events ev \
                     WHERE ev.type = 'attempt.finished' AND ev.call_id = attempts.call_id \
                     AND ev.attempt = attempts.attempt)",
                )
                .bind::<Text, _>(key.campaign_id.to_string())
                .bind::<Text, _>(key.call_id.to_string())
                .bind::<Integer, _>(key.attempt as i32)
                .prepared()
                .run_counted(conn)? as u64;
            }
            Ok(deleted)
        })
        .await
}
