//! Processes' heartbeats, by which the scheduler tells a live dialer from a dead one.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use futures::FutureExt;

use super::PgStore;
use crate::adapters::sql::prepared::KeepPrepared;
use crate::adapters::sql::statements::HEARTBEAT;
use crate::adapters::sql::to_ms;
use crate::domain::ids::InstanceId;
use crate::ports::StoreError;

pub(super) async fn heartbeat(
    store: &PgStore,
    instance: InstanceId,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    store
        .read(move |conn| {
            async move {
                diesel::sql_query(HEARTBEAT.postgres())
                    .bind::<Text, _>(instance.to_string())
                    .bind::<BigInt, _>(to_ms(now))
                    .prepared()
                    .execute(conn)
                    .await?;
                Ok(())
            }
            .boxed()
        })
        .await
}
