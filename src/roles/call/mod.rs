//! The call role dials. For each dispatch it first begins the attempt in the store, which checks
//! at that moment that the attempt is still the one its claimer handed out and that its campaign
//! may dial (running, inside its hours); then it places the call with the telephony provider.
//! When the provider reports the end it publishes the outcome on the `status` topic, then
//! acknowledges the dispatch. A real carrier's call instead lives at the carrier once created:
//! the dialer hands the attempt over in the store (the carrier's callbacks, received by any api
//! process, record its outcome) and acknowledges the dispatch then.
//!
//! The call's slot is not this process's: it belongs to the attempt, counted by the store from
//! claim until the outcome is recorded. So nothing here keeps a slot alive, and a failure of a
//! backend (store, bus) is waited out and retried rather than ending the role: what it holds in
//! memory (dispatches not yet begun, outcomes not yet published) is kept until it goes through.
//!
//! On shutdown it takes no new dispatch and waits for calls in progress to end, up to
//! `runtime.shutdown_grace`.

mod intake;
mod paced;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info_span, Instrument};

use crate::context::{AppContext, StoreClock};
use crate::domain::call::{other_sids, AttemptOutcome};
use crate::domain::carrier::CarrierCall;
use crate::domain::ids::{CallId, CampaignId, InstanceId};
use crate::metrics::metrics;
use crate::ports::{
    AttemptKey, Begin, BusError, CreateCheck, Delivery, DialRequest, HeldAttempt, PauseReason,
    ProviderEvent, ProviderReport, Store, StoreError, Subscription, Topic, Unplaced, Unspent,
};
use crate::process::backoff::Backoff;
use crate::process::health::RoleHealth;
use crate::process::role::RoleName;
use crate::roles::messages::{self, DispatchMessage, PolicyTerms, StatusMessage};
use crate::telemetry;
use paced::PacedQueue;

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

struct InFlight {
    token: u64,
    campaign_id: CampaignId,
    policy: PolicyTerms,
    span: tracing::Span,
}

/// The check before each create: the store's `recheck_attempts` for this dialer.
struct StoreCheck {
    store: Arc<dyn Store>,
    dialer: InstanceId,
    clock: Arc<StoreClock>,
}

#[async_trait]
impl CreateCheck for StoreCheck {
    async fn may_create(&self, attempt: AttemptKey) -> Result<Begin, StoreError> {
        let answers = self
            .store
            .recheck_attempts(&[attempt], self.dialer, self.clock.now())
            .await?;
        Ok(answers.into_iter().next().unwrap_or(Begin::Stale))
    }

    async fn other_sids(&self, attempt: AttemptKey) -> Result<Vec<String>, StoreError> {
        let call = self.store.get_call(attempt.call_id).await?;
        Ok(call.map_or_else(Vec::new, |(_, attempts)| {
            other_sids(attempts, attempt.attempt)
        }))
    }
}

pub struct CallWorker {
    ctx: AppContext,
    check: Arc<dyn CreateCheck>,
    sink: mpsc::UnboundedSender<ProviderEvent>,
    reports: Option<mpsc::UnboundedReceiver<ProviderEvent>>,
    in_flight: HashMap<(CallId, u32), InFlight>,
    /// Dispatches received but not yet begun, because a backend failed; retried in order.
    pending: Vec<Delivery>,
    /// Ended attempts whose outcome is not yet on the bus.
    unpublished: Vec<ProviderReport>,
    /// Attempts the carrier took, not yet handed over in the store.
    unhanded: Vec<(DialRequest, CarrierCall)>,
    /// Attempts never created, not yet handed back in the store (with the reason to pause
    /// their campaign, when the carrier refused its request).
    unreleased: Vec<(DialRequest, Option<PauseReason>)>,
    /// Acknowledgements the bus has not taken yet.
    unacked: Vec<u64>,
    /// Dispatches waiting for their turn in the provider's pace, not yet begun.
    paced: PacedQueue,
    /// Campaigns with dispatches waiting that may not dial now, as last read, and when.
    stopped: HashSet<CampaignId>,
    stopped_read_at: Option<tokio::time::Instant>,
    /// When to ask the pace again for them.
    pace_at: tokio::time::Instant,
}

