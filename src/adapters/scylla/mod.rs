//! The attempt timeline in Scylla (or Cassandra), when `timeline.url` is `scylla://...`.
//!
//! Every statement is prepared once at connect, marked idempotent (each write puts the same
//! values under the same key, so the driver may retry it) and runs at `LOCAL_QUORUM`. Reads of
//! a campaign page for real: each API page is one or more server pages, resumed from the
//! server's paging state, which the page token carries.

pub mod schema;

use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::response::{PagingState, PagingStateResponse};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use scylla::value::{CqlTimestamp, MaybeUnset};
use uuid::Uuid;

use self::schema::{added_column, bucket_of, schema_statements, Statements, BUCKETS};
pub use self::schema::{ScyllaUrl, UrlError};
use crate::domain::answer::{Answer, AnsweredBy};
use crate::domain::call::{Attempt, AttemptStatus};
use crate::domain::carrier::CarrierCall;
use crate::domain::ids::{CallId, CampaignId};
use crate::ports::{Timeline, TimelineEntry, TimelineError, TimelinePage};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Writes in flight at once per `write` call.
const WRITE_CONCURRENCY: usize = 64;

pub struct ScyllaTimeline {
    session: Session,
    insert_call_attempt: PreparedStatement,
    insert_campaign_attempt: PreparedStatement,
    select_call_attempts: PreparedStatement,
    select_campaign_bucket: PreparedStatement,
}

fn unavailable(what: &str, err: impl std::fmt::Display) -> TimelineError {
    TimelineError::Unavailable(format!("scylla: {what}: {err}"))
}

fn internal(what: &str, err: impl std::fmt::Display) -> TimelineError {
    TimelineError::Internal(format!("scylla: {what}: {err}"))
}

async fn open_session(url: &ScyllaUrl) -> Result<Session, TimelineError> {
    SessionBuilder::new()
        .known_nodes(&url.nodes)
        .connection_timeout(CONNECT_TIMEOUT)
        .build()
        .await
        .map_err(|err| unavailable(&format!("cannot connect to {}", url.nodes.join(",")), err))
}

/// Applies the schema under `cql/` to the cluster at `url`; returns the files applied. Every
/// statement is `IF NOT EXISTS`, so running it again changes nothing.
pub async fn migrate(url: &ScyllaUrl) -> Result<Vec<String>, TimelineError> {
    let session = open_session(url).await?;
    let mut applied: Vec<String> = Vec::new();
    for (file, statement) in schema_statements(&url.keyspace) {
        let added = added_column(&statement);
        if let Some((table, column)) = &added {
            if has_column(&session, &url.keyspace, table, column).await? {
                continue;
            }
        }
        match session.query_unpaged(statement, ()).await {
            Ok(_) => {}
            // Another process migrating at the same time added it between the check and here.
            Err(err) if added.is_some() && already_added(&err.to_string()) => {}
            Err(err) => return Err(internal(&format!("cql/{file}"), err)),
        }
        if applied.last().map(String::as_str) != Some(file) {
            applied.push(file.to_owned());
        }
    }
    session
        .await_schema_agreement()
        .await
        .map_err(|err| unavailable("schema agreement", err))?;
    Ok(applied)
}

/// Whether an `ALTER TABLE … ADD` failed because the column is there (Scylla and Cassandra word
/// it the same way).
fn already_added(error: &str) -> bool {
    error.contains("conflicts with an existing column") || error.contains("already exists")
}

/// Whether `keyspace.table` has `column`, as the cluster's schema says. Unquoted CQL names are
/// folded to lower case, and the schema tables keep them so.
async fn has_column(
    session: &Session,
    keyspace: &str,
    table: &str,
    column: &str,
) -> Result<bool, TimelineError> {
    let rows = session
        .query_unpaged(
            "SELECT column_name FROM system_schema.columns \
             WHERE keyspace_name = ? AND table_name = ? AND column_name = ?",
            (
                keyspace.to_ascii_lowercase(),
                table.to_ascii_lowercase(),
                column.to_ascii_lowercase(),
            ),
        )
        .await
        .map_err(|err| unavailable("read system_schema.columns", err))?
        .into_rows_result()
        .map_err(|err| internal("read system_schema.columns", err))?;
    Ok(rows.rows_num() > 0)
}

