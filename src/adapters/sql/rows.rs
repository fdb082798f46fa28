//! Row shapes of the SQL stores (SQLite and PostgreSQL) and their conversion to domain types.
//!
//! Both stores keep ids and JSON as text and times as BIGINT milliseconds, so one set of
//! `QueryableByName` structs over `Text`, `BigInt`, `Integer` and `Double` maps the rows of either
//! backend. Nothing here knows a backend's SQL dialect.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Double, Integer, Nullable, Text};
use diesel::QueryableByName;

use super::from_ms;
use crate::domain::access::{ApiKey, AuditEntry, KeyHash};
use crate::domain::admission::{CampaignRules, Capacity, DialCheck, NumberFacts, PendingCall};
use crate::domain::business_hours::{BusinessHours, BusinessWindow};
use crate::domain::call::{Attempt, AttemptStatus, Call, CallStatus};
use crate::domain::campaign::{Campaign, CampaignStatus, RetryPolicy};
use crate::domain::carrier::{CarrierCall, Voice};
use crate::domain::compliance::dnc::{DncEntry, DncScope};
use crate::domain::compliance::{Compliance, FrequencyCap, PriorAttempt, RestrictedPeriod};
use crate::domain::ids::{CallId, CampaignId};
use crate::domain::metadata::Metadata;
use crate::domain::phone::PhoneNumber;
use crate::domain::settlement::CurrentCall;
use crate::domain::stats::CampaignStats;
use crate::ports::{
    ClaimedCall, OrphanedAttempt, RunnableCampaign, StoreError, TimelineEntry, TimelineError,
};

/// Every row of a result as its domain value; a corrupt row fails the read.
pub fn all<R, T>(rows: Vec<R>) -> Result<Vec<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

/// A reported call as the domain sees it, or `None` when its row cannot be read: the report
/// then counts as stale instead of failing the batch it came in, which would fail again on
/// every redelivery.
pub fn readable_current_call(row: CurrentCallRow) -> Option<CurrentCall> {
    match CurrentCall::try_from(row) {
        Ok(call) => Some(call),
        Err(err) => {
            tracing::error!(error = %err, "unreadable reported call left as it is");
            None
        }
    }
}

/// The first row of a result as its domain value, if there is one.
pub fn first<R, T>(rows: Vec<R>) -> Result<Option<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().next().map(T::try_from).transpose()
}

fn corrupt(what: &str, value: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("corrupt {what} in store: {value}"))
}

fn parse_id<T: std::str::FromStr>(what: &str, value: &str) -> Result<T, StoreError> {
    value.parse().map_err(|_| corrupt(what, value))
}

fn parse_metadata(value: Option<String>) -> Option<Metadata> {
    value.map(Metadata::from_stored)
}

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
}

impl TryFrom<RunnableRow> for RunnableCampaign {
    type Error = StoreError;

