//! When a campaign will be done, from what its run so far shows: the slot time an attempt takes
//! (measured over the run, so the dialer's own overhead is in it), the attempts a call needs,
//! the limit, and the instants its calls' rules open (business hours, restricted periods, and
//! each recipient's hours, from a sample of its waiting calls). A fluid model: the open share of
//! the limit drains the remaining attempts, step by step, through the campaign's future windows.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};

use super::admission::{CampaignRules, DialCheck, NumberFacts, PendingCall};
use super::compliance::Compliance;

/// The model's step: windows open and close on whole minutes, and most on quarter hours.
const STEP_SECONDS: i64 = 15 * 60;
/// How far ahead the model looks before it says the campaign will not finish.
pub const HORIZON_DAYS: i64 = 90;

/// What the campaign's statistics show so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observed {
    pub pending_calls: u64,
    pub dialing_calls: u64,
    pub completed_calls: u64,
    pub failed_calls: u64,
    pub attempts_total: u64,
    pub retries_attempted: u64,
    pub finished_attempts: u64,
    /// Mean length of a finished attempt, as the carrier reported it.
    pub call_seconds: f64,
    /// When the campaign started, if it has.
    pub started_at: Option<DateTime<Utc>>,
    /// The limit the campaign ran with.
    pub limit: u32,
}

/// What the forecast assumed, for the operator to judge it by.
#[derive(Debug, Clone, PartialEq)]
pub struct Assumptions {
    pub limit: u32,
    pub call_seconds: f64,
    /// Slot time per attempt: measured over the run once it has filled the limit twice over,
    /// else the call length.
    pub slot_seconds: f64,
    pub answer_rate: Option<f64>,
    /// Share of attempts that were retries.
    pub retry_rate: f64,
    pub attempts_per_call: f64,
    pub remaining_attempts: f64,
    /// While the rules let every waiting call be dialed.
    pub attempts_per_second: f64,
    /// Distinct sets of recipient rules (zones and state) among the sampled waiting calls.
    pub recipient_groups: usize,
    pub sampled_calls: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// `None` when there is nothing to measure the calls by yet, or no end within the horizon.
    pub completes_at: Option<DateTime<Utc>>,
    pub assumptions: Assumptions,
}

/// Waiting calls that share their rules, with the share of the waiting calls they stand for.
struct Group {
    check: DialCheck,
    share: f64,
}

