//! The HTTP contract: status codes, error envelope, validation, pagination, status machine.

use chrono::Datelike;
use serde_json::{json, Value};

use crate::helpers::{decode, targets, unique_name, Mode, TestApp};
use crate::in_both_modes;

fn campaign_body(name: &str) -> Value {
    json!({
        "name": name,
        "description": "Sample outbound campaign",
        "time_zone": "America/New_York",
        "max_concurrent_calls": 10,
        "retry_policy": {"max_attempts": 3, "base_delay": "2s", "max_delay": "30s", "jitter": 0.2},
        "business_hours": [{"day_of_week": 1, "start": "09:00", "end": "18:00"}],
        "targets": [{"phone_number": "+15555550001"}, {"phone_number": "+15555550002"}]
    })
}

fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    let trace = body["trace_id"].as_str().expect("trace_id present");
    assert!(
        trace.len() == 32 && trace.chars().all(|c| c.is_ascii_hexdigit()),
        "every error carries the request's trace id: {body}"
    );
}

in_both_modes!(create_and_read_back_a_campaign);
async fn create_and_read_back_a_campaign(mode: Mode) {
    let app = TestApp::spawn_in(mode, |_| {}).await;
    let name = unique_name("seed");
    let created = app.create_campaign(campaign_body(&name)).await;
    assert_eq!(created["name"], name.as_str());
    assert_eq!(created["status"], "pending");
    assert_eq!(created["max_concurrent_calls"], 10);
    assert_eq!(created["target_count"], 2);
    assert_eq!(
        created["retry_policy"],
        json!({"max_attempts": 3, "base_delay": "2s", "max_delay": "30s", "jitter": 0.2})
    );
    assert_eq!(
        created["business_hours"],
        json!([{"day_of_week": 1, "start": "09:00", "end": "18:00"}])
    );
    assert!(created["created_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert!(created.get("started_at").is_none());
    let id = created["id"].as_str().expect("id");
    let fetched = app.campaign(id).await;
    assert_eq!(fetched, created);

    let stats = app.stats(id).await;
    assert_eq!(stats["total_targets"], 2);
    assert_eq!(stats["total_calls"], 2);
    assert_eq!(stats["pending_calls"], 2);

    // Defaults when omitted.
    let (status, minimal) = app
        .post(
            "/api/v1/campaigns",
            json!({"name": unique_name("minimal"), "time_zone": "Europe/Paris"}),
        )
        .await;
    assert_eq!(status, 201, "{minimal}");
    assert_eq!(minimal["max_concurrent_calls"], 500);
    assert_eq!(
        minimal["retry_policy"],
        json!({"max_attempts": 5, "base_delay": "2s", "max_delay": "2m0s", "jitter": 0.2})
    );
    assert_eq!(minimal["business_hours"], json!([]));
    app.shutdown().await;
}

in_both_modes!(every_bad_input_gets_its_4xx_and_code);
async fn every_bad_input_gets_its_4xx_and_code(mode: Mode) {
    let app = TestApp::spawn_in(mode, |_| {}).await;
    let base = || campaign_body(&unique_name("bad"));
    let with = |key: &str, value: Value| {
        let mut body = base();
        body[key] = value;
        body
    };
    let cases: Vec<(&str, Value)> = vec![
        ("missing name", {
            let mut b = base();
            b.as_object_mut().map(|o| o.remove("name"));
            b
        }),
        ("empty name", with("name", json!("   "))),
        ("nul in name", with("name", json!("a\u{0}b"))),
        ("nul in description", with("description", json!("x\u{0}y"))),
        (
            "sub-millisecond delay",
            with("retry_policy", json!({"base_delay": "500us"})),
        ),
        ("long name", with("name", json!("x".repeat(201)))),
        ("missing time zone", {
            let mut b = base();
            b.as_object_mut().map(|o| o.remove("time_zone"));
            b
        }),
        ("bad time zone", with("time_zone", json!("Mars/Olympus"))),
        ("zero concurrency", with("max_concurrent_calls", json!(0))),
        (
            "huge concurrency",
            with("max_concurrent_calls", json!(100_001)),
        ),
        (
            "negative concurrency",
            with("max_concurrent_calls", json!(-5)),
        ),
        (
            "max_attempts 0",
            with("retry_policy", json!({"max_attempts": 0})),
        ),
        (
            "max_attempts 21",
            with("retry_policy", json!({"max_attempts": 21})),
        ),
        (
            "base_delay 0",
            with("retry_policy", json!({"base_delay": "0s"})),
        ),
        (
            "base_delay garbage",
            with("retry_policy", json!({"base_delay": "soon"})),
        ),
        (
            "negative delay",
            with("retry_policy", json!({"base_delay": "-1s"})),
        ),
        (
            "max below base",
            with(
                "retry_policy",
                json!({"base_delay": "10s", "max_delay": "5s"}),
            ),
        ),
        (
            "jitter above 1",
            with("retry_policy", json!({"jitter": 1.5})),
        ),
        (
            "jitter negative",
            with("retry_policy", json!({"jitter": -0.1})),
        ),
        (
            "day 7",
            with(
                "business_hours",
                json!([{"day_of_week": 7, "start": "09:00", "end": "10:00"}]),
            ),
        ),
        (
            "start == end",
            with(
                "business_hours",
                json!([{"day_of_week": 1, "start": "09:00", "end": "09:00"}]),
            ),
        ),
        (
            "24:00 start",
            with(
                "business_hours",
                json!([{"day_of_week": 1, "start": "24:00", "end": "10:00"}]),
            ),
        ),
        (
            "bad clock",
            with(
                "business_hours",
                json!([{"day_of_week": 1, "start": "9am", "end": "10:00"}]),
            ),
        ),
        (
            "missing end",
            with(
                "business_hours",
                json!([{"day_of_week": 1, "start": "09:00"}]),
            ),
        ),
        (
            "not e164",
            with("targets", json!([{"phone_number": "5555550001"}])),
        ),
        (
            "too short",
            with("targets", json!([{"phone_number": "+1555"}])),
        ),
        (
            "impossible length",
            with("targets", json!([{"phone_number": "+155555500011"}])),
        ),
        (
            "letters",
            with("targets", json!([{"phone_number": "+1555CALLNOW"}])),
        ),
        ("missing number", with("targets", json!([{"metadata": {}}]))),
    ];
    for (label, body) in cases {
        let (status, response) = app.post("/api/v1/campaigns", body).await;
        assert_error(status, &response, 400, "validation_failed");
        assert!(
            response["details"]
                .as_array()
                .is_some_and(|d| !d.is_empty()),
            "{label}: {response}"
        );
    }

    // Wrong JSON types and malformed JSON.
    for body in [
        json!({"name": 5, "time_zone": "UTC"}),
        json!([1, 2]),
        json!("x"),
    ] {
        let (status, response) = app.post("/api/v1/campaigns", body).await;
        assert_error(status, &response, 400, "malformed_body");
    }
    let response = app
        .client
        .post(app.url("/api/v1/campaigns"))
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .expect("sent");
    let (status, body) = crate::helpers::decode(response).await;
    assert_error(status, &body, 400, "malformed_body");

    // Wrong media type.
    let response = app
        .client
        .post(app.url("/api/v1/campaigns"))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .expect("sent");
    let (status, body) = crate::helpers::decode(response).await;
    assert_error(status, &body, 415, "unsupported_media_type");

    // Unknown routes and methods; bad ids; unknown ids.
    let (status, body) = app.get("/api/v1/nothing").await;
    assert_error(status, &body, 404, "route_not_found");
    let response = app
        .client
        .delete(app.url("/api/v1/campaigns"))
        .send()
        .await
        .expect("sent");
    let (status, body) = crate::helpers::decode(response).await;
    assert_error(status, &body, 405, "method_not_allowed");
    // Under a campaign: an unknown sub-route, a known one with the wrong method.
    let some = uuid::Uuid::now_v7();
    for path in [
        format!("/api/v1/campaigns/{some}/nothing"),
        format!("/api/v1/campaigns/{some}/stats/extra"),
        format!("/api/v1/calls/{some}/nothing"),
    ] {
        let (status, body) = app.get(&path).await;
        assert_error(status, &body, 404, "route_not_found");
    }
    for (path, method) in [("stats", "POST"), ("start", "GET"), ("attempts", "DELETE")] {
        let response = app
            .client
            .request(
                method.parse().expect("method"),
                app.url(&format!("/api/v1/campaigns/{some}/{path}")),
            )
            .send()
            .await
            .expect("sent");
        let (status, body) = crate::helpers::decode(response).await;
        assert_error(status, &body, 405, "method_not_allowed");
    }
    let (status, body) = app.get("/api/v1/campaigns/not-a-uuid").await;
    assert_error(status, &body, 400, "invalid_id");
    let (status, body) = app.get("/api/v1/calls/123").await;
    assert_error(status, &body, 400, "invalid_id");
    let unknown = uuid::Uuid::now_v7();
    for path in [
        format!("/api/v1/campaigns/{unknown}"),
        format!("/api/v1/campaigns/{unknown}/stats"),
        format!("/api/v1/campaigns/{unknown}/calls"),
        format!("/api/v1/calls/{unknown}"),
        format!("/api/v1/campaigns/{unknown}/attempts"),
    ] {
        let (status, body) = app.get(&path).await;
        assert_error(status, &body, 404, "not_found");
    }
    for action in ["start", "pause", "complete"] {
        let (status, body) = app
            .post_empty(&format!("/api/v1/campaigns/{unknown}/{action}"))
            .await;
        assert_error(status, &body, 404, "not_found");
    }
    let (status, body) = app
        .put(
            &format!("/api/v1/campaigns/{unknown}"),
            json!({"description": "x"}),
        )
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = app
        .post(
            "/api/v1/calls",
            json!({"campaign_id": unknown.to_string(), "phone_number": "+15555550001"}),
        )
        .await;
    assert_error(status, &body, 404, "not_found");

    // Paging parameters.
    for query in ["limit=0", "limit=1001", "limit=abc", "status=bogus"] {
        let (status, body) = app.get(&format!("/api/v1/campaigns?{query}")).await;
        assert_error(status, &body, 400, "validation_failed");
    }
    let (status, body) = app.get("/api/v1/campaigns?page_token=%%%").await;
    assert_error(status, &body, 400, "invalid_page_token");
    let (status, body) = app.get("/api/v1/campaigns?page_token=abcd").await;
    assert_error(status, &body, 400, "invalid_page_token");
    let campaign = app
        .create_campaign(campaign_body(&unique_name("paging")))
        .await;
    let attempts = format!(
        "/api/v1/campaigns/{}/attempts",
        campaign["id"].as_str().expect("id")
    );
    for query in ["limit=0", "limit=1001", "limit=-1"] {
        let (status, body) = app.get(&format!("{attempts}?{query}")).await;
        assert_error(status, &body, 400, "validation_failed");
    }
    for token in ["%%%", "abcd", "AAAA"] {
        let (status, body) = app.get(&format!("{attempts}?page_token={token}")).await;
        assert_error(status, &body, 400, "invalid_page_token");
    }
    let (status, body) = app.get(&attempts).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"attempts": []}));
    app.shutdown().await;
}

