//! The call role's intake at the carrier's pace: which dispatches may go now, which wait their
//! turn, and which a stopped campaign lane gives back.

use std::collections::HashSet;
use std::time::Duration;

use super::{CallWorker, STOPPED_FOR};
use crate::domain::campaign::CampaignStatus;
use crate::domain::ids::CampaignId;
use crate::metrics::metrics;
use crate::ports::{AttemptKey, Delivery, HeldAttempt, Subscription, Topic, Unspent};
use crate::roles::messages::{self, DispatchMessage};

impl CallWorker {
    /// The dispatches whose turn in the provider's pace has come, campaign by campaign in
    /// turn; sets when to ask again for the rest. Dispatches of a campaign that may not dial
    /// now (paused, completed, outside its hours) come out at once without spending a turn:
    /// their begin hands them back. While the provider refuses to place calls no turn is
    /// taken: an attempt not yet begun can still be held back or handed back, one begun waits.
    pub(super) async fn take_turns(&mut self, dispatches: &mut dyn Subscription) -> Vec<Delivery> {
        let Some(pace) = self.ctx.provider.pace() else {
            return self.paced.drain();
        };
        let now = tokio::time::Instant::now();
        let mut ready = self.stopped_lanes(dispatches).await;
        if self.ctx.provider.unavailable().is_some() {
            self.pace_at = now + Duration::from_secs(1);
            return ready;
        }
        let waited = ready.len();
        while !self.paced.is_empty() {
            match self
                .ctx
                .limiter
                .pace(&pace.key, pace.per_second, pace.burst)
                .await
            {
                Ok(None) => ready.extend(self.paced.pop()),
                Ok(Some(wait)) => {
                    if ready.len() == waited {
                        metrics().throttled_dials.inc();
                    }
                    self.pace_at = now + wait;
                    break;
                }
                Err(err) => {
                    // Without the shared bucket the pace cannot be known: wait, never exceed it.
                    tracing::warn!(error = %err, "cannot pace dials; waiting");
                    self.pace_at = now + Duration::from_secs(1);
                    break;
                }
            }
        }
        ready
    }

    /// Takes out the waiting dispatches that need no turn. Those of campaigns that may not
    /// dial now (read from the store at most every `STOPPED_FOR`) go back unspent here and
    /// are acknowledged, never begun: a campaign started again meanwhile claims them anew,
    /// each with its turn. Unreadable ones are returned for their begin to dead-letter.
    pub(super) async fn stopped_lanes(
        &mut self,
        dispatches: &mut dyn Subscription,
    ) -> Vec<Delivery> {
        let stale = self
            .stopped_read_at
            .is_none_or(|at| at.elapsed() >= STOPPED_FOR);
        if stale && !self.paced.is_empty() {
            let waiting: Vec<CampaignId> = self.paced.campaigns().collect();
            let now = self.ctx.clock.now();
            let mut stopped = HashSet::new();
            for campaign_id in waiting {
                match self.ctx.store.get_campaign(campaign_id).await {
                    Ok(Some(campaign))
                        if campaign.status == CampaignStatus::InProgress
                            && campaign.business_hours.is_open(campaign.time_zone, now) => {}
                    Ok(_) => {
                        stopped.insert(campaign_id);
                    }
                    // Unknown for now: its dispatches wait their turn, and their begin decides.
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot read a waiting campaign's status");
                    }
                }
            }
            self.stopped = stopped;
            self.stopped_read_at = Some(tokio::time::Instant::now());
        }
        let unreadable = self.paced.take_lanes(|lane| lane.is_none());
        if self.stopped.is_empty() {
            return unreadable;
        }
        let stopped = &self.stopped;
        let given = self
            .paced
            .take_lanes(|lane| lane.is_some_and(|campaign| stopped.contains(&campaign)));
        if !given.is_empty() {
            self.give_back(dispatches, given).await;
        }
        unreadable
    }

    /// Hands back, unspent, claimed attempts that were never begun, and acknowledges their
    /// dispatches; on a store failure they wait in their lanes for the next try.
    pub(super) async fn give_back(
        &mut self,
        dispatches: &mut dyn Subscription,
        given: Vec<Delivery>,
    ) {
        let mut held = Vec::with_capacity(given.len());
        let mut lanes = Vec::with_capacity(given.len());
        for delivery in &given {
            let dispatch = messages::decode::<DispatchMessage>(Topic::Dispatch, &delivery.message);
            lanes.push(dispatch.as_ref().ok().map(|dispatch| dispatch.campaign_id));
            if let Ok(dispatch) = dispatch {
                held.push(HeldAttempt {
                    key: AttemptKey {
                        campaign_id: dispatch.campaign_id,
                        call_id: dispatch.call_id,
                        attempt: dispatch.attempt,
                    },
                    holder: Some(dispatch.owner),
                    began_at: dispatch.started_at,
                });
            }
        }
        match self
            .ctx
            .store
            .release_attempts(&held, Unspent::Unplaced, self.ctx.clock.now())
            .await
        {
            Ok(_) => {
                tracing::info!(
                    given_back = given.len(),
                    "dispatches of campaigns that may not dial handed back without a turn"
                );
                let tokens = given.iter().map(|delivery| delivery.token).collect();
                self.ack(dispatches, tokens).await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot hand back waiting dispatches yet");
                for (campaign, delivery) in lanes.into_iter().zip(given) {
                    self.paced.push(campaign, delivery);
                }
            }
        }
    }
}
