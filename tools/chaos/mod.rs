//! `outbound chaos`: the fault-injection suite. Each scenario runs a deployment on this machine
//! (the distributed one: PostgreSQL, Redis and librdkafka's mock Kafka cluster hosted by this
//! process, with one process per role subset; or the embedded one), runs two campaigns that
//! share half their numbers (plus the same number triggered twice before the start), injects
//! one fault mid-run, waits for both campaigns to finish and checks, exactly, from the mock
//! providers' journals and the API:
//!
//! - `limit`: peak simultaneous calls per campaign ≤ its limit, and in all ≤ the global cap;
//! - `number_once`: no number (so no call) live twice at any instant;
//! - `nothing_lost`: every call ends completed, failed or canceled, and both campaigns complete;
//! - `attempts_placed`: no attempt counted that was never placed (except those recorded lost,
//!   whose process may die between beginning and placing them), none placed and not recorded;
//! - `invariant`: every statistics read keeps `total = pending + in_progress + done`;
//! - `survived`: no process exited by itself, and each stops cleanly on SIGTERM.
//!
//! The broker scenarios take down or freeze the broker mid-run for longer than the consumers'
//! session timeout and the producers' delivery timeout: on librdkafka's mock cluster,
//! `broker-down` (its broker down) and `broker-hang` (answering nothing); on tansu, an
//! independent Kafka-compatible broker run as a process of its own (`--tansu PATH`; skipped
//! without), `tansu-down` (unreachable, then back with its data, as after a restart on durable
//! storage) and `tansu-sigstop` (frozen with SIGSTOP).
//!
//! `carrier-sigkill` dials through the carrier simulator instead of the mock (its journal is
//! the carrier's own record of the calls it created): creates hang past the client's timeout
//! and the account's credentials are refused on and off while a dialing process is killed.
//!
//! Every scenario also subscribes a webhook endpoint to every event, at a receiver in this
//! process, and checks `webhooks`: each attempt and call the API reports as finished, and each
//! campaign's completion, reached the receiver, signed, whatever the fault.
//! `webhook-receiver-down` makes that receiver answer 503 for the outage, then take them again.
//!
//! It prints a table (scenario × check) and fails if any check misses.

mod carrier;
pub mod checks;
mod faults;
mod fleet;
mod hooks;
pub mod tansu;
mod verdict;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use serde_json::json;

use self::fleet::Fleet;
use crate::chaos::carrier::Carrier;
use crate::chaos::faults::{inject, Broker};
use crate::chaos::hooks::Hooks;
use crate::chaos::verdict::{recorded_calls, verdicts, Follow};
use crate::loadtest::client::ApiClient;

#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("setup: {0}")]
    Setup(String),
    #[error("api: {0}")]
    Api(String),
}

#[derive(Debug, Clone)]
pub struct ChaosArgs {
    /// Scenario names; all when empty.
    pub scenarios: Vec<String>,
    /// Smaller campaigns and shorter outages (what CI runs).
    pub quick: bool,
    /// A PostgreSQL server URL; each scenario creates its own database there.
    pub database_url: String,
    /// A Redis URL for the processes' `limiter.url` and the FLUSHALL scenario.
    pub redis_url: String,
    /// A shell command that restarts the PostgreSQL server (for `postgres-restart`).
    pub postgres_restart: Option<String>,
    /// A shell command that restarts the Redis server empty (for `redis-restart`).
    pub redis_restart: Option<String>,
    /// The tansu executable (for the `tansu-*` scenarios, which are skipped without it).
    pub tansu: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Baseline,
    KillCall,
    KillScheduler,
    KillStatus,
    StopCall,
    StopScheduler,
    StopStatus,
    RedisFlush,
    RedisRestart,
    PostgresRestart,
    BrokerDown,
    BrokerHang,
    TansuStall,
    TansuDown,
    ClockSkew,
    EmbeddedStall,
    CarrierKill,
    WebhookDown,
}

