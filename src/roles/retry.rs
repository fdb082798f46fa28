//! The retry role brings calls back when their backoff ends. It learns of new retries from the
//! `retry` topic and sleeps until the earliest is due, then moves due calls of `in_progress`
//! campaigns back to `queued` and wakes the scheduler. Retries live in the store, so a retry due
//! while the process was down still happens after a restart (it rescans on start and on a
//! timer); paused campaigns keep theirs until they start again.

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info_span, Instrument};

use crate::context::AppContext;
use crate::ports::{BusError, StoreError, Subscription, Topic};
use crate::process::health::RoleHealth;
use crate::process::role::RoleName;
use crate::roles::consume::{self, Consumer};
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
    /// The earliest retry known to be due, from the store's rescan and the messages since.
    next_due: Option<DateTime<Utc>>,
    /// The next rescan of the store, whatever the messages say.
    rescan_at: Instant,
}

impl Consumer for RetryWorker {
    type Message = RetryMessage;
    const ROLE: RoleName = RoleName::Retry;
    const TOPIC: Topic = Topic::Retry;
    const GROUP: &'static str = "retry";
    const BATCH: usize = 4096;

    /// The retries themselves are in the store; a message only brings the next wake-up closer.
    async fn handle(
        &mut self,
        retries: Vec<RetryMessage>,
        _shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        for retry in retries {
            self.next_due = Some(
                self.next_due
                    .map_or(retry.due_at, |due| due.min(retry.due_at)),
            );
        }
        Ok(())
    }

    fn next_tick(&self) -> Option<Instant> {
        let due = self
            .next_due
            .map(|due| Instant::now() + (due - Utc::now()).to_std().unwrap_or_default());
        Some(due.map_or(self.rescan_at, |due| due.min(self.rescan_at)))
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        if now >= self.rescan_at {
            self.rescan_at = now + self.ctx.settings.retry.poll_interval.0;
        }
        self.next_due = self.step().await;
    }
}

impl RetryWorker {
    pub fn new(ctx: AppContext) -> Self {
        Self {
            ctx,
            next_due: None,
            // Due at once: a retry due while the process was down happens on start.
            rescan_at: Instant::now(),
        }
    }

    pub async fn run(
        self,
        subscription: Box<dyn Subscription>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let ctx = self.ctx.clone();
        consume::run(self, &ctx, subscription, shutdown).await
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
}
