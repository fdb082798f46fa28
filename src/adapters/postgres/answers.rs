//! What a live attempt heard back, with the opt-out's list entry, in one transaction.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures::FutureExt;

use super::dnc::add_in;
use super::PgStore;
use crate::adapters::sql::bound::answers::{self, LiveAnswerRow};
use crate::adapters::sql::prepared::KeepPrepared;
use crate::adapters::sql::{webhooks, Failure};
use crate::domain::answer::{AnswerChange, Heard};
use crate::ports::{AttemptKey, DncAdded, OptOutListing, StoreError};

pub(super) async fn record(
    store: &PgStore,
    key: AttemptKey,
    heard: Heard,
    opt_out: Option<OptOutListing>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    store
        .transaction(move |conn| {
            async move {
                // The call's row is locked first, as every writer of a call's attempt does;
                // the listing's cancellations lock other calls after it. The answer is read
                // after the lock, in its own statement, so it is the latest committed.
                answers::lock_call::<Pg>(key)
                    .prepared()
                    .execute(conn)
                    .await?;
                let rows: Vec<LiveAnswerRow> = answers::live_answer::<Pg>(key)
                    .prepared()
                    .load(conn)
                    .await?;
                let change = rows.into_iter().next().and_then(|row| {
                    let (attempt, call) = row.answers();
                    AnswerChange::of(&attempt, &call, &heard)
                });
                if let Some(change) = &change {
                    for write in answers::record::<Pg>(key, change, now) {
                        write.prepared().execute(conn).await?;
                    }
                }
                if let Some(listing) = opt_out {
                    list_in(conn, listing, now).await?;
                }
                Ok(change.is_some())
            }
            .boxed()
        })
        .await
}

pub(super) async fn list_opt_out(
    store: &PgStore,
    listing: OptOutListing,
    now: DateTime<Utc>,
) -> Result<DncAdded, StoreError> {
    store
        .transaction(move |conn| async move { list_in(conn, listing, now).await }.boxed())
        .await
}

/// Lists an opt-out in the caller's transaction, with its event when the number is new.
async fn list_in(
    conn: &mut AsyncPgConnection,
    listing: OptOutListing,
    now: DateTime<Utc>,
) -> Result<DncAdded, Failure> {
    let numbers = [(listing.number.clone(), Some(listing.reason.clone()))];
    let added = add_in(conn, listing.scope, &numbers, now).await?;
    if added.added > 0 {
        webhooks::opt_out_event::<Pg>(&listing, now)
            .prepared()
            .execute(conn)
            .await?;
    }
    Ok(added)
}