impl Scenario {
    pub const ALL: [Scenario; 18] = [
        Self::Baseline,
        Self::KillCall,
        Self::KillScheduler,
        Self::KillStatus,
        Self::StopCall,
        Self::StopScheduler,
        Self::StopStatus,
        Self::RedisFlush,
        Self::RedisRestart,
        Self::PostgresRestart,
        Self::BrokerDown,
        Self::BrokerHang,
        Self::TansuStall,
        Self::TansuDown,
        Self::ClockSkew,
        Self::EmbeddedStall,
        Self::CarrierKill,
        Self::WebhookDown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::KillCall => "sigkill-call",
            Self::KillScheduler => "sigkill-scheduler",
            Self::KillStatus => "sigkill-status",
            Self::StopCall => "sigstop-call",
            Self::StopScheduler => "sigstop-scheduler",
            Self::StopStatus => "sigstop-status",
            Self::RedisFlush => "redis-flushall",
            Self::RedisRestart => "redis-restart",
            Self::PostgresRestart => "postgres-restart",
            Self::BrokerDown => "broker-down",
            Self::BrokerHang => "broker-hang",
            Self::TansuStall => "tansu-sigstop",
            Self::TansuDown => "tansu-down",
            Self::ClockSkew => "clock-skew",
            Self::EmbeddedStall => "embedded-writer-stall",
            Self::CarrierKill => "carrier-sigkill",
            Self::WebhookDown => "webhook-receiver-down",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

pub const CHECKS: [&str; 7] = [
    "limit",
    "number_once",
    "nothing_lost",
    "attempts_placed",
    "invariant",
    "survived",
    "webhooks",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass(String),
    Fail(String),
    Skip(String),
}

impl Verdict {
    fn of(ok: bool, detail: String) -> Self {
        if ok {
            Self::Pass(detail)
        } else {
            Self::Fail(detail)
        }
    }

    fn mark(&self) -> &'static str {
        match self {
            Self::Pass(_) => "ok",
            Self::Fail(_) => "FAIL",
            Self::Skip(_) => "skip",
        }
    }
}

/// One scenario's verdict per check.
#[derive(Debug, Clone)]
pub struct ScenarioReport {
    pub scenario: &'static str,
    pub seconds: f64,
    pub checks: BTreeMap<&'static str, Verdict>,
}

/// The campaigns a scenario runs and the knobs of its deployment.
struct Workload {
    targets: usize,
    limit: u64,
    global_cap: u64,
    outage: Duration,
    deadline: Duration,
}

impl Workload {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                targets: 60,
                limit: 6,
                global_cap: 10,
                outage: Duration::from_secs(8),
                deadline: Duration::from_secs(180),
            }
        } else {
            Self {
                targets: 300,
                limit: 8,
                global_cap: 12,
                outage: Duration::from_secs(90),
                deadline: Duration::from_secs(900),
            }
        }
    }
}

/// Runs the scenarios and prints the table; true when every check passed or was skipped.
pub async fn run(args: &ChaosArgs) -> Result<Vec<ScenarioReport>, ChaosError> {
    let scenarios: Vec<Scenario> = if args.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenarios
            .iter()
            .map(|name| {
                Scenario::parse(name).ok_or_else(|| {
                    let known: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                    ChaosError::Setup(format!(
                        "unknown scenario {name:?}; known: {}",
                        known.join(", ")
                    ))
                })
            })
            .collect::<Result<_, _>>()?
    };
    let mut reports = Vec::with_capacity(scenarios.len());
    for scenario in scenarios {
        eprintln!("chaos: {} ...", scenario.name());
        let started = Instant::now();
        let checks = run_scenario(scenario, args).await?;
        let report = ScenarioReport {
            scenario: scenario.name(),
            seconds: started.elapsed().as_secs_f64(),
            checks,
        };
        for (check, verdict) in &report.checks {
            if let Verdict::Fail(detail) | Verdict::Skip(detail) = verdict {
                eprintln!(
                    "chaos: {} {check}: {} {detail}",
                    report.scenario,
                    verdict.mark()
                );
            }
        }
        reports.push(report);
    }
    Ok(reports)
}

/// The table of a run, one row per scenario.
pub fn table(reports: &[ScenarioReport]) -> String {
    let mut out = format!("{:<24}", "scenario");
    for check in CHECKS {
        out.push_str(&format!(" {check:>15}"));
    }
    out.push_str(&format!(" {:>8}\n", "seconds"));
    for report in reports {
        out.push_str(&format!("{:<24}", report.scenario));
        for check in CHECKS {
            let mark = report.checks.get(check).map_or("-", Verdict::mark);
            out.push_str(&format!(" {mark:>15}"));
        }
        out.push_str(&format!(" {:>8.1}\n", report.seconds));
    }
    out
}

pub fn all_passed(reports: &[ScenarioReport]) -> bool {
    reports
        .iter()
        .all(|r| r.checks.values().all(|v| !matches!(v, Verdict::Fail(_))))
}

