//! Webhook deliveries, run by the status role: one loop per endpoint claims its due deliveries,
//! renders each body once from the rows it reports, signs it and posts it with at most
//! `max_in_flight_per_endpoint` at once, then records every try in one write. A slow or hanging
//! endpoint therefore holds only its own loop. A claim lasts past the longest its batch can
//! take, so the deliveries of a process that dies fall due again by themselves.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{stream, StreamExt};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::context::AppContext;
use crate::domain::ids::EndpointId;
use crate::domain::webhook::{
    sign, CampaignStatusChanged, Event, EventType, RetrySchedule, TryResult,
};
use crate::metrics::metrics;
use crate::ports::{ClaimedDelivery, DeliveryStatus, Endpoint, StoreError, TryRecord};

/// How often the endpoints are listed again, to start and stop their loops.
const ENDPOINTS_EVERY: Duration = Duration::from_secs(1);
/// How often delivered deliveries past their retention are removed and the backlog counted.
const UPKEEP_EVERY: Duration = Duration::from_secs(30);
/// Events moved into deliveries per transaction: large enough that a flood moves in few
/// turns of SQLite's one writer, small enough that a turn stays short.
const FAN_OUT_BATCH: usize = 2_000;
/// The fan-out moves events while the endpoint with the fewest deliveries due has fewer than
/// this (more than one poll's worth at the fastest delivery rate measured): the events of a
/// flood wait as one row each instead of becoming deliveries long before they can be sent.
const KEEP_DUE: usize = 2 * FAN_OUT_BATCH;
/// Past a claim's tries and renders, the time left to record them before it lapses.
const CLAIM_MARGIN: Duration = Duration::from_secs(5);
/// The largest claim, in rounds of what is in flight at once.
const MAX_CLAIM_ROUNDS: usize = 16;

#[derive(Clone)]
pub struct Deliverer {
    ctx: AppContext,
    schedule: Arc<RetrySchedule>,
}

impl Deliverer {
    pub fn new(ctx: AppContext) -> Self {
        let schedule = Arc::new(ctx.settings.webhooks.schedule());
        Self { ctx, schedule }
    }

