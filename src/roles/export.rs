//! The timeline exporter, run by the status role when the timeline is separate from the store
//! (Scylla). The store records every attempt in the transaction that moves its call, so it is
//! the outbox: each round copies finished attempts to the timeline, then deletes them from the
//! store. A crash between the two repeats the copy, which the timeline's idempotent writes
//! absorb; several status processes may copy the same attempt, with the same effect.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::metrics::metrics;
use crate::ports::{Store, StoreError, Timeline, TimelineEntry, TimelineError};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Timeline(#[from] TimelineError),
}

pub struct TimelineExporter {
    store: Arc<dyn Store>,
    timeline: Arc<dyn Timeline>,
    batch: usize,
    interval: Duration,
}

/// How long shutdown waits for the last finished attempts to be copied; what is left stays in
/// the store for the next exporter.
const FINAL_DRAIN: Duration = Duration::from_secs(5);

impl TimelineExporter {
    pub fn new(
        store: Arc<dyn Store>,
        timeline: Arc<dyn Timeline>,
        batch: usize,
        interval: Duration,
    ) -> Self {
        Self {
            store,
            timeline,
            batch: batch.max(1),
            interval,
        }
    }

    /// One round: copies up to one batch of finished attempts to the timeline, then forgets
    /// them in the store. Returns how many it moved.
    pub async fn tick(&self) -> Result<usize, ExportError> {
        let entries = self.store.timeline_backlog(self.batch).await?;
        if entries.is_empty() {
            return Ok(0);
        }
        self.timeline.write(&entries).await?;
        let keys: Vec<_> = entries.iter().map(TimelineEntry::key).collect();
        // An attempt whose webhook is still to be rendered stays until it is; counting only
        // those forgotten keeps a batch of held attempts from being copied again at once.
        let forgotten = self.store.forget_attempts(&keys).await?;
        metrics().timeline_exported.inc_by(forgotten);
        Ok(usize::try_from(forgotten).unwrap_or(usize::MAX))
    }

    /// Exports until `stop`, then once more for what was recorded meanwhile.
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = self.interval;
        while !stop.is_cancelled() {
            let pause = match self.tick().await {
                // A full batch means more are waiting.
                Ok(moved) if moved >= self.batch => Duration::ZERO,
                Ok(_) => {
                    backoff = self.interval;
                    self.interval
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot export finished attempts, retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    backoff
                }
            };
            if !pause.is_zero() {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
        let drain = async {
            loop {
                match self.tick().await {
                    Ok(moved) if moved >= self.batch => continue,
                    Ok(_) => break,
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot export finished attempts at shutdown; they stay in the store");
                        break;
                    }
                }
            }
        };
        if tokio::time::timeout(FINAL_DRAIN, drain).await.is_err() {
            tracing::warn!(
                "finished attempts left in the store at shutdown, for the next exporter"
            );
        }
    }
}
