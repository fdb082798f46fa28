//! Raw SQL kept prepared on its connection, for both SQL stores.
//!
//! Diesel never caches a `sql_query` statement, since its text could change between runs, so
//! each run would prepare it again: a parse and plan in SQLite, and in PostgreSQL a prepare round
//! trip plus a fresh plan before the execution. The stores' statements marked `.prepared()`
//! have fixed texts (or one of a few), so each connection prepares each of them once, in diesel's
//! statement cache keyed by the SQL text. Statements whose text depends on the batch size
//! (multi-row `VALUES`) stay unprepared, each size being a cache entry, except SQLite's inserts
//! of full chunks, whose size is fixed.

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

/// A statement that returns no rows. Its rows are never built; the type only lets SQLite run
/// such a statement through `load`.
#[derive(diesel::QueryableByName)]
pub struct NoRows {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    _never: i64,
}

#[derive(diesel::QueryableByName)]
struct Changes {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

impl<Q> Prepared<Q>
where
    Q: Query + QueryFragment<diesel::sqlite::Sqlite>,
{
    /// Runs a statement that returns no rows on SQLite.
    ///
    /// Diesel's `execute` hands the statement cache a reference to the query, and a reference
    /// does not forward `is_safe_to_cache_prepared`: the check walks the raw SQL, which refuses
    /// caching, so every `execute` was parsed and planned again (a fifth of the engine's CPU).
    /// `load` hands over the query itself, whose answer above is kept.
    pub fn run<'query>(self, conn: &mut diesel::sqlite::SqliteConnection) -> QueryResult<()>
    where
        Self: diesel::query_dsl::LoadQuery<'query, diesel::sqlite::SqliteConnection, NoRows>,
    {
        use diesel::RunQueryDsl as _;
        let _: Vec<NoRows> = self.load(conn)?;
        Ok(())
    }

    /// `run`, then how many rows the statement changed: one more statement, so only for the
    /// callers that decide on the count.
    pub fn run_counted<'query>(
        self,
        conn: &mut diesel::sqlite::SqliteConnection,
    ) -> QueryResult<usize>
    where
        Self: diesel::query_dsl::LoadQuery<'query, diesel::sqlite::SqliteConnection, NoRows>,
    {
        use diesel::RunQueryDsl as _;
        self.run(conn)?;
        let changed: Vec<Changes> =
            Prepared(diesel::sql_query("SELECT changes() AS n")).load(conn)?;
        Ok(changed
            .first()
            .map_or(0, |row| usize::try_from(row.n).unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use diesel::connection::{Connection, InstrumentationEvent};
    use diesel::sql_types::BigInt;
    use diesel::sqlite::SqliteConnection;
    use diesel::RunQueryDsl;

    use super::KeepPrepared;

    /// A connection that counts the statements it puts in its cache.
    fn counted() -> (SqliteConnection, Arc<AtomicUsize>) {
        // As every connection of the store: SQLite's options are set before any opens.
        crate::adapters::sqlite::tune_library();
        let mut conn = SqliteConnection::establish(":memory:").expect("open");
        diesel::sql_query("CREATE TABLE t (n BIGINT)")
            .execute(&mut conn)
            .expect("table");
        let cached = Arc::new(AtomicUsize::new(0));
        let count = cached.clone();
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::CacheQuery { .. } = event {
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        (conn, cached)
    }

    #[test]
    fn a_statement_run_stays_prepared() {
        let (mut conn, cached) = counted();
        for n in 0..3 {
            diesel::sql_query("INSERT INTO t (n) VALUES (?)")
                .bind::<BigInt, _>(n)
                .prepared()
                .run(&mut conn)
                .expect("insert");
        }
        // Three runs of the insert prepared it once, and asked for no count.
        assert_eq!(cached.load(Ordering::SeqCst), 1);
        for _ in 0..2 {
            let changed = diesel::sql_query("UPDATE t SET n = n + 1")
                .prepared()
                .run_counted(&mut conn)
                .expect("update");
            assert_eq!(changed, 3, "the rows the statement changed");
        }
        // The update once, `changes()` once.
        assert_eq!(cached.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn diesel_execute_of_the_same_statement_is_prepared_every_time() {
        // Why `run` exists: this is what the SQLite store did before it.
        let (mut conn, cached) = counted();
        for n in 0..3 {
            diesel::sql_query("INSERT INTO t (n) VALUES (?)")
                .bind::<BigInt, _>(n)
                .prepared()
                .execute(&mut conn)
                .expect("insert");
        }
        assert_eq!(cached.load(Ordering::SeqCst), 0, "never cached");
    }
}
