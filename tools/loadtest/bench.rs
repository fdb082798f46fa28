//! `outbound bench`: fixed, reproducible scenarios (`SCENARIOS`), each printing one line of JSON
//! with its figures; BENCHMARKS.md records them against their targets. Every scenario starts
//! its own server in this process, so CPU and RSS figures cover server and client together (the
//! client only polls).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Map, Value};

use super::client::{peaks_from_metrics, ApiClient};
use super::{driver, start_and_time_first_dial, EmbeddedServer, LoadError};

use crate::settings::{BusAddress, GoDuration, LimiterAddress, Settings, StoreAddress};

pub const SCENARIOS: [&str; 15] = [
    "throughput",
    "utilization",
    "fairness",
    "api",
    "register",
    "bodies",
    "callbacks",
    "carrier",
    "held",
    "dnc",
    "uploads",
    "explain",
    "voice",
    "results",
    "webhooks",
];

/// User+system CPU time of this process, from /proc (USER_HZ is 100 on Linux).
pub(super) fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may contain spaces) start at ") ".
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line, 11 and 12 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Peak resident set size of this process so far.
pub fn peak_rss_bytes() -> u64 {
    status_bytes("self", "VmHWM:")
}

/// A figure in kB of a process's /proc status (`pid`: a number, or `self`), in bytes; 0 when
/// it cannot be read.
pub(super) fn status_bytes(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let kb = line.strip_prefix(field)?.trim().strip_suffix("kB")?;
                kb.trim().parse::<u64>().ok()
            })
        })
        .map_or(0, |kb| kb * 1024)
}

fn targets_json(count: usize, offset: usize) -> String {
    let mut text = String::with_capacity(count * 34 + 2);
    text.push('[');
    for i in 0..count {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&format!("{{\"phone_number\":\"+1555{:07}\"}}", offset + i));
    }
    text.push(']');
    text
}

pub(super) fn campaign_json(
    name: &str,
    targets: usize,
    offset: usize,
    limit: u32,
    max_attempts: u32,
    base_delay: &str,
) -> String {
    format!(
        "{{\"name\":\"{name}\",\"time_zone\":\"UTC\",\"recipient_hours\":[],\"max_concurrent_calls\":{limit},\
         \"retry_policy\":{{\"max_attempts\":{max_attempts},\"base_delay\":\"{base_delay}\",\
         \"max_delay\":\"1s\",\"jitter\":0.2}},\"targets\":{}}}",
        targets_json(targets, offset)
    )
}

pub(super) struct Followed {
    pub(super) attempts: u64,
    pub(super) calls: u64,
    pub(super) violations: u64,
    /// completed_at - started_at per campaign, seconds.
    durations: Vec<f64>,
    limit_exceeded: u64,
}

