//! The promises that hold through the carrier (telephony.md), each rehearsed against the carrier
//! simulator: a create waiting for the pace or for credentials obeys what committed meanwhile,
//! none is sent past `place_deadline`, refusals stay scoped to what they are about, a refused
//! read never stops dialing for good, and blocked calls are not redialed.

use std::time::{Duration, Instant};

use chrono::{Datelike, Utc};
use outbound::carrier_sim::{CarrierSim, OutcomeMix};
use outbound::settings::GoDuration;
use serde_json::{json, Value};

use crate::helpers::{targets, Mode, TestApp};
use crate::in_both_modes;
use crate::telephony::{
    assert_matches_the_carrier, attempts, campaign, carrier_app, start_sim, TOKEN,
};

/// A campaign of `count` targets numbered from `offset`, all dialed at once, one attempt each.
fn numbered(count: usize, offset: usize) -> Value {
    let mut body = campaign(count, count as u32, 1);
    body["targets"] = json!(targets(count, offset));
    body
}

fn numbers(count: usize, offset: usize) -> Vec<String> {
    targets(count, offset)
        .into_iter()
        .filter_map(|t| t["phone_number"].as_str().map(str::to_owned))
        .collect()
}

async fn wait_until(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "{what} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn created(app: &TestApp, body: Value) -> String {
    let created = app.create_campaign(body).await;
    created["id"].as_str().expect("id").to_owned()
}

/// Numbers the carrier created a call to.
fn called(sim: &CarrierSim) -> Vec<String> {
    sim.calls().into_iter().map(|call| call.to).collect()
}

