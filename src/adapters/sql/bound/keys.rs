//! API keys and the audit log.

use chrono::{DateTime, Utc};

use super::{query, Binds, Bound, Dialect};
use crate::adapters::sql::statements::{
    Statement, AUDIT_FROM_NEWEST, AUDIT_PAGE, INSERT_AUDIT, INSERT_KEY, KEYS, LOAD_KEY,
    PRUNE_AUDIT, REVOKE_KEY,
};
use crate::adapters::sql::{as_bigint, to_ms};
use crate::domain::access::{AuditEntry, NewKey};
use crate::domain::ids::KeyId;

pub fn insert_audit<DB: Dialect>(entry: &AuditEntry) -> Bound<DB> {
    query::<DB>(&INSERT_AUDIT)
        .text(entry.id.to_string())
        .big(to_ms(entry.at))
        .opt_text(entry.key_id.map(|id| id.to_string()))
        .opt_text(entry.key_name.clone())
        .text(entry.method.clone())
        .text(entry.route.clone())
        .opt_text(entry.resource_id.clone())
        .int(i32::from(entry.status))
        .int(i32::try_from(entry.count).unwrap_or(i32::MAX))
}

pub fn insert_key<DB: Dialect>(key: &NewKey, now: DateTime<Utc>) -> Bound<DB> {
    query::<DB>(&INSERT_KEY)
        .text(key.id.to_string())
        .text(key.name.clone())
        .text(key.role.as_str())
        .text(key.hash.to_hex())
        .big(to_ms(now))
}

pub fn load_key<DB: Dialect>(id: KeyId) -> Bound<DB> {
    query::<DB>(&LOAD_KEY).text(id.to_string())
}

pub fn keys<DB: Dialect>() -> Bound<DB> {
    query::<DB>(&KEYS)
}

pub fn revoke_key<DB: Dialect>(id: KeyId, now: DateTime<Utc>) -> Bound<DB> {
    query::<DB>(&REVOKE_KEY)
        .big(to_ms(now))
        .text(id.to_string())
}

/// Audit entries recorded before the one with id `before` (from the newest without one).
pub fn audit_page<DB: Dialect>(before: Option<uuid::Uuid>, limit: usize) -> Bound<DB> {
    let before = before.map_or_else(|| AUDIT_FROM_NEWEST.to_owned(), |id| id.to_string());
    query::<DB>(&AUDIT_PAGE).text(before).big(as_bigint(limit))
}

pub fn prune_audit<DB: Dialect>(before: DateTime<Utc>) -> Bound<DB> {
    query::<DB>(&PRUNE_AUDIT).big(to_ms(before))
}

/// A key's last use, never moved back by a report that arrives late.
static TOUCH_KEY: Statement = Statement::dialects(
    || "UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?) WHERE id = ?".into(),
    || {
        "UPDATE api_keys SET last_used_at = GREATEST(COALESCE(last_used_at, 0), ?) WHERE id = ?"
            .into()
    },
);

pub fn touch_key<DB: Dialect>(id: KeyId, at: DateTime<Utc>) -> Bound<DB> {
    query::<DB>(&TOUCH_KEY).big(to_ms(at)).text(id.to_string())
}