/// Forecasts a campaign with `rules` (its status aside) dialing at most `limit` at once (its
/// own, or another to see what it would change), from `observed` and a sample of its waiting
/// calls, at `now`.
pub fn forecast(
    policy: &Compliance,
    rules: &CampaignRules,
    limit: u32,
    max_attempts: u32,
    observed: &Observed,
    sample: Vec<PendingCall>,
    now: DateTime<Utc>,
) -> Forecast {
    let groups = group(policy, rules, sample.iter());
    let sampled_calls = sample.len();
    let limit_f = f64::from(limit.max(1));
    let retry_rate = ratio(observed.retries_attempted, observed.attempts_total).unwrap_or(0.0);
    // Each attempt is a retry with the observed share: 1 / (1 - share) attempts per call.
    let attempts_per_call =
        (1.0 / (1.0 - retry_rate).max(f64::EPSILON)).clamp(1.0, f64::from(max_attempts.max(1)));
    let answer_rate = ratio(
        observed.completed_calls,
        observed.completed_calls + observed.failed_calls,
    );
    let open_seconds = observed
        .started_at
        .map_or(0.0, |start| open_seconds(&groups, start, now));
    let ran_with = observed.limit.max(1);
    let slot_seconds =
        if observed.finished_attempts >= 2 * u64::from(ran_with) && open_seconds > 0.0 {
            (f64::from(ran_with) * open_seconds / observed.finished_attempts as f64)
                .max(observed.call_seconds)
        } else {
            observed.call_seconds
        };
    // A dialing call is half done on average.
    let remaining_attempts =
        observed.pending_calls as f64 * attempts_per_call + observed.dialing_calls as f64 * 0.5;
    let attempts_per_second = if slot_seconds > 0.0 {
        limit_f / slot_seconds
    } else {
        0.0
    };
    let assumptions = Assumptions {
        limit,
        call_seconds: observed.call_seconds,
        slot_seconds,
        answer_rate,
        retry_rate,
        attempts_per_call,
        remaining_attempts,
        attempts_per_second,
        recipient_groups: groups.len(),
        sampled_calls,
    };
    let completes_at = if remaining_attempts <= 0.0 {
        Some(now)
    } else if attempts_per_second <= 0.0 {
        None
    } else {
        drain(&groups, remaining_attempts, attempts_per_second, now)
    };
    Forecast {
        completes_at,
        assumptions,
    }
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The sampled calls grouped by what their rules depend on: their zones and their state.
fn group<'a>(
    policy: &Compliance,
    rules: &CampaignRules,
    sample: impl Iterator<Item = &'a PendingCall>,
) -> Vec<Group> {
    let mut by_key: HashMap<(String, Option<&'static str>), (DialCheck, u64)> = HashMap::new();
    let mut total = 0u64;
    for call in sample {
        total += 1;
        let phone = call.phone_number.as_str();
        let zones = match call.facts.time_zone {
            Some(zone) => zone.name().to_owned(),
            None => policy
                .zones()
                .zones_of(phone)
                .iter()
                .map(|zone| zone.name())
                .collect::<Vec<_>>()
                .join(","),
        };
        let state = policy.state_rule(phone).map(|rule| rule.state);
        by_key
            .entry((zones, state))
            .or_insert_with(|| {
                let facts = NumberFacts {
                    time_zone: call.facts.time_zone,
                    do_not_call: None,
                    prior: Vec::new(),
                };
                (DialCheck::for_call(policy, rules.clone(), phone, facts), 0)
            })
            .1 += 1;
    }
    by_key
        .into_values()
        .map(|(check, count)| Group {
            check,
            share: count as f64 / total.max(1) as f64,
        })
        .collect()
}

fn is_open(group: &Group, at: DateTime<Utc>) -> bool {
    group.check.rules().holds(at).is_empty()
}

/// Seconds between `start` and `now` when some sampled call's rules were open (all of them
/// when nothing is sampled).
fn open_seconds(groups: &[Group], start: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    let step = TimeDelta::seconds(STEP_SECONDS);
    let mut at = start;
    let mut open = 0.0;
    while at < now {
        let end = (at + step).min(now);
        if groups.is_empty() || groups.iter().any(|group| is_open(group, at)) {
            open += (end - at).as_seconds_f64();
        }
        at = end;
    }
    open
}

/// When `remaining` attempts are done at `rate` per second of open time, each group drawing
/// on the rate while its rules are open, in proportion to what it has left.
fn drain(groups: &[Group], remaining: f64, rate: f64, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut left: Vec<f64> = if groups.is_empty() {
        vec![remaining]
    } else {
        groups.iter().map(|group| group.share * remaining).collect()
    };
    let step = TimeDelta::seconds(STEP_SECONDS);
    let horizon = now + TimeDelta::days(HORIZON_DAYS);
    let mut at = now;
    while at < horizon {
        let open: Vec<usize> = (0..left.len())
            .filter(|&i| left[i] > 0.0 && (groups.is_empty() || is_open(&groups[i], at)))
            .collect();
        let wanted: f64 = open.iter().map(|&i| left[i]).sum();
        if wanted > 0.0 {
            let capacity = rate * STEP_SECONDS as f64;
            if wanted <= capacity {
                for &i in &open {
                    left[i] = 0.0;
                }
                if left.iter().all(|l| *l <= 0.0) {
                    let millis = (wanted / rate * 1000.0).round() as i64;
                    return Some(at + TimeDelta::milliseconds(millis));
                }
            } else {
                for &i in &open {
                    left[i] -= capacity * left[i] / wanted;
                }
            }
        }
        at += step;
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use chrono::TimeZone;

    use super::*;
    use crate::domain::business_hours::{BusinessHours, BusinessWindow, WallTime};
    use crate::domain::call::CallStatus;
    use crate::domain::campaign::CampaignStatus;

    fn rules(business_hours: BusinessHours) -> CampaignRules {
        CampaignRules {
            status: CampaignStatus::InProgress,
            time_zone: chrono_tz::UTC,
            business_hours,
            recipient_hours: BusinessHours::default(),
            restricted_periods: Vec::new(),
            recipient_limits: Vec::new(),
        }
    }

    fn waiting(count: usize) -> Vec<PendingCall> {
        (0..count)
            .map(|i| PendingCall {
                phone_number: format!("+1555555{i:04}"),
                status: CallStatus::Queued,
                next_attempt_at: None,
                facts: NumberFacts {
                    time_zone: Some(chrono_tz::UTC),
                    do_not_call: None,
                    prior: Vec::new(),
                },
            })
            .collect()
    }

    fn observed(pending: u64, finished: u64, started: DateTime<Utc>) -> Observed {
        Observed {
            pending_calls: pending,
            dialing_calls: 0,
            completed_calls: finished,
            failed_calls: 0,
            attempts_total: finished,
            retries_attempted: 0,
            finished_attempts: finished,
            call_seconds: 1.0,
            started_at: Some(started),
            limit: 4,
        }
    }

    fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, day, hour, minute, 0)
            .single()
            .expect("valid instant")
    }

    #[test]
    fn an_open_campaign_ends_when_its_limit_has_drained_the_rest() {
        // 100 attempts in the first 50 s with 4 slots: 2 s a slot, 2 attempts a second.
        let now = at(7, 12, 0);
        let run = observed(300, 100, now - TimeDelta::seconds(50));
        let got = forecast(
            &Compliance::default(),
            &rules(BusinessHours::default()),
            4,
            3,
            &run,
            waiting(10),
            now,
        );
        assert_eq!(got.assumptions.slot_seconds, 2.0);
        assert_eq!(got.completes_at, Some(now + TimeDelta::seconds(150)));
        // The same campaign with twice the limit: half the time.
        let faster = forecast(
            &Compliance::default(),
            &rules(BusinessHours::default()),
            8,
            3,
            &run,
            waiting(10),
            now,
        );
        assert_eq!(faster.completes_at, Some(now + TimeDelta::seconds(75)));
    }

    #[test]
    fn closed_hours_push_the_end_to_the_next_window() {
        // Open 09:00-17:00 every day; at 16:59 with 10 minutes of work left, the rest waits
        // for 09:00 the next morning.
        let window = |day| {
            BusinessWindow::new(
                day,
                WallTime::parse_start("09:00").expect("start"),
                WallTime::parse_end("17:00").expect("end"),
            )
            .expect("window")
        };
        let hours = BusinessHours::new((0..7).map(window).collect());
        let now = at(7, 16, 45);
        let run = Observed {
            limit: 1,
            ..observed(600, 100, at(7, 16, 0))
        };
        let got = forecast(
            &Compliance::default(),
            &rules(hours),
            1,
            1,
            &run,
            waiting(5),
            now,
        );
        // 100 attempts in 45 min with one slot: 27 s each; 600 left is 4.5 h of dialing.
        assert_eq!(got.assumptions.slot_seconds, 27.0);
        let end = got.completes_at.expect("an end");
        assert!(end > at(8, 9, 0) && end < at(8, 17, 0), "{end}");
    }

    #[test]
    fn retries_raise_the_attempts_a_call_needs() {
        let now = at(7, 12, 0);
        let mut run = observed(100, 50, now - TimeDelta::seconds(100));
        run.attempts_total = 100;
        run.retries_attempted = 50;
        let got = forecast(
            &Compliance::default(),
            &rules(BusinessHours::default()),
            1,
            3,
            &run,
            waiting(1),
            now,
        );
        assert_eq!(got.assumptions.attempts_per_call, 2.0);
        assert_eq!(got.assumptions.remaining_attempts, 200.0);
    }
}
