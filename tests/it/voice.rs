//! A campaign's message at the API (`spec/voice.md`): its rules, the targets it must be able
//! to speak to, its echo and its preview.

use std::time::Duration;

use outbound::adapters::twilio::signature;
use serde_json::{json, Value};

use crate::helpers::{unique_name, Mode, TestApp};
use crate::in_both_modes;
use crate::telephony::{carrier_app, start_sim, SID, TOKEN};

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

    // A new message must be speakable to every call still to dial.
    let mut unspeakable = reminder();
    unspeakable["say"] = json!("Hello {{first_name}} from {{city}}.");
    let (status, error) = app
        .put(
            &format!("/api/v1/campaigns/{id}"),
            json!({"message": unspeakable}),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    let listed = details(&error);
    assert!(
        listed.contains("to +15555550001)") && listed.contains("lacks city"),
        "{error}"
    );
    assert_eq!(app.campaign(&id).await["message"], created["message"]);

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

    // A voicemail the carrier could not take is refused for a call still to dial, on update too.
    let long = json!([{"phone_number": "+15555550003",
        "metadata": {"first_name": "Cy", "date": "x".repeat(3900)}}]);
    let plain = app.create_campaign(body(reminder(), long)).await;
    let plain_id = plain["id"].as_str().unwrap_or_default().to_owned();
    let mut voicemail = reminder();
    voicemail["machine"] = json!({"action": "message", "say": "Call us about {{date}}."});
    voicemail["callback_number"] = json!("+18005550100");
    let (status, error) = app
        .put(
            &format!("/api/v1/campaigns/{plain_id}"),
            json!({"message": voicemail}),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert!(
        details(&error).contains("over the carrier's 4000"),
        "{error}"
    );
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

    // The results, one row per call in call id order: CSV by default, JSON lines on request.
    let url = app.url(&format!("/api/v1/campaigns/{id}/results"));
    let response = app.client.get(&url).send().await.expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    assert!(response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/csv")));
    let csv = response.text().await.unwrap_or_default();
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines[0],
        "call_id,phone_number,status,attempts,last_error,answered_by,response,digits,\
         voicemail_left,last_attempt_at,metadata.date,metadata.first_name",
        "{csv}"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(",+15555550002,completed,1,,,,,false,")
                && l.ends_with(",<b>May 4</b>,Ann")),
        "{csv}"
    );
    let response = app
        .client
        .get(&url)
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .expect("sent");
    let text = response.text().await.unwrap_or_default();
    let rows: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(
        rows[0]["call_id"].as_str() < rows[1]["call_id"].as_str(),
        "{text}"
    );
    let maria = rows
        .iter()
        .find(|r| r["phone_number"] == "+15555550001")
        .expect("maria");
    assert_eq!(maria["metadata"]["first_name"], "Maria", "{text}");
    assert_eq!(maria["response"], Value::Null, "{text}");
    assert_eq!(maria["voicemail_left"], false, "{text}");
    let unknown = app
        .get("/api/v1/campaigns/00000000-0000-7000-8000-000000000000/results")
        .await;
    assert_eq!(unknown.0, 404, "{}", unknown.1);
    app.shutdown().await;
}
in_both_modes!(a_message_campaign_runs);

