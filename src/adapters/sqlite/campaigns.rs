//! Campaigns: registration with their targets, reads, updates, status changes and the
//! statistics row that moves with every write.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Double, Integer, Nullable, Text};
use diesel::sqlite::SqliteConnection;
use diesel::RunQueryDsl;

use super::calls::insert_calls;
use super::keys::record;
use super::{SqliteStore, INSERT_CHUNK};
use crate::adapters::sql::prepared::KeepPrepared;
use crate::adapters::sql::rows::{self, limits_json, voice_json, CampaignRow, StatsRow};
use crate::adapters::sql::statements::{
    self, APPLY_STATS, CAMPAIGNS, CAMPAIGNS_IN_STATUS, CAMPAIGN_STATS, LOAD_CAMPAIGN, REOPEN_HELD,
    RETRY_BUDGET,
};
use crate::adapters::sql::statements::{PAUSE_FOR_CARRIER, SET_CAMPAIGN_RULES};
use crate::adapters::sql::{as_bigint, hours_json, periods_json, to_ms, Failure};
use crate::domain::access::AuditEntry;
use crate::domain::admission::{CampaignRules, FirstDialable};
use crate::domain::business_hours::BusinessHours;
use crate::domain::call::CallStatus;
use crate::domain::campaign::{
    name_key, Campaign, CampaignChanges, CampaignStatus, PauseReason, StatusAction, Transition,
};
use crate::domain::compliance::{FrequencyCap, RestrictedPeriod};
use crate::domain::ids::CampaignId;
use crate::domain::stats::{CampaignStats, StatsDelta};
use crate::ports::{NewCampaign, NewTarget, StoreError};

pub(super) fn load_campaign(
    conn: &mut SqliteConnection,
    id: CampaignId,
) -> Result<Option<Campaign>, Failure> {
    let rows: Vec<CampaignRow> = diesel::sql_query(LOAD_CAMPAIGN.sqlite())
        .bind::<Text, _>(id.to_string())
        .prepared()
        .load(conn)?;
    Ok(rows::first::<_, Campaign>(rows)?)
}

/// Loads a campaign that must exist.
pub(super) fn existing_campaign(
    conn: &mut SqliteConnection,
    id: CampaignId,
) -> Result<Campaign, Failure> {
    load_campaign(conn, id)?.ok_or(Failure::Store(StoreError::NotFound))
}

pub(super) fn apply_stats(
    conn: &mut SqliteConnection,
    campaign_id: CampaignId,
    delta: &StatsDelta,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    statements::apply_stats(APPLY_STATS.sqlite(), &campaign_id.to_string(), delta, now)
        .prepared()
        .execute(conn)?;
    Ok(())
}

fn set_rules(
    conn: &mut SqliteConnection,
    id: CampaignId,
    recipient_hours: &BusinessHours,
    restricted_periods: &[RestrictedPeriod],
    recipient_limits: &[FrequencyCap],
) -> Result<(), Failure> {
    diesel::sql_query(SET_CAMPAIGN_RULES.sqlite())
        .bind::<Text, _>(hours_json(recipient_hours)?)
        .bind::<Text, _>(periods_json(restricted_periods)?)
        .bind::<Text, _>(limits_json(recipient_limits)?)
        .bind::<Text, _>(id.to_string())
        .prepared()
        .execute(conn)?;
    Ok(())
}

fn insert_targets(
    conn: &mut SqliteConnection,
    campaign_id: CampaignId,
    targets: &[NewTarget],
) -> Result<(), Failure> {
    let campaign = campaign_id.to_string();
    for chunk in targets.chunks(INSERT_CHUNK) {
        let placeholders = vec!["(?, ?, ?)"; chunk.len()].join(", ");
        let mut query = diesel::sql_query(format!(
            "INSERT INTO targets (campaign_id, phone_number, metadata) VALUES {placeholders}"
        ))
        .into_boxed();
        for target in chunk {
            query = query
                .bind::<Text, _>(campaign.clone())
                .bind::<Text, _>(target.phone_number.as_str().to_owned())
                .bind::<Nullable<Text>, _>(
                    target.metadata.as_ref().map(|m| m.as_json().to_owned()),
                );
        }
        query.execute(conn)?;
    }
    Ok(())
}

