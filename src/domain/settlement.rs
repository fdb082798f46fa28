//! How a provider's report of one attempt settles its call: whether the report still applies,
//! what the call becomes, what the attempt's record says and how the campaign's counters move.
//!
//! Both SQL stores read the reported calls, ask `settle` and write what it answers, inside the
//! transaction that moves the calls; the rule itself lives only here.

use chrono::{DateTime, Utc};

use super::call::{next_step, AttemptOutcome, AttemptStatus, CallStatus, NextStep};
use super::campaign::CampaignStatus;
use super::carrier::CarrierCall;
use super::ids::{CallId, CampaignId, InstanceId};
use super::stats::StatsDelta;

/// The result of one attempt, as the status role hands it to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptReport {
    pub call_id: CallId,
    pub campaign_id: CampaignId,
    pub attempt: u32,
    pub outcome: AttemptOutcome,
    pub ended_at: DateTime<Utc>,
    /// When a retry would fall due, backoff and jitter included.
    pub retry_at: DateTime<Utc>,
    /// When set, the report applies only while this instance still owns the attempt: how a
    /// lost attempt is recorded without racing the process that adopted it.
    pub expected_owner: Option<InstanceId>,
    /// What the carrier said about the call, kept with the attempt.
    pub carrier: Option<CarrierCall>,
    /// When set, the report applies only to the attempt that began at this instant.
    pub attempt_started_at: Option<DateTime<Utc>>,
}

/// What recording a report did. `step` is `None` when the report was stale or a duplicate
/// (the call had already moved on), which is how redelivered messages count once.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedReport {
    pub call_id: CallId,
    pub campaign_id: CampaignId,
    pub attempt: u32,
    pub step: Option<NextStep>,
}

impl AppliedReport {
    /// A report that changed nothing.
    pub fn stale(report: &AttemptReport) -> Self {
        Self {
            call_id: report.call_id,
            campaign_id: report.campaign_id,
            attempt: report.attempt,
            step: None,
        }
    }

    pub fn settled(report: &AttemptReport, step: NextStep) -> Self {
        Self {
            step: Some(step),
            ..Self::stale(report)
        }
    }
}

/// A reported call as the store holds it when the report arrives.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentCall {
    pub status: CallStatus,
    pub attempt_count: u32,
    pub max_attempts: u32,
    /// The process holding the current attempt: its claimer until a dialer begins it.
    pub owner: Option<InstanceId>,
    /// Whether a dialer began placing the current attempt (the provider may have it).
    pub placed: bool,
    /// When the current attempt started, if its record is still in the store.
    pub attempt_started_at: Option<DateTime<Utc>>,
    /// The status of the call's campaign.
    pub campaign_status: CampaignStatus,
}

/// What a fresh report changes: the call, its current attempt's record and the counters.
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    pub step: NextStep,
    pub call_status: CallStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The call's `last_error` and the attempt's error: the provider's error, if it failed.
    pub error: Option<String>,
    pub attempt_status: AttemptStatus,
    pub ended_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub delta: StatsDelta,
    /// The carrier's record of the call, as JSON, to keep with the attempt.
    pub carrier: Option<String>,
}

impl CurrentCall {
    /// A report applies only to the attempt the call is dialing now, and, when it names an
    /// owner, only while that owner still holds it; when it names the instant the attempt
    /// began, only to the attempt that began then (an attempt handed back unspent and made
    /// again has the same number but not the same start). Anything else is a duplicate or
    /// stale.
    pub fn accepts(&self, report: &AttemptReport) -> bool {
        self.status == CallStatus::Dialing
            && self.attempt_count == report.attempt
            && report
                .expected_owner
                .is_none_or(|expected| self.owner == Some(expected))
            && self.began_at(report.attempt_started_at)
    }

    /// Whether the current attempt is the one that began at `began` (any, when unknown): an
    /// attempt handed back unspent and made again keeps its number but not its start.
    pub fn began_at(&self, began: Option<DateTime<Utc>>) -> bool {
        began.is_none_or(|began| {
            self.attempt_started_at
                .is_some_and(|at| at.timestamp_millis() == began.timestamp_millis())
        })
    }

