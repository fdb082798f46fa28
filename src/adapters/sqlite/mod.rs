//! The embedded store: one SQLite file in WAL mode, through diesel-async's
//! `SyncConnectionWrapper`.
//!
//! SQLite has one writer at a time, so every write goes through a single connection and runs as
//! one `BEGIN IMMEDIATE` transaction on a blocking thread; reads use a few more connections,
//! which WAL lets run beside the writer. Each port method is one transaction, so statistics move
//! with the calls they count and a crash at any point leaves a consistent file.
//!
//! The modules follow the aggregates, as in the PostgreSQL store: `campaigns`, `calls`,
//! `dispatch`, `attempts`, `instances`, and `timeline` for the store as its own timeline.

mod answers;
mod attempts;
mod calls;
mod campaigns;
mod dispatch;
mod dnc;
mod error;
mod instances;
mod keys;
mod migrator;
mod outbox;
mod pacing;
mod pool;
#[cfg(test)]
pub(crate) use pool::tune_library;
mod timeline;

use std::sync::atomic::AtomicUsize;

use diesel::sqlite::SqliteConnection;
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use tokio::sync::Mutex;

pub use self::migrator::{migrate, MIGRATIONS};
use crate::adapters::sql::store_by_aggregate;
use crate::domain::compliance::Compliance;

type Conn = SyncConnectionWrapper<SqliteConnection>;

/// Rows per multi-row INSERT; keeps bound variables well under SQLite's 32,766.
const INSERT_CHUNK: usize = 2_000;

/// Runs one chunk of a multi-row INSERT of `rows` rows, taken from its input `full` rows at a
/// time. A full chunk's text is the same every time, so the connection keeps it prepared (a
/// million targets are 500 chunks, each otherwise parsed and planned again); a shorter last
/// chunk is prepared for its one run.
fn insert_chunk(
    conn: &mut SqliteConnection,
    insert: BoxedInsert<'_>,
    rows: usize,
    full: usize,
) -> Result<(), crate::adapters::sql::Failure> {
    use crate::adapters::sql::prepared::KeepPrepared;
    use diesel::RunQueryDsl;
    if rows == full {
        insert.prepared().run(conn)?;
    } else {
        insert.execute(conn)?;
    }
    Ok(())
}

/// `insert_chunk`, returning how many rows the chunk inserted: one more statement for a full
/// chunk, so only for the callers that decide on the count.
fn insert_chunk_counted(
    conn: &mut SqliteConnection,
    insert: BoxedInsert<'_>,
    rows: usize,
    full: usize,
) -> Result<usize, crate::adapters::sql::Failure> {
    use crate::adapters::sql::prepared::KeepPrepared;
    use diesel::RunQueryDsl;
    Ok(if rows == full {
        insert.prepared().run_counted(conn)?
    } else {
        insert.execute(conn)?
    })
}

type BoxedInsert<'a> = diesel::query_builder::BoxedSqlQuery<
    'a,
    diesel::sqlite::Sqlite,
    diesel::query_builder::SqlQuery,
>;

pub struct SqliteStore {
    writer: Mutex<Conn>,
    readers: Vec<Mutex<Conn>>,
    next_reader: AtomicUsize,
    /// Connections for one-row lookups (a campaign, its statistics), run on the calling thread:
    /// a primary-key read takes microseconds, less than a hop to the blocking pool and back.
    point_readers: Vec<std::sync::Mutex<SqliteConnection>>,
    /// The deployment's calling rules, applied when a claimed attempt begins.
    compliance: Compliance,
    /// The writer's share for work that can wait while other writes keep it busy.
    pacing: pacing::Pacing,
    _checkpointer: pool::Checkpointer,
}

impl SqliteStore {
    /// This store applying `compliance` (the defaults until set).
    pub fn with_compliance(mut self, compliance: Compliance) -> Self {
        self.compliance = compliance;
        self
    }
}

store_by_aggregate!(SqliteStore);
