//! The `Store` port: exclusive claims, reports counted once, exact counters under concurrent
//! writers, names, completion, paging, slots held by attempts, live numbers, the dialer's
//! begin and hand-back, and lost attempts.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use outbound::domain::access::{issue, AuditEntry, KeyHash, Role};
use outbound::domain::admission::HoldReason;
use outbound::domain::business_hours::BusinessHours;
use outbound::domain::call::{AttemptOutcome, CallStatus, NextStep};
use outbound::domain::campaign::{
    CampaignChanges, PauseReason, RetryPolicy, StatusAction, Transition,
};
use outbound::domain::compliance::{default_recipient_hours, HoldCode};
use outbound::domain::ids::{CampaignId, InstanceId, KeyId};
use outbound::domain::phone::PhoneNumber;
use outbound::ports::{
    AttemptKey, AttemptReport, Begin, CallFilter, ClaimedCall, DncScope, HeldAttempt, NewCampaign,
    NewTarget, Store, StoreError, TimelineEntry, Unspent,
};

use crate::fixtures::{
    campaign_with_finished_attempts, start_campaign, started_campaign, StoreAdapter,
};
use crate::helpers::Unaudited;

async fn claims_are_exclusive(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let campaign = started_campaign(&*store, 500).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claimed = store
                    .claim_calls(campaign, 17, InstanceId::new(), 50_000, Utc::now())
                    .await
                    .expect("claim");
                if claimed.is_empty() {
                    return mine;
                }
                mine.extend(claimed.into_iter().map(|c| c.call_id));
            }
        }));
    }
    let mut all = HashSet::new();
    let mut total = 0;
    for task in tasks {
        let mine = task.await.expect("task");
        total += mine.len();
        all.extend(mine);
    }
    assert_eq!(total, 500, "{name}: every call claimed");
    assert_eq!(all.len(), 500, "{name}: no call claimed twice");
    let stats = store
        .campaign_stats(campaign)
        .await
        .expect("stats")
        .expect("exists");
    assert_eq!(stats.dialing_calls, 500);
    assert!(stats.is_consistent());
}

async fn counts_a_report_once(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let campaign = started_campaign(&*store, 3).await;
    let claimed = store
        .claim_calls(campaign, 3, InstanceId::new(), 50_000, Utc::now())
        .await
        .expect("claim");
    let now = Utc::now();
    let reports: Vec<AttemptReport> = claimed
        .iter()
        .map(|call| AttemptReport {
            call_id: call.call_id,
            campaign_id: campaign,
            attempt: call.attempt,
            outcome: AttemptOutcome::Failed {
                error: "busy".into(),
                retryable: true,
            },
            ended_at: now,
            retry_at: now,
            expected_owner: None,
            carrier: None,
            attempt_started_at: None,
        })
        .collect();
    let first = store.record_attempts(&reports, now).await.expect("record");
    assert!(
        first
            .iter()
            .all(|a| matches!(a.step, Some(NextStep::RetryAt(_)))),
        "{name}"
    );
    let before = store
        .campaign_stats(campaign)
        .await
        .expect("stats")
        .expect("exists");
    let again = store
        .record_attempts(&reports, now)
        .await
        .expect("record again");
    assert!(
        again.iter().all(|a| a.step.is_none()),
        "{name}: duplicates are no-ops"
    );
    let after = store
        .campaign_stats(campaign)
        .await
        .expect("stats")
        .expect("exists");
    assert_eq!(before.retrying_calls, 3);
    assert_eq!(
        (
            before.retrying_calls,
            before.finished_attempts,
            before.attempts_total
        ),
        (
            after.retrying_calls,
            after.finished_attempts,
            after.attempts_total
        ),
        "{name}: stats unchanged by a redelivery"
    );
    // A paused campaign holds its due retries; starting it again releases them.
    store
        .transition_campaign(campaign, StatusAction::Pause, Utc::now())
        .await
        .expect("pause");
    let held = store
        .promote_due_retries(Utc::now(), 100)
        .await
        .expect("promote");
    assert!(held.is_empty(), "{name}: retries held while paused");
    assert_eq!(store.next_retry_due().await.expect("next due"), None);
    store
        .transition_campaign(campaign, StatusAction::Start, Utc::now())
        .await
        .expect("start");
    // Due retries come back; the second attempt exhausts the budget of 2.
    let promoted = store
        .promote_due_retries(Utc::now(), 100)
        .await
        .expect("promote");
    assert_eq!(promoted, vec![campaign]);
    let second = store
        .claim_calls(campaign, 10, InstanceId::new(), 50_000, Utc::now())
        .await
        .expect("claim");
    assert!(second.iter().all(|c| c.attempt == 2));
    let reports: Vec<AttemptReport> = second
        .iter()
        .map(|call| AttemptReport {
            call_id: call.call_id,
            campaign_id: campaign,
            attempt: 2,
            outcome: AttemptOutcome::Failed {
                error: "busy".into(),
                retryable: true,
            },
            ended_at: now,
            retry_at: now,
            expected_owner: None,
            carrier: None,
            attempt_started_at: None,
        })
        .collect();
    let last = store
        .record_attempts(&reports, Utc::now())
        .await
        .expect("record");
    assert!(
        last.iter().all(|a| a.step == Some(NextStep::Fail)),
        "{name}"
    );
    let done = store
        .get_campaign(campaign)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        done.status.as_str(),
        "completed",
        "{name}: completes by itself"
    );
}

async fn finds_attempts_of_dead_owners_only(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let campaign = started_campaign(&*store, 4).await;
    let alive = InstanceId::new();
    // Never heartbeats: silent since forever, on the store's clock.
    let dead = InstanceId::new();
    store.heartbeat(alive).await.expect("heartbeat");
    store
        .claim_calls(campaign, 2, alive, 50_000, Utc::now())
        .await
        .expect("claim");
    let of_dead = store
        .claim_calls(campaign, 2, dead, 50_000, Utc::now())
        .await
        .expect("claim");
    let orphans = store
        .orphaned_attempts(Duration::from_secs(10), Duration::ZERO, Duration::ZERO, 100)
        .await
        .expect("orphans");
    assert_eq!(orphans.len(), 2, "{name}");
    assert!(orphans
        .iter()
        .all(|o| o.attempt == 1 && o.campaign_id == campaign && !o.placed));
    // A dialer that never heartbeats places one: its call may be live at the carrier for as
    // long as calls last, so it is not orphaned before that.
    let begun = begin(&*store, campaign, &of_dead[0], dead).await;
    assert_eq!(begun, vec![Begin::Dial]);
    let orphans = store
        .orphaned_attempts(
            Duration::from_secs(10),
            Duration::from_secs(3600),
            Duration::from_secs(3600),
            100,
        )
        .await
        .expect("orphans");
    assert_eq!(
        orphans.len(),
        1,
        "{name}: the placed call may still be live"
    );
    assert!(!orphans[0].placed);
    // Placed strictly before now: not in the same millisecond.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let orphans = store
        .orphaned_attempts(Duration::from_secs(10), Duration::ZERO, Duration::ZERO, 100)
        .await
        .expect("orphans");
    assert_eq!(orphans.iter().filter(|o| o.placed).count(), 1, "{name}");
    // The live instance falls silent (on the store's clock) once its heartbeat is older
    // than asked.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let orphans = store
        .orphaned_attempts(
            Duration::from_millis(10),
            Duration::ZERO,
            Duration::ZERO,
            100,
        )
        .await
        .expect("orphans");
    assert_eq!(orphans.len(), 4, "{name}");
    assert_eq!(
        store
            .prune_history(Duration::from_millis(10))
            .await
            .expect("prune"),
        0,
        "{name}: an instance holding calls is kept"
    );
}

/// A create whose answer a dead dialer never recorded is asked about long before a call the
/// carrier took (whose record is kept) could have ended.
async fn a_create_never_answered_is_asked_about_sooner(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let campaign = started_campaign(&*store, 2).await;
    let dead = InstanceId::new();
    let claimed = store
        .claim_calls(campaign, 2, dead, 50_000, Utc::now())
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2, "{name}");
    // A dialer that never heartbeats begins both.
    let dialer = InstanceId::new();
    let begun = store
        .begin_attempts(
            &[
                held(campaign, &claimed[0], dead),
                held(campaign, &claimed[1], dead),
            ],
            dialer,
            Utc::now(),
        )
        .await
        .expect("begin");
    assert_eq!(begun, vec![Begin::Dial, Begin::Dial], "{name}");
    let carrier = outbound::domain::carrier::CarrierCall {
        sid: Some("CA0001".into()),
        ..Default::default()
    };
    let handed = store
        .hand_to_carrier(
            &[(held(campaign, &claimed[0], dialer), carrier.clone())],
            Utc::now(),
        )
        .await
        .expect("hand over");
    assert_eq!(handed, vec![true], "{name}");
    let again = store
        .hand_to_carrier(
            &[(held(campaign, &claimed[0], dialer), carrier)],
            Utc::now(),
        )
        .await
        .expect("hand over");
    assert_eq!(again, vec![false], "{name}: the dialer no longer holds it");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let hour = Duration::from_secs(3600);
    let orphans = store
        .orphaned_attempts(Duration::from_secs(10), hour, Duration::ZERO, 100)
        .await
        .expect("orphans");
    assert_eq!(orphans.len(), 1, "{name}: {orphans:?}");
    assert_eq!(orphans[0].call_id, claimed[1].call_id, "{name}");
    assert!(orphans[0].placed && orphans[0].sid.is_none(), "{name}");
    let orphans = store
        .orphaned_attempts(Duration::from_secs(10), Duration::ZERO, Duration::ZERO, 100)
        .await
        .expect("orphans");
    let held_by_carrier = orphans
        .iter()
        .find(|orphan| orphan.call_id == claimed[0].call_id)
        .expect("the carrier's call, once it could have ended");
    assert_eq!(held_by_carrier.sid.as_deref(), Some("CA0001"), "{name}");
    assert_eq!(held_by_carrier.owner, None, "{name}");
    let (_, attempts) = store
        .get_call(claimed[0].call_id)
        .await
        .expect("read")
        .expect("call");
    assert_eq!(
        attempts[0].carrier.as_ref().and_then(|c| c.sid.as_deref()),
        Some("CA0001"),
        "{name}"
    );
}

