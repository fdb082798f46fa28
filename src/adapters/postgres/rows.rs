//! Row shapes only the PostgreSQL store reads; the shapes both SQL stores share are in
//! `adapters::sql_rows`.

use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel::QueryableByName;

/// A call locked by `record_attempts`, with the start of its current attempt.
#[derive(QueryableByName)]
pub struct LockedCallRow {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Integer)]
    pub attempt_count: i32,
    #[diesel(sql_type = Integer)]
    pub max_attempts: i32,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub started_at: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    pub owner: Option<String>,
}

#[derive(QueryableByName)]
pub struct StatusRow {
    #[diesel(sql_type = Text)]
    pub status: String,
}

/// How many rows of one status a statement touched.
#[derive(QueryableByName)]
pub struct StatusCountRow {
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}

#[derive(QueryableByName)]
pub struct PhoneRow {
    #[diesel(sql_type = Text)]
    pub phone_number: String,
}

#[derive(QueryableByName)]
pub struct RowCount {
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}