impl ScyllaTimeline {
    pub async fn connect(url: &ScyllaUrl) -> Result<Self, TimelineError> {
        let session = open_session(url).await?;
        let statements = Statements::new(&url.keyspace);
        let prepare = |text: String| {
            let session = &session;
            async move {
                let mut prepared = session.prepare(text.as_str()).await.map_err(|err| {
                    unavailable(
                        &format!("cannot prepare {text:?} (has `outbound migrate` run?)"),
                        err,
                    )
                })?;
                prepared.set_is_idempotent(true);
                prepared.set_consistency(Consistency::LocalQuorum);
                Ok::<_, TimelineError>(prepared)
            }
        };
        Ok(Self {
            insert_call_attempt: prepare(statements.insert_call_attempt).await?,
            insert_campaign_attempt: prepare(statements.insert_campaign_attempt).await?,
            select_call_attempts: prepare(statements.select_call_attempts).await?,
            select_campaign_bucket: prepare(statements.select_campaign_bucket).await?,
            session,
        })
    }

    async fn write_one(&self, entry: &TimelineEntry) -> Result<(), TimelineError> {
        let (c, k) = entry_values(entry);
        // Empty fields unset, not null: a null is a tombstone. Every write of a key carries the
        // same values, so an unset field never hides a different earlier one.
        use MaybeUnset as U;
        let call_row = (
            c.0,
            c.1,
            c.2,
            c.3,
            U::from_option(c.4),
            c.5,
            U::from_option(c.6),
            U::from_option(c.7),
            U::from_option(c.8),
            U::from_option(c.9),
            U::from_option(c.10),
            U::from_option(c.11),
            c.12,
        );
        let campaign_row = (
            k.0,
            k.1,
            k.2,
            k.3,
            k.4,
            U::from_option(k.5),
            k.6,
            U::from_option(k.7),
            U::from_option(k.8),
            U::from_option(k.9),
            U::from_option(k.10),
            U::from_option(k.11),
            U::from_option(k.12),
            k.13,
        );
        let (call, campaign) = futures::join!(
            self.session
                .execute_unpaged(&self.insert_call_attempt, call_row),
            self.session
                .execute_unpaged(&self.insert_campaign_attempt, campaign_row),
        );
        call.map_err(|err| unavailable("write call_attempts", err))?;
        campaign.map_err(|err| unavailable("write campaign_attempts", err))?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Row mapping, pure.

type CallAttemptValues = (
    Uuid,
    i32,
    Uuid,
    String,
    Option<String>,
    CqlTimestamp,
    Option<CqlTimestamp>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    bool,
);
type CampaignAttemptValues = (
    Uuid,
    i32,
    Uuid,
    i32,
    String,
    Option<String>,
    CqlTimestamp,
    Option<CqlTimestamp>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    bool,
);

fn timestamp(at: DateTime<Utc>) -> CqlTimestamp {
    CqlTimestamp(at.timestamp_millis())
}

fn from_timestamp(at: CqlTimestamp) -> Result<DateTime<Utc>, TimelineError> {
    Utc.timestamp_millis_opt(at.0)
        .single()
        .ok_or_else(|| internal("corrupt row", format!("timestamp {} out of range", at.0)))
}

/// The bound values of both inserts for one entry.
fn entry_values(entry: &TimelineEntry) -> (CallAttemptValues, CampaignAttemptValues) {
    let attempt = &entry.attempt;
    let number = attempt.attempt.min(i32::MAX as u32) as i32;
    let duration = attempt.duration_ms.map(|ms| ms.min(i64::MAX as u64) as i64);
    let status = attempt.status.as_str().to_owned();
    let carrier = attempt
        .carrier
        .as_ref()
        .and_then(|carrier| serde_json::to_string(carrier).ok());
    let answer = &attempt.answer;
    let answered_by = answer.answered_by.map(|by| by.as_str().to_owned());
    (
        (
            entry.call_id.0,
            number,
            entry.campaign_id.0,
            status.clone(),
            attempt.error.clone(),
            timestamp(attempt.started_at),
            attempt.ended_at.map(timestamp),
            duration,
            carrier.clone(),
            answered_by.clone(),
            answer.response.clone(),
            answer.digits.clone(),
            answer.voicemail_left,
        ),
        (
            entry.campaign_id.0,
            i32::from(bucket_of(&entry.call_id.0)),
            entry.call_id.0,
            number,
            status,
            attempt.error.clone(),
            timestamp(attempt.started_at),
            attempt.ended_at.map(timestamp),
            duration,
            carrier,
            answered_by,
            answer.response.clone(),
            answer.digits.clone(),
            answer.voicemail_left,
        ),
    )
}

/// `attempt, status, error, started_at, ended_at, duration_ms` as both tables store them.
type AttemptColumns = (
    i32,
    String,
    Option<String>,
    CqlTimestamp,
    Option<CqlTimestamp>,
    Option<i64>,
);

/// `carrier, answered_by, response, digits, voicemail_left`: null in rows written before
/// `040_attempt_details.cql`.
type DetailColumns = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<bool>,
);

fn attempt_from_columns(
    columns: AttemptColumns,
    details: DetailColumns,
) -> Result<Attempt, TimelineError> {
    let (attempt, status, error, started_at, ended_at, duration_ms) = columns;
    let (carrier, answered_by, response, digits, voicemail_left) = details;
    // The carrier's record is shown, never decided on: one that does not parse is left out
    // rather than failing the read, as the SQL stores do.
    let carrier = carrier.and_then(|json| serde_json::from_str::<CarrierCall>(&json).ok());
    Ok(Attempt {
        attempt: u32::try_from(attempt)
            .map_err(|_| internal("corrupt row", format!("attempt {attempt}")))?,
        status: AttemptStatus::parse(&status)
            .ok_or_else(|| internal("corrupt row", format!("status {status:?}")))?,
        error,
        started_at: from_timestamp(started_at)?,
        ended_at: ended_at.map(from_timestamp).transpose()?,
        duration_ms: duration_ms.map(|ms| ms.max(0) as u64),
        carrier,
        answer: Answer {
            answered_by: answered_by
                .map(|by| {
                    AnsweredBy::parse(&by)
                        .ok_or_else(|| internal("corrupt row", format!("answered_by {by:?}")))
                })
                .transpose()?,
            response,
            digits,
            voicemail_left: voicemail_left.unwrap_or(false),
        },
    })
}

/// A server that refuses a request resuming from a client's paging state is refusing the
/// state: the client sent a damaged token.
fn paging_error(err: ExecutionError, resumed: bool) -> TimelineError {
    match &err {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::Invalid | DbError::ProtocolError | DbError::SyntaxError,
            _,
        )) if resumed => TimelineError::InvalidPageToken,
        _ => unavailable("read campaign_attempts", err),
    }
}