in_both_modes!(oversized_bodies_get_413);
async fn oversized_bodies_get_413(mode: Mode) {
    let app = TestApp::spawn_in(mode, |s| s.http.body_limit_bytes = 1024).await;
    let mut body = campaign_body(&unique_name("big"));
    body["targets"] = Value::Array(targets(200, 0));
    let (status, response) = app.post("/api/v1/campaigns", body).await;
    assert_eq!(status, 413, "{response}");
    assert_eq!(response["code"], "payload_too_large");
    app.shutdown().await;
}

in_both_modes!(names_are_unique_case_insensitively);
async fn names_are_unique_case_insensitively(mode: Mode) {
    let app = TestApp::spawn_in(mode, |_| {}).await;
    let name = unique_name("Dup");
    app.create_campaign(campaign_body(&name)).await;
    let (status, body) = app
        .post("/api/v1/campaigns", campaign_body(&name.to_uppercase()))
        .await;
    assert_error(status, &body, 409, "duplicate_name");
    let other = app
        .create_campaign(campaign_body(&unique_name("other")))
        .await;
    let id = other["id"].as_str().expect("id");
    let (status, body) = app
        .put(
            &format!("/api/v1/campaigns/{id}"),
            json!({"name": name.to_lowercase()}),
        )
        .await;
    assert_error(status, &body, 409, "duplicate_name");
    app.shutdown().await;
}

