//! API keys and the audit log. An audit entry that records a store write is inserted by that
//! write's transaction, through `record`.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Text};
use diesel::sqlite::{Sqlite, SqliteConnection};
use diesel::RunQueryDsl;

use super::SqliteStore;
use crate::adapters::sql::bound::keys as bound;
use crate::adapters::sql::rows::{self, KeyRow};
use crate::adapters::sql::{to_ms, Failure};
use crate::domain::access::{ApiKey, AuditEntry, NewKey};
use crate::domain::ids::KeyId;
use crate::ports::StoreError;

/// Inserts `entry`, if any, on the caller's connection (inside its transaction).
pub(super) fn record(
    conn: &mut SqliteConnection,
    entry: Option<&AuditEntry>,
) -> Result<(), Failure> {
    if let Some(entry) = entry {
        bound::insert_audit::<Sqlite>(entry).execute(conn)?;
    }
    Ok(())
}

fn load(conn: &mut SqliteConnection, id: KeyId) -> Result<Option<ApiKey>, Failure> {
    let rows: Vec<KeyRow> = bound::load_key::<Sqlite>(id).load(conn)?;
    Ok(rows::first::<_, ApiKey>(rows)?)
}

pub(super) async fn create(
    store: &SqliteStore,
    key: NewKey,
    now: DateTime<Utc>,
    audit: Option<AuditEntry>,
) -> Result<ApiKey, StoreError> {
    store
        .write(move |conn| {
            record(conn, audit.as_ref())?;
            bound::insert_key::<Sqlite>(&key, now).execute(conn)?;
            load(conn, key.id)?.ok_or(Failure::Store(StoreError::NotFound))
        })
        .await
}

pub(super) async fn revoke(
    store: &SqliteStore,
    id: KeyId,
    now: DateTime<Utc>,
    audit: Option<AuditEntry>,
) -> Result<ApiKey, StoreError> {
    store
        .write(move |conn| {
            bound::revoke_key::<Sqlite>(id, now).execute(conn)?;
            let key = load(conn, id)?.ok_or(Failure::Store(StoreError::NotFound))?;
            record(conn, audit.as_ref())?;
            Ok(key)
        })
        .await
}

pub(super) async fn touch(
    store: &SqliteStore,
    used: &[(KeyId, DateTime<Utc>)],
) -> Result<(), StoreError> {
    if used.is_empty() {
        return Ok(());
    }
    let used = used.to_vec();
    store
        .write(move |conn| {
            for (id, at) in used {
                diesel::sql_query(
                    "UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?) \
                     WHERE id = ?",
                )
                .bind::<BigInt, _>(to_ms(at))
                .bind::<Text, _>(id.to_string())
                .execute(conn)?;
            }
            Ok(())
        })
        .await
}

pub(super) async fn record_audit(
    store: &SqliteStore,
    entries: &[AuditEntry],
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let entries = entries.to_vec();
    store
        .write(move |conn| {
            for entry in &entries {
                record(conn, Some(entry))?;
            }
            Ok(())
        })
        .await
}
