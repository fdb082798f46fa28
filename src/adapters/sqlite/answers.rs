//! What a live attempt heard back, with the opt-out's list entry, in one transaction.

use chrono::{DateTime, Utc};
use diesel::sqlite::{Sqlite, SqliteConnection};
use diesel::RunQueryDsl;

use super::dnc::add_in;
use super::SqliteStore;
use crate::adapters::sql::bound::answers::{self, LiveAnswerRow};
use crate::adapters::sql::prepared::KeepPrepared;
use crate::adapters::sql::{webhooks, Failure};
use crate::domain::answer::{AnswerChange, Heard};
use crate::ports::{AttemptKey, DncAdded, OptOutListing, StoreError};

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
                    write.prepared().run(conn)?;
                }
            }
            if let Some(listing) = opt_out {
                list_in(conn, listing, now)?;
            }
            Ok(change.is_some())
        })
        .await
}

pub(super) async fn list_opt_out(
    store: &SqliteStore,
    listing: OptOutListing,
    now: DateTime<Utc>,
) -> Result<DncAdded, StoreError> {
    store.write(move |conn| list_in(conn, listing, now)).await
}

/// Lists an opt-out in the caller's transaction, with its event when the number is new.
fn list_in(
    conn: &mut SqliteConnection,
    listing: OptOutListing,
    now: DateTime<Utc>,
) -> Result<DncAdded, Failure> {
    let numbers = [(listing.number.clone(), Some(listing.reason.clone()))];
    let added = add_in(conn, listing.scope, &numbers, now)?;
    if added.added > 0 {
        webhooks::opt_out_event::<Sqlite>(&listing, now)
            .prepared()
            .run(conn)?;
    }
    Ok(added)
}
