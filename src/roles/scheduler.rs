//! The scheduler role admits calls. For each `in_progress` campaign inside its business hours it
//! claims queued calls and dispatches them; the store admits no more than the campaign's limit
//! and the global cap leave free, counting every call dialing (a slot belongs to an attempt
//! until its outcome is recorded). It wakes on every start, trigger and freed slot (the `wake`
//! topic), and rescans on a timer as a safety net. It also settles the attempts of processes
//! that stopped heartbeating: one never placed is handed back unspent, a placed one is recorded
//! lost and retried.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info_span, Instrument};

use crate::context::AppContext;
use crate::domain::call::AttemptOutcome;
use crate::domain::carrier::Voice;
use crate::domain::ids::{CallId, CampaignId};
use crate::metrics::metrics;
use crate::ports::{
    AttemptKey, AttemptReport, BusError, ClaimedCall, HeldAttempt, Lookup, OrphanedAttempt,
    PlacedAttempt, ProviderError, RunnableCampaign, StoreError, Subscription, Topic, Unspent,
};
use crate::process::backoff::Backoff;
use crate::process::health::RoleHealth;
use crate::process::role::RoleName;
use crate::roles::consume::{self, Consumer};
use crate::roles::messages::{self, DispatchMessage, PolicyTerms, WakeMessage};

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// How long an instance that holds no call is remembered after its last heartbeat.
const INSTANCE_MEMORY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickOutcome {
    pub dispatched: usize,
    /// Claims asked of the store.
    pub claims: usize,
    pub campaigns_open: usize,
    pub campaigns_closed: usize,
}

/// A claimed call with the retry terms its outcome is recorded under.
struct Admitted {
    call: ClaimedCall,
    policy: PolicyTerms,
    voice: Voice,
}

pub struct Scheduler {
    ctx: AppContext,
    /// When the completion sweep last ran: it runs at least every `scheduler.interval`,
    /// however busy the wake-ups keep the loop.
    swept_at: Option<tokio::time::Instant>,
    /// Placed orphans the carrier said are still live: when to ask about each again, and the
    /// interval that led there (it doubles at each answer that the call is still live).
    live_at_carrier: std::sync::Mutex<HashMap<CallId, (tokio::time::Instant, std::time::Duration)>>,
    /// The next timed scheduling step, whatever wake-ups say.
    rescan_at: Instant,
    /// The next look for orphaned attempts.
    orphans_at: Instant,
}

/// The longest wait between two lookups of a call the carrier says is live.
const LIVE_RECHECK_CEILING: std::time::Duration = std::time::Duration::from_secs(30 * 60);
/// Lookups at the carrier per recovery pass, and at once.
const LOOKUPS_PER_PASS: usize = 200;
const LOOKUPS_AT_ONCE: usize = 8;
/// The longest one recovery pass spends asking the carrier.
const LOOKUP_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

impl Scheduler {
    pub fn new(ctx: AppContext) -> Self {
        Self {
            ctx,
            swept_at: None,
            live_at_carrier: std::sync::Mutex::new(HashMap::new()),
            // Both due at once: a process starts by scheduling and by recovering orphans.
            rescan_at: Instant::now(),
            orphans_at: Instant::now(),
        }
    }

