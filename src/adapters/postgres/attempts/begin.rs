//! Beginning attempts and checking them again before a create: every held attempt's call is
//! locked, judged by the domain with the facts and prior attempts of its number, and the
//! answers written in one transaction.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::sql_types::{Array, BigInt, Integer, Text};
use diesel_async::RunQueryDsl;
use futures::FutureExt;

use super::Decisions;
use crate::adapters::postgres::campaigns::apply_stats;
use crate::adapters::postgres::dispatch::complete_if_finished;
use crate::adapters::postgres::{Conn, PgStore};
use crate::adapters::sql::prepared::KeepPrepared;
use crate::adapters::sql::rows::{BeginFacts, BeginRow, PriorRow};
use crate::adapters::sql::statements::{
    BEGIN_CALLS, FORBID_CALL, FORGET_NUMBER_ATTEMPT, HOLD_CALL, POSTGRES_NOW_MS,
};
use crate::adapters::sql::webhooks;
use crate::adapters::sql::{to_ms, Failure};
use crate::domain::admission::{Begin, DialDecision};
use crate::domain::ids::InstanceId;
use crate::domain::stats::StatsDelta;
use crate::ports::{AttemptKey, HeldAttempt, StoreError};

/// The held attempts' calls, locked `FOR UPDATE` in (campaign, id) order: the order reports
/// lock them in.
pub(super) async fn lock_held_calls(
    conn: &mut Conn,
    attempts: &[HeldAttempt],
) -> Result<HashMap<String, BeginFacts>, Failure> {
    let campaigns: Vec<String> = attempts
        .iter()
        .map(|held| held.key.campaign_id.to_string())
        .collect();
    let calls: Vec<String> = attempts
        .iter()
        .map(|held| held.key.call_id.to_string())
        .collect();
    let rows: Vec<BeginRow> = diesel::sql_query(BEGIN_CALLS.postgres())
        .bind::<Array<Text>, _>(campaigns)
        .bind::<Array<Text>, _>(calls)
        .prepared()
        .load(conn)
        .await?;
    let mut held = HashMap::with_capacity(rows.len());
    for row in rows {
        let id = row.call.id.clone();
        held.insert(id, BeginFacts::try_from(row)?);
    }
    Ok(held)
}

