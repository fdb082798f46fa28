//! Processes' heartbeats, by which the scheduler tells a live dialer from a dead one. Times are
//! the database server's clock, so hosts' clocks are never compared.

use chrono::{DateTime, Utc};
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use futures::FutureExt;

use super::PgStore;
use crate::adapters::sql::from_ms;
use crate::adapters::sql::prepared::KeepPrepared;
use crate::adapters::sql::rows::MaybeMsRow;
use crate::adapters::sql::statements::{HEARTBEAT, POSTGRES_NOW_MS};
use crate::domain::ids::InstanceId;
use crate::ports::StoreError;

pub(super) async fn heartbeat(
    store: &PgStore,
    instance: InstanceId,
) -> Result<DateTime<Utc>, StoreError> {
    store
        .read(move |conn| {
            async move {
                diesel::sql_query(HEARTBEAT.postgres())
                    .bind::<Text, _>(instance.to_string())
                    .prepared()
                    .execute(conn)
                    .await?;
                let clock: Vec<MaybeMsRow> =
                    diesel::sql_query(format!("SELECT {POSTGRES_NOW_MS} AS ms"))
                        .prepared()
                        .load(conn)
                        .await?;
                let ms = clock
                    .into_iter()
                    .next()
                    .and_then(|row| row.ms)
                    .unwrap_or_default();
                Ok(from_ms(ms))
            }
            .boxed()
        })
        .await
}
