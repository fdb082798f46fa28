//! Campaigns: registration, reads, updates, status changes and their statistics row.

use chrono::{DateTime, Utc};

use super::{query, Binds, Bound, Dialect};
use crate::adapters::sql::rows::{limits_json, voice_json};
use crate::adapters::sql::statements::{
    Statement, APPLY_STATS, CAMPAIGNS, CAMPAIGNS_IN_STATUS, CAMPAIGN_STATS, PAUSE_FOR_CARRIER,
    REOPEN_HELD, RETRY_BUDGET, SET_CAMPAIGN_RULES,
};
use crate::adapters::sql::{as_bigint, hours_json, millis, periods_json, to_ms};
use crate::domain::business_hours::BusinessHours;
use crate::domain::campaign::{Campaign, CampaignStatus, PauseReason, RetryPolicy};
use crate::domain::compliance::{FrequencyCap, RestrictedPeriod};
use crate::domain::ids::CampaignId;
use crate::domain::stats::StatsDelta;
use crate::ports::{NewCampaign, StoreError};

/// A new campaign's row. SQLite keeps the name's key in a unique column its store binds last;
/// PostgreSQL keeps it in `campaign_names`, a table of its own keyed by it.
static INSERT_CAMPAIGN: Statement = Statement::dialects(
    || format!("{INSERT_CAMPAIGN_COLUMNS}, name_key) VALUES ({INSERT_CAMPAIGN_VALUES}, ?)"),
    || format!("{INSERT_CAMPAIGN_COLUMNS}) VALUES ({INSERT_CAMPAIGN_VALUES})"),
);
const INSERT_CAMPAIGN_COLUMNS: &str = "INSERT INTO campaigns (id, name, description, \
     time_zone, status, max_concurrent_calls, max_attempts, base_delay_ms, max_delay_ms, jitter, \
     business_hours, target_count, created_at, updated_at, voice";
const INSERT_CAMPAIGN_VALUES: &str = "?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?";

/// A campaign's row after an update; SQLite's store binds the name's key last.
static UPDATE_CAMPAIGN: Statement = Statement::dialects(
    || format!("{UPDATE_CAMPAIGN_SET}, name_key = ? WHERE id = ?"),
    || format!("{UPDATE_CAMPAIGN_SET} WHERE id = ?"),
);
const UPDATE_CAMPAIGN_SET: &str = "UPDATE campaigns SET name = ?, description = ?, \
     max_concurrent_calls = ?, max_attempts = ?, base_delay_ms = ?, max_delay_ms = ?, \
     jitter = ?, business_hours = ?, voice = ?, updated_at = ?";

/// A campaign's new status, with the times and the pause reason that status keeps.
static SET_STATUS: Statement = Statement::new(|| {
    "UPDATE campaigns SET status = ?, updated_at = ?, \
     started_at = CASE WHEN ? = 'in_progress' THEN COALESCE(started_at, ?) ELSE started_at END, \
     completed_at = CASE WHEN ? = 'completed' THEN ? ELSE completed_at END, \
     pause_reason = CASE WHEN ? = 'paused' THEN pause_reason ELSE NULL END \
     WHERE id = ?"
        .into()
});

/// The retry policy's columns, in the order both the insert and the update bind them.
fn bind_policy<DB: Dialect>(query: Bound<DB>, policy: &RetryPolicy) -> Bound<DB> {
    query
        .int(i32::try_from(policy.max_attempts).unwrap_or(i32::MAX))
        .big(millis(policy.base_delay))
        .big(millis(policy.max_delay))
        .real(policy.jitter)
}

/// The campaign row of `new`; SQLite's store binds the name's key after it.
pub fn insert_campaign<DB: Dialect>(
    new: &NewCampaign,
    now: DateTime<Utc>,
) -> Result<Bound<DB>, StoreError> {
    let query = query::<DB>(&INSERT_CAMPAIGN)
        .text(new.id.to_string())
        .text(new.name.clone())
        .text(new.description.clone())
        .text(new.time_zone.name())
        .int(limit_column(new.max_concurrent_calls));
    Ok(bind_policy(query, &new.retry_policy)
        .text(hours_json(&new.business_hours)?)
        .big(as_bigint(new.targets.len()))
        .big(to_ms(now))
        .big(to_ms(now))
        .opt_text(voice_json(&new.voice)))
}