in_both_modes!(status_machine_and_updates_follow_the_spec);
async fn status_machine_and_updates_follow_the_spec(mode: Mode) {
    let app = TestApp::spawn_in(mode, |_| {}).await;
    let mut body = campaign_body(&unique_name("machine"));
    // A window three days from today (UTC) keeps calls queued while we test transitions, at
    // any hour the test runs. (No windows at all would mean always open: the two calls could
    // be dialed and the campaign complete on its own before the test completes it.)
    let closed_day = (chrono::Utc::now().weekday().num_days_from_sunday() + 3) % 7;
    body["business_hours"] = json!([{"day_of_week": closed_day, "start": "09:00", "end": "10:00"}]);
    body["time_zone"] = json!("UTC");
    let created = app.create_campaign(body).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let path = |action: &str| format!("/api/v1/campaigns/{id}/{action}");

    // Update only what is present; a present retry_policy is replaced whole.
    let (status, updated) = app
        .put(
            &format!("/api/v1/campaigns/{id}"),
            json!({"description": "Evening calling window", "max_concurrent_calls": 25,
                   "retry_policy": {"max_attempts": 4}}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["description"], "Evening calling window");
    assert_eq!(updated["max_concurrent_calls"], 25);
    assert_eq!(updated["name"], created["name"]);
    assert_eq!(
        updated["retry_policy"],
        json!({"max_attempts": 4, "base_delay": "2s", "max_delay": "2m0s", "jitter": 0.2})
    );
    assert_eq!(updated["status"], "pending");
    let (status, bad) = app
        .put(
            &format!("/api/v1/campaigns/{id}"),
            json!({"max_concurrent_calls": 0}),
        )
        .await;
    assert_error(status, &bad, 400, "validation_failed");

    assert_eq!(app.post_empty(&path("pause")).await.0, 204);
    assert_eq!(app.campaign(&id).await["status"], "paused");
    assert_eq!(
        app.post_empty(&path("pause")).await.0,
        204,
        "pause on paused is a no-op"
    );
    assert_eq!(app.post_empty(&path("start")).await.0, 204);
    assert_eq!(
        app.post_empty(&path("start")).await.0,
        204,
        "start on in_progress is a no-op"
    );
    let started = app.campaign(&id).await;
    assert!(started["started_at"].is_string());
    assert_eq!(app.post_empty(&path("complete")).await.0, 204);
    let done = app.campaign(&id).await;
    assert_eq!(done["status"], "completed");
    assert!(done["completed_at"].is_string());
    let stats = app.stats(&id).await;
    assert_eq!(stats["pending_calls"], 0);

    for action in ["start", "pause", "complete"] {
        let (status, body) = app.post_empty(&path(action)).await;
        assert_error(status, &body, 409, "invalid_state");
    }
    let (status, body) = app
        .put(
            &format!("/api/v1/campaigns/{id}"),
            json!({"description": "late"}),
        )
        .await;
    assert_error(status, &body, 409, "invalid_state");
    let (status, body) = app
        .post(
            &path("targets"),
            json!({"targets": [{"phone_number": "+15555550001"}]}),
        )
        .await;
    assert_error(status, &body, 409, "invalid_state");
    let (status, body) = app
        .post(
            "/api/v1/calls",
            json!({"campaign_id": id, "phone_number": "+15555550001"}),
        )
        .await;
    assert_error(status, &body, 409, "invalid_state");
    app.shutdown().await;
}

in_both_modes!(targets_and_triggered_calls_accept_only_registered_numbers);
async fn targets_and_triggered_calls_accept_only_registered_numbers(mode: Mode) {
    let app = TestApp::spawn_in(mode, |_| {}).await;
    let created = app
        .create_campaign(campaign_body(&unique_name("targets")))
        .await;
    let id = created["id"].as_str().expect("id").to_owned();

    let (status, body) = app
        .post(
            &format!("/api/v1/campaigns/{id}/targets"),
            json!({"targets": [{"phone_number": "+15555550001"}, {"phone_number": "+15555559999"}]}),
        )
        .await;
    assert_error(status, &body, 400, "validation_failed");
    assert!(
        body["details"].to_string().contains("+15555559999"),
        "{body}"
    );
    let (status, body) = app
        .post(
            &format!("/api/v1/campaigns/{id}/targets"),
            json!({"targets": []}),
        )
        .await;
    assert_error(status, &body, 400, "validation_failed");

    let (status, accepted) = app
        .post(
            &format!("/api/v1/campaigns/{id}/targets"),
            json!({"targets": [{"phone_number": "+1 555 555 0001"}, {"phone_number": "+15555550002"}]}),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted, json!({"accepted": 2}));

    let (status, call) = app
        .post(
            "/api/v1/calls",
            json!({"campaign_id": id, "phone_number": "+15555550001", "metadata": {"priority": "high"}}),
        )
        .await;
    assert_eq!(status, 202, "{call}");
    assert_eq!(call["status"], "queued");
    assert_eq!(call["phone_number"], "+15555550001");
    assert_eq!(call["attempt_count"], 0);
    assert_eq!(call["max_attempts"], 3);
    let (status, body) = app
        .post(
            "/api/v1/calls",
            json!({"campaign_id": id, "phone_number": "+15555550003"}),
        )
        .await;
    assert_error(status, &body, 400, "validation_failed");
    let (status, body) = app
        .post(
            "/api/v1/calls",
            json!({"campaign_id": "nope", "phone_number": "+15555550001"}),
        )
        .await;
    assert_error(status, &body, 400, "validation_failed");

    let stats = app.stats(&id).await;
    assert_eq!(stats["total_calls"], 5);
    assert_eq!(stats["total_targets"], 2);
    let (status, detail) = app
        .get(&format!(
            "/api/v1/calls/{}",
            call["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["attempts"], json!([]));
    app.shutdown().await;
}

in_both_modes!(pages_are_stable_and_complete);
async fn pages_are_stable_and_complete(mode: Mode) {
    let app = TestApp::spawn_in(mode, |_| {}).await;
    let mut body = campaign_body(&unique_name("pages"));
    body["targets"] = Value::Array(targets(250, 0));
    let created = app.create_campaign(body).await;
    let id = created["id"].as_str().expect("id");
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/campaigns/{id}/calls?limit=100");
        if let Some(token) = &token {
            path.push_str(&format!("&page_token={token}"));
        }
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{page}");
        let calls = page["calls"].as_array().expect("calls");
        assert!(calls.len() <= 100);
        seen.extend(
            calls
                .iter()
                .map(|c| c["id"].as_str().expect("id").to_owned()),
        );
        match page["next_page_token"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 250);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "ids are unique and in order");

    let (status, filtered) = app
        .get(&format!("/api/v1/campaigns/{id}/calls?status=completed"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(filtered["calls"], json!([]));

    // A number's calls: its `+` encoded, or bare (a query string reads it as a space).
    let number = targets(250, 0)[17]["phone_number"]
        .as_str()
        .expect("number")
        .to_owned();
    for query in [number.replace('+', "%2B"), number.clone()] {
        let (status, found) = app
            .get(&format!(
                "/api/v1/campaigns/{id}/calls?phone_number={query}"
            ))
            .await;
        assert_eq!(status, 200, "{found}");
        let calls = found["calls"].as_array().expect("calls");
        assert_eq!(calls.len(), 1, "{query}: {found}");
        assert_eq!(calls[0]["phone_number"], number.as_str());
    }
    let (status, none) = app
        .get(&format!(
            "/api/v1/campaigns/{id}/calls?phone_number={}&status=completed",
            number.replace('+', "%2B")
        ))
        .await;
    assert_eq!((status, none["calls"].clone()), (200, json!([])));
    let (status, refused) = app
        .get(&format!("/api/v1/campaigns/{id}/calls?phone_number=12ab"))
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["code"], "validation_failed");

    for i in 0..3 {
        app.create_campaign(campaign_body(&unique_name(&format!("list{i}"))))
            .await;
    }
    let (status, first) = app.get("/api/v1/campaigns?limit=2").await;
    assert_eq!(status, 200);
    assert_eq!(first["campaigns"].as_array().map(Vec::len), Some(2));
    let token = first["next_page_token"].as_str().expect("more pages");
    let (status, second) = app
        .get(&format!("/api/v1/campaigns?limit=2&page_token={token}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(second["campaigns"].as_array().map(Vec::len), Some(2));
    assert!(second.get("next_page_token").is_none(), "{second}");
    let (status, pending) = app.get("/api/v1/campaigns?status=pending").await;
    assert_eq!(status, 200);
    assert_eq!(pending["campaigns"].as_array().map(Vec::len), Some(4));
    app.shutdown().await;
}

in_both_modes!(health_metrics_and_openapi_are_served);
async fn health_metrics_and_openapi_are_served(mode: Mode) {
    let app = TestApp::spawn_in(mode, |_| {}).await;
    let (status, health) = app.get("/healthz").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");
    let mut ready = false;
    for _ in 0..50 {
        if app.get("/readyz").await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(ready, "readyz turns 200 once every role is ready");
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("outbound_http_requests_total"),
        "{metrics}"
    );
    let (status, doc) = app.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')));
    for path in [
        "/api/v1/campaigns",
        "/api/v1/campaigns/{id}",
        "/api/v1/campaigns/{id}/start",
        "/api/v1/campaigns/{id}/stats",
        "/api/v1/campaigns/{id}/targets",
        "/api/v1/campaigns/{id}/calls",
        "/api/v1/campaigns/{id}/attempts",
        "/api/v1/calls",
        "/api/v1/calls/{id}",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from openapi"
        );
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_without_the_api_role_serves_health_on_the_admin_listener() {
    outbound::telemetry::init_for_tests();
    let dir = tempfile::tempdir().expect("dir");
    let mut settings = crate::helpers::test_settings(dir.path());
    settings.http.admin_bind = "127.0.0.1:0".into();
    settings.runtime.roles = vec![
        outbound::process::role::RoleName::Status,
        outbound::process::role::RoleName::Retry,
    ];
    // Built directly: `validate` refuses a role subset with the in-process bus, which is right
    // for a deployment; this test only looks at the listener.
    let node = outbound::runtime::Node::build(settings, true)
        .await
        .expect("builds");
    assert!(node.api_addr().is_none());
    let addr = node.health_addr().expect("admin listener");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(node.run(shutdown.clone()));
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(response) = client.get(format!("http://{addr}/readyz")).send().await {
            if response.status() == 200 {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(ready, "readyz on the admin listener");
    let health = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(health.status(), 200);
    let api = client
        .get(format!("http://{addr}/api/v1/campaigns"))
        .send()
        .await
        .expect("sent");
    let (status, body) = crate::helpers::decode(api).await;
    assert_error(status, &body, 404, "route_not_found");
    shutdown.cancel();
    handle.await.expect("joins").expect("clean exit");
}

/// What the clients of the system we replace send: a trailing slash, `after_id` paging, and
/// `/healthz` read for its `errors` object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replaced_systems_clients_still_work() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let created = app
            .create_campaign(json!({
                "name": unique_name(&format!("compat-{i}")),
                "time_zone": "UTC",
                "targets": targets(2, i * 2),
            }))
            .await;
        ids.push(created["id"].as_str().expect("id").to_owned());
    }
    let (status, slashed) = app.get("/api/v1/campaigns/?limit=1000").await;
    assert_eq!(status, 200, "{slashed}");
    let (_, plain) = app.get("/api/v1/campaigns?limit=1000").await;
    assert_eq!(slashed, plain);
    let (status, one) = app.get(&format!("/api/v1/campaigns/{}/", ids[0])).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["id"], ids[0].as_str());

    // after_id continues after the campaign it names, as the page token would.
    let (_, first) = app.get("/api/v1/campaigns?limit=1").await;
    let first_id = first["campaigns"][0]["id"].as_str().expect("id").to_owned();
    let (status, next) = app
        .get(&format!("/api/v1/campaigns?limit=1&after_id={first_id}"))
        .await;
    assert_eq!(status, 200, "{next}");
    let token = first["next_page_token"].as_str().expect("token");
    let (_, by_token) = app
        .get(&format!("/api/v1/campaigns?limit=1&page_token={token}"))
        .await;
    assert_eq!(next["campaigns"], by_token["campaigns"]);
    let (status, error) = app.get("/api/v1/campaigns?after_id=nope").await;
    assert_eq!(status, 400, "{error}");
    let (status, calls) = app
        .get(&format!("/api/v1/campaigns/{}/calls?limit=1", ids[0]))
        .await;
    assert_eq!(status, 200);
    let call = calls["calls"][0]["id"]
        .as_str()
        .expect("call id")
        .to_owned();
    let (_, rest) = app
        .get(&format!(
            "/api/v1/campaigns/{}/calls?after_id={call}",
            ids[0]
        ))
        .await;
    assert_eq!(rest["calls"].as_array().map(Vec::len), Some(1), "{rest}");

    let (status, health) = app.get("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(health["errors"], json!({}), "{health}");
    app.shutdown().await;
}

/// The calling-rule fields of a campaign: recipient hours default to the configured window
/// (08:00–21:00 every day) and `[]` lifts them; restricted periods and a target's own time zone
/// are checked and kept; bad ones get 400 naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaigns_carry_their_calling_rules() {
    let app = TestApp::spawn_with(|s| {
        s.compliance = outbound::settings::ComplianceSettings::default();
    })
    .await;
    let (status, created) = app
        .post(
            "/api/v1/campaigns",
            json!({
                "name": unique_name("rules"),
                "time_zone": "America/New_York",
                "restricted_periods": [{"name": "winter break", "start": "2026-12-24", "end": "2026-12-26"}],
                "targets": [{"phone_number": "+18085550100", "time_zone": "Pacific/Honolulu"}],
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let windows = created["recipient_hours"]
        .as_array()
        .expect("recipient_hours");
    assert_eq!(windows.len(), 7);
    assert_eq!(windows[0]["start"], "08:00");
    assert_eq!(windows[0]["end"], "21:00");
    assert_eq!(created["restricted_periods"][0]["name"], "winter break");
    assert_eq!(created["restricted_periods"][0]["end"], "2026-12-26");
    let id = created["id"].as_str().expect("id");

    let (status, updated) = app
        .put(
            &format!("/api/v1/campaigns/{id}"),
            json!({"recipient_hours": [], "restricted_periods": []}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["recipient_hours"], json!([]));
    assert_eq!(updated["restricted_periods"], json!([]));

    let (status, refused) = app
        .post(
            "/api/v1/campaigns",
            json!({
                "name": unique_name("bad-rules"),
                "time_zone": "UTC",
                "recipient_hours": [{"day_of_week": 9, "start": "08:00", "end": "21:00"}],
                "restricted_periods": [{"name": "x", "start": "2026-12-26", "end": "2026-12-24"}],
                "targets": [{"phone_number": "+18085550100", "time_zone": "Mars/Olympus"}],
            }),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["code"], "validation_failed");
    let details = refused["details"].to_string();
    for field in [
        "recipient_hours[0].day_of_week",
        "restricted_periods[0].end",
        "targets[0].time_zone",
    ] {
        assert!(details.contains(field), "{field} not in {details}");
    }
    app.shutdown().await;
}

/// The zone `Etc/GMT±N` where the local hour is now `hour` (with the minutes of UTC).
fn zone_at_local_hour(hour: i64) -> String {
    use chrono::Timelike;
    let utc_hour = i64::from(chrono::Utc::now().hour());
    let mut offset = (hour - utc_hour).rem_euclid(24);
    if offset > 14 {
        offset -= 24;
    }
    // The Etc zones' signs are POSIX's: Etc/GMT-3 is three hours ahead of UTC.
    match offset {
        0 => "Etc/GMT".to_owned(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    }
}

/// Through the running roles: a call whose recipient it is now 03:00 for is not dialed, while
/// one for whom it is noon is; the held one stays queued with no attempt spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_recipient_is_not_rung() {
    let app = TestApp::spawn_with(|s| {
        s.compliance = outbound::settings::ComplianceSettings::default();
    })
    .await;
    let created = app
        .create_campaign(json!({
            "name": unique_name("sleeping"),
            "time_zone": "UTC",
            "targets": [
                {"phone_number": "+15555550001", "time_zone": zone_at_local_hour(3)},
                {"phone_number": "+15555550002", "time_zone": zone_at_local_hour(12)},
            ],
        }))
        .await;
    let id = created["id"].as_str().expect("id").to_owned();
    app.start(&id).await;
    let stats = app
        .wait_stats(&id, std::time::Duration::from_secs(30), |s| {
            s["completed_calls"].as_u64().unwrap_or(0) + s["failed_calls"].as_u64().unwrap_or(0)
                >= 1
        })
        .await;
    // Some more scheduler passes, which must all leave the sleeping recipient alone.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let calls = app.all_calls(&id).await;
    let asleep = calls
        .iter()
        .find(|c| c["phone_number"] == "+15555550001")
        .expect("listed");
    assert_eq!(asleep["status"], "queued", "{asleep} / {stats}");
    assert_eq!(asleep["attempt_count"], 0, "{asleep}");
    // The explain route names the rule, from the rules the dialer applied.
    let (status, why) = app
        .get(&format!(
            "/api/v1/calls/{}/explain",
            asleep["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(status, 200, "{why}");
    assert_eq!(why["dialable_now"], false);
    assert_eq!(why["status"], "queued");
    assert_eq!(
        why["reasons"][0]["code"], "outside_recipient_hours",
        "{why}"
    );
    assert!(why["reasons"][0]["until"].is_string(), "{why}");
    // The campaign's explanation counts the sleeping call under the same rule, and says when
    // it may be dialed.
    let (status, campaign_why) = app.get(&format!("/api/v1/campaigns/{id}/explain")).await;
    assert_eq!(status, 200, "{campaign_why}");
    assert_eq!(campaign_why["campaign_id"], id.as_str());
    assert_eq!(campaign_why["status"], "in_progress");
    assert_eq!(campaign_why["dialable_now"], false, "{campaign_why}");
    assert_eq!(
        campaign_why["pending_by_reason"],
        json!({"outside_recipient_hours": 1}),
        "{campaign_why}"
    );
    assert_eq!(
        campaign_why["next_dial_at"], why["reasons"][0]["until"],
        "{campaign_why}"
    );
    let (status, _) = app
        .get(&format!(
            "/api/v1/campaigns/{}/explain",
            uuid::Uuid::now_v7()
        ))
        .await;
    assert_eq!(status, 404);
    let (status, missing) = app
        .get(&format!("/api/v1/calls/{}/explain", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(status, 404, "{missing}");
    app.shutdown().await;
}

async fn send_csv(app: &TestApp, path: &str, body: &str) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(path))
        .header("content-type", "text/csv; charset=utf-8")
        .body(body.to_owned())
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Targets come as CSV too: a create takes the campaign's fields from the query, extra columns
/// become metadata, and a bad row is named by its line before anything is stored.
#[tokio::test]
async fn campaigns_and_targets_come_as_csv() {
    let app = TestApp::spawn().await;
    let name = unique_name("csv");
    // A dry run answers as the create would (every problem, or the targets it would register)
    // and creates nothing.
    let (status, report) = send_csv(
        &app,
        &format!("/api/v1/campaigns?name={name}&time_zone=UTC&dry_run=true"),
        "phone_number\n+15555550001\n555-0100\n+15555550001\n+15555550002\nnope\n",
    )
    .await;
    assert_eq!(status, 400, "{report}");
    let problems: Vec<&str> = report["details"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(problems.len(), 2, "{report}");
    assert!(problems[0].starts_with("line 3: phone_number"), "{report}");
    assert!(problems[1].starts_with("line 6: phone_number"), "{report}");
    // A check names every rejected row of a large upload; a create lists the first hundred.
    let many_bad: String = (0..250).map(|i| format!("bad-{i}\n")).collect();
    let many_bad = format!("phone_number\n{many_bad}");
    for (dry_run, listed) in [(true, 250), (false, 100)] {
        let (status, report) = send_csv(
            &app,
            &format!("/api/v1/campaigns?name={name}&time_zone=UTC&dry_run={dry_run}"),
            &many_bad,
        )
        .await;
        assert_eq!(status, 400, "{report}");
        let details = report["details"].as_array().expect("problems");
        assert_eq!(details.len(), listed, "dry_run={dry_run}");
        assert!(
            report["error"]
                .as_str()
                .is_some_and(|e| e.contains("and 249 more")),
            "{report}"
        );
    }
    let (status, report) = send_csv(
        &app,
        &format!("/api/v1/campaigns?name={name}&time_zone=UTC&dry_run=true"),
        "phone_number\n+15555550001\n+15555550002\n+1 555 555 0001\n",
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report,
        json!({"dry_run": true, "targets": 2, "preview": [
            {"phone_number": "+15555550001"}, {"phone_number": "+15555550002"}]}),
        "duplicates count once, and the preview shows them canonical"
    );
    let (status, bad) = send_csv(&app, "/api/v1/campaigns?dry_run=yes", "phone_number\n").await;
    assert_eq!(
        (status, bad["code"].as_str()),
        (400, Some("validation_failed")),
        "{bad}"
    );
    let (status, created) = send_csv(
        &app,
        &format!("/api/v1/campaigns?name={name}&time_zone=UTC&max_concurrent_calls=3"),
        "phone_number,time_zone,customer,notes\n\
         +15555550001,America/Chicago,A-17,\n\
         +1 555 555 0002,,B-2,call after 5\n",
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], name.as_str());
    assert_eq!(created["max_concurrent_calls"], 3);
    let id = created["id"].as_str().expect("id").to_owned();
    // A bad row refuses the whole upload, naming its line (the header is line 1).
    let (status, refused) = send_csv(
        &app,
        &format!("/api/v1/campaigns/{id}/targets"),
        "phone_number,time_zone\n+15555550001,\nnot a number,\n+15555550002,Mars/Olympus\n",
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["code"], "validation_failed");
    let details = refused["details"].to_string();
    assert!(details.contains("line 3: phone_number"), "{refused}");
    assert!(details.contains("line 4: time_zone"), "{refused}");
    assert_eq!(app.stats(&id).await["total_targets"], 2);
    let (status, accepted) = send_csv(
        &app,
        &format!("/api/v1/campaigns/{id}/targets"),
        "phone_number,batch\n+15555550002,second\n",
    )
    .await;
    assert_eq!(
        (status, accepted["accepted"].as_u64()),
        (202, Some(1)),
        "{accepted}"
    );
    let calls = app.all_calls(&id).await;
    assert_eq!(calls.len(), 3);
    let mut metadata: Vec<(String, Value)> = calls
        .iter()
        .map(|c| {
            let number = c["phone_number"].as_str().unwrap_or_default().to_owned();
            (number, c["metadata"].clone())
        })
        .collect();
    metadata.sort_by_key(|(number, m)| (number.clone(), m.to_string()));
    assert_eq!(
        metadata,
        vec![
            ("+15555550001".to_owned(), json!({"customer": "A-17"})),
            ("+15555550002".to_owned(), json!({"batch": "second"})),
            (
                "+15555550002".to_owned(),
                json!({"customer": "B-2", "notes": "call after 5"})
            ),
        ]
    );
    // Without a phone_number column, with a query that is not a number, or as another type.
    let (status, body) = send_csv(
        &app,
        &format!("/api/v1/campaigns/{id}/targets"),
        "number\n1\n",
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("validation_failed")),
        "{body}"
    );
    let (status, body) = send_csv(
        &app,
        &format!("/api/v1/campaigns?name={name}-2&time_zone=UTC&max_concurrent_calls=lots"),
        "phone_number\n+15555550001\n",
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("validation_failed")),
        "{body}"
    );
    let response = app
        .client
        .post(app.url("/api/v1/campaigns"))
        .header("content-type", "text/plain")
        .body("phone_number\n+15555550001\n")
        .send()
        .await
        .expect("request sent");
    let (status, body) = decode(response).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (415, Some("unsupported_media_type")),
        "{body}"
    );
    app.shutdown().await;
}

in_both_modes!(listed_numbers_are_never_dialed_and_the_list_is_kept);
/// The do-not-call routes end to end: a CSV upload, a campaign whose listed target ends
/// canceled with `do_not_call` (explained so) while the others are dialed, lookups with the
/// `+` as is or encoded, pages, a campaign's own list, refusals, removal.
async fn listed_numbers_are_never_dialed_and_the_list_is_kept(mode: Mode) {
    let app = TestApp::spawn_in(mode, |_| {}).await;
    let (status, added) = send_csv(
        &app,
        "/api/v1/dnc",
        "phone_number,reason\n+15555550003,asked on 2026-12-01\n+1 555 555 0004,\n",
    )
    .await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["added"], 2, "{added}");
    let created = app
        .create_campaign(json!({
            "name": unique_name("dnc"),
            "time_zone": "UTC",
            "targets": [{"phone_number": "+15555550003"}, {"phone_number": "+15555550005"}],
        }))
        .await;
    let id = created["id"].as_str().expect("id").to_owned();
    app.start(&id).await;
    let stats = app
        .wait_stats(&id, std::time::Duration::from_secs(30), |s| {
            s["status"] == "completed" || s["pending_calls"] == 0 && s["in_progress_calls"] == 0
        })
        .await;
    assert_eq!(stats["canceled_calls"], 1, "{stats}");
    let calls = app.all_calls(&id).await;
    let listed = calls
        .iter()
        .find(|c| c["phone_number"] == "+15555550003")
        .expect("listed call");
    assert_eq!(listed["status"], "canceled", "{listed}");
    assert_eq!(listed["last_error"], "do_not_call", "{listed}");
    assert_eq!(listed["attempt_count"], 0, "{listed}: never dialed");
    let (status, why) = app
        .get(&format!(
            "/api/v1/calls/{}/explain",
            listed["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(status, 200, "{why}");
    assert_eq!(why["reasons"][0]["code"], "do_not_call", "{why}");
    // Lookups take the `+` as is or percent-encoded.
    for path in ["/api/v1/dnc/%2B15555550003", "/api/v1/dnc/+15555550003"] {
        let (status, entry) = app.get(path).await;
        assert_eq!(status, 200, "{path}: {entry}");
        assert_eq!(entry["phone_number"], "+15555550003");
        assert_eq!(entry["scope"], "global");
        assert_eq!(entry["reason"], "asked on 2026-12-01");
        assert!(entry["created_at"].is_string());
    }
    let (status, _) = app.get("/api/v1/dnc/%2B15555550009").await;
    assert_eq!(status, 404);
    let (status, bad) = app.get("/api/v1/dnc/nope").await;
    assert_eq!(
        (status, bad["code"].as_str()),
        (400, Some("validation_failed"))
    );
    // A campaign's own list, and pages in number order.
    let (status, scoped) = app
        .post(
            &format!("/api/v1/campaigns/{id}/dnc"),
            json!({"numbers": ["+15555550006"], "reason": "asked this campaign"}),
        )
        .await;
    assert_eq!(
        (status, scoped["added"].as_u64()),
        (200, Some(1)),
        "{scoped}"
    );
    let (status, first) = app.get("/api/v1/dnc?limit=2").await;
    assert_eq!(status, 200, "{first}");
    let token = first["next_page_token"].as_str().expect("more").to_owned();
    let (status, rest) = app.get(&format!("/api/v1/dnc?page_token={token}")).await;
    assert_eq!(status, 200, "{rest}");
    let numbers: Vec<&str> = first["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .chain(rest["entries"].as_array().expect("entries"))
        .map(|e| e["phone_number"].as_str().expect("number"))
        .collect();
    assert_eq!(numbers, ["+15555550003", "+15555550004", "+15555550006"]);
    assert_eq!(
        rest["entries"][0]["scope"],
        format!("campaign:{id}"),
        "{rest}"
    );
    // Refusals: bad numbers listed, an unknown campaign, another media type, a bad token.
    let (status, bad) = app
        .post("/api/v1/dnc", json!({"numbers": ["+15555550007", "12345"]}))
        .await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["code"], "validation_failed");
    assert!(
        bad["details"][0]
            .as_str()
            .expect("detail")
            .contains("numbers[1]"),
        "{bad}"
    );
    let (status, bad) = send_csv(&app, "/api/v1/dnc", "number\n+15555550007\n").await;
    assert_eq!(status, 400, "{bad}");
    let (status, _) = app
        .post(
            &format!("/api/v1/campaigns/{}/dnc", uuid::Uuid::now_v7()),
            json!({"numbers": ["+15555550007"]}),
        )
        .await;
    assert_eq!(status, 404);
    let response = app
        .client
        .post(app.url("/api/v1/dnc"))
        .header("content-type", "text/plain")
        .body("+15555550007")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 415);
    let (status, bad) = app.get("/api/v1/dnc?page_token=bm9wZQ").await;
    assert_eq!(
        (status, bad["code"].as_str()),
        (400, Some("invalid_page_token"))
    );
    // Off the list, in every scope.
    let response = app
        .client
        .delete(app.url("/api/v1/dnc/%2B15555550003"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 204);
    let (status, _) = app.get("/api/v1/dnc/%2B15555550003").await;
    assert_eq!(status, 404);
    app.shutdown().await;
}

in_both_modes!(campaigns_carry_their_recipient_limits);
async fn campaigns_carry_their_recipient_limits(mode: Mode) {
    let app = TestApp::spawn_in(mode, |_| {}).await;
    let created = app
        .create_campaign(json!({
            "name": unique_name("limits"),
            "time_zone": "UTC",
            "recipient_limits": [{"max_attempts": 1, "per": "7d"}, {"max_attempts": 3, "per": "24h"}],
            "targets": [{"phone_number": "+15555550001"}],
        }))
        .await;
    assert_eq!(
        created["recipient_limits"],
        json!([{"max_attempts": 1, "per": "7d"}, {"max_attempts": 3, "per": "1d"}])
    );
    let id = created["id"].as_str().expect("id");
    let (status, updated) = app
        .put(
            &format!("/api/v1/campaigns/{id}"),
            json!({"recipient_limits": []}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["recipient_limits"], json!([]));
    for (limits, field) in [
        (
            json!([{"max_attempts": 1, "per": "31d"}]),
            "recipient_limits[0].per",
        ),
        (
            json!([{"max_attempts": 0, "per": "1h"}]),
            "recipient_limits[0].max_attempts",
        ),
        (json!([{"per": "1h"}]), "recipient_limits[0].max_attempts"),
        (
            json!([{"max_attempts": 1, "per": "1h"}, {"max_attempts": 1, "per": "2h"}, {"max_attempts": 1, "per": "3h"}]),
            "recipient_limits",
        ),
    ] {
        let (status, bad) = app
            .put(
                &format!("/api/v1/campaigns/{id}"),
                json!({"recipient_limits": limits}),
            )
            .await;
        assert_eq!(status, 400, "{bad}");
        assert!(
            bad["details"][0]
                .as_str()
                .expect("detail")
                .starts_with(field),
            "{field}: {bad}"
        );
    }
    app.shutdown().await;
}
