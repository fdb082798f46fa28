//! What the operator console reads: a campaign's live events.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use outbound::settings::GoDuration;

use crate::helpers::{assert_invariant, targets, unique_name, TestApp};

/// A reader of one Server-Sent Events response.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    async fn open(app: &TestApp, campaign: &str) -> Self {
        let response = app
            .client
            .get(app.url(&format!("/api/v1/campaigns/{campaign}/events")))
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status(), 200);
        let media = response.headers()["content-type"].to_str().expect("ascii");
        assert_eq!(media, "text/event-stream");
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event with its name and JSON data; `None` when the stream ended. Comments and
    /// the `retry` field are skipped.
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event: ") {
                        name = Some(value.to_owned());
                    } else if let Some(value) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(value).expect("JSON data"));
                    }
                }
                if let (Some(name), Some(data)) = (name, data) {
                    return Some((name, data));
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.response.chunk())
                .await
                .expect("an event or the end within 30 s")
                .ok()??;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        }
    }
}

/// A campaign's events open with its whole state, follow it as it runs (each statistics
/// snapshot consistent), give a reconnecting client the state it missed, and end when the
/// process stops instead of holding up its shutdown.
#[tokio::test]
async fn a_campaigns_events_follow_it_live() {
    let grace = Duration::from_secs(20);
    let app = TestApp::spawn_with(|settings| {
        settings.runtime.shutdown_grace = GoDuration(grace);
        // Long enough calls that the campaign runs across several of the stream's ticks.
        settings.telephony.mock.min_duration = GoDuration(Duration::from_millis(300));
        settings.telephony.mock.max_duration = GoDuration(Duration::from_millis(300));
    })
    .await;
    let created = app
        .create_campaign(json!({
            "name": unique_name("events"),
            "time_zone": "UTC",
            "recipient_hours": [],
            "max_concurrent_calls": 2,
            "targets": targets(20, 0),
        }))
        .await;
    let id = created["id"].as_str().expect("id").to_owned();
    let mut events = Events::open(&app, &id).await;
    let (name, campaign) = events.next().await.expect("first event");
    assert_eq!(
        (name.as_str(), &campaign["status"]),
        ("campaign", &json!("pending"))
    );
    let (name, stats) = events.next().await.expect("second event");
    assert_eq!(
        (name.as_str(), &stats["total_calls"]),
        ("stats", &json!(20))
    );
    app.start(&id).await;
    let mut statuses = vec!["pending".to_owned()];
    let mut last_stats = stats;
    while statuses.last().map(String::as_str) != Some("completed") || !finished(&last_stats) {
        let (name, data) = events.next().await.expect("the stream goes on");
        match name.as_str() {
            "campaign" => {
                let status = data["status"].as_str().expect("status").to_owned();
                if statuses.last() != Some(&status) {
                    statuses.push(status);
                }
            }
            "stats" => {
                assert_invariant(&data);
                last_stats = data;
            }
            other => panic!("unexpected event {other}"),
        }
    }
    assert_eq!(statuses, ["pending", "in_progress", "completed"]);
    // A client that reconnects gets the state it missed at once.
    let mut again = Events::open(&app, &id).await;
    let (_, campaign) = again.next().await.expect("campaign");
    assert_eq!(campaign["status"], "completed");
    let (_, stats) = again.next().await.expect("stats");
    assert_eq!(stats, last_stats);
    for (path, status) in [
        (
            format!("/api/v1/campaigns/{}/events", uuid::Uuid::now_v7()),
            404,
        ),
        ("/api/v1/campaigns/nope/events".to_owned(), 400),
    ] {
        let (got, body) = app.get(&path).await;
        assert_eq!(got, status, "{path}: {body}");
    }
    // Open streams end with the process rather than keeping it for its grace period.
    let stopping = Instant::now();
    app.shutdown().await;
    assert!(
        stopping.elapsed() < grace,
        "the open streams held up the shutdown"
    );
    assert!(again.next().await.is_none(), "the stream ended");
    assert!(events.next().await.is_none(), "the stream ended");
}

fn finished(stats: &Value) -> bool {
    stats["pending_calls"] == 0 && stats["in_progress_calls"] == 0
}

fn instant(value: &Value) -> chrono::DateTime<chrono::Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("an instant, got {value}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339")
        .with_timezone(&chrono::Utc)
}

/// A campaign under constant conditions ends within 10% of its run from when its forecast said,
/// made a third of the way through; a what-if limit answers without changing the campaign.
#[tokio::test]
async fn a_forecast_lands_within_a_tenth_of_the_run() {
    let app = TestApp::spawn_with(|settings| {
        settings.telephony.mock.min_duration = GoDuration(Duration::from_millis(200));
        settings.telephony.mock.max_duration = GoDuration(Duration::from_millis(200));
        settings.telephony.mock.success_rate = 1.0;
    })
    .await;
    let created = app
        .create_campaign(json!({
            "name": unique_name("forecast"),
            "time_zone": "UTC",
            "recipient_hours": [],
            "max_concurrent_calls": 3,
            "targets": targets(90, 0),
        }))
        .await;
    let id = created["id"].as_str().expect("id").to_owned();
    let path = format!("/api/v1/campaigns/{id}/forecast");
    let (status, before) = app.get(&path).await;
    assert_eq!(status, 200, "{before}");
    assert!(
        before.get("completes_at").is_none(),
        "nothing measured yet: {before}"
    );
    app.start(&id).await;
    app.wait_stats(&id, Duration::from_secs(60), |s| {
        s["completed_calls"].as_u64().unwrap_or(0) >= 30
    })
    .await;
    let (status, forecast) = app.get(&path).await;
    assert_eq!(status, 200, "{forecast}");
    let predicted = instant(&forecast["completes_at"]);
    assert_eq!(forecast["assumptions"]["max_concurrent_calls"], 3);
    assert_eq!(forecast["assumptions"]["attempts_per_call"], 1.0);
    let (status, doubled) = app.get(&format!("{path}?max_concurrent_calls=6")).await;
    assert_eq!(status, 200, "{doubled}");
    assert_eq!(doubled["what_if"], json!(["max_concurrent_calls"]));
    assert!(
        instant(&doubled["completes_at"]) < predicted,
        "{doubled} vs {forecast}"
    );
    app.wait_completed(&id, Duration::from_secs(60)).await;
    let campaign = app.campaign(&id).await;
    assert_eq!(
        campaign["max_concurrent_calls"], 3,
        "a what-if changes nothing"
    );
    let (started, ended) = (
        instant(&campaign["started_at"]),
        instant(&campaign["completed_at"]),
    );
    let error = (predicted - ended).num_milliseconds().abs() as f64;
    let run = (ended - started).num_milliseconds() as f64;
    assert!(
        error <= run / 10.0,
        "predicted {predicted}, ended {ended}: off by {error} ms of a {run} ms run ({forecast})"
    );
    let (_, done) = app.get(&path).await;
    assert_eq!(instant(&done["completes_at"]), ended);
    for (query, code) in [
        ("?max_concurrent_calls=0", 400),
        ("?max_concurrent_calls=many", 400),
        ("?business_hours=nope", 400),
    ] {
        let (status, body) = app.get(&format!("{path}{query}")).await;
        assert_eq!(status, code, "{query}: {body}");
    }
    let (status, _) = app
        .get(&format!(
            "/api/v1/campaigns/{}/forecast",
            uuid::Uuid::now_v7()
        ))
        .await;
    assert_eq!(status, 404);
    app.shutdown().await;
}