/// A row of either select: the other key (campaign or call id), then the attempt's columns.
type KeyedAttemptRow = (
    Uuid,
    i32,
    String,
    Option<String>,
    CqlTimestamp,
    Option<CqlTimestamp>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<bool>,
);

fn keyed_attempt(row: KeyedAttemptRow) -> Result<(Uuid, Attempt), TimelineError> {
    let (key, attempt, status, error, started_at, ended_at, duration_ms, c, a, r, d, v) = row;
    Ok((
        key,
        attempt_from_columns(
            (attempt, status, error, started_at, ended_at, duration_ms),
            (c, a, r, d, v),
        )?,
    ))
}

// ---------------------------------------------------------------------------------------------
// Page tokens: where a campaign listing resumes, opaque to clients.

const TOKEN_VERSION: u8 = 1;

/// The campaign being listed, the bucket to read next and the server's paging state within it
/// (`None`: from its start). The campaign is in the token so that a token cannot resume the
/// listing of another campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    campaign_id: Uuid,
    bucket: u8,
    state: Option<Vec<u8>>,
}

impl Cursor {
    fn start(campaign_id: Uuid) -> Self {
        Self {
            campaign_id,
            bucket: 0,
            state: None,
        }
    }

    fn encode(&self) -> String {
        let mut bytes = vec![TOKEN_VERSION, self.bucket];
        bytes.extend_from_slice(self.campaign_id.as_bytes());
        if let Some(state) = &self.state {
            bytes.extend_from_slice(state);
        }
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn decode(token: &str, campaign_id: Uuid) -> Result<Self, TimelineError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TimelineError::InvalidPageToken)?;
        let [TOKEN_VERSION, bucket, rest @ ..] = bytes.as_slice() else {
            return Err(TimelineError::InvalidPageToken);
        };
        let (id, state) = rest
            .split_at_checked(16)
            .ok_or(TimelineError::InvalidPageToken)?;
        if *bucket >= BUCKETS || id != campaign_id.as_bytes() {
            return Err(TimelineError::InvalidPageToken);
        }
        Ok(Self {
            campaign_id,
            bucket: *bucket,
            state: (!state.is_empty()).then(|| state.to_vec()),
        })
    }

    fn paging_state(&self) -> PagingState {
        match &self.state {
            Some(bytes) => PagingState::new_from_raw_bytes(bytes.as_slice()),
            None => PagingState::start(),
        }
    }

    /// Where to go after a server page of this bucket.
    fn advance(&mut self, response: PagingStateResponse) {
        match response {
            PagingStateResponse::HasMorePages { state } => {
                self.state = state.as_bytes_slice().map(|bytes| bytes.to_vec());
            }
            PagingStateResponse::NoMorePages => {
                self.bucket += 1;
                self.state = None;
            }
        }
    }

    fn finished(&self) -> bool {
        self.bucket >= BUCKETS
    }
}