    /// Settles `report` against this call, or `None` when the report no longer applies. The
    /// caller writes the settlement and then marks the call with `mark_settled`, so a
    /// second report of the same attempt in one batch is seen as the duplicate it is.
    pub fn settle(&self, report: &AttemptReport) -> Option<Settlement> {
        if !self.accepts(report) {
            return None;
        }
        let mut step = next_step(
            &report.outcome,
            report.attempt,
            self.max_attempts,
            report.retry_at,
        );
        // A campaign completed while the attempt was dialing gets no more attempts.
        if self.campaign_status == CampaignStatus::Completed && matches!(step, NextStep::RetryAt(_))
        {
            step = NextStep::Cancel;
        }
        let (call_status, next_attempt_at) = match step {
            NextStep::Complete => (CallStatus::Completed, None),
            NextStep::Fail => (CallStatus::Failed, None),
            NextStep::Cancel => (CallStatus::Canceled, None),
            NextStep::RetryAt(at) => (CallStatus::Retrying, Some(at)),
        };
        let (attempt_status, error) = match &report.outcome {
            AttemptOutcome::Answered => (AttemptStatus::Completed, None),
            AttemptOutcome::Failed { error, .. } => (AttemptStatus::Failed, Some(error.clone())),
        };
        let ended_ms = report.ended_at.timestamp_millis();
        let started_ms = self
            .attempt_started_at
            .map_or(ended_ms, |at| at.timestamp_millis());
        // A carrier bills the connected time; without one, the attempt's whole length.
        let duration_ms = match report.carrier.as_ref().and_then(|c| c.duration_secs) {
            Some(secs) => secs.saturating_mul(1000),
            None => u64::try_from(ended_ms.saturating_sub(started_ms)).unwrap_or(0),
        };
        Some(Settlement {
            step,
            call_status,
            next_attempt_at,
            error,
            attempt_status,
            ended_at: report.ended_at,
            duration_ms,
            delta: StatsDelta::attempt_finished(call_status, duration_ms),
            carrier: report
                .carrier
                .as_ref()
                .and_then(|carrier| serde_json::to_string(carrier).ok()),
        })
    }

    /// The call after `settlement` was written.
    pub fn mark_settled(&mut self, settlement: &Settlement) {
        self.status = settlement.call_status;
        self.owner = None;
        self.placed = false;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use chrono::TimeZone;

    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
    }

    fn dialing(attempt: u32, max_attempts: u32) -> CurrentCall {
        CurrentCall {
            status: CallStatus::Dialing,
            attempt_count: attempt,
            max_attempts,
            owner: None,
            placed: true,
            attempt_started_at: Some(at(1_000)),
            campaign_status: CampaignStatus::InProgress,
        }
    }

    fn report(attempt: u32, outcome: AttemptOutcome) -> AttemptReport {
        AttemptReport {
            call_id: CallId::new(),
            campaign_id: CampaignId::new(),
            attempt,
            outcome,
            ended_at: at(4_500),
            retry_at: at(10_000),
            expected_owner: None,
            carrier: None,
            attempt_started_at: None,
        }
    }

    #[test]
    fn a_report_naming_another_start_of_the_attempt_is_stale() {
        let call = dialing(2, 3);
        let mut of_this = report(2, busy());
        of_this.attempt_started_at = Some(at(1_000));
        assert!(call.accepts(&of_this));
        let mut of_an_earlier_try = report(2, busy());
        of_an_earlier_try.attempt_started_at = Some(at(900));
        assert!(!call.accepts(&of_an_earlier_try));
        assert_eq!(call.settle(&of_an_earlier_try), None);
        assert!(
            call.accepts(&report(2, busy())),
            "a report naming no start applies"
        );
    }

