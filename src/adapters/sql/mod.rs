//! What the two SQL stores (SQLite and PostgreSQL) share: row shapes and their conversion to
//! the domain, the failure of a statement body, statements kept prepared, and the SQL
//! timeline's pages. Nothing here knows a backend's dialect; the rules the stores apply are in
//! `crate::domain`.

pub mod page;
pub mod prepared;
pub mod rows;

use chrono::{DateTime, TimeZone, Utc};
use diesel::result::Error as DieselError;

use crate::domain::campaign::InvalidTransition;
use crate::ports::StoreError;

/// Times are stored as BIGINT milliseconds since the epoch.
pub fn to_ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// What a statement body fails with: a database error, which the store that ran it classifies
/// (each backend knows which of its errors go away by themselves), or a store error the body
/// decided itself. Bodies use `?` on both; the store's `read` and `write` helpers classify.
#[derive(Debug)]
pub enum Failure {
    Db(DieselError),
    Store(StoreError),
}

impl Failure {
    pub fn into_store_error(self, classify: fn(DieselError) -> StoreError) -> StoreError {
        match self {
            Failure::Db(err) => classify(err),
            Failure::Store(err) => err,
        }
    }
}

impl From<DieselError> for Failure {
    fn from(err: DieselError) -> Self {
        Failure::Db(err)
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        Failure::Store(err)
    }
}

impl From<InvalidTransition> for Failure {
    fn from(err: InvalidTransition) -> Self {
        Failure::Store(StoreError::InvalidState(err))
    }
}

/// The text a business-hours column holds.
pub fn hours_json(
    hours: &crate::domain::business_hours::BusinessHours,
) -> Result<String, StoreError> {
    serde_json::to_string(hours.windows()).map_err(|err| StoreError::Internal(err.to_string()))
}

/// A count or limit as the BIGINT a statement binds.
pub fn as_bigint(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}
