//! The engine end to end, all roles in one process: completion, limits, windows, pause,
//! retries, fairness.

use std::time::Duration;

use chrono::{Datelike, Utc};
use outbound::settings::GoDuration;
use serde_json::{json, Value};

use crate::helpers::{tally, targets, unique_name, Mode, TestApp};
use crate::in_both_modes;

fn body(name: &str, count: usize, limit: u32) -> Value {
    json!({
        "name": name,
        "time_zone": "UTC",
        "max_concurrent_calls": limit,
        "retry_policy": {"max_attempts": 3, "base_delay": "10ms", "max_delay": "50ms", "jitter": 0.2},
        "targets": targets(count, 0),
    })
}

async fn peak(app: &TestApp, id: &str) -> f64 {
    app.metric("outbound_mock_provider_peak_active_calls", id)
        .await
        .unwrap_or(0.0)
}

in_both_modes!(a_campaign_completes_by_itself_with_exact_stats);
async fn a_campaign_completes_by_itself_with_exact_stats(mode: Mode) {
    let app = TestApp::spawn_in(mode, |_| {}).await;
    let created = app
        .create_campaign(body(&unique_name("e2e"), 300, 20))
        .await;
    let id = created["id"].as_str().expect("id");
    app.start(id).await;
    let stats = app.wait_completed(id, Duration::from_secs(60)).await;
    let calls = app.all_calls(id).await;
    assert_eq!(calls.len(), 300);
    let counts = tally(&calls);
    assert_eq!(counts.get("queued"), None);
    assert_eq!(counts.get("dialing"), None);
    assert_eq!(counts.get("retrying"), None);
    assert_eq!(
        stats["completed_calls"].as_u64(),
        counts.get("completed").copied().or(Some(0))
    );
    assert_eq!(
        stats["failed_calls"].as_u64(),
        counts.get("failed").copied().or(Some(0))
    );
    let attempts: u64 = calls
        .iter()
        .map(|c| c["attempt_count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(stats["attempts_total"].as_u64(), Some(attempts));
    assert_eq!(stats["retries_attempted"].as_u64(), Some(attempts - 300));
    assert!(
        stats["retries_attempted"].as_u64() > Some(0),
        "20% failures retry: {stats}"
    );
    assert!(peak(&app, id).await <= 20.0);

    // The timeline of one retried call.
    let retried = calls
        .iter()
        .find(|c| c["attempt_count"].as_u64() > Some(1))
        .expect("a retried call");
    let (status, detail) = app
        .get(&format!(
            "/api/v1/calls/{}",
            retried["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(status, 200);
    let attempts = detail["attempts"].as_array().expect("attempts");
    assert_eq!(
        attempts.len() as u64,
        retried["attempt_count"].as_u64().expect("count")
    );
    for (index, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt["attempt"].as_u64(), Some(index as u64 + 1));
        assert!(attempt["ended_at"].is_string(), "{attempt}");
    }

    // The campaign's timeline pages through every attempt once, and agrees with each call.
    let mut listed = std::collections::HashMap::<String, u64>::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &token {
            Some(token) => format!("?limit=97&page_token={token}"),
            None => "?limit=97".to_owned(),
        };
        let (status, page) = app
            .get(&format!("/api/v1/campaigns/{id}/attempts{query}"))
            .await;
        assert_eq!(status, 200, "{page}");
        let entries = page["attempts"].as_array().expect("attempts");
        assert!(entries.len() <= 97);
        pages += 1;
        for entry in entries {
            let call = entry["call_id"].as_str().expect("call id").to_owned();
            let number = entry["attempt"].as_u64().expect("attempt");
            let count = listed.entry(call).or_default();
            assert_eq!(number, *count + 1, "attempts of a call in order, once each");
            *count = number;
        }
        match page["next_page_token"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    assert!(pages > 1, "paged for real");
    assert_eq!(listed.values().sum::<u64>(), attempts_total(&calls));
    for call in &calls {
        assert_eq!(
            listed.get(call["id"].as_str().expect("id")).copied(),
            call["attempt_count"].as_u64()
        );
    }
    app.shutdown().await;
}

fn attempts_total(calls: &[Value]) -> u64 {
    calls
        .iter()
        .map(|c| c["attempt_count"].as_u64().unwrap_or(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_targets_with_limit_one_hundred() {
    let app = TestApp::spawn_with(|s| {
        s.telephony.mock.max_duration = GoDuration(Duration::from_millis(50));
        s.telephony.mock.seed = Some(11);
    })
    .await;
    let created = app
        .create_campaign(body(&unique_name("ten-k"), 10_000, 100))
        .await;
    let id = created["id"].as_str().expect("id");
    let started = std::time::Instant::now();
    app.start(id).await;
    let stats = app.wait_completed(id, Duration::from_secs(300)).await;
    let elapsed = started.elapsed();
    let calls = app.all_calls(id).await;
    assert_eq!(calls.len(), 10_000);
    let counts = tally(&calls);
    assert_eq!(
        counts.get("completed").copied().unwrap_or(0) + counts.get("failed").copied().unwrap_or(0),
        10_000,
        "{counts:?}"
    );
    let observed_peak = peak(&app, id).await;
    assert!(
        observed_peak <= 100.0,
        "peak {observed_peak} above the limit"
    );
    assert!(observed_peak > 0.0, "the provider saw the calls");
    eprintln!(
        "ten_thousand_targets: {:.1}s, {} attempts, peak {}",
        elapsed.as_secs_f64(),
        stats["attempts_total"],
        observed_peak
    );
    app.shutdown().await;
}

in_both_modes!(closed_business_hours_hold_every_dial);
async fn closed_business_hours_hold_every_dial(mode: Mode) {
    let app = TestApp::spawn_in(mode, |_| {}).await;
    // A one-hour window twelve hours from now, so the campaign is closed for the test.
    let now = Utc::now();
    let later = now + chrono::Duration::hours(12);
    let mut request = body(&unique_name("closed"), 20, 5);
    request["business_hours"] = json!([{
        "day_of_week": later.weekday().num_days_from_sunday(),
        "start": later.format("%H:00").to_string(),
        "end": (later + chrono::Duration::hours(1)).format("%H:00").to_string(),
    }]);
    let created = app.create_campaign(request).await;
    let id = created["id"].as_str().expect("id");
    app.start(id).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let stats = app.stats(id).await;
    assert_eq!(
        stats["attempts_total"], 0,
        "nothing dials outside the window: {stats}"
    );
    assert_eq!(stats["pending_calls"], 20);

    // Opening the window (24x7) lets the campaign run at once.
    let (status, updated) = app
        .put(
            &format!("/api/v1/campaigns/{id}"),
            json!({"business_hours": []}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    app.wait_completed(id, Duration::from_secs(30)).await;
    app.shutdown().await;
}

in_both_modes!(pause_holds_new_attempts_and_start_resumes);
async fn pause_holds_new_attempts_and_start_resumes(mode: Mode) {
    let app = TestApp::spawn_in(mode, |s| {
        s.telephony.mock.min_duration = GoDuration(Duration::from_millis(20));
        s.telephony.mock.max_duration = GoDuration(Duration::from_millis(60));
    })
    .await;
    let created = app
        .create_campaign(body(&unique_name("pause"), 400, 5))
        .await;
    let id = created["id"].as_str().expect("id");
    app.start(id).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.post_empty(&format!("/api/v1/campaigns/{id}/pause"))
            .await
            .0,
        204
    );
    // Attempts already dialing finish; then nothing new starts.
    let paused = app
        .wait_stats(id, Duration::from_secs(20), |s| s["in_progress_calls"] == 0)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still = app.stats(id).await;
    assert_eq!(
        paused["attempts_total"], still["attempts_total"],
        "no attempt while paused"
    );
    assert!(still["pending_calls"].as_u64() > Some(0));
    app.start(id).await;
    app.wait_completed(id, Duration::from_secs(60)).await;
    assert!(peak(&app, id).await <= 5.0);
    app.shutdown().await;
}

in_both_modes!(retryable_failures_use_exactly_the_attempt_budget);
async fn retryable_failures_use_exactly_the_attempt_budget(mode: Mode) {
    let app = TestApp::spawn_in(mode, |s| {
        s.telephony.mock.success_rate = 0.0;
        s.telephony.mock.retryable_rate = 1.0;
    })
    .await;
    let created = app
        .create_campaign(body(&unique_name("retry"), 30, 10))
        .await;
    let id = created["id"].as_str().expect("id");
    app.start(id).await;
    let stats = app.wait_completed(id, Duration::from_secs(30)).await;
    assert_eq!(stats["failed_calls"], 30);
    assert_eq!(stats["attempts_total"], 90);
    assert_eq!(stats["retries_attempted"], 60);
    for call in app.all_calls(id).await {
        assert_eq!(call["attempt_count"], 3, "{call}");
        assert_eq!(call["status"], "failed");
        assert!(call["last_error"].is_string());
    }
    app.shutdown().await;
}

in_both_modes!(non_retryable_failures_stop_at_once);
async fn non_retryable_failures_stop_at_once(mode: Mode) {
    let app = TestApp::spawn_in(mode, |s| {
        s.telephony.mock.success_rate = 0.0;
        s.telephony.mock.retryable_rate = 0.0;
    })
    .await;
    let created = app
        .create_campaign(body(&unique_name("fatal"), 20, 10))
        .await;
    let id = created["id"].as_str().expect("id");
    app.start(id).await;
    let stats = app.wait_completed(id, Duration::from_secs(30)).await;
    assert_eq!(stats["failed_calls"], 20);
    assert_eq!(stats["attempts_total"], 20);
    app.shutdown().await;
}

in_both_modes!(a_campaign_at_its_limit_does_not_delay_another);
async fn a_campaign_at_its_limit_does_not_delay_another(mode: Mode) {
    let app = TestApp::spawn_in(mode, |s| {
        s.telephony.mock.min_duration = GoDuration(Duration::from_millis(200));
        s.telephony.mock.max_duration = GoDuration(Duration::from_millis(200));
        s.telephony.mock.success_rate = 1.0;
    })
    .await;
    let slow = app
        .create_campaign(body(&unique_name("slow"), 1_000, 2))
        .await;
    let fast = app
        .create_campaign(body(&unique_name("fast"), 20, 20))
        .await;
    let slow_id = slow["id"].as_str().expect("id");
    let fast_id = fast["id"].as_str().expect("id");
    app.start(slow_id).await;
    app.start(fast_id).await;
    app.wait_completed(fast_id, Duration::from_secs(10)).await;
    let slow_stats = app.stats(slow_id).await;
    assert!(
        slow_stats["pending_calls"].as_u64() > Some(900),
        "{slow_stats}"
    );
    assert!(peak(&app, slow_id).await <= 2.0);
    app.post_empty(&format!("/api/v1/campaigns/{slow_id}/complete"))
        .await;
    app.shutdown().await;
}

in_both_modes!(complete_cancels_waiting_calls_and_lets_dialing_ones_finish);
async fn complete_cancels_waiting_calls_and_lets_dialing_ones_finish(mode: Mode) {
    let app = TestApp::spawn_in(mode, |s| {
        s.telephony.mock.min_duration = GoDuration(Duration::from_millis(300));
        s.telephony.mock.max_duration = GoDuration(Duration::from_millis(300));
        s.telephony.mock.success_rate = 1.0;
    })
    .await;
    let created = app
        .create_campaign(body(&unique_name("cancel"), 100, 4))
        .await;
    let id = created["id"].as_str().expect("id");
    app.start(id).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        app.post_empty(&format!("/api/v1/campaigns/{id}/complete"))
            .await
            .0,
        204
    );
    let right_after = app.stats(id).await;
    assert_eq!(right_after["pending_calls"], 0, "{right_after}");
    assert!(
        right_after["canceled_calls"].as_u64() >= Some(90),
        "{right_after}"
    );
    let settled = app
        .wait_stats(id, Duration::from_secs(20), |s| s["in_progress_calls"] == 0)
        .await;
    assert_eq!(
        settled["completed_calls"].as_u64().unwrap_or(0)
            + settled["canceled_calls"].as_u64().unwrap_or(0),
        100
    );
    app.shutdown().await;
}

in_both_modes!(a_triggered_call_goes_through_the_pipeline);
async fn a_triggered_call_goes_through_the_pipeline(mode: Mode) {
    let app = TestApp::spawn_in(mode, |s| s.telephony.mock.success_rate = 1.0).await;
    let created = app
        .create_campaign(body(&unique_name("trigger"), 3, 2))
        .await;
    let id = created["id"].as_str().expect("id");
    app.start(id).await;
    app.wait_completed(id, Duration::from_secs(10)).await;
    // Completed campaigns take no new calls; a fresh campaign shows the trigger path.
    let other = app
        .create_campaign(body(&unique_name("trigger2"), 3, 2))
        .await;
    let other_id = other["id"].as_str().expect("id");
    let (status, call) = app
        .post(
            "/api/v1/calls",
            json!({"campaign_id": other_id, "phone_number": "+15550000001"}),
        )
        .await;
    assert_eq!(status, 202, "{call}");
    app.start(other_id).await;
    app.wait_completed(other_id, Duration::from_secs(10)).await;
    let (_, detail) = app
        .get(&format!(
            "/api/v1/calls/{}",
            call["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(detail["status"], "completed", "{detail}");
    assert_eq!(detail["attempts"].as_array().map(Vec::len), Some(1));
    let stats = app.stats(other_id).await;
    assert_eq!(stats["total_calls"], 4);
    app.shutdown().await;
}

in_both_modes!(the_global_cap_holds_across_campaigns);
async fn the_global_cap_holds_across_campaigns(mode: Mode) {
    // One provider per process, so this test reads its own provider through the context.
    let app = TestApp::spawn_in(mode, |s| {
        s.throttle.global_concurrency = 3;
        s.telephony.mock.min_duration = GoDuration(Duration::from_millis(10));
        s.telephony.mock.max_duration = GoDuration(Duration::from_millis(30));
    })
    .await;
    let a = app
        .create_campaign(body(&unique_name("cap-a"), 60, 10))
        .await;
    let b = app
        .create_campaign(body(&unique_name("cap-b"), 60, 10))
        .await;
    let (a, b) = (a["id"].as_str().expect("id"), b["id"].as_str().expect("id"));
    app.start(a).await;
    app.start(b).await;
    app.wait_completed(a, Duration::from_secs(60)).await;
    app.wait_completed(b, Duration::from_secs(60)).await;
    let (peak_a, peak_b) = (peak(&app, a).await, peak(&app, b).await);
    assert!(peak_a <= 3.0 && peak_b <= 3.0, "{peak_a} {peak_b}");
    let total = app.provider_total_peak();
    assert!(
        total <= 3,
        "global peak {total} above throttle.global_concurrency"
    );
    assert!(total > 0);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_go_to_the_dead_letter_queue() {
    use outbound::ports::{Message, Topic};
    let app = TestApp::spawn().await;
    let counter = || {
        outbound::metrics::metrics()
            .dead_letters
            .with_label_values(&[Topic::Status.as_str()])
            .get()
    };
    let before = counter();
    app.ctx
        .bus
        .publish(
            Topic::Status,
            vec![Message {
                key: "poison".into(),
                payload: b"{not json".to_vec(),
                headers: Vec::new(),
            }],
        )
        .await
        .expect("publish");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while counter() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "poison message not dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The status role goes on working after it.
    let created = app
        .create_campaign(body(&unique_name("after-poison"), 5, 5))
        .await;
    let id = created["id"].as_str().expect("id");
    app.start(id).await;
    app.wait_completed(id, Duration::from_secs(30)).await;
    app.shutdown().await;
}