    #[test]
    fn a_carriers_billed_duration_is_the_attempts() {
        let mut answered = report(1, AttemptOutcome::Answered);
        answered.carrier = Some(CarrierCall {
            duration_secs: Some(42),
            ..CarrierCall::default()
        });
        let settled = dialing(1, 3).settle(&answered).expect("settles");
        assert_eq!(settled.duration_ms, 42_000);
        assert!(settled.carrier.is_some_and(|json| json.contains("42")));
    }

    fn busy() -> AttemptOutcome {
        AttemptOutcome::Failed {
            error: "busy".into(),
            retryable: true,
        }
    }

    #[test]
    fn an_answered_attempt_completes_the_call_and_counts_its_duration() {
        let settled = dialing(1, 3)
            .settle(&report(1, AttemptOutcome::Answered))
            .expect("fresh");
        assert_eq!(settled.step, NextStep::Complete);
        assert_eq!(settled.call_status, CallStatus::Completed);
        assert_eq!(settled.attempt_status, AttemptStatus::Completed);
        assert_eq!((settled.error, settled.next_attempt_at), (None, None));
        assert_eq!(settled.duration_ms, 3_500);
        assert_eq!(
            settled.delta,
            StatsDelta::attempt_finished(CallStatus::Completed, 3_500)
        );
    }

    #[test]
    fn a_retryable_failure_waits_for_its_retry_until_attempts_run_out() {
        let settled = dialing(1, 2).settle(&report(1, busy())).expect("fresh");
        assert_eq!(settled.step, NextStep::RetryAt(at(10_000)));
        assert_eq!(settled.call_status, CallStatus::Retrying);
        assert_eq!(settled.next_attempt_at, Some(at(10_000)));
        assert_eq!(settled.error.as_deref(), Some("busy"));
        assert_eq!(settled.attempt_status, AttemptStatus::Failed);
        let last = dialing(2, 2).settle(&report(2, busy())).expect("fresh");
        assert_eq!(
            (last.step, last.call_status),
            (NextStep::Fail, CallStatus::Failed)
        );
    }

    #[test]
    fn a_completed_campaign_cancels_instead_of_retrying() {
        let mut call = dialing(1, 3);
        call.campaign_status = CampaignStatus::Completed;
        let settled = call.settle(&report(1, busy())).expect("fresh");
        assert_eq!(
            (settled.step, settled.call_status),
            (NextStep::Cancel, CallStatus::Canceled)
        );
        assert_eq!(settled.next_attempt_at, None);
        let answered = call
            .settle(&report(1, AttemptOutcome::Answered))
            .expect("fresh");
        assert_eq!(answered.call_status, CallStatus::Completed);
    }

    #[test]
    fn stale_duplicate_and_foreign_reports_change_nothing() {
        assert!(dialing(2, 3).settle(&report(1, busy())).is_none(), "older");
        let mut done = dialing(1, 3);
        let first = report(1, AttemptOutcome::Answered);
        let settled = done.settle(&first).expect("fresh");
        done.mark_settled(&settled);
        assert!(done.settle(&first).is_none(), "duplicate in one batch");

        let owner = InstanceId::new();
        let mut owned = dialing(1, 3);
        owned.owner = Some(owner);
        let mut expecting = report(1, busy());
        expecting.expected_owner = Some(InstanceId::new());
        assert!(owned.settle(&expecting).is_none(), "adopted elsewhere");
        expecting.expected_owner = Some(owner);
        assert!(owned.settle(&expecting).is_some(), "still the owner's");
        expecting.expected_owner = None;
        assert!(owned.settle(&expecting).is_some(), "no owner expected");
    }

    #[test]
    fn a_missing_attempt_record_or_an_early_end_counts_zero_duration() {
        let mut call = dialing(1, 3);
        call.attempt_started_at = None;
        let settled = call
            .settle(&report(1, AttemptOutcome::Answered))
            .expect("fresh");
        assert_eq!(settled.duration_ms, 0);
        call.attempt_started_at = Some(at(9_000));
        let early = call
            .settle(&report(1, AttemptOutcome::Answered))
            .expect("fresh");
        assert_eq!(early.duration_ms, 0);
    }
}