    fn try_from(row: RunnableRow) -> Result<Self, StoreError> {
        let queued_calls = row.queued.max(0) as u64;
        let campaign = Campaign::try_from(row.campaign)?;
        Ok(RunnableCampaign {
            id: campaign.id,
            time_zone: campaign.time_zone,
            business_hours: campaign.business_hours,
            max_concurrent_calls: campaign.max_concurrent_calls,
            retry_policy: campaign.retry_policy,
            queued_calls,
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

pub const CALL_COLUMNS: &str = "id, campaign_id, phone_number, status, attempt_count, \
    max_attempts, scheduled_at, next_attempt_at, last_attempt_at, created_at, updated_at, \
    last_error, metadata, time_zone";

#[derive(QueryableByName)]
pub struct CallRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    campaign_id: String,
    #[diesel(sql_type = Text)]
    phone_number: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    attempt_count: i32,
    #[diesel(sql_type = Integer)]
    max_attempts: i32,
    #[diesel(sql_type = BigInt)]
    scheduled_at: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    next_attempt_at: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    last_attempt_at: Option<i64>,
    #[diesel(sql_type = BigInt)]
    created_at: i64,
    #[diesel(sql_type = BigInt)]
    updated_at: i64,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    metadata: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    time_zone: Option<String>,
}

impl TryFrom<CallRow> for Call {
    type Error = StoreError;

    fn try_from(row: CallRow) -> Result<Self, StoreError> {
        Ok(Call {
            id: parse_id::<CallId>("call id", &row.id)?,
            campaign_id: parse_id::<CampaignId>("campaign id", &row.campaign_id)?,
            phone_number: PhoneNumber::from_canonical(row.phone_number),
            status: CallStatus::parse(&row.status)
                .ok_or_else(|| corrupt("call status", &row.status))?,
            attempt_count: row.attempt_count.max(0) as u32,
            max_attempts: row.max_attempts.max(0) as u32,
            scheduled_at: from_ms(row.scheduled_at),
            next_attempt_at: row.next_attempt_at.map(from_ms),
            last_attempt_at: row.last_attempt_at.map(from_ms),
            created_at: from_ms(row.created_at),
            updated_at: from_ms(row.updated_at),
            last_error: row.last_error,
            metadata: parse_metadata(row.metadata),
            time_zone: zone_of(row.time_zone.as_deref())?,
        })
    }
}

#[derive(QueryableByName)]
pub struct AttemptRow {
    #[diesel(sql_type = Integer)]
    attempt: i32,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<Text>)]
    error: Option<String>,
    #[diesel(sql_type = BigInt)]
    started_at: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    ended_at: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    duration_ms: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    carrier: Option<String>,
}

/// Columns of `TimelineRow`, from the `attempts` table.
pub const TIMELINE_COLUMNS: &str = "campaign_id, call_id, attempt, status, error, started_at, \
    ended_at, duration_ms, carrier";

/// The carrier's record kept with an attempt; one that cannot be read is left out rather than
/// failing the read of the attempt.
pub fn carrier_of(json: Option<&str>) -> Option<CarrierCall> {
    let json = json?;
    match serde_json::from_str(json) {
        Ok(carrier) => Some(carrier),
        Err(err) => {
            tracing::warn!(error = %err, "unreadable carrier record of an attempt");
            None
        }
    }
}

/// A campaign's voice as the store keeps it: NULL when it is the configured default.
pub fn voice_json(voice: &Voice) -> Option<String> {
    if voice.is_default() {
        return None;
    }
    serde_json::to_string(voice).ok()
}

/// The carrier's record as the store keeps it.
pub fn carrier_json(carrier: Option<&CarrierCall>) -> Option<String> {
    carrier.and_then(|carrier| serde_json::to_string(carrier).ok())
}

/// A finished attempt with the call and campaign it belongs to.
#[derive(QueryableByName)]
pub struct TimelineRow {
    #[diesel(sql_type = Text)]
    campaign_id: String,
    #[diesel(sql_type = Text)]
    call_id: String,
    #[diesel(embed)]
    attempt: AttemptRow,
}

impl TryFrom<TimelineRow> for TimelineEntry {
    type Error = StoreError;

    fn try_from(row: TimelineRow) -> Result<Self, StoreError> {
        Ok(TimelineEntry {
            campaign_id: parse_id("campaign id", &row.campaign_id)?,
            call_id: parse_id("call id", &row.call_id)?,
            attempt: Attempt::try_from(row.attempt)?,
        })
    }
}

/// The backlog rows that map to entries; a corrupt row is logged and skipped, since failing the
/// whole read would stop every export behind it.
pub fn readable_backlog(rows: Vec<TimelineRow>) -> Vec<TimelineEntry> {
    rows.into_iter()
        .filter_map(|row| match TimelineEntry::try_from(row) {
            Ok(entry) => Some(entry),
            Err(err) => {
                tracing::error!(error = %err, "unreadable attempt row left in the store");
                None
            }
        })
        .collect()
}

impl From<StoreError> for TimelineError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(message) => TimelineError::Unavailable(message),
            other => TimelineError::Internal(other.to_string()),
        }
    }
}

impl TryFrom<AttemptRow> for Attempt {
    type Error = StoreError;