    /// Delivers until `stop`; tries under way then finish (within the timeout) and are
    /// recorded.
    pub async fn run(self, stop: CancellationToken) {
        let mut loops: HashMap<EndpointId, CancellationToken> = HashMap::new();
        let mut running: HashMap<tokio::task::Id, EndpointId> = HashMap::new();
        let mut tasks = JoinSet::new();
        let mut last_upkeep: Option<Instant> = None;
        let mut fan_out = tokio::spawn(self.clone().fan_out_loop(stop.clone()));
        while !stop.is_cancelled() {
            if fan_out.is_finished() && !stop.is_cancelled() {
                if let Err(err) = (&mut fan_out).await {
                    tracing::error!(error = %err, "the webhook fan-out ended");
                }
                fan_out = tokio::spawn(self.clone().fan_out_loop(stop.clone()));
            }
            // A loop that ended by itself (it panicked) is started again below.
            while let Some(ended) = tasks.try_join_next_with_id() {
                let id = match ended {
                    Ok((id, ())) => id,
                    Err(err) => {
                        tracing::error!(error = %err, "a webhook loop ended");
                        err.id()
                    }
                };
                if let Some(endpoint) = running.remove(&id) {
                    loops.remove(&endpoint);
                }
            }
            match self.ctx.store.active_endpoints().await {
                Ok(endpoints) => {
                    let current: Vec<EndpointId> = endpoints.iter().map(|e| e.id).collect();
                    loops.retain(|id, token| {
                        let keep = current.contains(id);
                        if !keep {
                            token.cancel();
                        }
                        keep
                    });
                    for endpoint in endpoints {
                        if loops.contains_key(&endpoint.id) {
                            continue;
                        }
                        let token = stop.child_token();
                        loops.insert(endpoint.id, token.clone());
                        let span = tracing::info_span!("webhook_endpoint", endpoint = %endpoint.id);
                        let task = tasks.spawn(
                            self.clone()
                                .endpoint_loop(endpoint.clone(), token)
                                .instrument(span),
                        );
                        running.insert(task.id(), endpoint.id);
                    }
                }
                Err(err) => tracing::warn!(error = %err, "cannot list webhook endpoints"),
            }
            if last_upkeep.is_none_or(|at| at.elapsed() >= UPKEEP_EVERY) {
                last_upkeep = Some(Instant::now());
                self.upkeep().await;
            }
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(ENDPOINTS_EVERY) => {}
            }
        }
        while tasks.join_next().await.is_some() {}
        let _ = fan_out.await;
    }

    /// Moves events into deliveries until `stop`, at once while there are more and some
    /// endpoint wants them, every poll interval otherwise.
    async fn fan_out_loop(self, stop: CancellationToken) {
        let idle = self.ctx.settings.webhooks.poll_interval.0;
        while !stop.is_cancelled() {
            let more = self
                .fan_out(KEEP_DUE)
                .await
                .map(|moved| moved >= FAN_OUT_BATCH as u64);
            rest(
                &stop,
                pause_after(more, idle, "cannot fan webhook events out"),
            )
            .await;
        }
    }

    /// One round of the fan-out: the oldest events become a delivery per endpoint that
    /// listens, unless every endpoint has `keep_due` deliveries due already. Returns how many
    /// events it moved. A flood's deliveries are made about as fast as the fastest endpoint
    /// takes them, not as fast as dialing makes events: deliveries made early only wait, and
    /// making them took a third of what an endpoint cost dialing in SQLite's one writer. An
    /// endpoint with nothing due (all in backoff, or listening to a campaign not dialing)
    /// keeps every event moving at once.
    pub async fn fan_out(&self, keep_due: usize) -> Result<u64, StoreError> {
        let store = &self.ctx.store;
        // Most polls find nothing: one read ends them, and none takes a turn of the writer.
        if !store.events_waiting().await? {
            return Ok(0);
        }
        let fewest = store.fewest_due(self.ctx.clock.now(), keep_due).await?;
        if fewest.is_some_and(|due| due >= keep_due as u64) {
            return Ok(0);
        }
        store.fan_out(FAN_OUT_BATCH).await
    }

    async fn upkeep(&self) {
        if let Err(err) = self.ctx.store.disarm_unused().await {
            tracing::warn!(error = %err, "cannot drop the webhook triggers no endpoint needs");
        }
        let retention = self.ctx.settings.webhooks.retention.0;
        let before =
            self.ctx.clock.now() - chrono::Duration::from_std(retention).unwrap_or_default();
        if let Err(err) = self.ctx.store.prune_deliveries(before).await {
            tracing::warn!(error = %err, "cannot prune delivered webhooks");
        }
        match self.ctx.store.delivery_backlog().await {
            Ok(n) => metrics()
                .webhook_backlog
                .set(i64::try_from(n).unwrap_or(i64::MAX)),
            Err(err) => tracing::warn!(error = %err, "cannot count the webhook backlog"),
        }
    }

    async fn endpoint_loop(self, endpoint: Endpoint, stop: CancellationToken) {
        let idle = self.ctx.settings.webhooks.poll_interval.0;
        let grace = self.ctx.settings.runtime.shutdown_grace.0;
        let in_flight = self.ctx.settings.webhooks.max_in_flight_per_endpoint.max(1);
        let mut claim = in_flight;
        while !stop.is_cancelled() {
            // Stopping lets the tries under way finish within the grace; past it they are
            // dropped unrecorded and fall due again when their claim lapses.
            let round = tokio::select! {
                round = self.tick(&endpoint, claim, &stop) => round,
                () = async {
                    stop.cancelled().await;
                    tokio::time::sleep(grace).await;
                } => return,
            };
            claim = match &round {
                Ok(round) => next_claim(claim, in_flight, round),
                Err(_) => in_flight,
            };
            let more = round.map(|round| round.tried > 0);
            rest(
                &stop,
                pause_after(more, idle, "cannot deliver webhooks now"),
            )
            .await;
        }
    }

    /// One round for `endpoint`: claims up to `limit` due deliveries, tries them with at most
    /// `max_in_flight_per_endpoint` at once, records the tries and hands back the rest.
    /// A try is started only while the round is younger than the timeout, none has failed and
    /// the role is not stopping, so a claim larger than what is in flight lasts no longer than
    /// one that is not, an endpoint that stops answering is not sent the rest of a large claim,
    /// and a stop waits only for the tries under way.
    pub async fn tick(
        &self,
        endpoint: &Endpoint,
        limit: usize,
        stop: &CancellationToken,
    ) -> Result<Round, StoreError> {
        let settings = &self.ctx.settings.webhooks;
        let in_flight = settings.max_in_flight_per_endpoint.max(1);
        let claim = uuid::Uuid::new_v4().to_string();
        let now = self.ctx.clock.now();
        // A try renders and sends, each within the timeout, and starts within the round's
        // first timeout: the claim outlasts all three, so it lapses only when its process is
        // gone.
        let longest = settings.timeout.0 * 3 + CLAIM_MARGIN;
        let until = now + chrono::Duration::from_std(longest).unwrap_or_default();
        let claimed = self
            .ctx
            .store
            .claim_deliveries(endpoint.id, &claim, now, until, limit.max(1))
            .await?;
        if claimed.is_empty() {
            return Ok(Round::default());
        }
        let claimed_ids: Vec<String> = claimed.iter().map(|d| d.id.clone()).collect();
        let started = Instant::now();
        let open_for = settings.timeout.0;
        let refused = Arc::new(AtomicBool::new(false));
        let done: Vec<(String, Option<TryRecord>)> = stream::iter(claimed)
            .take_while(|_| {
                let go = !refused.load(Ordering::Relaxed)
                    && !stop.is_cancelled()
                    && started.elapsed() < open_for;
                async move { go }
            })
            .map(|delivery| {
                let refused = Arc::clone(&refused);
                async move {
                    let id = delivery.id.clone();
                    let done = self.try_one(endpoint, delivery).await;
                    // The endpoint refused or did not answer (a body was sent), or the store
                    // cannot render: what is left waits for the next round. A delivery whose
                    // rows are gone was never sent and says nothing about either.
                    if done.as_ref().is_none_or(|done| {
                        done.body.is_some() && done.status != DeliveryStatus::Delivered
                    }) {
                        refused.store(true, Ordering::Relaxed);
                    }
                    (id, done)
                }
            })
            .buffer_unordered(in_flight)
            .collect()
            .await;
        // Started: tried, or not rendered (left claimed, due again when the claim lapses, so
        // a store that cannot render is not asked again every poll).
        let started_ids: HashSet<&str> = done.iter().map(|(id, _)| id.as_str()).collect();
        let untried: Vec<String> = claimed_ids
            .iter()
            .filter(|id| !started_ids.contains(id.as_str()))
            .cloned()
            .collect();
        let tries: Vec<TryRecord> = done.into_iter().filter_map(|(_, done)| done).collect();
        let round = Round {
            tried: tries.len(),
            all_delivered: untried.is_empty()
                && tries.len() == claimed_ids.len()
                && tries
                    .iter()
                    .all(|done| done.status == DeliveryStatus::Delivered),
        };
        self.ctx
            .store
            .finish_deliveries(endpoint.id, &claim, &tries, &untried)
            .await?;
        Ok(round)
    }

    /// Tries one delivery; `None` when its body cannot be rendered now (the store is
    /// unreachable): it falls due again when its claim lapses.
    async fn try_one(&self, endpoint: &Endpoint, delivery: ClaimedDelivery) -> Option<TryRecord> {
        let body = match delivery.body.clone() {
            Some(body) => body,
            None => {
                let timeout = self.ctx.settings.webhooks.timeout.0;
                match tokio::time::timeout(timeout, self.render(&delivery)).await {
                    Ok(Ok(Some(body))) => body,
                    Ok(Ok(None)) => return Some(gone(&delivery)),
                    Ok(Err(err)) => {
                        tracing::warn!(error = %err, delivery = %delivery.id, "cannot render a webhook");
                        return None;
                    }
                    Err(_) => {
                        tracing::warn!(delivery = %delivery.id, "rendering a webhook timed out");
                        return None;
                    }
                }
            }
        };
        let timestamp = self.ctx.clock.now().timestamp();
        let headers = [
            ("webhook-id", delivery.id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
            (
                "webhook-signature",
                sign(&endpoint.secret, &delivery.id, timestamp, body.as_bytes()),
            ),
        ];
        let started = Instant::now();
        let result = self
            .ctx
            .webhooks
            .send(&endpoint.url, &headers, body.clone())
            .await;
        let m = metrics();
        m.webhook_delivery_seconds
            .with_label_values(&[] as &[&str])
            .observe(started.elapsed().as_secs_f64());
        m.webhook_deliveries
            .with_label_values(&[result_label(&result)])
            .inc();
        if !result.is_delivered() {
            tracing::info!(delivery = %delivery.id, error = ?result.last_error(), "webhook try failed");
        }
        Some(self.record(delivery, body, &result, self.ctx.clock.now()))
    }

    /// What becomes of a delivery after a try: delivered, due again after the schedule's next
    /// wait, or failed once the schedule is spent.
    fn record(
        &self,
        delivery: ClaimedDelivery,
        body: String,
        result: &TryResult,
        now: DateTime<Utc>,
    ) -> TryRecord {
        let tries = delivery.attempts.saturating_add(1);
        let (status, next_attempt_at, delivered_at) = if result.is_delivered() {
            (DeliveryStatus::Delivered, None, Some(now))
        } else {
            match self.schedule.after(tries) {
                Some(wait) => (
                    DeliveryStatus::Pending,
                    Some(now + chrono::Duration::from_std(wait).unwrap_or_default()),
                    None,
                ),
                None => (DeliveryStatus::Failed, None, None),
            }
        };
        TryRecord {
            id: delivery.id,
            body: Some(body),
            status,
            next_attempt_at,
            last_status_code: result.status_code(),
            last_error: result.last_error(),
            delivered_at,
        }
    }

    /// The body of a delivery that references its rows; `None` when they are gone.
    async fn render(&self, delivery: &ClaimedDelivery) -> Result<Option<String>, StoreError> {
        let store = &self.ctx.store;
        let event = match (delivery.event_type, delivery.campaign_id, delivery.call_id) {
            (EventType::AttemptFinished, Some(campaign_id), Some(call_id)) => {
                match delivery.attempt {
                    Some(attempt) => store
                        .attempt_event(campaign_id, call_id, attempt)
                        .await?
                        .map(Event::AttemptFinished),
                    None => None,
                }
            }
            (EventType::CallFinished, Some(campaign_id), Some(call_id)) => store
                .call_event(campaign_id, call_id)
                .await?
                .map(Event::CallFinished),
            (EventType::CampaignStatusChanged, Some(campaign_id), _) => {
                status_change(campaign_id.to_string(), delivery)
            }
            _ => None,
        };
        Ok(event.map(|event| event.body(delivery.created_at)))
    }
}

