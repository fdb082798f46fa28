//! What a live attempt heard back: read with its call's, written to both and counted.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel::QueryableByName;

use super::{query, Binds, Bound, Dialect};
use crate::adapters::sql::statements::Statement;
use crate::adapters::sql::{as_bigint, from_ms, millis, to_ms};
use crate::domain::answer::{Answer, AnswerChange};
use crate::domain::call::CallStatus;
use crate::domain::carrier::Voice;
use crate::domain::ids::{CallId, CampaignId};
use crate::domain::message::Message;
use crate::domain::metadata::Metadata;
use crate::domain::phone::PhoneNumber;
use crate::ports::{AttemptKey, CallResult, StoreError};

const ANSWER_OF: &str = "a.answered_by, a.response, a.digits, a.voicemail_left, \
     c.answered_by AS call_answered_by, c.response AS call_response, c.digits AS call_digits, \
     c.voicemail_left AS call_voicemail_left \
     FROM attempts a JOIN calls c ON c.campaign_id = a.campaign_id AND c.id = a.call_id \
     WHERE a.campaign_id = ? AND a.call_id = ? AND a.attempt = ? AND a.status = 'dialing' \
     AND c.status = 'dialing' AND c.attempt_count = a.attempt";

/// The answer of a live attempt and what its call shows. PostgreSQL reads it after locking the
/// call's row (`LOCK_CALL`), in a statement of its own, so the read sees every answer
/// committed before the lock was granted.
static LIVE_ANSWER: Statement = Statement::new(|| format!("SELECT {ANSWER_OF}"));

/// The call's row, locked: the row every writer of a call's attempt locks first.
static LOCK_CALL: Statement =
    Statement::new(|| "SELECT id FROM calls WHERE campaign_id = ? AND id = ? FOR UPDATE".into());

static SET_ATTEMPT_ANSWER: Statement = Statement::new(|| {
    "UPDATE attempts SET answered_by = ?, response = ?, digits = ?, voicemail_left = ? \
     WHERE campaign_id = ? AND call_id = ? AND attempt = ?"
        .into()
});

static SET_CALL_ANSWER: Statement = Statement::new(|| {
    "UPDATE calls SET answered_by = ?, response = ?, digits = ?, voicemail_left = ?, \
     updated_at = ? WHERE campaign_id = ? AND id = ?"
        .into()
});

static COUNT_ANSWERS: Statement = Statement::new(|| {
    "UPDATE campaign_stats SET voicemails_left = voicemails_left + ?, \
     machine_answered = machine_answered + ?, updated_at = ? WHERE campaign_id = ?"
        .into()
});

static COUNT_RESPONSE: Statement = Statement::new(|| {
    "INSERT INTO campaign_responses (campaign_id, response, calls) VALUES (?, ?, ?) \
     ON CONFLICT (campaign_id, response) DO UPDATE \
     SET calls = campaign_responses.calls + excluded.calls"
        .into()
});

#[derive(QueryableByName)]
pub struct LiveAnswerRow {
    #[diesel(sql_type = Nullable<Text>)]
    answered_by: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    response: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    digits: Option<String>,
    #[diesel(sql_type = Integer)]
    voicemail_left: i32,
    #[diesel(sql_type = Nullable<Text>)]
    call_answered_by: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    call_response: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    call_digits: Option<String>,
    #[diesel(sql_type = Integer)]
    call_voicemail_left: i32,
}

impl LiveAnswerRow {
    /// The attempt's answer and its call's.
    pub fn answers(self) -> (Answer, Answer) {
        (
            Answer::stored(
                self.answered_by.as_deref(),
                self.response,
                self.digits,
                self.voicemail_left,
            ),
            Answer::stored(
                self.call_answered_by.as_deref(),
                self.call_response,
                self.call_digits,
                self.call_voicemail_left,
            ),
        )
    }
}

pub fn live_answer<DB: Dialect>(key: AttemptKey) -> Bound<DB> {
    query::<DB>(&LIVE_ANSWER)
        .text(key.campaign_id.to_string())
        .text(key.call_id.to_string())
        .int(i32::try_from(key.attempt).unwrap_or(i32::MAX))
}

