//! The do-not-call list: entries, the cancellation of waiting calls to listed numbers in the
//! transaction that lists them, and what the calling rules read of a number.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::sqlite::SqliteConnection;
use diesel::RunQueryDsl;

use super::campaigns::apply_stats;
use super::dispatch::complete_if_finished;
use super::keys::record;
use super::{insert_chunk_counted, SqliteStore, INSERT_CHUNK};
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

fn bad_id(err: uuid::Error) -> Failure {
    Failure::Store(StoreError::Internal(format!("bad campaign id: {err}")))
}

pub(super) async fn add(
    store: &SqliteStore,
    scope: DncScope,
    numbers: Vec<(PhoneNumber, Option<String>)>,
    now: DateTime<Utc>,
    audit: Option<AuditEntry>,
) -> Result<DncAdded, StoreError> {
    store
        .write(move |conn| {
            if let DncScope::Campaign(id) = scope {
                let found: Vec<IdRow> = diesel::sql_query("SELECT id FROM campaigns WHERE id = ?")
                    .bind::<Text, _>(id.to_string())
                    .prepared()
                    .load(conn)?;
                if found.is_empty() {
                    return Err(Failure::Store(StoreError::NotFound));
                }
            }
            record(conn, audit.as_ref())?;
            add_in(conn, scope, &numbers, now)
        })
        .await
}

/// Lists `numbers` under `scope` in the caller's transaction, cancelling the scope's waiting
/// calls to them.
pub(super) fn add_in(
    conn: &mut SqliteConnection,
    scope: DncScope,
    numbers: &[(PhoneNumber, Option<String>)],
    now: DateTime<Utc>,
) -> Result<DncAdded, Failure> {
    let column = scope_column(scope);
    let mut added = DncAdded::default();
    let mut canceled: BTreeMap<(String, CallStatus), i64> = BTreeMap::new();
    for chunk in numbers.chunks(INSERT_CHUNK) {
        let values = vec!["(?, ?, ?, ?)"; chunk.len()].join(", ");
        let mut insert = diesel::sql_query(format!(
            "INSERT INTO do_not_call (phone_number, scope, reason, created_at) \
                     VALUES {values} ON CONFLICT DO NOTHING"
        ))
        .into_boxed();
        for (number, reason) in chunk {
            insert = insert
                .bind::<Text, _>(number.as_str().to_owned())
                .bind::<Text, _>(column.clone())
                .bind::<Nullable<Text>, _>(reason.clone())
                .bind::<BigInt, _>(to_ms(now));
        }
        added.added += insert_chunk_counted(conn, insert, chunk.len(), INSERT_CHUNK)? as u64;
        for status in [CallStatus::Queued, CallStatus::Retrying] {
            for (campaign, n) in cancel_waiting(conn, scope, status, chunk, now)? {
                *canceled.entry((campaign, status)).or_default() += n;
            }
        }
    }
    let mut touched = Vec::new();
    for ((campaign, status), n) in canceled {
        let campaign_id: CampaignId = campaign.parse().map_err(bad_id)?;
        apply_stats(
            conn,
            campaign_id,
            &StatsDelta::canceled_from(status, n),
            now,
        )?;
        added.canceled += n as u64;
        touched.push(campaign_id);
    }
    touched.dedup();
    for campaign_id in touched {
        complete_if_finished(conn, campaign_id, now)?;
    }
    Ok(added)
}

/// Cancels the scope's calls in `status` to `numbers`; returns the campaigns of those moved.
fn cancel_waiting(
    conn: &mut SqliteConnection,
    scope: DncScope,
    status: CallStatus,
    numbers: &[(PhoneNumber, Option<String>)],
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, i64>, Failure> {
    let list = vec!["?"; numbers.len()].join(", ");
    let campaign = match scope {
        DncScope::Global => "",
        DncScope::Campaign(_) => " AND campaign_id = ?",
    };
    // Named: without statistics the planner takes `calls_by_campaign_status` for a
    // campaign's entries, which reads every call of the campaign in `status` to find a few
    // numbers; a number has one call per time it was queued.
    let mut update = diesel::sql_query(format!(
        "UPDATE calls INDEXED BY calls_by_number SET status = 'canceled', \
         last_error = 'do_not_call', \
         next_attempt_at = NULL, dial_after = 0, updated_at = ? \
         WHERE status = ? AND phone_number IN ({list}){campaign} RETURNING campaign_id AS id"
    ))
    .into_boxed()
    .bind::<BigInt, _>(to_ms(now))
    .bind::<Text, _>(status.as_str());
    for (number, _) in numbers {
        update = update.bind::<Text, _>(number.as_str().to_owned());
    }
    if let DncScope::Campaign(id) = scope {
        update = update.bind::<Text, _>(id.to_string());
    }
    let moved: Vec<IdRow> = update.load(conn)?;
    let mut per_campaign = BTreeMap::new();
    for row in moved {
        *per_campaign.entry(row.id).or_default() += 1;
    }
    Ok(per_campaign)
}

pub(super) async fn pending_calls(
    store: &SqliteStore,
    campaign_id: CampaignId,
    after: Option<CallId>,
    limit: usize,
    now: DateTime<Utc>,
) -> Result<Vec<(CallId, PendingCall)>, StoreError> {
    store
        .read(move |conn| {
            let rows: Vec<PendingRow> = diesel::sql_query(PENDING_CALLS.sqlite())
                .bind::<Text, _>(campaign_id.to_string())
                .bind::<Text, _>(after.map(|id| id.to_string()).unwrap_or_default())
                .bind::<BigInt, _>(as_bigint(limit))
                .prepared()
                .load(conn)?;
            let prior = prior_of(conn, &rows, now)?;
            Ok(rows
                .into_iter()
                .map(|row| row.into_pending(campaign_id, &prior))
                .collect::<Result<_, _>>()?)
        })
        .await
}

/// The attempts to the numbers of `rows` within the longest cap window, by number.
pub(super) fn prior_of(
    conn: &mut SqliteConnection,
    rows: &[PendingRow],
    now: DateTime<Utc>,
) -> Result<HashMap<String, Vec<PriorRow>>, Failure> {
    let numbers = rows.iter().map(|row| row.phone_number.clone()).collect();
    prior_of_numbers(conn, numbers, now)
}

/// The attempts to `numbers` within the longest cap window, by number: one statement, the
/// numbers as one JSON array.
pub(super) fn prior_of_numbers(
    conn: &mut SqliteConnection,
    mut numbers: Vec<String>,
    now: DateTime<Utc>,
) -> Result<HashMap<String, Vec<PriorRow>>, Failure> {
    if numbers.is_empty() {
        return Ok(HashMap::new());
    }
    numbers.sort_unstable();
    numbers.dedup();
    let prior: Vec<PriorRow> = diesel::sql_query(
        "SELECT phone_number, campaign_id, started_at FROM number_attempts \
         WHERE phone_number IN (SELECT value FROM json_each(?)) AND started_at > ?",
    )
    .bind::<Text, _>(serde_json::Value::from(numbers).to_string())
    .bind::<BigInt, _>(to_ms(now) - millis(caps::MAX_WINDOW))
    .prepared()
    .load(conn)?;
    Ok(rows::prior_by_number(prior))
}
