#![allow(clippy::expect_used)]
use chrono::TimeZone;

use super::*;
use crate::domain::business_hours::{BusinessHours, BusinessWindow, WallTime};

fn claimed(owner: InstanceId, campaign_status: CampaignStatus) -> CurrentCall {
    CurrentCall {
        status: CallStatus::Dialing,
        attempt_count: 2,
        max_attempts: 3,
        owner: Some(owner),
        placed: false,
        attempt_started_at: None,
        campaign_status,
    }
}

fn check(status: CampaignStatus) -> DialCheck {
    DialCheck {
        campaign_status: status,
        time_zone: chrono_tz::America::New_York,
        business_hours: BusinessHours::default(),
        recipient_hours: BusinessHours::default(),
        restricted_periods: Vec::new(),
        recipient_zones: Vec::new(),
        state: None,
        do_not_call: None,
        caps: Vec::new(),
        prior: Vec::new(),
    }
}

fn monday_noon_new_york() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 17, 0, 0)
        .single()
        .expect("valid instant")
}

#[test]
fn a_sampled_tally_estimates_every_waiting_call_by_its_shares() {
    let mut tally = PendingTally::default();
    tally.by_reason.insert(HoldCode::Backoff, 1_500);
    tally.by_reason.insert(HoldCode::CampaignLimit, 400);
    tally.dialable = 100;
    tally.scale_to(2_000, 1_000_000);
    assert_eq!(tally.by_reason[&HoldCode::Backoff], 750_000);
    assert_eq!(tally.by_reason[&HoldCode::CampaignLimit], 200_000);
    assert_eq!(tally.dialable, 50_000);
    tally.scale_to(0, 5);
    assert_eq!(tally.dialable, 50_000);
}

#[test]
fn new_calls_wait_for_the_first_instant_their_rules_allow() {
    let now = monday_noon_new_york();
    let campaign = Campaign {
        id: crate::domain::ids::CampaignId::new(),
        name: "first".into(),
        description: String::new(),
        time_zone: chrono_tz::America::New_York,
        status: CampaignStatus::Pending,
        max_concurrent_calls: 1,
        retry_policy: Default::default(),
        business_hours: BusinessHours::default(),
        recipient_hours: crate::domain::compliance::default_recipient_hours(),
        restricted_periods: Vec::new(),
        recipient_limits: Vec::new(),
        created_at: now,
        updated_at: now,
        started_at: None,
        completed_at: None,
        target_count: 0,
        voice: Default::default(),
        pause_reason: None,
    };
    let policy = Compliance::default();
    let mut first = FirstDialable::new(&policy, &campaign, now);
    // Noon in New York: its numbers are dialable now, whatever the campaign's status.
    assert_eq!(first.of("+12125550100", None), None);
    // 07:00 in Honolulu: 08:00 there, by the number's zone or by the target's own.
    let honolulu_eight = Utc.with_ymd_and_hms(2026, 12, 7, 18, 0, 0).single();
    assert_eq!(first.of("+18085550100", None), honolulu_eight);
    assert_eq!(
        first.of("+12125550101", Some(chrono_tz::Pacific::Honolulu)),
        honolulu_eight
    );
    // The memo is per zones and state, not per number: New York's, Honolulu's by number,
    // Honolulu given.
    assert_eq!(first.of("+12125550102", None), None);
    assert_eq!(first.of("+18085550101", None), honolulu_eight);
    assert_eq!(first.memo.len(), 3);

    // New calls are made in dial order, the ones dialable now first and in their given
    // order, each made as it is taken, so the ids ascend in that order.
    let numbers = [
        "+18085550102",
        "+12125550103",
        "+18085550103",
        "+12125550104",
    ];
    let targets: Vec<_> = numbers
        .iter()
        .map(|n| crate::domain::call::NewTarget {
            phone_number: crate::domain::phone::PhoneNumber::parse(n).expect("number"),
            metadata: None,
            time_zone: None,
        })
        .collect();
    let queued: Vec<_> = first.queued_calls(&targets, campaign.id, 3).collect();
    let made: Vec<(&str, Option<DateTime<Utc>>)> = queued
        .iter()
        .map(|(c, at)| (c.phone_number.as_str(), *at))
        .collect();
    assert_eq!(
        made,
        vec![
            ("+12125550103", None),
            ("+12125550104", None),
            ("+18085550102", honolulu_eight),
            ("+18085550103", honolulu_eight),
        ]
    );
    let ids: Vec<_> = queued.iter().map(|(c, _)| c.id).collect();
    let mut ascending = ids.clone();
    ascending.sort_unstable();
    assert_eq!(ids, ascending, "ids ascend in dial order");
    assert!(queued.iter().all(|(c, _)| c.campaign_id == campaign.id
        && c.max_attempts == 3
        && c.status == CallStatus::Queued
        && c.scheduled_at == now));
}