    fn try_from(row: AttemptRow) -> Result<Self, StoreError> {
        Ok(Attempt {
            attempt: row.attempt.max(0) as u32,
            status: AttemptStatus::parse(&row.status)
                .ok_or_else(|| corrupt("attempt status", &row.status))?,
            error: row.error,
            started_at: from_ms(row.started_at),
            ended_at: row.ended_at.map(from_ms),
            duration_ms: row.duration_ms.map(|ms| ms.max(0) as u64),
            carrier: carrier_of(row.carrier.as_deref()),
        })
    }
}

/// Columns of `StatsRow`, named rather than `*`: a prepared statement's result type must not
/// change under it when a migration adds a column while older processes still run.
pub const STATS_COLUMNS: &str = "campaign_id, total_targets, total_calls, queued, retrying, \
    dialing, completed, failed, canceled, attempts_total, retries_attempted, duration_ms_total, \
    finished_attempts, updated_at";

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
        })
    }
}

#[derive(QueryableByName)]
pub struct CountRow {
    #[diesel(sql_type = Integer)]
    #[allow(dead_code)]
    pub n: i32,
}

#[derive(QueryableByName)]
pub struct IdRow {
    #[diesel(sql_type = Text)]
    pub id: String,
}

#[derive(QueryableByName)]
pub struct MaybeMsRow {
    #[diesel(sql_type = Nullable<BigInt>)]
    pub ms: Option<i64>,
}

#[derive(QueryableByName)]
pub struct ClaimRow {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub phone_number: String,
    #[diesel(sql_type = Integer)]
    pub attempt_count: i32,
}

impl ClaimRow {
    pub fn into_claimed(
        self,
        campaign_id: CampaignId,
        now: DateTime<Utc>,
    ) -> Result<ClaimedCall, StoreError> {
        Ok(ClaimedCall {
            call_id: parse_id("call id", &self.id)?,
            campaign_id,
            phone_number: PhoneNumber::from_canonical(self.phone_number),
            attempt: self.attempt_count.max(0) as u32,
            started_at: now,
        })
    }
}

/// Columns of `CurrentCallRow`: a reported call (alias `c`) joined to its campaign (`k`) and
/// its current attempt (`a`, left-joined).
pub const CURRENT_CALL_COLUMNS: &str = "c.id AS id, c.status AS status, \
    c.attempt_count AS attempt_count, c.max_attempts AS max_attempts, c.owner AS owner, \
    c.placed_at AS placed_at, a.started_at AS started_at, k.status AS campaign_status";

/// A reported call as `record_attempts` reads it, before settling the report.
#[derive(QueryableByName)]
pub struct CurrentCallRow {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    attempt_count: i32,
    #[diesel(sql_type = Integer)]
    max_attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    owner: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    placed_at: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    started_at: Option<i64>,
    #[diesel(sql_type = Text)]
    campaign_status: String,
}

impl TryFrom<CurrentCallRow> for CurrentCall {
    type Error = StoreError;

    fn try_from(row: CurrentCallRow) -> Result<Self, StoreError> {
        Ok(CurrentCall {
            status: CallStatus::parse(&row.status)
                .ok_or_else(|| corrupt("call status", &row.status))?,
            attempt_count: row.attempt_count.max(0) as u32,
            max_attempts: row.max_attempts.max(0) as u32,
            // An owner that is not an instance id matches no report's expected owner.
            owner: row.owner.as_deref().and_then(|owner| owner.parse().ok()),
            placed: row.placed_at.is_some(),
            attempt_started_at: row.started_at.map(from_ms),
            campaign_status: CampaignStatus::parse(&row.campaign_status)
                .ok_or_else(|| corrupt("campaign status", &row.campaign_status))?,
        })
    }
}

/// A claimed call with what decides, at the moment of dialing, whether it may be placed: the
/// columns of `CurrentCallRow`, then `time_zone` and `business_hours` of its campaign.
#[derive(QueryableByName)]
pub struct BeginRow {
    #[diesel(embed)]
    pub call: CurrentCallRow,
    #[diesel(sql_type = Text)]
    time_zone: String,
    #[diesel(sql_type = Text)]
    business_hours: String,
    #[diesel(sql_type = Text)]
    recipient_hours: String,
    #[diesel(sql_type = Text)]
    restricted_periods: String,
    #[diesel(sql_type = Text)]
    recipient_limits: String,
    #[diesel(sql_type = Text)]
    pub phone_number: String,
    #[diesel(sql_type = Text)]
    call_campaign_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    call_time_zone: Option<String>,
    /// The scope of a do-not-call entry covering the call ('global' or its campaign's id).
    #[diesel(sql_type = Nullable<Text>)]
    listed: Option<String>,
}

