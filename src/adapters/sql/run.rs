//! What a store does with one bound statement: read its rows, or run it as a write of its own
//! (with the audit entry it records). Each store implements this in its own way of holding
//! connections; the store methods that are one statement are then written once, in
//! `sql::single`, for both.

use diesel::deserialize::QueryableByName;

use super::bound::Bound;
use super::bound::Dialect;
use crate::domain::access::AuditEntry;
use crate::ports::StoreError;

/// How a read reaches its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// A lookup of one row by its key, cheap enough for the calling thread where the store can.
    Point,
    /// Any other read; one statement is its own snapshot.
    Scan,
}

#[async_trait::async_trait]
pub trait Runner: Send + Sync {
    type DB: Dialect;

    /// The rows `query` returns.
    async fn rows<R>(&self, read: Read, query: Bound<Self::DB>) -> Result<Vec<R>, StoreError>
    where
        R: QueryableByName<Self::DB> + Send + 'static;

    /// Runs `writes` in order, then `read`, in one transaction that also records `audit`;
    /// returns the rows `read` returns. A `read` that finds no row rolls it all back as
    /// `NotFound`: the row written is the answer, and an audit entry of a change that did not
    /// happen is not kept.
    async fn write_and_load<R>(
        &self,
        writes: Vec<Bound<Self::DB>>,
        read: Bound<Self::DB>,
        audit: Option<AuditEntry>,
    ) -> Result<Vec<R>, StoreError>
    where
        R: QueryableByName<Self::DB> + Send + 'static;

    /// Runs `writes` in order in one transaction that also records `audit`; returns the rows
    /// each changed.
    async fn writes(
        &self,
        writes: Vec<Bound<Self::DB>>,
        audit: Option<AuditEntry>,
    ) -> Result<Vec<usize>, StoreError>;

    /// `write_and_load` as work that can wait: a store with one writer gives it a small share
    /// of the writer while other writes keep it busy (the webhook outbox's, beside dialing).
    async fn write_and_load_yielding<R>(
        &self,
        writes: Vec<Bound<Self::DB>>,
        read: Bound<Self::DB>,
        audit: Option<AuditEntry>,
    ) -> Result<Vec<R>, StoreError>
    where
        R: QueryableByName<Self::DB> + Send + 'static,
    {
        self.write_and_load(writes, read, audit).await
    }

    /// `writes` as work that can wait (see `write_and_load_yielding`).
    async fn writes_yielding(
        &self,
        writes: Vec<Bound<Self::DB>>,
        audit: Option<AuditEntry>,
    ) -> Result<Vec<usize>, StoreError> {
        self.writes(writes, audit).await
    }

    /// Runs `query` in a transaction of its own that also records `audit`; returns the rows it
    /// changed.
    async fn write(
        &self,
        query: Bound<Self::DB>,
        audit: Option<AuditEntry>,
    ) -> Result<usize, StoreError> {
        let changed = self.writes(vec![query], audit).await?;
        Ok(changed.into_iter().sum())
    }
}