#[test]
fn a_create_is_sent_only_for_the_dialers_placed_attempt_that_may_still_dial() {
    let dialer = InstanceId::new();
    let now = monday_noon_new_york();
    let mut placing = claimed(dialer, CampaignStatus::InProgress);
    placing.placed = true;
    let running = check(CampaignStatus::InProgress);
    assert_eq!(placing.recheck(2, dialer, &running, now), Begin::Dial);
    // Not begun, another attempt, another dialer, handed over: never created from here.
    let unplaced = claimed(dialer, CampaignStatus::InProgress);
    assert_eq!(unplaced.recheck(2, dialer, &running, now), Begin::Stale);
    assert_eq!(placing.recheck(1, dialer, &running, now), Begin::Stale);
    assert_eq!(
        placing.recheck(2, InstanceId::new(), &running, now),
        Begin::Stale
    );
    let handed = CurrentCall {
        owner: None,
        ..placing.clone()
    };
    assert_eq!(handed.recheck(2, dialer, &running, now), Begin::Stale);
    // A pause, a listing or the night that committed meanwhile is obeyed.
    assert!(matches!(
        placing.recheck(2, dialer, &check(CampaignStatus::Paused), now),
        Begin::Held(_)
    ));
    let listed = DialCheck {
        do_not_call: Some(DncScope::Global),
        ..running.clone()
    };
    assert_eq!(placing.recheck(2, dialer, &listed, now), Begin::Forbidden);
    let hours = DialCheck {
        recipient_hours: crate::domain::compliance::default_recipient_hours(),
        ..running.clone()
    };
    assert_eq!(placing.recheck(2, dialer, &hours, now), Begin::Dial);
    let midnight = now + chrono::TimeDelta::hours(12);
    assert!(matches!(
        placing.recheck(2, dialer, &hours, midnight),
        Begin::Held(_)
    ));
}

#[test]
fn a_claim_admits_what_both_the_campaign_and_the_deployment_leave_free() {
    let capacity = Capacity {
        campaign_limit: 10,
        campaign_dialing: 7,
        global_cap: 100,
        global_dialing: 50,
    };
    assert_eq!(capacity.admits(500), 3);
    assert_eq!(capacity.admits(2), 2);
    let full = Capacity {
        global_dialing: 99,
        ..capacity
    };
    assert_eq!(full.admits(500), 1);
    let over = Capacity {
        campaign_dialing: 12,
        ..capacity
    };
    assert_eq!(over.admits(500), 0, "a lowered limit admits nothing");
}

#[test]
fn a_duplicate_in_a_batch_finds_the_call_as_the_first_answer_left_it() {
    let claimer = InstanceId::new();
    let dialer = InstanceId::new();
    let open = check(CampaignStatus::InProgress);
    let now = monday_noon_new_york();
    let begin = DialDecision::Begin { owner: dialer };
    let mut call = claimed(claimer, CampaignStatus::InProgress);
    let first = begin.answer(&call, 2, Some(claimer), None, &open, now);
    assert_eq!(first, Begin::Dial);
    begin.leave(&mut call, first);
    assert_eq!(
        begin.answer(&call, 2, Some(claimer), None, &open, now),
        Begin::Stale,
        "placed by the first"
    );
    assert!(call.is_placing(2, dialer), "and the dialer's to create");

    // A recheck writes nothing to the call it lets through.
    let recheck = DialDecision::Recheck { dialer };
    let placing = call.clone();
    recheck.leave(&mut call, Begin::Dial);
    assert_eq!(call, placing, "a recheck changes nothing");
    assert_eq!(
        recheck.answer(&call, 2, None, None, &open, now),
        Begin::Dial
    );

    // Refused, the attempt went back unspent as the stores write it.
    let held = Begin::Held(HoldReason {
        code: HoldCode::CampaignLimit,
        until: None,
    });
    for (refusal, campaign, status) in [
        (
            Begin::Forbidden,
            CampaignStatus::InProgress,
            CallStatus::Canceled,
        ),
        (held, CampaignStatus::InProgress, CallStatus::Queued),
        (held, CampaignStatus::Completed, CallStatus::Canceled),
    ] {
        let mut call = claimed(claimer, campaign);
        begin.leave(&mut call, refusal);
        let expected = CurrentCall {
            status,
            attempt_count: 1,
            owner: None,
            placed: false,
            ..claimed(claimer, campaign)
        };
        assert_eq!(call, expected, "{refusal:?} in a {campaign:?} campaign");
        assert_eq!(
            begin.answer(&call, 2, Some(claimer), None, &open, now),
            Begin::Stale,
            "{refusal:?} handed it back"
        );
    }
}

