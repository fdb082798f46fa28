//! Real telephony against the carrier simulator, which speaks Twilio's REST API and sends signed
//! status callbacks: outcomes recorded from callbacks (duplicated, reordered, dropped), limits
//! and the account's pace seen from the carrier's side, ambiguous creates, refused credentials
//! and forged callbacks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use outbound::adapters::twilio::signature;
use outbound::carrier_sim::{CarrierSim, OutcomeMix, SimCall, SimConfig};
use outbound::settings::{GoDuration, Secret, Settings};
use serde_json::{json, Value};

use crate::helpers::{all_calls, assert_invariant, decode, targets, unique_name, Mode, TestApp};
use crate::in_both_modes;
use crate::process::{free_port, Process};

pub(crate) const SID: &str = "AC0123456789abcdef0123456789abcdef";
pub(crate) const TOKEN: &str = "sim-auth-token";

pub(crate) async fn start_sim(configure: impl FnOnce(&mut SimConfig)) -> CarrierSim {
    let mut config = SimConfig {
        account_sid: SID.into(),
        auth_token: TOKEN.into(),
        seed: Some(11),
        ..SimConfig::default()
    };
    configure(&mut config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("sim port");
    CarrierSim::start(config, listener)
        .await
        .expect("sim starts")
}

pub(crate) fn use_carrier(settings: &mut Settings, sim: &CarrierSim, port: u16) {
    settings.http.bind = format!("127.0.0.1:{port}");
    let twilio = &mut settings.telephony.twilio;
    settings.telephony.provider = outbound::settings::ProviderName::Twilio;
    twilio.api_base = sim.url();
    twilio.account_sid = SID.into();
    twilio.auth_token = Secret::new(TOKEN);
    twilio.from = "+15555550100".into();
    twilio.public_url = format!("http://127.0.0.1:{port}");
    twilio.cps = 500.0;
    // The least the law allows; lost finals are looked up `lookup_after` past it.
    twilio.ring_timeout = GoDuration(Duration::from_secs(15));
    twilio.lookup_after = GoDuration(Duration::from_millis(500));
    twilio.request_timeout = GoDuration(Duration::from_millis(800));
    twilio.max_call_duration = GoDuration(Duration::from_secs(1));
    twilio.probe_interval = GoDuration(Duration::from_millis(300));
    settings.scheduler.heartbeat_interval = GoDuration(Duration::from_millis(200));
    settings.scheduler.orphan_after = GoDuration(Duration::from_secs(1));
}

pub(crate) async fn carrier_app(
    mode: Mode,
    sim: &CarrierSim,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    let port = free_port();
    TestApp::spawn_in(mode, |settings| {
        use_carrier(settings, sim, port);
        configure(settings);
    })
    .await
}

pub(crate) fn campaign(count: usize, limit: u32, max_attempts: u32) -> Value {
    json!({
        "name": unique_name("carrier"),
        "time_zone": "UTC",
        "max_concurrent_calls": limit,
        "retry_policy": {"max_attempts": max_attempts, "base_delay": "10ms", "max_delay": "50ms", "jitter": 0.2},
        "targets": targets(count, 0),
    })
}

/// An API to read from: a test app, or a process.
pub(crate) struct Api<'a> {
    client: &'a reqwest::Client,
    base: &'a str,
}

impl<'a> From<&'a TestApp> for Api<'a> {
    fn from(app: &'a TestApp) -> Self {
        Api {
            client: &app.client,
            base: &app.base,
        }
    }
}

impl<'a> From<&'a Process> for Api<'a> {
    fn from(process: &'a Process) -> Self {
        Api {
            client: &process.client,
            base: &process.base,
        }
    }
}

/// Every attempt of every call of a campaign, as `GET /calls/{id}` shows them.
pub(crate) async fn attempts(api: Api<'_>, id: &str) -> Vec<(Value, Vec<Value>)> {
    let mut all = Vec::new();
    for call in all_calls(api.client, api.base, id).await {
        let call_id = call["id"].as_str().expect("call id");
        let response = api
            .client
            .get(format!("{}/api/v1/calls/{call_id}", api.base))
            .send()
            .await
            .expect("sent");
        let (status, detail) = decode(response).await;
        assert_eq!(status, 200, "{detail}");
        let attempts = detail["attempts"].as_array().cloned().unwrap_or_default();
        all.push((call, attempts));
    }
    all
}

