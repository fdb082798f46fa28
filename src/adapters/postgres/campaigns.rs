//! Campaigns: registration with their targets, reads, updates, status changes and the
//! statistics row that moves with every write.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Double, Integer, Nullable, Text};
use diesel_async::RunQueryDsl;
use futures::FutureExt;

use super::calls::insert_calls;
use super::error::name_taken;
use super::keys::record;
use super::rows::StatusCountRow;
use super::{rows_per_insert, Conn, PgStore};
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

/// Loads a campaign; `lock` is empty or a row-locking clause such as `FOR UPDATE`.
/// Whether a read locks the rows it reads until the transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lock {
    None,
    /// `FOR UPDATE`: writers of the row wait for this transaction.
    ForUpdate,
}

impl Lock {
    fn clause(self) -> &'static str {
        match self {
            Self::None => "",
            Self::ForUpdate => "FOR UPDATE",
        }
    }
}

pub(super) async fn load_campaign(
    conn: &mut Conn,
    id: CampaignId,
    lock: Lock,
) -> Result<Option<Campaign>, Failure> {
    let sql = format!("{} {}", LOAD_CAMPAIGN.postgres(), lock.clause());
    let rows: Vec<CampaignRow> = diesel::sql_query(sql)
        .bind::<Text, _>(id.to_string())
        .prepared()
        .load(conn)
        .await?;
    Ok(rows::first::<_, Campaign>(rows)?)
}

/// Loads and locks (`FOR UPDATE`) a campaign that must exist.
async fn lock_campaign(conn: &mut Conn, id: CampaignId) -> Result<Campaign, Failure> {
    load_campaign(conn, id, Lock::ForUpdate)
        .await?
        .ok_or(Failure::Store(StoreError::NotFound))
}

async fn reload_campaign(conn: &mut Conn, id: CampaignId) -> Result<Campaign, Failure> {
    load_campaign(conn, id, Lock::None)
        .await?
        .ok_or(Failure::Store(StoreError::NotFound))
}

pub(super) async fn apply_stats(
    conn: &mut Conn,
    campaign: &str,
    delta: &StatsDelta,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    statements::apply_stats(APPLY_STATS.postgres(), campaign, delta, now)
        .prepared()
        .execute(conn)
        .await?;
    Ok(())
}

