//! Campaigns: their settings, the retry policy and the status machine.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::business_hours::BusinessHours;
use super::carrier::{Audio, Voice};
use super::compliance::{FrequencyCap, RestrictedPeriod};
use super::ids::CampaignId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CampaignStatus {
    Pending,
    InProgress,
    Paused,
    Completed,
    /// Reserved by the API contract; nothing sets it today.
    Failed,
}

impl CampaignStatus {
    pub const ALL: [CampaignStatus; 5] = [
        Self::Pending,
        Self::InProgress,
        Self::Paused,
        Self::Completed,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InProgress => "in_progress",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

/// An operator's request to move a campaign through its status machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusAction {
    Start,
    Pause,
    Complete,
}

impl StatusAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Pause => "pause",
            Self::Complete => "complete",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The campaign is already where the action would take it.
    NoOp,
    To(CampaignStatus),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a campaign that is {from}")]
pub struct InvalidTransition {
    pub action: &'static str,
    pub from: &'static str,
}

impl CampaignStatus {
    /// The status machine of the API contract: `completed` is final, start on `in_progress` and
    /// pause on `paused` are no-ops, complete works from any other status.
    pub fn apply(self, action: StatusAction) -> Result<Transition, InvalidTransition> {
        use CampaignStatus as S;
        let invalid = || InvalidTransition {
            action: action.as_str(),
            from: self.as_str(),
        };
        match (action, self) {
            (_, S::Completed) => Err(invalid()),
            (StatusAction::Start, S::InProgress) => Ok(Transition::NoOp),
            (StatusAction::Start, S::Pending | S::Paused) => Ok(Transition::To(S::InProgress)),
            (StatusAction::Pause, S::Paused) => Ok(Transition::NoOp),
            (StatusAction::Pause, S::InProgress) => Ok(Transition::To(S::Paused)),
            (StatusAction::Pause, S::Pending) => Ok(Transition::To(S::Paused)),
            (StatusAction::Complete, _) => Ok(Transition::To(S::Completed)),
            (_, S::Failed) => Err(invalid()),
        }
    }

    /// Whether settings, targets and triggered calls may still change.
    pub fn is_mutable(self) -> bool {
        !matches!(self, Self::Completed | Self::Failed)
    }

    /// Refuses `action` (an update, new calls) on a campaign that can no longer change.
    pub fn ensure_mutable(self, action: &'static str) -> Result<(), InvalidTransition> {
        if self.is_mutable() {
            Ok(())
        } else {
            Err(InvalidTransition {
                action,
                from: self.as_str(),
            })
        }
    }
}

/// The backoff terms of the retry policy in force when an attempt was dispatched; they travel
/// with the attempt, so whoever records its outcome computes the backoff without reading the
/// campaign.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PolicyTerms {
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    pub jitter: f64,
}

impl PolicyTerms {
    /// The policy these terms came from; the attempt budget is not among the terms.
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 0,
            base_delay: Duration::from_millis(self.base_delay_ms),
            max_delay: Duration::from_millis(self.max_delay_ms),
            jitter: self.jitter,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(120),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// Delay before the attempt that follows attempt number `attempt` (1-based):
    /// `min(max_delay, base_delay * 2^(attempt-1))`, spread by ±`jitter` with `unit_random` in
    /// [0, 1), and never above `max_delay`.
    pub fn backoff(&self, attempt: u32, unit_random: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(62);
        let base = self.base_delay.as_secs_f64() * 2f64.powi(exponent as i32);
        let capped = base.min(self.max_delay.as_secs_f64());
        let spread = 1.0 + self.jitter * (2.0 * unit_random.clamp(0.0, 1.0) - 1.0);
        let delayed = (capped * spread).clamp(0.0, self.max_delay.as_secs_f64());
        Duration::from_secs_f64(delayed)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Campaign {
    pub id: CampaignId,
    pub name: String,
    pub description: String,
    pub time_zone: Tz,
    pub status: CampaignStatus,
    pub max_concurrent_calls: u32,
    pub retry_policy: RetryPolicy,
    pub business_hours: BusinessHours,
    /// Windows read in each called party's zone; empty: no restriction.
    pub recipient_hours: BusinessHours,
    /// Days no attempt starts, in the campaign's zone.
    pub restricted_periods: Vec<RestrictedPeriod>,
    /// Caps on attempts to one number within the campaign.
    pub recipient_limits: Vec<FrequencyCap>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub target_count: u64,
    /// Caller id and audio for a real carrier; empty: the configured defaults.
    pub voice: Voice,
    /// Why the engine paused the campaign by itself, until it starts again.
    pub pause_reason: Option<PauseReason>,
}

/// Why the engine paused a campaign by itself (an operator's pause gives none).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PauseReason {
    /// `carrier_refused`: the carrier refuses what the campaign asks of it.
    pub code: String,
    /// The carrier's own error code, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier_code: Option<u32>,
    pub message: String,
}

impl PauseReason {
    pub const CARRIER_REFUSED: &'static str = "carrier_refused";

