//! API keys and the audit log. An audit entry that records a store write is inserted by that
//! write's transaction, through `record`.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::RunQueryDsl;
use futures::FutureExt;

use super::{Conn, PgStore};
use crate::adapters::sql::bound::keys as bound;
use crate::adapters::sql::rows::{self, KeyRow};
use crate::adapters::sql::{to_ms, Failure};
use crate::domain::access::{ApiKey, AuditEntry, NewKey};
use crate::domain::ids::KeyId;
use crate::ports::StoreError;

/// Inserts `entry`, if any, on the caller's connection (inside its transaction).
pub(super) async fn record(conn: &mut Conn, entry: Option<&AuditEntry>) -> Result<(), Failure> {
    if let Some(entry) = entry {
        bound::insert_audit::<Pg>(entry).execute(conn).await?;
    }
    Ok(())
}

async fn load(conn: &mut Conn, id: KeyId) -> Result<Option<ApiKey>, Failure> {
    let rows: Vec<KeyRow> = bound::load_key::<Pg>(id).load(conn).await?;
    Ok(rows::first::<_, ApiKey>(rows)?)
}

pub(super) async fn create(
    store: &PgStore,
    key: NewKey,
    now: DateTime<Utc>,
    audit: Option<AuditEntry>,
) -> Result<ApiKey, StoreError> {
    store
        .transaction(move |conn| {
            async move {
                record(conn, audit.as_ref()).await?;
                bound::insert_key::<Pg>(&key, now).execute(conn).await?;
                load(conn, key.id)
                    .await?
                    .ok_or(Failure::Store(StoreError::NotFound))
            }
            .boxed()
        })
        .await
}

pub(super) async fn revoke(
    store: &PgStore,
    id: KeyId,
    now: DateTime<Utc>,
    audit: Option<AuditEntry>,
) -> Result<ApiKey, StoreError> {
    store
        .transaction(move |conn| {
            async move {
                bound::revoke_key::<Pg>(id, now).execute(conn).await?;
                let key = load(conn, id)
                    .await?
                    .ok_or(Failure::Store(StoreError::NotFound))?;
                record(conn, audit.as_ref()).await?;
                Ok(key)
            }
            .boxed()
        })
        .await
}

pub(super) async fn touch(
    store: &PgStore,
    used: &[(KeyId, DateTime<Utc>)],
) -> Result<(), StoreError> {
    if used.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = used.iter().map(|(id, _)| id.to_string()).collect();
    let times: Vec<i64> = used.iter().map(|(_, at)| to_ms(*at)).collect();
    store
        .read(move |conn| {
            async move {
                diesel::sql_query(
                    "UPDATE api_keys SET last_used_at = GREATEST(COALESCE(last_used_at, 0), u.at) \
                     FROM unnest($1::text[], $2::bigint[]) AS u(id, at) WHERE api_keys.id = u.id",
                )
                .bind::<Array<Text>, _>(ids)
                .bind::<Array<BigInt>, _>(times)
                .execute(conn)
                .await?;
                Ok(())
            }
            .boxed()
        })
        .await
}

pub(super) async fn record_audit(
    store: &PgStore,
    entries: &[AuditEntry],
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let entries = entries.to_vec();
    store
        .transaction(move |conn| {
            async move {
                for entry in &entries {
                    record(conn, Some(entry)).await?;
                }
                Ok(())
            }
            .boxed()
        })
        .await
}
