//! API keys and the audit log. An audit entry that records a store write is inserted by that
//! write's transaction, through `record`.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel::sqlite::SqliteConnection;
use diesel::RunQueryDsl;

use super::SqliteStore;
use crate::adapters::sql::rows::{self, AuditRow, KeyRow};
use crate::adapters::sql::statements::{
    AUDIT_FROM_NEWEST, AUDIT_PAGE, INSERT_AUDIT, INSERT_KEY, KEYS, LOAD_KEY, PRUNE_AUDIT,
    REVOKE_KEY,
};
use crate::adapters::sql::{as_bigint, to_ms, Failure};
use crate::domain::access::{ApiKey, AuditEntry, NewKey};
use crate::domain::ids::KeyId;
use crate::ports::StoreError;

/// Inserts `entry`, if any, on the caller's connection (inside its transaction).
pub(super) fn record(
    conn: &mut SqliteConnection,
    entry: Option<&AuditEntry>,
) -> Result<(), Failure> {
    let Some(entry) = entry else {
        return Ok(());
    };
    diesel::sql_query(INSERT_AUDIT.sqlite())
        .bind::<Text, _>(entry.id.to_string())
        .bind::<BigInt, _>(to_ms(entry.at))
        .bind::<Nullable<Text>, _>(entry.key_id.map(|id| id.to_string()))
        .bind::<Nullable<Text>, _>(entry.key_name.clone())
        .bind::<Text, _>(entry.method.clone())
        .bind::<Text, _>(entry.route.clone())
        .bind::<Nullable<Text>, _>(entry.resource_id.clone())
        .bind::<Integer, _>(i32::from(entry.status))
        .bind::<Integer, _>(i32::try_from(entry.count).unwrap_or(i32::MAX))
        .execute(conn)?;
    Ok(())
}

fn load(conn: &mut SqliteConnection, id: KeyId) -> Result<Option<ApiKey>, Failure> {
    let rows: Vec<KeyRow> = diesel::sql_query(LOAD_KEY.sqlite())
        .bind::<Text, _>(id.to_string())
        .load(conn)?;
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
            diesel::sql_query(INSERT_KEY.sqlite())
                .bind::<Text, _>(key.id.to_string())
                .bind::<Text, _>(key.name.clone())
                .bind::<Text, _>(key.role.as_str())
                .bind::<Text, _>(key.hash.to_hex())
                .bind::<BigInt, _>(to_ms(now))
                .execute(conn)?;
            load(conn, key.id)?.ok_or(Failure::Store(StoreError::NotFound))
        })
        .await
}

pub(super) async fn get(store: &SqliteStore, id: KeyId) -> Result<Option<ApiKey>, StoreError> {
    store.point_read(move |conn| load(conn, id)).await
}

pub(super) async fn list(store: &SqliteStore) -> Result<Vec<ApiKey>, StoreError> {
    store
        .read(move |conn| {
            let rows: Vec<KeyRow> = diesel::sql_query(KEYS.sqlite()).load(conn)?;
            Ok(rows::all::<_, ApiKey>(rows)?)
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
            diesel::sql_query(REVOKE_KEY.sqlite())
                .bind::<BigInt, _>(to_ms(now))
                .bind::<Text, _>(id.to_string())
                .execute(conn)?;
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

pub(super) async fn list_audit(
    store: &SqliteStore,
    before: Option<uuid::Uuid>,
    limit: usize,
) -> Result<Vec<AuditEntry>, StoreError> {
    store
        .read(move |conn| {
            let before = before.map_or_else(|| AUDIT_FROM_NEWEST.to_owned(), |id| id.to_string());
            let rows: Vec<AuditRow> = diesel::sql_query(AUDIT_PAGE.sqlite())
                .bind::<Text, _>(before)
                .bind::<BigInt, _>(as_bigint(limit))
                .load(conn)?;
            Ok(rows::all::<_, AuditEntry>(rows)?)
        })
        .await
}

pub(super) async fn prune_audit(
    store: &SqliteStore,
    before: DateTime<Utc>,
) -> Result<u64, StoreError> {
    store
        .write(move |conn| {
            let removed = diesel::sql_query(PRUNE_AUDIT.sqlite())
                .bind::<BigInt, _>(to_ms(before))
                .execute(conn)?;
            Ok(removed as u64)
        })
        .await
}