/// Claims from several stores over one database, as scheduler replicas in separate processes
/// would make them: separate SQLite connections on one file, separate PostgreSQL pools.
async fn claims_are_exclusive_across_replicas(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let replicas = adapter.replicas(&dir, 3).await;
    let campaign = started_campaign(&*replicas[0], 600).await;
    let mut tasks = Vec::new();
    for store in &replicas {
        for _ in 0..3 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let owner = InstanceId::new();
                let mut mine = Vec::new();
                loop {
                    let claimed = store
                        .claim_calls(campaign, 13, owner, 50_000, Utc::now())
                        .await
                        .expect("claim");
                    if claimed.is_empty() {
                        return mine;
                    }
                    assert!(claimed.windows(2).all(|w| w[0].call_id < w[1].call_id));
                    mine.extend(claimed.into_iter().map(|c| c.call_id));
                }
            }));
        }
    }
    let mut all = HashSet::new();
    let mut total = 0;
    for task in tasks {
        let mine = task.await.expect("task");
        total += mine.len();
        all.extend(mine);
    }
    assert_eq!(total, 600, "{name}: every call claimed");
    assert_eq!(all.len(), 600, "{name}: no call claimed twice");
    for store in &replicas {
        let stats = store
            .campaign_stats(campaign)
            .await
            .expect("stats")
            .expect("exists");
        assert_eq!(
            (
                stats.queued_calls,
                stats.dialing_calls,
                stats.attempts_total
            ),
            (0, 600, 600),
            "{name}: counters exact under concurrent writers"
        );
        assert!(stats.is_consistent(), "{name}");
    }
}

async fn names_are_unique_case_insensitively(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let new = |campaign_name: &str| NewCampaign {
        id: CampaignId::new(),
        name: campaign_name.into(),
        description: String::new(),
        time_zone: chrono_tz::UTC,
        max_concurrent_calls: 10,
        retry_policy: RetryPolicy::default(),
        business_hours: BusinessHours::default(),
        recipient_hours: BusinessHours::default(),
        restricted_periods: Vec::new(),
        recipient_limits: Vec::new(),
        voice: Default::default(),
        targets: Vec::new(),
    };
    let alpha = store
        .create_campaign(new("Alpha"), Utc::now())
        .await
        .expect("create");
    let taken = store.create_campaign(new("ALPHA"), Utc::now()).await;
    assert!(
        matches!(taken, Err(StoreError::DuplicateName)),
        "{name}: {taken:?}"
    );
    let beta = store
        .create_campaign(new("Beta"), Utc::now())
        .await
        .expect("create");
    let rename = |to: &str| CampaignChanges {
        name: Some(to.into()),
        ..CampaignChanges::default()
    };
    let clash = store
        .update_campaign(beta.id, rename("alpha"), Utc::now())
        .await;
    assert!(
        matches!(clash, Err(StoreError::DuplicateName)),
        "{name}: {clash:?}"
    );
    let recased = store
        .update_campaign(beta.id, rename("BETA"), Utc::now())
        .await
        .expect("a campaign may change the case of its own name");
    assert_eq!(recased.name, "BETA");
    store
        .update_campaign(alpha.id, rename("Gamma"), Utc::now())
        .await
        .expect("rename");
    store
        .create_campaign(new("alpha"), Utc::now())
        .await
        .expect("a renamed campaign frees its old name");
    let gone = store
        .update_campaign(CampaignId::new(), rename("x"), Utc::now())
        .await;
    assert!(matches!(gone, Err(StoreError::NotFound)), "{name}");
}

async fn complete_cancels_waiting_calls_and_keeps_counts(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let campaign = started_campaign(&*store, 6).await;
    let claimed = store
        .claim_calls(campaign, 2, InstanceId::new(), 50_000, Utc::now())
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2);
    let now = Utc::now();
    let report = |call: &outbound::ports::ClaimedCall| AttemptReport {
        call_id: call.call_id,
        campaign_id: campaign,
        attempt: call.attempt,
        outcome: AttemptOutcome::Failed {
            error: "busy".into(),
            retryable: true,
        },
        ended_at: now,
        retry_at: now + chrono::Duration::hours(1),
        expected_owner: None,
        carrier: None,
        attempt_started_at: None,
    };
    store
        .record_attempts(&[report(&claimed[0])], now)
        .await
        .expect("record");
    let transition = store
        .transition_campaign(campaign, StatusAction::Complete, Utc::now())
        .await
        .expect("complete");
    assert_eq!(
        transition,
        Transition::To(outbound::domain::campaign::CampaignStatus::Completed)
    );
    let stats = store
        .campaign_stats(campaign)
        .await
        .expect("stats")
        .expect("exists");
    assert_eq!(
        (
            stats.queued_calls,
            stats.retrying_calls,
            stats.dialing_calls,
            stats.canceled_calls
        ),
        (0, 0, 1, 5),
        "{name}: queued and retrying calls canceled, the dialing one left alone"
    );
    assert!(stats.is_consistent(), "{name}");
    assert_eq!(store.next_retry_due().await.expect("next due"), None);
    let late = store
        .record_attempts(&[report(&claimed[1])], Utc::now())
        .await
        .expect("record");
    assert_eq!(
        late[0].step,
        Some(NextStep::Cancel),
        "{name}: no retry once completed"
    );
    let stats = store
        .campaign_stats(campaign)
        .await
        .expect("stats")
        .expect("exists");
    assert_eq!(
        (stats.dialing_calls, stats.canceled_calls),
        (0, 6),
        "{name}"
    );
    assert!(stats.is_consistent(), "{name}");
    let more = store.enqueue_calls(campaign, Vec::new(), Utc::now()).await;
    assert!(
        matches!(more, Err(StoreError::InvalidState(_))),
        "{name}: {more:?}"
    );
    let none = store
        .claim_calls(campaign, 10, InstanceId::new(), 50_000, Utc::now())
        .await
        .expect("claim");
    assert!(none.is_empty(), "{name}");
    let again = store
        .transition_campaign(campaign, StatusAction::Complete, Utc::now())
        .await;
    assert!(matches!(again, Err(StoreError::InvalidState(_))), "{name}");
}

