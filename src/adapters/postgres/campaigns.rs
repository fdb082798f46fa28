//! Campaigns: registration with their targets, reads, updates, status changes and the
//! statistics row that moves with every write.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::RunQueryDsl;
use futures::FutureExt;

use super::calls::insert_calls;
use super::error::name_taken;
use super::keys::record;
use super::rows::StatusCountRow;
use super::{rows_per_insert, Conn, PgStore};
use crate::adapters::sql::bound::answers;
use crate::adapters::sql::bound::campaigns as bound;
use crate::adapters::sql::prepared::KeepPrepared;
use crate::adapters::sql::rows::{self, CampaignRow, CAMPAIGN_COLUMNS};
use crate::adapters::sql::statements::{Statement, LOAD_CAMPAIGN};
use crate::adapters::sql::{as_bigint, to_ms, Failure};
use crate::domain::access::AuditEntry;
use crate::domain::admission::{CampaignRules, FirstDialable};
use crate::domain::call::CallStatus;
use crate::domain::campaign::{
    name_key, Campaign, CampaignChanges, CampaignStatus, StatusAction, Transition,
};
use crate::domain::ids::CampaignId;
use crate::domain::stats::StatsDelta;
use crate::ports::{NewCampaign, NewTarget, StoreError};

/// Loads a campaign; `lock` is empty or a row-locking clause such as `FOR UPDATE`.
/// Whether a read locks the rows it reads until the transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lock {
    None,
    /// `FOR UPDATE`: writers of the row wait for this transaction.
    ForUpdate,
}

static LOCK_CAMPAIGN: Statement =
    Statement::new(|| format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = ? FOR UPDATE"));

pub(super) async fn load_campaign(
    conn: &mut Conn,
    id: CampaignId,
    lock: Lock,
) -> Result<Option<Campaign>, Failure> {
    let statement = match lock {
        Lock::None => &LOAD_CAMPAIGN,
        Lock::ForUpdate => &LOCK_CAMPAIGN,
    };
    let rows: Vec<CampaignRow> = bound::load_campaign::<Pg>(statement, id)
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
    bound::apply_stats::<Pg>(campaign, delta, now)
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
                let campaign = new.id.to_string();
                claim_name(conn, name_key(&new.name), &campaign).await?;
                bound::insert_campaign::<Pg>(&new, now)?
                    .prepared()
                    .execute(conn)
                    .await?;
                bound::set_rules::<Pg>(
                    new.id,
                    &new.recipient_hours,
                    &new.restricted_periods,
                    &new.recipient_limits,
                )?
                .prepared()
                .execute(conn)
                .await?;
                let NewCampaign {
                    id,
                    retry_policy,
                    targets,
                    ..
                } = new;
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
                let created = reload_campaign(conn, id).await?;
                let max_attempts = retry_policy.max_attempts;
                let mut first = FirstDialable::new(&policy, &created, now);
                let calls = first.queued_calls(&targets, id, max_attempts);
                insert_calls(conn, &campaign, max_attempts, now, calls, drop).await?;
                Ok(created)
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
                let old_voice = current.voice.clone();
                let next = changes.apply_to(current);
                if let Some(keep) = answers::keep_live_messages::<Pg>(id, &old_voice, &next.voice) {
                    keep.prepared().execute(conn).await?;
                }
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
                let budget = next.retry_policy.max_attempts;
                let query = bound::update_campaign::<Pg>(&next, now)?;
                bound::where_campaign(query, id)
                    .prepared()
                    .execute(conn)
                    .await?;
                bound::set_rules::<Pg>(
                    id,
                    &next.recipient_hours,
                    &next.restricted_periods,
                    &next.recipient_limits,
                )?
                .prepared()
                .execute(conn)
                .await?;
                if rules_changed {
                    bound::reopen_held::<Pg>(id)
                        .prepared()
                        .execute(conn)
                        .await?;
                }
                if budget != old_budget {
                    bound::retry_budget::<Pg>(id, budget)
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
                bound::set_status::<Pg>(id, next, now)
                    .prepared()
                    .execute(conn)
                    .await?;
                if next == CampaignStatus::Completed {
                    cancel_waiting_calls(conn, &id.to_string(), now).await?;
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
