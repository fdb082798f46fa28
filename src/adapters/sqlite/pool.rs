//! The connections: one writer, whose transactions SQLite runs one at a time, readers that WAL
//! lets run beside it, and point readers for one-row lookups on the calling thread. Each helper
//! runs a body and classifies what it fails with.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::result::Error as DieselError;
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, RunQueryDsl};
use diesel_async::AsyncConnection;
use tokio::sync::Mutex;

use diesel::deserialize::QueryableByName;
use diesel::sqlite::Sqlite;

use super::error::{classify, store_error};
use super::keys::record;
use super::{Conn, SqliteStore};
use crate::adapters::sql::bound::Bound;
use crate::adapters::sql::prepared::KeepPrepared;
use crate::adapters::sql::rows::CountRow;
use crate::adapters::sql::run::{Read, Runner};
use crate::adapters::sql::Failure;
use crate::domain::access::AuditEntry;
use crate::domain::compliance::Compliance;
use crate::ports::StoreError;

const READERS: usize = 4;
/// How often the checkpointer moves committed pages from the WAL into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);
/// The log's size, in pages (40 MB), past which the writer's own commit checkpoints again.
const WRITER_CHECKPOINT_PAGES: i64 = 10_000;
/// The size, in bytes (64 MB), a log that grew past it is cut back to once it restarts.
const LOG_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

pub(super) fn configure(conn: &mut SqliteConnection) -> Result<(), DieselError> {
    // NORMAL is durable against a process crash in WAL mode; only power loss can drop the
    // last transactions.
    conn.batch_execute(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; \
         PRAGMA foreign_keys = ON; PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;",
    )
}

pub(super) fn ensure_parent(path: &str) -> Result<(), StoreError> {
    if let Some(parent) = Path::new(path).parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|err| {
                StoreError::Unavailable(format!("cannot create {}: {err}", parent.display()))
            })?;
        }
    }
    Ok(())
}

/// Sets SQLite's library-wide options, once, before the first connection opens (later calls
/// are refused by SQLite and change nothing). The bundled library is built serialized: every
/// call on a connection takes that connection's mutex, and every allocation a global one for
/// the memory statistics. Neither guards anything here: a diesel connection is used by one
/// thread at a time (it is `Send`, not `Sync`, and each store holds it behind a lock), and the
/// engine reads no SQLite memory statistics. Multi-thread mode and no statistics save those
/// locks on every statement (they were 8% of the CPU of dialing).
pub(crate) fn tune_library() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `sqlite3_config` is called with the argument types SQLite documents for each
        // option (none for MULTITHREAD, one int for MEMSTATUS); `Once` keeps the calls from
        // racing, and SQLite refuses (SQLITE_MISUSE) rather than misbehaves when the library
        // is already initialised.
        let refused = unsafe {
            [
                libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MULTITHREAD),
                libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS, 0),
            ]
        };
        if refused
            .iter()
            .any(|&code| code != libsqlite3_sys::SQLITE_OK)
        {
            tracing::debug!(codes = ?refused, "sqlite was initialised before its options were set");
        }
    });
}

pub(super) fn establish(path: &str) -> Result<SqliteConnection, StoreError> {
    tune_library();
    let mut conn = SqliteConnection::establish(path)
        .map_err(|err| StoreError::Unavailable(format!("cannot open {path}: {err}")))?;
    configure(&mut conn).map_err(classify)?;
    Ok(conn)
}

/// Moves the WAL's committed pages into the database from its own thread and connection, so
/// no commit waits for it. SQLite's automatic checkpoint runs inside the commit that takes the
/// log past 1,000 pages, on the writer, holding the one writer while it copies (4% of the CPU
/// of dialing, all of it on the writer's turn, and a million-target registration's reply
/// waited for its whole log to be copied). A passive checkpoint waits for no reader or writer;
/// the log restarts from its beginning at the first write after a checkpoint copied all of it.
/// Under a steady stream of commits the passive one rarely copies all of it (a commit lands
/// while it copies), so the writer keeps its own checkpoint for a log past
/// `WRITER_CHECKPOINT_PAGES`: by then the thread has copied nearly all, the writer copies the
/// rest with no commit in between, and the log restarts; a log grown past 64 MB by one large
/// transaction is cut back when it restarts. The thread ends when the store is dropped.
pub(super) struct Checkpointer {
    _stop: std::sync::mpsc::Sender<()>,
}

