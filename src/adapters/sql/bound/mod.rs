//! Statements with their values bound, built once for both SQL stores.
//!
//! A store runs the same statement with the same values in the same order whichever dialect it
//! speaks; only the placeholders in the text and the way it executes (a blocking connection in
//! SQLite, an awaited one in PostgreSQL) differ. A `Bound<DB>` is the statement in `DB`'s
//! dialect with its values attached, so a binding is written once and each store only runs it.

pub mod answers;
pub mod campaigns;
pub mod keys;

use diesel::backend::Backend;
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{BigInt, Double, Integer, Nullable, Text};
use diesel::sqlite::Sqlite;

use super::statements::Statement;

/// A statement in one dialect with (some of) its values bound.
pub type Bound<DB> = BoxedSqlQuery<'static, DB, SqlQuery>;

/// A backend both stores' statements are written for: it picks its text of a `Statement` and
/// binds the column types the statements use.
pub trait Dialect: Backend + Sized + 'static {
    fn text(statement: &Statement) -> &str;
    fn bind_text(query: Bound<Self>, value: String) -> Bound<Self>;
    fn bind_opt_text(query: Bound<Self>, value: Option<String>) -> Bound<Self>;
    fn bind_big(query: Bound<Self>, value: i64) -> Bound<Self>;
    fn bind_opt_big(query: Bound<Self>, value: Option<i64>) -> Bound<Self>;
    fn bind_opt_int(query: Bound<Self>, value: Option<i32>) -> Bound<Self>;
    fn bind_int(query: Bound<Self>, value: i32) -> Bound<Self>;
    fn bind_real(query: Bound<Self>, value: f64) -> Bound<Self>;
}

macro_rules! dialect {
    ($backend:ty, $pick:ident) => {
        impl Dialect for $backend {
            fn text(statement: &Statement) -> &str {
                statement.$pick()
            }
            fn bind_text(query: Bound<Self>, value: String) -> Bound<Self> {
                query.bind::<Text, _>(value)
            }
            fn bind_opt_text(query: Bound<Self>, value: Option<String>) -> Bound<Self> {
                query.bind::<Nullable<Text>, _>(value)
            }
            fn bind_big(query: Bound<Self>, value: i64) -> Bound<Self> {
                query.bind::<BigInt, _>(value)
            }
            fn bind_int(query: Bound<Self>, value: i32) -> Bound<Self> {
                query.bind::<Integer, _>(value)
            }
            fn bind_opt_big(query: Bound<Self>, value: Option<i64>) -> Bound<Self> {
                query.bind::<Nullable<BigInt>, _>(value)
            }
            fn bind_opt_int(query: Bound<Self>, value: Option<i32>) -> Bound<Self> {
                query.bind::<Nullable<Integer>, _>(value)
            }
            fn bind_real(query: Bound<Self>, value: f64) -> Bound<Self> {
                query.bind::<Double, _>(value)
            }
        }
    };
}

dialect!(Sqlite, sqlite);
dialect!(Pg, postgres);

/// `statement` in `DB`'s dialect, nothing bound yet.
pub fn query<DB: Dialect>(statement: &Statement) -> Bound<DB> {
    diesel::sql_query(DB::text(statement)).into_boxed::<DB>()
}

/// Binding in column-type terms, in the order of the statement's placeholders.
pub trait Binds: Sized {
    fn text(self, value: impl Into<String>) -> Self;
    fn opt_text(self, value: Option<String>) -> Self;
    fn big(self, value: i64) -> Self;
    fn int(self, value: i32) -> Self;
    fn opt_big(self, value: Option<i64>) -> Self;
    fn opt_int(self, value: Option<i32>) -> Self;
    fn real(self, value: f64) -> Self;
}

impl<DB: Dialect> Binds for Bound<DB> {
    fn text(self, value: impl Into<String>) -> Self {
        DB::bind_text(self, value.into())
    }
    fn opt_text(self, value: Option<String>) -> Self {
        DB::bind_opt_text(self, value)
    }
    fn big(self, value: i64) -> Self {
        DB::bind_big(self, value)
    }
    fn int(self, value: i32) -> Self {
        DB::bind_int(self, value)
    }
    fn real(self, value: f64) -> Self {
        DB::bind_real(self, value)
    }
    fn opt_big(self, value: Option<i64>) -> Self {
        DB::bind_opt_big(self, value)
    }
    fn opt_int(self, value: Option<i32>) -> Self {
        DB::bind_opt_int(self, value)
    }
}
