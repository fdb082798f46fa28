//! The scheduler role admits calls. For each `in_progress` campaign inside its business hours it
//! takes concurrency leases (per campaign and global), claims that many queued calls and
//! dispatches them. It wakes on every start, trigger and freed slot (the `wake` topic), and
//! rescans on a timer as a safety net. It also records attempts whose owner stopped heartbeating
//! as lost, so they are retried instead of staying `dialing` forever.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::{info_span, Instrument};

use crate::context::AppContext;
use crate::domain::call::AttemptOutcome;
use crate::domain::ids::{CampaignId, LeaseId};
use crate::metrics::metrics;
use crate::ports::{
    AttemptReport, BusError, ClaimedCall, LimiterError, RunnableCampaign, StoreError, Subscription,
    Topic,
};
use crate::roles::messages::{self, DispatchMessage, PolicyTerms};
use crate::runtime::health::RoleHealth;
use crate::runtime::role::RoleName;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Limiter(#[from] LimiterError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickOutcome {
    pub dispatched: usize,
    pub campaigns_open: usize,
    pub campaigns_closed: usize,
}

/// A claimed call with the lease it dials under.
struct Admitted {
    call: ClaimedCall,
    lease: LeaseId,
    policy: PolicyTerms,
    limit: u32,
}

pub struct Scheduler {
    ctx: AppContext,
    /// Rotates which campaign is served first, so none is always last.
    cursor: usize,
}

