#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::Value;

use super::*;
use crate::adapters::twilio::signature::verify;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "secret-token";

fn config() -> SimConfig {
    SimConfig {
        account_sid: SID.into(),
        auth_token: TOKEN.into(),
        mix: OutcomeMix::human_only(),
        seed: Some(7),
        ..SimConfig::default()
    }
}

async fn start(config: SimConfig) -> CarrierSim {
    CarrierSim::start(config, TcpListener::bind("127.0.0.1:0").unwrap())
        .await
        .unwrap()
}

fn calls_url(sim: &CarrierSim) -> String {
    format!("{}/2010-04-01/Accounts/{SID}/Calls.json", sim.url())
}

fn call_url(sim: &CarrierSim, sid: &str) -> String {
    format!("{}/2010-04-01/Accounts/{SID}/Calls/{sid}.json", sim.url())
}

const TO: &str = "+15550001001";
const FROM: &str = "+15550009999";

fn dial<'a>(to: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut params = vec![("To", to), ("From", FROM), ("Twiml", "<Response/>")];
    params.extend_from_slice(extra);
    params
}

async fn create(sim: &CarrierSim, params: &[(&str, &str)]) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(calls_url(sim))
        .basic_auth(SID, Some(TOKEN))
        .form(params)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn get(url: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(url)
        .basic_auth(SID, Some(TOKEN))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Polls `check` every 10 ms for up to 3 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..300 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn final_of(sim: &CarrierSim, sid: &str) -> Option<SimCall> {
    sim.calls()
        .into_iter()
        .find(|c| c.sid == sid && c.is_final())
}

#[derive(Debug, Clone)]
struct Received {
    url: String,
    method: String,
    params: Vec<(String, String)>,
    signature: String,
}

impl Received {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

struct ReceiverState {
    base: String,
    received: Mutex<Vec<Received>>,
    failures_left: AtomicU64,
    answer: u16,
}

/// A webhook endpoint that records every callback; it answers 500 `failures` times first,
/// then `answer`.
struct Receiver {
    state: web::Data<ReceiverState>,
    handle: ServerHandle,
}

impl Receiver {
    async fn start(failures: u64, answer: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = web::Data::new(ReceiverState {
            base,
            received: Mutex::new(Vec::new()),
            failures_left: AtomicU64::new(failures),
            answer,
        });
        let data = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(record))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Receiver { state, handle }
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.state.base)
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    async fn stop(self) {
        self.handle.stop(false).await;
    }
}

async fn record(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ReceiverState>,
) -> HttpResponse {
    let url = format!("{}{}", state.base, req.uri());
    let params = if req.method() == actix_web::http::Method::GET {
        form_urlencoded::parse(req.query_string().as_bytes())
            .into_owned()
            .collect()
    } else {
        form_urlencoded::parse(&body).into_owned().collect()
    };
    let signature = req
        .headers()
        .get("X-Twilio-Signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    state.received.lock().unwrap().push(Received {
        url,
        method: req.method().to_string(),
        params,
        signature,
    });
    let failing = state
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return HttpResponse::InternalServerError().finish();
    }
    HttpResponse::build(actix_web::http::StatusCode::from_u16(state.answer).unwrap()).finish()
}

const CALLBACK: &str = "/webhooks/twilio/status?campaign=c1&call=k1&attempt=2";