/// `next`'s columns; SQLite's store binds the name's key after them.
pub fn update_campaign<DB: Dialect>(
    next: &Campaign,
    now: DateTime<Utc>,
) -> Result<Bound<DB>, StoreError> {
    let query = query::<DB>(&UPDATE_CAMPAIGN)
        .text(next.name.clone())
        .text(next.description.clone())
        .int(limit_column(next.max_concurrent_calls));
    Ok(bind_policy(query, &next.retry_policy)
        .text(hours_json(&next.business_hours)?)
        .opt_text(voice_json(&next.voice))
        .big(to_ms(now)))
}

/// The WHERE clause of `UPDATE_CAMPAIGN`, after whatever the store binds between.
pub fn where_campaign<DB: Dialect>(query: Bound<DB>, id: CampaignId) -> Bound<DB> {
    query.text(id.to_string())
}

fn limit_column(limit: u32) -> i32 {
    i32::try_from(limit).unwrap_or(i32::MAX)
}

pub fn set_rules<DB: Dialect>(
    id: CampaignId,
    recipient_hours: &BusinessHours,
    restricted_periods: &[RestrictedPeriod],
    recipient_limits: &[FrequencyCap],
) -> Result<Bound<DB>, StoreError> {
    Ok(query::<DB>(&SET_CAMPAIGN_RULES)
        .text(hours_json(recipient_hours)?)
        .text(periods_json(restricted_periods)?)
        .text(limits_json(recipient_limits)?)
        .text(id.to_string()))
}

pub fn set_status<DB: Dialect>(
    id: CampaignId,
    next: CampaignStatus,
    now: DateTime<Utc>,
) -> Bound<DB> {
    query::<DB>(&SET_STATUS)
        .text(next.as_str())
        .big(to_ms(now))
        .text(next.as_str())
        .big(to_ms(now))
        .text(next.as_str())
        .big(to_ms(now))
        .text(next.as_str())
        .text(id.to_string())
}

/// Calls held by the campaign's old rules are looked at again under its new ones.
pub fn reopen_held<DB: Dialect>(id: CampaignId) -> Bound<DB> {
    query::<DB>(&REOPEN_HELD).text(id.to_string())
}

/// Calls not yet finished take the campaign's new attempt budget.
pub fn retry_budget<DB: Dialect>(id: CampaignId, max_attempts: u32) -> Bound<DB> {
    query::<DB>(&RETRY_BUDGET)
        .int(i32::try_from(max_attempts).unwrap_or(i32::MAX))
        .text(id.to_string())
}

/// A page of campaigns after `after` in id order, of one status or all.
pub fn campaigns<DB: Dialect>(
    status: Option<CampaignStatus>,
    after: Option<CampaignId>,
    limit: usize,
) -> Bound<DB> {
    let after = after.map(|id| id.to_string()).unwrap_or_default();
    // Two statements, not `(? IS NULL OR status = ?)`, which no index serves.
    match status {
        Some(status) => query::<DB>(&CAMPAIGNS_IN_STATUS).text(status.as_str()),
        None => query::<DB>(&CAMPAIGNS),
    }
    .text(after)
    .big(as_bigint(limit))
}

pub fn stats<DB: Dialect>(id: CampaignId) -> Bound<DB> {
    query::<DB>(&CAMPAIGN_STATS).text(id.to_string())
}

/// A campaign's counters moved by `delta`.
pub fn apply_stats<DB: Dialect>(id: &str, delta: &StatsDelta, now: DateTime<Utc>) -> Bound<DB> {
    query::<DB>(&APPLY_STATS)
        .big(delta.total_calls)
        .big(delta.queued)
        .big(delta.retrying)
        .big(delta.dialing)
        .big(delta.completed)
        .big(delta.failed)
        .big(delta.canceled)
        .big(delta.attempts_total)
        .big(delta.retries_attempted)
        .big(delta.duration_ms_total)
        .big(delta.finished_attempts)
        .big(to_ms(now))
        .text(id)
}

pub fn pause_for_carrier<DB: Dialect>(
    id: CampaignId,
    reason: &PauseReason,
    now: DateTime<Utc>,
) -> Result<Bound<DB>, StoreError> {
    Ok(query::<DB>(&PAUSE_FOR_CARRIER)
        .text(crate::adapters::sql::rows::pause_reason_json(reason)?)
        .big(to_ms(now))
        .text(id.to_string()))
}

/// The campaign `id` by `statement`: `LOAD_CAMPAIGN` or a locking variant of it.
pub fn load_campaign<DB: Dialect>(statement: &Statement, id: CampaignId) -> Bound<DB> {
    query::<DB>(statement).text(id.to_string())
}
