//! A campaign's rows: the campaign with its rules, the runnable campaigns, the statistics.

use std::collections::BTreeMap;
use std::time::Duration;

use diesel::sql_types::{BigInt, Double, Integer, Nullable, Text};
use diesel::QueryableByName;

use crate::adapters::sql::from_ms;
use crate::adapters::sql::rows::{corrupt, parse_id};
use crate::domain::answer::AnswerStats;
use crate::domain::business_hours::{BusinessHours, BusinessWindow};
use crate::domain::campaign::{Campaign, CampaignStatus, RetryPolicy};
use crate::domain::carrier::Voice;
use crate::domain::compliance::{FrequencyCap, RestrictedPeriod};
use crate::domain::stats::CampaignStats;
use crate::ports::{RunnableCampaign, StoreError};

pub const CAMPAIGN_COLUMNS: &str = "campaigns.id AS id, campaigns.name AS name, \
    campaigns.description AS description, campaigns.time_zone AS time_zone, \
    campaigns.status AS status, campaigns.max_concurrent_calls AS max_concurrent_calls, \
    campaigns.max_attempts AS max_attempts, campaigns.base_delay_ms AS base_delay_ms, \
    campaigns.max_delay_ms AS max_delay_ms, campaigns.jitter AS jitter, \
    campaigns.business_hours AS business_hours, campaigns.target_count AS target_count, \
    campaigns.created_at AS created_at, campaigns.updated_at AS updated_at, \
    campaigns.started_at AS started_at, campaigns.completed_at AS completed_at, \
    campaigns.voice AS voice, campaigns.recipient_hours AS recipient_hours, \
    campaigns.restricted_periods AS restricted_periods, \
    campaigns.recipient_limits AS recipient_limits, campaigns.pause_reason AS pause_reason";

#[derive(QueryableByName)]
pub struct CampaignRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    description: String,
    #[diesel(sql_type = Text)]
    time_zone: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    max_concurrent_calls: i32,
    #[diesel(sql_type = Integer)]
    max_attempts: i32,
    #[diesel(sql_type = BigInt)]
    base_delay_ms: i64,
    #[diesel(sql_type = BigInt)]
    max_delay_ms: i64,
    #[diesel(sql_type = Double)]
    jitter: f64,
    #[diesel(sql_type = Text)]
    business_hours: String,
    #[diesel(sql_type = BigInt)]
    target_count: i64,
    #[diesel(sql_type = BigInt)]
    created_at: i64,
    #[diesel(sql_type = BigInt)]
    updated_at: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    started_at: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    completed_at: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    voice: Option<String>,
    #[diesel(sql_type = Text)]
    recipient_hours: String,
    #[diesel(sql_type = Text)]
    restricted_periods: String,
    #[diesel(sql_type = Text)]
    recipient_limits: String,
    #[diesel(sql_type = Nullable<Text>)]
    pause_reason: Option<String>,
}

#[derive(QueryableByName)]
pub struct RunnableRow {
    #[diesel(embed)]
    pub campaign: CampaignRow,
    #[diesel(sql_type = BigInt)]
    pub queued: i64,
    #[diesel(sql_type = BigInt)]
    pub dialing: i64,
}

impl TryFrom<RunnableRow> for RunnableCampaign {
    type Error = StoreError;

    fn try_from(row: RunnableRow) -> Result<Self, StoreError> {
        let queued_calls = row.queued.max(0) as u64;
        let dialing_calls = row.dialing.max(0) as u64;
        let campaign = Campaign::try_from(row.campaign)?;
        Ok(RunnableCampaign {
            id: campaign.id,
            time_zone: campaign.time_zone,
            business_hours: campaign.business_hours,
            max_concurrent_calls: campaign.max_concurrent_calls,
            retry_policy: campaign.retry_policy,
            queued_calls,
            dialing_calls,
            voice: campaign.voice,
        })
    }
}

impl TryFrom<CampaignRow> for Campaign {
    type Error = StoreError;

    fn try_from(row: CampaignRow) -> Result<Self, StoreError> {
        Ok(Campaign {
            id: parse_id("campaign id", &row.id)?,
            name: row.name,
            description: row.description,
            time_zone: row
                .time_zone
                .parse()
                .map_err(|_| corrupt("time zone", &row.time_zone))?,
            status: CampaignStatus::parse(&row.status)
                .ok_or_else(|| corrupt("campaign status", &row.status))?,
            max_concurrent_calls: row.max_concurrent_calls.max(0) as u32,
            retry_policy: RetryPolicy {
                max_attempts: row.max_attempts.max(0) as u32,
                base_delay: Duration::from_millis(row.base_delay_ms.max(0) as u64),
                max_delay: Duration::from_millis(row.max_delay_ms.max(0) as u64),
                jitter: row.jitter,
            },
            business_hours: hours_of("business hours", &row.business_hours)?,
            recipient_hours: hours_of("recipient hours", &row.recipient_hours)?,
            restricted_periods: periods_of(&row.restricted_periods)?,
            recipient_limits: limits_of(&row.recipient_limits)?,
            created_at: from_ms(row.created_at),
            updated_at: from_ms(row.updated_at),
            started_at: row.started_at.map(from_ms),
            completed_at: row.completed_at.map(from_ms),
            target_count: row.target_count.max(0) as u64,
            voice: match row.voice.as_deref() {
                None | Some("") => Voice::default(),
                Some(json) => serde_json::from_str(json).map_err(|err| corrupt("voice", err))?,
            },
            pause_reason: match row.pause_reason.as_deref() {
                None | Some("") => None,
                Some(json) => {
                    Some(serde_json::from_str(json).map_err(|err| corrupt("pause reason", err))?)
                }
            },
        })
    }
}