#[tokio::test]
async fn a_create_answers_201_with_the_call_resource_and_the_call_completes() {
    let sim = start(config()).await;
    let (status, body) = create(&sim, &dial(TO, &[])).await;
    assert_eq!(status, 201, "{body}");
    let sid = body["sid"].as_str().unwrap().to_owned();
    assert_eq!(sid.len(), 34);
    assert!(sid.starts_with("CA"));
    assert!(sid[2..]
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(body["account_sid"], SID);
    assert_eq!(body["to"], TO);
    assert_eq!(body["to_formatted"], "(555) 000-1001");
    assert_eq!(body["from"], FROM);
    assert_eq!(body["status"], "queued");
    assert_eq!(body["direction"], "outbound-api");
    assert_eq!(body["api_version"], "2010-04-01");
    for field in ["date_created", "date_updated"] {
        let text = body[field].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc2822(text).is_ok(), "{text}");
    }
    for field in ["start_time", "end_time", "duration", "answered_by", "price"] {
        assert!(body[field].is_null(), "{field}: {body}");
    }
    assert_eq!(
        body["uri"],
        format!("/2010-04-01/Accounts/{SID}/Calls/{sid}.json")
    );
    assert!(body["subresource_uris"].is_object());

    eventually("the call to end", || final_of(&sim, &sid).is_some()).await;
    let call = final_of(&sim, &sid).unwrap();
    assert_eq!(call.status, "completed");
    assert_eq!(call.sip_code, Some(200));
    assert_eq!(call.duration_secs, Some(1));
    assert_eq!(call.answered_by, None, "no detection asked for");
    assert_eq!((call.campaign, call.call, call.attempt), (None, None, None));
    assert_eq!(sim.peak_live_total(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_credentials_get_401_a_foreign_account_403_and_a_rotated_token_works() {
    let sim = start(config()).await;
    let client = reqwest::Client::new();
    let anonymous = client
        .post(calls_url(&sim))
        .form(&dial(TO, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["code"], 20003);
    assert_eq!(body["message"], "Authenticate");
    assert_eq!(
        body["more_info"],
        "https://www.twilio.com/docs/errors/20003"
    );
    assert_eq!(body["status"], 401);

    let wrong = client
        .post(calls_url(&sim))
        .basic_auth(SID, Some("wrong"))
        .form(&dial(TO, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);

    let other = "AC99999999999999999999999999999999";
    let foreign = client
        .get(format!(
            "{}/2010-04-01/Accounts/{other}/Calls.json",
            sim.url()
        ))
        .basic_auth(SID, Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status().as_u16(), 403);
    assert_eq!(foreign.json::<Value>().await.unwrap()["code"], 20003);

    let account = format!("{}/2010-04-01/Accounts/{SID}.json", sim.url());
    let (status, body) = get(&account).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("active")));
    assert_eq!(body["sid"], SID);

    sim.set_auth_token("rotated");
    assert_eq!(get(&account).await.0, 401, "the old token is refused");
    let probe = client
        .get(&account)
        .basic_auth(SID, Some("rotated"))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status().as_u16(), 200);
    assert!(sim.calls().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn creates_beyond_the_burst_get_429_and_create_nothing() {
    let sim = start(SimConfig {
        cps: 1.0,
        burst: 3,
        ..config()
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        let to = format!("+1555000200{i}");
        let (status, body) = create(&sim, &dial(&to, &[])).await;
        if status == 429 {
            assert_eq!(body["code"], 20429);
            assert_eq!(body["message"], "Too Many Requests");
            assert_eq!(body["status"], 429);
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [201, 201, 201, 429, 429]);
    assert_eq!(sim.throttled(), 2);
    assert_eq!(sim.calls().len(), 3);
    assert_eq!(sim.max_creates_in_any_second(), 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn invalid_creates_get_twilios_error_codes() {
    let sim = start(SimConfig {
        unreachable_prefixes: vec!["+1999".into()],
        ..config()
    })
    .await;
    let cases: Vec<(Vec<(&str, &str)>, u64)> = vec![
        (vec![("From", FROM), ("Twiml", "<Response/>")], 21201),
        (vec![("To", TO), ("Twiml", "<Response/>")], 21213),
        (vec![("To", TO), ("From", FROM)], 21205),
        (dial("5550001001", &[]), 21211),
        (dial("+1555", &[]), 21211),
        (dial("+19990001001", &[]), 21217),
        (
            dial(
                TO,
                &[
                    ("StatusCallback", "http://127.0.0.1:9/cb"),
                    ("StatusCallbackEvent", "initiated ringing"),
                ],
            ),
            21626,
        ),
    ];
    for (params, code) in cases {
        let (status, body) = create(&sim, &params).await;
        assert_eq!(
            (status, body["code"].as_u64()),
            (400, Some(code)),
            "{params:?}: {body}"
        );
        assert_eq!(body["status"], 400);
    }
    assert!(sim.calls().is_empty());
    assert_eq!(sim.summary().invalid, 7);
    sim.shutdown().await;
}

#[tokio::test]
async fn calls_are_found_by_sid_and_by_to_since_a_time() {
    let sim = start(config()).await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let (_, first) = create(&sim, &dial(TO, &[])).await;
    let (_, _other) = create(&sim, &dial("+15550001002", &[])).await;
    let sid = first["sid"].as_str().unwrap().to_owned();

    let (status, body) = get(&call_url(&sim, &sid)).await;
    assert_eq!((status, body["sid"].as_str()), (200, Some(sid.as_str())));
    let (status, body) = get(&call_url(&sim, "CA00000000000000000000000000000000")).await;
    assert_eq!((status, body["code"].as_u64()), (404, Some(20404)));

    let list = |since: String| {
        let url = calls_url(&sim);
        async move {
            let response = reqwest::Client::new()
                .get(url)
                .basic_auth(SID, Some(TOKEN))
                .query(&[("To", TO), ("From", FROM), ("StartTime>=", since.as_str())])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    // The filter reads the call's start time, which it has once it rings.
    eventually("the call to ring", || {
        sim.calls()
            .iter()
            .any(|call| call.sid == sid && call.status != "queued")
    })
    .await;
    let found = list(before.to_rfc2822()).await;
    let calls = found["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{found}");
    assert_eq!(calls[0]["sid"], sid.as_str());
    assert_eq!(found["page"], 0);
    assert!(found["next_page_uri"].is_null());
    // Dates, not instants: a time later today still finds it; tomorrow does not.
    let later_today = before
        .date_naive()
        .and_hms_opt(23, 59, 59)
        .unwrap()
        .and_utc();
    assert_eq!(
        list(later_today.to_rfc3339()).await["calls"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    assert!(list(tomorrow).await["calls"].as_array().unwrap().is_empty());

    // Written by hand, `StartTime>=` reaches the server unencoded.
    let today = before.format("%Y-%m-%d");
    let raw = format!("{}?To=%2B15550001001&StartTime>={today}", calls_url(&sim));
    let (status, body) = get(&raw).await;
    assert_eq!(status, 200);
    assert_eq!(body["calls"].as_array().unwrap().len(), 1, "{body}");

    eventually("the call to end", || final_of(&sim, &sid).is_some()).await;
    let (_, body) = get(&call_url(&sim, &sid)).await;
    assert_eq!(body["status"], "completed");
    assert_eq!(body["duration"], "1");
    assert!(body["start_time"].is_string());
    assert!(body["end_time"].is_string());
    sim.shutdown().await;
}

fn all_events(callback: &str) -> Vec<(&str, &str)> {
    vec![
        ("StatusCallback", callback),
        ("StatusCallbackMethod", "POST"),
        ("StatusCallbackEvent", "initiated"),
        ("StatusCallbackEvent", "ringing"),
        ("StatusCallbackEvent", "answered"),
        ("StatusCallbackEvent", "completed"),
    ]
}

#[tokio::test]
async fn callbacks_are_signed_numbered_in_order_and_end_with_the_final_status() {
    let sim = start(config()).await;
    let receiver = Receiver::start(0, 204).await;
    let callback = receiver.url(CALLBACK);
    let mut params = dial(TO, &all_events(&callback));
    params.push(("MachineDetection", "Enable"));
    let (status, body) = create(&sim, &params).await;
    assert_eq!(status, 201);
    let sid = body["sid"].as_str().unwrap().to_owned();

    eventually("four callbacks", || receiver.received().len() >= 4).await;
    let received = receiver.received();
    assert_eq!(received.len(), 4);
    let statuses: Vec<&str> = received
        .iter()
        .map(|r| r.param("CallStatus").unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["initiated", "ringing", "in-progress", "completed"]
    );
    for (i, r) in received.iter().enumerate() {
        assert_eq!(r.url, callback);
        assert_eq!(r.method, "POST");
        assert!(verify(TOKEN, &callback, &r.params, &r.signature), "{r:?}");
        assert_eq!(r.param("SequenceNumber"), Some(i.to_string().as_str()));
        assert_eq!(r.param("CallSid"), Some(sid.as_str()));
        assert_eq!(r.param("AccountSid"), Some(SID));
        assert_eq!(r.param("To"), Some(TO));
        assert_eq!(r.param("From"), Some(FROM));
        assert_eq!(r.param("Direction"), Some("outbound-api"));
        assert_eq!(r.param("ApiVersion"), Some("2010-04-01"));
        assert_eq!(r.param("CallbackSource"), Some("call-progress-events"));
        assert!(chrono::DateTime::parse_from_rfc2822(r.param("Timestamp").unwrap()).is_ok());
    }
    let last = &received[3];
    assert_eq!(last.param("CallDuration"), Some("1"));
    assert_eq!(last.param("SipResponseCode"), Some("200"));
    assert_eq!(last.param("AnsweredBy"), Some("human"));
    assert_eq!(received[1].param("CallDuration"), None);

    eventually("the final callback to count as sent", || {
        final_of(&sim, &sid).is_some_and(|c| c.final_callback_sent)
    })
    .await;
    let call = final_of(&sim, &sid).unwrap();
    assert_eq!(call.campaign.as_deref(), Some("c1"));
    assert_eq!(call.call.as_deref(), Some("k1"));
    assert_eq!(call.attempt, Some(2));
    assert_eq!(call.status_callback.as_deref(), Some(callback.as_str()));
    assert_eq!(sim.callback_stats().delivered, 4);
    sim.shutdown().await;
    receiver.stop().await;
}

#[tokio::test]
async fn without_events_only_the_final_callback_is_sent_and_busy_carries_486() {
    let sim = start(SimConfig {
        mix: OutcomeMix {
            human: 0.0,
            busy: 1.0,
            ..OutcomeMix::human_only()
        },
        ..config()
    })
    .await;
    let receiver = Receiver::start(0, 200).await;
    let callback = receiver.url(CALLBACK);
    let (status, _) = create(&sim, &dial(TO, &[("StatusCallback", &callback)])).await;
    assert_eq!(status, 201);
    eventually("the final callback", || !receiver.received().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let received = receiver.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let only = &received[0];
    assert_eq!(only.param("CallStatus"), Some("busy"));
    assert_eq!(only.param("SipResponseCode"), Some("486"));
    assert_eq!(only.param("CallDuration"), Some("0"));
    assert_eq!(only.param("SequenceNumber"), Some("0"));
    assert_eq!(only.param("AnsweredBy"), None);
    assert!(verify(TOKEN, &callback, &only.params, &only.signature));
    sim.shutdown().await;
    receiver.stop().await;
}

#[tokio::test]
async fn machine_detection_names_the_machine_and_a_short_timeout_ends_no_answer() {
    let sim = start(SimConfig {
        mix: OutcomeMix {
            human: 0.0,
            machine: 1.0,
            ..OutcomeMix::human_only()
        },
        ..config()
    })
    .await;
    let (_, machine) = create(&sim, &dial(TO, &[("MachineDetection", "DetectMessageEnd")])).await;
    let (_, unanswered) = create(&sim, &dial("+15550001002", &[("Timeout", "0")])).await;
    let machine = machine["sid"].as_str().unwrap().to_owned();
    let unanswered = unanswered["sid"].as_str().unwrap().to_owned();
    eventually("both calls to end", || {
        final_of(&sim, &machine).is_some() && final_of(&sim, &unanswered).is_some()
    })
    .await;
    let machine = final_of(&sim, &machine).unwrap();
    assert_eq!(machine.status, "completed");
    assert_eq!(machine.answered_by.as_deref(), Some("machine_end_beep"));
    let unanswered = final_of(&sim, &unanswered).unwrap();
    assert_eq!(unanswered.status, "no-answer");
    assert_eq!(unanswered.sip_code, Some(487));
    assert_eq!(unanswered.duration_secs, Some(0));
    sim.shutdown().await;
}

#[tokio::test]
async fn duplicate_rate_sends_each_callback_twice_identically() {
    let sim = start(SimConfig {
        duplicate_rate: 1.0,
        ..config()
    })
    .await;
    let receiver = Receiver::start(0, 204).await;
    let callback = receiver.url(CALLBACK);
    create(&sim, &dial(TO, &[("StatusCallback", &callback)])).await;
    eventually("two copies", || receiver.received().len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].params, received[1].params);
    assert_eq!(received[0].signature, received[1].signature);
    assert_eq!(received[0].param("CallStatus"), Some("completed"));
    assert_eq!(sim.callback_stats().duplicated, 1);
    sim.shutdown().await;
    receiver.stop().await;
}

#[tokio::test]
async fn drop_final_rate_withholds_the_final_callback_but_the_call_ends() {
    let sim = start(SimConfig {
        drop_final_rate: 1.0,
        ..config()
    })
    .await;
    let receiver = Receiver::start(0, 204).await;
    let callback = receiver.url(CALLBACK);
    let (_, body) = create(
        &sim,
        &dial(
            TO,
            &[
                ("StatusCallback", &callback),
                ("StatusCallbackEvent", "ringing"),
                ("StatusCallbackEvent", "completed"),
            ],
        ),
    )
    .await;
    let sid = body["sid"].as_str().unwrap().to_owned();
    eventually("the call to end", || final_of(&sim, &sid).is_some()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let received = receiver.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].param("CallStatus"), Some("ringing"));
    let call = final_of(&sim, &sid).unwrap();
    assert_eq!(call.status, "completed");
    assert!(!call.final_callback_sent);
    let (_, looked_up) = get(&call_url(&sim, &sid)).await;
    assert_eq!(looked_up["status"], "completed");
    assert_eq!(sim.callback_stats().dropped_finals, 1);
    sim.shutdown().await;
    receiver.stop().await;
}

#[tokio::test]
async fn reorder_rate_shuffles_delivery_but_keeps_the_sequence_numbers() {
    let sim = start(SimConfig {
        reorder_rate: 1.0,
        ..config()
    })
    .await;
    let receiver = Receiver::start(0, 204).await;
    let callback = receiver.url(CALLBACK);
    create(&sim, &dial(TO, &all_events(&callback))).await;
    eventually("four callbacks", || receiver.received().len() >= 4).await;
    let received = receiver.received();
    let order: Vec<u64> = received
        .iter()
        .map(|r| r.param("SequenceNumber").unwrap().parse().unwrap())
        .collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [0, 1, 2, 3]);
    assert_ne!(order, sorted, "delivered out of order");
    for r in &received {
        let expected = match r.param("SequenceNumber").unwrap() {
            "0" => "initiated",
            "1" => "ringing",
            "2" => "in-progress",
            _ => "completed",
        };
        assert_eq!(r.param("CallStatus"), Some(expected));
        assert!(verify(TOKEN, &callback, &r.params, &r.signature));
    }
    sim.shutdown().await;
    receiver.stop().await;
}

#[tokio::test]
async fn failed_deliveries_are_retried_and_4xx_answers_are_not() {
    let sim = start(config()).await;
    let flaky = Receiver::start(2, 204).await;
    let refusing = Receiver::start(0, 404).await;
    let flaky_url = flaky.url(CALLBACK);
    let refusing_url = refusing.url(CALLBACK);
    create(&sim, &dial(TO, &[("StatusCallback", &flaky_url)])).await;
    create(
        &sim,
        &dial("+15550001002", &[("StatusCallback", &refusing_url)]),
    )
    .await;
    eventually("the third try", || flaky.received().len() >= 3).await;
    eventually("the refused callback", || !refusing.received().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(flaky.received().len(), 3);
    assert_eq!(refusing.received().len(), 1, "a 4xx is not retried");
    let stats = sim.callback_stats();
    assert_eq!((stats.failed, stats.delivered, stats.rejected), (2, 1, 1));
    sim.shutdown().await;
    flaky.stop().await;
    refusing.stop().await;
}

#[tokio::test]
async fn get_callbacks_are_signed_over_the_url_with_their_query() {
    let sim = start(config()).await;
    let receiver = Receiver::start(0, 204).await;
    let callback = receiver.url(CALLBACK);
    create(
        &sim,
        &dial(
            TO,
            &[
                ("StatusCallback", &callback),
                ("StatusCallbackMethod", "GET"),
            ],
        ),
    )
    .await;
    eventually("the callback", || !receiver.received().is_empty()).await;
    let r = &receiver.received()[0];
    assert_eq!(r.method, "GET");
    assert!(r.url.starts_with(&callback));
    assert_eq!(r.param("CallStatus"), Some("completed"));
    assert!(verify(TOKEN, &r.url, &[], &r.signature));
    sim.shutdown().await;
    receiver.stop().await;
}

#[tokio::test]
async fn a_hung_create_still_places_the_call() {
    let sim = start(SimConfig {
        hang_rate: 1.0,
        hang_for: Duration::from_secs(5),
        ..config()
    })
    .await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let answer = client
        .post(calls_url(&sim))
        .basic_auth(SID, Some(TOKEN))
        .form(&dial(TO, &[]))
        .send()
        .await;
    assert!(answer.is_err_and(|e| e.is_timeout()));
    let url = format!("{}?To=%2B15550001001", calls_url(&sim));
    let (status, body) = get(&url).await;
    assert_eq!(status, 200);
    assert_eq!(body["calls"].as_array().unwrap().len(), 1, "{body}");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_journal_and_peaks_record_each_live_interval() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("sim.journal");
    let sim = start(SimConfig {
        ring: (Duration::from_millis(150), Duration::from_millis(150)),
        journal: Some(journal.clone()),
        ..config()
    })
    .await;
    let callback = "http://127.0.0.1:9/webhooks/twilio/status?campaign=c1&call=k1&attempt=2";
    for _ in 0..2 {
        let (status, _) = create(&sim, &dial(TO, &[("StatusCallback", callback)])).await;
        assert_eq!(status, 201);
    }
    create(&sim, &dial("+15550001002", &[])).await;
    assert_eq!(sim.peak_live("c1"), 2);
    assert_eq!(sim.peak_live("other"), 0);
    assert_eq!(sim.peak_live_total(), 3);
    assert_eq!(sim.numbers_live_twice(), [TO]);
    eventually("every call to end", || {
        sim.calls().iter().all(SimCall::is_final)
    })
    .await;

    let text = std::fs::read_to_string(&journal).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert_eq!(lines.iter().filter(|l| l[0] == "start").count(), 3);
    assert_eq!(lines.iter().filter(|l| l[0] == "end").count(), 3);
    assert_eq!(lines[0][..4], ["start", "c1", "k1", "2"]);
    assert_eq!(lines[0][5], TO);
    assert!(lines[0][4].parse::<u128>().unwrap() > 0);
    assert!(lines
        .iter()
        .any(|l| l[..4] == ["start", "-", "-", "0"] && l[5] == "+15550001002"));

    let (_, summary) = get(&format!("{}/sim/summary", sim.url())).await;
    assert_eq!(summary["created"], 3);
    assert_eq!(summary["live"], 0);
    assert_eq!(summary["peak_live_by_campaign"]["c1"], 2);
    assert_eq!(summary["by_status"]["completed"], 3);
    let (_, calls) = get(&format!("{}/sim/calls", sim.url())).await;
    assert_eq!(calls.as_array().unwrap().len(), 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_rest_hang_up_cancels_a_ringing_call_and_reports_it() {
    let sim = start(SimConfig {
        ring: (Duration::from_secs(2), Duration::from_secs(2)),
        ..config()
    })
    .await;
    let receiver = Receiver::start(0, 204).await;
    let callback = receiver.url(CALLBACK);
    let (_, body) = create(&sim, &dial(TO, &[("StatusCallback", &callback)])).await;
    let sid = body["sid"].as_str().unwrap().to_owned();
    let update = |status: &'static str| {
        reqwest::Client::new()
            .post(call_url(&sim, &sid))
            .basic_auth(SID, Some(TOKEN))
            .form(&[("Status", status)])
            .send()
    };
    let canceled = update("canceled").await.unwrap();
    assert_eq!(canceled.status().as_u16(), 200);
    assert_eq!(
        canceled.json::<Value>().await.unwrap()["status"],
        "canceled"
    );
    eventually("the final callback", || !receiver.received().is_empty()).await;
    let r = &receiver.received()[0];
    assert_eq!(r.param("CallStatus"), Some("canceled"));
    assert_eq!(r.param("SipResponseCode"), Some("487"));
    let again = update("completed").await.unwrap();
    assert_eq!(again.status().as_u16(), 400);
    assert_eq!(again.json::<Value>().await.unwrap()["code"], 21220);
    assert_eq!(sim.summary().live, 0);
    sim.shutdown().await;
    receiver.stop().await;
}

#[tokio::test]
async fn a_queued_call_has_no_start_time_and_the_carriers_clock_is_its_own() {
    let offset = chrono::TimeDelta::seconds(-45);
    let sim = start(SimConfig {
        queue_for: Duration::from_secs(30),
        clock_offset: offset,
        ..config()
    })
    .await;
    let before = chrono::Utc::now();
    let (status, created) = create(&sim, &dial(TO, &[])).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "queued");
    assert!(created["start_time"].is_null(), "{created}");
    let reported = chrono::DateTime::parse_from_rfc2822(created["date_created"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert!(
        (reported - (before + offset)).num_seconds().abs() <= 2,
        "date_created {reported} on the carrier's clock"
    );
    let since = (before - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let filtered = format!("{}?To=%2B15550001001&StartTime>={since}", calls_url(&sim));
    let (_, body) = get(&filtered).await;
    assert!(
        body["calls"].as_array().unwrap().is_empty(),
        "a queued call matches no StartTime filter: {body}"
    );
    let unfiltered = format!("{}?To=%2B15550001001", calls_url(&sim));
    let (_, body) = get(&unfiltered).await;
    assert_eq!(body["calls"].as_array().unwrap().len(), 1, "{body}");
    sim.shutdown().await;
}