/// A campaign's change from what its trigger kept: name, from, to and pause reason.
fn status_change(campaign_id: String, delivery: &ClaimedDelivery) -> Option<Event> {
    let detail: serde_json::Value = serde_json::from_str(delivery.detail.as_deref()?).ok()?;
    let text = |key: &str| detail.get(key)?.as_str().map(str::to_owned);
    Some(Event::CampaignStatusChanged(CampaignStatusChanged {
        campaign_id,
        name: text("name")?,
        from: text("from")?,
        to: text("to")?,
        at: delivery.created_at,
        pause_reason: detail.get("pause_reason").filter(|v| !v.is_null()).cloned(),
    }))
}

/// A delivery whose rows are gone (their campaign was deleted) cannot be sent: it fails for
/// good, saying why.
fn gone(delivery: &ClaimedDelivery) -> TryRecord {
    TryRecord {
        id: delivery.id.clone(),
        body: None,
        status: DeliveryStatus::Failed,
        next_attempt_at: None,
        last_status_code: None,
        last_error: Some("what it reports no longer exists".to_owned()),
        delivered_at: None,
    }
}

/// What a round of an endpoint's loop did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub tried: usize,
    /// Every delivery claimed was tried and delivered.
    pub all_delivered: bool,
}

/// How many deliveries the next round claims: twice as many after a round that delivered all
/// it claimed, up to `MAX_CLAIM_ROUNDS` times what is in flight, and back to what is in flight
/// after any other. A fast endpoint's flood then costs few turns of the store's writer, and a
/// failing one is claimed no more than it can be tried at once.
fn next_claim(claimed: usize, in_flight: usize, round: &Round) -> usize {
    if round.all_delivered {
        claimed
            .saturating_mul(2)
            .clamp(in_flight, in_flight.saturating_mul(MAX_CLAIM_ROUNDS))
    } else {
        in_flight
    }
}

