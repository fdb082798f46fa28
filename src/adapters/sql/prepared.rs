//! Raw SQL kept prepared on its connection, for both SQL stores.
//!
//! Diesel never caches a `sql_query` statement, since its text could change between runs, so
//! each run would prepare it again: a parse and plan in SQLite, and in PostgreSQL a prepare round
//! trip plus a fresh plan before the execution. The stores' statements marked `.prepared()`
//! have fixed texts (or one of a few), so each connection prepares each of them once, in diesel's
//! statement cache keyed by the SQL text. Statements whose text depends on the batch size
//! (multi-row `VALUES`) stay unprepared: each size would be a cache entry.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::QueryResult;

pub struct Prepared<Q>(Q);

pub trait KeepPrepared: Sized {
    fn prepared(self) -> Prepared<Self> {
        Prepared(self)
    }
}

impl<Q> KeepPrepared for Q {}

impl<DB: Backend, Q: QueryFragment<DB>> QueryFragment<DB> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for Prepared<Q> {
    // Keyed by SQL text (and bind types) in the connection's statement cache.
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

// Synchronous diesel (the SQLite store) runs only query types that opt in.
impl<Q, Conn> diesel::RunQueryDsl<Conn> for Prepared<Q> {}
