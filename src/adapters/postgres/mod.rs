//! The distributed store: PostgreSQL through diesel-async (tokio-postgres, no libpq) and a
//! deadpool pool. Same storage model and same behaviour as the embedded SQLite store, for
//! several processes writing at once.
//!
//! The queries are SQL text, as in the SQLite adapter, not diesel's DSL: the hot ones (claims
//! with `FOR UPDATE SKIP LOCKED` inside a data-modifying CTE, batch updates from `unnest`) have
//! no DSL form, and raw SQL lets both adapters share the row structs of `adapters::sql_rows`.
//!
//! # Concurrency
//!
//! Every port method that writes runs as one READ COMMITTED transaction. Where SQLite relied on
//! its single writer, this store takes row locks, always in the same order — the campaign row,
//! then its calls (in id order), then its statistics row — so concurrent writers queue instead
//! of deadlocking:
//!
//! - Status changes (`transition_campaign`, `update_campaign`, `enqueue_calls` and the
//!   completion sweep) lock the campaign row `FOR UPDATE`. `enqueue_calls` must: it may add work
//!   to a campaign that a concurrent report is about to complete.
//! - Writers of calls (`claim_calls`, `record_attempts`, `promote_due_retries`) take
//!   `FOR KEY SHARE` on the campaign row: they run beside each other but never beside a status
//!   change, so a pause or complete that committed first is always seen and one in flight waits.
//!   `KEY SHARE` still lets `record_attempts` mark the campaign completed itself.
//! - Claims pick queued calls with `FOR UPDATE SKIP LOCKED`: scheduler replicas never double
//!   dial and never wait on each other's rows; no global lock is involved. The locking SELECT
//!   is a `MATERIALIZED` CTE joined to the UPDATE, not `WHERE (campaign_id, id) IN (SELECT ..
//!   LIMIT n FOR UPDATE SKIP LOCKED)`: PostgreSQL plans that as a nested-loop semi join that
//!   re-scans the subquery for every outer row, each re-scan skips the rows the statement has
//!   already updated and returns fresh ones, and a claim of 2 moved 6 calls (EXPLAIN ANALYZE:
//!   `LockRows ... loops=6`).
//! - Counters only ever move by `x = x + delta` in the transaction that moves the calls, one
//!   UPDATE per campaign, so they stay exact under any number of writers.
//! - A campaign is completed only after its statistics row was updated (or locked) by the
//!   deciding transaction, so every transaction that could add work has either committed
//!   (and is counted) or is waiting.
//!
//! # Round trips
//!
//! Targets and calls go in multi-row `INSERT ... VALUES` of up to 5,000 rows, well under the
//! 65,535 bind parameters PostgreSQL accepts per statement. A claim is one statement (lock,
//! move, insert the attempts) plus the counter update. `record_attempts` handles a batch per
//! campaign in five statements whatever its size: lock the campaign, lock and read every
//! reported call (`id = ANY($2) ... FOR UPDATE`), move the calls and close their attempts in one
//! `UPDATE ... FROM unnest(...)`, update the counters, check for completion. Unlike SQLite,
//! calls are found by `(campaign_id, id)`: a report naming the wrong campaign counts as stale.
//!
//! # Citus
//!
//! Every table has `campaign_id` in its primary key and every write to a distributed table
//! filters on one campaign, so each is a single-shard (router) query once the tables are
//! distributed (this layout was checked against plain PostgreSQL 15 only):
//!
//! ```sql
//! SELECT create_reference_table('campaign_names');
//! SELECT create_reference_table('instances');
//! SELECT create_distributed_table('campaigns', 'id');
//! SELECT create_distributed_table('campaign_stats', 'campaign_id', colocate_with => 'campaigns');
//! SELECT create_distributed_table('targets', 'campaign_id', colocate_with => 'campaigns');
//! SELECT create_distributed_table('calls', 'campaign_id', colocate_with => 'campaigns');
//! SELECT create_distributed_table('attempts', 'campaign_id', colocate_with => 'campaigns');
//! ```
//!
//! Campaign names are unique case-insensitively through the `campaign_names` reference table,
//! since a distributed table cannot carry a unique index without its distribution column. The
//! cross-campaign reads (runnable campaigns, due retries, orphans, the completion sweep) only
//! select; their writes then go campaign by campaign. Plain PostgreSQL needs none of this.

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
mod pool;
mod rows;
mod timeline;
mod tls;

use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::AsyncPgConnection;

pub use self::migrator::{create_database, migrate, MIGRATIONS};
use crate::adapters::sql::store_by_aggregate;
use crate::domain::compliance::Compliance;

type Conn = AsyncPgConnection;

/// PostgreSQL refuses a statement with more bound parameters than this.
const BIND_LIMIT: usize = 65_535;
/// Rows per multi-row INSERT: big enough to amortise the round trip, small enough to keep one
/// statement's text and memory modest; always under `BIND_LIMIT`.
const MAX_INSERT_ROWS: usize = 5_000;

/// Rows per multi-row INSERT binding `per_row` parameters a row and `shared` once.
fn rows_per_insert(per_row: usize, shared: usize) -> usize {
    ((BIND_LIMIT - shared) / per_row).min(MAX_INSERT_ROWS)
}

pub struct PgStore {
    pool: Pool<Conn>,
    /// The deployment's calling rules, applied when a claimed attempt begins.
    compliance: Compliance,
}

impl PgStore {
    /// This store applying `compliance` (the defaults until set).
    pub fn with_compliance(mut self, compliance: Compliance) -> Self {
        self.compliance = compliance;
        self
    }
}

store_by_aggregate!(PgStore);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_stay_under_the_bind_limit() {
        for (per_row, shared) in [(2, 1), (3, 3)] {
            assert!(rows_per_insert(per_row, shared) * per_row + shared <= BIND_LIMIT);
        }
    }
}