/// How long a loop waits after a round: not at all while `more` work waits, `idle` when none
/// did, and at least a second after an error (logged as `failed`).
fn pause_after(more: Result<bool, StoreError>, idle: Duration, failed: &str) -> Duration {
    match more {
        Ok(true) => Duration::ZERO,
        Ok(false) => idle,
        Err(err) => {
            tracing::warn!(error = %err, "{failed}");
            idle.max(Duration::from_secs(1))
        }
    }
}

/// Waits `pause`, or until `stop`.
async fn rest(stop: &CancellationToken, pause: Duration) {
    if !pause.is_zero() {
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}

fn result_label(result: &TryResult) -> &'static str {
    match result {
        TryResult::Delivered { .. } => "delivered",
        TryResult::Timeout => "timeout",
        TryResult::Refused(_) => "refused",
        _ => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(tried: usize, all_delivered: bool) -> Round {
        Round {
            tried,
            all_delivered,
        }
    }

    #[test]
    fn a_claim_grows_while_everything_is_delivered_and_shrinks_on_anything_else() {
        let mut claim = 16;
        let mut sizes = Vec::new();
        for _ in 0..6 {
            claim = next_claim(claim, 16, &round(claim, true));
            sizes.push(claim);
        }
        assert_eq!(sizes, vec![32, 64, 128, 256, 256, 256]);
        assert_eq!(next_claim(256, 16, &round(40, false)), 16);
        assert_eq!(next_claim(256, 16, &round(0, false)), 16);
    }

    #[test]
    fn one_in_flight_still_claims_at_least_one() {
        assert_eq!(next_claim(1, 1, &round(1, true)), 2);
        assert_eq!(next_claim(16, 1, &round(16, true)), 16);
        assert_eq!(next_claim(0, 1, &round(0, false)), 1);
    }
}