/// Locks the call of `key` (PostgreSQL; SQLite's writes are serialized already).
pub fn lock_call<DB: Dialect>(key: AttemptKey) -> Bound<DB> {
    query::<DB>(&LOCK_CALL)
        .text(key.campaign_id.to_string())
        .text(key.call_id.to_string())
}

fn bind_answer<DB: Dialect>(query: Bound<DB>, answer: &Answer) -> Bound<DB> {
    query
        .opt_text(answer.answered_by.map(|by| by.as_str().to_owned()))
        .opt_text(answer.response.clone())
        .opt_text(answer.digits.clone())
        .int(i32::from(answer.voicemail_left))
}

/// The writes of `change` to the attempt `key`, its call and its campaign's counters.
pub fn record<DB: Dialect>(
    key: AttemptKey,
    change: &AnswerChange,
    now: DateTime<Utc>,
) -> Vec<Bound<DB>> {
    let campaign = key.campaign_id.to_string();
    let mut writes = vec![
        bind_answer(query::<DB>(&SET_ATTEMPT_ANSWER), &change.attempt)
            .text(campaign.clone())
            .text(key.call_id.to_string())
            .int(i32::try_from(key.attempt).unwrap_or(i32::MAX)),
        bind_answer(query::<DB>(&SET_CALL_ANSWER), &change.call)
            .big(to_ms(now))
            .text(campaign.clone())
            .text(key.call_id.to_string()),
    ];
    let delta = &change.delta;
    if delta.voicemails_left != 0 || delta.machine_answered != 0 {
        writes.push(
            query::<DB>(&COUNT_ANSWERS)
                .big(delta.voicemails_left)
                .big(delta.machine_answered)
                .big(to_ms(now))
                .text(campaign.clone()),
        );
    }
    for (response, by) in &delta.responses {
        if *by != 0 {
            writes.push(
                query::<DB>(&COUNT_RESPONSE)
                    .text(campaign.clone())
                    .text(response.clone())
                    .big(*by),
            );
        }
    }
    writes
}

/// Keeps, for each of a campaign's begun attempts (a claimed call not yet begun will begin
/// with the new message), the message it began with; an attempt that already has one keeps the
/// first. An attempt handed back unspent is made again under the same number: its kept
/// message goes with it (`FORGET_KEPT_MESSAGE`).
static KEEP_LIVE_MESSAGES: Statement = Statement::new(|| {
    "INSERT INTO attempt_messages (campaign_id, call_id, attempt, message, kept_at) \
     SELECT campaign_id, id, attempt_count, ?, {now_ms} FROM calls \
     WHERE campaign_id = ? AND status = 'dialing' AND placed_at IS NOT NULL \
     ON CONFLICT DO NOTHING"
        .into()
});

/// The kept message of an attempt handed back unspent.
pub static FORGET_KEPT_MESSAGE: Statement = Statement::new(|| {
    "DELETE FROM attempt_messages WHERE campaign_id = ? AND call_id = ? AND attempt = ?".into()
});

static ATTEMPT_MESSAGE: Statement = Statement::new(|| {
    "SELECT message FROM attempt_messages WHERE campaign_id = ? AND call_id = ? AND attempt = ?"
        .into()
});

static PRUNE_ATTEMPT_MESSAGES: Statement =
    Statement::new(|| "DELETE FROM attempt_messages WHERE kept_at < {now_ms} - ?".into());

/// How long a kept message outlives its keeping: longer than any call lasts (Twilio ends a
/// call at 24 h at most).
pub const ATTEMPT_MESSAGE_KEPT: std::time::Duration = std::time::Duration::from_secs(2 * 86_400);

/// The statement keeping the message `before` for the campaign's live attempts when an update
/// to `after` changes what its calls play; `None` when the campaign spoke no message of its
/// own or the update leaves it as it was. Attempts that begin after the change use the new one.
pub fn keep_live_messages<DB: Dialect>(
    id: CampaignId,
    before: &Voice,
    after: &Voice,
) -> Option<Bound<DB>> {
    let message = before.message()?;
    if before.audio == after.audio {
        return None;
    }
    let json = serde_json::to_string(message).ok()?;
    Some(
        query::<DB>(&KEEP_LIVE_MESSAGES)
            .text(json)
            .text(id.to_string()),
    )
}