/// Checks every attempt the engine recorded against the carrier's record of its call, and the
/// campaign's statistics against the carrier's truth.
pub(crate) async fn assert_matches_the_carrier(
    api: Api<'_>,
    sim: &CarrierSim,
    id: &str,
    stats: &Value,
) {
    let truth: HashMap<String, SimCall> = sim
        .calls()
        .into_iter()
        .filter(|call| call.campaign.as_deref() == Some(id))
        .map(|call| (call.sid.clone(), call))
        .collect();
    let mut recorded = 0;
    let mut completed = 0;
    for (call, attempts) in attempts(api, id).await {
        for attempt in &attempts {
            let sid = attempt["provider"]["call_sid"]
                .as_str()
                .unwrap_or_else(|| panic!("attempt without the carrier's sid: {attempt}"));
            let carrier = truth
                .get(sid)
                .unwrap_or_else(|| panic!("{sid} unknown to the carrier"));
            assert_eq!(
                attempt["provider"]["status"].as_str(),
                Some(carrier.status.as_str()),
                "attempt {attempt} vs carrier {carrier:?}"
            );
            assert_eq!(carrier.call.as_deref(), call["id"].as_str());
            recorded += 1;
        }
        let last = attempts.last().expect("every call was attempted");
        if last["provider"]["status"] == "completed" {
            completed += 1;
            assert_eq!(call["status"], "completed", "{call}");
        } else {
            assert_ne!(call["status"], "completed", "{call}");
        }
    }
    assert_eq!(
        recorded,
        truth.len(),
        "one attempt per call the carrier created"
    );
    assert_eq!(
        stats["completed_calls"].as_u64(),
        Some(completed),
        "{stats}"
    );
    assert_eq!(
        stats["attempts_total"].as_u64(),
        Some(truth.len() as u64),
        "{stats}"
    );
}

in_both_modes!(outcomes_come_from_signed_callbacks_despite_duplicates_and_reordering);
async fn outcomes_come_from_signed_callbacks_despite_duplicates_and_reordering(mode: Mode) {
    let sim = start_sim(|config| {
        config.duplicate_rate = 0.3;
        config.reorder_rate = 0.3;
        config.mix = OutcomeMix {
            human: 0.5,
            machine: 0.1,
            busy: 0.15,
            no_answer: 0.1,
            failed_permanent: 0.05,
            failed_transient: 0.1,
        };
    })
    .await;
    let app = carrier_app(mode, &sim, |_| {}).await;
    let created = app.create_campaign(campaign(40, 5, 3)).await;
    let id = created["id"].as_str().expect("id");
    app.start(id).await;
    let stats = app.wait_completed(id, Duration::from_secs(60)).await;
    assert_matches_the_carrier((&app).into(), &sim, id, &stats).await;
    assert!(
        sim.peak_live(id) <= 5,
        "the carrier saw {} live calls of a campaign limited to 5",
        sim.peak_live(id)
    );
    assert!(
        sim.numbers_live_twice().is_empty(),
        "{:?}",
        sim.numbers_live_twice()
    );
    let summary = sim.summary();
    assert!(
        summary.callbacks.duplicated > 0,
        "the knob duplicated nothing: {summary:?}"
    );
    app.shutdown().await;
    sim.stop();
}

in_both_modes!(a_call_whose_final_callback_never_comes_is_looked_up);
async fn a_call_whose_final_callback_never_comes_is_looked_up(mode: Mode) {
    let sim = start_sim(|config| {
        config.drop_final_rate = 0.5;
    })
    .await;
    // Calls may last hours: the lookup comes lookup_after past the ring timeout all the same.
    let app = carrier_app(mode, &sim, |settings| {
        settings.telephony.twilio.max_call_duration = GoDuration(Duration::from_secs(3600));
    })
    .await;
    // Every call at once: each dropped final holds its slot until it is looked up, once ring
    // timeout + lookup_after (15.5 s) have passed.
    let created = app.create_campaign(campaign(12, 12, 2)).await;
    let id = created["id"].as_str().expect("id");
    app.start(id).await;
    let stats = app.wait_completed(id, Duration::from_secs(90)).await;
    assert!(sim.summary().callbacks.dropped_finals > 0);
    assert_matches_the_carrier((&app).into(), &sim, id, &stats).await;
    app.shutdown().await;
    sim.stop();
}

