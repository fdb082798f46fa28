//! The benchmark scenarios through the carrier simulator: status callbacks verified and
//! recorded per second by one api process, and calls end to end with the account's pace.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::bench::{campaign_json, Bench};
use super::client::ApiClient;
use super::{driver, EmbeddedServer, LoadError};
use crate::adapters::twilio::signature;
use crate::carrier_sim::{CarrierSim, OutcomeMix, SimConfig};
use crate::settings::{Secret, Settings};

pub(super) fn failed(what: &str, err: impl std::fmt::Display) -> LoadError {
    LoadError::Server(format!("{what}: {err}"))
}

pub(super) async fn start_sim(config: SimConfig) -> Result<CarrierSim, LoadError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| failed("sim", e))?;
    CarrierSim::start(config, listener)
        .await
        .map_err(|e| failed("sim", e))
}

/// Points `settings` at `sim`, with the api on a port the carrier can call back; returns the
/// address to bind.
pub(super) fn use_sim(
    settings: &mut Settings,
    sim: &CarrierSim,
    config: &SimConfig,
    cps: f64,
) -> Result<String, LoadError> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| failed("port", e))?
        .port();
    settings.telephony.provider = crate::settings::ProviderName::Twilio;
    let twilio = &mut settings.telephony.twilio;
    twilio.api_base = sim.url();
    twilio.account_sid = config.account_sid.clone();
    twilio.auth_token = Secret::new(config.auth_token.clone());
    twilio.from = "+15555550100".into();
    twilio.public_url = format!("http://127.0.0.1:{port}");
    twilio.cps = cps;
    Ok(format!("127.0.0.1:{port}"))
}

