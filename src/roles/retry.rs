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
use crate::process::health::RoleHealth;
use crate::process::role::RoleName;
use crate::roles::messages::{self, RetryMessage};

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

/// How long a loop waits after a bus failure before trying again.
const OUTAGE_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

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
                    let batch = match batch {
                        Ok(batch) => batch,
                        Err(err) => {
                            messages::outlast(err, &self.ctx, RoleName::Retry, OUTAGE_PAUSE).await?;
                            continue;
                        }
                    };
                    let mut tokens: Vec<u64> = Vec::with_capacity(batch.len());
                    for delivery in &batch {
                        match messages::decode::<RetryMessage>(Topic::Retry, &delivery.message) {
                            Ok(retry) => {
                                next_due = Some(next_due.map_or(retry.due_at, |due| due.min(retry.due_at)));
                            }
                            Err(err) => {
                                let dead = self
                                    .ctx
                                    .bus
                                    .dead_letter(Topic::Retry, delivery.message.clone(), &err.to_string())
                                    .await;
                                if let Err(err) = dead {
                                    // Not acknowledged: delivered again once the bus is back.
                                    messages::outlast(err, &self.ctx, RoleName::Retry, OUTAGE_PAUSE).await?;
                                    continue;
                                }
                            }
                        }
                        tokens.push(delivery.token);
                    }
                    // The retry itself is in the store; the message only shortens the wait.
                    if let Err(err) = subscription.ack(&tokens).await {
                        messages::outlast(err, &self.ctx, RoleName::Retry, OUTAGE_PAUSE).await?;
                    }
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
