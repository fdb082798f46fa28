//! The call role dials. For each dispatch it places the call with the telephony provider under
//! the lease the scheduler took, keeps the lease alive while the call lasts, and when the
//! provider reports the end publishes the outcome on the `status` topic, then acknowledges the
//! dispatch. On shutdown it takes no new dispatch and waits for calls in progress to end, up to
//! `runtime.shutdown_grace`.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info_span, Instrument};

use crate::context::AppContext;
use crate::domain::call::AttemptOutcome;
use crate::domain::ids::{CallId, CampaignId, InstanceId, LeaseId};
use crate::metrics::metrics;
use crate::ports::{
    BusError, Delivery, DialRequest, ProviderReport, StoreError, Subscription, Topic,
};
use crate::roles::messages::{self, DispatchMessage, PolicyTerms, StatusMessage};
use crate::runtime::health::RoleHealth;
use crate::runtime::role::RoleName;
use crate::telemetry;

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Limiter(#[from] crate::ports::LimiterError),
}

struct InFlight {
    token: u64,
    lease_id: LeaseId,
    campaign_id: CampaignId,
    policy: PolicyTerms,
    span: tracing::Span,
}

pub struct CallWorker {
    ctx: AppContext,
    sink: mpsc::UnboundedSender<ProviderReport>,
    reports: Option<mpsc::UnboundedReceiver<ProviderReport>>,
    in_flight: HashMap<(CallId, u32), InFlight>,
    /// Adopted dispatches waiting for a lease (theirs expired in transit).
    waiting: Vec<(DispatchMessage, Delivery)>,
}