impl Checkpointer {
    fn start(path: &str) -> Result<Self, StoreError> {
        let mut conn = establish(path)?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_EVERY)
                {
                    if let Err(err) = conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
                        tracing::debug!(error = %err, "cannot checkpoint the sqlite log now");
                    }
                }
            })
            .map_err(|err| {
                StoreError::Unavailable(format!("cannot start the sqlite checkpointer: {err}"))
            })?;
        Ok(Self { _stop: stop })
    }
}

impl SqliteStore {
    pub async fn open(path: &str) -> Result<Self, StoreError> {
        tune_library();
        ensure_parent(path)?;
        let mut writer = Self::connect(path).await?;
        // The checkpointer copies the log; the writer only past its backstop (`Checkpointer`).
        writer
            .spawn_blocking(|conn| {
                conn.batch_execute(&format!(
                    "PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES}; \
                     PRAGMA journal_size_limit = {LOG_SIZE_LIMIT};"
                ))
            })
            .await
            .map_err(classify)?;
        let checkpointer = Checkpointer::start(path)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(Mutex::new(Self::connect(path).await?));
        }
        let mut point_readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            point_readers.push(std::sync::Mutex::new(establish(path)?));
        }
        Ok(Self {
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
            point_readers,
            compliance: Compliance::default(),
            pacing: Default::default(),
            _checkpointer: checkpointer,
        })
    }

    async fn connect(path: &str) -> Result<Conn, StoreError> {
        let mut conn = Conn::establish(path)
            .await
            .map_err(|err| StoreError::Unavailable(format!("cannot open {path}: {err}")))?;
        conn.spawn_blocking(configure).await.map_err(classify)?;
        Ok(conn)
    }

    /// Runs `work` as one immediate transaction on the writer connection.
    pub(super) async fn write<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<R, Failure> + Send + 'static,
    {
        let _under_way = self.pacing.other_write();
        self.held_write(work).await.0
    }

    /// Runs `work` as `write` does, as work that can wait: while other writes keep the writer
    /// busy it gets a small share of the writer's time (`pacing`).
    pub(super) async fn write_yielding<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<R, Failure> + Send + 'static,
    {
        let turn = self.pacing.turn().await;
        let (done, held) = self.held_write(work).await;
        turn.held(held);
        done
    }

    /// Runs `work` on the writer; with how long its transaction held the writer, failed or not
    /// (not the wait for it).
    async fn held_write<R, F>(&self, work: F) -> (Result<R, StoreError>, Duration)
    where
        R: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<R, Failure> + Send + 'static,
    {
        let mut conn = self.writer.lock().await;
        let ran = conn
            .spawn_blocking(move |conn| {
                let began = Instant::now();
                let done = conn.immediate_transaction(work);
                Ok((done, began.elapsed()))
            })
            .await;
        match ran {
            Ok((done, held)) => (done.map_err(store_error), held),
            Err(err) => (Err(classify(err)), Duration::ZERO),
        }
    }

    /// Runs `work` on a reader connection. A single statement is its own snapshot; reads of
    /// several statements use `read_snapshot`.
    pub(super) async fn read<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<R, Failure> + Send + 'static,
    {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let slot = &self.readers[start % self.readers.len()];
        let mut conn = slot.lock().await;
        conn.spawn_blocking(move |conn| Ok(work(conn)))
            .await
            .map_err(classify)?
            .map_err(store_error)
    }

    /// Runs a one-row lookup on the calling thread when a point reader is free, otherwise on
    /// the blocking pool.
    pub(super) async fn point_read<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<R, Failure> + Send + 'static,
    {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let count = self.point_readers.len();
        for offset in 0..count {
            if let Ok(mut conn) = self.point_readers[(start + offset) % count].try_lock() {
                return work(&mut conn).map_err(store_error);
            }
        }
        self.read(work).await
    }

    /// Runs `work` in one read transaction, so its statements see one snapshot.
    pub(super) async fn read_snapshot<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<R, Failure> + Send + 'static,
    {
        self.read(move |conn| conn.transaction(work)).await
    }
}

pub(super) async fn ping(store: &SqliteStore) -> Result<(), StoreError> {
    store
        .read(|conn| {
            let _: Vec<CountRow> = diesel::sql_query("SELECT 1 AS n").load(conn)?;
            Ok(())
        })
        .await
}