fn skipped(reason: &str) -> BTreeMap<&'static str, Verdict> {
    CHECKS
        .iter()
        .map(|check| (*check, Verdict::Skip(reason.to_owned())))
        .collect()
}

/// Runs one scenario in a fresh directory, which is kept (and named) when something missed, for
/// the processes' logs and journals.
async fn run_scenario(
    scenario: Scenario,
    args: &ChaosArgs,
) -> Result<BTreeMap<&'static str, Verdict>, ChaosError> {
    let dir = tempfile::tempdir()
        .map_err(|err| ChaosError::Setup(format!("cannot create a directory: {err}")))?;
    let result = run_in(scenario, args, dir.path()).await;
    let missed = match &result {
        Ok(checks) => checks.values().any(|v| matches!(v, Verdict::Fail(_))),
        Err(_) => true,
    };
    if missed {
        let kept = dir.keep();
        eprintln!(
            "chaos: {}: logs and journals kept in {}",
            scenario.name(),
            kept.display()
        );
    }
    result
}

async fn run_in(
    scenario: Scenario,
    args: &ChaosArgs,
    dir: &std::path::Path,
) -> Result<BTreeMap<&'static str, Verdict>, ChaosError> {
    if let Some(why) = missing_tool(scenario, args) {
        return Ok(skipped(why));
    }
    let workload = Workload::new(args.quick);
    let mut env = process_env(&workload);
    // The cluster lives as long as this scenario: its brokers listen on loopback for the
    // processes.
    let cluster = if scenario == Scenario::EmbeddedStall {
        env.push((
            "OUTBOUND__STORAGE__URL".into(),
            format!("sqlite://{}", dir.join("outbound.db").display()),
        ));
        None
    } else {
        Some(distributed_backends(scenario, args, dir, &mut env).await?)
    };
    let carrier = if scenario == Scenario::CarrierKill {
        Some(Carrier::start(dir, &mut env).await?)
    } else {
        None
    };
    let mut fleet = Fleet::new(dir, env)?;
    let api_port = carrier.as_ref().map(|c| c.api_port);
    if let Some(why) = start_fleet(
        &mut fleet,
        scenario,
        args.quick,
        cluster.is_some(),
        api_port,
    )
    .await?
    {
        return Ok(skipped(&why));
    }
    let api_name = if cluster.is_none() { "all" } else { "api" };
    let base = fleet
        .base(api_name)
        .ok_or_else(|| ChaosError::Setup("no api".into()))?;
    let client = ApiClient::new(&base, 8).map_err(|err| ChaosError::Api(err.to_string()))?;
    let hooks = Hooks::subscribe(&client).await?;

    let two_campaigns = cluster.is_some();
    let campaigns = create_campaigns(&client, &workload, two_campaigns).await?;
    for (id, _) in &campaigns {
        client
            .start(id)
            .await
            .map_err(|err| ChaosError::Api(err.to_string()))?;
    }

    let mut follow = Follow::default();
    let fault_at = (workload.targets / 2) as u64;
    let mut faulted = false;
    let deadline = Instant::now() + workload.deadline;
    loop {
        let attempts = follow.read(&client, &campaigns).await;
        if !faulted && attempts >= fault_at && scenario == Scenario::WebhookDown {
            faulted = true;
            hooks.down_for(workload.outage);
        } else if !faulted && attempts >= fault_at {
            faulted = true;
            inject(
                scenario,
                &mut fleet,
                cluster.as_ref(),
                args,
                &workload,
                &client,
            )
            .await?;
        }
        fleet.note_crashes();
        if faulted && follow.all_completed(&client, &campaigns).await {
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let completed = follow.all_completed(&client, &campaigns).await;
    let recorded = recorded_calls(&client, &campaigns).await;
    // Deliveries go on after the campaigns end: the check waits for them before stopping.
    let delivered = hooks
        .wait_for_all(&recorded, campaigns.len(), workload.deadline / 3)
        .await;
    let survived = fleet.stop_all(Duration::from_secs(30)).await;
    let mut journals = fleet.journals();
    if let Some(carrier) = carrier {
        journals.push(carrier.stop());
    }
    drop(cluster);
    hooks.stop().await;
    let mut checks = verdicts(
        &workload, &campaigns, &journals, recorded, completed, &follow, survived,
    );
    checks.insert("webhooks", delivered);
    Ok(checks)
}

/// Starts the processes: one with every role on the embedded adapters, or, when
/// `distributed`, four split by role (api and scheduler on `api_port` if given, two call
/// processes, status and retry). `Some(why)` when no process under libfaketime came up, a
/// limit of the tool that skips the scenario rather than passing it.
async fn start_fleet(
    fleet: &mut Fleet,
    scenario: Scenario,
    quick: bool,
    distributed: bool,
    api_port: Option<u16>,
) -> Result<Option<String>, ChaosError> {
    if !distributed {
        fleet.start("all", "all", true, 0).await?;
        return Ok(None);
    }
    // Skews far beyond scheduler.orphan_after: the dialer's, and in the full run the
    // scheduler's too.
    let skew = if scenario == Scenario::ClockSkew {
        90
    } else {
        0
    };
    let scheduler_skew = if quick { 0 } else { skew };
    let api_port = api_port.map_or_else(fleet::free_port, Ok)?;
    let started = async {
        fleet
            .start_on("api", "api,scheduler", false, scheduler_skew, api_port)
            .await?;
        fleet.start("call-a", "call", true, skew).await
    }
    .await;
    match started {
        Err(err) if scenario == Scenario::ClockSkew => {
            return Ok(Some(format!("no process under libfaketime came up: {err}")));
        }
        other => other?,
    }
    fleet.start("call-b", "call", true, 0).await?;
    fleet.start("status", "status,retry", false, 0).await?;
    Ok(None)
}

/// Why `scenario` cannot run here (a tool it needs is missing), if it cannot.
fn missing_tool(scenario: Scenario, args: &ChaosArgs) -> Option<&'static str> {
    match scenario {
        Scenario::PostgresRestart if args.postgres_restart.is_none() => {
            Some("no --postgres-restart command")
        }
        Scenario::RedisRestart if args.redis_restart.is_none() => {
            Some("no --redis-restart command")
        }
        Scenario::ClockSkew if !fleet::faketime_installed() => Some("faketime is not installed"),
        Scenario::TansuStall | Scenario::TansuDown if args.tansu.is_none() => {
            Some("no --tansu binary")
        }
        _ => None,
    }
}

