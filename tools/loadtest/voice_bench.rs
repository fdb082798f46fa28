//! The benchmark scenarios of a campaign's message: the voice URL answered on the path of a
//! ringing phone, and a campaign's results streamed.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::bench::{peak_rss_bytes, reset_peak_rss, Bench};
use super::carrier_bench::{failed, start_sim, use_sim, wait_until};
use super::client::ApiClient;
use super::{EmbeddedServer, LoadError};
use crate::adapters::twilio::signature;
use crate::carrier_sim::{OutcomeMix, SimConfig};

/// Targets `from..to` with the metadata the reminder speaks, as a JSON array.
fn message_targets(from: usize, to: usize) -> String {
    let mut targets = String::with_capacity((to - from) * 72 + 2);
    targets.push('[');
    for i in from..to {
        if i > from {
            targets.push(',');
        }
        targets.push_str(&format!(
            "{{\"phone_number\":\"+1555{i:07}\",\"metadata\":{{\"first_name\":\"N{i}\",\"date\":\"May {}\"}}}}",
            i % 28 + 1
        ));
    }
    targets.push(']');
    targets
}

/// A campaign of `count` targets with a personalised reminder, as JSON.
fn message_campaign(name: &str, count: usize, limit: usize) -> String {
    let targets = message_targets(0, count);
    format!(
        "{{\"name\":\"{name}\",\"time_zone\":\"UTC\",\"recipient_hours\":[],\
         \"max_concurrent_calls\":{limit},\"retry_policy\":{{\"max_attempts\":1,\
         \"base_delay\":\"1s\",\"max_delay\":\"1s\",\"jitter\":0}},\
         \"message\":{{\"identification\":\"This is Acme Dental.\",\
         \"say\":\"Hello {{{{first_name}}}}, see you on {{{{date}}}}.\",\
         \"prompt\":\"Press 1 to confirm, or 2 to reschedule.\",\
         \"responses\":[{{\"digit\":\"1\",\"name\":\"confirmed\",\"reply\":\"Thank you.\"}},\
         {{\"digit\":\"2\",\"name\":\"reschedule\"}}]}},\"targets\":{targets}}}"
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// 2,000 calls live at the carrier; the benchmark fetches their voice URLs, signed as the
/// carrier signs them, at 1,000 requests a second for 10 s (open loop: a request leaves every
/// millisecond whether or not earlier ones were answered) against one api process with the
/// embedded store, and reports the latency percentiles.
pub(super) async fn voice(bench: &Bench) -> Result<Value, LoadError> {
    const CALLS: usize = 2_000;
    const RATE: u64 = 1_000;
    const SECONDS: u64 = 10;
    let config = SimConfig {
        seed: Some(1),
        burst: 1_000,
        cps: 20_000.0,
        drop_final_rate: 1.0,
        talk: (Duration::from_secs(3_600), Duration::from_secs(3_600)),
        mix: OutcomeMix::human_only(),
        // The benchmark makes the carrier's voice requests itself.
        speak: false,
        ..SimConfig::default()
    };
    let sim = start_sim(config.clone()).await?;
    let mut settings = bench.settings().await?;
    let bind = use_sim(&mut settings, &sim, &config, 10_000.0)?;
    let server = EmbeddedServer::start_on(settings, &bind).await?;
    let client = ApiClient::new(&server.base, 8)?;
    let id = client
        .create_campaign(message_campaign(&bench.name("voice"), CALLS, CALLS))
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
    tokio::time::sleep(Duration::from_secs(1)).await;
    let requests: Vec<(String, String, String)> = sim
        .calls()
        .into_iter()
        .filter_map(|call| {
            let url = call.voice_url?;
            let params: Vec<(String, String)> = [
                ("AccountSid", config.account_sid.as_str()),
                ("CallSid", call.sid.as_str()),
                ("CallStatus", "in-progress"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            let signature = signature::sign(&config.auth_token, &url, &params);
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params.iter())
                .finish();
            Some((url, body, signature))
        })
        .collect();
    if requests.is_empty() {
        return Err(LoadError::Http("no call has a voice URL".into()));
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .map_err(|e| failed("client", e))?;
    let total = (RATE * SECONDS) as usize;
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = Vec::with_capacity(total);
    let started = Instant::now();
    for i in 0..total {
        ticker.tick().await;
        let (url, body, signature) = requests[i % requests.len()].clone();
        let http = http.clone();
        sent.push(tokio::spawn(async move {
            let at = Instant::now();
            let answer = http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("X-Twilio-Signature", signature)
                .body(body)
                .send()
                .await;
            let ok = match answer {
                Ok(response) if response.status().is_success() => response
                    .text()
                    .await
                    .is_ok_and(|twiml| twiml.contains("<Gather")),
                _ => false,
            };
            (at.elapsed().as_secs_f64() * 1_000.0, ok)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut errors = 0u64;
    for handle in sent {
        let (ms, ok) = handle.await.map_err(|e| failed("request", e))?;
        latencies.push(ms);
        errors += u64::from(!ok);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    server.stop().await?;
    sim.shutdown().await;
    Ok(bench.line(
        "voice",
        json!({
            "requests": total,
            "offered_per_sec": RATE,
            "achieved_per_sec": total as f64 / seconds,
            "errors": errors,
            "p50_ms": percentile(&latencies, 0.50),
            "p99_ms": percentile(&latencies, 0.99),
            "max_ms": latencies.last().copied().unwrap_or(0.0),
            "live_calls": CALLS,
        }),
    ))
}

/// A 1,000,000-call campaign with metadata, exported as CSV and as JSON lines; the client
/// reads the stream as it comes and counts its lines.
pub(super) async fn results(bench: &Bench) -> Result<Value, LoadError> {
    const CALLS: usize = 1_000_000;
    let mut settings = bench.settings().await?;
    // A million targets with the metadata the message speaks are a larger body than the
    // default limit takes.
    settings.http.body_limit_bytes = 256 * 1024 * 1024;
    let server = EmbeddedServer::start(settings).await?;
    let client = ApiClient::new(&server.base, 2)?;
    let id = client
        .create_campaign(message_campaign(&bench.name("results"), CALLS, 100))
        .await?;
    let http = reqwest::Client::new();
    let mut runs = Vec::new();
    for (format, accept) in [("csv", "text/csv"), ("ndjson", "application/x-ndjson")] {
        reset_peak_rss();
        let rss_before = super::bench::status_bytes("self", "VmRSS:");
        let started = Instant::now();
        let response = http
            .get(format!("{}/api/v1/campaigns/{id}/results", server.base))
            .header("accept", accept)
            .send()
            .await
            .map_err(|e| failed("export", e))?;
        let first_byte_ms = started.elapsed().as_secs_f64() * 1_000.0;
        let mut response = response;
        let (mut bytes, mut lines) = (0usize, 0usize);
        while let Some(chunk) = response.chunk().await.map_err(|e| failed("export", e))? {
            bytes += chunk.len();
            lines += chunk.iter().filter(|b| **b == b'\n').count();
        }
        let rows = if format == "csv" {
            lines.saturating_sub(1)
        } else {
            lines
        };
        runs.push(json!({
            "format": format,
            "rows": rows,
            "bytes": bytes,
            "first_byte_ms": first_byte_ms,
            "seconds": started.elapsed().as_secs_f64(),
            "rss_before_bytes": rss_before,
            "peak_rss_bytes": peak_rss_bytes(),
        }));
    }
    server.stop().await?;
    Ok(bench.line("results", json!({"calls": CALLS, "exports": runs})))
}