async fn enqueues_registered_numbers_and_pages_calls(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let campaign = started_campaign(&*store, 5).await;
    let number = |text: &str| NewTarget {
        phone_number: PhoneNumber::parse(text).expect("number"),
        metadata: Some(
            outbound::domain::metadata::Metadata::from_value(&serde_json::json!({ "customer": 7 }))
                .expect("metadata"),
        ),
        time_zone: None,
    };
    let refused = store
        .enqueue_calls(
            campaign,
            vec![number("+15550000001"), number("+15559999999")],
            Utc::now(),
        )
        .await;
    match refused {
        Err(StoreError::NotRegistered(numbers)) => {
            assert_eq!(numbers, vec!["+15559999999".to_owned()], "{name}")
        }
        other => panic!("{name}: expected NotRegistered, got {other:?}"),
    }
    let queued = store
        .enqueue_calls(campaign, vec![number("+15550000001")], Utc::now())
        .await
        .expect("enqueue");
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].status, CallStatus::Queued);
    let stats = store
        .campaign_stats(campaign)
        .await
        .expect("stats")
        .expect("exists");
    assert_eq!(
        (stats.total_targets, stats.total_calls, stats.queued_calls),
        (5, 6, 6),
        "{name}"
    );
    // Pages in id order, with and without a status filter.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_calls(campaign, &CallFilter::default(), after, 4)
            .await
            .expect("page");
        if page.is_empty() {
            break;
        }
        after = page.last().map(|call| call.id);
        paged.extend(page.into_iter().map(|call| call.id));
    }
    assert_eq!(paged.len(), 6, "{name}");
    assert!(paged.windows(2).all(|w| w[0] < w[1]), "{name}: id order");
    let claimed = store
        .claim_calls(campaign, 2, InstanceId::new(), 50_000, Utc::now())
        .await
        .expect("claim");
    assert_eq!(
        claimed.iter().map(|c| c.call_id).collect::<Vec<_>>(),
        paged[..2].to_vec(),
        "{name}: oldest calls first"
    );
    let dialing = store
        .list_calls(
            campaign,
            &CallFilter {
                status: Some(CallStatus::Dialing),
                ..CallFilter::default()
            },
            None,
            10,
        )
        .await
        .expect("list");
    assert_eq!(dialing.len(), 2, "{name}");
    // A number's calls: the first and its re-dial, in id order, and those in one status.
    let of_number = |status| CallFilter {
        status,
        phone_number: Some(PhoneNumber::parse("+15550000001").expect("number")),
    };
    let redialed = store
        .list_calls(campaign, &of_number(None), None, 10)
        .await
        .expect("by number");
    assert_eq!(redialed.len(), 2, "{name}");
    assert!(redialed[0].id < redialed[1].id, "{name}");
    assert!(
        redialed
            .iter()
            .all(|c| c.phone_number.as_str() == "+15550000001"),
        "{name}"
    );
    for status in [CallStatus::Dialing, CallStatus::Queued] {
        let expected: Vec<_> = redialed
            .iter()
            .filter(|c| c.status == status)
            .map(|c| c.id)
            .collect();
        let listed: Vec<_> = store
            .list_calls(campaign, &of_number(Some(status)), None, 10)
            .await
            .expect("by number and status")
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(listed, expected, "{name}: {status:?}");
    }
    let after_first = store
        .list_calls(campaign, &of_number(None), Some(redialed[0].id), 10)
        .await
        .expect("by number, paged");
    assert_eq!(after_first.len(), 1, "{name}");
    let ended = Utc::now();
    store
        .record_attempts(
            &[AttemptReport {
                call_id: claimed[0].call_id,
                campaign_id: campaign,
                attempt: 1,
                outcome: AttemptOutcome::Answered,
                ended_at: ended,
                retry_at: ended,
                expected_owner: None,
                carrier: None,
                attempt_started_at: None,
            }],
            ended,
        )
        .await
        .expect("record");
    let (call, attempts) = store
        .get_call(claimed[0].call_id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(call.status, CallStatus::Completed, "{name}");
    assert_eq!(attempts.len(), 1, "{name}");
    assert_eq!(attempts[0].attempt, 1);
    assert!(attempts[0].ended_at.is_some() && attempts[0].duration_ms.is_some());
    let (requeued, _) = store
        .get_call(queued[0].id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        requeued.metadata.map(|m| m.to_value()),
        Some(serde_json::json!({ "customer": 7 }))
    );
    assert!(store
        .get_call(outbound::domain::ids::CallId::new())
        .await
        .expect("get")
        .is_none());
    assert!(
        store
            .runnable_campaigns()
            .await
            .expect("runnable")
            .iter()
            .any(|r| r.id == campaign && r.queued_calls == 4),
        "{name}"
    );
}

