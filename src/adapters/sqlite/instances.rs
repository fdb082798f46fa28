//! Processes' heartbeats, by which the scheduler tells a live dialer from a dead one. Times are
//! the store's clock, so hosts' clocks are never compared.

use chrono::{DateTime, Utc};
use diesel::sql_types::Text;

use super::SqliteStore;
use crate::adapters::sql::prepared::KeepPrepared;
use crate::adapters::sql::statements::HEARTBEAT;
use crate::domain::ids::InstanceId;
use crate::ports::StoreError;

/// The store's clock is this process's: the file has no other.
pub(super) async fn heartbeat(
    store: &SqliteStore,
    instance: InstanceId,
) -> Result<DateTime<Utc>, StoreError> {
    store
        .write(move |conn| {
            diesel::sql_query(HEARTBEAT.sqlite())
                .bind::<Text, _>(instance.to_string())
                .prepared()
                .run(conn)?;
            Ok(Utc::now())
        })
        .await
}
