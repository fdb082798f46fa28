//! Drives campaigns through the REST API, for the load test, the benchmarks and the integration
//! tests: registers and starts many at once, and reads their statistics in rounds until all
//! are completed, counting every read that breaks the statistics invariant.

use futures::stream::{self, StreamExt};
use serde_json::Value;

use super::client::ApiClient;
use super::LoadError;

/// Counters of a set of campaigns, summed over one round of statistics reads.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub calls: u64,
    pub pending: u64,
    pub in_flight: u64,
    pub completed: u64,
    pub failed: u64,
    pub canceled: u64,
    pub attempts: u64,
    pub retries: u64,
    /// Reads whose counts broke `total = pending + in_progress + completed + failed + canceled`.
    pub violations: u64,
}

impl Totals {
    pub fn add(&mut self, stats: &Value) {
        let n = |key: &str| stats[key].as_u64().unwrap_or(0);
        self.calls += n("total_calls");
        self.pending += n("pending_calls");
        self.in_flight += n("in_progress_calls");
        self.completed += n("completed_calls");
        self.failed += n("failed_calls");
        self.canceled += n("canceled_calls");
        self.attempts += n("attempts_total");
        self.retries += n("retries_attempted");
        if !stats_consistent(stats) {
            self.violations += 1;
        }
    }

    /// Calls in a final state.
    pub fn done(&self) -> u64 {
        self.completed + self.failed + self.canceled
    }

    /// Calls still waiting or dialing.
    pub fn open(&self) -> u64 {
        self.pending + self.in_flight
    }
}

/// Whether a stats body keeps `total = pending + in_progress + completed + failed + canceled`.
pub fn stats_consistent(stats: &Value) -> bool {
    let n = |key: &str| stats[key].as_u64().unwrap_or(0);
    n("pending_calls")
        + n("in_progress_calls")
        + n("completed_calls")
        + n("failed_calls")
        + n("canceled_calls")
        == n("total_calls")
}

/// Registers campaigns from their JSON texts, `concurrency` requests at a time; their ids in
/// the order of the bodies.
pub async fn create_all(
    client: &ApiClient,
    bodies: Vec<String>,
    concurrency: usize,
) -> Result<Vec<String>, LoadError> {
    stream::iter(bodies)
        .map(|body| async move { client.create_campaign(body).await })
        .buffered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

pub async fn start_all(
    client: &ApiClient,
    ids: &[String],
    concurrency: usize,
) -> Result<(), LoadError> {
    stream::iter(ids)
        .map(|id| client.start(id))
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// One round of statistics reads over `ids`, summed.
pub async fn totals(
    client: &ApiClient,
    ids: &[String],
    concurrency: usize,
) -> Result<Totals, LoadError> {
    let reads: Vec<Result<Value, LoadError>> = stream::iter(ids)
        .map(|id| client.stats(id))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut totals = Totals::default();
    for stats in reads {
        totals.add(&stats?);
    }
    Ok(totals)
}

/// The campaigns themselves, in the order of `ids`.
pub async fn campaigns(
    client: &ApiClient,
    ids: &[String],
    concurrency: usize,
) -> Result<Vec<Value>, LoadError> {
    stream::iter(ids)
        .map(|id| client.campaign(id))
        .buffered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Whether every campaign of `ids` is `completed`.
pub async fn all_completed(
    client: &ApiClient,
    ids: &[String],
    concurrency: usize,
) -> Result<bool, LoadError> {
    Ok(campaigns(client, ids, concurrency)
        .await?
        .iter()
        .all(|campaign| campaign["status"] == "completed"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn totals_sum_rounds_and_count_broken_reads() {
        let mut totals = Totals::default();
        totals.add(
            &json!({"total_calls": 5, "pending_calls": 1, "in_progress_calls": 1,
            "completed_calls": 2, "failed_calls": 1, "canceled_calls": 0,
            "attempts_total": 6, "retries_attempted": 1}),
        );
        totals.add(
            &json!({"total_calls": 3, "pending_calls": 0, "in_progress_calls": 0,
            "completed_calls": 1, "failed_calls": 0, "canceled_calls": 1}),
        );
        assert_eq!((totals.calls, totals.done(), totals.open()), (8, 5, 2));
        assert_eq!((totals.attempts, totals.retries), (6, 1));
        assert_eq!(totals.violations, 1, "the second read lost a call");
    }
}
