//! The webhook outbox's own upkeep in SQLite: fanning events out to deliveries, and dropping
//! the triggers once no endpoint is left (in one transaction with the count that decides it:
//! SQLite's one writer keeps an endpoint from being created meanwhile).

use diesel::sql_types::BigInt;
use diesel::RunQueryDsl;

use super::SqliteStore;
use crate::adapters::sql::rows::TotalRow;
use crate::adapters::sql::webhooks::{FAN_OUT, TRIGGERS};
use crate::adapters::sql::{as_bigint, Failure};
use crate::ports::StoreError;

/// Moves the oldest `limit` events into a delivery per endpoint that listens, in one
/// transaction that removes them. Returns how many events it moved.
pub(super) async fn fan_out(store: &SqliteStore, limit: usize) -> Result<u64, StoreError> {
    store
        .write_yielding(move |conn| {
            let last: Vec<TotalRow> = diesel::sql_query(
                "SELECT coalesce(max(seq), 0) AS n FROM \
                 (SELECT seq FROM webhook_events ORDER BY seq LIMIT ?)",
            )
            .bind::<BigInt, _>(as_bigint(limit))
            .load(conn)?;
            let last = last.first().map_or(0, |row| row.n);
            diesel::sql_query(FAN_OUT.sqlite())
                .bind::<BigInt, _>(last)
                .execute(conn)?;
            let moved = diesel::sql_query("DELETE FROM webhook_events WHERE seq <= ?")
                .bind::<BigInt, _>(last)
                .execute(conn)?;
            Ok(moved as u64)
        })
        .await
}

/// Whether the triggers are there with no endpoint left to need them.
fn unused_triggers(conn: &mut diesel::sqlite::SqliteConnection) -> Result<bool, Failure> {
    let endpoints: Vec<TotalRow> =
        diesel::sql_query("SELECT count(*) AS n FROM webhook_endpoints").load(conn)?;
    let armed: Vec<TotalRow> = diesel::sql_query(
        "SELECT count(*) AS n FROM sqlite_master WHERE type = 'trigger' \
         AND name LIKE 'webhook\\_%' ESCAPE '\\'",
    )
    .load(conn)?;
    let count = |rows: &[TotalRow]| rows.first().map_or(0, |row| row.n);
    Ok(count(&endpoints) == 0 && count(&armed) > 0)
}

pub(super) async fn disarm_unused(store: &SqliteStore) -> Result<bool, StoreError> {
    // Usually there is nothing to drop: a read decides that, not a turn of the one writer.
    if !store.read(unused_triggers).await? {
        return Ok(false);
    }
    store
        .write(|conn| {
            // Decided again under the writer, which keeps an endpoint from being created
            // between the count and the drop.
            if !unused_triggers(conn)? {
                return Ok(false);
            }
            for (name, _) in TRIGGERS {
                diesel::sql_query(format!("DROP TRIGGER IF EXISTS {name}")).execute(conn)?;
            }
            Ok(true)
        })
        .await
}
