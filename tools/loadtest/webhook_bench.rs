//! The benchmark scenario of webhooks: what subscribing an endpoint to every event costs the
//! dialing path, and how fast one status process delivers to a fast receiver.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use super::bench::{campaign_json, cpu_time, follow, Bench};
use super::client::ApiClient;
use super::{EmbeddedServer, LoadError};
use crate::settings::GoDuration;
use crate::webhook_receiver::WebhookReceiver;

const TARGETS: usize = 50_000;
const LIMIT: u32 = 10_000;

/// One run of the throughput campaign, with or without an endpoint listening to `*`.
struct Run {
    attempts_per_sec: f64,
    cpu_us_per_attempt: f64,
    events: u64,
    /// From the start of dialing until the receiver had every event.
    delivered_after: f64,
    backlog_at_completion: u64,
}

async fn run(bench: &Bench, subscribe: bool) -> Result<Run, LoadError> {
    let receiver = WebhookReceiver::start(
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| LoadError::Server(e.to_string()))?,
    )
    .map_err(|e| LoadError::Server(e.to_string()))?;
    receiver.count_only();
    let mut settings = bench.settings().await?;
    settings.telephony.mock.min_duration = GoDuration(Duration::ZERO);
    settings.telephony.mock.max_duration = GoDuration(Duration::ZERO);
    settings.telephony.mock.success_rate = 0.8;
    settings.scheduler.batch_size = 10_000;
    settings.webhooks.allow_http = true;
    settings.webhooks.allow_private_networks = true;
    let server = EmbeddedServer::start(settings).await?;
    let client = ApiClient::new(&server.base, 16)?;
    if subscribe {
        let endpoint = json!({"url": format!("{}/all", receiver.url()), "events": ["*"]});
        client
            .expect(
                "POST /api/v1/webhooks",
                Method::POST,
                "/api/v1/webhooks",
                Some(&endpoint),
                201,
            )
            .await?;
    }
    let id = client
        .create_campaign(campaign_json(
            &bench.name(if subscribe {
                "webhooks"
            } else {
                "webhooks-none"
            }),
            TARGETS,
            0,
            LIMIT,
            3,
            "10ms",
        ))
        .await?;
    let cpu_before = cpu_time();
    let started = Instant::now();
    client.start(&id).await?;
    let followed = follow(
        &client,
        std::slice::from_ref(&id),
        LIMIT,
        Duration::from_secs(1800),
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_time().saturating_sub(cpu_before);
    // Every attempt and call finished, and the campaign started and completed.
    let events = if subscribe {
        followed.attempts + followed.calls + 2
    } else {
        0
    };
    let backlog_at_completion = events.saturating_sub(receiver.distinct("/all") as u64);
    let deadline = Instant::now() + Duration::from_secs(1800);
    while (receiver.distinct("/all") as u64) < events {
        if Instant::now() > deadline {
            return Err(LoadError::Http(format!(
                "{} of {events} webhooks delivered after 30 min",
                receiver.distinct("/all")
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered_after = started.elapsed().as_secs_f64();
    server.stop().await?;
    receiver.stop().await;
    Ok(Run {
        attempts_per_sec: followed.attempts as f64 / seconds,
        cpu_us_per_attempt: cpu.as_micros() as f64 / followed.attempts.max(1) as f64,
        events,
        delivered_after,
        backlog_at_completion,
    })
}

/// Pairs of runs: one pair's cost to dialing moves by ±20% on a shared 2-core machine, so the
/// line reports the median of several, each pair run back to back.
const PAIRS: usize = 3;

/// The throughput campaign (50,000 targets, up to three attempts, 10,000 at once) run without
/// an endpoint, then with one listening to every event at a receiver in this process, `PAIRS`
/// times; each second run's events are all delivered before it ends. The cost to dialing is
/// the median of the pairs'; the other figures are the median pair's. The delivery rate counts
/// from the start of dialing, so it is a floor: the deliverer waits on events early on.
pub(super) async fn webhooks(bench: &Bench) -> Result<Value, LoadError> {
    let mut pairs = Vec::with_capacity(PAIRS);
    for _ in 0..PAIRS {
        let without = run(bench, false).await?;
        let with = run(bench, true).await?;
        let cost = 1.0 - with.attempts_per_sec / without.attempts_per_sec.max(f64::MIN_POSITIVE);
        pairs.push((cost, without, with));
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let costs: Vec<f64> = pairs.iter().map(|(cost, _, _)| *cost).collect();
    let (cost, without, with) = &pairs[pairs.len() / 2];
    Ok(bench.line(
        "webhooks",
        json!({
            "attempts_per_sec_without": without.attempts_per_sec,
            "attempts_per_sec_with": with.attempts_per_sec,
            "dialing_cost": cost,
            "dialing_cost_of_each_pair": costs,
            "cpu_us_per_attempt_without": without.cpu_us_per_attempt,
            "cpu_us_per_attempt_with": with.cpu_us_per_attempt,
            "events": with.events,
            "backlog_at_completion": with.backlog_at_completion,
            "all_delivered_after_seconds": with.delivered_after,
            "events_per_sec": with.events as f64 / with.delivered_after.max(f64::MIN_POSITIVE),
        }),
    ))
}
