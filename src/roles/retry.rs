//! The retry role brings calls back when their backoff ends. It learns of new retries from the
//! `retry` topic and sleeps until the earliest is due, then moves due calls of `in_progress`
//! campaigns back to `queued` and wakes the scheduler. Retries live in the store, so a retry due
//! while the process was down still happens after a restart (it rescans on start and on a
//! timer); paused campaigns keep theirs until they start again.

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{info_span, Instrument};

use crate::context::AppContext;
use crate::ports::{BusError, StoreError, Subscription, Topic};
use crate::roles::messages::{self, RetryMessage};
use crate::runtime::health::RoleHealth;
use crate::runtime::role::RoleName;

const PROMOTE_BATCH: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

pub struct RetryWorker {
    ctx: AppContext,
}

impl RetryWorker {
    pub fn new(ctx: AppContext) -> Self {
        Self { ctx }
    }

    /// Requeues every retry due at `now`; returns how many campaigns were woken.
    pub async fn promote(&self, now: DateTime<Utc>) -> Result<usize, RetryError> {
        let mut woken = 0;
        loop {
            let campaigns = self
                .ctx
                .store
                .promote_due_retries(now, PROMOTE_BATCH)
                .await?;
            if campaigns.is_empty() {
                break;
            }
            woken += campaigns.len();
            messages::wake(&*self.ctx.bus, campaigns).await?;
        }
        Ok(woken)
    }

    async fn step(&self) -> Option<DateTime<Utc>> {
        let result = async {
            self.promote(Utc::now()).await?;
            Ok::<_, RetryError>(self.ctx.store.next_retry_due().await?)
        }
        .instrument(info_span!("promote_retries"))
        .await;
        match result {
            Ok(next) => {
                self.ctx.health.set(RoleName::Retry, RoleHealth::Ready);
                next
            }
            Err(err) => {
                tracing::warn!(error = %err, "retry promotion failed");
                self.ctx.health.set(RoleName::Retry, RoleHealth::Failing);
                None
            }
        }
    }

    pub async fn run(
        self,
        mut subscription: Box<dyn Subscription>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut poll = tokio::time::interval(self.ctx.settings.retry.poll_interval.0);
        let mut next_due = self.step().await;
        loop {
            let sleep_for = next_due
                .map(|due| (due - Utc::now()).to_std().unwrap_or_default())
                .unwrap_or(self.ctx.settings.retry.poll_interval.0);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                batch = subscription.next_batch(4096) => {
                    let batch = batch?;
                    let tokens: Vec<u64> = batch.iter().map(|d| d.token).collect();
                    for delivery in &batch {
                        match messages::decode::<RetryMessage>(Topic::Retry, &delivery.message) {
                            Ok(retry) => {
                                next_due = Some(next_due.map_or(retry.due_at, |due| due.min(retry.due_at)));
                            }
                            Err(err) => {
                                self.ctx
                                    .bus
                                    .dead_letter(Topic::Retry, delivery.message.clone(), &err.to_string())
                                    .await?;
                            }
                        }
                    }
                    // The retry itself is in the store; the message only shortens the wait.
                    subscription.ack(&tokens).await?;
                }
                _ = tokio::time::sleep(sleep_for), if next_due.is_some() => {
                    next_due = self.step().await;
                }
                _ = poll.tick() => {
                    next_due = self.step().await;
                }
            }
        }
        Ok(())
    }
}