pub(super) async fn wait_until(
    timeout: Duration,
    what: &str,
    mut done: impl AsyncFnMut() -> Result<bool, LoadError>,
) -> Result<(), LoadError> {
    let started = Instant::now();
    while !done().await? {
        if started.elapsed() > timeout {
            return Err(LoadError::Http(format!(
                "{what} not reached after {timeout:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// 20,000 calls live at the carrier whose final callbacks it never sends; the benchmark then
/// posts every final callback, signed, 64 at a time, to the one api process, and measures until
/// the statistics count every call completed.
pub(super) async fn callbacks(bench: &Bench) -> Result<Value, LoadError> {
    const CALLS: usize = 20_000;
    let config = SimConfig {
        seed: Some(1),
        burst: 1_000,
        cps: 20_000.0,
        drop_final_rate: 1.0,
        // Live until the benchmark's callbacks end them.
        talk: (Duration::from_secs(3_600), Duration::from_secs(3_600)),
        mix: OutcomeMix::human_only(),
        ..SimConfig::default()
    };
    let sim = start_sim(config.clone()).await?;
    let mut settings = bench.settings().await?;
    let bind = use_sim(&mut settings, &sim, &config, 10_000.0)?;
    let server = EmbeddedServer::start_on(settings, &bind).await?;
    let client = ApiClient::new(&server.base, 64)?;
    let id = client
        .create_campaign(campaign_json(
            &bench.name("callbacks"),
            CALLS,
            0,
            20_000,
            1,
            "1s",
        ))
        .await?;
    client.start(&id).await?;
    wait_until(Duration::from_secs(300), "every call placed", async || {
        Ok(sim
            .calls()
            .iter()
            .filter(|call| call.status == "in-progress")
            .count()
            >= CALLS)
    })
    .await?;
    // The carrier's own progress callbacks are done: only the benchmark's are measured.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let bodies: Vec<(String, String, String)> = sim
        .calls()
        .into_iter()
        .filter_map(|call| {
            let url = call.status_callback?;
            let params: Vec<(String, String)> = [
                ("AccountSid", config.account_sid.as_str()),
                ("CallSid", call.sid.as_str()),
                ("CallStatus", "completed"),
                ("CallDuration", "42"),
                ("SequenceNumber", "3"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            let signature = signature::sign(&config.auth_token, &url, &params);
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params.iter())
                .finish();
            let path = url
                .split_once("/webhooks")
                .map(|(_, rest)| format!("/webhooks{rest}"))?;
            Some((path, body, signature))
        })
        .collect();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|e| failed("client", e))?;
    let started = Instant::now();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(bodies));
    let workers: Vec<_> = (0..64)
        .map(|_| {
            let queue = queue.clone();
            let http = http.clone();
            let base = server.base.clone();
            tokio::spawn(async move {
                let mut refused = 0u64;
                loop {
                    let next = queue.lock().map(|mut q| q.pop()).unwrap_or(None);
                    let Some((path, body, signature)) = next else {
                        return refused;
                    };
                    let sent = http
                        .post(format!("{base}{path}"))
                        .header("content-type", "application/x-www-form-urlencoded")
                        .header("X-Twilio-Signature", signature)
                        .body(body)
                        .send()
                        .await;
                    if !sent.is_ok_and(|response| response.status().as_u16() == 204) {
                        refused += 1;
                    }
                }
            })
        })
        .collect();
    let mut refused = 0;
    for worker in workers {
        refused += worker.await.map_err(|e| failed("worker", e))?;
    }
    let accepted_seconds = started.elapsed().as_secs_f64();
    wait_until(
        Duration::from_secs(300),
        "every call recorded",
        async || {
            let stats = client.stats(&id).await?;
            Ok(stats["completed_calls"].as_u64() >= Some(CALLS as u64))
        },
    )
    .await?;
    let recorded_seconds = started.elapsed().as_secs_f64();
    server.stop().await?;
    sim.shutdown().await;
    Ok(bench.line(
        "callbacks",
        json!({
            "callbacks": CALLS,
            "refused": refused,
            "accepted_per_sec": CALLS as f64 / accepted_seconds,
            "recorded_per_sec": CALLS as f64 / recorded_seconds,
            "connections": 64,
        }),
    ))
}

/// Calls end to end through the carrier simulator at the account's pace: 3,000 calls of four
/// campaigns (limit 100 each), `cps` 300, short calls with the carrier's default outcome mix.
pub(super) async fn carrier(bench: &Bench) -> Result<Value, LoadError> {
    const CAMPAIGNS: usize = 4;
    const CALLS: usize = 750;
    const CPS: f64 = 300.0;
    let config = SimConfig {
        seed: Some(1),
        cps: CPS,
        burst: 30,
        ..SimConfig::default()
    };
    let sim = start_sim(config.clone()).await?;
    let mut settings = bench.settings().await?;
    let bind = use_sim(&mut settings, &sim, &config, CPS)?;
    let server = EmbeddedServer::start_on(settings, &bind).await?;
    let client = ApiClient::new(&server.base, 16)?;
    let bodies = (0..CAMPAIGNS)
        .map(|i| {
            campaign_json(
                &format!("{}-{i}", bench.name("carrier")),
                CALLS,
                i * CALLS,
                100,
                3,
                "100ms",
            )
        })
        .collect();
    let ids = driver::create_all(&client, bodies, 4).await?;
    let started = Instant::now();
    driver::start_all(&client, &ids, 4).await?;
    wait_until(
        Duration::from_secs(600),
        "every campaign completed",
        async || driver::all_completed(&client, &ids, 4).await,
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let totals = driver::totals(&client, &ids, 4).await?;
    let summary = sim.summary();
    let peak = ids.iter().map(|id| sim.peak_live(id)).max().unwrap_or(0);
    server.stop().await?;
    sim.shutdown().await;
    Ok(bench.line(
        "carrier",
        json!({
            "calls": totals.done(),
            "attempts": totals.attempts,
            "seconds": seconds,
            "calls_per_sec": totals.done() as f64 / seconds,
            "attempts_per_sec": totals.attempts as f64 / seconds,
            "cps": CPS,
            "max_creates_in_any_second": summary.max_creates_in_any_second,
            "throttled_by_carrier": summary.throttled,
            "peak_live_per_campaign": peak,
            "limit": 100,
            "numbers_live_twice": summary.numbers_live_twice.len(),
            "invariant_violations": totals.violations,
        }),
    ))
}
