//! `outbound load-test`: registers campaigns against a running server (or one it starts itself
//! in embedded mode), starts them, follows them to completion with a progress bar, and reports
//! throughput, API latency, per-campaign peak concurrency seen by the mock provider against the
//! limit, and statistics invariant violations. A limit exceeded or an invariant broken makes the
//! command fail.

pub mod bench;
mod carrier_bench;
pub mod client;
mod compliance_bench;
pub mod driver;
pub mod journal;
mod limits_bench;
mod voice_bench;
mod webhook_bench;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use self::client::{peaks_from_metrics, ApiClient, RouteLatency};
use crate::runtime::Node;
use crate::settings::{BusAddress, Settings, StoreAddress};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("http: {0}")]
    Http(String),
    #[error("unexpected answer from {route}: {status} {body}")]
    Api {
        route: &'static str,
        status: u16,
        body: String,
    },
    #[error("cannot start the embedded server: {0}")]
    Server(String),
    #[error("cannot write the report: {0}")]
    Report(String),
}

#[derive(Debug, Clone)]
pub struct LoadTestArgs {
    pub campaigns: usize,
    pub calls: usize,
    pub concurrent: usize,
    pub limit: u32,
    pub url: Option<String>,
    pub json: Option<PathBuf>,
    pub timeout: Duration,
    /// Mock provider journals of every call process: exact peaks across processes, where the
    /// server's `/metrics` shows only its own process.
    pub journals: Vec<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CampaignPeak {
    pub id: String,
    pub limit: u64,
    pub peak: Option<u64>,
    pub exceeded: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub campaigns: usize,
    pub targets_per_campaign: usize,
    pub register_seconds: f64,
    pub wall_seconds: f64,
    pub completed: bool,
    pub attempts: u64,
    pub attempts_per_sec: f64,
    pub calls: u64,
    pub calls_per_sec: f64,
    pub completed_calls: u64,
    pub failed_calls: u64,
    pub canceled_calls: u64,
    pub retries: u64,
    pub first_dial_ms: Option<f64>,
    pub limit_exceeded: u64,
    pub invariant_violations: u64,
    pub peaks: Vec<CampaignPeak>,
    pub api_latency: Vec<RouteLatency>,
}

impl Report {
    /// Takes the peaks from another count (the carrier's), judged against the same limits.
    pub fn replace_peaks(&mut self, peaks: &std::collections::HashMap<String, u64>) {
        for campaign in &mut self.peaks {
            campaign.peak = peaks.get(&campaign.id).copied();
            campaign.exceeded = campaign.peak.is_some_and(|peak| peak > campaign.limit);
        }
        self.limit_exceeded = self.peaks.iter().filter(|p| p.exceeded).count() as u64;
    }

    pub fn failed(&self) -> bool {
        !self.completed || self.limit_exceeded > 0 || self.invariant_violations > 0
    }
}

/// A server started in this process, for runs without `--url`: every role on a fresh SQLite
/// file, or on the distributed backends the settings name. `bus.brokers = "mock"` (with
/// `bus.kind = "kafka"`) starts librdkafka's mock cluster in this process for Kafka.
pub struct EmbeddedServer {
    pub base: String,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), String>>,
    dir: PathBuf,
}

impl EmbeddedServer {
    pub async fn start(settings: Settings) -> Result<Self, LoadError> {
        Self::start_on(settings, "127.0.0.1:0").await
    }

