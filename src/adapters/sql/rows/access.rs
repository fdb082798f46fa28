//! Keys, the audit log and the do-not-call list.

use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel::QueryableByName;

use crate::adapters::sql::from_ms;
use crate::adapters::sql::rows::{corrupt, parse_id, scope_of};
use crate::domain::access::{ApiKey, AuditEntry, KeyHash};
use crate::domain::compliance::dnc::DncEntry;
use crate::domain::phone::PhoneNumber;
use crate::ports::StoreError;

/// A do-not-call entry.
#[derive(QueryableByName)]
pub struct DncRow {
    #[diesel(sql_type = Text)]
    pub phone_number: String,
    #[diesel(sql_type = Text)]
    pub scope: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub reason: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub created_at: i64,
}

impl TryFrom<DncRow> for DncEntry {
    type Error = StoreError;

    fn try_from(row: DncRow) -> Result<Self, StoreError> {
        Ok(DncEntry {
            phone_number: PhoneNumber::parse(&row.phone_number)
                .map_err(|_| corrupt("listed number", &row.phone_number))?,
            scope: scope_of(&row.scope)?,
            reason: row.reason,
            created_at: from_ms(row.created_at),
        })
    }
}

pub const KEY_COLUMNS: &str = "id, name, role, hash, created_at, last_used_at, revoked_at";

#[derive(QueryableByName)]
pub struct KeyRow {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Text)]
    pub role: String,
    #[diesel(sql_type = Text)]
    pub hash: String,
    #[diesel(sql_type = BigInt)]
    pub created_at: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub last_used_at: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub revoked_at: Option<i64>,
}

impl TryFrom<KeyRow> for ApiKey {
    type Error = StoreError;
    fn try_from(row: KeyRow) -> Result<Self, StoreError> {
        Ok(ApiKey {
            id: parse_id("key id", &row.id)?,
            role: row
                .role
                .parse()
                .map_err(|_| corrupt("key role", &row.role))?,
            hash: KeyHash::from_hex(&row.hash).ok_or_else(|| corrupt("key hash", "(hidden)"))?,
            name: row.name,
            created_at: from_ms(row.created_at),
            last_used_at: row.last_used_at.map(from_ms),
            revoked_at: row.revoked_at.map(from_ms),
        })
    }
}

pub const AUDIT_COLUMNS: &str =
    "id, at, key_id, key_name, method, route, resource_id, status, request_count";

#[derive(QueryableByName)]
pub struct AuditRow {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = BigInt)]
    pub at: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub key_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub key_name: Option<String>,
    #[diesel(sql_type = Text)]
    pub method: String,
    #[diesel(sql_type = Text)]
    pub route: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub resource_id: Option<String>,
    #[diesel(sql_type = Integer)]
    pub status: i32,
    #[diesel(sql_type = Integer)]
    pub request_count: i32,
}

impl TryFrom<AuditRow> for AuditEntry {
    type Error = StoreError;
    fn try_from(row: AuditRow) -> Result<Self, StoreError> {
        Ok(AuditEntry {
            id: parse_id("audit id", &row.id)?,
            at: from_ms(row.at),
            key_id: row
                .key_id
                .as_deref()
                .map(|id| parse_id("audit key id", id))
                .transpose()?,
            key_name: row.key_name,
            method: row.method,
            route: row.route,
            resource_id: row.resource_id,
            status: u16::try_from(row.status).map_err(|_| corrupt("audit status", row.status))?,
            count: u32::try_from(row.request_count)
                .map_err(|_| corrupt("audit request count", row.request_count))?,
        })
    }
}