impl CallWorker {
    pub fn new(ctx: AppContext) -> Self {
        let (sink, reports) = mpsc::unbounded_channel();
        Self {
            ctx,
            sink,
            reports: Some(reports),
            in_flight: HashMap::new(),
            waiting: Vec::new(),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Starts dialing a batch of dispatches. Returns the tokens to acknowledge at once (poison,
    /// duplicates, attempts already recorded elsewhere); a dialed message is acknowledged when
    /// its outcome is published.
    ///
    /// An attempt claimed by another process is first adopted in the store (this process
    /// becomes its owner, vouched for by its heartbeat). Adoption fails only if the attempt was
    /// already recorded, for instance as lost after its claimer died: then it is not dialed,
    /// which is what keeps a redelivered dispatch from dialing a number twice.
    pub async fn process_batch(
        &mut self,
        deliveries: Vec<Delivery>,
    ) -> Result<Vec<u64>, CallError> {
        let mut done = Vec::new();
        let mut fresh = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match messages::decode::<DispatchMessage>(Topic::Dispatch, &delivery.message) {
                Ok(dispatch)
                    if self
                        .in_flight
                        .contains_key(&(dispatch.call_id, dispatch.attempt)) =>
                {
                    // A redelivery of an attempt this process is dialing: never dial twice.
                    done.push(delivery.token);
                }
                Ok(dispatch) => fresh.push((dispatch, delivery)),
                Err(err) => {
                    self.ctx
                        .bus
                        .dead_letter(Topic::Dispatch, delivery.message, &err.to_string())
                        .await?;
                    done.push(delivery.token);
                }
            }
        }
        // A bus that stays in this process can only bring a dispatch back here, where the
        // in-flight set already refuses a second dial; across processes every attempt is
        // adopted from its claimer exactly once.
        let adopt = self.ctx.bus.crosses_processes();
        let wanted: Vec<(CampaignId, CallId, u32, InstanceId)> = if adopt {
            fresh
                .iter()
                .map(|(d, _)| (d.campaign_id, d.call_id, d.attempt, d.owner))
                .collect()
        } else {
            Vec::new()
        };
        let adopted = if wanted.is_empty() {
            Vec::new()
        } else {
            self.ctx
                .store
                .adopt_attempts(&wanted, self.ctx.dialer)
                .await?
        };
        let refused: std::collections::HashSet<(CallId, u32)> = wanted
            .iter()
            .zip(&adopted)
            .filter(|(_, adopted)| !**adopted)
            .map(|((_, call_id, attempt, _), _)| (*call_id, *attempt))
            .collect();
        let (refused_now, adopted_now): (Vec<_>, Vec<_>) = fresh
            .into_iter()
            .partition(|(d, _)| refused.contains(&(d.call_id, d.attempt)));
        for (dispatch, delivery) in refused_now {
            tracing::info!(call_id = %dispatch.call_id, attempt = dispatch.attempt, "attempt already recorded, not dialing");
            done.push(delivery.token);
        }
        if adopt {
            // A dispatch that waited in the bus longer than a lease lives has lost its slot,
            // which the scheduler may have handed out again: it waits for a new one.
            self.waiting.extend(adopted_now);
            self.start_waiting().await?;
        } else {
            for (dispatch, delivery) in adopted_now {
                self.start(dispatch, delivery).await;
            }
        }
        Ok(done)
    }

    /// Dials the adopted dispatches whose lease is alive, or for which a new lease can be
    /// taken now; the others keep waiting (unacknowledged) until capacity frees up.
    async fn start_waiting(&mut self) -> Result<(), CallError> {
        if self.waiting.is_empty() {
            return Ok(());
        }
        let leases: Vec<(CampaignId, LeaseId)> = self
            .waiting
            .iter()
            .map(|(d, _)| (d.campaign_id, d.lease_id))
            .collect();
        let alive = self.ctx.limiter.renew(&leases).await?;
        let waiting = std::mem::take(&mut self.waiting);
        for ((mut dispatch, delivery), alive) in waiting
            .into_iter()
            .zip(alive.into_iter().chain(std::iter::repeat(false)))
        {
            if !alive {
                let fresh = self
                    .ctx
                    .limiter
                    .acquire(dispatch.campaign_id, dispatch.limit, 1)
                    .await?;
                let Some(lease) = fresh.into_iter().next() else {
                    self.waiting.push((dispatch, delivery));
                    continue;
                };
                tracing::info!(call_id = %dispatch.call_id, "lease expired in transit, took a new one");
                dispatch.lease_id = lease;
            }
            self.start(dispatch, delivery).await;
        }
        Ok(())
    }

    async fn start(&mut self, dispatch: DispatchMessage, delivery: Delivery) {
        let key = (dispatch.call_id, dispatch.attempt);
        let span = info_span!(
            "attempt",
            call_id = %dispatch.call_id,
            campaign_id = %dispatch.campaign_id,
            attempt = dispatch.attempt,
        );
        telemetry::follow_headers(&span, &delivery.message.headers);
        let request = DialRequest {
            call_id: dispatch.call_id,
            campaign_id: dispatch.campaign_id,
            attempt: dispatch.attempt,
            phone_number: dispatch.phone_number.clone(),
        };
        self.in_flight.insert(
            key,
            InFlight {
                token: delivery.token,
                lease_id: dispatch.lease_id,
                campaign_id: dispatch.campaign_id,
                policy: dispatch.policy,
                span: span.clone(),
            },
        );
        metrics().dialing.inc();
        let dialed = self
            .ctx
            .provider
            .dial(request.clone(), self.sink.clone())
            .instrument(span)
            .await;
        if let Err(err) = dialed {
            tracing::warn!(error = %err, call_id = %request.call_id, "provider refused the call");
            let _ = self.sink.send(ProviderReport {
                request,
                outcome: AttemptOutcome::Failed {
                    error: format!("provider_error: {err}"),
                    retryable: true,
                },
                ended_at: Utc::now(),
            });
        }
    }

    /// Publishes the outcomes and returns the dispatch tokens now safe to acknowledge.
    pub async fn report(&mut self, reports: Vec<ProviderReport>) -> Result<Vec<u64>, BusError> {
        let mut tokens = Vec::with_capacity(reports.len());
        let mut statuses = Vec::with_capacity(reports.len());
        for report in reports {
            let key = (report.request.call_id, report.request.attempt);
            let Some(flight) = self.in_flight.remove(&key) else {
                continue;
            };
            metrics().dialing.dec();
            let _entered = flight.span.enter();
            tracing::debug!(outcome = ?report.outcome, "attempt ended");
            statuses.push(messages::encode(
                report.request.call_id.to_string(),
                &StatusMessage {
                    v: messages::VERSION,
                    call_id: report.request.call_id,
                    campaign_id: flight.campaign_id,
                    attempt: report.request.attempt,
                    lease_id: flight.lease_id,
                    outcome: report.outcome,
                    ended_at: report.ended_at,
                    policy: flight.policy,
                },
            ));
            tokens.push(flight.token);
        }
        messages::publish(&*self.ctx.bus, Topic::Status, statuses).await?;
        Ok(tokens)
    }

    async fn renew_leases(&self) {
        let leases: Vec<_> = self
            .in_flight
            .values()
            .map(|flight| (flight.campaign_id, flight.lease_id))
            .collect();
        if leases.is_empty() {
            return;
        }
        match self.ctx.limiter.renew(&leases).await {
            Ok(alive) => {
                let lost = alive.iter().filter(|alive| !**alive).count();
                if lost > 0 {
                    // Only a limiter outage longer than limiter.lease_ttl gets here.
                    tracing::warn!(lost, "leases of calls in progress expired");
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot renew leases"),
        }
    }

    async fn retry_waiting(&mut self) {
        if let Err(err) = self.start_waiting().await {
            tracing::warn!(error = %err, waiting = self.waiting.len(), "cannot start waiting dispatches");
        }
    }

    pub async fn run(
        mut self,
        mut dispatches: Box<dyn Subscription>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let Some(mut reports) = self.reports.take() else {
            anyhow::bail!("call worker already ran");
        };
        let renew_every =
            (self.ctx.settings.limiter.lease_ttl.0 / 3).max(Duration::from_millis(100));
        let mut renew = tokio::time::interval(renew_every);
        self.ctx.health.set(RoleName::Call, RoleHealth::Ready);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(first) = reports.recv() => {
                    let tokens = self.report(drain(first, &mut reports)).await?;
                    dispatches.ack(&tokens).await?;
                    self.retry_waiting().await;
                }
                batch = dispatches.next_batch(1024) => {
                    let done = self.process_batch(batch?).await?;
                    dispatches.ack(&done).await?;
                }
                _ = renew.tick() => {
                    self.renew_leases().await;
                    self.retry_waiting().await;
                }
            }
        }
        let grace = self.ctx.settings.runtime.shutdown_grace.0;
        let deadline = tokio::time::Instant::now() + grace;
        tracing::info!(in_flight = self.in_flight.len(), "call role draining");
        while !self.in_flight.is_empty() {
            tokio::select! {
                Some(first) = reports.recv() => {
                    let tokens = self.report(drain(first, &mut reports)).await?;
                    dispatches.ack(&tokens).await?;
                }
                _ = renew.tick() => self.renew_leases().await,
                _ = tokio::time::sleep_until(deadline) => {
                    // These attempts stay `dialing` in the store and are recovered as lost.
                    tracing::warn!(abandoned = self.in_flight.len(), "shutdown grace elapsed with calls in progress");
                    break;
                }
            }
        }
        Ok(())
    }
}

fn drain(
    first: ProviderReport,
    reports: &mut mpsc::UnboundedReceiver<ProviderReport>,
) -> Vec<ProviderReport> {
    let mut batch = vec![first];
    while batch.len() < 1024 {
        match reports.try_recv() {
            Ok(report) => batch.push(report),
            Err(_) => break,
        }
    }
    batch
}