/// The text a pause-reason column holds.
pub fn pause_reason_json(
    reason: &crate::domain::campaign::PauseReason,
) -> Result<String, StoreError> {
    serde_json::to_string(reason).map_err(|err| StoreError::Internal(err.to_string()))
}

/// A campaign's voice as the store keeps it: NULL when it is the configured default.
pub fn voice_json(voice: &Voice) -> Option<String> {
    if voice.is_default() {
        return None;
    }
    serde_json::to_string(voice).ok()
}

/// Columns of `StatsRow`, named rather than `*`: a prepared statement's result type must not
/// change under it when a migration adds a column while older processes still run.
pub const STATS_COLUMNS: &str = "campaign_id, total_targets, total_calls, queued, retrying, \
    dialing, completed, failed, canceled, attempts_total, retries_attempted, duration_ms_total, \
    finished_attempts, updated_at, voicemails_left, machine_answered";

#[derive(QueryableByName)]
pub struct StatsRow {
    #[diesel(sql_type = Text)]
    campaign_id: String,
    #[diesel(sql_type = BigInt)]
    total_targets: i64,
    #[diesel(sql_type = BigInt)]
    total_calls: i64,
    #[diesel(sql_type = BigInt)]
    queued: i64,
    #[diesel(sql_type = BigInt)]
    retrying: i64,
    #[diesel(sql_type = BigInt)]
    dialing: i64,
    #[diesel(sql_type = BigInt)]
    completed: i64,
    #[diesel(sql_type = BigInt)]
    failed: i64,
    #[diesel(sql_type = BigInt)]
    canceled: i64,
    #[diesel(sql_type = BigInt)]
    attempts_total: i64,
    #[diesel(sql_type = BigInt)]
    retries_attempted: i64,
    #[diesel(sql_type = BigInt)]
    duration_ms_total: i64,
    #[diesel(sql_type = BigInt)]
    finished_attempts: i64,
    #[diesel(sql_type = BigInt)]
    updated_at: i64,
    #[diesel(sql_type = BigInt)]
    voicemails_left: i64,
    #[diesel(sql_type = BigInt)]
    machine_answered: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    responses: Option<String>,
}

impl TryFrom<StatsRow> for CampaignStats {
    type Error = StoreError;

    fn try_from(row: StatsRow) -> Result<Self, StoreError> {
        let count = |value: i64| value.max(0) as u64;
        Ok(CampaignStats {
            campaign_id: parse_id("campaign id", &row.campaign_id)?,
            total_targets: count(row.total_targets),
            total_calls: count(row.total_calls),
            queued_calls: count(row.queued),
            retrying_calls: count(row.retrying),
            dialing_calls: count(row.dialing),
            completed_calls: count(row.completed),
            failed_calls: count(row.failed),
            canceled_calls: count(row.canceled),
            attempts_total: count(row.attempts_total),
            retries_attempted: count(row.retries_attempted),
            duration_ms_total: count(row.duration_ms_total),
            finished_attempts: count(row.finished_attempts),
            updated_at: from_ms(row.updated_at),
            answers: AnswerStats {
                responses: match row.responses.as_deref() {
                    Some(json) => serde_json::from_str::<BTreeMap<String, u64>>(json)
                        .map_err(|err| corrupt("response counts", err))?,
                    None => Default::default(),
                },
                voicemails_left: count(row.voicemails_left),
                machine_answered: count(row.machine_answered),
            },
        })
    }
}

pub fn limits_of(json: &str) -> Result<Vec<FrequencyCap>, StoreError> {
    serde_json::from_str(json).map_err(|err| corrupt("recipient limits", err))
}

pub fn limits_json(limits: &[FrequencyCap]) -> Result<String, StoreError> {
    serde_json::to_string(limits)
        .map_err(|err| StoreError::Internal(format!("recipient limits: {err}")))
}

pub(super) fn hours_of(what: &str, json: &str) -> Result<BusinessHours, StoreError> {
    let windows: Vec<BusinessWindow> =
        serde_json::from_str(json).map_err(|err| corrupt(what, err))?;
    Ok(BusinessHours::new(windows))
}

pub(super) fn periods_of(json: &str) -> Result<Vec<RestrictedPeriod>, StoreError> {
    serde_json::from_str(json).map_err(|err| corrupt("restricted periods", err))
}

pub(super) fn zone_of(name: Option<&str>) -> Result<Option<chrono_tz::Tz>, StoreError> {
    name.filter(|name| !name.is_empty())
        .map(|name| name.parse().map_err(|_| corrupt("time zone", name)))
        .transpose()
}
