//! Calls (one job to reach one number) and their attempts, with the rule that decides what
//! follows an attempt.

use chrono::{DateTime, Utc};

use super::carrier::CarrierCall;
use super::ids::{CallId, CampaignId};
use super::phone::PhoneNumber;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallStatus {
    /// Waiting for a window or capacity.
    Queued,
    Dialing,
    /// Waiting out a backoff before the next attempt.
    Retrying,
    Completed,
    /// A non-retryable failure, or every attempt used.
    Failed,
    Canceled,
}

impl CallStatus {
    pub const ALL: [CallStatus; 6] = [
        Self::Queued,
        Self::Dialing,
        Self::Retrying,
        Self::Completed,
        Self::Failed,
        Self::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Dialing => "dialing",
            Self::Retrying => "retrying",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Canceled)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub id: CallId,
    pub campaign_id: CampaignId,
    pub phone_number: PhoneNumber,
    pub status: CallStatus,
    pub attempt_count: u32,
    pub max_attempts: u32,
    pub scheduled_at: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub metadata: Option<super::metadata::Metadata>,
    /// The called party's zone when its target gave one; otherwise its number's.
    pub time_zone: Option<chrono_tz::Tz>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptStatus {
    Dialing,
    Completed,
    Failed,
}

impl AttemptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dialing => "dialing",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Dialing, Self::Completed, Self::Failed]
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub attempt: u32,
    pub status: AttemptStatus,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
    /// What the carrier said about the call, when a real carrier placed it.
    pub carrier: Option<CarrierCall>,
    /// What the call heard back, when the engine spoke the campaign's message.
    pub answer: super::answer::Answer,
}

/// The carrier's ids of a call's attempts other than `attempt`: calls a lookup for `attempt`
/// must never take for its own.
pub fn other_sids(attempts: Vec<Attempt>, attempt: u32) -> Vec<String> {
    attempts
        .into_iter()
        .filter(|other| other.attempt != attempt)
        .filter_map(|other| other.carrier.and_then(|carrier| carrier.sid))
        .collect()
}

/// One call's attempts from the store (dialing, or finished and not yet exported) and from a
/// separate timeline (exported), by attempt number. An attempt in both (copied, not yet
/// deleted from the store) appears once, the store's copy winning.
pub fn merge_attempts(store: Vec<Attempt>, timeline: Vec<Attempt>) -> Vec<Attempt> {
    let mut by_number: std::collections::BTreeMap<u32, Attempt> = timeline
        .into_iter()
        .map(|attempt| (attempt.attempt, attempt))
        .collect();
    by_number.extend(store.into_iter().map(|attempt| (attempt.attempt, attempt)));
    by_number.into_values().collect()
}

/// What the provider reported for one attempt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttemptOutcome {
    Answered,
    Failed { error: String, retryable: bool },
}

/// What a call becomes after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Complete,
    Fail,
    RetryAt(DateTime<Utc>),
    /// The campaign was completed while the attempt was dialing: no retry follows.
    Cancel,
}

/// Decides the call's next step after attempt `attempt` of `max_attempts`. `retry_at` is when a
/// retry would fall due (already including backoff and jitter).
pub fn next_step(
    outcome: &AttemptOutcome,
    attempt: u32,
    max_attempts: u32,
    retry_at: DateTime<Utc>,
) -> NextStep {
    match outcome {
        AttemptOutcome::Answered => NextStep::Complete,
        AttemptOutcome::Failed {
            retryable: true, ..
        } if attempt < max_attempts => NextStep::RetryAt(retry_at),
        AttemptOutcome::Failed { .. } => NextStep::Fail,
    }
}

/// A number to call, as a registration or a re-queue names it.
#[derive(Debug, Clone)]
pub struct NewTarget {
    pub phone_number: PhoneNumber,
    pub metadata: Option<super::metadata::Metadata>,
    /// The called party's zone, overriding its number's.
    pub time_zone: Option<chrono_tz::Tz>,
}

impl NewTarget {
    /// The queued call that registering or re-queueing this target creates.
    pub fn queued_call(
        self,
        campaign_id: CampaignId,
        max_attempts: u32,
        now: DateTime<Utc>,
    ) -> Call {
        Call {
            id: CallId::new(),
            campaign_id,
            phone_number: self.phone_number,
            status: CallStatus::Queued,
            attempt_count: 0,
            max_attempts,
            scheduled_at: now,
            next_attempt_at: None,
            last_attempt_at: None,
            created_at: now,
            updated_at: now,
            last_error: None,
            metadata: self.metadata,
            time_zone: self.time_zone,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn merged_attempts_are_ordered_and_unique() {
        let at = |n: u32, status: AttemptStatus| Attempt {
            attempt: n,
            status,
            error: None,
            started_at: DateTime::<Utc>::UNIX_EPOCH,
            ended_at: None,
            duration_ms: None,
            carrier: None,
            answer: Default::default(),
        };
        let merged = merge_attempts(
            vec![at(3, AttemptStatus::Dialing), at(2, AttemptStatus::Failed)],
            vec![
                at(2, AttemptStatus::Completed),
                at(1, AttemptStatus::Failed),
            ],
        );
        let numbers: Vec<_> = merged.iter().map(|a| (a.attempt, a.status)).collect();
        assert_eq!(
            numbers,
            vec![
                (1, AttemptStatus::Failed),
                (2, AttemptStatus::Failed),
                (3, AttemptStatus::Dialing)
            ]
        );
        assert!(merge_attempts(Vec::new(), Vec::new()).is_empty());
    }

    use super::*;

    #[test]
    fn retries_only_retryable_failures_within_budget() {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        let retryable = AttemptOutcome::Failed {
            error: "busy".into(),
            retryable: true,
        };
        let fatal = AttemptOutcome::Failed {
            error: "invalid number".into(),
            retryable: false,
        };
        assert_eq!(
            next_step(&AttemptOutcome::Answered, 1, 3, at),
            NextStep::Complete
        );
        assert_eq!(next_step(&retryable, 1, 3, at), NextStep::RetryAt(at));
        assert_eq!(next_step(&retryable, 2, 3, at), NextStep::RetryAt(at));
        assert_eq!(next_step(&retryable, 3, 3, at), NextStep::Fail);
        assert_eq!(next_step(&fatal, 1, 3, at), NextStep::Fail);
    }

    #[test]
    fn statuses_round_trip() {
        for status in CallStatus::ALL {
            assert_eq!(CallStatus::parse(status.as_str()), Some(status));
        }
        assert!(CallStatus::Canceled.is_terminal());
        assert!(!CallStatus::Retrying.is_terminal());
    }
}