in_both_modes!(a_create_waiting_for_the_carrier_obeys_what_committed_meanwhile);
async fn a_create_waiting_for_the_carrier_obeys_what_committed_meanwhile(mode: Mode) {
    let sim = start_sim(|config| config.mix = OutcomeMix::human_only()).await;
    // Long enough that no wait below reaches it: this is about the check before each create.
    let app = carrier_app(mode, &sim, |settings| {
        settings.telephony.twilio.place_deadline = GoDuration(Duration::from_secs(600));
    })
    .await;
    // The carrier throttles every create: each attempt is begun, tries once and waits.
    sim.throttle_all(true);
    let paused = created(&app, numbered(2, 100)).await;
    let completed = created(&app, numbered(2, 200)).await;
    let listed = created(&app, numbered(2, 300)).await;
    let closed = created(&app, numbered(2, 400)).await;
    let free = created(&app, numbered(2, 500)).await;
    for id in [&paused, &completed, &listed, &closed, &free] {
        app.start(id).await;
    }
    let everyone: Vec<String> = [100, 200, 300, 400, 500]
        .into_iter()
        .flat_map(|offset| numbers(2, offset))
        .collect();
    wait_until(
        "not every attempt tried its create",
        Duration::from_secs(30),
        async || {
            let throttled = sim.throttled_numbers();
            everyone.iter().all(|number| throttled.contains(number))
        },
    )
    .await;
    // Then the account's credentials are refused for a while.
    sim.set_auth_token("rotated-by-someone-else");
    wait_until(
        "the refusal was never seen",
        Duration::from_secs(30),
        async || app.get("/readyz").await.0 == 503,
    )
    .await;
    // While every create waits, the operator pauses one campaign, completes another, lists a
    // number of a third and closes the fourth's window.
    let (status, _) = app
        .post_empty(&format!("/api/v1/campaigns/{paused}/pause"))
        .await;
    assert_eq!(status, 204);
    let (status, _) = app
        .post_empty(&format!("/api/v1/campaigns/{completed}/complete"))
        .await;
    assert_eq!(status, 204);
    let forbidden = numbers(1, 300).remove(0);
    let (status, body) = app
        .post("/api/v1/dnc", json!({"numbers": [forbidden]}))
        .await;
    assert!(status == 200 || status == 201, "{body}");
    let other_day = (Utc::now().weekday().num_days_from_sunday() + 3) % 7;
    let (status, body) = app
        .put(
            &format!("/api/v1/campaigns/{closed}"),
            json!({"business_hours": [{"day_of_week": other_day, "start": "09:00", "end": "10:00"}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The carrier comes back.
    sim.set_auth_token(TOKEN);
    sim.throttle_all(false);
    for id in [&free, &listed] {
        app.wait_completed(id, Duration::from_secs(60)).await;
    }
    // Give a create that would wrongly go out the time to reach the carrier.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rung = called(&sim);
    let mut expected = numbers(2, 500);
    expected.push(numbers(2, 300).remove(1));
    expected.sort();
    let mut seen = rung.clone();
    seen.sort();
    assert_eq!(
        seen, expected,
        "the carrier got creates for paused, completed, listed or closed calls"
    );
    for id in [&paused, &completed, &closed] {
        let stats = app.stats(id).await;
        assert_eq!(stats["attempts_total"], 0, "attempts were spent: {stats}");
    }
    assert_eq!(app.campaign(&paused).await["status"], "paused");
    app.shutdown().await;
    sim.stop();
}

in_both_modes!(no_create_is_sent_past_the_place_deadline);
async fn no_create_is_sent_past_the_place_deadline(mode: Mode) {
    let sim = start_sim(|config| config.mix = OutcomeMix::human_only()).await;
    let deadline = Duration::from_secs(2);
    let app = carrier_app(mode, &sim, |settings| {
        settings.telephony.twilio.place_deadline = GoDuration(deadline);
    })
    .await;
    sim.throttle_all(true);
    let id = created(&app, numbered(3, 600)).await;
    app.start(&id).await;
    // Throttled for twice the deadline: attempts go back unspent and are made again.
    tokio::time::sleep(deadline * 2).await;
    let stats = app.stats(&id).await;
    assert_eq!(stats["attempts_total"].as_u64(), Some(3), "{stats}");
    sim.throttle_all(false);
    let stats = app.wait_completed(&id, Duration::from_secs(60)).await;
    assert_matches_the_carrier((&app).into(), &sim, &id, &stats).await;
    // Each create went out within the deadline of the attempt it belongs to.
    let slack = chrono::Duration::milliseconds(1_500);
    for call in sim.calls() {
        let url = call.status_callback.clone().expect("callback url");
        let started = url
            .split(['?', '&'])
            .find_map(|pair| pair.strip_prefix("started="))
            .and_then(|ms| ms.parse::<i64>().ok())
            .and_then(chrono::DateTime::from_timestamp_millis)
            .expect("the callback names when the attempt began");
        let waited = call.created_at - started;
        assert!(
            waited <= chrono::Duration::from_std(deadline).expect("deadline") + slack,
            "created {waited} after its attempt began: {call:?}"
        );
    }
    app.shutdown().await;
    sim.stop();
}

in_both_modes!(a_refused_caller_id_pauses_its_campaign_alone);
async fn a_refused_caller_id_pauses_its_campaign_alone(mode: Mode) {
    let refused = "+15555550177";
    let sim = start_sim(|config| {
        config.mix = OutcomeMix::human_only();
        config.refused_callers = vec![refused.to_owned()];
    })
    .await;
    let app = carrier_app(mode, &sim, |_| {}).await;
    let mut body = numbered(3, 700);
    body["caller_id"] = json!(refused);
    let stopped = created(&app, body).await;
    let others = created(&app, numbered(5, 800)).await;
    app.start(&stopped).await;
    app.start(&others).await;
    let stats = app.wait_completed(&others, Duration::from_secs(60)).await;
    assert_matches_the_carrier((&app).into(), &sim, &others, &stats).await;
    let mut campaign = Value::Null;
    wait_until(
        "the refused campaign never paused",
        Duration::from_secs(30),
        async || {
            campaign = app.campaign(&stopped).await;
            campaign["status"] == "paused"
        },
    )
    .await;
    let reason = &campaign["pause_reason"];
    assert_eq!(reason["code"], "carrier_refused", "{campaign}");
    assert_eq!(reason["carrier_code"], 21210, "{campaign}");
    assert!(
        reason["message"]
            .as_str()
            .is_some_and(|m| m.contains("not yet verified")),
        "{campaign}"
    );
    let (status, explained) = app
        .get(&format!("/api/v1/campaigns/{stopped}/explain"))
        .await;
    assert_eq!(status, 200, "{explained}");
    assert_eq!(explained["pause_reason"]["code"], "carrier_refused");
    // Nothing was spent, nothing was created, and the account is not called unavailable.
    let stats = app.stats(&stopped).await;
    assert_eq!(stats["attempts_total"], 0, "{stats}");
    for number in numbers(3, 700) {
        assert!(!called(&sim).contains(&number), "{number} was called");
    }
    let (status, ready) = app.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    // Starting again clears the reason (and the carrier refuses again).
    app.start(&stopped).await;
    let restarted = app.campaign(&stopped).await;
    assert!(restarted.get("pause_reason").is_none(), "{restarted}");
    app.shutdown().await;
    sim.stop();
}

in_both_modes!(a_refused_lookup_does_not_stop_dialing);
async fn a_refused_lookup_does_not_stop_dialing(mode: Mode) {
    let sim = start_sim(|config| {
        config.mix = OutcomeMix::human_only();
        // Every create answers after the client gave up: each is looked up.
        config.hang_rate = 1.0;
        config.hang_for = Duration::from_secs(2);
        // Calls long enough that dialing goes on for seconds after the first lookups.
        config.talk = (Duration::from_millis(1_000), Duration::from_millis(1_500));
    })
    .await;
    // The carrier refuses the first reads, once: a transient 401.
    sim.refuse_reads(2);
    let app = carrier_app(mode, &sim, |_| {}).await;
    // Two at a time: dials go on long after the first lookups were refused.
    let mut body = campaign(12, 2, 1);
    body["targets"] = json!(targets(12, 900));
    let id = created(&app, body).await;
    app.start(&id).await;
    let stats = app.wait_completed(&id, Duration::from_secs(60)).await;
    assert!(sim.unauthorized() >= 2, "no read was refused");
    assert!(
        sim.numbers_live_twice().is_empty(),
        "{:?}",
        sim.numbers_live_twice()
    );
    assert_matches_the_carrier((&app).into(), &sim, &id, &stats).await;
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, 200);
    app.shutdown().await;
    sim.stop();
}

in_both_modes!(blocked_calls_are_not_redialed_with_the_same_caller_id);
async fn blocked_calls_are_not_redialed_with_the_same_caller_id(mode: Mode) {
    // One caller ID per mode: the metric is the process's, and both modes may run at once.
    let blocked = match mode {
        Mode::Embedded => "+15555550181",
        Mode::Distributed => "+15555550182",
    };
    let sim = start_sim(|config| {
        config.mix = OutcomeMix::human_only();
        config.blocked_callers = vec![blocked.to_owned()];
    })
    .await;
    let app = carrier_app(mode, &sim, |_| {}).await;
    let mut body = campaign(3, 3, 3);
    body["targets"] = json!(targets(3, 1000));
    body["caller_id"] = json!(blocked);
    let id = created(&app, body).await;
    app.start(&id).await;
    let stats = app.wait_completed(&id, Duration::from_secs(60)).await;
    assert_eq!(stats["failed_calls"], 3, "{stats}");
    assert_eq!(
        stats["attempts_total"], 3,
        "blocked calls were retried: {stats}"
    );
    for (call, tried) in attempts((&app).into(), &id).await {
        assert_eq!(tried.len(), 1, "{call}");
        assert_eq!(call["last_error"], "blocked_608", "{call}");
    }
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    let needle = format!("outbound_blocked_calls_total{{caller_id=\"{blocked}\"}} ");
    let counted: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix(&needle))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(counted >= 3.0, "blocked calls counted {counted}");
    app.shutdown().await;
    sim.stop();
}

in_both_modes!(a_paused_campaigns_waiting_dials_never_delay_another);
async fn a_paused_campaigns_waiting_dials_never_delay_another(mode: Mode) {
    let sim = start_sim(|config| config.mix = OutcomeMix::human_only()).await;
    // One create a second: most of the first campaign's dispatches wait for their turn.
    let app = carrier_app(mode, &sim, |settings| {
        settings.telephony.twilio.cps = 1.0;
    })
    .await;
    let backlog = created(&app, numbered(16, 1100)).await;
    app.start(&backlog).await;
    wait_until(
        "the first campaign never dialed",
        Duration::from_secs(30),
        async || !sim.calls().is_empty(),
    )
    .await;
    let (status, _) = app
        .post_empty(&format!("/api/v1/campaigns/{backlog}/pause"))
        .await;
    assert_eq!(status, 204);
    // Its waiting dispatches go back without spending the turns the next campaign needs
    // (fourteen turns at 1 a second would hold it for 14 s; its own two take 2 s).
    let next = created(&app, numbered(2, 1200)).await;
    let started = Instant::now();
    app.start(&next).await;
    let mine = numbers(2, 1200);
    wait_until(
        "the second campaign waited behind the paused one",
        Duration::from_secs(8),
        async || {
            let rung = called(&sim);
            mine.iter().all(|number| rung.contains(number))
        },
    )
    .await;
    let waited = started.elapsed();
    app.wait_completed(&next, Duration::from_secs(30)).await;
    let stats = app.stats(&backlog).await;
    let placed = sim
        .calls()
        .iter()
        .filter(|call| call.campaign.as_deref() == Some(backlog.as_str()))
        .count();
    assert_eq!(
        stats["attempts_total"].as_u64(),
        Some(placed as u64),
        "the paused campaign's waiting dials went back unspent ({waited:?}): {stats}"
    );
    app.shutdown().await;
    sim.stop();
}

in_both_modes!(a_queued_clock_skewed_carrier_never_gets_a_number_twice);
async fn a_queued_clock_skewed_carrier_never_gets_a_number_twice(mode: Mode) {
    // Behind in one mode and ahead in the other, by most of the minute the rule allows.
    let offset = match mode {
        Mode::Embedded => chrono::TimeDelta::seconds(-45),
        Mode::Distributed => chrono::TimeDelta::seconds(45),
    };
    let sim = start_sim(|config| {
        // Calls wait in the carrier's queue, with no start time, past every lookup below.
        config.queue_for = Duration::from_secs(3);
        config.clock_offset = offset;
        // Half the creates answer after the client gave up: each is looked up.
        config.hang_rate = 0.5;
        config.hang_for = Duration::from_secs(2);
        config.mix = OutcomeMix {
            human: 0.5,
            busy: 0.5,
            ..OutcomeMix::human_only()
        };
    })
    .await;
    let app = carrier_app(mode, &sim, |_| {}).await;
    let mut body = campaign(12, 12, 3);
    body["targets"] = json!(targets(12, 1300));
    let id = created(&app, body).await;
    app.start(&id).await;
    let stats = app.wait_completed(&id, Duration::from_secs(90)).await;
    assert!(
        sim.numbers_live_twice().is_empty(),
        "{:?}",
        sim.numbers_live_twice()
    );
    // One carrier call per attempt, each recorded with its own call: none created twice, none
    // taken for another attempt's.
    assert_matches_the_carrier((&app).into(), &sim, &id, &stats).await;
    let mut attempts_of_calls: Vec<(Option<String>, Option<u32>)> = sim
        .calls()
        .into_iter()
        .map(|call| (call.call, call.attempt))
        .collect();
    let created = attempts_of_calls.len();
    attempts_of_calls.sort();
    attempts_of_calls.dedup();
    assert_eq!(
        attempts_of_calls.len(),
        created,
        "an attempt was created twice"
    );
    app.shutdown().await;
    sim.stop();
}

in_both_modes!(an_unknown_refusal_fails_the_attempt_retryably_and_nothing_waits);
async fn an_unknown_refusal_fails_the_attempt_retryably_and_nothing_waits(mode: Mode) {
    let sim = start_sim(|config| config.mix = OutcomeMix::human_only()).await;
    // The first three creates are refused with a code the engine has no rule for.
    sim.refuse_creates(3, 21999);
    let app = carrier_app(mode, &sim, |_| {}).await;
    let mut body = campaign(6, 6, 2);
    body["targets"] = json!(targets(6, 1400));
    let id = created(&app, body).await;
    app.start(&id).await;
    let stats = app.wait_completed(&id, Duration::from_secs(60)).await;
    assert_eq!(stats["completed_calls"], 6, "{stats}");
    assert_eq!(
        stats["attempts_total"], 9,
        "three refused attempts, each tried again: {stats}"
    );
    let mut refused = 0;
    for (call, tried) in attempts((&app).into(), &id).await {
        for attempt in &tried {
            if attempt["error"] == "twilio_21999" {
                refused += 1;
            }
        }
        assert!(tried.len() <= 2, "{call}");
    }
    assert_eq!(refused, 3);
    let (status, ready) = app.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    app.shutdown().await;
    sim.stop();
}
