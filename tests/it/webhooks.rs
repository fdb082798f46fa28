//! Webhooks from outside (`spec/webhooks.md`): endpoints managed over the API, every event of
//! a campaign delivered signed to a receiver that fails, hangs and deduplicates, the log of
//! deliveries and manual retries, and the addresses an endpoint may not have.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use outbound::domain::webhook::Secret;
use outbound::settings::{GoDuration, Settings};
use outbound::webhook_receiver::{Behaviour, Received, WebhookReceiver};
use serde_json::{json, Value};

use crate::helpers::{targets, unique_name, Mode, TestApp};
use crate::in_both_modes;

fn receiver() -> WebhookReceiver {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("receiver port");
    WebhookReceiver::start(listener).expect("receiver starts")
}

/// A deployment whose receivers are on this machine, over plain HTTP, with a quick schedule.
fn local_receivers(settings: &mut Settings) {
    let hooks = &mut settings.webhooks;
    hooks.allow_http = true;
    hooks.allow_private_networks = true;
    hooks.timeout = GoDuration(Duration::from_millis(500));
    hooks.retry_schedule = vec![
        GoDuration(Duration::from_millis(100)),
        GoDuration(Duration::from_millis(200)),
    ];
    hooks.poll_interval = GoDuration(Duration::from_millis(50));
}