#[async_trait::async_trait]
impl Runner for SqliteStore {
    type DB = Sqlite;

    async fn rows<R>(&self, read: Read, query: Bound<Sqlite>) -> Result<Vec<R>, StoreError>
    where
        R: QueryableByName<Sqlite> + Send + 'static,
    {
        let work = move |conn: &mut SqliteConnection| Ok(query.prepared().load::<R>(conn)?);
        match read {
            Read::Point => self.point_read(work).await,
            Read::Scan => self.read(work).await,
        }
    }

    async fn write_and_load<R>(
        &self,
        writes: Vec<Bound<Sqlite>>,
        read: Bound<Sqlite>,
        audit: Option<AuditEntry>,
    ) -> Result<Vec<R>, StoreError>
    where
        R: QueryableByName<Sqlite> + Send + 'static,
    {
        self.write(writes_then_load(writes, read, audit)).await
    }

    async fn write_and_load_yielding<R>(
        &self,
        writes: Vec<Bound<Sqlite>>,
        read: Bound<Sqlite>,
        audit: Option<AuditEntry>,
    ) -> Result<Vec<R>, StoreError>
    where
        R: QueryableByName<Sqlite> + Send + 'static,
    {
        self.write_yielding(writes_then_load(writes, read, audit))
            .await
    }

    async fn writes(
        &self,
        writes: Vec<Bound<Sqlite>>,
        audit: Option<AuditEntry>,
    ) -> Result<Vec<usize>, StoreError> {
        self.write(counted_writes(writes, audit)).await
    }

    async fn writes_yielding(
        &self,
        writes: Vec<Bound<Sqlite>>,
        audit: Option<AuditEntry>,
    ) -> Result<Vec<usize>, StoreError> {
        self.write_yielding(counted_writes(writes, audit)).await
    }
}

/// The transaction of `Runner::write_and_load`.
fn writes_then_load<R>(
    writes: Vec<Bound<Sqlite>>,
    read: Bound<Sqlite>,
    audit: Option<AuditEntry>,
) -> impl FnOnce(&mut SqliteConnection) -> Result<Vec<R>, Failure> + Send + 'static
where
    R: QueryableByName<Sqlite> + Send + 'static,
{
    move |conn| {
        record(conn, audit.as_ref())?;
        for query in writes {
            query.prepared().run(conn)?;
        }
        let rows = read.prepared().load::<R>(conn)?;
        if rows.is_empty() {
            return Err(Failure::Store(StoreError::NotFound));
        }
        Ok(rows)
    }
}

/// The transaction of `Runner::writes`.
fn counted_writes(
    writes: Vec<Bound<Sqlite>>,
    audit: Option<AuditEntry>,
) -> impl FnOnce(&mut SqliteConnection) -> Result<Vec<usize>, Failure> + Send + 'static {
    move |conn| {
        record(conn, audit.as_ref())?;
        let mut changed = Vec::with_capacity(writes.len());
        for query in writes {
            changed.push(query.prepared().run_counted(conn)?);
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use diesel::sql_types::BigInt;

    use super::*;

    #[derive(QueryableByName)]
    struct Setting {
        #[diesel(sql_type = BigInt)]
        wal_autocheckpoint: i64,
    }

    #[tokio::test]
    async fn commits_leave_the_log_to_the_checkpointer() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("store.db");
        let path = path.to_str().expect("utf-8 path");
        let store = SqliteStore::open(path).await.expect("open");
        let automatic: Vec<Setting> = store
            .write(|conn| Ok(diesel::sql_query("PRAGMA wal_autocheckpoint").load(conn)?))
            .await
            .expect("read the setting");
        assert_eq!(
            automatic.first().map(|s| s.wal_autocheckpoint),
            Some(WRITER_CHECKPOINT_PAGES)
        );

        // About 1 MB: far below any automatic checkpoint (SQLite's default 1,000 pages, the
        // writer's backstop), so only the checkpointer can move it into the database file.
        let before = std::fs::metadata(path).expect("database file").len();
        store
            .write(|conn| {
                conn.batch_execute(
                    "CREATE TABLE filler (x BLOB); \
                     INSERT INTO filler SELECT randomblob(1000) \
                     FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
                     WHERE i < 1000) SELECT i FROM n);",
                )?;
                Ok(())
            })
            .await
            .expect("write");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::metadata(path).expect("database file").len() < before + 1_000_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "the log was not copied into the database"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
