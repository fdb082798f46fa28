//! Dropping the webhook outbox's triggers once no endpoint is left. The endpoints are locked
//! against inserts first, so an endpoint created meanwhile either commits before the count (and
//! keeps them) or waits until they are gone and creates them again.

use diesel_async::RunQueryDsl;
use futures::FutureExt;

use super::PgStore;
use crate::adapters::sql::rows::TotalRow;
use crate::adapters::sql::webhooks::TRIGGERS;
use crate::ports::StoreError;

pub(super) async fn disarm_unused(store: &PgStore) -> Result<bool, StoreError> {
    store
        .transaction(|conn| {
            async move {
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