// ---------------------------------------------------------------------------------------------

#[async_trait]
impl Timeline for ScyllaTimeline {
    async fn ping(&self) -> Result<(), TimelineError> {
        self.session
            .query_unpaged("SELECT release_version FROM system.local", ())
            .await
            .map_err(|err| unavailable("ping", err))?;
        Ok(())
    }

    async fn write(&self, entries: &[TimelineEntry]) -> Result<(), TimelineError> {
        for chunk in entries.chunks(WRITE_CONCURRENCY) {
            let mut writes = Vec::with_capacity(chunk.len());
            for entry in chunk {
                writes.push(self.write_one(entry));
            }
            futures::future::try_join_all(writes).await?;
        }
        Ok(())
    }

    async fn call_attempts(
        &self,
        campaign_id: CampaignId,
        call_id: CallId,
    ) -> Result<Vec<Attempt>, TimelineError> {
        // One call has a handful of attempts: one partition, one page.
        let result = self
            .session
            .execute_unpaged(&self.select_call_attempts, (call_id.0,))
            .await
            .map_err(|err| unavailable("read call_attempts", err))?
            .into_rows_result()
            .map_err(|err| internal("read call_attempts", err))?;
        let mut attempts = Vec::new();
        for row in result
            .rows::<KeyedAttemptRow>()
            .map_err(|err| internal("read call_attempts", err))?
        {
            let (campaign, attempt) =
                keyed_attempt(row.map_err(|err| internal("read call_attempts", err))?)?;
            if campaign == campaign_id.0 {
                attempts.push(attempt);
            }
        }
        Ok(attempts)
    }