#[test]
fn only_the_claimers_unplaced_attempt_may_begin() {
    let claimer = InstanceId::new();
    let call = claimed(claimer, CampaignStatus::InProgress);
    let open = check(CampaignStatus::InProgress);
    let now = monday_noon_new_york();
    assert_eq!(call.begin(2, claimer, None, &open, now), Begin::Dial);
    assert_eq!(
        call.begin(1, claimer, None, &open, now),
        Begin::Stale,
        "old attempt"
    );
    assert_eq!(
        call.begin(3, claimer, None, &open, now),
        Begin::Stale,
        "future attempt"
    );
    assert_eq!(
        call.begin(2, InstanceId::new(), None, &open, now),
        Begin::Stale,
        "someone else's claim"
    );
    let placed = CurrentCall {
        placed: true,
        ..call.clone()
    };
    assert_eq!(placed.begin(2, claimer, None, &open, now), Begin::Stale);
    // The claim names when its attempt began: an earlier attempt with the same number,
    // handed back and claimed again, is stale.
    let began = now - chrono::Duration::seconds(30);
    let current = CurrentCall {
        attempt_started_at: Some(began),
        ..call.clone()
    };
    assert_eq!(
        current.begin(2, claimer, Some(began), &open, now),
        Begin::Dial
    );
    assert_eq!(
        current.begin(
            2,
            claimer,
            Some(began - chrono::Duration::seconds(5)),
            &open,
            now
        ),
        Begin::Stale,
        "an earlier claim of the same attempt number"
    );
    assert_eq!(
        current.release(
            2,
            Some(claimer),
            Some(began - chrono::Duration::seconds(5)),
            Unspent::Unplaced
        ),
        None,
        "nor may it hand back the current one"
    );
    let recorded = CurrentCall {
        status: CallStatus::Retrying,
        ..call
    };
    assert_eq!(recorded.begin(2, claimer, None, &open, now), Begin::Stale);
}

#[test]
fn a_paused_or_closed_campaign_holds_the_attempt_at_the_moment_of_dialing() {
    let claimer = InstanceId::new();
    let call = claimed(claimer, CampaignStatus::Paused);
    let now = monday_noon_new_york();
    let paused = check(CampaignStatus::Paused);
    assert_eq!(
        call.begin(2, claimer, None, &paused, now),
        Begin::Held(HoldReason {
            code: HoldCode::CampaignNotRunning,
            until: None,
        })
    );
    // Monday 09:00-11:00 only; it is noon.
    let hours = BusinessHours::new(vec![BusinessWindow::new(
        1,
        WallTime::parse_start("09:00").expect("start"),
        WallTime::parse_end("11:00").expect("end"),
    )
    .expect("window")]);
    let closed = DialCheck {
        business_hours: hours,
        ..check(CampaignStatus::InProgress)
    };
    // Held until next Monday 09:00 in New York, when the window next opens.
    let next_monday_nine = Utc
        .with_ymd_and_hms(2026, 12, 14, 14, 0, 0)
        .single()
        .expect("valid instant");
    assert_eq!(
        call.begin(2, claimer, None, &closed, now),
        Begin::Held(HoldReason {
            code: HoldCode::OutsideBusinessHours,
            until: Some(next_monday_nine),
        })
    );
}