/// The settings every process of a scenario shares: fast scheduling and recovery, short calls.
fn process_env(workload: &Workload) -> Vec<(String, String)> {
    vec![
        // The receiver is in this process, over plain HTTP; retries quick enough to outlast
        // the longest outage (90 s) within the schedule.
        ("OUTBOUND__WEBHOOKS__ALLOW_HTTP".into(), "true".into()),
        (
            "OUTBOUND__WEBHOOKS__ALLOW_PRIVATE_NETWORKS".into(),
            "true".into(),
        ),
        ("OUTBOUND__WEBHOOKS__TIMEOUT".into(), "1s".into()),
        (
            "OUTBOUND__WEBHOOKS__RETRY_SCHEDULE".into(),
            "[\"200ms\", \"500ms\", \"1s\", \"2s\", \"5s\", \"10s\", \"20s\", \"30s\", \"60s\"]"
                .into(),
        ),
        ("OUTBOUND__WEBHOOKS__POLL_INTERVAL".into(), "100ms".into()),
        ("OUTBOUND__LOG__FORMAT".into(), "json".into()),
        ("OUTBOUND__LOG__LEVEL".into(), "warn".into()),
        (
            "OUTBOUND__SCHEDULER__HEARTBEAT_INTERVAL".into(),
            "200ms".into(),
        ),
        ("OUTBOUND__SCHEDULER__INTERVAL".into(), "200ms".into()),
        ("OUTBOUND__SCHEDULER__ORPHAN_AFTER".into(), "3s".into()),
        ("OUTBOUND__RETRY__POLL_INTERVAL".into(), "200ms".into()),
        ("OUTBOUND__RUNTIME__SHUTDOWN_GRACE".into(), "5s".into()),
        (
            "OUTBOUND__THROTTLE__GLOBAL_CONCURRENCY".into(),
            workload.global_cap.to_string(),
        ),
        (
            "OUTBOUND__TELEPHONY__MOCK__MIN_DURATION".into(),
            "100ms".into(),
        ),
        (
            "OUTBOUND__TELEPHONY__MOCK__MAX_DURATION".into(),
            "400ms".into(),
        ),
    ]
}

