//! Recording outcomes, for the status role and for a carrier's callback the bus cannot take:
//! each report's retry time (backoff with jitter) is computed, every attempt is recorded with
//! its statistics in one store transaction (idempotent, so a report recorded twice counts
//! once; recording frees the call's slot), the retry role hears of new retries and the
//! scheduler is woken for the capacity freed.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::context::AppContext;
use crate::domain::call::{AttemptOutcome, NextStep};
use crate::domain::carrier::blocked;
use crate::metrics::metrics;
use crate::ports::{AppliedReport, AttemptReport, BusError, StoreError, Topic};
use crate::roles::messages::{self, RetryMessage, StatusMessage};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Nothing was recorded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Recorded; the retries and wake-ups that follow could not be sent, and the retry role's
    /// and the scheduler's rescans make up for them.
    #[error(transparent)]
    Bus(#[from] BusError),
}

pub struct OutcomeRecorder {
    ctx: AppContext,
    rng: StdRng,
}

impl OutcomeRecorder {
    pub fn new(ctx: AppContext) -> Self {
        Self {
            ctx,
            rng: StdRng::from_os_rng(),
        }
    }

    pub async fn record(
        &mut self,
        statuses: &[StatusMessage],
        now: DateTime<Utc>,
    ) -> Result<Vec<AppliedReport>, RecordError> {
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
}