in_both_modes!(forged_altered_and_replayed_callbacks_change_nothing);
async fn forged_altered_and_replayed_callbacks_change_nothing(mode: Mode) {
    let sim = start_sim(|_| {}).await;
    let app = carrier_app(mode, &sim, |_| {}).await;
    let created = app.create_campaign(campaign(3, 3, 1)).await;
    let id = created["id"].as_str().expect("id");
    app.start(id).await;
    let before = app.wait_completed(id, Duration::from_secs(30)).await;

    let call = sim
        .calls()
        .into_iter()
        .find(|call| call.campaign.as_deref() == Some(id))
        .expect("a call of the campaign");
    let url = call.status_callback.clone().expect("callback url");
    let query = url
        .split_once('?')
        .map(|(_, q)| q.to_owned())
        .unwrap_or_default();
    let flipped = if call.status == "completed" {
        "busy"
    } else {
        "completed"
    };
    let params: Vec<(String, String)> = [
        ("CallSid", call.sid.as_str()),
        ("AccountSid", SID),
        ("CallStatus", flipped),
        ("CallDuration", "7"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let body = |params: &[(String, String)]| {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish()
    };
    let post = |signature: Option<String>, body: String, query: String| {
        let mut request = app
            .client
            .post(app.url(&format!("/webhooks/twilio/status?{query}")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("X-Twilio-Signature", signature);
        }
        request.send()
    };
    let decode = |response: reqwest::Response| crate::helpers::decode(response);

    // Forged: signed with another token; unsigned; altered after signing.
    let forged = signature::sign("not-the-token", &url, &params);
    let (status, error) = decode(
        post(Some(forged), body(&params), query.clone())
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(status, 403, "{error}");
    assert_eq!(error["code"], "invalid_signature");
    let (status, _) = decode(
        post(None, body(&params), query.clone())
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(status, 403);
    let signed = signature::sign(TOKEN, &url, &params);
    let mut altered = params.clone();
    altered[3].1 = "8".into();
    let (status, _) = decode(
        post(Some(signed.clone()), body(&altered), query.clone())
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(status, 403);

    // A validly signed final status for an attempt already recorded: accepted, changes nothing.
    let (status, _) = decode(
        post(Some(signed.clone()), body(&params), query.clone())
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = decode(
        post(Some(signed), body(&params), query.clone())
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(status, 204);

    // Validly signed, naming an attempt this deployment never made.
    let unknown_query = query.replace(
        &format!("campaign={id}"),
        &format!("campaign={}", uuid::Uuid::now_v7()),
    );
    let unknown_url = url.replace(&query, &unknown_query);
    let signed_unknown = signature::sign(TOKEN, &unknown_url, &params);
    let (status, error) = decode(
        post(Some(signed_unknown), body(&params), unknown_query)
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(status, 404, "{error}");

    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = app.stats(id).await;
    assert_eq!(
        before, after,
        "callbacks after the final one changed the statistics"
    );
    let (_, detail) = app
        .get(&format!(
            "/api/v1/calls/{}",
            call.call.as_deref().unwrap_or_default()
        ))
        .await;
    assert_eq!(
        detail["attempts"][0]["provider"]["status"].as_str(),
        Some(call.status.as_str())
    );
    // Counters are per process, and other tests share this one: at least these three.
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let refused = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix("outbound_carrier_callbacks_total{result=\"bad_signature\"} ")
        })
        .and_then(|value| value.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(refused >= 3.0, "signature failures are counted: {refused}");
    app.shutdown().await;
    sim.stop();
}

in_both_modes!(hanging_creates_never_ring_a_number_twice);
async fn hanging_creates_never_ring_a_number_twice(mode: Mode) {
    let sim = start_sim(|config| {
        config.hang_rate = 0.2;
        config.hang_for = Duration::from_secs(2);
    })
    .await;
    // The client gives up after 800 ms: every hanging create is ambiguous and looked up.
    let app = carrier_app(mode, &sim, |_| {}).await;
    let created = app.create_campaign(campaign(30, 10, 2)).await;
    let id = created["id"].as_str().expect("id");
    app.start(id).await;
    let stats = app.wait_completed(id, Duration::from_secs(60)).await;
    assert!(
        sim.numbers_live_twice().is_empty(),
        "{:?}",
        sim.numbers_live_twice()
    );
    assert_matches_the_carrier((&app).into(), &sim, id, &stats).await;
    app.shutdown().await;
    sim.stop();
}

in_both_modes!(creates_keep_to_the_accounts_pace);
async fn creates_keep_to_the_accounts_pace(mode: Mode) {
    let sim = start_sim(|config| {
        config.cps = 50.0;
        config.burst = 1;
    })
    .await;
    let app = carrier_app(mode, &sim, |settings| {
        settings.telephony.twilio.cps = 8.0;
    })
    .await;
    let created = app.create_campaign(campaign(30, 30, 1)).await;
    let id = created["id"].as_str().expect("id");
    let started = Instant::now();
    app.start(id).await;
    app.wait_completed(id, Duration::from_secs(60)).await;
    // 30 creates at 8 per second take at least 29/8 s.
    assert!(
        started.elapsed() >= Duration::from_millis(3_500),
        "{:?}",
        started.elapsed()
    );
    let peak = sim.max_creates_in_any_second();
    assert!(peak <= 8 + 1, "{peak} creates in one second at cps 8");
    assert_eq!(sim.throttled(), 0, "the carrier never had to throttle");
    app.shutdown().await;
    sim.stop();
}

in_both_modes!(refused_credentials_spend_no_attempt_and_readyz_says_why);
async fn refused_credentials_spend_no_attempt_and_readyz_says_why(mode: Mode) {
    let sim = start_sim(|config| {
        config.auth_token = "the-carrier-has-another-token".into();
        // Every call answers: any second attempt would be one the refusal spent.
        config.mix = OutcomeMix::human_only();
    })
    .await;
    let app = carrier_app(mode, &sim, |_| {}).await;
    let created = app.create_campaign(campaign(5, 5, 2)).await;
    let id = created["id"].as_str().expect("id");
    app.start(id).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = app.get("/readyz").await;
        if status == 503 && body["provider"]["status"] == "unavailable" {
            let reason = body["provider"]["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("401"), "{body}");
            assert!(!reason.contains(TOKEN), "the token leaked: {body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readyz never named the provider: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sim.calls().is_empty(), "nothing reached the carrier");
    sim.set_auth_token(TOKEN);
    let stats = app.wait_completed(id, Duration::from_secs(30)).await;
    for (call, attempts) in attempts((&app).into(), id).await {
        assert_eq!(
            attempts.len(),
            1,
            "the refused creates spent no attempt: {call}"
        );
    }
    assert_matches_the_carrier((&app).into(), &sim, id, &stats).await;
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, 200);
    app.shutdown().await;
    sim.stop();
}

/// The executable's settings for the carrier, as environment variables.
fn carrier_env(sim: &CarrierSim, public_port: u16) -> Vec<(String, String)> {
    [
        ("OUTBOUND__TELEPHONY__PROVIDER", "twilio".to_owned()),
        ("OUTBOUND__TELEPHONY__TWILIO__API_BASE", sim.url()),
        ("OUTBOUND__TELEPHONY__TWILIO__ACCOUNT_SID", SID.to_owned()),
        ("OUTBOUND__TELEPHONY__TWILIO__AUTH_TOKEN", TOKEN.to_owned()),
        (
            "OUTBOUND__TELEPHONY__TWILIO__FROM",
            "+15555550100".to_owned(),
        ),
        (
            "OUTBOUND__TELEPHONY__TWILIO__PUBLIC_URL",
            format!("http://127.0.0.1:{public_port}"),
        ),
        ("OUTBOUND__TELEPHONY__TWILIO__CPS", "200".to_owned()),
        (
            "OUTBOUND__TELEPHONY__TWILIO__RING_TIMEOUT",
            "15s".to_owned(),
        ),
        (
            "OUTBOUND__TELEPHONY__TWILIO__LOOKUP_AFTER",
            "500ms".to_owned(),
        ),
        (
            "OUTBOUND__TELEPHONY__TWILIO__REQUEST_TIMEOUT",
            "800ms".to_owned(),
        ),
        (
            "OUTBOUND__TELEPHONY__TWILIO__MAX_CALL_DURATION",
            "1s".to_owned(),
        ),
        ("OUTBOUND__SCHEDULER__ORPHAN_AFTER", "2s".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Calls long enough to be live at the carrier when their dialer dies.
async fn long_call_sim() -> CarrierSim {
    start_sim(|config| {
        config.talk = (Duration::from_millis(800), Duration::from_millis(2_000));
        config.ring = (Duration::from_millis(50), Duration::from_millis(200));
    })
    .await
}

pub(crate) async fn wait_for_creates(sim: &CarrierSim, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim.calls().len() < count {
        assert!(
            Instant::now() < deadline,
            "the carrier got {} creates",
            sim.calls().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_completed(process: &Process, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, stats) = process.get(&format!("/api/v1/campaigns/{id}/stats")).await;
        assert_invariant(&stats);
        let (_, campaign) = process.get(&format!("/api/v1/campaigns/{id}")).await;
        if campaign["status"] == "completed" {
            return process
                .get(&format!("/api/v1/campaigns/{id}/stats"))
                .await
                .1;
        }
        assert!(Instant::now() < deadline, "not completed: {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start_carrier_campaign(process: &Process, count: usize, limit: u32) -> String {
    let (status, created) = process
        .post("/api/v1/campaigns", campaign(count, limit, 2))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let (status, _) = process
        .post(&format!("/api/v1/campaigns/{id}/start"), json!({}))
        .await;
    assert_eq!(status, 204);
    id
}

/// What the carrier saw of a campaign whose dialer was killed: never above the limit, no
/// number rung twice at once, and one recorded attempt per call it created.
async fn assert_survived(process: &Process, sim: &CarrierSim, id: &str, limit: u64) {
    let stats = wait_completed(process, id).await;
    let peak = sim.peak_live(id);
    assert!(
        peak <= limit,
        "the carrier saw {peak} live calls, limit {limit}"
    );
    assert!(
        sim.numbers_live_twice().is_empty(),
        "{:?}",
        sim.numbers_live_twice()
    );
    assert_matches_the_carrier(process.into(), sim, id, &stats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_keeps_carrier_calls_slots_until_their_callbacks_settle_them() {
    let sim = long_call_sim().await;
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let mut env = carrier_env(&sim, port);
    env.push((
        "OUTBOUND__STORAGE__URL".into(),
        format!("sqlite://{}", dir.path().join("outbound.db").display()),
    ));
    let first = Process::start_on(dir.path(), "all", &env, port).await;
    let id = start_carrier_campaign(&first, 30, 5).await;
    wait_for_creates(&sim, 8).await;
    first.kill_hard();
    // The carrier keeps calling back while nothing listens; the restarted process answers.
    let second = Process::start_on(dir.path(), "all", &env, port).await;
    assert_survived(&second, &sim, &id, 5).await;
    assert!(second.terminate().success(), "clean exit");
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_call_process_leaves_its_carrier_calls_to_the_callbacks_in_distributed_mode() {
    let sim = long_call_sim().await;
    let database = crate::fixtures::fresh_postgres_database().await;
    let redis = std::env::var("OUTBOUND_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("OUTBOUND_TEST_REDIS_URL is not set: run the tests through scripts/test.sh")
    });
    let prefix = format!("tw-{}.", uuid::Uuid::now_v7().simple());
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock kafka cluster");
    for topic in ["dispatch", "status", "retry", "wake", "dead-letter"] {
        cluster
            .create_topic(&format!("{prefix}{topic}"), 2, 1)
            .expect("create a mock topic");
    }
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let mut env = carrier_env(&sim, port);
    env.extend(
        [
            ("OUTBOUND__STORAGE__URL", database),
            ("OUTBOUND__LIMITER__URL", redis),
            ("OUTBOUND__BUS__KIND", "kafka".to_owned()),
            ("OUTBOUND__BUS__BROKERS", cluster.bootstrap_servers()),
            ("OUTBOUND__BUS__TOPIC_PREFIX", prefix),
            ("OUTBOUND__BUS__PARTITIONS", "2".to_owned()),
            // The mock cluster's rebalances never settle below 4 s.
            ("OUTBOUND__BUS__SESSION_TIMEOUT", "6s".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let (api, dialer) = tokio::join!(
        Process::start_on(dir.path(), "api,scheduler,status,retry", &env, port),
        Process::start(dir.path(), "call", &env),
    );
    let id = start_carrier_campaign(&api, 30, 5).await;
    wait_for_creates(&sim, 8).await;
    dialer.kill_hard();
    let replacement = Process::start(dir.path(), "call", &env).await;
    assert_survived(&api, &sim, &id, 5).await;
    for process in [replacement, api] {
        assert!(process.terminate().success(), "clean exit");
    }
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaigns_caller_id_and_audio_reach_the_carrier() {
    let sim = start_sim(|_| {}).await;
    let app = carrier_app(Mode::Embedded, &sim, |_| {}).await;

    let mut bad = campaign(1, 1, 1);
    bad["caller_id"] = json!("555-0199");
    bad["twiml"] = json!("<Response/>");
    bad["voice_url"] = json!("https://example.com/hello.xml");
    let (status, error) = app.post("/api/v1/campaigns", bad).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["code"], "validation_failed");
    let details = error["details"].to_string();
    assert!(
        details.contains("caller_id") && details.contains("voice_url"),
        "{error}"
    );
    for (field, value) in [("twiml", "Hello"), ("voice_url", "ftp://example.com/x")] {
        let mut bad = campaign(1, 1, 1);
        bad[field] = json!(value);
        let (status, error) = app.post("/api/v1/campaigns", bad).await;
        assert_eq!(status, 400, "{field}: {error}");
    }

    let mut body = campaign(3, 3, 1);
    body["caller_id"] = json!("+1 (555) 555-0199");
    body["voice_url"] = json!("https://example.com/hello.xml");
    let created = app.create_campaign(body).await;
    assert_eq!(created["caller_id"], "+15555550199");
    assert_eq!(created["voice_url"], "https://example.com/hello.xml");
    assert!(created.get("twiml").is_none());
    let id = created["id"].as_str().expect("id");
    app.start(id).await;
    let stats = app.wait_completed(id, Duration::from_secs(30)).await;
    assert_matches_the_carrier((&app).into(), &sim, id, &stats).await;
    for call in sim.calls() {
        assert_eq!(call.from, "+15555550199", "{call:?}");
    }

    // A completed campaign keeps its voice.
    let (_, kept) = app.get(&format!("/api/v1/campaigns/{id}")).await;
    assert_eq!(kept["caller_id"], "+15555550199");

    // Another audio replaces the first; empty strings return to the configured defaults.
    let created = app.create_campaign(campaign(1, 1, 1)).await;
    let fresh = created["id"].as_str().expect("id");
    let fresh_path = format!("/api/v1/campaigns/{fresh}");
    let (status, updated) = app
        .put(
            &fresh_path,
            json!({"twiml": "<Response><Say>Hi</Say></Response>", "caller_id": "+15555550188"}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["twiml"], "<Response><Say>Hi</Say></Response>");
    assert_eq!(updated["caller_id"], "+15555550188");
    let (status, updated) = app
        .put(&fresh_path, json!({"twiml": "", "caller_id": ""}))
        .await;
    assert_eq!(status, 200, "{updated}");
    assert!(
        updated.get("twiml").is_none() && updated.get("caller_id").is_none(),
        "{updated}"
    );
    app.shutdown().await;
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_waiting_for_the_pace_are_not_placed_once_the_campaign_pauses() {
    let sim = start_sim(|_| {}).await;
    // Two creates a second: most of the campaign's ten dispatches wait for their turn.
    let app = carrier_app(Mode::Embedded, &sim, |settings| {
        settings.telephony.twilio.cps = 2.0;
    })
    .await;
    let created = app.create_campaign(campaign(10, 10, 1)).await;
    let id = created["id"].as_str().expect("id");
    app.start(id).await;
    wait_for_creates(&sim, 2).await;
    let (status, _) = app
        .post_empty(&format!("/api/v1/campaigns/{id}/pause"))
        .await;
    assert_eq!(status, 204);
    // A create whose turn had come as the pause landed may still go out.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let at_pause = sim.calls().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        sim.calls().len(),
        at_pause,
        "creates went on after the pause"
    );
    assert!(
        at_pause < 10,
        "every call was placed before the pause: {at_pause}"
    );
    // Those never placed went back unspent: dialing again finishes the campaign.
    app.start(id).await;
    let stats = app.wait_completed(id, Duration::from_secs(60)).await;
    assert_matches_the_carrier((&app).into(), &sim, id, &stats).await;
    app.shutdown().await;
    sim.stop();
}