/// Polls every campaign's stats until all are completed; counts invariant breaks.
pub(super) async fn follow(
    client: &ApiClient,
    ids: &[String],
    limit: u32,
    timeout: Duration,
) -> Result<Followed, LoadError> {
    let started = Instant::now();
    let mut violations = 0;
    loop {
        let totals = driver::totals(client, ids, FOLLOW_CONCURRENCY).await?;
        violations += totals.violations;
        if totals.open() == 0 {
            let campaigns = driver::campaigns(client, ids, FOLLOW_CONCURRENCY).await?;
            if campaigns.iter().all(|c| c["status"] == "completed") {
                let durations = campaigns.iter().filter_map(run_seconds).collect();
                let peaks = peaks_from_metrics(&client.text("/metrics").await?);
                let limit_exceeded = ids
                    .iter()
                    .filter(|id| peaks.get(*id).is_some_and(|p| *p > u64::from(limit)))
                    .count() as u64;
                return Ok(Followed {
                    attempts: totals.attempts,
                    calls: totals.done(),
                    violations,
                    durations,
                    limit_exceeded,
                });
            }
        }
        if started.elapsed() > timeout {
            return Err(LoadError::Http(format!(
                "campaigns not completed after {}s",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stats reads in flight while following campaigns.
const FOLLOW_CONCURRENCY: usize = 16;

/// `completed_at - started_at` of a campaign, in seconds.
fn run_seconds(campaign: &Value) -> Option<f64> {
    let at = |key: &str| {
        campaign[key]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    let (started, completed) = (at("started_at")?, at("completed_at")?);
    Some((completed - started).num_milliseconds() as f64 / 1000.0)
}

/// A benchmark run: the settings every scenario starts from, and for `--distributed` the
/// shared backends (a fresh PostgreSQL database and fresh Kafka topics per scenario; with
/// `bus.brokers = "mock"`, librdkafka's in-process mock cluster stands in for Kafka).
pub struct Bench {
    base: Settings,
    distributed: bool,
    run: String,
    /// The store's own write limit (attempts/s) measured in the same run, if given.
    store_limit: Option<f64>,
}

impl Bench {
    pub fn new(base: Settings, distributed: bool) -> Result<Self, LoadError> {
        let shared_backends = matches!(base.store_address(), Ok(StoreAddress::Postgres { .. }))
            && matches!(base.limiter_address(), Ok(LimiterAddress::Redis { .. }))
            && base.bus.address() != BusAddress::Memory;
        if distributed && !shared_backends {
            return Err(LoadError::Server(
                "--distributed needs storage.url = postgres://..., limiter.url = redis://... \
                 and bus.kind = kafka (bus.brokers = \"mock\" for librdkafka's mock cluster)"
                    .into(),
            ));
        }
        Ok(Self {
            base,
            distributed,
            run: uuid::Uuid::now_v7().simple().to_string(),
            store_limit: None,
        })
    }

    /// States the throughput as a ratio to `limit`, the store's own write limit in
    /// attempts/s measured in the same run.
    pub fn with_store_limit(mut self, limit: Option<f64>) -> Self {
        self.store_limit = limit.filter(|limit| *limit > 0.0);
        self
    }

    fn on_mock_kafka(&self) -> bool {
        self.distributed && self.base.bus.address() == BusAddress::MockKafka
    }

    pub(super) fn name(&self, scenario: &str) -> String {
        format!("bench-{scenario}-{}", self.run)
    }

    pub(super) fn line(&self, scenario: &str, figures: Value) -> Value {
        let mut map = Map::new();
        map.insert("scenario".into(), json!(scenario));
        let mode = if self.distributed {
            "distributed"
        } else {
            "embedded"
        };
        map.insert("mode".into(), json!(mode));
        if self.on_mock_kafka() {
            map.insert("kafka".into(), json!("librdkafka mock cluster"));
        }
        if self.distributed {
            let fetch_wait = self.base.bus.effective_fetch_wait();
            map.insert("fetch_wait_ms".into(), json!(fetch_wait.as_millis()));
        }
        if let Value::Object(rest) = figures {
            map.extend(rest);
        }
        Value::Object(map)
    }

    pub(super) async fn settings(&self) -> Result<Settings, LoadError> {
        let mut settings = self.base.clone();
        settings.log.level = "warn".into();
        settings.telephony.mock.seed = Some(1);
        if !self.distributed {
            return Ok(settings);
        }
        let database = format!("bench_{}", uuid::Uuid::now_v7().simple());
        settings.storage.url =
            crate::adapters::postgres::create_database(&self.base.storage.url, &database)
                .await
                .map_err(|err| LoadError::Server(err.to_string()))?;
        // Fresh topics per scenario (on a fresh mock cluster, with `bus.brokers = "mock"`).
        settings.bus.topic_prefix = format!("bench-{}.", uuid::Uuid::now_v7().simple());
        Ok(settings)
    }

    pub async fn run(&self, scenario: &str) -> Result<Value, LoadError> {
        match scenario {
            "throughput" => throughput(self).await,
            "utilization" => utilization(self).await,
            "fairness" => fairness(self).await,
            "api" => api(self).await,
            "register" => register(self).await,
            "bodies" => bodies(self).await,
            "callbacks" => super::carrier_bench::callbacks(self).await,
            "carrier" => super::carrier_bench::carrier(self).await,
            "held" => super::compliance_bench::held(self).await,
            "dnc" => super::compliance_bench::dnc(self).await,
            "uploads" => super::limits_bench::uploads(self).await,
            "explain" => super::limits_bench::explain(self).await,
            "voice" => super::voice_bench::voice(self).await,
            "results" => super::voice_bench::results(self).await,
            "webhooks" => super::webhook_bench::webhooks(self).await,
            other => Err(LoadError::Http(format!(
                "unknown scenario {other:?}; known: {}",
                SCENARIOS.join(", ")
            ))),
        }
    }
}

async fn throughput(bench: &Bench) -> Result<Value, LoadError> {
    let mut settings = bench.settings().await?;
    settings.telephony.mock.min_duration = GoDuration(Duration::ZERO);
    settings.telephony.mock.max_duration = GoDuration(Duration::ZERO);
    settings.telephony.mock.success_rate = 0.8;
    settings.scheduler.batch_size = 10_000;
    let server = EmbeddedServer::start(settings).await?;
    let client = ApiClient::new(&server.base, 16)?;
    let id = client
        .create_campaign(campaign_json(
            &bench.name("throughput"),
            200_000,
            0,
            10_000,
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
        10_000,
        Duration::from_secs(1800),
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_time().saturating_sub(cpu_before);
    let rss = peak_rss_bytes();
    server.stop().await?;
    let per_sec = followed.attempts as f64 / seconds;
    let mut figures = json!({
        "seconds": seconds,
        "attempts": followed.attempts,
        "attempts_per_sec": per_sec,
        "calls_per_sec": followed.calls as f64 / seconds,
        "cpu_us_per_attempt": cpu.as_micros() as f64 / followed.attempts.max(1) as f64,
        "peak_rss_bytes": rss,
        "limit_exceeded": followed.limit_exceeded,
        "invariant_violations": followed.violations,
    });
    if let Some(limit) = bench.store_limit {
        figures["store_limit_attempts_per_sec"] = json!(limit);
        figures["of_store_limit"] = json!(per_sec / limit);
    }
    Ok(bench.line("throughput", figures))
}

async fn utilization(bench: &Bench) -> Result<Value, LoadError> {
    let mut settings = bench.settings().await?;
    settings.telephony.mock.min_duration = GoDuration(Duration::from_secs(1));
    settings.telephony.mock.max_duration = GoDuration(Duration::from_secs(1));
    settings.telephony.mock.success_rate = 1.0;
    let server = EmbeddedServer::start(settings).await?;
    let client = ApiClient::new(&server.base, 16)?;
    let id = client
        .create_campaign(campaign_json(
            &bench.name("utilization"),
            20_000,
            0,
            200,
            1,
            "1s",
        ))
        .await?;
    let started = Instant::now();
    let first_dial_ms = start_and_time_first_dial(&client, &id).await?;
    let followed = follow(
        &client,
        std::slice::from_ref(&id),
        200,
        Duration::from_secs(1800),
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    server.stop().await?;
    let calls_per_sec = followed.calls as f64 / seconds;
    Ok(bench.line(
        "utilization",
        json!({
            "seconds": seconds,
            "calls_per_sec": calls_per_sec,
            "utilization": calls_per_sec / 200.0,
            "first_dial_ms": first_dial_ms,
            "limit_exceeded": followed.limit_exceeded,
            "invariant_violations": followed.violations,
        }),
    ))
}

async fn fairness(bench: &Bench) -> Result<Value, LoadError> {
    let mut settings = bench.settings().await?;
    settings.telephony.mock.min_duration = GoDuration(Duration::from_millis(10));
    settings.telephony.mock.max_duration = GoDuration(Duration::from_millis(50));
    settings.telephony.mock.success_rate = 1.0;
    let server = EmbeddedServer::start(settings).await?;
    let client = ApiClient::new(&server.base, 16)?;
    let bodies = (0..1_000usize)
        .map(|i| campaign_json(&bench.name(&format!("fair-{i}")), 100, i * 100, 5, 1, "1s"))
        .collect();
    let ids = driver::create_all(&client, bodies, 8).await?;
    let started = Instant::now();
    driver::start_all(&client, &ids, 16).await?;
    let followed = follow(&client, &ids, 5, Duration::from_secs(1800)).await?;
    let seconds = started.elapsed().as_secs_f64();
    server.stop().await?;
    let mut durations = followed.durations.clone();
    durations.sort_by(f64::total_cmp);
    let median = durations.get(durations.len() / 2).copied().unwrap_or(0.0);
    let slowest = durations.last().copied().unwrap_or(0.0);
    Ok(bench.line(
        "fairness",
        json!({
            "seconds": seconds,
            "median_campaign_seconds": median,
            "slowest_campaign_seconds": slowest,
            "fastest_campaign_seconds": durations.first().copied().unwrap_or(0.0),
            "slowest_to_median": if median > 0.0 { slowest / median } else { 0.0 },
            "limit_exceeded": followed.limit_exceeded,
            "invariant_violations": followed.violations,
        }),
    ))
}

/// Parses wrk's `--latency` output: requests/s and the 99th percentile in milliseconds.
fn parse_wrk(output: &str) -> Option<(f64, f64)> {
    let rps = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let p99 = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))?
        .trim();
    let p99_ms = if let Some(us) = p99.strip_suffix("us") {
        us.parse::<f64>().ok()? / 1000.0
    } else if let Some(ms) = p99.strip_suffix("ms") {
        ms.parse::<f64>().ok()?
    } else {
        p99.strip_suffix('s')?.parse::<f64>().ok()? * 1000.0
    };
    Some((rps, p99_ms))
}

/// 64 connections for 10 s on each of the two routes with wrk, an external load generator.
async fn api_with_wrk(base: &str, id: &str) -> Result<Option<Value>, LoadError> {
    let mut results = BTreeMap::new();
    for (route, path) in [
        (
            "GET /api/v1/campaigns/{id}/stats",
            format!("/api/v1/campaigns/{id}/stats"),
        ),
        (
            "GET /api/v1/campaigns/{id}",
            format!("/api/v1/campaigns/{id}"),
        ),
    ] {
        let output = tokio::process::Command::new("wrk")
            .args([
                "-t2",
                "-c64",
                "-d10s",
                "--latency",
                &format!("{base}{path}"),
            ])
            .output()
            .await;
        let Ok(output) = output else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&output.stdout);
        let Some(figures) = parse_wrk(&text) else {
            return Err(LoadError::Http(format!("cannot read wrk output: {text}")));
        };
        results.insert(route, figures);
    }
    let rps = results.values().map(|(rps, _)| rps).sum::<f64>() / results.len() as f64;
    let p99 = results.values().map(|(_, p99)| *p99).fold(0.0, f64::max);
    let by_route: BTreeMap<&str, f64> = results.iter().map(|(r, (_, p))| (*r, *p)).collect();
    let rps_by_route: BTreeMap<&str, f64> =
        results.iter().map(|(r, (rps, _))| (*r, *rps)).collect();
    Ok(Some(json!({
        "seconds": 20,
        "requests_per_sec": rps,
        "p99_ms": p99,
        "p99_ms_by_route": by_route,
        "requests_per_sec_by_route": rps_by_route,
        "connections": 64,
        "client": "wrk",
    })))
}

async fn api(bench: &Bench) -> Result<Value, LoadError> {
    let settings = bench.settings().await?;
    let server = EmbeddedServer::start(settings).await?;
    let client = ApiClient::new(&server.base, 64)?;
    let id = client
        .create_campaign(campaign_json(&bench.name("api"), 1_000, 0, 10, 1, "1s"))
        .await?;
    if let Some(figures) = api_with_wrk(&server.base, &id).await? {
        server.stop().await?;
        return Ok(bench.line("api", figures));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let started = Instant::now();
    let workers: Vec<_> = (0..64)
        .map(|worker| {
            let client = client.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let (route, path) = if (done + worker) % 2 == 0 {
                        (
                            "GET /api/v1/campaigns/{id}/stats",
                            format!("/api/v1/campaigns/{id}/stats"),
                        )
                    } else {
                        (
                            "GET /api/v1/campaigns/{id}",
                            format!("/api/v1/campaigns/{id}"),
                        )
                    };
                    match client.send(route, Method::GET, &path, None).await {
                        Ok((200, _)) => done += 1,
                        _ => errors += 1,
                    }
                }
                (done, errors)
            })
        })
        .collect();
    let (mut requests, mut errors) = (0u64, 0u64);
    for worker in workers {
        let (done, failed) = worker
            .await
            .map_err(|err| LoadError::Http(err.to_string()))?;
        requests += done;
        errors += failed;
    }
    let seconds = started.elapsed().as_secs_f64();
    let latencies: BTreeMap<String, f64> = client
        .latencies()
        .into_iter()
        .filter(|r| r.route.starts_with("GET"))
        .map(|r| (r.route, r.p99_ms))
        .collect();
    server.stop().await?;
    Ok(bench.line(
        "api",
        json!({
            "seconds": seconds,
            "requests_per_sec": requests as f64 / seconds,
            "p99_ms": latencies.values().copied().fold(0.0, f64::max),
            "p99_ms_by_route": latencies,
            "errors": errors,
            "connections": 64,
            "client": "built-in (shares the cores with the server)",
        }),
    ))
}

async fn register(bench: &Bench) -> Result<Value, LoadError> {
    let settings = bench.settings().await?;
    let server = EmbeddedServer::start(settings).await?;
    let client = ApiClient::new(&server.base, 4)?;
    let body = campaign_json(&bench.name("register"), 1_000_000, 0, 500, 3, "1s");
    let bytes = body.len();
    let started = Instant::now();
    client.create_campaign(body).await?;
    let seconds = started.elapsed().as_secs_f64();
    let rss = peak_rss_bytes();
    server.stop().await?;
    Ok(bench.line(
        "register",
        json!({"seconds": seconds, "targets": 1_000_000, "body_bytes": bytes, "peak_rss_bytes": rss}),
    ))
}

/// Forgets the process's peak resident size so far (Linux 4.0+), so the next peak is this
/// scenario's own.
pub(super) fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak memory of concurrent 1M-target creates: three at once, with the large-body turns at
/// the default (`http.max_large_bodies` = 2) and with one turn each (no bound).
async fn bodies(bench: &Bench) -> Result<Value, LoadError> {
    const AT_ONCE: usize = 3;
    let mut runs = Vec::new();
    for turns in [1, 2, AT_ONCE] {
        let mut settings = bench.settings().await?;
        settings.http.max_large_bodies = turns;
        let server = EmbeddedServer::start(settings).await?;
        let client = ApiClient::new(&server.base, AT_ONCE)?;
        let bodies: Vec<String> = (0..AT_ONCE)
            .map(|i| {
                campaign_json(
                    &bench.name(&format!("bodies-{turns}-{i}")),
                    1_000_000,
                    0,
                    500,
                    3,
                    "1s",
                )
            })
            .collect();
        let body_bytes: usize = bodies.iter().map(String::len).sum();
        reset_peak_rss();
        let started = Instant::now();
        let creates = bodies.into_iter().map(|body| {
            let client = client.clone();
            async move { client.create_campaign(body).await }
        });
        for created in futures::future::join_all(creates).await {
            created?;
        }
        let seconds = started.elapsed().as_secs_f64();
        runs.push(json!({
            "max_large_bodies": turns,
            "seconds": seconds,
            "peak_rss_bytes": peak_rss_bytes(),
            "client_body_bytes": body_bytes,
        }));
        server.stop().await?;
    }
    Ok(bench.line(
        "bodies",
        json!({
            "creates_at_once": AT_ONCE,
            "targets_each": 1_000_000,
            "runs": runs,
            "note": "peak RSS of the whole process: the embedded server and the client holding the bodies",
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::parse_wrk;

    #[test]
    fn reads_wrk_output() {
        let text = "  Latency Distribution\n     50%    2.05ms\n     99%  510.00us\n\
                    Requests/sec:  31426.70\n";
        assert_eq!(parse_wrk(text), Some((31426.70, 0.51)));
    }

    #[test]
    fn reads_a_process_memory_figure() {
        let pid = std::process::id().to_string();
        assert!(super::status_bytes("self", "VmHWM:") > 0);
        assert!(super::status_bytes(&pid, "VmRSS:") > 0);
        assert_eq!(super::status_bytes(&pid, "NoSuchField:"), 0);
    }
}