/// Claims, reports (with redeliveries), retries, triggered calls and the completion sweep all at
/// once on one campaign: no writer fails (no deadlock), the counters match the calls, and the
/// campaign completes only when nothing is left to do.
async fn counters_match_calls_under_concurrent_writers(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let campaign = started_campaign(&*store, 120).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..3u32 {
        let store = store.clone();
        workers.push(tokio::spawn(async move {
            let owner = InstanceId::new();
            let mut round = 0u32;
            loop {
                assert!(tokio::time::Instant::now() < deadline, "workers stalled");
                let claimed = store
                    .claim_calls(campaign, 7, owner, 50_000, Utc::now())
                    .await
                    .expect("claim");
                if claimed.is_empty() {
                    let current = store.get_campaign(campaign).await.expect("get");
                    if current.is_some_and(|c| c.status.as_str() == "completed") {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                let now = Utc::now();
                let reports: Vec<AttemptReport> = claimed
                    .iter()
                    .enumerate()
                    .map(|(i, call)| AttemptReport {
                        call_id: call.call_id,
                        campaign_id: campaign,
                        attempt: call.attempt,
                        outcome: match (i as u32 + worker + round) % 3 {
                            0 => AttemptOutcome::Answered,
                            1 => AttemptOutcome::Failed {
                                error: "busy".into(),
                                retryable: true,
                            },
                            _ => AttemptOutcome::Failed {
                                error: "invalid".into(),
                                retryable: round % 2 == 0,
                            },
                        },
                        ended_at: now,
                        retry_at: now,
                        expected_owner: None,
                        carrier: None,
                        attempt_started_at: None,
                    })
                    .collect();
                store.record_attempts(&reports, now).await.expect("record");
                if round % 4 == 0 {
                    let again = store
                        .record_attempts(&reports, Utc::now())
                        .await
                        .expect("redelivery");
                    assert!(again.iter().all(|a| a.step.is_none()));
                }
                round += 1;
            }
        }));
    }
    let promoter = {
        let (store, done) = (store.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                store
                    .promote_due_retries(Utc::now(), 25)
                    .await
                    .expect("promote");
                store
                    .complete_finished_campaigns(Utc::now())
                    .await
                    .expect("sweep");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let triggered = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut queued = 0u64;
            for i in 0..10 {
                let targets = (0..2)
                    .map(|j| NewTarget {
                        phone_number: PhoneNumber::parse(&format!("+1555{:07}", i * 2 + j))
                            .expect("number"),
                        metadata: None,
                        time_zone: None,
                    })
                    .collect();
                match store.enqueue_calls(campaign, targets, Utc::now()).await {
                    Ok(calls) => queued += calls.len() as u64,
                    Err(outbound::ports::StoreError::InvalidState(_)) => break,
                    Err(err) => panic!("enqueue: {err}"),
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            queued
        })
    };
    let queued = triggered.await.expect("enqueuer");
    for worker in workers {
        worker.await.expect("worker");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    promoter.await.expect("promoter");

    let stats = store
        .campaign_stats(campaign)
        .await
        .expect("stats")
        .expect("exists");
    assert!(stats.is_consistent(), "{name}: {stats:?}");
    assert_eq!(stats.total_calls, 120 + queued, "{name}");
    assert!(!stats.has_open_calls(), "{name}: completed with work left");
    let mut by_status: HashMap<CallStatus, u64> = HashMap::new();
    let mut after = None;
    loop {
        let page = store
            .list_calls(campaign, &CallFilter::default(), after, 100)
            .await
            .expect("page");
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for call in page {
            *by_status.entry(call.status).or_default() += 1;
        }
    }
    let count = |status| by_status.get(&status).copied().unwrap_or(0);
    assert_eq!(
        (
            count(CallStatus::Completed),
            count(CallStatus::Failed),
            count(CallStatus::Canceled)
        ),
        (
            stats.completed_calls,
            stats.failed_calls,
            stats.canceled_calls
        ),
        "{name}: counters match the calls"
    );
    assert_eq!(stats.finished_attempts, stats.attempts_total, "{name}");
}

/// Claims up to `max` calls of `campaign` for a new claimer, under a cap no test reaches.
async fn claim(store: &dyn Store, campaign: CampaignId, max: usize) -> Vec<ClaimedCall> {
    store
        .claim_calls(campaign, max, InstanceId::new(), 50_000, Utc::now())
        .await
        .expect("claim")
}

/// Records that `call`'s attempt was answered.
pub(super) async fn answer(store: &dyn Store, campaign: CampaignId, call: &ClaimedCall) {
    let answered = AttemptReport {
        call_id: call.call_id,
        campaign_id: campaign,
        attempt: call.attempt,
        outcome: AttemptOutcome::Answered,
        ended_at: Utc::now(),
        retry_at: Utc::now(),
        expected_owner: None,
        carrier: None,
        attempt_started_at: None,
    };
    store
        .record_attempts(&[answered], Utc::now())
        .await
        .expect("record");
}

/// An attempt offered twice in one batch (a message delivered again) is begun once: the second
/// finds it placed by the dialer, and the number's log counts one attempt.
async fn an_attempt_twice_in_a_batch_is_begun_once(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let campaign = started_campaign(&*store, 2).await;
    let claimer = InstanceId::new();
    let claimed = store
        .claim_calls(campaign, 2, claimer, 50_000, Utc::now())
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2, "{name}");
    let (first, second) = (&claimed[0], &claimed[1]);
    let batch = [
        held(campaign, first, claimer),
        held(campaign, second, claimer),
        held(campaign, first, claimer),
    ];
    let begun = store
        .begin_attempts(&batch, InstanceId::new(), Utc::now())
        .await
        .expect("begin");
    assert_eq!(
        begun,
        vec![Begin::Dial, Begin::Dial, Begin::Stale],
        "{name}"
    );
    for call in [first, second] {
        let facts = store
            .number_facts(campaign, &call.phone_number, Utc::now())
            .await
            .expect("facts");
        assert_eq!(facts.prior.len(), 1, "{name}: one entry per number");
    }
    let stats = store
        .campaign_stats(campaign)
        .await
        .expect("stats")
        .expect("exists");
    assert_eq!(stats.dialing_calls, 2, "{name}");
    assert!(stats.is_consistent(), "{name}");
}

/// Has a new dialer begin `call`'s attempt, which `claimer` claimed.
async fn begin(
    store: &dyn Store,
    campaign: CampaignId,
    call: &ClaimedCall,
    claimer: InstanceId,
) -> Vec<Begin> {
    store
        .begin_attempts(
            &[held(campaign, call, claimer)],
            InstanceId::new(),
            Utc::now(),
        )
        .await
        .expect("begin")
}

pub(super) fn held(campaign: CampaignId, call: &ClaimedCall, holder: InstanceId) -> HeldAttempt {
    HeldAttempt {
        key: AttemptKey {
            campaign_id: campaign,
            call_id: call.call_id,
            attempt: call.attempt,
        },
        holder: Some(holder),
        began_at: Some(call.started_at),
    }
}

/// A campaign's message changed while its calls are up: each begun attempt keeps the message it
/// began with, a claimed one not yet begun will begin with the new one, and an attempt handed
/// back unspent (made again under the same number) forgets what it kept.
async fn a_changed_message_is_kept_for_begun_attempts_only(adapter: StoreAdapter) {
    use outbound::domain::carrier::Audio;
    use outbound::domain::message::Message;
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let campaign = started_campaign(&*store, 2).await;
    let message = |say: &str| {
        let message =
            Message::parse(&serde_json::json!({"identification": "This is Acme.", "say": say}))
                .expect("a message");
        CampaignChanges {
            audio: Some(Some(Audio::Message(Box::new(message.clone())))),
            ..CampaignChanges::default()
        }
    };
    let first = message("First words.");
    store
        .update_campaign_audited(campaign, first.clone(), Utc::now(), None)
        .await
        .expect("update");
    let claimer = InstanceId::new();
    store.heartbeat(claimer).await.expect("heartbeat");
    let claimed = store
        .claim_calls(campaign, 2, claimer, 50_000, Utc::now())
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2, "{name}");
    let dialer = InstanceId::new();
    store.heartbeat(dialer).await.expect("heartbeat");
    let begun = store
        .begin_attempts(&[held(campaign, &claimed[0], claimer)], dialer, Utc::now())
        .await
        .expect("begin");
    assert_eq!(begun, vec![Begin::Dial], "{name}");
    let key = |call: &ClaimedCall| AttemptKey {
        campaign_id: campaign,
        call_id: call.call_id,
        attempt: call.attempt,
    };
    assert_eq!(
        store.attempt_message(key(&claimed[0])).await.expect("read"),
        None,
        "{name}: unchanged, nothing kept"
    );

    store
        .update_campaign_audited(campaign, message("Second words."), Utc::now(), None)
        .await
        .expect("update");
    let kept = store.attempt_message(key(&claimed[0])).await.expect("read");
    let Some(Some(Audio::Message(began_with))) = first.audio else {
        panic!("the first change is a message");
    };
    assert_eq!(
        kept.as_ref(),
        Some(&*began_with),
        "{name}: the begun attempt keeps its words"
    );
    assert_eq!(
        store.attempt_message(key(&claimed[1])).await.expect("read"),
        None,
        "{name}: not begun yet, it will begin with the new words"
    );

    let released = store
        .release_attempts(
            &[held(campaign, &claimed[0], dialer)],
            Unspent::NeverCreated,
            Utc::now(),
        )
        .await
        .expect("release");
    assert_eq!(released, vec![true], "{name}");
    assert_eq!(
        store.attempt_message(key(&claimed[0])).await.expect("read"),
        None,
        "{name}: handed back, the attempt made again speaks the campaign's message"
    );
}

async fn a_dispatch_of_an_attempt_handed_back_and_claimed_again_is_stale(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let campaign = started_campaign(&*store, 1).await;
    let claimer = InstanceId::new();
    store.heartbeat(claimer).await.expect("heartbeat");
    let claim = || async {
        let claimed = store
            .claim_calls(campaign, 1, claimer, 50_000, Utc::now())
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 1, "{name}: the call is claimable");
        claimed[0].clone()
    };
    // Its dispatch timed out at the claimer, which handed the attempt back; the message
    // arrived all the same, after the call was claimed again under the same attempt number.
    let earlier = claim().await;
    let released = store
        .release_attempts(
            &[held(campaign, &earlier, claimer)],
            Unspent::Unplaced,
            Utc::now(),
        )
        .await
        .expect("release");
    assert_eq!(released, vec![true], "{name}");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let current = claim().await;
    assert_eq!(current.attempt, earlier.attempt, "{name}: the same number");

    // The earlier dispatch neither rings (its outcome would be refused as stale, leaving the
    // call dialing for good) nor hands back the current attempt.
    let handed_back = store
        .release_attempts(
            &[held(campaign, &earlier, claimer)],
            Unspent::Unplaced,
            Utc::now(),
        )
        .await
        .expect("release");
    assert_eq!(
        handed_back,
        vec![false],
        "{name}: not the earlier dispatch's to hand back"
    );
    assert_eq!(
        begin(&*store, campaign, &earlier, claimer).await,
        vec![Begin::Stale],
        "{name}: the earlier dispatch is stale"
    );
    assert_eq!(
        begin(&*store, campaign, &current, claimer).await,
        vec![Begin::Dial],
        "{name}: the current dispatch dials"
    );
}

async fn begun_and_lost_attempts_exclude_each_other(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let campaign = started_campaign(&*store, 2).await;
    // The claimer never heartbeats: it is as good as dead.
    let claimer = InstanceId::new();
    let caller = InstanceId::new();
    store.heartbeat(caller).await.expect("heartbeat");
    let claimed = store
        .claim_calls(campaign, 2, claimer, 50_000, Utc::now())
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2);
    let (first, second) = (&claimed[0], &claimed[1]);

    // The call process begins the first attempt: it is placed and no longer an orphan, and
    // recording it as lost on behalf of the dead claimer does nothing.
    let begun = store
        .begin_attempts(&[held(campaign, first, claimer)], caller, Utc::now())
        .await
        .expect("begin");
    assert_eq!(begun, vec![Begin::Dial], "{name}");
    // A redelivery to another call process cannot begin it again.
    let again = begin(&*store, campaign, first, claimer).await;
    assert_eq!(
        again,
        vec![Begin::Stale],
        "{name}: an attempt is begun once"
    );
    let orphans = store
        .orphaned_attempts(Duration::from_secs(10), Duration::ZERO, Duration::ZERO, 10)
        .await
        .expect("orphans");
    assert_eq!(
        orphans.len(),
        1,
        "{name}: only the unbegun attempt is orphaned"
    );
    assert_eq!(orphans[0].call_id, second.call_id);
    assert_eq!(orphans[0].owner, Some(claimer));
    assert!(!orphans[0].placed, "{name}: never placed");
    let lost = AttemptReport {
        call_id: first.call_id,
        campaign_id: campaign,
        attempt: first.attempt,
        outcome: AttemptOutcome::Failed {
            error: "attempt_lost".into(),
            retryable: true,
        },
        ended_at: Utc::now(),
        retry_at: Utc::now(),
        expected_owner: Some(claimer),
        carrier: None,
        attempt_started_at: None,
    };
    let applied = store
        .record_attempts(&[lost], Utc::now())
        .await
        .expect("record");
    assert_eq!(applied[0].step, None, "{name}: a begun attempt is not lost");

    // The orphan was never placed: it goes back unspent, once.
    let released = store
        .release_attempts(
            &[held(campaign, second, claimer)],
            Unspent::Unplaced,
            Utc::now(),
        )
        .await
        .expect("release");
    assert_eq!(released, vec![true], "{name}");
    let released = store
        .release_attempts(
            &[held(campaign, second, claimer)],
            Unspent::Unplaced,
            Utc::now(),
        )
        .await
        .expect("release");
    assert_eq!(released, vec![false], "{name}: handed back once");
    let (call, attempts) = store
        .get_call(second.call_id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(call.status, CallStatus::Queued, "{name}");
    assert_eq!(call.attempt_count, 0, "{name}: the attempt is not spent");
    assert!(attempts.is_empty(), "{name}: {attempts:?}");
    let stats = store
        .campaign_stats(campaign)
        .await
        .expect("stats")
        .expect("exists");
    assert!(stats.is_consistent(), "{name}");
    assert_eq!(
        (stats.dialing_calls, stats.attempts_total),
        (1, 1),
        "{name}"
    );
    assert_eq!(store.dialing_now().await.expect("dialing"), 1, "{name}");

    // The superseded dispatch of the handed-back attempt can never be begun.
    let late = store
        .begin_attempts(&[held(campaign, second, claimer)], caller, Utc::now())
        .await
        .expect("begin");
    assert_eq!(late, vec![Begin::Stale], "{name}");
    // Claimed again, it is attempt 1 again, under its new claimer only.
    let reclaimed = store
        .claim_calls(campaign, 5, caller, 50_000, Utc::now())
        .await
        .expect("claim");
    assert_eq!(reclaimed.len(), 1, "{name}");
    assert_eq!(
        (reclaimed[0].call_id, reclaimed[0].attempt),
        (second.call_id, 1)
    );
}

/// A claim admits what the campaign's limit and the deployment's cap leave free, counting
/// every call dialing, whoever claimed it; recording an outcome frees the slot.
async fn claims_admit_only_free_slots(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let numbers = (0..20).map(|i| format!("+1555444{i:04}")).collect();
    let campaign = start_campaign(&*store, "slots", numbers, 3, 2).await;
    let first = claim(&*store, campaign, 10).await;
    assert_eq!(first.len(), 3, "{name}: the campaign's limit");
    let more = claim(&*store, campaign, 10).await;
    assert!(more.is_empty(), "{name}: no slot left for another claimer");
    answer(&*store, campaign, &first[0]).await;
    let freed = claim(&*store, campaign, 10).await;
    assert_eq!(
        freed.len(),
        1,
        "{name}: the recorded outcome freed one slot"
    );
    // The deployment's cap counts the dialing calls of every campaign.
    let other = started_campaign(&*store, 10).await;
    let capped = store
        .claim_calls(other, 10, InstanceId::new(), 5, Utc::now())
        .await
        .expect("claim");
    assert_eq!(capped.len(), 2, "{name}: 3 of the cap of 5 are taken");
    assert_eq!(store.dialing_now().await.expect("dialing"), 5, "{name}");
    // A lowered limit admits nothing until enough calls end.
    store
        .update_campaign(
            campaign,
            CampaignChanges {
                max_concurrent_calls: Some(1),
                ..CampaignChanges::default()
            },
            Utc::now(),
        )
        .await
        .expect("lower the limit");
    let none = claim(&*store, campaign, 10).await;
    assert!(none.is_empty(), "{name}: 3 dialing, limit 1");
}

/// One live call per phone number in the whole deployment: a second call to a number (the
/// same campaign's trigger, or another campaign) waits until the first is recorded.
async fn a_number_has_one_live_call(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let number = "+15554440001".to_owned();
    let first = start_campaign(&*store, "live-a", vec![number.clone()], 10, 1).await;
    let second = start_campaign(&*store, "live-b", vec![number.clone()], 10, 1).await;
    let target = || NewTarget {
        phone_number: PhoneNumber::parse(&number).expect("number"),
        metadata: None,
        time_zone: None,
    };
    // Triggered twice more before anything was dialed.
    store
        .enqueue_calls(first, vec![target(), target()], Utc::now())
        .await
        .expect("enqueue");
    let claimed = claim(&*store, first, 10).await;
    assert_eq!(
        claimed.len(),
        1,
        "{name}: one of the three calls to the number"
    );
    for campaign in [first, second] {
        let none = claim(&*store, campaign, 10).await;
        assert!(none.is_empty(), "{name}: the number is live");
    }
    answer(&*store, first, &claimed[0]).await;
    let next = claim(&*store, second, 10).await;
    assert_eq!(next.len(), 1, "{name}: free again once recorded");
}

/// Right before each create the dialer's begun attempt is checked again: still its own and
/// not handed over, its campaign running, its number not listed; a refusal hands it back
/// unspent, and the attempt's own entry in its number's log never counts against it.
async fn a_begun_attempt_is_checked_again_before_each_create(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let campaign = started_campaign(&*store, 3).await;
    let claimer = InstanceId::new();
    let dialer = InstanceId::new();
    let claimed = store
        .claim_calls(campaign, 3, claimer, 50_000, Utc::now())
        .await
        .expect("claim");
    let held: Vec<HeldAttempt> = claimed
        .iter()
        .map(|call| held(campaign, call, claimer))
        .collect();
    let begun = store
        .begin_attempts(&held, dialer, Utc::now())
        .await
        .expect("begin");
    assert_eq!(begun, vec![Begin::Dial; 3], "{name}");
    let keys: Vec<AttemptKey> = held.iter().map(|h| h.key).collect();
    let recheck = |key: AttemptKey, who: InstanceId| {
        let store = store.clone();
        async move {
            store
                .recheck_attempts(&[key], who, Utc::now())
                .await
                .expect("recheck")
        }
    };
    assert_eq!(recheck(keys[0], dialer).await, vec![Begin::Dial], "{name}");
    assert_eq!(
        recheck(keys[0], dialer).await,
        vec![Begin::Dial],
        "{name}: again"
    );
    let facts = store
        .number_facts(campaign, &claimed[0].phone_number, Utc::now())
        .await
        .expect("facts");
    assert_eq!(facts.prior.len(), 1, "{name}: one entry per attempt");
    assert_eq!(
        recheck(keys[0], InstanceId::new()).await,
        vec![Begin::Stale],
        "{name}: another dialer's"
    );
    // Handed to the carrier: no create may be sent for it any more.
    store
        .hand_to_carrier(
            &[(
                HeldAttempt {
                    key: keys[2],
                    holder: Some(dialer),
                    began_at: None,
                },
                Default::default(),
            )],
            Utc::now(),
        )
        .await
        .expect("hand over");
    assert_eq!(recheck(keys[2], dialer).await, vec![Begin::Stale], "{name}");
    // Listed meanwhile: canceled, unspent.
    store
        .add_to_dnc(
            DncScope::Global,
            vec![(claimed[1].phone_number.clone(), None)],
            Utc::now(),
            None,
        )
        .await
        .expect("list");
    assert_eq!(
        recheck(keys[1], dialer).await,
        vec![Begin::Forbidden],
        "{name}"
    );
    // Paused meanwhile: queued again, unspent, its number's log entry gone.
    store
        .transition_campaign(campaign, StatusAction::Pause, Utc::now())
        .await
        .expect("pause");
    assert!(
        matches!(recheck(keys[0], dialer).await[..], [Begin::Held(_)]),
        "{name}"
    );
    let facts = store
        .number_facts(campaign, &claimed[0].phone_number, Utc::now())
        .await
        .expect("facts");
    assert!(
        facts.prior.is_empty(),
        "{name}: an unplaced attempt rang no one"
    );
    let call = |id| {
        let store = store.clone();
        async move { store.get_call(id).await.expect("get").expect("exists").0 }
    };
    assert_eq!(
        call(claimed[0].call_id).await.status,
        CallStatus::Queued,
        "{name}"
    );
    assert_eq!(
        call(claimed[1].call_id).await.status,
        CallStatus::Canceled,
        "{name}"
    );
    let stats = store
        .campaign_stats(campaign)
        .await
        .expect("stats")
        .expect("exists");
    assert!(stats.is_consistent(), "{name}: {stats:?}");
    assert_eq!(
        stats.attempts_total, 1,
        "{name}: only the handed-over attempt counts"
    );
}

/// The carrier refusing a campaign's request pauses that campaign, with the reason, until it
/// starts again.
async fn the_carrier_pauses_a_campaign_with_its_reason(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let campaign = started_campaign(&*store, 1).await;
    let reason = PauseReason::carrier_refused(Some(21210), "not verified".into());
    assert!(
        store
            .pause_for_carrier(campaign, reason.clone(), Utc::now())
            .await
            .expect("pause"),
        "{name}"
    );
    let paused = store
        .get_campaign(campaign)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(paused.pause_reason.as_ref(), Some(&reason), "{name}");
    assert!(
        !store
            .pause_for_carrier(campaign, reason, Utc::now())
            .await
            .expect("pause again"),
        "{name}: only a running campaign"
    );
    store
        .transition_campaign(campaign, StatusAction::Start, Utc::now())
        .await
        .expect("start");
    let started = store
        .get_campaign(campaign)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(started.pause_reason, None, "{name}");
}

/// A heartbeat answers with the store's clock, which rules are judged on.
async fn a_heartbeat_reads_the_stores_clock(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let before = Utc::now();
    let read = store.heartbeat(InstanceId::new()).await.expect("heartbeat");
    let after = Utc::now();
    // The test's host is the store's here: the reading falls between the two.
    assert!(
        read >= before - chrono::TimeDelta::seconds(1)
            && read <= after + chrono::TimeDelta::seconds(1),
        "{name}: {before} <= {read} <= {after}"
    );
}

/// The dialer checks the campaign at the moment of dialing: a pause or complete after the
/// claim hands the attempt back unspent (a completed campaign cancels the call).
async fn begin_checks_the_campaign_at_the_moment_of_dialing(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let campaign = started_campaign(&*store, 3).await;
    let claimer = InstanceId::new();
    let claimed = store
        .claim_calls(campaign, 3, claimer, 50_000, Utc::now())
        .await
        .expect("claim");
    store
        .transition_campaign(campaign, StatusAction::Pause, Utc::now())
        .await
        .expect("pause");
    let begun = begin(&*store, campaign, &claimed[0], claimer).await;
    assert_eq!(
        begun,
        vec![Begin::Held(HoldReason {
            code: HoldCode::CampaignNotRunning,
            until: None,
        })],
        "{name}"
    );
    store
        .transition_campaign(campaign, StatusAction::Complete, Utc::now())
        .await
        .expect("complete");
    let begun = begin(&*store, campaign, &claimed[1], claimer).await;
    assert_eq!(
        begun,
        vec![Begin::Held(HoldReason {
            code: HoldCode::CampaignNotRunning,
            until: None,
        })],
        "{name}"
    );
    let status = |id| {
        let store = store.clone();
        async move {
            store
                .get_call(id)
                .await
                .expect("get")
                .expect("exists")
                .0
                .status
        }
    };
    // Handed back while paused, then canceled by the complete.
    assert_eq!(
        status(claimed[0].call_id).await,
        CallStatus::Canceled,
        "{name}"
    );
    assert_eq!(
        status(claimed[1].call_id).await,
        CallStatus::Canceled,
        "{name}"
    );
    assert_eq!(
        status(claimed[2].call_id).await,
        CallStatus::Dialing,
        "{name}"
    );
    let stats = store
        .campaign_stats(campaign)
        .await
        .expect("stats")
        .expect("exists");
    assert!(stats.is_consistent(), "{name}");
    assert_eq!(
        stats.attempts_total, 1,
        "{name}: only the dialing attempt counts"
    );
    assert_eq!(store.dialing_now().await.expect("dialing"), 1, "{name}");
}

/// A change of the retry policy reaches every call still to be dialed.
async fn a_new_retry_budget_reaches_waiting_calls(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let campaign = started_campaign(&*store, 3).await;
    store
        .update_campaign(
            campaign,
            CampaignChanges {
                retry_policy: Some(RetryPolicy {
                    max_attempts: 5,
                    ..RetryPolicy::default()
                }),
                ..CampaignChanges::default()
            },
            Utc::now(),
        )
        .await
        .expect("update");
    let calls = store
        .list_calls(campaign, &CallFilter::default(), None, 10)
        .await
        .expect("calls");
    assert!(
        calls.iter().all(|call| call.max_attempts == 5),
        "{name}: {calls:?}"
    );
}

/// The store as the outbox of a separate timeline: its backlog holds finished attempts only,
/// and forgetting them never touches a dialing attempt or a counter.
async fn backlog_holds_finished_attempts_until_forgotten(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let (campaign, calls) = campaign_with_finished_attempts(&*store).await;
    let backlog = store.timeline_backlog(100).await.expect("backlog");
    let mut keys: Vec<AttemptKey> = backlog.iter().map(TimelineEntry::key).collect();
    keys.sort();
    let mut expected: Vec<AttemptKey> = calls[..3]
        .iter()
        .map(|&call_id| AttemptKey {
            campaign_id: campaign,
            call_id,
            attempt: 1,
        })
        .collect();
    expected.sort();
    assert_eq!(keys, expected, "{name}: finished attempts only");
    assert!(backlog.iter().all(|e| e.attempt.ended_at.is_some()));
    assert_eq!(store.timeline_backlog(2).await.expect("backlog").len(), 2);

    // A dialing attempt is never deleted, whatever the caller asks.
    let dialing = AttemptKey {
        campaign_id: campaign,
        call_id: calls[4],
        attempt: 1,
    };
    assert_eq!(
        store
            .forget_attempts(&[dialing, keys[0]])
            .await
            .expect("forget"),
        1,
        "{name}"
    );
    assert_eq!(store.forget_attempts(&[keys[0]]).await.expect("again"), 0);
    let (_, attempts) = store.get_call(calls[4]).await.expect("get").expect("call");
    assert_eq!(attempts.len(), 1, "{name}: the dialing attempt stays");
    assert_eq!(store.timeline_backlog(100).await.expect("backlog").len(), 2);
    // The call's own state is untouched: forgetting history moves no counter.
    let stats = store
        .campaign_stats(campaign)
        .await
        .expect("stats")
        .expect("exists");
    assert!(stats.is_consistent(), "{name}");
    assert_eq!(stats.attempts_total, 5, "{name}");
}

/// Keys keep only their hash, a revocation keeps its first time, last use only moves
/// forward, and a change's audit entry commits with it or not at all.
async fn keys_and_the_audit_log(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let store = adapter.open(&dir).await;
    let issued = issue(KeyId::new(), "ops".into(), Role::Operator, [3; 32]);
    let id = issued.record.id;
    let t0 = Utc::now();
    let entry = |status: u16, resource: &str| AuditEntry {
        count: 1,
        id: uuid::Uuid::now_v7(),
        at: Utc::now(),
        key_id: Some(id),
        key_name: Some("ops".into()),
        method: "POST".into(),
        route: "/api/v1/keys".into(),
        resource_id: Some(resource.to_owned()),
        status,
    };
    let key = store
        .create_key(issued.record.clone(), t0, Some(entry(201, "k")))
        .await
        .expect("created");
    assert!(key.hash.matches(&KeyHash::of(&issued.key)));
    assert_eq!(key.role, Role::Operator);
    assert_eq!(store.get_key(id).await.expect("read"), Some(key.clone()));
    assert_eq!(store.get_key(KeyId::new()).await.expect("read"), None);

    let later = t0 + chrono::Duration::seconds(10);
    store.touch_keys(&[(id, later)]).await.expect("touched");
    store.touch_keys(&[(id, t0)]).await.expect("touched");
    let touched = store.get_key(id).await.expect("read").expect("key");
    assert_eq!(
        touched.last_used_at.map(|t| t.timestamp_millis()),
        Some(later.timestamp_millis())
    );

    let revoked = store.revoke_key(id, later, None).await.expect("revoked");
    assert!(!revoked.admits(&KeyHash::of(&issued.key)));
    let again = store
        .revoke_key(id, later + chrono::Duration::seconds(5), None)
        .await
        .expect("revoked again");
    assert_eq!(again.revoked_at, revoked.revoked_at);
    assert!(matches!(
        store.revoke_key(KeyId::new(), later, None).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.list_keys().await.expect("list").len(), 1);

    // A change that fails takes its audit entry with it.
    let failed = store
        .transition_campaign_audited(
            CampaignId::new(),
            StatusAction::Start,
            Utc::now(),
            Some(entry(204, "missing")),
        )
        .await;
    assert!(matches!(failed, Err(StoreError::NotFound)));
    store
        .record_audit(&[entry(403, "refused")])
        .await
        .expect("recorded");
    let entries = store.list_audit(None, 10).await.expect("audit");
    let statuses: Vec<u16> = entries.iter().map(|e| e.status).collect();
    assert_eq!(
        statuses,
        vec![403, 201],
        "newest first, the failed change absent"
    );
    let older = store
        .list_audit(Some(entries[0].id), 10)
        .await
        .expect("audit");
    assert_eq!(older.len(), 1);
    assert_eq!(older[0], entries[1]);

    // A flood's entry keeps how many requests it stands for; entries past their retention go.
    let mut flood = entry(401, "flood");
    flood.count = 600;
    flood.at = Utc::now() - chrono::Duration::days(3);
    store
        .record_audit(&[flood.clone()])
        .await
        .expect("recorded");
    let newest = store.list_audit(None, 1).await.expect("audit");
    assert_eq!(newest[0].count, 600);
    let removed = store
        .prune_audit(Utc::now() - chrono::Duration::days(1))
        .await
        .expect("pruned");
    assert_eq!(removed, 1);
    let kept = store.list_audit(None, 10).await.expect("audit");
    assert_eq!(kept.len(), 2);
    assert!(kept.iter().all(|e| e.count == 1));
}

/// Recipient hours hold a call at the moment of dialing, in the called party's zone (its
/// number's, or its target's own): the attempt goes back unspent, the call is not claimed
/// again before the window opens, and is dialed once it has.
async fn a_call_outside_its_recipients_hours_waits_for_them(adapter: StoreAdapter) {
    use chrono::TimeZone;
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let id = CampaignId::new();
    // 07:00 in New York, 02:00 in Honolulu.
    let registered = Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap();
    let target = |number: &str, zone: Option<chrono_tz::Tz>| NewTarget {
        phone_number: PhoneNumber::parse(number).expect("number"),
        metadata: None,
        time_zone: zone,
    };
    store
        .create_campaign(
            NewCampaign {
                id,
                name: format!("recipients-{id}"),
                description: String::new(),
                time_zone: chrono_tz::America::New_York,
                max_concurrent_calls: 10,
                retry_policy: RetryPolicy::default(),
                business_hours: BusinessHours::default(),
                recipient_hours: default_recipient_hours(),
                restricted_periods: Vec::new(),
                recipient_limits: Vec::new(),
                voice: Default::default(),
                targets: vec![
                    // Honolulu by its area code.
                    target("+18085550100", None),
                    // New York by its area code.
                    target("+12125550100", None),
                    // A New York number whose owner is in Honolulu.
                    target("+12125550101", Some(chrono_tz::Pacific::Honolulu)),
                ],
            },
            registered,
        )
        .await
        .expect("created");
    store
        .transition_campaign(id, StatusAction::Start, registered)
        .await
        .expect("started");
    // 09:00 in New York, 04:00 in Honolulu.
    let morning = Utc.with_ymd_and_hms(2026, 12, 2, 14, 0, 0).unwrap();
    let honolulu_eight = Utc.with_ymd_and_hms(2026, 12, 2, 18, 0, 0).unwrap();
    let claimer = InstanceId::new();
    // The claim sets the sleeping recipients aside and takes the one awake.
    let claimed = store
        .claim_calls(id, 10, claimer, 50_000, morning)
        .await
        .expect("claim");
    let numbers: Vec<&str> = claimed.iter().map(|c| c.phone_number.as_str()).collect();
    assert_eq!(numbers, ["+12125550100"], "{name}");
    let begun = store
        .begin_attempts(
            &[held(id, &claimed[0], claimer)],
            InstanceId::new(),
            morning,
        )
        .await
        .expect("begin");
    assert_eq!(begun, vec![Begin::Dial], "{name}");
    let stats = store
        .campaign_stats(id)
        .await
        .expect("stats")
        .expect("exists");
    assert_eq!(
        (
            stats.queued_calls,
            stats.dialing_calls,
            stats.attempts_total
        ),
        (2, 1, 1),
        "{name}"
    );
    // Not claimed before 08:00 in Honolulu, whatever the passes in between.
    for minutes in [1, 60, 239] {
        let early = store
            .claim_calls(
                id,
                10,
                claimer,
                50_000,
                morning + chrono::Duration::minutes(minutes),
            )
            .await
            .expect("claim");
        assert!(early.is_empty(), "{name}: claimed before the window opened");
    }
    // Claimed as the window opens; the dialer checks again at the moment of dialing, when the
    // window has closed for one of them (a slow hand-over): that one goes back unspent, held
    // until its next window.
    let later = store
        .claim_calls(id, 10, claimer, 50_000, honolulu_eight)
        .await
        .expect("claim");
    assert_eq!(later.len(), 2, "{name}");
    let second: Vec<HeldAttempt> = later.iter().map(|c| held(id, c, claimer)).collect();
    let begun = store
        .begin_attempts(&second, InstanceId::new(), honolulu_eight)
        .await
        .expect("begin");
    assert_eq!(begun, vec![Begin::Dial, Begin::Dial], "{name}");
    let answered: Vec<AttemptReport> = later
        .iter()
        .map(|c| report(id, c, AttemptOutcome::Answered, honolulu_eight))
        .collect();
    store
        .record_attempts(&answered, honolulu_eight)
        .await
        .expect("record");
    let third = Utc.with_ymd_and_hms(2026, 12, 3, 6, 59, 0).unwrap();
    let target_call = store
        .enqueue_calls(id, vec![target("+18085550100", None)], third)
        .await
        .expect("enqueued");
    assert_eq!(target_call.len(), 1);
    let late = store
        .claim_calls(id, 10, claimer, 50_000, third)
        .await
        .expect("claim");
    assert_eq!(late.len(), 1, "{name}: 20:59 in Honolulu");
    let after_nine = Utc.with_ymd_and_hms(2026, 12, 3, 7, 1, 0).unwrap();
    let next_morning = Utc.with_ymd_and_hms(2026, 12, 3, 18, 0, 0).unwrap();
    let begun = store
        .begin_attempts(
            &[held(id, &late[0], claimer)],
            InstanceId::new(),
            after_nine,
        )
        .await
        .expect("begin");
    assert_eq!(
        begun,
        vec![Begin::Held(HoldReason {
            code: HoldCode::OutsideRecipientHours,
            until: Some(next_morning),
        })],
        "{name}"
    );
    let again = store
        .claim_calls(id, 10, claimer, 50_000, after_nine)
        .await
        .expect("claim");
    assert!(again.is_empty(), "{name}: held until its next window");
}

/// Calls held by a campaign's rules (set aside at registration or by a claim) are screened
/// again by the rules that replace them: widened hours free them at once.
async fn changed_rules_free_the_calls_they_held(adapter: StoreAdapter) {
    use chrono::TimeZone;
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let id = CampaignId::new();
    // 04:00 in Honolulu.
    let night = Utc.with_ymd_and_hms(2026, 12, 2, 14, 0, 0).unwrap();
    let target = |number: &str| NewTarget {
        phone_number: PhoneNumber::parse(number).expect("number"),
        metadata: None,
        time_zone: Some(chrono_tz::Pacific::Honolulu),
    };
    store
        .create_campaign(
            NewCampaign {
                id,
                name: format!("reopened-{id}"),
                description: String::new(),
                time_zone: chrono_tz::UTC,
                max_concurrent_calls: 10,
                retry_policy: RetryPolicy::default(),
                business_hours: BusinessHours::default(),
                recipient_hours: default_recipient_hours(),
                restricted_periods: Vec::new(),
                recipient_limits: Vec::new(),
                voice: Default::default(),
                targets: vec![target("+15555550100"), target("+15555550101")],
            },
            night,
        )
        .await
        .expect("created");
    store
        .transition_campaign(id, StatusAction::Start, night)
        .await
        .expect("started");
    let claimer = InstanceId::new();
    let asleep = store
        .claim_calls(id, 10, claimer, 50_000, night)
        .await
        .expect("claim");
    assert!(asleep.is_empty(), "{name}: 04:00 for every recipient");
    // A later trigger is held the same way.
    store
        .enqueue_calls(id, vec![target("+15555550100")], night)
        .await
        .expect("enqueued");
    let changes = CampaignChanges {
        recipient_hours: Some(BusinessHours::default()),
        ..Default::default()
    };
    store
        .update_campaign(id, changes, night)
        .await
        .expect("updated");
    let awake = store
        .claim_calls(id, 10, claimer, 50_000, night)
        .await
        .expect("claim");
    // Two calls to one number never dial at once: the trigger waits for the first.
    assert_eq!(awake.len(), 2, "{name}: the rules that held them are gone");
}

fn report(
    campaign: CampaignId,
    call: &ClaimedCall,
    outcome: AttemptOutcome,
    at: chrono::DateTime<Utc>,
) -> AttemptReport {
    AttemptReport {
        call_id: call.call_id,
        campaign_id: campaign,
        attempt: call.attempt,
        outcome,
        ended_at: at,
        retry_at: at + chrono::Duration::hours(1),
        expected_owner: None,
        carrier: None,
        attempt_started_at: None,
    }
}

fn numbers(list: &[&str]) -> Vec<(PhoneNumber, Option<String>)> {
    list.iter()
        .map(|n| (PhoneNumber::parse(n).expect("number"), Some("asked".into())))
        .collect()
}

/// Listing a number cancels its waiting calls in the same transaction (queued or waiting out a
/// backoff), a claimed attempt not yet placed is never dialed and its call is canceled too,
/// global entries cover every campaign and campaign entries their own, and the counters stay
/// exact throughout.
async fn a_listed_number_is_never_dialed(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let all = [
        "+15550000001",
        "+15550000002",
        "+15550000003",
        "+15550000004",
    ];
    let campaign = start_campaign(
        &*store,
        "dnc",
        all.iter().map(|n| n.to_string()).collect(),
        3,
        3,
    )
    .await;
    let now = Utc::now();
    let claimer = InstanceId::new();
    let claimed = store
        .claim_calls(campaign, 3, claimer, 50_000, now)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 3, "{name}");
    let (retried, done, unplaced) = (&claimed[0], &claimed[1], &claimed[2]);
    let begun = store
        .begin_attempts(
            &[
                held(campaign, retried, claimer),
                held(campaign, done, claimer),
            ],
            InstanceId::new(),
            now,
        )
        .await
        .expect("begin");
    assert_eq!(begun, vec![Begin::Dial, Begin::Dial], "{name}");
    store
        .record_attempts(
            &[
                report(
                    campaign,
                    retried,
                    AttemptOutcome::Failed {
                        error: "busy".into(),
                        retryable: true,
                    },
                    now,
                ),
                report(campaign, done, AttemptOutcome::Answered, now),
            ],
            now,
        )
        .await
        .expect("record");
    let queued: Vec<&str> = all
        .iter()
        .copied()
        .filter(|n| claimed.iter().all(|c| c.phone_number.as_str() != *n))
        .collect();
    assert_eq!(queued.len(), 1);
    let listed = store
        .add_to_dnc(
            DncScope::Global,
            numbers(&[
                retried.phone_number.as_str(),
                unplaced.phone_number.as_str(),
                queued[0],
                "+15559999999",
            ]),
            now,
            None,
        )
        .await
        .expect("listed");
    assert_eq!(
        (listed.added, listed.canceled),
        (4, 2),
        "{name}: the retrying and the queued call are canceled at once"
    );
    // Listing again adds nothing and keeps the first entry.
    let again = store
        .add_to_dnc(DncScope::Global, numbers(&[queued[0]]), now, None)
        .await
        .expect("listed again");
    assert_eq!((again.added, again.canceled), (0, 0), "{name}");
    // The claimed attempt is never placed: the dialer is told so and the call ends canceled.
    let begun = store
        .begin_attempts(&[held(campaign, unplaced, claimer)], InstanceId::new(), now)
        .await
        .expect("begin");
    assert_eq!(begun, vec![Begin::Forbidden], "{name}");
    for call in [retried, unplaced] {
        let (call, _) = store
            .get_call(call.call_id)
            .await
            .expect("call")
            .expect("exists");
        assert_eq!(call.status, CallStatus::Canceled, "{name}");
        assert_eq!(call.last_error.as_deref(), Some("do_not_call"), "{name}");
    }
    let stats = store
        .campaign_stats(campaign)
        .await
        .expect("stats")
        .expect("exists");
    assert!(stats.is_consistent(), "{name}: {stats:?}");
    assert_eq!(
        (
            stats.completed_calls,
            stats.canceled_calls,
            stats.attempts_total
        ),
        (1, 3, 2),
        "{name}: the unplaced attempt is not counted"
    );
    let finished = store
        .get_campaign(campaign)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        finished.status.as_str(),
        "completed",
        "{name}: nothing left to dial"
    );
    // A listed number added later to any campaign is accepted and never dialed.
    let other = start_campaign(&*store, "dnc-later", vec![queued[0].to_string()], 3, 3).await;
    let claimed = store
        .claim_calls(other, 3, claimer, 50_000, now)
        .await
        .expect("claim");
    assert!(claimed.is_empty(), "{name}: the claim cancels it instead");
    let stats = store
        .campaign_stats(other)
        .await
        .expect("stats")
        .expect("exists");
    assert_eq!(
        (stats.canceled_calls, stats.attempts_total),
        (1, 0),
        "{name}"
    );
    assert!(stats.is_consistent(), "{name}");
    let (calls, _) = store
        .list_calls(other, &CallFilter::default(), None, 10)
        .await
        .map(|calls| (calls, ()))
        .expect("calls");
    assert_eq!(
        calls[0].last_error.as_deref(),
        Some("do_not_call"),
        "{name}"
    );
    // A campaign's entry covers that campaign only.
    let scoped = start_campaign(&*store, "dnc-scoped", vec!["+15550000009".into()], 3, 3).await;
    let unrelated =
        start_campaign(&*store, "dnc-unrelated", vec!["+15550000009".into()], 3, 3).await;
    let listed = store
        .add_to_dnc(
            DncScope::Campaign(scoped),
            numbers(&["+15550000009"]),
            now,
            None,
        )
        .await
        .expect("listed");
    assert_eq!((listed.added, listed.canceled), (1, 1), "{name}");
    let unrelated_stats = store
        .campaign_stats(unrelated)
        .await
        .expect("stats")
        .expect("exists");
    assert_eq!(
        unrelated_stats.queued_calls, 1,
        "{name}: another campaign's call stays"
    );
    assert!(matches!(
        store
            .add_to_dnc(
                DncScope::Campaign(CampaignId::new()),
                numbers(&["+15550000009"]),
                now,
                None
            )
            .await,
        Err(StoreError::NotFound)
    ));
    // Lookups, pages in number order, removal from every scope.
    let entry = store
        .get_dnc(&PhoneNumber::parse("+15550000009").expect("number"))
        .await
        .expect("get")
        .expect("listed");
    assert_eq!(entry.scope, DncScope::Campaign(scoped), "{name}");
    assert_eq!(entry.reason.as_deref(), Some("asked"));
    let first = store.list_dnc(None, 3).await.expect("page");
    let rest = store
        .list_dnc(first.last().map(|e| (e.phone_number.clone(), e.scope)), 10)
        .await
        .expect("page");
    let mut seen: Vec<String> = first
        .iter()
        .chain(&rest)
        .map(|e| e.phone_number.as_str().to_owned())
        .collect();
    assert_eq!(seen.len(), 5, "{name}");
    let sorted = {
        let mut s = seen.clone();
        s.sort();
        s
    };
    assert_eq!(seen, sorted, "{name}: in number order");
    seen.dedup();
    assert_eq!(seen.len(), 5, "{name}: no entry twice");
    let gone = store
        .remove_dnc(&PhoneNumber::parse("+15550000009").expect("number"), None)
        .await
        .expect("removed");
    assert_eq!(gone, 1, "{name}");
    assert!(store
        .get_dnc(&PhoneNumber::parse("+15550000009").expect("number"))
        .await
        .expect("get")
        .is_none());
}

