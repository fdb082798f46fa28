//! Dropping the webhook outbox's triggers once no endpoint is left, in one transaction with the
//! count that decides it (SQLite's one writer keeps an endpoint from being created meanwhile).

use diesel::RunQueryDsl;

use super::SqliteStore;
use crate::adapters::sql::rows::TotalRow;
use crate::adapters::sql::webhooks::TRIGGERS;
use crate::ports::StoreError;

pub(super) async fn disarm_unused(store: &SqliteStore) -> Result<bool, StoreError> {
    store
        .write(|conn| {
            let endpoints: Vec<TotalRow> =
                diesel::sql_query("SELECT count(*) AS n FROM webhook_endpoints").load(conn)?;
            let armed: Vec<TotalRow> = diesel::sql_query(
                "SELECT count(*) AS n FROM sqlite_master WHERE type = 'trigger' \
                 AND name LIKE 'webhook\\_%' ESCAPE '\\'",
            )
            .load(conn)?;
            let count = |rows: &[TotalRow]| rows.first().map_or(0, |row| row.n);
            if count(&endpoints) > 0 || count(&armed) == 0 {
                return Ok(false);
            }
            for (name, _) in TRIGGERS {
                diesel::sql_query(format!("DROP TRIGGER IF EXISTS {name}")).execute(conn)?;
            }
            Ok(true)
        })
        .await
}
