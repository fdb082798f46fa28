//! Live campaign statistics, kept as counters that change in the same transaction as the calls.

use chrono::{DateTime, Utc};

use super::call::CallStatus;
use super::ids::CampaignId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignStats {
    pub campaign_id: CampaignId,
    pub total_targets: u64,
    pub total_calls: u64,
    pub queued_calls: u64,
    pub retrying_calls: u64,
    pub dialing_calls: u64,
    pub completed_calls: u64,
    pub failed_calls: u64,
    pub canceled_calls: u64,
    pub attempts_total: u64,
    pub retries_attempted: u64,
    pub duration_ms_total: u64,
    pub finished_attempts: u64,
    pub updated_at: DateTime<Utc>,
    /// What calls heard back; outside the invariant, which counts calls by status.
    pub answers: super::answer::AnswerStats,
}

impl CampaignStats {
    pub fn pending_calls(&self) -> u64 {
        self.queued_calls + self.retrying_calls
    }

    pub fn avg_duration_ms(&self) -> f64 {
        if self.finished_attempts == 0 {
            0.0
        } else {
            self.duration_ms_total as f64 / self.finished_attempts as f64
        }
    }

    /// The API's invariant: every call is in exactly one bucket.
    pub fn is_consistent(&self) -> bool {
        self.total_calls
            == self.pending_calls()
                + self.dialing_calls
                + self.completed_calls
                + self.failed_calls
                + self.canceled_calls
    }

    pub fn has_open_calls(&self) -> bool {
        self.queued_calls + self.retrying_calls + self.dialing_calls > 0
    }
}

/// Signed changes to a campaign's counters, made by one transaction that moves calls; a store
/// applies them in one statement, so the counters move with the calls they count.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatsDelta {
    pub total_calls: i64,
    pub queued: i64,
    pub retrying: i64,
    pub dialing: i64,
    pub completed: i64,
    pub failed: i64,
    pub canceled: i64,
    pub attempts_total: i64,
    pub retries_attempted: i64,
    pub duration_ms_total: i64,
    pub finished_attempts: i64,
}

impl StatsDelta {
    /// `count` new calls, each queued.
    pub fn enqueued(count: i64) -> Self {
        Self {
            total_calls: count,
            queued: count,
            ..Self::default()
        }
    }

    /// `count` queued calls claimed for dialing, `retries` of them past their first attempt.
    pub fn claimed(count: i64, retries: i64) -> Self {
        Self {
            queued: -count,
            dialing: count,
            attempts_total: count,
            retries_attempted: retries,
            ..Self::default()
        }
    }

    /// `count` retrying calls whose backoff ended, queued again.
    pub fn promoted(count: i64) -> Self {
        Self {
            retrying: -count,
            queued: count,
            ..Self::default()
        }
    }

    /// `count` calls that were `from`, canceled.
    pub fn canceled_from(from: CallStatus, count: i64) -> Self {
        let mut delta = Self {
            canceled: count,
            ..Self::default()
        };
        delta.bucket(from, -count);
        delta
    }

    /// A dialing call whose attempt of `duration_ms` ended, now `to`.
    pub fn attempt_finished(to: CallStatus, duration_ms: u64) -> Self {
        let mut delta = Self {
            dialing: -1,
            duration_ms_total: i64::try_from(duration_ms).unwrap_or(i64::MAX),
            finished_attempts: 1,
            ..Self::default()
        };
        delta.bucket(to, 1);
        delta
    }

    /// A claimed attempt handed back before it was placed: the call is `to` again and the
    /// attempt (a retry when `retry`) no longer counts.
    pub fn released(to: CallStatus, retry: bool) -> Self {
        let mut delta = Self {
            dialing: -1,
            attempts_total: -1,
            retries_attempted: -i64::from(retry),
            ..Self::default()
        };
        delta.bucket(to, 1);
        delta
    }

    /// Moves the bucket of calls in `status` by `by`.
    pub fn bucket(&mut self, status: CallStatus, by: i64) {
        match status {
            CallStatus::Queued => self.queued += by,
            CallStatus::Retrying => self.retrying += by,
            CallStatus::Dialing => self.dialing += by,
            CallStatus::Completed => self.completed += by,
            CallStatus::Failed => self.failed += by,
            CallStatus::Canceled => self.canceled += by,
        }
    }

    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

impl std::ops::AddAssign for StatsDelta {
    fn add_assign(&mut self, other: Self) {
        self.total_calls += other.total_calls;
        self.queued += other.queued;
        self.retrying += other.retrying;
        self.dialing += other.dialing;
        self.completed += other.completed;
        self.failed += other.failed;
        self.canceled += other.canceled;
        self.attempts_total += other.attempts_total;
        self.retries_attempted += other.retries_attempted;
        self.duration_ms_total += other.duration_ms_total;
        self.finished_attempts += other.finished_attempts;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calls a delta adds to or removes from the buckets, which must equal what it adds to
    /// `total_calls` for the counters to stay consistent.
    fn bucket_sum(delta: &StatsDelta) -> i64 {
        delta.queued
            + delta.retrying
            + delta.dialing
            + delta.completed
            + delta.failed
            + delta.canceled
    }

    #[test]
    fn every_delta_keeps_the_buckets_equal_to_the_total() {
        let mut all = vec![
            StatsDelta::enqueued(7),
            StatsDelta::claimed(5, 2),
            StatsDelta::promoted(3),
        ];
        for status in CallStatus::ALL {
            all.push(StatsDelta::canceled_from(status, 4));
            all.push(StatsDelta::attempt_finished(status, 1_500));
            all.push(StatsDelta::released(status, true));
        }
        for delta in &all {
            assert_eq!(bucket_sum(delta), delta.total_calls, "{delta:?}");
        }
        let mut sum = StatsDelta::default();
        for delta in all {
            sum += delta;
        }
        assert_eq!(bucket_sum(&sum), sum.total_calls);
        assert!(StatsDelta::default().is_zero());
        assert!(!StatsDelta::promoted(1).is_zero());
    }

    #[test]
    fn claims_count_attempts_and_retries() {
        let delta = StatsDelta::claimed(5, 2);
        assert_eq!((delta.queued, delta.dialing), (-5, 5));
        assert_eq!((delta.attempts_total, delta.retries_attempted), (5, 2));
        let finished = StatsDelta::attempt_finished(CallStatus::Retrying, 2_000);
        assert_eq!((finished.dialing, finished.retrying), (-1, 1));
        assert_eq!(
            (finished.duration_ms_total, finished.finished_attempts),
            (2_000, 1)
        );
    }
}