/// A deployment cap counts every campaign's attempts to a number, whichever process places
/// them: many campaigns racing for one number from two stores place exactly the cap, and the
/// next call waits until the oldest counted attempt leaves the window. A campaign's own limit
/// holds its retries.
async fn a_frequency_cap_holds_across_campaigns_and_processes(adapter: StoreAdapter) {
    use outbound::domain::compliance::{Compliance, FrequencyCap};
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let cap = FrequencyCap::new(2, Duration::from_secs(3600)).expect("cap");
    let replicas = adapter
        .replicas_applying(&dir, 2, Compliance::new(true, None, Some(cap)))
        .await;
    const NUMBER: &str = "+15550001000";
    let mut campaigns = Vec::new();
    for _ in 0..6 {
        campaigns.push(start_campaign(&*replicas[0], "cap", vec![NUMBER.into()], 5, 1).await);
    }
    // The store keeps milliseconds.
    let now = chrono::DurationRound::duration_trunc(Utc::now(), chrono::TimeDelta::milliseconds(1))
        .expect("now");
    let mut tasks = Vec::new();
    for (index, campaign) in campaigns.iter().copied().enumerate() {
        let store = replicas[index % 2].clone();
        tasks.push(tokio::spawn(async move {
            let claimer = InstanceId::new();
            // Another campaign's call may hold the number for a moment: try again.
            for _ in 0..200 {
                let claimed = store
                    .claim_calls(campaign, 1, claimer, 50_000, now)
                    .await
                    .expect("claim");
                let Some(call) = claimed.first() else {
                    // Set aside by the claim once the cap is reached; else the number is live
                    // in another campaign for a moment.
                    let facts = store
                        .number_facts(campaign, &PhoneNumber::parse(NUMBER).expect("number"), now)
                        .await
                        .expect("facts");
                    if facts.prior.len() >= 2 {
                        return Some(false);
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let begun = store
                    .begin_attempts(&[held(campaign, call, claimer)], InstanceId::new(), now)
                    .await
                    .expect("begin");
                match begun[0] {
                    Begin::Dial => {
                        store
                            .record_attempts(
                                &[report(campaign, call, AttemptOutcome::Answered, now)],
                                now,
                            )
                            .await
                            .expect("record");
                        return Some(true);
                    }
                    Begin::Held(reason) => {
                        assert_eq!(reason.code, HoldCode::FrequencyCap);
                        assert_eq!(reason.until, Some(now + chrono::Duration::hours(1)));
                        return Some(false);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            None
        }));
    }
    let mut dialed = 0;
    let mut held_back = 0;
    for task in tasks {
        match task.await.expect("task") {
            Some(true) => dialed += 1,
            Some(false) => held_back += 1,
            None => panic!("{name}: a campaign never got its number"),
        }
    }
    assert_eq!(
        (dialed, held_back),
        (2, 4),
        "{name}: exactly the cap placed"
    );
    // The held calls wait for the window: not claimable before, dialable after.
    let waiting = campaigns.len();
    let mut early = 0;
    for campaign in &campaigns {
        early += replicas[1]
            .claim_calls(
                *campaign,
                1,
                InstanceId::new(),
                50_000,
                now + chrono::Duration::minutes(59),
            )
            .await
            .expect("claim")
            .len();
    }
    assert_eq!(
        early, 0,
        "{name}: {waiting} campaigns, none claimable early"
    );
    // A campaign's own limit: one attempt per day holds its retry.
    let limited = CampaignId::new();
    replicas[0]
        .create_campaign(
            NewCampaign {
                id: limited,
                name: format!("limited-{limited}"),
                description: String::new(),
                time_zone: chrono_tz::UTC,
                max_concurrent_calls: 5,
                retry_policy: RetryPolicy {
                    max_attempts: 3,
                    ..RetryPolicy::default()
                },
                business_hours: BusinessHours::default(),
                recipient_hours: BusinessHours::default(),
                restricted_periods: Vec::new(),
                recipient_limits: vec![
                    FrequencyCap::new(1, Duration::from_secs(86_400)).expect("limit")
                ],
                voice: Default::default(),
                targets: vec![NewTarget {
                    phone_number: PhoneNumber::parse("+15550002000").expect("number"),
                    metadata: None,
                    time_zone: None,
                }],
            },
            now,
        )
        .await
        .expect("created");
    replicas[0]
        .transition_campaign(limited, StatusAction::Start, now)
        .await
        .expect("started");
    let claimer = InstanceId::new();
    let first = replicas[0]
        .claim_calls(limited, 1, claimer, 50_000, now)
        .await
        .expect("claim");
    let begun = replicas[0]
        .begin_attempts(&[held(limited, &first[0], claimer)], InstanceId::new(), now)
        .await
        .expect("begin");
    assert_eq!(begun, vec![Begin::Dial], "{name}");
    let mut failed = report(
        limited,
        &first[0],
        AttemptOutcome::Failed {
            error: "busy".into(),
            retryable: true,
        },
        now,
    );
    failed.retry_at = now;
    replicas[0]
        .record_attempts(&[failed], now)
        .await
        .expect("record");
    replicas[1]
        .promote_due_retries(now, 10)
        .await
        .expect("promote");
    let retry = replicas[1]
        .claim_calls(limited, 1, claimer, 50_000, now)
        .await
        .expect("claim");
    assert!(
        retry.is_empty(),
        "{name}: the retry waits for the campaign's limit"
    );
    let day = now + chrono::Duration::days(1);
    let early = replicas[1]
        .claim_calls(
            limited,
            1,
            claimer,
            50_000,
            day - chrono::Duration::seconds(1),
        )
        .await
        .expect("claim");
    assert!(early.is_empty(), "{name}");
    let retry = replicas[1]
        .claim_calls(limited, 1, claimer, 50_000, day)
        .await
        .expect("claim");
    assert_eq!(
        retry.len(),
        1,
        "{name}: dialable once the first attempt left the window"
    );
}

contract_suite!(
    StoreAdapter {
        sqlite => StoreAdapter::Sqlite,
        postgres => StoreAdapter::Postgres,
    },
    [
        claims_are_exclusive,
        counts_a_report_once,
        finds_attempts_of_dead_owners_only,
        a_create_never_answered_is_asked_about_sooner,
        claims_are_exclusive_across_replicas,
        names_are_unique_case_insensitively,
        complete_cancels_waiting_calls_and_keeps_counts,
        enqueues_registered_numbers_and_pages_calls,
        counters_match_calls_under_concurrent_writers,
        begun_and_lost_attempts_exclude_each_other,
        a_dispatch_of_an_attempt_handed_back_and_claimed_again_is_stale,
        a_changed_message_is_kept_for_begun_attempts_only,
        claims_admit_only_free_slots,
        a_number_has_one_live_call,
        begin_checks_the_campaign_at_the_moment_of_dialing,
        an_attempt_twice_in_a_batch_is_begun_once,
        a_begun_attempt_is_checked_again_before_each_create,
        the_carrier_pauses_a_campaign_with_its_reason,
        a_heartbeat_reads_the_stores_clock,
        a_new_retry_budget_reaches_waiting_calls,
        backlog_holds_finished_attempts_until_forgotten,
        keys_and_the_audit_log,
        a_call_outside_its_recipients_hours_waits_for_them,
        a_listed_number_is_never_dialed,
        a_frequency_cap_holds_across_campaigns_and_processes,
        changed_rules_free_the_calls_they_held,
    ]
);