pub(super) async fn create(
    store: &SqliteStore,
    new: NewCampaign,
    now: DateTime<Utc>,
    audit: Option<AuditEntry>,
) -> Result<Campaign, StoreError> {
    let policy = store.compliance.clone();
    store
        .write(move |conn| {
            record(conn, audit.as_ref())?;
            let NewCampaign {
                id,
                name,
                description,
                time_zone,
                max_concurrent_calls,
                retry_policy,
                business_hours,
                recipient_hours,
                restricted_periods,
                recipient_limits,
                voice,
                targets,
            } = new;
            diesel::sql_query(
                "INSERT INTO campaigns (id, name, name_key, description, time_zone, status, \
                 max_concurrent_calls, max_attempts, base_delay_ms, max_delay_ms, jitter, \
                 business_hours, target_count, created_at, updated_at, voice) \
                 VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind::<Text, _>(id.to_string())
            .bind::<Text, _>(name.clone())
            .bind::<Text, _>(name_key(&name))
            .bind::<Text, _>(description)
            .bind::<Text, _>(time_zone.name().to_owned())
            .bind::<Integer, _>(max_concurrent_calls as i32)
            .bind::<Integer, _>(retry_policy.max_attempts as i32)
            .bind::<BigInt, _>(retry_policy.base_delay.as_millis() as i64)
            .bind::<BigInt, _>(retry_policy.max_delay.as_millis() as i64)
            .bind::<Double, _>(retry_policy.jitter)
            .bind::<Text, _>(hours_json(&business_hours)?)
            .bind::<BigInt, _>(as_bigint(targets.len()))
            .bind::<BigInt, _>(to_ms(now))
            .bind::<BigInt, _>(to_ms(now))
            .bind::<Nullable<Text>, _>(voice_json(&voice))
            .prepared()
            .execute(conn)?;
            set_rules(
                conn,
                id,
                &recipient_hours,
                &restricted_periods,
                &recipient_limits,
            )?;
            diesel::sql_query(
                "INSERT INTO campaign_stats (campaign_id, total_targets, updated_at) \
                 VALUES (?, ?, ?)",
            )
            .bind::<Text, _>(id.to_string())
            .bind::<BigInt, _>(as_bigint(targets.len()))
            .bind::<BigInt, _>(to_ms(now))
            .prepared()
            .execute(conn)?;
            insert_targets(conn, id, &targets)?;
            // Every target starts as one queued call.
            let calls = targets
                .into_iter()
                .map(|target| target.queued_call(id, retry_policy.max_attempts, now));
            let created = existing_campaign(conn, id)?;
            let calls = FirstDialable::new(&policy, &created, now).arrange(calls);
            insert_calls(conn, &calls)?;
            apply_stats(conn, id, &StatsDelta::enqueued(as_bigint(calls.len())), now)?;
            Ok(created)
        })
        .await
}

pub(super) async fn get(
    store: &SqliteStore,
    id: CampaignId,
) -> Result<Option<Campaign>, StoreError> {
    store.point_read(move |conn| load_campaign(conn, id)).await
}

pub(super) async fn list(
    store: &SqliteStore,
    status: Option<CampaignStatus>,
    after: Option<CampaignId>,
    limit: usize,
) -> Result<Vec<Campaign>, StoreError> {
    store
        .read(move |conn| {
            let after = after.map(|id| id.to_string()).unwrap_or_default();
            // Two statements, not `(? IS NULL OR status = ?)`, which no index serves.
            let rows: Vec<CampaignRow> = match status {
                Some(status) => diesel::sql_query(CAMPAIGNS_IN_STATUS.sqlite())
                    .bind::<Text, _>(status.as_str())
                    .bind::<Text, _>(after)
                    .bind::<BigInt, _>(as_bigint(limit))
                    .prepared()
                    .load(conn)?,
                None => diesel::sql_query(CAMPAIGNS.sqlite())
                    .bind::<Text, _>(after)
                    .bind::<BigInt, _>(as_bigint(limit))
                    .prepared()
                    .load(conn)?,
            };
            Ok(rows::all::<_, Campaign>(rows)?)
        })
        .await
}

pub(super) async fn update(
    store: &SqliteStore,
    id: CampaignId,
    changes: CampaignChanges,
    now: DateTime<Utc>,
    audit: Option<AuditEntry>,
) -> Result<Campaign, StoreError> {
    store
        .write(move |conn| {
            record(conn, audit.as_ref())?;
            let current = existing_campaign(conn, id)?;
            current.status.ensure_mutable("update")?;
            let old_budget = current.retry_policy.max_attempts;
            let old_rules = CampaignRules::of(&current);
            let next = changes.apply_to(current);
            let rules_changed = CampaignRules::of(&next) != old_rules;
            let policy = next.retry_policy;
            diesel::sql_query(
                "UPDATE campaigns SET name = ?, name_key = ?, description = ?, \
                 max_concurrent_calls = ?, max_attempts = ?, base_delay_ms = ?, max_delay_ms = ?, \
                 jitter = ?, business_hours = ?, voice = ?, updated_at = ? WHERE id = ?",
            )
            .bind::<Text, _>(next.name.clone())
            .bind::<Text, _>(name_key(&next.name))
            .bind::<Text, _>(next.description)
            .bind::<Integer, _>(next.max_concurrent_calls as i32)
            .bind::<Integer, _>(policy.max_attempts as i32)
            .bind::<BigInt, _>(policy.base_delay.as_millis() as i64)
            .bind::<BigInt, _>(policy.max_delay.as_millis() as i64)
            .bind::<Double, _>(policy.jitter)
            .bind::<Text, _>(hours_json(&next.business_hours)?)
            .bind::<Nullable<Text>, _>(voice_json(&next.voice))
            .bind::<BigInt, _>(to_ms(now))
            .bind::<Text, _>(id.to_string())
            .prepared()
            .execute(conn)?;
            set_rules(
                conn,
                id,
                &next.recipient_hours,
                &next.restricted_periods,
                &next.recipient_limits,
            )?;
            if rules_changed {
                diesel::sql_query(REOPEN_HELD.sqlite())
                    .bind::<Text, _>(id.to_string())
                    .prepared()
                    .execute(conn)?;
            }
            if policy.max_attempts != old_budget {
                diesel::sql_query(RETRY_BUDGET.sqlite())
                    .bind::<Integer, _>(policy.max_attempts as i32)
                    .bind::<Text, _>(id.to_string())
                    .prepared()
                    .execute(conn)?;
            }
            existing_campaign(conn, id)
        })
        .await
}

pub(super) async fn transition(
    store: &SqliteStore,
    id: CampaignId,
    action: StatusAction,
    now: DateTime<Utc>,
    audit: Option<AuditEntry>,
) -> Result<Transition, StoreError> {
    store
        .write(move |conn| {
            record(conn, audit.as_ref())?;
            let current = existing_campaign(conn, id)?;
            let transition = current.status.apply(action)?;
            let Transition::To(next) = transition else {
                return Ok(transition);
            };
            diesel::sql_query(
                "UPDATE campaigns SET status = ?, updated_at = ?, \
                 started_at = CASE WHEN ? = 'in_progress' THEN COALESCE(started_at, ?) \
                 ELSE started_at END, \
                 completed_at = CASE WHEN ? = 'completed' THEN ? ELSE completed_at END, \
                 pause_reason = CASE WHEN ? = 'paused' THEN pause_reason ELSE NULL END \
                 WHERE id = ?",
            )
            .bind::<Text, _>(next.as_str())
            .bind::<BigInt, _>(to_ms(now))
            .bind::<Text, _>(next.as_str())
            .bind::<BigInt, _>(to_ms(now))
            .bind::<Text, _>(next.as_str())
            .bind::<BigInt, _>(to_ms(now))
            .bind::<Text, _>(next.as_str())
            .bind::<Text, _>(id.to_string())
            .prepared()
            .execute(conn)?;
            if next == CampaignStatus::Completed {
                cancel_waiting_calls(conn, id, now)?;
            }
            Ok(transition)
        })
        .await
}

/// Cancels every call of a completed campaign that is not dialing, counting what each was.
fn cancel_waiting_calls(
    conn: &mut SqliteConnection,
    id: CampaignId,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    let mut delta = StatsDelta::default();
    for from in [CallStatus::Queued, CallStatus::Retrying] {
        let canceled = diesel::sql_query(
            "UPDATE calls SET status = 'canceled', next_attempt_at = NULL, updated_at = ? \
             WHERE campaign_id = ? AND status = ?",
        )
        .bind::<BigInt, _>(to_ms(now))
        .bind::<Text, _>(id.to_string())
        .bind::<Text, _>(from.as_str())
        .prepared()
        .execute(conn)?;
        delta += StatsDelta::canceled_from(from, as_bigint(canceled));
    }
    apply_stats(conn, id, &delta, now)
}

pub(super) async fn stats(
    store: &SqliteStore,
    id: CampaignId,
) -> Result<Option<CampaignStats>, StoreError> {
    store
        .point_read(move |conn| {
            let rows: Vec<StatsRow> = diesel::sql_query(CAMPAIGN_STATS.sqlite())
                .bind::<Text, _>(id.to_string())
                .prepared()
                .load(conn)?;
            Ok(rows::first::<_, CampaignStats>(rows)?)
        })
        .await
}

pub(super) async fn pause_for_carrier(
    store: &SqliteStore,
    id: CampaignId,
    reason: PauseReason,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let reason = rows::pause_reason_json(&reason)?;
    store
        .write(move |conn| {
            let paused = diesel::sql_query(PAUSE_FOR_CARRIER.sqlite())
                .bind::<Text, _>(&reason)
                .bind::<BigInt, _>(to_ms(now))
                .bind::<Text, _>(id.to_string())
                .prepared()
                .execute(conn)?;
            Ok(paused == 1)
        })
        .await
}