/// A claimed call as the dialer reads it, before its number's earlier attempts are known.
#[derive(Debug, Clone)]
pub struct BeginFacts {
    pub call: CurrentCall,
    pub campaign_id: CampaignId,
    pub campaign: CampaignRules,
    pub phone_number: String,
    pub time_zone: Option<chrono_tz::Tz>,
    pub listed: Option<DncScope>,
}

impl BeginFacts {
    /// The check of the call, with `prior` attempts to its number (any campaign's).
    pub fn check(&self, policy: &Compliance, prior: &[PriorRow]) -> DialCheck {
        let facts = NumberFacts {
            time_zone: self.time_zone,
            do_not_call: self.listed,
            prior: prior_attempts(prior, self.campaign_id),
        };
        DialCheck::for_call(policy, self.campaign.clone(), &self.phone_number, facts)
    }
}

/// The scope column of the do-not-call table.
pub fn scope_of(column: &str) -> Result<DncScope, StoreError> {
    if column == "global" {
        return Ok(DncScope::Global);
    }
    Ok(DncScope::Campaign(parse_id("do-not-call scope", column)?))
}

pub fn scope_column(scope: DncScope) -> String {
    match scope {
        DncScope::Global => "global".to_owned(),
        DncScope::Campaign(id) => id.to_string(),
    }
}

impl TryFrom<BeginRow> for BeginFacts {
    type Error = StoreError;

    fn try_from(row: BeginRow) -> Result<Self, StoreError> {
        let call = CurrentCall::try_from(row.call)?;
        let campaign = CampaignRules {
            status: call.campaign_status,
            time_zone: row
                .time_zone
                .parse()
                .map_err(|_| corrupt("time zone", &row.time_zone))?,
            business_hours: hours_of("business hours", &row.business_hours)?,
            recipient_hours: hours_of("recipient hours", &row.recipient_hours)?,
            restricted_periods: periods_of(&row.restricted_periods)?,
            recipient_limits: limits_of(&row.recipient_limits)?,
        };
        Ok(BeginFacts {
            campaign_id: parse_id("campaign id", &row.call_campaign_id)?,
            call,
            campaign,
            time_zone: zone_of(row.call_time_zone.as_deref())?,
            listed: row.listed.as_deref().map(scope_of).transpose()?,
            phone_number: row.phone_number,
        })
    }
}

/// An earlier attempt to a number.
#[derive(QueryableByName, Debug, Clone)]
pub struct PriorRow {
    #[diesel(sql_type = Text)]
    pub phone_number: String,
    #[diesel(sql_type = Text)]
    pub campaign_id: String,
    #[diesel(sql_type = BigInt)]
    pub started_at: i64,
}

/// Earlier attempts grouped by number.
pub fn prior_by_number(rows: Vec<PriorRow>) -> HashMap<String, Vec<PriorRow>> {
    let mut by_number: HashMap<String, Vec<PriorRow>> = HashMap::new();
    for row in rows {
        by_number
            .entry(row.phone_number.clone())
            .or_default()
            .push(row);
    }
    by_number
}

/// The attempts among `rows` as a call of `campaign` counts them.
pub fn prior_attempts(rows: &[PriorRow], campaign: CampaignId) -> Vec<PriorAttempt> {
    let campaign = campaign.to_string();
    rows.iter()
        .map(|row| PriorAttempt {
            at: from_ms(row.started_at),
            same_campaign: row.campaign_id == campaign,
        })
        .collect()
}

/// A waiting call as the campaign's explanation reads it.
#[derive(QueryableByName)]
pub struct PendingRow {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub phone_number: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    next_attempt_at: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    time_zone: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    listed: Option<String>,
}

