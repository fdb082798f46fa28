//! The store as its own timeline (`timeline.url = "store"`): the attempts table, which the
//! store's transactions already keep; `write` upserts, for a timeline fed from elsewhere.

use async_trait::async_trait;
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel::RunQueryDsl;

use super::{insert_chunk, SqliteStore, INSERT_CHUNK};

use crate::adapters::sql::page::{page, resume_after};
use crate::adapters::sql::prepared::KeepPrepared;
use crate::adapters::sql::rows::{self, carrier_json, AttemptRow, TimelineRow, TIMELINE_COLUMNS};
use crate::adapters::sql::statements::FINISHED_CALL_ATTEMPTS;
use crate::adapters::sql::{as_bigint, to_ms};
use crate::domain::call::Attempt;
use crate::domain::ids::{CallId, CampaignId};
use crate::ports::{InstanceStore, Timeline, TimelineEntry, TimelineError, TimelinePage};

/// Entries per multi-row upsert: thirteen values each, under SQLite's 32,766 variables.
const TIMELINE_CHUNK: usize = INSERT_CHUNK / 8;

#[async_trait]
impl Timeline for SqliteStore {
    async fn ping(&self) -> Result<(), TimelineError> {
        Ok(InstanceStore::ping(self).await?)
    }

    async fn write(&self, entries: &[TimelineEntry]) -> Result<(), TimelineError> {
        if entries.is_empty() {
            return Ok(());
        }
        let entries = entries.to_vec();
        SqliteStore::write(self, move |conn| {
            for chunk in entries.chunks(TIMELINE_CHUNK) {
                let placeholders =
                    vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
                let mut query = diesel::sql_query(format!(
                    "INSERT INTO attempts ({TIMELINE_COLUMNS}) VALUES {placeholders} \
                     ON CONFLICT (campaign_id, call_id, attempt) DO UPDATE SET \
                     status = excluded.status, error = excluded.error, \
                     started_at = excluded.started_at, ended_at = excluded.ended_at, \
                     duration_ms = excluded.duration_ms, carrier = excluded.carrier, \
                     answered_by = excluded.answered_by, response = excluded.response, \
                     digits = excluded.digits, voicemail_left = excluded.voicemail_left"
                ))
                .into_boxed();
                for entry in chunk {
                    let attempt = &entry.attempt;
                    query = query
                        .bind::<Text, _>(entry.campaign_id.to_string())
                        .bind::<Text, _>(entry.call_id.to_string())
                        .bind::<Integer, _>(attempt.attempt as i32)
                        .bind::<Text, _>(attempt.status.as_str())
                        .bind::<Nullable<Text>, _>(attempt.error.clone())
                        .bind::<BigInt, _>(to_ms(attempt.started_at))
                        .bind::<Nullable<BigInt>, _>(attempt.ended_at.map(to_ms))
                        .bind::<Nullable<BigInt>, _>(
                            attempt
                                .duration_ms
                                .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
                        )
                        .bind::<Nullable<Text>, _>(carrier_json(attempt.carrier.as_ref()))
                        .bind::<Nullable<Text>, _>(
                            attempt.answer.answered_by.map(|by| by.as_str().to_owned()),
                        )
                        .bind::<Nullable<Text>, _>(attempt.answer.response.clone())
                        .bind::<Nullable<Text>, _>(attempt.answer.digits.clone())
                        .bind::<Integer, _>(i32::from(attempt.answer.voicemail_left));
                }
                insert_chunk(conn, query, chunk.len(), TIMELINE_CHUNK)?;
            }
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn call_attempts(
        &self,
        campaign_id: CampaignId,
        call_id: CallId,
    ) -> Result<Vec<Attempt>, TimelineError> {
        let attempts = self
            .read(move |conn| {
                let rows: Vec<AttemptRow> = diesel::sql_query(FINISHED_CALL_ATTEMPTS.sqlite())
                    .bind::<Text, _>(campaign_id.to_string())
                    .bind::<Text, _>(call_id.to_string())
                    .prepared()
                    .load(conn)?;
                Ok(rows::all::<_, Attempt>(rows)?)
            })
            .await?;
        Ok(attempts)
    }

    async fn campaign_attempts(
        &self,
        campaign_id: CampaignId,
        page_token: Option<&str>,
        limit: usize,
    ) -> Result<TimelinePage, TimelineError> {
        let (after_call, after_attempt) = resume_after(page_token)?;
        let limit = limit.max(1);
        let entries = self
            .read(move |conn| {
                // The primary key (campaign_id, call_id, attempt) serves the filter, the start
                // after the token and the order: one range scan.
                let rows: Vec<TimelineRow> = diesel::sql_query(format!(
                    "SELECT {TIMELINE_COLUMNS} FROM attempts WHERE campaign_id = ? \
                     AND (call_id, attempt) > (?, ?) AND ended_at IS NOT NULL \
                     ORDER BY call_id, attempt LIMIT ?"
                ))
                .bind::<Text, _>(campaign_id.to_string())
                .bind::<Text, _>(after_call)
                .bind::<BigInt, _>(after_attempt)
                .bind::<BigInt, _>(as_bigint(limit).saturating_add(1))
                .prepared()
                .load(conn)?;
                Ok(rows::all::<_, TimelineEntry>(rows)?)
            })
            .await?;
        Ok(page(entries, limit))
    }
}