/// Creates an endpoint for `path` of `receiver` and tells the receiver its secret.
async fn subscribe(app: &TestApp, receiver: &WebhookReceiver, path: &str, events: Value) -> Value {
    let (status, created) = app
        .post(
            "/api/v1/webhooks",
            json!({"url": format!("{}{path}", receiver.url()), "events": events,
                   "description": path}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().expect("secret");
    assert!(secret.starts_with("whsec_"), "{created}");
    receiver.expect_secret(
        path,
        Secret::parse(secret).expect("a Standard Webhooks secret"),
    );
    created
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not after {limit:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn types(received: &[Received]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in received {
        *counts
            .entry(r.body["type"].as_str().unwrap_or_default().to_owned())
            .or_insert(0) += 1;
    }
    counts
}

async fn a_campaign_reaches_its_endpoints(mode: Mode) {
    let hooks = receiver();
    hooks.set("/flaky", Behaviour::FailFirst(2));
    hooks.set("/hang", Behaviour::Hang);
    let app = TestApp::spawn_in(mode, local_receivers).await;
    let all = subscribe(&app, &hooks, "/all", json!(["*"])).await;
    let flaky = subscribe(&app, &hooks, "/flaky", json!(["call.finished"])).await;
    let hang = subscribe(&app, &hooks, "/hang", json!(["*"])).await;

    let campaign = app
        .create_campaign(json!({
            "name": unique_name("hooks"),
            "time_zone": "UTC",
            "max_concurrent_calls": 5,
            "retry_policy": {"max_attempts": 1, "base_delay": "10ms", "max_delay": "10ms", "jitter": 0},
            "targets": targets(3, 0),
        }))
        .await;
    let id = campaign["id"].as_str().expect("id").to_owned();
    app.start(&id).await;
    let stats = app.wait_completed(&id, Duration::from_secs(30)).await;
    let attempts = stats["attempts_total"].as_u64().expect("attempts");

    // Every event, once each, signed; a hanging endpoint delays none of them.
    let expected = usize::try_from(attempts).expect("count") + 3 + 2;
    wait_for("every event at /all", Duration::from_secs(20), || {
        hooks.accepted("/all").len() >= expected
    })
    .await;
    let delivered = hooks.accepted("/all");
    assert_eq!(delivered.len(), expected);
    assert!(delivered.iter().all(|r| r.signed), "signatures check out");
    let counts = types(&delivered);
    assert_eq!(counts.get("call.finished"), Some(&3), "{counts:?}");
    assert_eq!(
        counts.get("campaign.status_changed"),
        Some(&2),
        "{counts:?}"
    );
    let changes: Vec<(String, String)> = delivered
        .iter()
        .filter(|r| r.body["type"] == "campaign.status_changed")
        .map(|r| {
            let data = &r.body["data"];
            (
                data["from"].as_str().unwrap_or_default().to_owned(),
                data["to"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        changes.contains(&("pending".into(), "in_progress".into())),
        "{changes:?}"
    );
    assert!(
        changes.contains(&("in_progress".into(), "completed".into())),
        "{changes:?}"
    );
    let finished = delivered
        .iter()
        .find(|r| r.body["type"] == "call.finished")
        .expect("a finished call");
    let data = &finished.body["data"];
    assert_eq!(data["campaign_id"], id.as_str());
    assert!(
        data["phone_number"]
            .as_str()
            .is_some_and(|n| n.starts_with('+')),
        "{data}"
    );
    let attempt = delivered
        .iter()
        .find(|r| r.body["type"] == "attempt.finished")
        .expect("a finished attempt");
    assert_eq!(attempt.body["data"]["attempt"], 1, "{}", attempt.body);

    // A failing endpoint gets each event again, the same id and body, until it takes it.
    wait_for(
        "the flaky endpoint recovers",
        Duration::from_secs(20),
        || hooks.accepted("/flaky").len() >= 3,
    )
    .await;
    let tries = hooks.received("/flaky");
    let first = &tries[0];
    let again: Vec<&Received> = tries.iter().filter(|r| r.id == first.id).collect();
    assert!(again.len() >= 2, "retried: {tries:?}");
    assert!(again.iter().all(|r| r.body == first.body && r.signed));
    let log_path = format!(
        "/api/v1/webhooks/{}/deliveries",
        flaky["id"].as_str().expect("id")
    );
    // The receiver answers before the deliverer records its answer: the log catches up.
    let started = Instant::now();
    let retried = loop {
        let (status, log) = app.get(&log_path).await;
        assert_eq!(status, 200, "{log}");
        let entries = log["deliveries"].as_array().expect("deliveries");
        assert_eq!(entries.len(), 3, "{log}");
        let retried = entries
            .iter()
            .find(|d| d["id"] == first.id.as_str())
            .expect("the retried delivery")
            .clone();
        if retried["status"] == "delivered" || started.elapsed() > Duration::from_secs(10) {
            break retried;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(retried["status"], "delivered", "{retried}");
    assert!(retried["attempts"].as_u64() >= Some(2), "{retried}");
    assert_eq!(retried["type"], "call.finished");

    // The hanging endpoint's deliveries wait with their reason.
    let hang_log = format!(
        "/api/v1/webhooks/{}/deliveries?status=pending",
        hang["id"].as_str().expect("id")
    );
    let mut reason = Value::Null;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let (_, log) = app.get(&hang_log).await;
        if let Some(d) = log["deliveries"]
            .as_array()
            .and_then(|d| d.iter().find(|d| !d["last_error"].is_null()))
        {
            reason = d["last_error"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reason, "timeout");

    // The list shows no secret; a page token walks the log; a retry sends a delivered one again.
    let (_, list) = app.get("/api/v1/webhooks").await;
    let listed = list["webhooks"].as_array().expect("webhooks");
    assert_eq!(listed.len(), 3, "{list}");
    assert!(listed.iter().all(|w| w.get("secret").is_none()), "{list}");
    let all_log = format!(
        "/api/v1/webhooks/{}/deliveries",
        all["id"].as_str().expect("id")
    );
    let (_, page) = app.get(&format!("{all_log}?limit=2")).await;
    let token = page["next_page_token"]
        .as_str()
        .expect("more pages")
        .to_owned();
    let (_, rest) = app
        .get(&format!("{all_log}?limit=1000&page_token={token}"))
        .await;
    assert_eq!(
        page["deliveries"].as_array().map(Vec::len).unwrap_or(0)
            + rest["deliveries"].as_array().map(Vec::len).unwrap_or(0),
        expected
    );
    let one = delivered[0].id.clone();
    let (status, _) = app.post_empty(&format!("{all_log}/{one}/retry")).await;
    assert_eq!(status, 202);
    wait_for("the retried delivery", Duration::from_secs(10), || {
        hooks
            .received("/all")
            .iter()
            .filter(|r| r.id == one)
            .count()
            == 2
    })
    .await;
    let (status, _) = app
        .post_empty(&format!(
            "{all_log}/msg_00000000000000000000000000000000/retry"
        ))
        .await;
    assert_eq!(status, 404);

    // The tries are counted by result, and the backlog is a gauge.
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for needle in [
        "outbound_webhook_deliveries_total{result=\"delivered\"}",
        "outbound_webhook_deliveries_total{result=\"timeout\"}",
        "outbound_webhook_delivery_seconds_count",
        "outbound_webhook_backlog",
    ] {
        assert!(metrics.contains(needle), "{needle} in /metrics");
    }

    // Deleting an endpoint drops what it had pending.
    let hang_path = format!("/api/v1/webhooks/{}", hang["id"].as_str().expect("id"));
    let response = app
        .client
        .delete(app.url(&hang_path))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), 204);
    let (status, _) = app.get(&format!("{hang_path}/deliveries")).await;
    assert_eq!(status, 404);
    app.shutdown().await;
    hooks.stop().await;
}

in_both_modes!(a_campaign_reaches_its_endpoints);

/// An endpoint must be https and public unless the deployment says otherwise, and must name
/// events and campaigns that exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_is_checked_at_create() {
    let app = TestApp::spawn().await;
    for (body, field) in [
        (
            json!({"url": "http://crm.example.com/hooks", "events": ["*"]}),
            "url",
        ),
        (
            json!({"url": "https://127.0.0.1/hooks", "events": ["*"]}),
            "loopback",
        ),
        (
            json!({"url": "https://localhost:8443/hooks", "events": ["*"]}),
            "loopback",
        ),
        (
            json!({"url": "https://169.254.169.254/latest", "events": ["*"]}),
            "cloud metadata",
        ),
        (
            json!({"url": "https://10.1.2.3/", "events": ["*"]}),
            "private",
        ),
        (
            json!({"url": "https://[::1]/", "events": ["*"]}),
            "loopback",
        ),
        (
            json!({"url": "https://user:pw@crm.example.com/", "events": ["*"]}),
            "url",
        ),
        (
            json!({"url": "https://crm.example.com/", "events": []}),
            "events",
        ),
        (
            json!({"url": "https://crm.example.com/", "events": ["call.started"]}),
            "call.started",
        ),
        (
            json!({"url": "https://crm.example.com/", "events": ["*"],
                "campaign_id": "0190a0a0-0000-7000-8000-000000000000"}),
            "campaign_id",
        ),
        (json!({"events": ["*"]}), "url"),
    ] {
        let (status, error) = app.post("/api/v1/webhooks", body.clone()).await;
        assert_eq!(status, 400, "{body} → {error}");
        assert_eq!(error["code"], "validation_failed", "{error}");
        assert!(
            error["details"].to_string().contains(field),
            "{body} → {error}"
        );
    }
    let (status, created) = app
        .post(
            "/api/v1/webhooks",
            json!({"url": "https://93.184.215.14/hooks", "events": ["call.opted_out"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["events"], json!(["call.opted_out"]));
    let (status, _) = app
        .get("/api/v1/webhooks/0190a0a0-0000-7000-8000-000000000000/deliveries")
        .await;
    assert_eq!(status, 404);
    let (status, error) = app
        .get(&format!(
            "/api/v1/webhooks/{}/deliveries?status=lost",
            created["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(status, 400, "{error}");
    app.shutdown().await;
}

/// The fan-out makes deliveries only while some endpoint is short of them: while every
/// endpoint has `keep_due` due, a flood's events wait as one row each (and count in the
/// backlog); once the readiest endpoint has taken its own, the next ones are made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fan_out_keeps_endpoints_topped_up_not_flooded() {
    use outbound::context::AppContext;
    use outbound::domain::campaign::{PauseReason, StatusAction};
    use outbound::domain::webhook::Subscription;
    use outbound::ports::Endpoint;
    use outbound::process::role::RoleName;
    use outbound::roles::webhooks::Deliverer;

    use crate::helpers::Unaudited;

    let dir = tempfile::tempdir().expect("dir");
    let settings = crate::helpers::test_settings(dir.path());
    let ctx = AppContext::build(
        settings,
        &std::collections::BTreeSet::from([RoleName::Status]),
        true,
    )
    .await
    .expect("context");
    let store = &ctx.store;
    let endpoint = Endpoint {
        id: outbound::domain::ids::EndpointId::new(),
        url: "https://example.com/hooks".into(),
        subscription: Subscription::all(),
        campaign_id: None,
        description: None,
        secret: Secret::from_bytes([7; 32]),
        created_at: chrono::Utc::now(),
    };
    store
        .create_endpoint(&endpoint, None)
        .await
        .expect("endpoint");
    let campaign = crate::fixtures::started_campaign(&**store, 2).await;
    // Each change of the campaign's status is one event.
    let flip = |action: StatusAction| async move {
        let now = chrono::Utc::now();
        match action {
            StatusAction::Pause => store
                .pause_for_carrier(
                    campaign,
                    PauseReason::carrier_refused(None, "x".into()),
                    now,
                )
                .await
                .map(|_| ()),
            other => store
                .transition_campaign(campaign, other, now)
                .await
                .map(|_| ()),
        }
        .expect("status change");
    };
    flip(StatusAction::Pause).await;
    flip(StatusAction::Start).await;
    let deliverer = Deliverer::new(ctx.clone());
    assert_eq!(
        deliverer.fan_out(2).await.expect("fan out"),
        3,
        "nothing due: the started, paused and resumed campaign's events are made deliveries"
    );

    flip(StatusAction::Pause).await;
    flip(StatusAction::Start).await;
    assert_eq!(
        deliverer.fan_out(2).await.expect("fan out"),
        0,
        "three due, more than the two kept: the new events wait"
    );
    assert_eq!(store.delivery_backlog().await.expect("backlog"), 5);

    let now = chrono::Utc::now() + chrono::Duration::seconds(1);
    let until = now + chrono::Duration::seconds(60);
    let claimed = store
        .claim_deliveries(endpoint.id, "taken", now, until, 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 3);
    assert_eq!(
        deliverer.fan_out(2).await.expect("fan out"),
        2,
        "taken: the waiting events are made deliveries"
    );
}
