//! What a live attempt heard back, with the opt-out's list entry, in one transaction.

use chrono::{DateTime, Utc};
use diesel::sqlite::Sqlite;
use diesel::RunQueryDsl;

use super::dnc::add_in;
use super::SqliteStore;
use crate::adapters::sql::bound::answers::{self, LiveAnswerRow};
use crate::adapters::sql::prepared::KeepPrepared;
use crate::domain::answer::{AnswerChange, Heard};
use crate::ports::{AttemptKey, OptOutListing, StoreError};

pub(super) async fn record(
    store: &SqliteStore,
    key: AttemptKey,
    heard: Heard,
    opt_out: Option<OptOutListing>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    store
        .write(move |conn| {
            let rows: Vec<LiveAnswerRow> =
                answers::live_answer::<Sqlite>(key).prepared().load(conn)?;
            let change = rows.into_iter().next().and_then(|row| {
                let (attempt, call) = row.answers();
                AnswerChange::of(&attempt, &call, &heard)
            });
            if let Some(change) = &change {
                for write in answers::record::<Sqlite>(key, change, now) {
                    write.prepared().execute(conn)?;
                }
            }
            if let Some(listing) = opt_out {
                add_in(
                    conn,
                    listing.scope,
                    &[(listing.number, Some(listing.reason))],
                    now,
                )?;
            }
            Ok(change.is_some())
        })
        .await
}