/// Writes what `begin` or `release` decided: the begun attempts marked placed by `owner`, the
/// released ones handed back with their counters.
pub(super) async fn write_decisions<T>(
    conn: &mut Conn,
    decisions: &Decisions<T>,
    owner: Option<InstanceId>,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    if let (Some(owner), false) = (owner, decisions.dial.is_empty()) {
        // Placed on the database's clock: orphan ages are judged on it.
        diesel::sql_query(format!(
            "UPDATE calls c SET owner = $3, placed_at = {POSTGRES_NOW_MS}, updated_at = $4 \
             FROM unnest($1::text[], $2::text[]) AS v(campaign_id, id) \
             WHERE c.campaign_id = v.campaign_id AND c.id = v.id"
        ))
        .bind::<Array<Text>, _>(
            decisions
                .dial
                .iter()
                .map(|(c, _)| c.clone())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(
            decisions
                .dial
                .iter()
                .map(|(_, id)| id.clone())
                .collect::<Vec<_>>(),
        )
        .bind::<Text, _>(owner.to_string())
        .bind::<BigInt, _>(to_ms(now))
        .prepared()
        .execute(conn)
        .await?;
    }
    for (campaign, released) in &decisions.releases {
        diesel::sql_query(
            "WITH v AS (SELECT * FROM unnest($2::text[], $3::int4[], $4::text[]) \
             AS v(id, attempt, status)), \
             moved AS (UPDATE calls c SET status = v.status, \
             attempt_count = c.attempt_count - 1, owner = NULL, placed_at = NULL, \
             updated_at = $5 FROM v WHERE c.campaign_id = $1 AND c.id = v.id \
             RETURNING c.id, c.phone_number), \
             freed AS (DELETE FROM live_numbers l USING moved m \
             WHERE l.phone_number = m.phone_number AND l.call_id = m.id), \
             unlogged AS (DELETE FROM number_attempts n USING moved m, v \
             WHERE n.phone_number = m.phone_number AND n.call_id = m.id AND v.id = m.id \
             AND n.attempt = v.attempt), \
             unkept AS (DELETE FROM attempt_messages k USING v WHERE k.campaign_id = $1 \
             AND k.call_id = v.id AND k.attempt = v.attempt) \
             DELETE FROM attempts a USING v WHERE a.campaign_id = $1 AND a.call_id = v.id \
             AND a.attempt = v.attempt",
        )
        .bind::<Text, _>(campaign.clone())
        .bind::<Array<Text>, _>(
            released
                .iter()
                .map(|(id, _, _)| id.clone())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Integer>, _>(
            released
                .iter()
                .map(|(_, attempt, _)| *attempt as i32)
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(
            released
                .iter()
                .map(|(_, _, r)| r.call_status.as_str().to_owned())
                .collect::<Vec<_>>(),
        )
        .bind::<BigInt, _>(to_ms(now))
        .prepared()
        .execute(conn)
        .await?;
        let mut delta = StatsDelta::default();
        for (_, _, release) in released {
            delta += release.delta;
        }
        apply_stats(conn, campaign, &delta, now).await?;
    }
    if let Some(events) = webhooks::finished_events::<Pg>(&decisions.finished, now) {
        events.prepared().execute(conn).await?;
    }
    Ok(())
}

pub(in crate::adapters::postgres) async fn begin(
    store: &PgStore,
    attempts: &[HeldAttempt],
    owner: InstanceId,
    now: DateTime<Utc>,
) -> Result<Vec<Begin>, StoreError> {
    decide(store, attempts.to_vec(), DialDecision::Begin { owner }, now).await
}

pub(in crate::adapters::postgres) async fn recheck(
    store: &PgStore,
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

/// A batch's answers sorted into the writes they need.
struct Sorted {
    decisions: Decisions<Begin>,
    /// Calls held back by a calling rule, with the instant they may be dialed.
    holds: Vec<(String, i64)>,
    forbidden: Vec<(String, String)>,
    dialed: Vec<(String, i64, String, String, i32)>,
}

impl Sorted {
    fn new(attempts: usize) -> Self {
        Self {
            decisions: Decisions::new(attempts),
            holds: Vec::new(),
            forbidden: Vec::new(),
            dialed: Vec::new(),
        }
    }

    /// Files `answer` for `held`, and changes the call as a later duplicate in the batch must
    /// find it.
    fn take(
        &mut self,
        held: &HeldAttempt,
        facts: &mut BeginFacts,
        answer: Begin,
        decision: DialDecision,
        now: DateTime<Utc>,
    ) {
        let (campaign_id, call_id) = (
            held.key.campaign_id.to_string(),
            held.key.call_id.to_string(),
        );
        let call = &facts.call;
        match answer {
            Begin::Dial => {
                if decision.placed_by().is_some() {
                    self.decisions
                        .dial
                        .push((campaign_id.clone(), call_id.clone()));
                }
                self.dialed.push((
                    facts.phone_number.clone(),
                    to_ms(now),
                    campaign_id,
                    call_id,
                    held.key.attempt as i32,
                ));
            }
            Begin::Forbidden => {
                self.decisions.release(held, call.forbid());
                self.forbidden.push((campaign_id, call_id));
            }
            Begin::Held(reason) => {
                self.decisions.release(held, call.release_unchecked());
                if let Some(until) = reason.until {
                    self.holds.push((call_id, to_ms(until)));
                }
            }
            Begin::Stale => {}
        }
        decision.leave(&mut facts.call, answer);
        self.decisions.answers.push(answer);
    }
}

/// Ends forbidden calls `canceled` (completing campaigns left with nothing to do) and holds
/// held ones until their rules allow them.
async fn write_refusals(
    conn: &mut Conn,
    forbidden: &[(String, String)],
    holds: &[(String, i64)],
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    for (campaign_id, call_id) in forbidden {
        diesel::sql_query(FORBID_CALL.postgres())
            .bind::<Text, _>(call_id)
            .prepared()
            .execute(conn)
            .await?;
        complete_if_finished(conn, campaign_id, now).await?;
    }
    for (call_id, until) in holds {
        diesel::sql_query(HOLD_CALL.postgres())
            .bind::<BigInt, _>(*until)
            .bind::<Text, _>(call_id)
            .prepared()
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Decides each attempt with the dialer's check at `now` and writes the answers in one
/// transaction: begun attempts placed and owned by the dialer, refused ones back unspent, and
/// dialed attempts' entries in their numbers' log at `now`.
async fn decide(
    store: &PgStore,
    attempts: Vec<HeldAttempt>,
    decision: DialDecision,
    now: DateTime<Utc>,
) -> Result<Vec<Begin>, StoreError> {
    if attempts.is_empty() {
        return Ok(Vec::new());
    }
    let policy = store.compliance.clone();
    store
        .transaction(move |conn| {
            async move {
                let mut current = lock_held_calls(conn, &attempts).await?;
                if let Some(dialer) = decision.rechecking() {
                    // The attempts' own entries would count against their own caps.
                    for held in &attempts {
                        let Some(facts) = current.get(&held.key.call_id.to_string()) else {
                            continue;
                        };
                        if facts.call.is_placing(held.key.attempt, dialer) {
                            diesel::sql_query(FORGET_NUMBER_ATTEMPT.postgres())
                                .bind::<Text, _>(&facts.phone_number)
                                .bind::<Text, _>(held.key.call_id.to_string())
                                .bind::<Integer, _>(held.key.attempt as i32)
                                .prepared()
                                .execute(conn)
                                .await?;
                        }
                    }
                }
                let prior = prior_attempts(conn, current.values(), now).await?;
                let mut sorted = Sorted::new(attempts.len());
                for held in &attempts {
                    let Some(facts) = current.get_mut(&held.key.call_id.to_string()) else {
                        sorted.decisions.answers.push(Begin::Stale);
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
                    sorted.take(held, facts, answer, decision, now);
                }
                let Sorted {
                    decisions,
                    holds,
                    forbidden,
                    dialed,
                } = sorted;
                write_decisions(conn, &decisions, decision.placed_by(), now).await?;
                record_dialed(conn, &dialed).await?;
                write_refusals(conn, &forbidden, &holds, now).await?;
                Ok(decisions.answers)
            }
            .boxed()
        })
        .await
}

/// Earlier attempts to the numbers of `calls` within the longest cap window, by number.
async fn prior_attempts(
    conn: &mut Conn,
    calls: impl Iterator<Item = &BeginFacts>,
    now: DateTime<Utc>,
) -> Result<HashMap<String, Vec<PriorRow>>, Failure> {
    let mut numbers: Vec<String> = calls.map(|facts| facts.phone_number.clone()).collect();
    numbers.sort();
    numbers.dedup();
    crate::adapters::postgres::dnc::prior_of(conn, numbers, now).await
}

/// Notes the dialed attempts' numbers and start times, which frequency caps count.
async fn record_dialed(
    conn: &mut Conn,
    dialed: &[(String, i64, String, String, i32)],
) -> Result<(), Failure> {
    if dialed.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "INSERT INTO number_attempts (phone_number, started_at, campaign_id, call_id, attempt) \
         SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::int4[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind::<Array<Text>, _>(dialed.iter().map(|d| d.0.clone()).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(dialed.iter().map(|d| d.1).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(dialed.iter().map(|d| d.2.clone()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(dialed.iter().map(|d| d.3.clone()).collect::<Vec<_>>())
    .bind::<Array<Integer>, _>(dialed.iter().map(|d| d.4).collect::<Vec<_>>())
    .prepared()
    .execute(conn)
    .await?;
    Ok(())
}