/// Starts the scenario's broker (tansu for the tansu scenarios, else the mock cluster with the
/// topics made) and a fresh PostgreSQL database, and adds what the processes need to reach
/// them, and Redis, to `env`. The broker lives as long as the value returned.
async fn distributed_backends(
    scenario: Scenario,
    args: &ChaosArgs,
    dir: &std::path::Path,
    env: &mut Vec<(String, String)>,
) -> Result<Broker, ChaosError> {
    let prefix = format!("chaos-{}.", uuid::Uuid::now_v7().simple());
    let broker = match (&args.tansu, scenario) {
        (Some(binary), Scenario::TansuStall | Scenario::TansuDown) => {
            // tansu creates the topics when the processes ask for them.
            Broker::Tansu(tansu::Tansu::start(binary, dir).await?)
        }
        _ => {
            let cluster = MockCluster::new(1)
                .map_err(|err| ChaosError::Setup(format!("mock kafka cluster: {err}")))?;
            for topic in ["dispatch", "status", "retry", "wake", "dead-letter"] {
                cluster
                    .create_topic(&format!("{prefix}{topic}"), 4, 1)
                    .map_err(|err| ChaosError::Setup(format!("mock topic: {err}")))?;
            }
            Broker::Mock(cluster)
        }
    };
    let name = format!("chaos_{}", uuid::Uuid::now_v7().simple());
    let database = crate::adapters::postgres::create_database(&args.database_url, &name)
        .await
        .map_err(|err| ChaosError::Setup(format!("database: {err}")))?;
    env.extend([
        ("OUTBOUND__STORAGE__URL".into(), database),
        ("OUTBOUND__LIMITER__URL".into(), args.redis_url.clone()),
        ("OUTBOUND__BUS__KIND".into(), "kafka".into()),
        ("OUTBOUND__BUS__BROKERS".into(), broker.bootstrap_servers()),
        ("OUTBOUND__BUS__TOPIC_PREFIX".into(), prefix),
        ("OUTBOUND__BUS__PARTITIONS".into(), "4".into()),
        // The mock cluster's rebalances never settle below 4 s.
        ("OUTBOUND__BUS__SESSION_TIMEOUT".into(), "6s".into()),
        ("OUTBOUND__LIMITER__LEASE_TTL".into(), "12s".into()),
    ]);
    if matches!(
        scenario,
        Scenario::BrokerDown | Scenario::BrokerHang | Scenario::TansuStall | Scenario::TansuDown
    ) {
        // Deliveries time out within the outage, as they do in a long one: what makes a
        // broker fence the producers that were cut off.
        env.push(("OUTBOUND__BUS__DELIVERY_TIMEOUT".into(), "3s".into()));
    }
    Ok(broker)
}

/// Two campaigns sharing half their numbers (one with the distributed deployment), each with
/// its first number triggered twice more before the start. Returns (id, expected calls).
async fn create_campaigns(
    client: &ApiClient,
    workload: &Workload,
    two: bool,
) -> Result<Vec<(String, usize)>, ChaosError> {
    let offsets: &[usize] = if two {
        &[0, workload.targets / 2]
    } else {
        &[0]
    };
    let mut campaigns = Vec::new();
    for (index, offset) in offsets.iter().enumerate() {
        let numbers: Vec<String> = (0..workload.targets)
            .map(|i| format!("+1555{:07}", offset + i))
            .collect();
        let body = json!({
            "name": format!("chaos-{index}-{}", uuid::Uuid::now_v7().simple()),
            "time_zone": "UTC",
            // The scenarios run at any hour; the calling rules are not what they test.
            "recipient_hours": [],
            "max_concurrent_calls": workload.limit,
            "retry_policy": {"max_attempts": 3, "base_delay": "100ms", "max_delay": "500ms"},
            "targets": numbers.iter().map(|n| json!({"phone_number": n})).collect::<Vec<_>>(),
        });
        let id = client
            .create_campaign(body.to_string())
            .await
            .map_err(|err| ChaosError::Api(err.to_string()))?;
        for _ in 0..2 {
            client
                .expect(
                    "POST /api/v1/calls",
                    reqwest::Method::POST,
                    "/api/v1/calls",
                    Some(&json!({"campaign_id": id, "phone_number": numbers[0]})),
                    202,
                )
                .await
                .map_err(|err| ChaosError::Api(err.to_string()))?;
        }
        campaigns.push((id, workload.targets + 2));
    }
    Ok(campaigns)
}