    async fn campaign_attempts(
        &self,
        campaign_id: CampaignId,
        page_token: Option<&str>,
        limit: usize,
    ) -> Result<TimelinePage, TimelineError> {
        let mut cursor = match page_token {
            Some(token) => Cursor::decode(token, campaign_id.0)?,
            None => Cursor::start(campaign_id.0),
        };
        let limit = limit.clamp(1, i32::MAX as usize);
        let mut entries = Vec::new();
        while entries.len() < limit && !cursor.finished() {
            let mut statement = self.select_campaign_bucket.clone();
            statement.set_page_size((limit - entries.len()) as i32);
            let (result, response) = self
                .session
                .execute_single_page(
                    &statement,
                    (campaign_id.0, i32::from(cursor.bucket)),
                    cursor.paging_state(),
                )
                .await
                .map_err(|err| paging_error(err, cursor.state.is_some()))?;
            let result = result
                .into_rows_result()
                .map_err(|err| internal("read campaign_attempts", err))?;
            for row in result
                .rows::<KeyedAttemptRow>()
                .map_err(|err| internal("read campaign_attempts", err))?
            {
                let (call_id, attempt) =
                    keyed_attempt(row.map_err(|err| internal("read campaign_attempts", err))?)?;
                entries.push(TimelineEntry {
                    campaign_id,
                    call_id: CallId(call_id),
                    attempt,
                });
            }
            cursor.advance(response);
        }
        Ok(TimelinePage {
            entries,
            next_page_token: (!cursor.finished()).then(|| cursor.encode()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(attempt: u32, status: AttemptStatus, error: Option<&str>) -> TimelineEntry {
        let started = Utc
            .timestamp_millis_opt(1_764_000_000_123)
            .single()
            .unwrap_or_default();
        TimelineEntry {
            campaign_id: CampaignId(Uuid::from_u128(1)),
            call_id: CallId(Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0025)),
            attempt: Attempt {
                attempt,
                status,
                error: error.map(str::to_owned),
                started_at: started,
                ended_at: Some(started + chrono::Duration::milliseconds(1_500)),
                duration_ms: Some(1_500),
                carrier: None,
                answer: Answer::default(),
            },
        }
    }

    /// An attempt that reached a person who pressed keys, with the carrier's record.
    fn answered(attempt: u32) -> TimelineEntry {
        let mut entry = entry(attempt, AttemptStatus::Completed, None);
        entry.attempt.carrier = Some(CarrierCall {
            sid: Some("CA0123".to_owned()),
            sip_code: Some(200),
            answered_by: Some("human".to_owned()),
            duration_secs: Some(12),
            ..CarrierCall::default()
        });
        entry.attempt.answer = Answer {
            answered_by: Some(AnsweredBy::Human),
            response: Some("confirmed".to_owned()),
            digits: Some("31".to_owned()),
            voicemail_left: true,
        };
        entry
    }

    fn details(values: &CallAttemptValues) -> DetailColumns {
        (
            values.8.clone(),
            values.9.clone(),
            values.10.clone(),
            values.11.clone(),
            Some(values.12),
        )
    }

    #[test]
    fn entry_values_bind_every_column_in_order() {
        let entry = entry(2, AttemptStatus::Failed, Some("busy"));
        let (call, campaign) = entry_values(&entry);
        assert_eq!(
            (call.0, call.1, call.2, call.3.as_str(), call.4.as_deref()),
            (
                entry.call_id.0,
                2,
                entry.campaign_id.0,
                "failed",
                Some("busy")
            )
        );
        assert_eq!(
            (call.5, call.6, call.7),
            (
                CqlTimestamp(1_764_000_000_123),
                Some(CqlTimestamp(1_764_000_001_623)),
                Some(1_500)
            )
        );
        assert_eq!(details(&call), (None, None, None, None, Some(false)));
        assert_eq!(campaign.0, entry.campaign_id.0);
        assert_eq!(campaign.1, 0x25 % i32::from(BUCKETS));
        assert_eq!(campaign.2, entry.call_id.0);
        assert_eq!((campaign.3, campaign.4.as_str()), (2, "failed"));

        let entry = answered(1);
        let (call, campaign) = entry_values(&entry);
        assert_eq!(
            (
                call.9.as_deref(),
                call.10.as_deref(),
                call.11.as_deref(),
                call.12
            ),
            (Some("human"), Some("confirmed"), Some("31"), true)
        );
        assert!(call
            .8
            .as_deref()
            .is_some_and(|json| json.contains("CA0123")));
        assert_eq!(
            (
                &campaign.9,
                &campaign.10,
                &campaign.11,
                &campaign.12,
                campaign.13
            ),
            (&call.8, &call.9, &call.10, &call.11, call.12)
        );
    }

    #[test]
    fn rows_map_back_to_the_attempt_written() {
        for entry in [
            entry(1, AttemptStatus::Completed, None),
            entry(3, AttemptStatus::Failed, Some("no_answer")),
            answered(2),
        ] {
            let (call, _) = entry_values(&entry);
            let details = details(&call);
            let columns = (call.1, call.3, call.4, call.5, call.6, call.7);
            assert_eq!(
                attempt_from_columns(columns, details).ok(),
                Some(entry.attempt)
            );
        }
    }

    #[test]
    fn rows_written_before_the_details_read_without_them() {
        let columns = (1, "completed".to_owned(), None, CqlTimestamp(0), None, None);
        let attempt = attempt_from_columns(columns, (None, None, None, None, None));
        let attempt = attempt.ok().map(|a| (a.carrier, a.answer));
        assert_eq!(attempt, Some((None, Answer::default())));
    }

    #[test]
    fn corrupt_rows_are_errors_not_panics() {
        let good = (1, "completed".to_owned(), None, CqlTimestamp(0), None, None);
        let none = || (None, None, None, None, None);
        assert!(attempt_from_columns(good.clone(), none()).is_ok());
        assert!(
            attempt_from_columns((-1, good.1.clone(), None, good.3, None, None), none()).is_err()
        );
        assert!(
            attempt_from_columns((1, "ringing".into(), None, good.3, None, None), none()).is_err()
        );
        assert!(attempt_from_columns(
            (1, good.1.clone(), None, CqlTimestamp(i64::MAX), None, None),
            none()
        )
        .is_err());
        let verdict = (None, Some("robot".to_owned()), None, None, None);
        assert!(attempt_from_columns(good.clone(), verdict).is_err());
        // A carrier record that does not parse is left out, not an error.
        let carrier = (Some("{not json".to_owned()), None, None, None, Some(false));
        let attempt = attempt_from_columns(good, carrier);
        assert_eq!(attempt.ok().map(|a| a.carrier), Some(None));
    }

    const CAMPAIGN: Uuid = Uuid::from_u128(0x0193_aaaa_bbbb_7ccc_8ddd_eeee_ffff_0001);

    #[test]
    fn page_tokens_round_trip() {
        for cursor in [
            Cursor::start(CAMPAIGN),
            Cursor {
                campaign_id: CAMPAIGN,
                bucket: 7,
                state: Some(vec![0, 1, 2, 255]),
            },
            Cursor {
                campaign_id: CAMPAIGN,
                bucket: BUCKETS - 1,
                state: None,
            },
        ] {
            assert_eq!(
                Cursor::decode(&cursor.encode(), CAMPAIGN).ok(),
                Some(cursor)
            );
        }
    }

    #[test]
    fn bad_page_tokens_are_refused() {
        let token = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let with_campaign = |version: u8, bucket: u8, id: Uuid| {
            let mut bytes = vec![version, bucket];
            bytes.extend_from_slice(id.as_bytes());
            bytes.push(7);
            URL_SAFE_NO_PAD.encode(bytes)
        };
        let other_campaign = with_campaign(TOKEN_VERSION, 0, Uuid::from_u128(9));
        let wrong_version = with_campaign(2, 0, CAMPAIGN);
        let bucket_past_end = with_campaign(TOKEN_VERSION, BUCKETS, CAMPAIGN);
        let too_short = token(&[TOKEN_VERSION, 0, 1, 2]);
        for token in [
            "",
            "%%%",
            &other_campaign,
            &wrong_version,
            &bucket_past_end,
            &too_short,
        ] {
            assert!(
                matches!(
                    Cursor::decode(token, CAMPAIGN),
                    Err(TimelineError::InvalidPageToken)
                ),
                "{token:?}"
            );
        }
        assert!(Cursor::decode(&with_campaign(TOKEN_VERSION, 3, CAMPAIGN), CAMPAIGN).is_ok());
    }

    #[test]
    fn a_refused_resume_is_a_bad_token_and_an_outage_is_not() {
        let refused = || {
            ExecutionError::LastAttemptError(RequestAttemptError::DbError(
                DbError::ProtocolError,
                "invalid paging state".into(),
            ))
        };
        assert!(matches!(
            paging_error(refused(), true),
            TimelineError::InvalidPageToken
        ));
        assert!(matches!(
            paging_error(refused(), false),
            TimelineError::Unavailable(_)
        ));
        assert!(matches!(
            paging_error(ExecutionError::EmptyPlan, true),
            TimelineError::Unavailable(_)
        ));
    }

    #[test]
    fn cursor_walks_every_bucket_then_stops() {
        let mut cursor = Cursor::start(CAMPAIGN);
        cursor.advance(PagingStateResponse::HasMorePages {
            state: PagingState::new_from_raw_bytes(&[9u8, 9][..]),
        });
        assert_eq!(cursor.bucket, 0);
        assert_eq!(
            cursor.paging_state(),
            PagingState::new_from_raw_bytes(&[9u8, 9][..])
        );
        let resumed = Cursor::decode(&cursor.encode(), CAMPAIGN).ok();
        assert_eq!(resumed.as_ref(), Some(&cursor));
        for expected in 1..=BUCKETS {
            cursor.advance(PagingStateResponse::NoMorePages);
            assert_eq!(cursor.bucket, expected);
            assert_eq!(cursor.paging_state(), PagingState::start());
        }
        assert!(cursor.finished());
    }
}
