//! In-process concurrency limiter with expiring leases.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::domain::ids::{CampaignId, LeaseId};
use crate::domain::pacing::{take, Pace, Taken};
use crate::ports::{ConcurrencyLimiter, LimiterError};

#[derive(Default)]
struct State {
    campaigns: HashMap<CampaignId, HashMap<LeaseId, Instant>>,
    total: u32,
    /// Pacing buckets: the next arrival time, in microseconds since `epoch`.
    buckets: HashMap<String, u64>,
}

impl State {
    fn purge_campaign(&mut self, campaign_id: CampaignId, now: Instant) {
        if let Some(leases) = self.campaigns.get_mut(&campaign_id) {
            let before = leases.len();
            leases.retain(|_, expires| *expires > now);
            self.total -= (before - leases.len()) as u32;
            if leases.is_empty() {
                self.campaigns.remove(&campaign_id);
            }
        }
    }

    fn purge_all(&mut self, now: Instant) {
        let ids: Vec<CampaignId> = self.campaigns.keys().copied().collect();
        for id in ids {
            self.purge_campaign(id, now);
        }
    }
}

pub struct LocalLimiter {
    state: Mutex<State>,
    /// The one clock of this process's pacing buckets.
    epoch: Instant,
    global_cap: u32,
    lease_ttl: Duration,
}

impl LocalLimiter {
    pub fn new(global_cap: u32, lease_ttl: Duration) -> Self {
        Self {
            state: Mutex::new(State::default()),
            epoch: Instant::now(),
            global_cap,
            lease_ttl,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[async_trait]
impl ConcurrencyLimiter for LocalLimiter {
    async fn acquire(
        &self,
        campaign_id: CampaignId,
        limit: u32,
        want: u32,
    ) -> Result<Vec<LeaseId>, LimiterError> {
        let now = Instant::now();
        let mut state = self.state();
        state.purge_campaign(campaign_id, now);
        if state.total >= self.global_cap {
            state.purge_all(now);
        }
        let held = state.campaigns.get(&campaign_id).map_or(0, |l| l.len()) as u32;
        let grant = want
            .min(limit.saturating_sub(held))
            .min(self.global_cap.saturating_sub(state.total));
        if grant == 0 {
            return Ok(Vec::new());
        }
        let expires = now + self.lease_ttl;
        let leases: Vec<LeaseId> = (0..grant).map(|_| LeaseId::new()).collect();
        let entry = state.campaigns.entry(campaign_id).or_default();
        for lease in &leases {
            entry.insert(*lease, expires);
        }
        state.total += grant;
        Ok(leases)
    }

    async fn release(&self, leases: &[(CampaignId, LeaseId)]) -> Result<(), LimiterError> {
        let mut state = self.state();
        for (campaign_id, lease) in leases {
            let removed = state
                .campaigns
                .get_mut(campaign_id)
                .and_then(|held| held.remove(lease))
                .is_some();
            if removed {
                state.total -= 1;
            }
            if state
                .campaigns
                .get(campaign_id)
                .is_some_and(|held| held.is_empty())
            {
                state.campaigns.remove(campaign_id);
            }
        }
        Ok(())
    }

    async fn renew(&self, leases: &[(CampaignId, LeaseId)]) -> Result<Vec<bool>, LimiterError> {
        let now = Instant::now();
        let expires = now + self.lease_ttl;
        let mut state = self.state();
        let mut alive = Vec::with_capacity(leases.len());
        for (campaign_id, lease) in leases {
            // An expired lease is gone even if not swept yet: renewing must not revive it.
            let slot = state
                .campaigns
                .get_mut(campaign_id)
                .and_then(|held| held.get_mut(lease))
                .filter(|at| **at > now);
            alive.push(slot.is_some());
            if let Some(at) = slot {
                *at = expires;
            }
        }
        Ok(alive)
    }

    async fn active(&self, campaign_id: CampaignId) -> Result<u32, LimiterError> {
        let mut state = self.state();
        state.purge_campaign(campaign_id, Instant::now());
        Ok(state.campaigns.get(&campaign_id).map_or(0, |l| l.len()) as u32)
    }

    async fn active_total(&self) -> Result<u32, LimiterError> {
        let mut state = self.state();
        state.purge_all(Instant::now());
        Ok(state.total)
    }

    async fn pace(
        &self,
        key: &str,
        per_second: f64,
        burst: u32,
    ) -> Result<Option<Duration>, LimiterError> {
        let Some(pace) = Pace::new(per_second, burst) else {
            return Ok(None);
        };
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        let mut state = self.state();
        let tat = state.buckets.get(key).copied().unwrap_or(0);
        Ok(match take(pace, tat, now) {
            Taken::Now { tat } => {
                state.buckets.insert(key.to_owned(), tat);
                None
            }
            Taken::Wait { wait_us } => Some(Duration::from_micros(wait_us)),
        })
    }
}
