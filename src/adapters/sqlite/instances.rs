//! Processes' heartbeats, by which the scheduler tells a live dialer from a dead one. Times are
//! the store's clock, so hosts' clocks are never compared.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Text};
use diesel::RunQueryDsl;

use super::SqliteStore;
use crate::adapters::sql::millis;
use crate::adapters::sql::prepared::KeepPrepared;
use crate::adapters::sql::statements::{HEARTBEAT, PRUNE_INSTANCES, PRUNE_NUMBER_ATTEMPTS};
use crate::domain::compliance::caps;
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
                .execute(conn)?;
            Ok(Utc::now())
        })
        .await
}

pub(super) async fn prune(store: &SqliteStore, silent_for: Duration) -> Result<u64, StoreError> {
    store
        .write(move |conn| {
            let pruned = diesel::sql_query(PRUNE_INSTANCES.sqlite())
                .bind::<BigInt, _>(millis(silent_for))
                .prepared()
                .execute(conn)?;
            // Attempt times older than any cap window count toward nothing.
            diesel::sql_query(PRUNE_NUMBER_ATTEMPTS.sqlite())
                .bind::<BigInt, _>(millis(caps::MAX_WINDOW))
                .prepared()
                .execute(conn)?;
            Ok(pruned as u64)
        })
        .await
}
