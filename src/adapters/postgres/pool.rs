//! The connection pool and the three ways a port method runs its statements: `read` (one or
//! more statements outside a transaction), `transaction` (READ COMMITTED, all or nothing) and
//! `snapshot` (read-only, one consistent view). Each classifies what its body fails with.

use std::time::Duration;

use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::AsyncConnection;
use diesel_async::RunQueryDsl;
use futures::future::BoxFuture;
use futures::FutureExt;

use diesel::deserialize::QueryableByName;
use diesel::pg::Pg;

use super::error::store_error;
use super::keys::record;
use super::{Conn, PgStore};
use crate::adapters::sql::bound::Bound;
use crate::adapters::sql::prepared::KeepPrepared;
use crate::adapters::sql::rows::CountRow;
use crate::adapters::sql::run::{Read, Runner};
use crate::adapters::sql::Failure;
use crate::domain::access::AuditEntry;
use crate::domain::compliance::Compliance;
use crate::ports::StoreError;

/// How long a caller waits for a pooled connection before the store reports itself unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The statements of one port method, run on the connection they are given.
pub type Body<'c, R> = BoxFuture<'c, Result<R, Failure>>;

impl PgStore {
    /// Builds a pool of up to `pool_size` connections and checks that one can be opened.
    pub async fn connect(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        let mut config = ManagerConfig::<Conn>::default();
        // A pooled connection is checked for an open transaction and a closed socket before
        // reuse; skipping the `SELECT 1` round trip keeps point reads to one round trip.
        config.recycling_method = RecyclingMethod::Fast;
        config.custom_setup = Box::new(|url| super::tls::establish(url).boxed());
        let manager = AsyncDieselConnectionManager::<Conn>::new_with_config(url, config);
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .build()
            .map_err(|err| StoreError::Internal(format!("postgres pool: {err}")))?;
        let store = Self {
            pool,
            compliance: Compliance::default(),
        };
        drop(store.conn().await?);
        Ok(store)
    }

    async fn conn(&self) -> Result<Object<Conn>, StoreError> {
        match tokio::time::timeout(ACQUIRE_TIMEOUT, self.pool.get()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(err)) => Err(StoreError::Unavailable(format!("postgres: {err}"))),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no postgres connection free after {} s",
                ACQUIRE_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Runs `body` on a pooled connection, each statement on its own.
    pub(super) async fn read<R, F>(&self, body: F) -> Result<R, StoreError>
    where
        R: Send,
        F: for<'c> FnOnce(&'c mut Conn) -> Body<'c, R> + Send,
    {
        let mut conn = self.conn().await?;
        body(&mut conn).await.map_err(store_error)
    }

    /// Runs `body` as one READ COMMITTED transaction.
    pub(super) async fn transaction<R, F>(&self, body: F) -> Result<R, StoreError>
    where
        R: Send,
        F: for<'c> FnOnce(&'c mut Conn) -> Body<'c, R> + Send,
    {
        let mut conn = self.conn().await?;
        conn.transaction::<R, Failure, _>(async move |conn| body(conn).await)
            .await
            .map_err(store_error)
    }

    /// Runs `body` as one read-only REPEATABLE READ transaction: its statements see one
    /// snapshot.
    pub(super) async fn snapshot<R, F>(&self, body: F) -> Result<R, StoreError>
    where
        R: Send,
        F: for<'c> FnOnce(&'c mut Conn) -> Body<'c, R> + Send,
    {
        let mut conn = self.conn().await?;
        conn.build_transaction()
            .read_only()
            .repeatable_read()
            .run::<R, Failure, _>(async move |conn| body(conn).await)
            .await
            .map_err(store_error)
    }
}

pub(super) async fn ping(store: &PgStore) -> Result<(), StoreError> {
    store
        .read(|conn| {
            async move {
                let _: Vec<CountRow> = diesel::sql_query("SELECT 1 AS n")
                    .prepared()
                    .load(conn)
                    .await?;
                Ok(())
            }
            .boxed()
        })
        .await
}

#[async_trait::async_trait]
impl Runner for PgStore {
    type DB = Pg;

    async fn rows<R>(&self, _read: Read, query: Bound<Pg>) -> Result<Vec<R>, StoreError>
    where
        R: QueryableByName<Pg> + Send + 'static,
    {
        self.read(move |conn| async move { Ok(query.prepared().load::<R>(conn).await?) }.boxed())
            .await
    }

    async fn write_and_load<R>(
        &self,
        writes: Vec<Bound<Pg>>,
        read: Bound<Pg>,
        audit: Option<AuditEntry>,
    ) -> Result<Vec<R>, StoreError>
    where
        R: QueryableByName<Pg> + Send + 'static,
    {
        self.transaction(move |conn| {
            async move {
                record(conn, audit.as_ref()).await?;
                for query in writes {
                    query.prepared().execute(conn).await?;
                }
                let rows = read.prepared().load::<R>(conn).await?;
                if rows.is_empty() {
                    return Err(Failure::Store(StoreError::NotFound));
                }
                Ok(rows)
            }
            .boxed()
        })
        .await
    }

    async fn writes(
        &self,
        writes: Vec<Bound<Pg>>,
        audit: Option<AuditEntry>,
    ) -> Result<Vec<usize>, StoreError> {
        let single = writes.len() == 1 && audit.is_none();
        if single {
            // One statement commits on its own.
            self.read(move |conn| run_writes(conn, writes, audit)).await
        } else {
            self.transaction(move |conn| run_writes(conn, writes, audit))
                .await
        }
    }
}

fn run_writes(
    conn: &mut Conn,
    writes: Vec<Bound<Pg>>,
    audit: Option<AuditEntry>,
) -> Body<'_, Vec<usize>> {
    async move {
        record(conn, audit.as_ref()).await?;
        let mut changed = Vec::with_capacity(writes.len());
        for query in writes {
            changed.push(query.prepared().execute(conn).await?);
        }
        Ok(changed)
    }
    .boxed()
}
