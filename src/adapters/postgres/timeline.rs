//! The store as its own timeline (`timeline.url = "store"`): the attempts table, which the
//! store's transactions already keep; `write` upserts, for a timeline fed from elsewhere.

use async_trait::async_trait;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};
use diesel_async::RunQueryDsl;
use futures::FutureExt;

use super::PgStore;
use crate::adapters::sql::page::{page, resume_after};
use crate::adapters::sql::prepared::KeepPrepared;
use crate::adapters::sql::rows::{self, carrier_json, AttemptRow, TimelineRow, TIMELINE_COLUMNS};
use crate::adapters::sql::statements::FINISHED_CALL_ATTEMPTS;
use crate::adapters::sql::{as_bigint, to_ms};
use crate::domain::call::Attempt;
use crate::domain::ids::{CallId, CampaignId};
use crate::ports::{InstanceStore, Timeline, TimelineEntry, TimelineError, TimelinePage};

#[async_trait]
impl Timeline for PgStore {
    async fn ping(&self) -> Result<(), TimelineError> {
        Ok(InstanceStore::ping(self).await?)
    }

    async fn write(&self, entries: &[TimelineEntry]) -> Result<(), TimelineError> {
        if entries.is_empty() {
            return Ok(());
        }
        let campaigns: Vec<String> = entries.iter().map(|e| e.campaign_id.to_string()).collect();
        let calls: Vec<String> = entries.iter().map(|e| e.call_id.to_string()).collect();
        let numbers: Vec<i32> = entries.iter().map(|e| e.attempt.attempt as i32).collect();
        let statuses: Vec<String> = entries
            .iter()
            .map(|e| e.attempt.status.as_str().to_owned())
            .collect();
        let errors: Vec<Option<String>> = entries.iter().map(|e| e.attempt.error.clone()).collect();
        let started: Vec<i64> = entries
            .iter()
            .map(|e| to_ms(e.attempt.started_at))
            .collect();
        let ended: Vec<Option<i64>> = entries
            .iter()
            .map(|e| e.attempt.ended_at.map(to_ms))
            .collect();
        let durations: Vec<Option<i64>> = entries
            .iter()
            .map(|e| {
                e.attempt
                    .duration_ms
                    .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX))
            })
            .collect();
        let carriers: Vec<Option<String>> = entries
            .iter()
            .map(|e| carrier_json(e.attempt.carrier.as_ref()))
            .collect();
        let answered_by: Vec<Option<String>> = entries
            .iter()
            .map(|e| {
                e.attempt
                    .answer
                    .answered_by
                    .map(|by| by.as_str().to_owned())
            })
            .collect();
        let responses: Vec<Option<String>> = entries
            .iter()
            .map(|e| e.attempt.answer.response.clone())
            .collect();
        let digits: Vec<Option<String>> = entries
            .iter()
            .map(|e| e.attempt.answer.digits.clone())
            .collect();
        let voicemails: Vec<i32> = entries
            .iter()
            .map(|e| i32::from(e.attempt.answer.voicemail_left))
            .collect();
        self.read(move |conn| {
            async move {
                diesel::sql_query(format!(
                    "INSERT INTO attempts ({TIMELINE_COLUMNS}) SELECT * FROM unnest($1::text[], \
                     $2::text[], $3::int[], $4::text[], $5::text[], $6::int8[], $7::int8[], \
                     $8::int8[], $9::text[], $10::text[], $11::text[], $12::text[], $13::int[]) \
                     ON CONFLICT (campaign_id, call_id, attempt) DO UPDATE \
                     SET status = excluded.status, error = excluded.error, \
                     started_at = excluded.started_at, ended_at = excluded.ended_at, \
                     duration_ms = excluded.duration_ms, carrier = excluded.carrier, \
                     answered_by = excluded.answered_by, response = excluded.response, \
                     digits = excluded.digits, voicemail_left = excluded.voicemail_left"
                ))
                .bind::<Array<Text>, _>(campaigns)
                .bind::<Array<Text>, _>(calls)
                .bind::<Array<Integer>, _>(numbers)
                .bind::<Array<Text>, _>(statuses)
                .bind::<Array<Nullable<Text>>, _>(errors)
                .bind::<Array<BigInt>, _>(started)
                .bind::<Array<Nullable<BigInt>>, _>(ended)
                .bind::<Array<Nullable<BigInt>>, _>(durations)
                .bind::<Array<Nullable<Text>>, _>(carriers)
                .bind::<Array<Nullable<Text>>, _>(answered_by)
                .bind::<Array<Nullable<Text>>, _>(responses)
                .bind::<Array<Nullable<Text>>, _>(digits)
                .bind::<Array<Integer>, _>(voicemails)
                .prepared()
                .execute(conn)
                .await?;
                Ok(())
            }
            .boxed()
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
                async move {
                    let rows: Vec<AttemptRow> =
                        diesel::sql_query(FINISHED_CALL_ATTEMPTS.postgres())
                            .bind::<Text, _>(campaign_id.to_string())
                            .bind::<Text, _>(call_id.to_string())
                            .prepared()
                            .load(conn)
                            .await?;
                    Ok(rows::all::<_, Attempt>(rows)?)
                }
                .boxed()
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
                async move {
                    // The primary key (campaign_id, call_id, attempt) serves both the filter
                    // and the order.
                    let rows: Vec<TimelineRow> = diesel::sql_query(format!(
                        "SELECT {TIMELINE_COLUMNS} FROM attempts WHERE campaign_id = $1 \
                         AND (call_id, attempt) > ($2, $3::int) AND ended_at IS NOT NULL \
                         ORDER BY call_id, attempt LIMIT $4"
                    ))
                    .bind::<Text, _>(campaign_id.to_string())
                    .bind::<Text, _>(after_call)
                    .bind::<BigInt, _>(after_attempt)
                    .bind::<BigInt, _>(as_bigint(limit).saturating_add(1))
                    .prepared()
                    .load(conn)
                    .await?;
                    Ok(rows::all::<_, TimelineEntry>(rows)?)
                }
                .boxed()
            })
            .await?;
        Ok(page(entries, limit))
    }
}
