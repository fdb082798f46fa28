//! Campaigns: registration with their targets, reads, updates, status changes and the
//! statistics row that moves with every write.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::sqlite::{Sqlite, SqliteConnection};
use diesel::RunQueryDsl;

use super::calls::insert_calls;
use super::keys::record;
use super::{insert_chunk, SqliteStore, INSERT_CHUNK};
use crate::adapters::sql::bound::answers;
use crate::adapters::sql::bound::campaigns as bound;
use crate::adapters::sql::bound::Binds;
use crate::adapters::sql::prepared::KeepPrepared;
use crate::adapters::sql::rows::{self, CampaignRow};
use crate::adapters::sql::statements::LOAD_CAMPAIGN;
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

pub(super) fn load_campaign(
    conn: &mut SqliteConnection,
    id: CampaignId,
) -> Result<Option<Campaign>, Failure> {
    let rows: Vec<CampaignRow> = bound::load_campaign::<Sqlite>(&LOAD_CAMPAIGN, id)
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
    bound::apply_stats::<Sqlite>(&campaign_id.to_string(), delta, now)
        .prepared()
        .run(conn)?;
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
        insert_chunk(conn, query, chunk.len(), INSERT_CHUNK)?;
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
            bound::insert_campaign::<Sqlite>(&new, now)?
                .text(name_key(&new.name))
                .prepared()
                .run(conn)?;
            let id = new.id;
            bound::set_rules::<Sqlite>(
                id,
                &new.recipient_hours,
                &new.restricted_periods,
                &new.recipient_limits,
            )?
            .prepared()
            .run(conn)?;
            let NewCampaign {
                retry_policy,
                targets,
                ..
            } = new;
            diesel::sql_query(
                "INSERT INTO campaign_stats (campaign_id, total_targets, updated_at) \
                 VALUES (?, ?, ?)",
            )
            .bind::<Text, _>(id.to_string())
            .bind::<BigInt, _>(as_bigint(targets.len()))
            .bind::<BigInt, _>(to_ms(now))
            .prepared()
            .run(conn)?;
            insert_targets(conn, id, &targets)?;
            // Every target starts as one queued call, made a chunk at a time.
            let created = existing_campaign(conn, id)?;
            let mut first = FirstDialable::new(&policy, &created, now);
            let calls = first.queued_calls(&targets, id, retry_policy.max_attempts);
            insert_calls(conn, calls, drop)?;
            apply_stats(
                conn,
                id,
                &StatsDelta::enqueued(as_bigint(targets.len())),
                now,
            )?;
            Ok(created)
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
            let old_voice = current.voice.clone();
            let next = changes.apply_to(current);
            if let Some(keep) = answers::keep_live_messages::<Sqlite>(id, &old_voice, &next.voice) {
                keep.prepared().run(conn)?;
            }
            let rules_changed = CampaignRules::of(&next) != old_rules;
            let budget = next.retry_policy.max_attempts;
            let query = bound::update_campaign::<Sqlite>(&next, now)?.text(name_key(&next.name));
            bound::where_campaign(query, id).prepared().run(conn)?;
            bound::set_rules::<Sqlite>(
                id,
                &next.recipient_hours,
                &next.restricted_periods,
                &next.recipient_limits,
            )?
            .prepared()
            .run(conn)?;
            if rules_changed {
                bound::reopen_held::<Sqlite>(id).prepared().run(conn)?;
            }
            if budget != old_budget {
                bound::retry_budget::<Sqlite>(id, budget)
                    .prepared()
                    .run(conn)?;
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
            bound::set_status::<Sqlite>(id, next, now)
                .prepared()
                .run(conn)?;
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
        .run_counted(conn)?;
        delta += StatsDelta::canceled_from(from, as_bigint(canceled));
    }
    apply_stats(conn, id, &delta, now)
}
