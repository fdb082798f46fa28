//! Calls, attempts and the timeline's entries.

use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel::QueryableByName;

use crate::adapters::sql::from_ms;
use crate::adapters::sql::rows::{corrupt, parse_id, parse_metadata, zone_of};
use crate::domain::answer::Answer;
use crate::domain::call::{Attempt, AttemptStatus, Call, CallStatus};
use crate::domain::carrier::CarrierCall;
use crate::domain::ids::{CallId, CampaignId};
use crate::domain::phone::PhoneNumber;
use crate::ports::{StoreError, TimelineEntry, TimelineError};

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
    #[diesel(sql_type = Nullable<Text>)]
    answered_by: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    response: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    digits: Option<String>,
    #[diesel(sql_type = Integer)]
    voicemail_left: i32,
}

/// Columns of `AttemptRow`.
pub const ATTEMPT_COLUMNS: &str = "attempt, status, error, started_at, ended_at, duration_ms, \
    carrier, answered_by, response, digits, voicemail_left";

/// Columns of `TimelineRow`, from the `attempts` table.
pub const TIMELINE_COLUMNS: &str = "campaign_id, call_id, attempt, status, error, started_at, \
    ended_at, duration_ms, carrier, answered_by, response, digits, voicemail_left";

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
            answer: Answer::stored(
                row.answered_by.as_deref(),
                row.response,
                row.digits,
                row.voicemail_left,
            ),
        })
    }
}
