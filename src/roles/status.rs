//! The status role records outcomes. For each batch of reports it computes the retry time
//! (backoff with jitter), records every attempt with its statistics in one store transaction
//! (idempotent, so a redelivered report counts once; recording frees the call's slot), tells the retry
//! role about new retries and wakes the scheduler for the capacity it freed. With a separate
//! timeline (Scylla) it also runs the exporter that moves finished attempts there.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;
use tracing::{info_span, Instrument};

use crate::context::AppContext;
use crate::domain::call::{AttemptOutcome, NextStep};
use crate::domain::carrier::blocked;
use crate::metrics::metrics;
use crate::ports::{AppliedReport, AttemptReport, BusError, StoreError, Subscription, Topic};
use crate::process::health::RoleHealth;
use crate::process::role::RoleName;
use crate::roles::export::TimelineExporter;
use crate::roles::messages::{self, RetryMessage, StatusMessage};

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// How long a loop waits after a bus failure before trying again.
const OUTAGE_PAUSE: Duration = Duration::from_millis(500);

pub struct StatusWorker {
    ctx: AppContext,
    rng: StdRng,
}

impl StatusWorker {
    pub fn new(ctx: AppContext) -> Self {
        Self {
            ctx,
            rng: StdRng::from_os_rng(),
        }
    }

    pub async fn process_batch(
        &mut self,
        statuses: &[StatusMessage],
        now: DateTime<Utc>,
    ) -> Result<Vec<AppliedReport>, StatusError> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let reports: Vec<AttemptReport> = statuses
            .iter()
            .map(|status| {
                let delay = status
                    .policy
                    .policy()
                    .backoff(status.attempt, self.rng.random());
                AttemptReport {
                    call_id: status.call_id,
                    campaign_id: status.campaign_id,
                    attempt: status.attempt,
                    outcome: status.outcome.clone(),
                    ended_at: status.ended_at,
                    retry_at: status.ended_at
                        + chrono::Duration::from_std(delay).unwrap_or_default(),
                    expected_owner: None,
                    carrier: status.carrier.clone(),
                    attempt_started_at: status.attempt_started_at,
                }
            })
            .collect();
        let applied = self.ctx.store.record_attempts(&reports, now).await?;

        let mut retries = Vec::new();
        let mut campaigns = BTreeSet::new();
        for (applied, status) in applied.iter().zip(statuses) {
            campaigns.insert(applied.campaign_id);
            let Some(step) = applied.step else {
                continue;
            };
            let label = match (&step, &status.outcome) {
                (_, AttemptOutcome::Answered) => "answered",
                (NextStep::RetryAt(_), _) => "retry",
                (NextStep::Cancel, _) => "canceled",
                _ => "failed",
            };
            metrics().outcomes.with_label_values(&[label]).inc();
            // Counted once per attempt, where its outcome is first recorded.
            if let Some(carrier) = status.carrier.as_ref().filter(|c| blocked(c).is_some()) {
                metrics()
                    .blocked_calls
                    .with_label_values(&[carrier.caller_id.as_deref().unwrap_or("")])
                    .inc();
            }
            if let NextStep::RetryAt(due_at) = step {
                retries.push(messages::encode(
                    applied.campaign_id.to_string(),
                    &RetryMessage {
                        v: messages::VERSION,
                        campaign_id: applied.campaign_id,
                        due_at,
                    },
                ));
            }
        }
        messages::publish(&*self.ctx.bus, Topic::Retry, retries).await?;
        messages::wake(&*self.ctx.bus, campaigns).await?;
        Ok(applied)
    }

    /// Decodes, records and acknowledges one batch; retries the store until it succeeds, since
    /// an unrecorded outcome must not be acknowledged.
    async fn handle(
        &mut self,
        subscription: &mut dyn Subscription,
        batch: Vec<crate::ports::Delivery>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let mut statuses = Vec::with_capacity(batch.len());
        let tokens: Vec<u64> = batch.iter().map(|d| d.token).collect();
        for delivery in &batch {
            match messages::decode::<StatusMessage>(Topic::Status, &delivery.message) {
                Ok(status) => statuses.push(status),
                Err(err) => {
                    let dead = self
                        .ctx
                        .bus
                        .dead_letter(Topic::Status, delivery.message.clone(), &err.to_string())
                        .await;
                    if let Err(err) = dead {
                        // Nothing of the batch acknowledged: all of it comes again.
                        return Ok(messages::outlast(
                            err,
                            &self.ctx,
                            RoleName::Status,
                            OUTAGE_PAUSE,
                        )
                        .await?);
                    }
                }
            }
        }
        let mut backoff = Duration::from_millis(50);
        loop {
            let span = info_span!("record_outcomes", count = statuses.len());
            match self
                .process_batch(&statuses, Utc::now())
                .instrument(span)
                .await
            {
                Ok(_) => {
                    self.ctx.health.set(RoleName::Status, RoleHealth::Ready);
                    break;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot record outcomes, retrying");
                    self.ctx.health.set(RoleName::Status, RoleHealth::Failing);
                    if shutdown.is_cancelled() && backoff >= Duration::from_secs(5) {
                        // Unacknowledged: the bus delivers them again after a restart.
                        return Err(err.into());
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        if let Err(err) = subscription.ack(&tokens).await {
            // Recorded already: a redelivery counts nothing twice.
            messages::outlast(err, &self.ctx, RoleName::Status, OUTAGE_PAUSE).await?;
        }
        Ok(())
    }

    /// Records outcomes until `shutdown`; with a separate timeline, also exports finished
    /// attempts to it, until the outcomes recorded while draining are exported too.
    pub async fn run(
        self,
        subscription: Box<dyn Subscription>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let Some(timeline) = self.ctx.separate_timeline.clone() else {
            return self.consume(subscription, shutdown).await;
        };
        let settings = &self.ctx.settings.timeline;
        let exporter = TimelineExporter::new(
            self.ctx.store.clone(),
            timeline,
            settings.export_batch,
            settings.export_interval.0,
        );
        let stop_export = CancellationToken::new();
        let consume = async {
            let consumed = self.consume(subscription, shutdown).await;
            stop_export.cancel();
            consumed
        };
        let (consumed, ()) = tokio::join!(
            consume,
            exporter
                .run(stop_export.clone())
                .instrument(info_span!("export_timeline"))
        );
        consumed
    }

    async fn consume(
        mut self,
        mut subscription: Box<dyn Subscription>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        self.ctx.health.set(RoleName::Status, RoleHealth::Ready);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                batch = subscription.next_batch(2048) => match batch {
                    Ok(batch) => self.handle(&mut *subscription, batch, &shutdown).await?,
                    Err(err) => messages::outlast(err, &self.ctx, RoleName::Status, OUTAGE_PAUSE).await?,
                },
            }
        }
        // Record what this process's call role reported while it drained; bounded, since
        // call processes elsewhere keep publishing.
        let deadline = tokio::time::Instant::now() + self.ctx.settings.runtime.shutdown_grace.0;
        while tokio::time::Instant::now() < deadline {
            let Ok(batch) =
                tokio::time::timeout(Duration::from_millis(200), subscription.next_batch(2048))
                    .await
            else {
                break;
            };
            self.handle(&mut *subscription, batch?, &shutdown).await?;
        }
        Ok(())
    }
}