    /// What becomes of placed orphans: the carrier's answer where it keeps records (a lookup),
    /// else the attempt is lost; the second list holds the attempts the carrier never created.
    /// One live at the carrier, or one the carrier could not be asked about, stays as it is.
    /// The carrier's ids of an orphan's other attempts (empty if they cannot be read now: the
    /// time window still bounds the lookup).
    async fn other_sids(&self, orphan: &OrphanedAttempt) -> Vec<String> {
        match self.ctx.store.get_call(orphan.call_id).await {
            Ok(Some((_, attempts))) => crate::domain::call::other_sids(attempts, orphan.attempt),
            Ok(None) => Vec::new(),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read an orphan's other attempts");
                Vec::new()
            }
        }
    }

    /// The placed orphans due for a lookup now: those not known live at the carrier, or whose
    /// next look has come; forgets the calls no longer waiting for their outcome.
    fn due_lookups(&self, placed: &[OrphanedAttempt]) -> Vec<OrphanedAttempt> {
        let mut live = self
            .live_at_carrier
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let at = tokio::time::Instant::now();
        let waiting: std::collections::HashSet<CallId> =
            placed.iter().map(|orphan| orphan.call_id).collect();
        live.retain(|call_id, _| waiting.contains(call_id));
        placed
            .iter()
            .filter(|orphan| {
                live.get(&orphan.call_id)
                    .is_none_or(|(recheck, _)| *recheck <= at)
            })
            .take(LOOKUPS_PER_PASS)
            .cloned()
            .collect()
    }

    /// Asks the carrier what became of a placed orphan.
    async fn look_up(
        &self,
        orphan: &OrphanedAttempt,
        now: DateTime<Utc>,
    ) -> Result<Lookup, ProviderError> {
        // A lookup by number must never take another attempt's call for this one.
        let other_sids = if orphan.sid.is_some() {
            Vec::new()
        } else {
            self.other_sids(orphan).await
        };
        let attempt = PlacedAttempt {
            key: AttemptKey {
                campaign_id: orphan.campaign_id,
                call_id: orphan.call_id,
                attempt: orphan.attempt,
            },
            phone_number: orphan.phone_number.clone(),
            // Placed on the store's clock; the carrier's is compared with this host's.
            placed_at: self.ctx.clock.to_host(orphan.placed_at.unwrap_or(now)),
            sid: orphan.sid.clone(),
            other_sids,
        };
        self.ctx.provider.lookup(&attempt).await
    }

    /// A call still live at the carrier is looked at again after `lookup_after`, then at
    /// doubling intervals.
    fn remember_live(&self, call_id: CallId) {
        let mut live = self
            .live_at_carrier
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let first = self.ctx.settings.telephony.twilio.lookup_after.0;
        let interval = live
            .get(&call_id)
            .map_or(first, |(_, last)| (*last * 2).min(LIVE_RECHECK_CEILING));
        live.insert(call_id, (tokio::time::Instant::now() + interval, interval));
    }

    async fn settle_placed(
        &self,
        placed: &[OrphanedAttempt],
        now: DateTime<Utc>,
    ) -> (Vec<AttemptReport>, Vec<HeldAttempt>) {
        use futures::StreamExt;
        let due = self.due_lookups(placed);
        let answers: Vec<(OrphanedAttempt, Result<Lookup, ProviderError>)> =
            futures::stream::iter(due)
                .map(|orphan| async move {
                    let answer = self.look_up(&orphan, now).await;
                    (orphan, answer)
                })
                .buffer_unordered(LOOKUPS_AT_ONCE)
                // A slow carrier must not hold up dispatching: what is not answered within the
                // budget is asked again on a later pass.
                .take_until(tokio::time::sleep(LOOKUP_BUDGET))
                .collect()
                .await;
        let mut reports = Vec::new();
        let mut never_created = Vec::new();
        for (orphan, answer) in answers {
            let (outcome, ended_at, carrier) = match answer {
                Ok(Lookup::Unsupported) => (
                    AttemptOutcome::Failed {
                        error: "attempt_lost".into(),
                        retryable: true,
                    },
                    now,
                    None,
                ),
                // A call the carrier once answered for and no longer knows (another account or
                // api_base now): it may have rung, so the attempt is spent, as lost.
                Ok(Lookup::NotFound) if orphan.sid.is_some() => (
                    AttemptOutcome::Failed {
                        error: "attempt_lost".into(),
                        retryable: true,
                    },
                    now,
                    None,
                ),
                // Looked up long after the carrier could have created it: it never was, and
                // no number was rung. The attempt goes back unspent.
                Ok(Lookup::NotFound) => {
                    never_created.push(HeldAttempt {
                        key: AttemptKey {
                            campaign_id: orphan.campaign_id,
                            call_id: orphan.call_id,
                            attempt: orphan.attempt,
                        },
                        holder: orphan.owner,
                        began_at: None,
                    });
                    continue;
                }
                // Ended now, as the engine records it: never the carrier's clock.
                Ok(Lookup::Ended {
                    carrier, outcome, ..
                }) => (outcome, now, Some(carrier)),
                Ok(Lookup::Live(carrier)) => {
                    tracing::info!(call_id = %orphan.call_id, sid = carrier.sid.as_deref().unwrap_or(""), "orphaned call still live at the carrier");
                    self.remember_live(orphan.call_id);
                    continue;
                }
                Err(err) => {
                    tracing::warn!(error = %err, call_id = %orphan.call_id, "cannot look an orphaned call up at the carrier");
                    continue;
                }
            };
            let delay = orphan
                .retry_policy
                .backoff(orphan.attempt, rand::rng().random());
            reports.push(AttemptReport {
                call_id: orphan.call_id,
                campaign_id: orphan.campaign_id,
                attempt: orphan.attempt,
                outcome,
                ended_at,
                retry_at: now + chrono::Duration::from_std(delay).unwrap_or_default(),
                // A dialer that took the attempt over meanwhile keeps it.
                expected_owner: orphan.owner,
                carrier,
                attempt_started_at: None,
            });
        }
        (reports, never_created)
    }

    /// One scheduling step at `now`: dispatch as many calls as windows and capacity allow.
    pub async fn tick(&mut self, now: DateTime<Utc>) -> Result<TickOutcome, SchedulerError> {
        let mut outcome = TickOutcome::default();
        let mut campaigns = self.ctx.store.runnable_campaigns().await?;
        metrics()
            .queue_depth
            .with_label_values(&["queued"])
            .set(campaigns.iter().map(|c| c.queued_calls as i64).sum());
        if campaigns.is_empty() {
            return Ok(outcome);
        }
        // Which campaign is served first is drawn at random every step: a campaign served
        // early in a step finds the calls of its last claim still up more often than one served
        // late, so no campaign may keep its place from one step to the next.
        let first = rand::random_range(0..campaigns.len());
        campaigns.rotate_left(first);
        let (open, closed): (Vec<RunnableCampaign>, Vec<RunnableCampaign>) = campaigns
            .into_iter()
            .partition(|c| c.business_hours.is_open(c.time_zone, now));
        outcome.campaigns_open = open.len();
        outcome.campaigns_closed = closed.len();
        if open.is_empty() {
            return Ok(outcome);
        }
        let batch = self.ctx.settings.scheduler.batch_size as u64;
        // What each campaign may still be asked for in this step: its queued calls, unless its
        // slots were all taken when the step read it. Such a campaign is not asked (a claim is
        // a turn of SQLite's one writer, and with a thousand campaigns most would find
        // nothing); the calls that free them wake a step. One with a slot free is asked for
        // as many as before: calls ending since the read free more, and the claim counts them.
        let mut remaining: HashMap<CampaignId, u64> = open
            .iter()
            .map(|c| {
                let askable = if c.has_free_slot() { c.queued_calls } else { 0 };
                (c.id, askable)
            })
            .collect();
        // The first pass gives each campaign it asks at most an equal share of the free global
        // capacity; later passes hand out what the others left.
        let global_free = u64::from(self.ctx.settings.throttle.global_concurrency)
            .saturating_sub(self.ctx.store.dialing_now().await?);
        let asked = remaining.values().filter(|left| **left > 0).count().max(1);
        let mut share = (global_free / asked as u64).max(1);
        loop {
            let mut progress = false;
            let mut dispatch = Vec::new();
            for campaign in &open {
                let left = remaining.get(&campaign.id).copied().unwrap_or(0);
                let want = left.min(batch).min(share);
                if want == 0 {
                    continue;
                }
                outcome.claims += 1;
                let claimed = match self.admit(campaign, want as u32, now).await {
                    Ok(claimed) => claimed,
                    Err(err) => {
                        // What other campaigns already claimed is `dialing` under this live
                        // process: it must go out, or nothing would ever recover it.
                        self.dispatch(dispatch, now).await?;
                        return Err(err);
                    }
                };
                if claimed.is_empty() {
                    remaining.insert(campaign.id, 0);
                    continue;
                }
                progress = true;
                remaining.insert(campaign.id, left.saturating_sub(claimed.len() as u64));
                dispatch.extend(claimed);
            }
            outcome.dispatched += dispatch.len();
            self.dispatch(dispatch, now).await?;
            if !progress {
                break;
            }
            share = u64::MAX;
        }
        Ok(outcome)
    }

    /// Claims up to `want` calls of one campaign, as many as its free slots allow.
    async fn admit(
        &self,
        campaign: &RunnableCampaign,
        want: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<Admitted>, SchedulerError> {
        let claimed = self
            .ctx
            .store
            .claim_calls(
                campaign.id,
                want as usize,
                self.ctx.instance,
                self.ctx.settings.throttle.global_concurrency,
                now,
            )
            .await?;
        let policy = PolicyTerms {
            base_delay_ms: campaign.retry_policy.base_delay.as_millis() as u64,
            max_delay_ms: campaign.retry_policy.max_delay.as_millis() as u64,
            jitter: campaign.retry_policy.jitter,
        };
        metrics().attempts.inc_by(claimed.len() as u64);
        Ok(claimed
            .into_iter()
            .map(|call| Admitted {
                call,
                policy,
                voice: campaign.voice.clone(),
            })
            .collect())
    }

    async fn dispatch(
        &self,
        claimed: Vec<Admitted>,
        now: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        if claimed.is_empty() {
            return Ok(());
        }
        let messages = claimed
            .iter()
            .map(|admitted| {
                let call = &admitted.call;
                messages::encode(
                    call.call_id.to_string(),
                    &DispatchMessage {
                        v: messages::VERSION,
                        call_id: call.call_id,
                        campaign_id: call.campaign_id,
                        attempt: call.attempt,
                        phone_number: call.phone_number.clone(),
                        policy: admitted.policy,
                        owner: self.ctx.instance,
                        voice: admitted.voice.clone(),
                        started_at: Some(call.started_at),
                    },
                )
            })
            .collect();
        if let Err(err) = messages::publish(&*self.ctx.bus, Topic::Dispatch, messages).await {
            // Nobody may ever dial these attempts: hand them back unspent, so they are claimed
            // again once the bus is back. One that went out after all and was begun already is
            // no longer this scheduler's to hand back, and stays with its dialer.
            tracing::error!(error = %err, count = claimed.len(), "dispatch failed, handing the attempts back");
            let held: Vec<HeldAttempt> = claimed
                .iter()
                .map(|Admitted { call, .. }| HeldAttempt {
                    key: AttemptKey {
                        campaign_id: call.campaign_id,
                        call_id: call.call_id,
                        attempt: call.attempt,
                    },
                    holder: Some(self.ctx.instance),
                    began_at: Some(call.started_at),
                })
                .collect();
            let mut backoff = Backoff::new(
                std::time::Duration::from_millis(50),
                std::time::Duration::from_secs(5),
            );
            loop {
                match self
                    .ctx
                    .store
                    .release_attempts(&held, Unspent::Unplaced, now)
                    .await
                {
                    Ok(_) => break,
                    Err(store_err) => {
                        // Left as they are, they would wait for this live process to die
                        // before anyone handed them back.
                        tracing::warn!(error = %store_err, "cannot hand back undispatched attempts, retrying");
                        backoff.wait().await;
                    }
                }
            }
            return Err(err.into());
        }
        Ok(())
    }

    /// Settles the attempts of processes that stopped heartbeating for `scheduler.orphan_after`
    /// (on the store's clock), and calls handed to a carrier whose final status never came: one
    /// never placed goes back unspent; a placed one, once longer than any call of the provider
    /// lasts, is looked up at the carrier and settled from its answer, or recorded lost
    /// (retryable) when the provider keeps no records (the mock). Until then its call may be
    /// live and keeps its slot and number.
    pub async fn recover_orphans(&self, now: DateTime<Utc>) -> Result<usize, SchedulerError> {
        let silent_for = self.ctx.settings.scheduler.orphan_after.0;
        let placed_for = self.ctx.settings.telephony.longest_call();
        let mut orphans = self
            .ctx
            .store
            .orphaned_attempts(
                silent_for,
                placed_for,
                self.ctx.settings.telephony.unanswered_create(),
                10_000,
            )
            .await?;
        // This process is alive by definition: a late heartbeat of its own (a slow store) must
        // never turn its live calls into lost ones.
        orphans.retain(|orphan| {
            orphan.owner != Some(self.ctx.instance) && orphan.owner != Some(self.ctx.dialer)
        });
        // A dead dialer's attempt whose create was never answered may still be created until
        // `place_deadline + request_timeout` after it began (a frozen dialer wakes up): it is
        // not concluded uncreated before then, however soon placed calls are looked up.
        let unanswered =
            chrono::Duration::from_std(self.ctx.settings.telephony.unanswered_create())
                .unwrap_or(chrono::TimeDelta::MAX);
        orphans.retain(|orphan| {
            let unanswered_create = orphan.placed && orphan.sid.is_none() && orphan.owner.is_some();
            !unanswered_create || orphan.placed_at.is_none_or(|at| at <= now - unanswered)
        });
        if orphans.is_empty() {
            return Ok(0);
        }
        let (placed, unplaced): (Vec<_>, Vec<_>) =
            orphans.into_iter().partition(|orphan| orphan.placed);
        let held: Vec<HeldAttempt> = unplaced
            .iter()
            .map(|orphan| HeldAttempt {
                key: AttemptKey {
                    campaign_id: orphan.campaign_id,
                    call_id: orphan.call_id,
                    attempt: orphan.attempt,
                },
                holder: orphan.owner,
                began_at: None,
            })
            .collect();
        let released = self
            .ctx
            .store
            .release_attempts(&held, Unspent::Unplaced, now)
            .await?;
        let (reports, never_created) = self.settle_placed(&placed, now).await;
        let uncreated = self
            .ctx
            .store
            .release_attempts(&never_created, Unspent::NeverCreated, now)
            .await?;
        let handed_back = released
            .iter()
            .chain(&uncreated)
            .filter(|released| **released)
            .count();
        let applied = self.ctx.store.record_attempts(&reports, now).await?;
        let lost = applied.iter().filter(|a| a.step.is_some()).count();
        tracing::warn!(lost, handed_back, "settled attempts of silent processes");
        let mut campaigns: Vec<CampaignId> = applied
            .iter()
            .map(|a| a.campaign_id)
            .chain(unplaced.iter().map(|orphan| orphan.campaign_id))
            .chain(never_created.iter().map(|held| held.key.campaign_id))
            .collect();
        campaigns.sort();
        campaigns.dedup();
        messages::wake(&*self.ctx.bus, campaigns.iter().copied()).await?;
        let retries = campaigns
            .into_iter()
            .map(|campaign_id| {
                messages::encode(
                    campaign_id.to_string(),
                    &messages::RetryMessage {
                        v: messages::VERSION,
                        campaign_id,
                        due_at: now,
                    },
                )
            })
            .collect();
        messages::publish(&*self.ctx.bus, Topic::Retry, retries).await?;
        Ok(lost + handed_back)
    }

    async fn step(&mut self) {
        // The store's clock: claims screen calls by the rules begin will apply on it.
        let now = self.ctx.clock.now();
        let interval = self.ctx.settings.scheduler.interval.0;
        let sweep = self.swept_at.is_none_or(|at| at.elapsed() >= interval);
        let result = async {
            if sweep {
                self.ctx.store.complete_finished_campaigns(now).await?;
                self.swept_at = Some(tokio::time::Instant::now());
            }
            self.tick(now).await
        }
        .await;
        match result {
            Ok(_) => self.ctx.health.set(RoleName::Scheduler, RoleHealth::Ready),
            Err(err) => {
                tracing::warn!(error = %err, "scheduler step failed");
                self.ctx
                    .health
                    .set(RoleName::Scheduler, RoleHealth::Failing);
            }
        }
    }

    pub async fn run(
        self,
        wake: Box<dyn Subscription>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let ctx = self.ctx.clone();
        consume::run(self, &ctx, wake, shutdown).await
    }

    /// How often attempts whose owner fell silent are looked for.
    fn orphan_every(&self) -> std::time::Duration {
        let settings = &self.ctx.settings.scheduler;
        (settings.orphan_after.0 / 2).max(settings.heartbeat_interval.0)
    }
}