impl PendingRow {
    /// The call with the attempts among `prior` made to its number.
    pub fn into_pending(
        self,
        campaign: CampaignId,
        prior: &HashMap<String, Vec<PriorRow>>,
    ) -> Result<(CallId, PendingCall), StoreError> {
        let mine = prior.get(&self.phone_number).map_or(&[][..], Vec::as_slice);
        Ok((
            parse_id("call id", &self.id)?,
            PendingCall {
                status: CallStatus::parse(&self.status)
                    .ok_or_else(|| corrupt("call status", &self.status))?,
                next_attempt_at: self.next_attempt_at.map(from_ms),
                facts: NumberFacts {
                    time_zone: zone_of(self.time_zone.as_deref())?,
                    do_not_call: self.listed.as_deref().map(scope_of).transpose()?,
                    prior: prior_attempts(mine, campaign),
                },
                phone_number: self.phone_number,
            },
        ))
    }
}

/// A do-not-call entry.
#[derive(QueryableByName)]
pub struct DncRow {
    #[diesel(sql_type = Text)]
    pub phone_number: String,
    #[diesel(sql_type = Text)]
    pub scope: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub reason: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub created_at: i64,
}

impl TryFrom<DncRow> for DncEntry {
    type Error = StoreError;

    fn try_from(row: DncRow) -> Result<Self, StoreError> {
        Ok(DncEntry {
            phone_number: PhoneNumber::parse(&row.phone_number)
                .map_err(|_| corrupt("listed number", &row.phone_number))?,
            scope: scope_of(&row.scope)?,
            reason: row.reason,
            created_at: from_ms(row.created_at),
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

fn hours_of(what: &str, json: &str) -> Result<BusinessHours, StoreError> {
    let windows: Vec<BusinessWindow> =
        serde_json::from_str(json).map_err(|err| corrupt(what, err))?;
    Ok(BusinessHours::new(windows))
}

fn periods_of(json: &str) -> Result<Vec<RestrictedPeriod>, StoreError> {
    serde_json::from_str(json).map_err(|err| corrupt("restricted periods", err))
}

fn zone_of(name: Option<&str>) -> Result<Option<chrono_tz::Tz>, StoreError> {
    name.filter(|name| !name.is_empty())
        .map(|name| name.parse().map_err(|_| corrupt("time zone", name)))
        .transpose()
}

/// A queued call a claim may take.
#[derive(QueryableByName)]
pub struct CandidateRow {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub phone_number: String,
}

#[derive(QueryableByName)]
pub struct PhoneRow {
    #[diesel(sql_type = Text)]
    pub phone_number: String,
}

/// A `count(*) AS n`.
#[derive(QueryableByName)]
pub struct TotalRow {
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}

/// What a claim may take, read in the claim's transaction.
#[derive(QueryableByName)]
pub struct CapacityRow {
    #[diesel(sql_type = Integer)]
    campaign_limit: i32,
    #[diesel(sql_type = BigInt)]
    campaign_dialing: i64,
    #[diesel(sql_type = BigInt)]
    global_dialing: i64,
}

impl CapacityRow {
    pub fn capacity(&self, global_cap: u32) -> Capacity {
        Capacity {
            campaign_limit: u64::try_from(self.campaign_limit).unwrap_or(0),
            campaign_dialing: u64::try_from(self.campaign_dialing).unwrap_or(0),
            global_cap: u64::from(global_cap),
            global_dialing: u64::try_from(self.global_dialing).unwrap_or(0),
        }
    }
}

#[derive(QueryableByName)]
pub struct OrphanRow {
    #[diesel(sql_type = Text)]
    call_id: String,
    #[diesel(sql_type = Text)]
    campaign_id: String,
    #[diesel(sql_type = Integer)]
    attempt: i32,
    #[diesel(sql_type = Integer)]
    max_attempts: i32,
    #[diesel(sql_type = BigInt)]
    base_delay_ms: i64,
    #[diesel(sql_type = BigInt)]
    max_delay_ms: i64,
    #[diesel(sql_type = Double)]
    jitter: f64,
    #[diesel(sql_type = Nullable<Text>)]
    owner: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    placed_at: Option<i64>,
    #[diesel(sql_type = Text)]
    phone_number: String,
    #[diesel(sql_type = Nullable<Text>)]
    carrier: Option<String>,
}

impl TryFrom<OrphanRow> for OrphanedAttempt {
    type Error = StoreError;

    fn try_from(row: OrphanRow) -> Result<Self, StoreError> {
        Ok(OrphanedAttempt {
            call_id: parse_id("call id", &row.call_id)?,
            campaign_id: parse_id("campaign id", &row.campaign_id)?,
            attempt: row.attempt.max(0) as u32,
            retry_policy: RetryPolicy {
                max_attempts: row.max_attempts.max(0) as u32,
                base_delay: Duration::from_millis(row.base_delay_ms.max(0) as u64),
                max_delay: Duration::from_millis(row.max_delay_ms.max(0) as u64),
                jitter: row.jitter,
            },
            owner: row
                .owner
                .as_deref()
                .map(|owner| parse_id("owner", owner))
                .transpose()?,
            placed: row.placed_at.is_some(),
            placed_at: row.placed_at.map(from_ms),
            phone_number: PhoneNumber::from_canonical(row.phone_number),
            sid: carrier_of(row.carrier.as_deref()).and_then(|carrier| carrier.sid),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;

    fn reported(status: &str) -> CurrentCallRow {
        CurrentCallRow {
            id: CallId::new().to_string(),
            status: status.into(),
            attempt_count: 1,
            max_attempts: 3,
            owner: Some("not an instance id".into()),
            placed_at: Some(1_000),
            started_at: Some(1_000),
            campaign_status: "in_progress".into(),
        }
    }

    #[test]
    fn an_unreadable_reported_call_is_skipped_not_fatal() {
        let call = readable_current_call(reported("dialing")).expect("readable");
        assert_eq!(call.status, CallStatus::Dialing);
        assert_eq!(
            call.owner, None,
            "a foreign owner matches no expected owner"
        );
        assert_eq!(readable_current_call(reported("ringing")), None);
    }
}

pub const KEY_COLUMNS: &str = "id, name, role, hash, created_at, last_used_at, revoked_at";

#[derive(QueryableByName)]
pub struct KeyRow {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Text)]
    pub role: String,
    #[diesel(sql_type = Text)]
    pub hash: String,
    #[diesel(sql_type = BigInt)]
    pub created_at: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub last_used_at: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub revoked_at: Option<i64>,
}

impl TryFrom<KeyRow> for ApiKey {
    type Error = StoreError;
    fn try_from(row: KeyRow) -> Result<Self, StoreError> {
        Ok(ApiKey {
            id: parse_id("key id", &row.id)?,
            role: row
                .role
                .parse()
                .map_err(|_| corrupt("key role", &row.role))?,
            hash: KeyHash::from_hex(&row.hash).ok_or_else(|| corrupt("key hash", "(hidden)"))?,
            name: row.name,
            created_at: from_ms(row.created_at),
            last_used_at: row.last_used_at.map(from_ms),
            revoked_at: row.revoked_at.map(from_ms),
        })
    }
}

pub const AUDIT_COLUMNS: &str =
    "id, at, key_id, key_name, method, route, resource_id, status, request_count";

#[derive(QueryableByName)]
pub struct AuditRow {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = BigInt)]
    pub at: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub key_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub key_name: Option<String>,
    #[diesel(sql_type = Text)]
    pub method: String,
    #[diesel(sql_type = Text)]
    pub route: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub resource_id: Option<String>,
    #[diesel(sql_type = Integer)]
    pub status: i32,
    #[diesel(sql_type = Integer)]
    pub request_count: i32,
}

impl TryFrom<AuditRow> for AuditEntry {
    type Error = StoreError;
    fn try_from(row: AuditRow) -> Result<Self, StoreError> {
        Ok(AuditEntry {
            id: parse_id("audit id", &row.id)?,
            at: from_ms(row.at),
            key_id: row
                .key_id
                .as_deref()
                .map(|id| parse_id("audit key id", id))
                .transpose()?,
            key_name: row.key_name,
            method: row.method,
            route: row.route,
            resource_id: row.resource_id,
            status: u16::try_from(row.status).map_err(|_| corrupt("audit status", row.status))?,
            count: u32::try_from(row.request_count)
                .map_err(|_| corrupt("audit request count", row.request_count))?,
        })
    }
}