#[derive(QueryableByName)]
pub struct KeptMessageRow {
    #[diesel(sql_type = Text)]
    pub message: String,
}

impl KeptMessageRow {
    /// The message kept; a row that no longer parses (written by another release) is as if
    /// none were kept, and the campaign's message is spoken.
    pub fn message(self) -> Option<Message> {
        serde_json::from_str(&self.message).ok()
    }
}

pub fn attempt_message<DB: Dialect>(key: AttemptKey) -> Bound<DB> {
    query::<DB>(&ATTEMPT_MESSAGE)
        .text(key.campaign_id.to_string())
        .text(key.call_id.to_string())
        .int(i32::try_from(key.attempt).unwrap_or(i32::MAX))
}

pub fn prune_attempt_messages<DB: Dialect>() -> Bound<DB> {
    query::<DB>(&PRUNE_ATTEMPT_MESSAGES).big(millis(ATTEMPT_MESSAGE_KEPT))
}

/// A campaign's calls with what they heard back, a page in call id order.
static RESULTS: Statement = Statement::new(|| {
    "SELECT id, phone_number, status, attempt_count, last_error, answered_by, response, \
     digits, voicemail_left, last_attempt_at, metadata FROM calls \
     WHERE campaign_id = ? AND id > ? ORDER BY id LIMIT ?"
        .into()
});

/// Every key of the metadata of a campaign's calls (sorted by the caller: byte order, the
/// same in both stores).
static METADATA_KEYS: Statement = Statement::dialects(
    || {
        "SELECT DISTINCT j.key AS key FROM calls c, json_each(c.metadata) j \
         WHERE c.campaign_id = ? AND c.metadata IS NOT NULL"
            .into()
    },
    || {
        "SELECT DISTINCT k AS key FROM calls c, jsonb_object_keys(c.metadata::jsonb) k \
         WHERE c.campaign_id = ? AND c.metadata IS NOT NULL"
            .into()
    },
);

#[derive(QueryableByName)]
pub struct ResultRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    phone_number: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    attempt_count: i32,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    answered_by: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    response: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    digits: Option<String>,
    #[diesel(sql_type = Integer)]
    voicemail_left: i32,
    #[diesel(sql_type = Nullable<BigInt>)]
    last_attempt_at: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    metadata: Option<String>,
}

impl TryFrom<ResultRow> for CallResult {
    type Error = StoreError;

    fn try_from(row: ResultRow) -> Result<Self, StoreError> {
        Ok(CallResult {
            call_id: row
                .id
                .parse()
                .map_err(|_| StoreError::Internal(format!("corrupt call id {:?}", row.id)))?,
            phone_number: PhoneNumber::from_canonical(row.phone_number),
            status: CallStatus::parse(&row.status).ok_or_else(|| {
                StoreError::Internal(format!("corrupt call status {:?}", row.status))
            })?,
            attempts: row.attempt_count.max(0) as u32,
            last_error: row.last_error,
            answer: Answer::stored(
                row.answered_by.as_deref(),
                row.response,
                row.digits,
                row.voicemail_left,
            ),
            last_attempt_at: row.last_attempt_at.map(from_ms),
            metadata: row.metadata.map(Metadata::from_stored),
        })
    }
}

#[derive(QueryableByName)]
pub struct KeyNameRow {
    #[diesel(sql_type = Text)]
    pub key: String,
}

pub fn results<DB: Dialect>(
    campaign_id: CampaignId,
    after: Option<CallId>,
    limit: usize,
) -> Bound<DB> {
    query::<DB>(&RESULTS)
        .text(campaign_id.to_string())
        .text(after.map(|id| id.to_string()).unwrap_or_default())
        .big(as_bigint(limit))
}

pub fn metadata_keys<DB: Dialect>(campaign_id: CampaignId) -> Bound<DB> {
    query::<DB>(&METADATA_KEYS).text(campaign_id.to_string())
}
