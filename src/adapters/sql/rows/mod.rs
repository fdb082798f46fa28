//! Row shapes of the SQL stores (SQLite and PostgreSQL) and their conversion to domain types.
//!
//! Both stores keep ids and JSON as text and times as BIGINT milliseconds, so one set of
//! `QueryableByName` structs over `Text`, `BigInt`, `Integer` and `Double` maps the rows of either
//! backend. Nothing here knows a backend's SQL dialect.

mod access;
mod calls;
mod campaigns;
mod dispatch;

use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel::QueryableByName;

use crate::domain::metadata::Metadata;
use crate::ports::StoreError;

pub use self::access::*;
pub use self::calls::*;
pub use self::campaigns::*;
pub use self::dispatch::*;

/// Every row of a result as its domain value; a corrupt row fails the read.
pub fn all<R, T>(rows: Vec<R>) -> Result<Vec<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

/// The first row of a result as its domain value, if there is one.
pub fn first<R, T>(rows: Vec<R>) -> Result<Option<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().next().map(T::try_from).transpose()
}

pub(super) fn corrupt(what: &str, value: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("corrupt {what} in store: {value}"))
}

pub(super) fn parse_id<T: std::str::FromStr>(what: &str, value: &str) -> Result<T, StoreError> {
    value.parse().map_err(|_| corrupt(what, value))
}

pub(super) fn parse_metadata(value: Option<String>) -> Option<Metadata> {
    value.map(Metadata::from_stored)
}

#[derive(QueryableByName)]
pub struct CountRow {
    #[diesel(sql_type = Integer)]
    #[allow(dead_code)]
    pub n: i32,
}

#[derive(QueryableByName)]
pub struct IdRow {
    #[diesel(sql_type = Text)]
    pub id: String,
}

#[derive(QueryableByName)]
pub struct MaybeMsRow {
    #[diesel(sql_type = Nullable<BigInt>)]
    pub ms: Option<i64>,
}

#[derive(QueryableByName)]
pub struct PhoneRow {
    #[diesel(sql_type = Text)]
    pub phone_number: String,
}

/// A `count(*) AS n`.
#[derive(QueryableByName)]
pub struct TotalRow {
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}
