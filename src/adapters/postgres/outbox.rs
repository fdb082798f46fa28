//! The webhook outbox's own upkeep in PostgreSQL: fanning events out to deliveries, and
//! dropping the triggers once no endpoint is left. For the latter the endpoints are locked
//! against inserts first, so an endpoint created meanwhile either commits before the count (and
//! keeps them) or waits until they are gone and creates them again.

use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use futures::FutureExt;

use super::PgStore;
use crate::adapters::sql::as_bigint;
use crate::adapters::sql::rows::TotalRow;
use crate::adapters::sql::webhooks::{FAN_OUT, TRIGGERS};
use crate::ports::StoreError;

/// Moves the oldest `limit` events no other process is moving into a delivery per endpoint
/// that listens, removing them in the same statement. Returns how many events it moved.
pub(super) async fn fan_out(store: &PgStore, limit: usize) -> Result<u64, StoreError> {
    let limit = as_bigint(limit);
    let moved: Vec<TotalRow> = store
        .read(move |conn| {
            async move {
                Ok(diesel::sql_query(FAN_OUT.postgres())
                    .bind::<BigInt, _>(limit)
                    .load(conn)
                    .await?)
            }
            .boxed()
        })
        .await?;
    Ok(moved.iter().map(|row| row.n.max(0) as u64).sum())
}

pub(super) async fn disarm_unused(store: &PgStore) -> Result<bool, StoreError> {
    store
        .transaction(|conn| {
            async move {
                // Dropping a trigger locks its table exclusively: rather than queue behind
                // (or deadlock with) the writes of `calls` and `campaigns`, give up and try at
                // the next upkeep.
                diesel::sql_query("SET LOCAL lock_timeout = '200ms'")
                    .execute(conn)
                    .await?;
                diesel::sql_query("LOCK TABLE webhook_endpoints IN SHARE MODE")
                    .execute(conn)
                    .await?;
                let endpoints: Vec<TotalRow> =
                    diesel::sql_query("SELECT count(*) AS n FROM webhook_endpoints")
                        .load(conn)
                        .await?;
                // Dropping a trigger locks its table: only when there is one to drop.
                let armed: Vec<TotalRow> = diesel::sql_query(
                    "SELECT count(*) AS n FROM pg_trigger \
                     WHERE tgname LIKE 'webhook\\_%' AND NOT tgisinternal",
                )
                .load(conn)
                .await?;
                let count = |rows: &[TotalRow]| rows.first().map_or(0, |row| row.n);
                if count(&endpoints) > 0 || count(&armed) == 0 {
                    return Ok(false);
                }
                for (name, table) in TRIGGERS {
                    diesel::sql_query(format!("DROP TRIGGER IF EXISTS {name} ON {table}"))
                        .execute(conn)
                        .await?;
                }
                Ok(true)
            }
            .boxed()
        })
        .await
}