    pub fn carrier_refused(carrier_code: Option<u32>, message: String) -> Self {
        Self {
            code: Self::CARRIER_REFUSED.to_owned(),
            carrier_code,
            message,
        }
    }
}

/// Fields an update may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CampaignChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub max_concurrent_calls: Option<u32>,
    pub retry_policy: Option<RetryPolicy>,
    pub business_hours: Option<BusinessHours>,
    pub recipient_hours: Option<BusinessHours>,
    pub restricted_periods: Option<Vec<RestrictedPeriod>>,
    pub recipient_limits: Option<Vec<FrequencyCap>>,
    /// `Some(None)` clears the campaign's caller id.
    pub caller_id: Option<Option<String>>,
    /// `Some(None)` clears the campaign's audio.
    pub audio: Option<Option<Audio>>,
}

impl CampaignChanges {
    /// `campaign` with these changes made; a field left `None` keeps its value. Timestamps and
    /// the status are the store's to set.
    pub fn apply_to(self, campaign: Campaign) -> Campaign {
        Campaign {
            name: self.name.unwrap_or(campaign.name),
            description: self.description.unwrap_or(campaign.description),
            max_concurrent_calls: self
                .max_concurrent_calls
                .unwrap_or(campaign.max_concurrent_calls),
            retry_policy: self.retry_policy.unwrap_or(campaign.retry_policy),
            business_hours: self.business_hours.unwrap_or(campaign.business_hours),
            recipient_hours: self.recipient_hours.unwrap_or(campaign.recipient_hours),
            restricted_periods: self
                .restricted_periods
                .unwrap_or(campaign.restricted_periods),
            recipient_limits: self.recipient_limits.unwrap_or(campaign.recipient_limits),
            voice: Voice {
                caller_id: self.caller_id.unwrap_or(campaign.voice.caller_id),
                audio: self.audio.unwrap_or(campaign.voice.audio),
            },
            ..campaign
        }
    }
}

/// The key under which campaign names are unique: names differing only in case collide.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn status_machine_follows_the_contract() {
        use CampaignStatus as S;
        use StatusAction as A;
        assert_eq!(
            S::Pending.apply(A::Start),
            Ok(Transition::To(S::InProgress))
        );
        assert_eq!(S::InProgress.apply(A::Start), Ok(Transition::NoOp));
        assert_eq!(S::InProgress.apply(A::Pause), Ok(Transition::To(S::Paused)));
        assert_eq!(S::Paused.apply(A::Pause), Ok(Transition::NoOp));
        assert_eq!(S::Paused.apply(A::Start), Ok(Transition::To(S::InProgress)));
        for from in [S::Pending, S::InProgress, S::Paused] {
            assert_eq!(from.apply(A::Complete), Ok(Transition::To(S::Completed)));
        }
        for action in [A::Start, A::Pause, A::Complete] {
            assert!(S::Completed.apply(action).is_err());
        }
    }

    #[test]
    fn backoff_grows_exponentially_and_caps() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(30),
            jitter: 0.0,
        };
        assert_eq!(policy.backoff(1, 0.5), Duration::from_secs(2));
        assert_eq!(policy.backoff(2, 0.5), Duration::from_secs(4));
        assert_eq!(policy.backoff(4, 0.5), Duration::from_secs(16));
        assert_eq!(policy.backoff(5, 0.5), Duration::from_secs(30));
        assert_eq!(policy.backoff(60, 0.5), Duration::from_secs(30));
    }

    #[test]
    fn jitter_spreads_within_bounds() {
        let policy = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(100),
            jitter: 0.2,
        };
        assert_eq!(policy.backoff(1, 0.0), Duration::from_secs(8));
        assert_eq!(policy.backoff(1, 1.0), Duration::from_secs(12));
        let capped = RetryPolicy {
            max_delay: Duration::from_secs(10),
            ..policy
        };
        assert!(capped.backoff(1, 1.0) <= Duration::from_secs(10));
    }

    #[test]
    fn changes_replace_only_the_fields_they_name() {
        let campaign = Campaign {
            id: CampaignId::new(),
            name: "Spring".into(),
            description: "first".into(),
            time_zone: chrono_tz::UTC,
            status: CampaignStatus::Paused,
            max_concurrent_calls: 5,
            retry_policy: RetryPolicy::default(),
            business_hours: BusinessHours::default(),
            recipient_hours: BusinessHours::default(),
            restricted_periods: Vec::new(),
            recipient_limits: Vec::new(),
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            updated_at: DateTime::<Utc>::UNIX_EPOCH,
            started_at: None,
            completed_at: None,
            target_count: 3,
            voice: Voice::default(),
            pause_reason: None,
        };
        assert_eq!(
            CampaignChanges::default().apply_to(campaign.clone()),
            campaign
        );
        let policy = RetryPolicy {
            max_attempts: 9,
            ..RetryPolicy::default()
        };
        let changed = CampaignChanges {
            description: Some("second".into()),
            max_concurrent_calls: Some(7),
            retry_policy: Some(policy),
            ..CampaignChanges::default()
        }
        .apply_to(campaign.clone());
        assert_eq!(
            changed,
            Campaign {
                description: "second".into(),
                max_concurrent_calls: 7,
                retry_policy: policy,
                ..campaign
            }
        );
        assert_eq!(name_key("Spring Sale"), name_key("spring SALE"));
    }
}