/// Dispatches kept waiting for the pace before no more are fetched: the rest wait in the bus.
const MAX_PACED: usize = 4096;
/// How long the campaigns that may not dial are taken as read.
const STOPPED_FOR: Duration = Duration::from_millis(500);

impl CallWorker {
    pub fn new(ctx: AppContext) -> Self {
        let (sink, reports) = mpsc::unbounded_channel();
        let check = Arc::new(StoreCheck {
            store: ctx.store.clone(),
            dialer: ctx.dialer,
            clock: ctx.clock.clone(),
        });
        Self {
            ctx,
            check,
            sink,
            reports: Some(reports),
            in_flight: HashMap::new(),
            pending: Vec::new(),
            unpublished: Vec::new(),
            unhanded: Vec::new(),
            unreleased: Vec::new(),
            unacked: Vec::new(),
            paced: PacedQueue::default(),
            stopped: HashSet::new(),
            stopped_read_at: None,
            pace_at: tokio::time::Instant::now(),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The provider's reports of ended attempts received so far, for a caller that drives the
    /// worker step by step instead of `run` (attempts the carrier took wait for `hand_over`).
    pub fn take_reports(&mut self) -> Vec<ProviderReport> {
        let mut events = Vec::new();
        if let Some(reports) = self.reports.as_mut() {
            while let Ok(event) = reports.try_recv() {
                events.push(event);
            }
        }
        self.sort_events(events)
    }

    /// Keeps the attempts the carrier took for `hand_over`; returns the ended ones.
    fn sort_events(&mut self, events: Vec<ProviderEvent>) -> Vec<ProviderReport> {
        let mut ended = Vec::new();
        for event in events {
            match event {
                ProviderEvent::Ended(report) => ended.push(report),
                ProviderEvent::Placed { request, carrier } => {
                    self.unhanded.push((request, carrier))
                }
                ProviderEvent::Unplaced { request, why } => match why {
                    // The store handed it back in the check itself, or it is not ours.
                    Unplaced::Checked(answer) => {
                        if let Some(flight) =
                            self.in_flight.remove(&(request.call_id, request.attempt))
                        {
                            metrics().dialing.dec();
                            let _entered = flight.span.enter();
                            tracing::info!(answer = ?answer, "attempt not created: the check before its create said no");
                            self.unacked.push(flight.token);
                        }
                    }
                    Unplaced::Deadline => self.unreleased.push((request, None)),
                    Unplaced::Refused(reason) => self.unreleased.push((request, Some(reason))),
                },
            }
        }
        ended
    }

    /// Hands back the attempts never created (pausing first the campaigns the carrier refused)
    /// and returns their dispatch tokens. On failure they are kept for the next try; a process
    /// that dies meanwhile leaves them to recovery, which finds no call and hands them back.
    pub async fn release_unplaced(&mut self) -> Result<Vec<u64>, StoreError> {
        if self.unreleased.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.ctx.clock.now();
        for (request, reason) in &self.unreleased {
            if let Some(reason) = reason {
                if self
                    .ctx
                    .store
                    .pause_for_carrier(request.campaign_id, reason.clone(), now)
                    .await?
                {
                    tracing::warn!(campaign_id = %request.campaign_id, carrier_code = reason.carrier_code.unwrap_or_default(), "campaign paused: the carrier refuses its request");
                }
            }
        }
        let held: Vec<HeldAttempt> = self
            .unreleased
            .iter()
            .map(|(request, _)| HeldAttempt {
                key: request.key(),
                holder: Some(self.ctx.dialer),
                began_at: request.started_at,
            })
            .collect();
        self.ctx
            .store
            .release_attempts(&held, Unspent::NeverCreated, now)
            .await?;
        let mut tokens = Vec::with_capacity(held.len());
        for (request, _) in std::mem::take(&mut self.unreleased) {
            let Some(flight) = self.in_flight.remove(&(request.call_id, request.attempt)) else {
                continue;
            };
            metrics().dialing.dec();
            let _entered = flight.span.enter();
            tracing::info!("attempt handed back unspent: never created at the carrier");
            tokens.push(flight.token);
        }
        Ok(tokens)
    }

    /// Hands the attempts the carrier took over to it in the store, and returns their dispatch
    /// tokens, now safe to acknowledge. On failure they are kept for the next try; the carrier's
    /// callbacks record their outcomes either way.
    pub async fn hand_over(&mut self) -> Result<Vec<u64>, StoreError> {
        if self.unhanded.is_empty() {
            return Ok(Vec::new());
        }
        let batch: Vec<(HeldAttempt, CarrierCall)> = self
            .unhanded
            .iter()
            .map(|(request, carrier)| {
                (
                    HeldAttempt {
                        key: request.key(),
                        holder: Some(self.ctx.dialer),
                        began_at: request.started_at,
                    },
                    carrier.clone(),
                )
            })
            .collect();
        self.ctx
            .store
            .hand_to_carrier(&batch, self.ctx.clock.now())
            .await?;
        let mut tokens = Vec::with_capacity(batch.len());
        for (request, carrier) in std::mem::take(&mut self.unhanded) {
            let Some(flight) = self.in_flight.remove(&(request.call_id, request.attempt)) else {
                continue;
            };
            metrics().dialing.dec();
            let _entered = flight.span.enter();
            tracing::debug!(
                sid = carrier.sid.as_deref().unwrap_or(""),
                "call placed at the carrier"
            );
            tokens.push(flight.token);
        }
        Ok(tokens)
    }

    /// Dispatches waiting for a backend to come back.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Takes a batch of dispatches: begins their attempts and dials those that may go now.
    /// Returns the tokens to acknowledge at once (poison, duplicates, attempts held back or
    /// gone stale); a dialed message is acknowledged when its outcome is published. On a
    /// backend failure nothing of the batch is lost: it stays pending, and the next call (with
    /// or without new deliveries) tries again.
    pub async fn process_batch(
        &mut self,
        deliveries: Vec<Delivery>,
    ) -> Result<Vec<u64>, CallError> {
        self.pending.extend(deliveries);
        let mut done = Vec::new();
        let mut fresh: Vec<(DispatchMessage, Delivery)> = Vec::with_capacity(self.pending.len());
        let mut queue = std::mem::take(&mut self.pending).into_iter();
        while let Some(delivery) = queue.next() {
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
                    let dead = self
                        .ctx
                        .bus
                        .dead_letter(Topic::Dispatch, delivery.message.clone(), &err.to_string())
                        .await;
                    if let Err(err) = dead {
                        self.pending = fresh
                            .into_iter()
                            .map(|(_, delivery)| delivery)
                            .chain(std::iter::once(delivery))
                            .chain(queue)
                            .collect();
                        self.unacked.extend(done);
                        return Err(err.into());
                    }
                    done.push(delivery.token);
                }
            }
        }
        let held: Vec<HeldAttempt> = fresh
            .iter()
            .map(|(dispatch, _)| HeldAttempt {
                key: AttemptKey {
                    campaign_id: dispatch.campaign_id,
                    call_id: dispatch.call_id,
                    attempt: dispatch.attempt,
                },
                holder: Some(dispatch.owner),
                began_at: dispatch.started_at,
            })
            .collect();
        let answers = match self
            .ctx
            .store
            // The store's clock, not this host's: hours and caps are judged on one clock.
            .begin_attempts(&held, self.ctx.dialer, self.ctx.clock.now())
            .await
        {
            Ok(answers) => answers,
            Err(err) => {
                self.pending = fresh.into_iter().map(|(_, delivery)| delivery).collect();
                self.unacked.extend(done);
                return Err(err.into());
            }
        };
        for ((dispatch, delivery), answer) in fresh.into_iter().zip(answers) {
            match answer {
                Begin::Dial => self.start(dispatch, delivery).await,
                Begin::Held(reason) => {
                    tracing::info!(call_id = %dispatch.call_id, attempt = dispatch.attempt, reason = reason.as_str(), "attempt handed back unspent");
                    done.push(delivery.token);
                }
                Begin::Forbidden => {
                    tracing::info!(call_id = %dispatch.call_id, attempt = dispatch.attempt, "number on the do-not-call list, call canceled");
                    done.push(delivery.token);
                }
                Begin::Stale => {
                    tracing::info!(call_id = %dispatch.call_id, attempt = dispatch.attempt, "attempt moved on, not dialing");
                    done.push(delivery.token);
                }
            }
        }
        Ok(done)
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
            policy: dispatch.policy,
            voice: dispatch.voice.clone(),
            started_at: dispatch.started_at,
        };
        self.in_flight.insert(
            key,
            InFlight {
                token: delivery.token,
                campaign_id: dispatch.campaign_id,
                policy: dispatch.policy,
                span: span.clone(),
            },
        );
        metrics().dialing.inc();
        let dialed = self
            .ctx
            .provider
            .dial(request.clone(), self.sink.clone(), self.check.clone())
            .instrument(span)
            .await;
        if let Err(err) = dialed {
            tracing::warn!(error = %err, call_id = %request.call_id, "provider refused the call");
            let _ = self.sink.send(ProviderEvent::Ended(ProviderReport {
                request,
                outcome: AttemptOutcome::Failed {
                    error: format!("provider_error: {err}"),
                    retryable: true,
                },
                ended_at: Utc::now(),
                carrier: None,
            }));
        }
    }

    /// Publishes the outcomes (with any left from an earlier failure) and returns the dispatch
    /// tokens now safe to acknowledge. On failure the outcomes are kept for the next try.
    pub async fn report(&mut self, reports: Vec<ProviderReport>) -> Result<Vec<u64>, BusError> {
        self.unpublished.extend(reports);
        if self.unpublished.is_empty() {
            return Ok(Vec::new());
        }
        let mut statuses = Vec::with_capacity(self.unpublished.len());
        for report in &self.unpublished {
            let key = (report.request.call_id, report.request.attempt);
            let Some(flight) = self.in_flight.get(&key) else {
                continue;
            };
            statuses.push(messages::encode(
                report.request.call_id.to_string(),
                &StatusMessage {
                    v: messages::VERSION,
                    call_id: report.request.call_id,
                    campaign_id: flight.campaign_id,
                    attempt: report.request.attempt,
                    outcome: report.outcome.clone(),
                    ended_at: report.ended_at,
                    policy: flight.policy,
                    carrier: report.carrier.clone(),
                    attempt_started_at: report.request.started_at,
                },
            ));
        }
        messages::publish(&*self.ctx.bus, Topic::Status, statuses).await?;
        let mut tokens = Vec::with_capacity(self.unpublished.len());
        for report in std::mem::take(&mut self.unpublished) {
            let key = (report.request.call_id, report.request.attempt);
            let Some(flight) = self.in_flight.remove(&key) else {
                continue;
            };
            metrics().dialing.dec();
            let _entered = flight.span.enter();
            tracing::debug!(outcome = ?report.outcome, "attempt ended");
            tokens.push(flight.token);
        }
        Ok(tokens)
    }

    /// Acknowledges `tokens` with any the bus refused before; keeps them on failure. A dispatch
    /// that is never acknowledged is redelivered, and its begin then finds it moved on.
    async fn ack(&mut self, dispatches: &mut dyn Subscription, tokens: Vec<u64>) {
        self.unacked.extend(tokens);
        if self.unacked.is_empty() {
            return;
        }
        match dispatches.ack(&self.unacked).await {
            Ok(()) => self.unacked.clear(),
            Err(err) => {
                tracing::warn!(error = %err, unacked = self.unacked.len(), "cannot acknowledge dispatches yet")
            }
        }
    }

    async fn begin_batch(&mut self, dispatches: &mut dyn Subscription, batch: Vec<Delivery>) {
        if batch.is_empty() {
            return;
        }
        match self.process_batch(batch).await {
            Ok(done) => self.ack(dispatches, done).await,
            Err(err) => {
                tracing::warn!(error = %err, waiting = self.pending.len(), "cannot begin dispatches yet");
                self.ctx.health.set(RoleName::Call, RoleHealth::Failing);
            }
        }
    }

    /// Whether something waits for a backend to come back.
    fn stalled(&self) -> bool {
        !self.pending.is_empty()
            || !self.unpublished.is_empty()
            || !self.unhanded.is_empty()
            || !self.unreleased.is_empty()
            || !self.unacked.is_empty()
    }

    /// Takes what the provider said: publishes ended attempts and hands over placed ones.
    async fn take_events(&mut self, dispatches: &mut dyn Subscription, events: Vec<ProviderEvent>) {
        let ended = self.sort_events(events);
        if !ended.is_empty() || !self.unpublished.is_empty() {
            match self.report(ended).await {
                Ok(tokens) => self.ack(dispatches, tokens).await,
                Err(err) => {
                    tracing::warn!(error = %err, waiting = self.unpublished.len(), "cannot publish outcomes yet")
                }
            }
        }
        if !self.unhanded.is_empty() {
            match self.hand_over().await {
                Ok(tokens) => self.ack(dispatches, tokens).await,
                Err(err) => {
                    tracing::warn!(error = %err, waiting = self.unhanded.len(), "cannot hand calls to the carrier yet")
                }
            }
        }
        if !self.unreleased.is_empty() {
            match self.release_unplaced().await {
                Ok(tokens) => self.ack(dispatches, tokens).await,
                Err(err) => {
                    tracing::warn!(error = %err, waiting = self.unreleased.len(), "cannot hand back uncreated attempts yet")
                }
            }
        }
        if !self.unacked.is_empty() {
            self.ack(dispatches, Vec::new()).await;
        }
    }

    /// Retries what a backend failure left behind; true when nothing is left.
    async fn retry_stalled(&mut self, dispatches: &mut dyn Subscription) -> bool {
        if !self.unpublished.is_empty() {
            match self.report(Vec::new()).await {
                Ok(tokens) => self.ack(dispatches, tokens).await,
                Err(err) => {
                    tracing::warn!(error = %err, waiting = self.unpublished.len(), "cannot publish outcomes yet");
                    return false;
                }
            }
        }
        if !self.unhanded.is_empty() {
            match self.hand_over().await {
                Ok(tokens) => self.ack(dispatches, tokens).await,
                Err(err) => {
                    tracing::warn!(error = %err, waiting = self.unhanded.len(), "cannot hand calls to the carrier yet");
                    return false;
                }
            }
        }
        if !self.unreleased.is_empty() {
            match self.release_unplaced().await {
                Ok(tokens) => self.ack(dispatches, tokens).await,
                Err(err) => {
                    tracing::warn!(error = %err, waiting = self.unreleased.len(), "cannot hand back uncreated attempts yet");
                    return false;
                }
            }
        }
        if !self.pending.is_empty() {
            match self.process_batch(Vec::new()).await {
                Ok(done) => self.ack(dispatches, done).await,
                Err(err) => {
                    tracing::warn!(error = %err, waiting = self.pending.len(), "cannot begin dispatches yet");
                    return false;
                }
            }
        }
        if !self.unacked.is_empty() {
            self.ack(dispatches, Vec::new()).await;
        }
        !self.stalled()
    }

    /// What the role reads, declared like the other roles' (`crate::roles::consume`).
    pub const TOPIC: Topic = Topic::Dispatch;
    pub const GROUP: &'static str = "call";
    /// Most dispatches taken at once.
    const BATCH: usize = 1024;

    pub async fn run(
        mut self,
        mut dispatches: Box<dyn Subscription>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let Some(mut reports) = self.reports.take() else {
            anyhow::bail!("call worker already ran");
        };
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        self.ctx.health.set(RoleName::Call, RoleHealth::Ready);
        loop {
            let stalled = self.stalled();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(first) = reports.recv() => {
                    self.take_events(&mut *dispatches, drain(first, &mut reports)).await;
                }
                _ = backoff.wait(), if stalled => {
                    if self.retry_stalled(&mut *dispatches).await {
                        backoff.reset();
                        self.ctx.health.set(RoleName::Call, RoleHealth::Ready);
                    } else {
                        self.ctx.health.set(RoleName::Call, RoleHealth::Failing);
                    }
                }
                _ = tokio::time::sleep_until(self.pace_at), if !stalled && !self.paced.is_empty() => {
                    let ready = self.take_turns(&mut *dispatches).await;
                    self.begin_batch(&mut *dispatches, ready).await;
                }
                batch = dispatches.next_batch(Self::BATCH), if !stalled && self.paced.len() < MAX_PACED => {
                    match batch {
                        Ok(batch) => {
                            let ready = if self.ctx.provider.pace().is_some() {
                                for delivery in batch {
                                    let campaign = messages::decode::<DispatchMessage>(
                                        Topic::Dispatch,
                                        &delivery.message,
                                    )
                                    .ok()
                                    .map(|dispatch| dispatch.campaign_id);
                                    self.paced.push(campaign, delivery);
                                }
                                self.take_turns(&mut *dispatches).await
                            } else {
                                batch
                            };
                            self.begin_batch(&mut *dispatches, ready).await;
                        }
                        Err(BusError::Closed) => anyhow::bail!("dispatch subscription closed"),
                        Err(err) => {
                            tracing::warn!(error = %err, "cannot fetch dispatches");
                            self.ctx.health.set(RoleName::Call, RoleHealth::Failing);
                            backoff.wait().await;
                        }
                    }
                }
            }
        }
        let grace = self.ctx.settings.runtime.shutdown_grace.0;
        let deadline = tokio::time::Instant::now() + grace;
        tracing::info!(in_flight = self.in_flight.len(), "call role draining");
        // Dispatches never begun stay unacknowledged: the bus hands them to another dialer (or
        // the scheduler hands them back unspent once this process is gone).
        self.pending.clear();
        if !self.paced.is_empty() {
            tracing::info!(
                waiting = self.paced.len(),
                "dispatches waiting for the pace left unbegun"
            );
            self.paced.drain();
        }
        while !self.in_flight.is_empty() || !self.unpublished.is_empty() {
            let stalled = !self.unpublished.is_empty()
                || !self.unhanded.is_empty()
                || !self.unreleased.is_empty();
            tokio::select! {
                Some(first) = reports.recv() => {
                    self.take_events(&mut *dispatches, drain(first, &mut reports)).await;
                }
                _ = backoff.wait(), if stalled => {
                    let _ = self.retry_stalled(&mut *dispatches).await;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    // These attempts stay `dialing` in the store and are settled once this
                    // process's heartbeat stops.
                    tracing::warn!(abandoned = self.in_flight.len(), "shutdown grace elapsed with calls in progress");
                    break;
                }
            }
        }
        self.ack(&mut *dispatches, Vec::new()).await;
        Ok(())
    }
}

fn drain(
    first: ProviderEvent,
    reports: &mut mpsc::UnboundedReceiver<ProviderEvent>,
) -> Vec<ProviderEvent> {
    let mut batch = vec![first];
    while batch.len() < 1024 {
        match reports.try_recv() {
            Ok(report) => batch.push(report),
            Err(_) => break,
        }
    }
    batch
}