impl Scheduler {
    pub fn new(ctx: AppContext) -> Self {
        Self { ctx, cursor: 0 }
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
        self.cursor = self.cursor.wrapping_add(1);
        let rotation = self.cursor % campaigns.len();
        campaigns.rotate_left(rotation);
        let (open, closed): (Vec<RunnableCampaign>, Vec<RunnableCampaign>) = campaigns
            .into_iter()
            .partition(|c| c.business_hours.is_open(c.time_zone, now));
        outcome.campaigns_open = open.len();
        outcome.campaigns_closed = closed.len();
        if open.is_empty() {
            return Ok(outcome);
        }
        let batch = self.ctx.settings.scheduler.batch_size as u64;
        let mut remaining: HashMap<CampaignId, u64> =
            open.iter().map(|c| (c.id, c.queued_calls)).collect();
        // The first pass gives each campaign at most an equal share of the free global
        // capacity; later passes hand out what the others left.
        let global_free = u64::from(self.ctx.settings.throttle.global_concurrency)
            .saturating_sub(u64::from(self.ctx.limiter.active_total().await?));
        let mut share = (global_free / open.len() as u64).max(1);
        loop {
            let mut progress = false;
            let mut dispatch = Vec::new();
            for campaign in &open {
                let left = remaining.get(&campaign.id).copied().unwrap_or(0);
                let want = left.min(batch).min(share);
                if want == 0 {
                    continue;
                }
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

    /// Leases capacity and claims up to `want` calls of one campaign; unused leases go back.
    async fn admit(
        &self,
        campaign: &RunnableCampaign,
        want: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<Admitted>, SchedulerError> {
        let leases = self
            .ctx
            .limiter
            .acquire(campaign.id, campaign.max_concurrent_calls, want)
            .await?;
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let claimed = match self
            .ctx
            .store
            .claim_calls(campaign.id, leases.len(), self.ctx.instance, now)
            .await
        {
            Ok(claimed) => claimed,
            Err(err) => {
                self.release(campaign.id, &leases).await;
                return Err(err.into());
            }
        };
        if claimed.len() < leases.len() {
            self.release(campaign.id, &leases[claimed.len()..]).await;
        }
        let policy = PolicyTerms {
            base_delay_ms: campaign.retry_policy.base_delay.as_millis() as u64,
            max_delay_ms: campaign.retry_policy.max_delay.as_millis() as u64,
            jitter: campaign.retry_policy.jitter,
        };
        metrics()
            .attempts
            .with_label_values(&[&campaign.id.to_string()])
            .inc_by(claimed.len() as u64);
        Ok(claimed
            .into_iter()
            .zip(leases)
            .map(|(call, lease)| Admitted {
                call,
                lease,
                policy,
                limit: campaign.max_concurrent_calls,
            })
            .collect())
    }

    async fn release(&self, campaign_id: CampaignId, leases: &[LeaseId]) {
        let pairs: Vec<_> = leases.iter().map(|lease| (campaign_id, *lease)).collect();
        if let Err(err) = self.ctx.limiter.release(&pairs).await {
            // The leases expire by themselves after limiter.lease_ttl.
            tracing::warn!(error = %err, %campaign_id, "cannot release unused leases");
        }
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
                        lease_id: admitted.lease,
                        policy: admitted.policy,
                        owner: self.ctx.instance,
                        limit: admitted.limit,
                    },
                )
            })
            .collect();
        if let Err(err) = messages::publish(&*self.ctx.bus, Topic::Dispatch, messages).await {
            // Nobody will dial these attempts: record them as failed (retryable) now rather
            // than leave them dialing under a live owner.
            tracing::error!(error = %err, count = claimed.len(), "dispatch failed");
            let reports: Vec<AttemptReport> = claimed
                .iter()
                .map(|Admitted { call, .. }| AttemptReport {
                    call_id: call.call_id,
                    campaign_id: call.campaign_id,
                    attempt: call.attempt,
                    outcome: AttemptOutcome::Failed {
                        error: "dispatch_failed".into(),
                        retryable: true,
                    },
                    ended_at: now,
                    retry_at: now,
                    expected_owner: Some(self.ctx.instance),
                })
                .collect();
            let mut backoff = std::time::Duration::from_millis(50);
            let applied = loop {
                match self.ctx.store.record_attempts(&reports, now).await {
                    Ok(applied) => break applied,
                    Err(store_err) => {
                        // Unrecorded, these attempts would stay dialing under a live owner.
                        tracing::warn!(error = %store_err, "cannot record undispatched attempts, retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
                    }
                }
            };
            // A dispatch that went out after all may have been adopted and be dialing: its
            // lease stays.
            let leases: Vec<_> = claimed
                .iter()
                .zip(&applied)
                .filter(|(_, applied)| applied.step.is_some())
                .map(|(admitted, _)| (admitted.call.campaign_id, admitted.lease))
                .collect();
            let _ = self.ctx.limiter.release(&leases).await;
            return Err(err.into());
        }
        Ok(())
    }

    /// Records attempts of processes that stopped heartbeating as lost (retryable).
    pub async fn recover_orphans(&self, now: DateTime<Utc>) -> Result<usize, SchedulerError> {
        let stale_before = now
            - chrono::Duration::from_std(self.ctx.settings.scheduler.orphan_after.0)
                .unwrap_or(chrono::Duration::seconds(10));
        let mut orphans = self
            .ctx
            .store
            .orphaned_attempts(stale_before, 10_000)
            .await?;
        // This process is alive by definition: a late heartbeat of its own (a slow store) must
        // never turn its live calls into lost ones.
        orphans.retain(|orphan| {
            orphan.owner != Some(self.ctx.instance) && orphan.owner != Some(self.ctx.dialer)
        });
        if orphans.is_empty() {
            return Ok(0);
        }
        let reports: Vec<AttemptReport> = orphans
            .iter()
            .map(|orphan| {
                let delay = orphan
                    .retry_policy
                    .backoff(orphan.attempt, rand::rng().random());
                AttemptReport {
                    call_id: orphan.call_id,
                    campaign_id: orphan.campaign_id,
                    attempt: orphan.attempt,
                    outcome: AttemptOutcome::Failed {
                        error: "attempt_lost".into(),
                        retryable: true,
                    },
                    ended_at: now,
                    retry_at: now + chrono::Duration::from_std(delay).unwrap_or_default(),
                    // A process that adopted the attempt meanwhile keeps it.
                    expected_owner: orphan.owner,
                }
            })
            .collect();
        let applied = self.ctx.store.record_attempts(&reports, now).await?;
        let recovered = applied.iter().filter(|a| a.step.is_some()).count();
        tracing::warn!(recovered, "recorded attempts of dead processes as lost");
        let mut campaigns: Vec<CampaignId> = applied.iter().map(|a| a.campaign_id).collect();
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
        Ok(recovered)
    }

    async fn step(&mut self, housekeeping: bool) {
        let now = Utc::now();
        let result = async {
            if housekeeping {
                self.ctx.store.complete_finished_campaigns(now).await?;
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
        mut self,
        mut wake: Box<dyn Subscription>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let settings = self.ctx.settings.scheduler.clone();
        let mut rescan = tokio::time::interval(settings.interval.0);
        let orphan_every = (settings.orphan_after.0 / 2).max(settings.heartbeat_interval.0);
        let mut orphan_check = tokio::time::interval(orphan_every);
        self.ctx.health.set(RoleName::Scheduler, RoleHealth::Ready);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = orphan_check.tick() => {
                    if let Err(err) = self.recover_orphans(Utc::now()).await {
                        tracing::warn!(error = %err, "orphan recovery failed");
                    }
                }
                batch = wake.next_batch(4096) => {
                    let batch = batch?;
                    let tokens: Vec<u64> = batch.iter().map(|d| d.token).collect();
                    wake.ack(&tokens).await?;
                    self.step(false).instrument(info_span!("schedule", trigger = "wake")).await;
                }
                _ = rescan.tick() => {
                    self.step(true).instrument(info_span!("schedule", trigger = "timer")).await;
                }
            }
        }
        Ok(())
    }
}