#[test]
fn a_listed_number_is_never_dialed_and_its_call_ends_canceled() {
    let claimer = InstanceId::new();
    let call = claimed(claimer, CampaignStatus::InProgress);
    let listed = DialCheck {
        do_not_call: Some(DncScope::Global),
        ..check(CampaignStatus::InProgress)
    };
    let now = monday_noon_new_york();
    assert_eq!(call.begin(2, claimer, None, &listed, now), Begin::Forbidden);
    let end = call.forbid();
    assert_eq!(end.call_status, CallStatus::Canceled);
    assert_eq!(end.delta.dialing, -1);
    assert_eq!(end.delta.canceled, 1);
    assert_eq!(end.delta.attempts_total, -1, "the attempt was never placed");
    let codes: Vec<_> = listed.explain(now).into_iter().map(|h| h.code).collect();
    assert_eq!(codes, vec![HoldCode::DoNotCall]);
}

#[test]
fn a_campaigns_waiting_calls_are_counted_under_the_first_rule_holding_each() {
    let now = monday_noon_new_york();
    let rules = CampaignRules {
        status: CampaignStatus::InProgress,
        time_zone: chrono_tz::America::New_York,
        business_hours: BusinessHours::default(),
        recipient_hours: crate::domain::compliance::default_recipient_hours(),
        restricted_periods: Vec::new(),
        recipient_limits: Vec::new(),
    };
    let call = |number: &str, status, next_attempt_at, facts| PendingCall {
        phone_number: number.to_owned(),
        status,
        next_attempt_at,
        facts,
    };
    let free = LimitsReached {
        campaign: false,
        global: false,
    };
    let policy = Compliance::default();
    let mut tally = PendingTally::default();
    let later = now + chrono::TimeDelta::minutes(5);
    // Noon in New York is 07:00 in Honolulu: held until 08:00 there.
    let honolulu = NumberFacts {
        time_zone: Some(chrono_tz::Pacific::Honolulu),
        ..NumberFacts::default()
    };
    tally.add(
        &policy,
        &rules,
        call("+15555550001", CallStatus::Queued, None, honolulu),
        free,
        now,
    );
    tally.add(
        &policy,
        &rules,
        call(
            "+15555550002",
            CallStatus::Retrying,
            Some(later),
            NumberFacts::default(),
        ),
        free,
        now,
    );
    let listed = NumberFacts {
        do_not_call: Some(DncScope::Global),
        ..NumberFacts::default()
    };
    tally.add(
        &policy,
        &rules,
        call("+15555550003", CallStatus::Queued, None, listed),
        free,
        now,
    );
    tally.add(
        &policy,
        &rules,
        call(
            "+15555550004",
            CallStatus::Queued,
            None,
            NumberFacts::default(),
        ),
        free,
        now,
    );
    let full = LimitsReached {
        campaign: true,
        global: false,
    };
    tally.add(
        &policy,
        &rules,
        call(
            "+15555550005",
            CallStatus::Queued,
            None,
            NumberFacts::default(),
        ),
        full,
        now,
    );
    let counts: Vec<(HoldCode, u64)> = tally.by_reason.clone().into_iter().collect();
    assert_eq!(
        counts,
        vec![
            (HoldCode::OutsideRecipientHours, 1),
            (HoldCode::CampaignLimit, 1),
            (HoldCode::Backoff, 1),
            (HoldCode::DoNotCall, 1),
        ]
    );
    assert_eq!(tally.dialable, 1);
    assert_eq!(tally.next_dial_at, Some(now));
}

#[test]
fn a_released_attempt_is_not_spent_and_a_completed_campaign_cancels_its_call() {
    let claimer = InstanceId::new();
    let call = claimed(claimer, CampaignStatus::Paused);
    let release = call
        .release(2, Some(claimer), None, Unspent::Unplaced)
        .expect("the claimer's unplaced attempt is released");
    assert_eq!(release.call_status, CallStatus::Queued);
    assert_eq!(release.delta.dialing, -1);
    assert_eq!(release.delta.queued, 1);
    assert_eq!(release.delta.attempts_total, -1);
    assert_eq!(release.delta.retries_attempted, -1);
    assert_eq!(
        call.release(2, Some(InstanceId::new()), None, Unspent::Unplaced),
        None
    );
    let completed = claimed(claimer, CampaignStatus::Completed);
    let release = completed.release(2, Some(claimer), None, Unspent::Unplaced);
    assert_eq!(
        release.map(|r| r.call_status),
        Some(CallStatus::Canceled),
        "a completed campaign cancels what it never placed"
    );
}