/// Posts a form to `url` as the carrier does, signed with `token` (or unsigned).
async fn carrier_post(
    app: &TestApp,
    url: &str,
    form: &[(&str, &str)],
    token: Option<&str>,
) -> (u16, String) {
    let params: Vec<(String, String)> = form
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    let mut request = app
        .client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(token) = token {
        request = request.header("X-Twilio-Signature", signature::sign(token, url, &params));
    }
    let response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// The value of `name` in the query of `url`.
fn query_value(url: &str, name: &str) -> String {
    url.split_once('?')
        .map(|(_, query)| query)
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
        .unwrap_or_default()
        .to_owned()
}

/// The `action` URL of the Gather in `twiml`, unescaped.
fn gather_action(twiml: &str) -> String {
    let start = twiml.find("action=\"").map(|i| i + 8).unwrap_or(0);
    let end = twiml[start..].find('"').map_or(start, |i| start + i);
    twiml[start..end].replace("&amp;", "&")
}

/// A real carrier fetches the message's TwiML from the engine, sends the key pressed, and an
/// opt-out is on the do-not-call list before the callee is told so.
async fn a_message_is_served_to_the_carrier(mode: Mode) {
    let sim = start_sim(|config| {
        // Calls ring long enough for the carrier's requests below to find them live.
        config.ring = (Duration::from_secs(12), Duration::from_secs(12));
    })
    .await;
    let app = carrier_app(mode, &sim, |_| {}).await;
    let created = app.create_campaign(body(reminder(), maria_and_ann())).await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    app.start(&id).await;
    let started = std::time::Instant::now();
    let calls = loop {
        let calls = sim.calls();
        if calls.len() == 2 {
            break calls;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "creates: {calls:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let maria = calls
        .iter()
        .find(|c| c.to == "+15555550001")
        .expect("maria's call");
    let voice_url = maria.voice_url.clone().expect("the create gave a Url");
    assert!(
        voice_url.contains("/webhooks/twilio/voice?campaign="),
        "{voice_url}"
    );
    let call_form = [
        ("CallSid", maria.sid.as_str()),
        ("AccountSid", SID),
        ("CallStatus", "in-progress"),
    ];

    // Forged or unsigned: refused, nothing said.
    let (status, _) = carrier_post(&app, &voice_url, &call_form, Some("not-the-token")).await;
    assert_eq!(status, 403);
    let (status, _) = carrier_post(&app, &voice_url, &call_form, None).await;
    assert_eq!(status, 403);

    let (status, twiml) = carrier_post(&app, &voice_url, &call_form, Some(TOKEN)).await;
    assert_eq!(status, 200, "{twiml}");
    assert!(
        twiml.contains("<Gather input=\"dtmf\" numDigits=\"1\""),
        "{twiml}"
    );
    assert!(
        twiml.contains("Hello Maria, see you on March 3."),
        "{twiml}"
    );
    let gather = gather_action(&twiml);
    assert!(gather.contains("/webhooks/twilio/gather?"), "{gather}");

    // The message changes while both calls are up, then gives way to plain TwiML: each call
    // goes on with the message it began with, its words and its keys (9 stays the opt-out),
    // whether the carrier asks again for Maria's or asks for Ann's for the first time.
    let mut changed = reminder();
    changed["say"] = json!("Hi {{first_name}}, these are new words.");
    changed["opt_out"] = json!({"digit": "8", "scope": "global"});
    let (status, updated) = app
        .put(
            &format!("/api/v1/campaigns/{id}"),
            json!({"message": changed}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    let (status, updated) = app
        .put(
            &format!("/api/v1/campaigns/{id}"),
            json!({"twiml": "<Response><Say>Something else.</Say></Response>"}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    let (status, again) = carrier_post(&app, &voice_url, &call_form, Some(TOKEN)).await;
    assert_eq!(status, 200, "{again}");
    assert!(
        again.contains("Hello Maria, see you on March 3."),
        "{again}"
    );
    assert!(again.contains("To stop these calls, press 9."), "{again}");

    // A key that means nothing asks once more; the second gather URL keeps it.
    let mut pressed = call_form.to_vec();
    pressed.push(("Digits", "5"));
    let (status, again) = carrier_post(&app, &gather, &pressed, Some(TOKEN)).await;
    assert_eq!(status, 200, "{again}");
    assert!(again.contains("Sorry, that is not an option."), "{again}");
    let second = gather_action(&again);
    assert!(second.contains("pressed=5"), "{second}");

    // The opt-out key: listed before the answer, then said; a retried request lists nothing twice.
    let mut opted = call_form.to_vec();
    opted.push(("Digits", "9"));
    for _ in 0..2 {
        let (status, bye) = carrier_post(&app, &second, &opted, Some(TOKEN)).await;
        assert_eq!(status, 200, "{bye}");
        assert!(
            bye.contains("You will not be called again. Goodbye."),
            "{bye}"
        );
        assert!(bye.ends_with("<Hangup/></Response>"), "{bye}");
    }
    let (status, entry) = app.get("/api/v1/dnc/+15555550001").await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(entry["scope"], "global", "{entry}");

    // The response and every key are the attempt's; the campaign counts the call once.
    let (status, detail) = app
        .get(&format!(
            "/api/v1/calls/{}",
            query_value(&voice_url, "call")
        ))
        .await;
    assert_eq!(status, 200, "{detail}");
    let attempt = &detail["attempts"][0];
    assert_eq!(attempt["response"], "opt_out", "{detail}");
    assert_eq!(attempt["digits"], "59", "{detail}");
    assert_eq!(attempt["voicemail_left"], false, "{detail}");
    assert_eq!(attempt["answered_by"], Value::Null, "{detail}");

    // Ann confirms; a replay, even with another key, changes nothing.
    let ann = calls
        .iter()
        .find(|c| c.to == "+15555550002")
        .expect("ann's call");
    let ann_url = ann.voice_url.clone().expect("the create gave a Url");
    let ann_form = [
        ("CallSid", ann.sid.as_str()),
        ("AccountSid", SID),
        ("CallStatus", "in-progress"),
    ];
    let (_, twiml) = carrier_post(&app, &ann_url, &ann_form, Some(TOKEN)).await;
    assert!(twiml.contains("Hello Ann, see you on"), "{twiml}");
    assert!(!twiml.contains("new words"), "{twiml}");
    let ann_gather = gather_action(&twiml);
    for key in ["1", "1", "2"] {
        let mut pressed = ann_form.to_vec();
        pressed.push(("Digits", key));
        let (status, answer) = carrier_post(&app, &ann_gather, &pressed, Some(TOKEN)).await;
        assert_eq!(status, 200, "{answer}");
    }
    let (_, detail) = app
        .get(&format!("/api/v1/calls/{}", query_value(&ann_url, "call")))
        .await;
    assert_eq!(detail["attempts"][0]["response"], "confirmed", "{detail}");
    assert_eq!(detail["attempts"][0]["digits"], "1", "{detail}");
    let (_, stats) = app.get(&format!("/api/v1/campaigns/{id}/stats")).await;
    assert_eq!(
        stats["responses"],
        json!({"opt_out": 1, "confirmed": 1}),
        "{stats}"
    );
    assert_eq!(stats["opted_out"], 1, "{stats}");
    assert_eq!(stats["voicemails_left"], 0, "{stats}");
    assert_eq!(stats["machine_answered"], 0, "{stats}");
    let url = app.url(&format!("/api/v1/campaigns/{id}/results"));
    let csv = app
        .client
        .get(&url)
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .unwrap_or_default();
    assert!(
        csv.contains(",+15555550001,dialing,1,,,opt_out,59,false,"),
        "{csv}"
    );
    assert!(
        csv.contains(",+15555550002,dialing,1,,,confirmed,1,false,"),
        "{csv}"
    );

    // The inbound line a voicemail points to: its prompt, then a 1 lists the caller.
    let base = voice_url.split("/webhooks/").next().unwrap_or_default();
    let inbound = format!("{base}/webhooks/twilio/inbound");
    let caller = [
        ("CallSid", "CA9"),
        ("AccountSid", SID),
        ("From", "+15555550002"),
    ];
    let (status, prompt) = carrier_post(&app, &inbound, &caller, Some(TOKEN)).await;
    assert_eq!(status, 200, "{prompt}");
    assert!(
        prompt.contains("To stop all calls from us, press 1."),
        "{prompt}"
    );
    let heard = gather_action(&prompt);
    assert!(heard.ends_with("?step=heard"), "{heard}");
    let (status, _) = carrier_post(&app, &heard, &caller, Some("not-the-token")).await;
    assert_eq!(status, 403);
    let mut other = caller.to_vec();
    other.push(("Digits", "2"));
    let (_, bye) = carrier_post(&app, &heard, &other, Some(TOKEN)).await;
    assert!(bye.contains("<Say>Goodbye.</Say>"), "{bye}");
    assert_eq!(app.get("/api/v1/dnc/+15555550002").await.0, 404);
    let mut one = caller.to_vec();
    one.push(("Digits", "1"));
    let (_, bye) = carrier_post(&app, &heard, &one, Some(TOKEN)).await;
    assert!(
        bye.contains("You will not be called again. Goodbye."),
        "{bye}"
    );
    let (status, entry) = app.get("/api/v1/dnc/+15555550002").await;
    assert_eq!(
        (status, entry["scope"].as_str()),
        (200, Some("global")),
        "{entry}"
    );
    let withheld = [
        ("CallSid", "CA10"),
        ("AccountSid", SID),
        ("From", "anonymous"),
    ];
    let (_, unknown) = carrier_post(&app, &inbound, &withheld, Some(TOKEN)).await;
    assert!(
        unknown.contains("We cannot identify your number."),
        "{unknown}"
    );

    // A signed request for an attempt the call is not on is answered by hanging up.
    // So is one that names no attempt at all.
    let stale = voice_url.replace("attempt=1", "attempt=2");
    let nameless = voice_url.replace("attempt=1", "attempt=one");
    for url in [stale, nameless] {
        let (status, hangup) = carrier_post(&app, &url, &call_form, Some(TOKEN)).await;
        assert_eq!(status, 200, "{url}: {hangup}");
        assert!(
            hangup.ends_with("<Response><Hangup/></Response>"),
            "{hangup}"
        );
    }
    app.shutdown().await;
    sim.stop();
}
in_both_modes!(a_message_is_served_to_the_carrier);

/// Waits until the call `call_id` satisfies `done`, then returns it.
async fn call_when(app: &TestApp, call_id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = std::time::Instant::now();
    loop {
        let (_, call) = app.get(&format!("/api/v1/calls/{call_id}")).await;
        if done(&call) {
            return call;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{call}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sim's calls of a campaign's targets once all are created, by number.
async fn created_calls(
    sim: &outbound::carrier_sim::CarrierSim,
    numbers: &[&str],
) -> Vec<outbound::carrier_sim::SimCall> {
    let started = std::time::Instant::now();
    loop {
        let calls = sim.calls();
        let found: Vec<_> = numbers
            .iter()
            .filter_map(|n| calls.iter().find(|c| c.to == *n).cloned())
            .collect();
        if found.len() == numbers.len() {
            return found;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{calls:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The carrier's asynchronous verdict on who answered: a machine after its beep gets the
/// voicemail through a change of the live call; `retry` ends it as a retryable failure; a fax
/// fails for good; a person hears the message on; a forged verdict changes nothing.
async fn a_machine_gets_what_the_message_asks(mode: Mode) {
    let sim = start_sim(|config| {
        config.ring = (Duration::from_secs(12), Duration::from_secs(12));
    })
    .await;
    let app = carrier_app(mode, &sim, |_| {}).await;
    let mut voicemail = reminder();
    voicemail["machine"] =
        json!({"action": "message", "say": "Please call us back, {{first_name}}."});
    voicemail["callback_number"] = json!("+18005550100");
    let leaves = app
        .create_campaign(body(voicemail, json!([
            {"phone_number": "+15555550011", "metadata": {"first_name": "Maria", "date": "May 1"}},
            {"phone_number": "+15555550012", "metadata": {"first_name": "Ann", "date": "May 2"}},
        ])))
        .await;
    let mut retrying = reminder();
    retrying["machine"] = json!({"action": "retry", "detection_timeout": "10s"});
    let mut retry_body = body(
        retrying,
        json!([
            {"phone_number": "+15555550013", "metadata": {"first_name": "Bo", "date": "May 3"}},
            {"phone_number": "+15555550014", "metadata": {"first_name": "Cy", "date": "May 4"}},
        ]),
    );
    retry_body["retry_policy"]["max_attempts"] = json!(2);
    retry_body["retry_policy"]["base_delay"] = json!("1h");
    retry_body["retry_policy"]["max_delay"] = json!("1h");
    let retries = app.create_campaign(retry_body).await;
    for created in [&leaves, &retries] {
        app.start(created["id"].as_str().unwrap_or_default()).await;
    }
    let calls = created_calls(
        &sim,
        &[
            "+15555550011",
            "+15555550012",
            "+15555550013",
            "+15555550014",
        ],
    )
    .await;
    let verdict = |call: &outbound::carrier_sim::SimCall, by: &str| {
        let url = call.amd_callback.clone().unwrap_or_default();
        let form = vec![
            ("CallSid".to_owned(), call.sid.clone()),
            ("AccountSid".to_owned(), SID.to_owned()),
            ("AnsweredBy".to_owned(), by.to_owned()),
        ];
        (url, form)
    };
    let post = |url: String, form: Vec<(String, String)>, token: &'static str| {
        let app = &app;
        async move {
            let pairs: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            carrier_post(app, &url, &pairs, Some(token)).await
        }
    };
    for call in &calls {
        let url = call.amd_callback.clone().unwrap_or_default();
        assert!(url.contains("/webhooks/twilio/amd?campaign="), "{call:?}");
    }
    let (maria, ann, bo, cy) = (&calls[0], &calls[1], &calls[2], &calls[3]);

    // Forged: refused, nothing recorded.
    let (url, form) = verdict(maria, "machine_end_beep");
    assert_eq!(post(url, form, "not-the-token").await.0, 403);
    assert!(sim.calls().iter().all(|c| c.twiml_updates.is_empty()));

    // A machine after its beep: the voicemail, said through a change of the live call.
    let (url, form) = verdict(maria, "machine_end_beep");
    for _ in 0..2 {
        assert_eq!(post(url.clone(), form.clone(), TOKEN).await.0, 204);
    }
    let updated = sim
        .calls()
        .into_iter()
        .find(|c| c.sid == maria.sid)
        .expect("maria's call");
    assert_eq!(updated.twiml_updates.len(), 1, "one voicemail: {updated:?}");
    let said = &updated.twiml_updates[0];
    assert!(said.contains("Please call us back, Maria."), "{said}");
    assert!(said.contains("To stop these calls, call"), "{said}");
    let maria_id = query_value(&url, "call");
    let (_, detail) = app.get(&format!("/api/v1/calls/{maria_id}")).await;
    assert_eq!(
        detail["attempts"][0]["answered_by"], "machine_end_beep",
        "{detail}"
    );
    assert_eq!(detail["attempts"][0]["voicemail_left"], true, "{detail}");
    assert_eq!(detail["attempts"][0]["response"], Value::Null, "{detail}");

    // A person: nothing changes, the message plays on.
    let (url, form) = verdict(ann, "human");
    assert_eq!(post(url, form, TOKEN).await.0, 204);
    let (_, stats) = app
        .get(&format!(
            "/api/v1/campaigns/{}/stats",
            leaves["id"].as_str().unwrap_or_default()
        ))
        .await;
    assert_eq!(stats["voicemails_left"], 1, "{stats}");
    assert_eq!(stats["machine_answered"], 1, "{stats}");

    // Silence after the message while the verdict is pending keeps the call up for it, with
    // no response recorded.
    let bo_voice = bo.voice_url.clone().unwrap_or_default();
    let bo_form = [("CallSid", bo.sid.as_str()), ("AccountSid", SID)];
    let (_, twiml) = carrier_post(&app, &bo_voice, &bo_form, Some(TOKEN)).await;
    let (status, waits) = carrier_post(&app, &gather_action(&twiml), &bo_form, Some(TOKEN)).await;
    assert_eq!(status, 200, "{waits}");
    assert!(
        waits.contains("<Pause length=\"10\"/><Redirect method=\"POST\">")
            || waits.contains("<Pause length=\"9\"/><Redirect method=\"POST\">"),
        "{waits}"
    );

    // `retry`: the call is ended and its attempt fails as a retryable `machine`.
    let (url, form) = verdict(bo, "machine_end_silence");
    assert_eq!(post(url.clone(), form, TOKEN).await.0, 204);
    let bo_call = call_when(&app, &query_value(&url, "call"), |call| {
        call["attempts"][0]["status"] == "failed"
    })
    .await;
    assert_eq!(bo_call["attempts"][0]["error"], "machine", "{bo_call}");
    assert_eq!(bo_call["attempts"][0]["response"], Value::Null, "{bo_call}");
    assert_eq!(bo_call["status"], "retrying", "{bo_call}");

    // A fax fails for good.
    let (url, form) = verdict(cy, "fax");
    assert_eq!(post(url.clone(), form, TOKEN).await.0, 204);
    let cy_call = call_when(&app, &query_value(&url, "call"), |call| {
        call["status"] == "failed"
    })
    .await;
    assert_eq!(cy_call["last_error"], "fax", "{cy_call}");
    assert_eq!(cy_call["attempts"][0]["answered_by"], "fax", "{cy_call}");
    app.shutdown().await;
    sim.stop();
}
in_both_modes!(a_machine_gets_what_the_message_asks);

/// The carrier simulator runs the engine's TwiML itself: its callees hear the message, press
/// the keys they are told to, and machines get the voicemail after their beep.
async fn the_carrier_runs_the_message(mode: Mode) {
    let sim = start_sim(|config| {
        config.mix = outbound::carrier_sim::OutcomeMix::human_only();
        config.press = vec![('9', 1.0)];
        config.speech_wps = 1_000.0;
        config.time_scale = 0.01;
    })
    .await;
    let app = carrier_app(mode, &sim, |settings| {
        settings.webhooks.allow_http = true;
        settings.webhooks.allow_private_networks = true;
        settings.webhooks.poll_interval = outbound::settings::GoDuration(Duration::from_millis(50));
    })
    .await;
    // The operator's CRM hears of each opt-out, with the call it was made on.
    let crm = outbound::webhook_receiver::WebhookReceiver::start(
        std::net::TcpListener::bind("127.0.0.1:0").expect("receiver port"),
    )
    .expect("receiver");
    let (status, hook) = app
        .post(
            "/api/v1/webhooks",
            json!({"url": format!("{}/optouts", crm.url()), "events": ["call.opted_out"]}),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let created = app.create_campaign(body(reminder(), maria_and_ann())).await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    app.start(&id).await;
    let stats = app.wait_completed(&id, Duration::from_secs(30)).await;
    assert_eq!(stats["opted_out"], 2, "{stats}");
    let started = std::time::Instant::now();
    while crm.accepted("/optouts").len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "opt-outs reported"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut reported: Vec<(String, String)> = crm
        .accepted("/optouts")
        .iter()
        .map(|r| {
            let data = &r.body["data"];
            assert_eq!(data["campaign_id"], id.as_str(), "{data}");
            assert!(data["call_id"].is_string(), "{data}");
            (
                data["phone_number"].as_str().unwrap_or_default().to_owned(),
                data["scope"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    reported.sort();
    assert_eq!(
        reported,
        vec![
            ("+15555550001".to_owned(), "global".to_owned()),
            ("+15555550002".to_owned(), "global".to_owned())
        ]
    );
    crm.stop().await;
    assert_eq!(stats["responses"], json!({"opt_out": 2}), "{stats}");
    for number in ["+15555550001", "+15555550002"] {
        let (status, entry) = app.get(&format!("/api/v1/dnc/{number}")).await;
        assert_eq!(status, 200, "{number}: {entry}");
    }
    let maria = sim
        .calls()
        .into_iter()
        .find(|c| c.to == "+15555550001")
        .expect("maria's call");
    assert_eq!(
        maria.heard,
        vec![
            "This is Acme Dental.".to_owned(),
            "To stop these calls, press 9.".to_owned(),
            "Hello Maria, see you on March 3.".to_owned(),
            "Press 1 to confirm, or 2 to reschedule.".to_owned(),
            "You will not be called again. Goodbye.".to_owned(),
        ],
        "{maria:?}"
    );
    assert_eq!(maria.pressed, "9");
    app.shutdown().await;
    sim.stop();

    // Machines: the message plays from the answer, the voicemail replaces it after the beep.
    let sim = start_sim(|config| {
        config.mix = outbound::carrier_sim::OutcomeMix {
            human: 0.0,
            machine: 1.0,
            ..outbound::carrier_sim::OutcomeMix::human_only()
        };
        config.speech_wps = 1_000.0;
        config.time_scale = 0.01;
        config.beep_after = Duration::from_secs(4);
    })
    .await;
    // A deployment that retries machines: the message's own `machine` replaces that, and a
    // voicemail left completes the call.
    let app = carrier_app(mode, &sim, |settings| {
        settings.telephony.twilio.machine_outcome =
            outbound::domain::carrier::MachineOutcome::Retry;
    })
    .await;
    let mut voicemail = reminder();
    voicemail["machine"] = json!({"action": "message", "say": "Please call us, {{first_name}}."});
    voicemail["callback_number"] = json!("+18005550100");
    let created = app.create_campaign(body(voicemail, maria_and_ann())).await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    app.start(&id).await;
    let stats = app.wait_completed(&id, Duration::from_secs(30)).await;
    assert_eq!(stats["voicemails_left"], 2, "{stats}");
    assert_eq!(stats["machine_answered"], 2, "{stats}");
    assert_eq!(stats["completed_calls"], 2, "{stats}");
    let ann = sim
        .calls()
        .into_iter()
        .find(|c| c.to == "+15555550002")
        .expect("ann's call");
    assert!(
        ann.heard.iter().any(|said| said == "Please call us, Ann."),
        "{ann:?}"
    );
    assert_eq!(ann.pressed, "", "a machine presses nothing");
    app.shutdown().await;
    sim.stop();
}
in_both_modes!(the_carrier_runs_the_message);

/// A deployment's synchronous detection (`telephony.twilio.machine_detection: Enable`, no
/// message): the verdict comes only with the final status, and is shown and counted as an
/// asynchronous one is.
async fn a_synchronous_verdict_is_shown_and_counted(mode: Mode) {
    let sim = start_sim(|config| {
        config.mix = outbound::carrier_sim::OutcomeMix {
            human: 0.5,
            machine: 0.5,
            ..outbound::carrier_sim::OutcomeMix::human_only()
        };
        config.time_scale = 0.01;
    })
    .await;
    let app = carrier_app(mode, &sim, |settings| {
        settings.telephony.twilio.machine_detection =
            outbound::domain::carrier::MachineDetection::Enable;
    })
    .await;
    let targets: Vec<Value> = (0..16)
        .map(|i| json!({"phone_number": format!("+155555501{i:02}")}))
        .collect();
    let created = app
        .create_campaign(json!({
            "name": unique_name("sync-amd"),
            "time_zone": "UTC",
            "max_concurrent_calls": 4,
            "retry_policy": {"max_attempts": 1, "base_delay": "10ms", "max_delay": "10ms", "jitter": 0},
            "targets": targets,
        }))
        .await;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    app.start(&id).await;
    let stats = app.wait_completed(&id, Duration::from_secs(30)).await;
    let machines = sim
        .calls()
        .iter()
        .filter(|c| c.answered_by.as_deref() == Some("machine_start"))
        .count();
    assert!(machines > 0 && machines < 16, "a mix of both: {machines}");
    assert_eq!(stats["machine_answered"], machines, "{stats}");
    let response = app
        .client
        .get(app.url(&format!("/api/v1/campaigns/{id}/results")))
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .expect("sent");
    let text = response.text().await.unwrap_or_default();
    let verdicts: Vec<&str> = text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line"))
        .map(|row| match row["answered_by"].as_str() {
            Some("machine_start") => "machine",
            Some("human") => "human",
            _ => "other",
        })
        .collect();
    assert_eq!(verdicts.len(), 16, "{text}");
    assert_eq!(
        verdicts.iter().filter(|v| **v == "machine").count(),
        machines,
        "{text}"
    );
    assert!(!verdicts.contains(&"other"), "{text}");
    app.shutdown().await;
    sim.stop();
}
in_both_modes!(a_synchronous_verdict_is_shown_and_counted);