async fn set_rules(
    conn: &mut Conn,
    campaign: &str,
    recipient_hours: &BusinessHours,
    restricted_periods: &[RestrictedPeriod],
    recipient_limits: &[FrequencyCap],
) -> Result<(), Failure> {
    diesel::sql_query(SET_CAMPAIGN_RULES.postgres())
        .bind::<Text, _>(hours_json(recipient_hours)?)
        .bind::<Text, _>(periods_json(restricted_periods)?)
        .bind::<Text, _>(limits_json(recipient_limits)?)
        .bind::<Text, _>(campaign.to_owned())
        .prepared()
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes a campaign name for `campaign`: a name another campaign holds is `DuplicateName`.
async fn claim_name(conn: &mut Conn, key: String, campaign: &str) -> Result<(), Failure> {
    diesel::sql_query("INSERT INTO campaign_names (name_key, campaign_id) VALUES ($1, $2)")
        .bind::<Text, _>(key)
        .bind::<Text, _>(campaign.to_owned())
        .prepared()
        .execute(conn)
        .await
        .map_err(name_taken)?;
    Ok(())
}

async fn insert_targets(
    conn: &mut Conn,
    campaign: &str,
    targets: &[NewTarget],
) -> Result<(), Failure> {
    for chunk in targets.chunks(rows_per_insert(2, 1)) {
        let values: Vec<String> = (0..chunk.len())
            .map(|row| format!("($1, ${}, ${})", 2 + 2 * row, 3 + 2 * row))
            .collect();
        let mut query = diesel::sql_query(format!(
            "INSERT INTO targets (campaign_id, phone_number, metadata) VALUES {}",
            values.join(", ")
        ))
        .into_boxed()
        .bind::<Text, _>(campaign.to_owned());
        for target in chunk {
            query = query
                .bind::<Text, _>(target.phone_number.as_str().to_owned())
                .bind::<Nullable<Text>, _>(
                    target.metadata.as_ref().map(|m| m.as_json().to_owned()),
                );
        }
        query.execute(conn).await?;
    }
    Ok(())
}

pub(super) async fn create(
    store: &PgStore,
    new: NewCampaign,
    now: DateTime<Utc>,
    audit: Option<AuditEntry>,
) -> Result<Campaign, StoreError> {
    let policy = store.compliance.clone();
    store
        .transaction(move |conn| {
            async move {
                record(conn, audit.as_ref()).await?;
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
                let campaign = id.to_string();
                claim_name(conn, name_key(&name), &campaign).await?;
                diesel::sql_query(
                    "INSERT INTO campaigns (id, name, description, time_zone, status, \
                     max_concurrent_calls, max_attempts, base_delay_ms, max_delay_ms, jitter, \
                     business_hours, target_count, created_at, updated_at, voice) \
                     VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, $10, $11, $12, $12, \
                     $13)",
                )
                .bind::<Text, _>(campaign.clone())
                .bind::<Text, _>(name)
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
                .bind::<Nullable<Text>, _>(voice_json(&voice))
                .prepared()
                .execute(conn)
                .await?;
                set_rules(
                    conn,
                    &campaign,
                    &recipient_hours,
                    &restricted_periods,
                    &recipient_limits,
                )
                .await?;
                // Every target starts as one queued call.
                diesel::sql_query(
                    "INSERT INTO campaign_stats (campaign_id, total_targets, total_calls, \
                     queued, updated_at) VALUES ($1, $2, $2, $2, $3)",
                )
                .bind::<Text, _>(campaign.clone())
                .bind::<BigInt, _>(as_bigint(targets.len()))
                .bind::<BigInt, _>(to_ms(now))
                .prepared()
                .execute(conn)
                .await?;
                insert_targets(conn, &campaign, &targets).await?;
                let calls = targets
                    .into_iter()
                    .map(|target| target.queued_call(id, retry_policy.max_attempts, now));
                let created = reload_campaign(conn, id).await?;
                let calls = FirstDialable::new(&policy, &created, now).arrange(calls);
                insert_calls(conn, &campaign, retry_policy.max_attempts, now, &calls).await?;
                Ok(created)
            }
            .boxed()
        })
        .await
}

pub(super) async fn get(store: &PgStore, id: CampaignId) -> Result<Option<Campaign>, StoreError> {
    store
        .read(move |conn| load_campaign(conn, id, Lock::None).boxed())
        .await
}

pub(super) async fn list(
    store: &PgStore,
    status: Option<CampaignStatus>,
    after: Option<CampaignId>,
    limit: usize,
) -> Result<Vec<Campaign>, StoreError> {
    let after = after.map(|id| id.to_string()).unwrap_or_default();
    store
        .read(move |conn| {
            async move {
                let rows: Vec<CampaignRow> = match status {
                    Some(status) => {
                        diesel::sql_query(CAMPAIGNS_IN_STATUS.postgres())
                            .bind::<Text, _>(status.as_str())
                            .bind::<Text, _>(after)
                            .bind::<BigInt, _>(as_bigint(limit))
                            .prepared()
                            .load(conn)
                            .await?
                    }
                    None => {
                        diesel::sql_query(CAMPAIGNS.postgres())
                            .bind::<Text, _>(after)
                            .bind::<BigInt, _>(as_bigint(limit))
                            .prepared()
                            .load(conn)
                            .await?
                    }
                };
                Ok(rows::all::<_, Campaign>(rows)?)
            }
            .boxed()
        })
        .await
}

pub(super) async fn update(
    store: &PgStore,
    id: CampaignId,
    changes: CampaignChanges,
    now: DateTime<Utc>,
    audit: Option<AuditEntry>,
) -> Result<Campaign, StoreError> {
    store
        .transaction(move |conn| {
            async move {
                record(conn, audit.as_ref()).await?;
                let current = lock_campaign(conn, id).await?;
                current.status.ensure_mutable("update")?;
                let campaign = id.to_string();
                let old_key = name_key(&current.name);
                let old_budget = current.retry_policy.max_attempts;
                let old_rules = CampaignRules::of(&current);
                let next = changes.apply_to(current);
                let new_key = name_key(&next.name);
                if new_key != old_key {
                    claim_name(conn, new_key, &campaign).await?;
                    diesel::sql_query(
                        "DELETE FROM campaign_names WHERE name_key = $1 AND campaign_id = $2",
                    )
                    .bind::<Text, _>(old_key)
                    .bind::<Text, _>(campaign.clone())
                    .prepared()
                    .execute(conn)
                    .await?;
                }
                let rules_changed = CampaignRules::of(&next) != old_rules;
                let policy = next.retry_policy;
                diesel::sql_query(
                    "UPDATE campaigns SET name = $1, description = $2, max_concurrent_calls = $3, \
                     max_attempts = $4, base_delay_ms = $5, max_delay_ms = $6, jitter = $7, \
                     business_hours = $8, updated_at = $9, voice = $11 WHERE id = $10",
                )
                .bind::<Text, _>(next.name)
                .bind::<Text, _>(next.description)
                .bind::<Integer, _>(next.max_concurrent_calls as i32)
                .bind::<Integer, _>(policy.max_attempts as i32)
                .bind::<BigInt, _>(policy.base_delay.as_millis() as i64)
                .bind::<BigInt, _>(policy.max_delay.as_millis() as i64)
                .bind::<Double, _>(policy.jitter)
                .bind::<Text, _>(hours_json(&next.business_hours)?)
                .bind::<BigInt, _>(to_ms(now))
                .bind::<Text, _>(campaign.clone())
                .bind::<Nullable<Text>, _>(voice_json(&next.voice))
                .prepared()
                .execute(conn)
                .await?;
                set_rules(
                    conn,
                    &campaign,
                    &next.recipient_hours,
                    &next.restricted_periods,
                    &next.recipient_limits,
                )
                .await?;
                if rules_changed {
                    diesel::sql_query(REOPEN_HELD.postgres())
                        .bind::<Text, _>(campaign.clone())
                        .prepared()
                        .execute(conn)
                        .await?;
                }
                if policy.max_attempts != old_budget {
                    diesel::sql_query(RETRY_BUDGET.postgres())
                        .bind::<Integer, _>(policy.max_attempts as i32)
                        .bind::<Text, _>(campaign)
                        .prepared()
                        .execute(conn)
                        .await?;
                }
                reload_campaign(conn, id).await
            }
            .boxed()
        })
        .await
}

pub(super) async fn transition(
    store: &PgStore,
    id: CampaignId,
    action: StatusAction,
    now: DateTime<Utc>,
    audit: Option<AuditEntry>,
) -> Result<Transition, StoreError> {
    store
        .transaction(move |conn| {
            async move {
                record(conn, audit.as_ref()).await?;
                // FOR UPDATE waits for claims and reports in flight (they hold KEY SHARE) and
                // keeps new ones out until this commits.
                let current = lock_campaign(conn, id).await?;
                let transition = current.status.apply(action)?;
                let Transition::To(next) = transition else {
                    return Ok(transition);
                };
                let campaign = id.to_string();
                diesel::sql_query(
                    "UPDATE campaigns SET status = $1, updated_at = $2, \
                     started_at = CASE WHEN $1 = 'in_progress' THEN COALESCE(started_at, $2) \
                     ELSE started_at END, \
                     completed_at = CASE WHEN $1 = 'completed' THEN $2 ELSE completed_at END, \
                     pause_reason = CASE WHEN $1 = 'paused' THEN pause_reason ELSE NULL END \
                     WHERE id = $3",
                )
                .bind::<Text, _>(next.as_str())
                .bind::<BigInt, _>(to_ms(now))
                .bind::<Text, _>(campaign.clone())
                .prepared()
                .execute(conn)
                .await?;
                if next == CampaignStatus::Completed {
                    cancel_waiting_calls(conn, &campaign, now).await?;
                }
                Ok(transition)
            }
            .boxed()
        })
        .await
}

/// Cancels every call of a completed campaign that is not dialing, counting what each was.
async fn cancel_waiting_calls(
    conn: &mut Conn,
    campaign: &str,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    let canceled: Vec<StatusCountRow> = diesel::sql_query(
        "WITH waiting AS (SELECT id, status FROM calls WHERE campaign_id = $1 \
         AND status IN ('queued', 'retrying') ORDER BY id FOR UPDATE), \
         canceled AS (UPDATE calls c SET status = 'canceled', \
         next_attempt_at = NULL, updated_at = $2 FROM waiting w \
         WHERE c.campaign_id = $1 AND c.id = w.id RETURNING w.status AS status) \
         SELECT status, count(*) AS n FROM canceled GROUP BY status",
    )
    .bind::<Text, _>(campaign.to_owned())
    .bind::<BigInt, _>(to_ms(now))
    .prepared()
    .load(conn)
    .await?;
    let mut delta = StatsDelta::default();
    for row in canceled {
        let from = CallStatus::parse(&row.status)
            .ok_or_else(|| StoreError::Internal(format!("bad call status {:?}", row.status)))?;
        delta += StatsDelta::canceled_from(from, row.n);
    }
    apply_stats(conn, campaign, &delta, now).await
}

pub(super) async fn stats(
    store: &PgStore,
    id: CampaignId,
) -> Result<Option<CampaignStats>, StoreError> {
    store
        .read(move |conn| {
            async move {
                let rows: Vec<StatsRow> = diesel::sql_query(CAMPAIGN_STATS.postgres())
                    .bind::<Text, _>(id.to_string())
                    .prepared()
                    .load(conn)
                    .await?;
                Ok(rows::first::<_, CampaignStats>(rows)?)
            }
            .boxed()
        })
        .await
}

pub(super) async fn pause_for_carrier(
    store: &PgStore,
    id: CampaignId,
    reason: PauseReason,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let reason = rows::pause_reason_json(&reason)?;
    store
        .transaction(move |conn| {
            async move {
                let paused = diesel::sql_query(PAUSE_FOR_CARRIER.postgres())
                    .bind::<Text, _>(reason)
                    .bind::<BigInt, _>(to_ms(now))
                    .bind::<Text, _>(id.to_string())
                    .prepared()
                    .execute(conn)
                    .await?;
                Ok(paused == 1)
            }
            .boxed()
        })
        .await
}