impl Consumer for Scheduler {
    type Message = WakeMessage;
    const ROLE: RoleName = RoleName::Scheduler;
    const TOPIC: Topic = Topic::Wake;
    const GROUP: &'static str = "scheduler";
    const BATCH: usize = 4096;

    /// A wake-up names a campaign with work, but one step schedules every campaign.
    async fn handle(
        &mut self,
        _wakes: Vec<WakeMessage>,
        _shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        self.step()
            .instrument(info_span!("schedule", trigger = "wake"))
            .await;
        Ok(())
    }

    fn next_tick(&self) -> Option<Instant> {
        Some(self.rescan_at.min(self.orphans_at))
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        if now >= self.orphans_at {
            self.orphans_at = now + self.orphan_every();
            if let Err(err) = self.recover_orphans(self.ctx.clock.now()).await {
                tracing::warn!(error = %err, "orphan recovery failed");
            }
            // Instances silent for a day that hold nothing are history, as are attempt times
            // and kept messages no rule or call can ask for any more.
            if let Err(err) = self.ctx.store.prune_history(INSTANCE_MEMORY).await {
                tracing::warn!(error = %err, "cannot prune what counts toward nothing");
            }
        }
        if now >= self.rescan_at {
            self.rescan_at = now + self.ctx.settings.scheduler.interval.0;
            self.step()
                .instrument(info_span!("schedule", trigger = "timer"))
                .await;
        }
    }
}
