//! A campaign's message at the API (`spec/voice.md`): its rules, the targets it must be able
//! to speak to, its echo and its preview.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{unique_name, Mode, TestApp};
use crate::in_both_modes;

fn reminder() -> Value {
    json!({
        "identification": "This is Acme Dental.",
        "say": "Hello {{first_name}}, see you on {{date}}.",
        "prompt": "Press 1 to confirm, or 2 to reschedule.",
        "responses": [
            {"digit": "1", "name": "confirmed", "reply": "Thank you."},
            {"digit": "2", "name": "reschedule"}
        ]
    })
}

fn body(message: Value, targets: Value) -> Value {
    json!({
        "name": unique_name("voice"),
        "time_zone": "UTC",
        "max_concurrent_calls": 5,
        "retry_policy": {"max_attempts": 1, "base_delay": "10ms", "max_delay": "10ms", "jitter": 0},
        "targets": targets,
        "message": message,
    })
}

fn maria_and_ann() -> Value {
    json!([
        {"phone_number": "+15555550001", "metadata": {"first_name": "Maria", "date": "March 3"}},
        {"phone_number": "+15555550002", "metadata": {"first_name": "Ann", "date": "<b>May 4</b>"}},
    ])
}

fn details(error: &Value) -> String {
    error["details"].to_string()
}

async fn a_message_is_checked_echoed_and_previewed(mode: Mode) {
    let app = TestApp::spawn_in(mode, |_| {}).await;

    // Each broken rule is named under `message`.
    let mut broken = reminder();
    broken["play"] = json!("https://example.com/a.mp3");
    broken["responses"][0]["name"] = json!("opt_out");
    let (status, error) = app
        .post("/api/v1/campaigns", body(broken, maria_and_ann()))
        .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["code"], "validation_failed");
    let listed = details(&error);
    assert!(
        listed.contains("message.play") && listed.contains("message.responses[0].name"),
        "{error}"
    );
    let mut both = body(reminder(), maria_and_ann());
    both["twiml"] = json!("<Response/>");
    let (status, error) = app.post("/api/v1/campaigns", both).await;
    assert_eq!(status, 400, "{error}");
    assert!(details(&error).contains("message: give message, twiml or voice_url"));

    // A target whose metadata cannot fill the message is named with the keys it lacks.
    let lacking = json!([
        {"phone_number": "+15555550001", "metadata": {"first_name": "Maria", "date": "March 3"}},
        {"phone_number": "+15555550002", "metadata": {"first_name": "Ann"}},
        {"phone_number": "+15555550003"},
    ]);
    let (status, error) = app
        .post("/api/v1/campaigns", body(reminder(), lacking))
        .await;
    assert_eq!(status, 400, "{error}");
    let listed = details(&error);
    assert!(
        listed.contains("targets[1].metadata: lacks date, which the message names"),
        "{error}"
    );
    assert!(
        listed.contains("targets[2].metadata: lacks date, first_name"),
        "{error}"
    );
    assert!(!listed.contains("targets[0]"), "{error}");

    // A dry run previews what each target will hear, in the law's order.
    let (status, dry) = app
        .post(
            "/api/v1/campaigns?dry_run=true",
            body(reminder(), maria_and_ann()),
        )
        .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(
        dry["preview"][0]["spoken"],
        json!([
            "This is Acme Dental.",
            "To stop these calls, press 9.",
            "Hello Maria, see you on March 3.",
            "Press 1 to confirm, or 2 to reschedule."
        ])
    );
    assert_eq!(
        dry["preview"][1]["spoken"][2],
        json!("Hello Ann, see you on <b>May 4</b>.")
    );

    // Created, the message is echoed with the law's default opt-out, and read back the same.
    let created = app.create_campaign(body(reminder(), maria_and_ann())).await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        created["message"]["opt_out"],
        json!({"digit": "9", "scope": "global"})
    );
    assert_eq!(created["message"]["responses"][1]["name"], "reschedule");
    assert_eq!(created.get("twiml"), None);
    assert_eq!(app.campaign(&id).await["message"], created["message"]);

    // Uploaded targets are checked against the campaign's message.
    let (status, error) = app
        .post(
            &format!("/api/v1/campaigns/{id}/targets"),
            json!({"targets": [{"phone_number": "+15555550001", "metadata": {"first_name": "Bo"}}]}),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert!(details(&error).contains("lacks date"), "{error}");
    let (status, accepted) = app
        .post(
            &format!("/api/v1/campaigns/{id}/targets"),
            json!({"targets": [{"phone_number": "+15555550001",
                "metadata": {"first_name": "Bo", "date": "June 5"}}]}),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");

    // An update replaces the message; TwiML replaces it in turn.
    let mut changed = reminder();
    changed["opt_out"] = json!(false);
    changed["say"] = json!("Hello {{first_name}}.");
    let (status, updated) = app
        .put(
            &format!("/api/v1/campaigns/{id}"),
            json!({"message": changed}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["message"]["opt_out"], json!(false));
    assert_eq!(updated["message"]["say"], "Hello {{first_name}}.");
    let (status, updated) = app
        .put(
            &format!("/api/v1/campaigns/{id}"),
            json!({"twiml": "<Response><Say>Hi</Say></Response>"}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated.get("message"), None);
    app.shutdown().await;
}
in_both_modes!(a_message_is_checked_echoed_and_previewed);

/// Under the mock carrier a message campaign dials like any other.
async fn a_message_campaign_runs(mode: Mode) {
    let app = TestApp::spawn_in(mode, |_| {}).await;
    let created = app.create_campaign(body(reminder(), maria_and_ann())).await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    app.start(&id).await;
    let stats = app.wait_completed(&id, Duration::from_secs(30)).await;
    assert_eq!(stats["total_calls"], 2, "{stats}");
    app.shutdown().await;
}
in_both_modes!(a_message_campaign_runs);