    /// `start` on a given address (a carrier must know where to call back).
    pub async fn start_on(mut settings: Settings, bind: &str) -> Result<Self, LoadError> {
        let dir = std::env::temp_dir().join(format!("outbound-load-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).map_err(|err| LoadError::Server(err.to_string()))?;
        settings.http.bind = bind.to_owned();
        // A fresh SQLite file unless the settings name a shared (distributed) store.
        if matches!(settings.store_address(), Ok(StoreAddress::Sqlite { .. })) {
            settings.storage.url = format!("sqlite://{}", dir.join("outbound.db").display());
        }
        settings.runtime.roles = vec![crate::process::role::RoleName::All];
        if settings.bus.address() == BusAddress::MockKafka {
            settings.bus.topic_prefix = format!("load-{}.", uuid::Uuid::now_v7().simple());
        }
        settings
            .validate()
            .map_err(|err| LoadError::Server(err.to_string()))?;
        let node = Node::build(settings, true)
            .await
            .map_err(|err| LoadError::Server(err.to_string()))?;
        let addr = node
            .api_addr()
            .ok_or_else(|| LoadError::Server("no api role".into()))?;
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let handle =
            tokio::spawn(async move { node.run(token).await.map_err(|err| format!("{err:#}")) });
        Ok(Self {
            base: format!("http://{addr}"),
            shutdown,
            handle,
            dir,
        })
    }

    pub async fn stop(self) -> Result<(), LoadError> {
        self.shutdown.cancel();
        let result = self
            .handle
            .await
            .map_err(|err| LoadError::Server(err.to_string()))?;
        let _ = std::fs::remove_dir_all(&self.dir);
        result.map_err(LoadError::Server)
    }
}

const TIME_ZONES: [&str; 4] = ["America/New_York", "Europe/London", "Asia/Tokyo", "UTC"];

/// A campaign as an operator would register it: business hours on every day (whole days, so
/// a run at any hour completes), a retry policy and a limit.
pub fn campaign_body(run: &str, index: usize, calls: usize, limit: u32) -> Value {
    let targets: Vec<Value> = (0..calls)
        .map(|i| json!({"phone_number": format!("+1555{:07}", index * calls + i)}))
        .collect();
    let hours: Vec<Value> = (0..7)
        .map(|day| json!({"day_of_week": day, "start": "00:00", "end": "24:00"}))
        .collect();
    json!({
        "name": format!("load-{run}-{index}"),
        "description": "load test",
        "time_zone": TIME_ZONES[index % TIME_ZONES.len()],
        "max_concurrent_calls": limit,
        "retry_policy": {"max_attempts": 3, "base_delay": "100ms", "max_delay": "1s", "jitter": 0.2},
        "business_hours": hours,
        // Load runs at any hour; the calling rules are not what it measures.
        "recipient_hours": [],
        "targets": targets,
    })
}

pub async fn run(args: &LoadTestArgs, base: &str) -> Result<Report, LoadError> {
    let client = ApiClient::new(base, args.concurrent)?;
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let registered = Instant::now();
    let bodies = (0..args.campaigns)
        .map(|index| campaign_body(&run_id, index, args.calls, args.limit).to_string())
        .collect();
    let ids = driver::create_all(&client, bodies, args.concurrent).await?;
    let register_seconds = registered.elapsed().as_secs_f64();

    let started = Instant::now();
    let first_dial_ms = match ids.first() {
        Some(first) => start_and_time_first_dial(&client, first).await?,
        None => None,
    };
    driver::start_all(&client, ids.get(1..).unwrap_or_default(), args.concurrent).await?;

    let total_calls = (args.campaigns * args.calls) as u64;
    let bar = ProgressBar::new(total_calls);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} calls done  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut violations = 0;
    let mut totals;
    let mut completed = false;
    let mut last = (Instant::now(), 0u64);
    loop {
        totals = driver::totals(&client, &ids, args.concurrent).await?;
        violations += totals.violations;
        let now = Instant::now();
        let rate = (totals.attempts.saturating_sub(last.1)) as f64
            / now.duration_since(last.0).as_secs_f64().max(1e-3);
        last = (now, totals.attempts);
        bar.set_position(totals.done());
        bar.set_message(format!(
            "{rate:.0} attempts/s  {} in flight",
            totals.in_flight
        ));
        if totals.done() >= totals.calls && totals.calls > 0 {
            completed = driver::all_completed(&client, &ids, args.concurrent).await?;
            if completed {
                break;
            }
        }
        if started.elapsed() > args.timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();

    let peaks_seen = if args.journals.is_empty() {
        peaks_from_metrics(&client.text("/metrics").await?)
    } else {
        let mut texts = Vec::with_capacity(args.journals.len());
        for path in &args.journals {
            texts.push(std::fs::read_to_string(path).map_err(|err| {
                LoadError::Server(format!("cannot read journal {}: {err}", path.display()))
            })?);
        }
        journal::peaks(&texts, &ids)
    };
    let peaks: Vec<CampaignPeak> = ids
        .iter()
        .map(|id| {
            let peak = peaks_seen.get(id).copied();
            CampaignPeak {
                id: id.clone(),
                limit: u64::from(args.limit),
                peak,
                exceeded: peak.is_some_and(|p| p > u64::from(args.limit)),
            }
        })
        .collect();
    Ok(Report {
        campaigns: args.campaigns,
        targets_per_campaign: args.calls,
        register_seconds,
        wall_seconds: wall,
        completed,
        attempts: totals.attempts,
        attempts_per_sec: totals.attempts as f64 / wall.max(1e-9),
        calls: totals.done(),
        calls_per_sec: totals.done() as f64 / wall.max(1e-9),
        completed_calls: totals.completed,
        failed_calls: totals.failed,
        canceled_calls: totals.canceled,
        retries: totals.retries,
        first_dial_ms,
        limit_exceeded: peaks.iter().filter(|p| p.exceeded).count() as u64,
        invariant_violations: violations,
        peaks,
        api_latency: client.latencies(),
    })
}

/// Starts campaign `id` and polls its statistics until its first attempt counts: the
/// client-observed time from start to first dial, in milliseconds (one stats round trip
/// overstates it slightly). `None` if no attempt starts within 10 s.
pub(crate) async fn start_and_time_first_dial(
    client: &ApiClient,
    id: &str,
) -> Result<Option<f64>, LoadError> {
    let started = Instant::now();
    client.start(id).await?;
    while started.elapsed() < Duration::from_secs(10) {
        let stats = client.stats(id).await?;
        if stats["attempts_total"].as_u64() > Some(0) {
            return Ok(Some(started.elapsed().as_secs_f64() * 1000.0));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(None)
}

pub fn print_report(report: &Report) {
    println!(
        "load test: {} campaigns x {} targets",
        report.campaigns, report.targets_per_campaign
    );
    println!("  registered in      {:.2} s", report.register_seconds);
    println!("  completed          {}", report.completed);
    println!("  wall time          {:.2} s", report.wall_seconds);
    println!(
        "  attempts           {} ({:.1}/s), retries {}",
        report.attempts, report.attempts_per_sec, report.retries
    );
    println!(
        "  calls              {} ({:.1}/s): {} completed, {} failed, {} canceled",
        report.calls,
        report.calls_per_sec,
        report.completed_calls,
        report.failed_calls,
        report.canceled_calls
    );
    match report.first_dial_ms {
        Some(ms) => println!("  start → first dial {ms:.1} ms"),
        None => println!("  start → first dial not seen"),
    }
    let highest = report.peaks.iter().filter_map(|p| p.peak).max();
    println!(
        "  peak concurrency   highest {} against limit {}; {} campaign(s) over the limit",
        highest.map_or("unknown".to_owned(), |p| p.to_string()),
        report.peaks.first().map_or(0, |p| p.limit),
        report.limit_exceeded
    );
    println!("  invariant breaks   {}", report.invariant_violations);
    println!("  api latency (ms)   route: requests p50 p95 p99 max");
    for route in &report.api_latency {
        println!(
            "    {}: {} {:.2} {:.2} {:.2} {:.2}",
            route.route, route.requests, route.p50_ms, route.p95_ms, route.p99_ms, route.max_ms
        );
    }
}

pub fn write_json(report: &Report, path: &PathBuf) -> Result<(), LoadError> {
    let text =
        serde_json::to_string_pretty(report).map_err(|err| LoadError::Report(err.to_string()))?;
    std::fs::write(path, text)
        .map_err(|err| LoadError::Report(format!("{}: {err}", path.display())))
}
