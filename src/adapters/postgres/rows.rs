//! Row shapes only the PostgreSQL store reads; the shapes both SQL stores share are in
//! `adapters::sql::rows`.

use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;

/// How many rows of one status a statement touched.
#[derive(QueryableByName)]
pub struct StatusCountRow {
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}
