//! Distributed mode across processes: the real executable with role subsets on shared
//! PostgreSQL, Redis and Kafka (librdkafka's mock cluster, whose brokers listen on loopback).

use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use serde_json::json;

use outbound::loadtest::journal::{intervals, max_overlap};

use crate::helpers::{all_calls, assert_invariant, tally, targets, unique_name};
use crate::process::Process;

const TOPICS: [&str; 5] = ["dispatch", "status", "retry", "wake", "dead-letter"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_finish_a_campaign_within_its_limit_despite_a_killed_call_process() {
    let database = crate::fixtures::fresh_postgres_database().await;
    let redis = std::env::var("OUTBOUND_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("OUTBOUND_TEST_REDIS_URL is not set: run the tests through scripts/test.sh")
    });
    let prefix = format!("mp-{}.", uuid::Uuid::now_v7().simple());
    let cluster = MockCluster::new(1).expect("mock kafka cluster");
    for topic in TOPICS {
        cluster
            .create_topic(&format!("{prefix}{topic}"), 4, 1)
            .expect("create a mock topic");
    }
    let dir = tempfile::tempdir().expect("dir");
    let journal = |name: &str| dir.path().join(format!("{name}.journal"));
    let shared: Vec<(String, String)> = vec![
        ("OUTBOUND__STORAGE__URL".into(), database.clone()),
        ("OUTBOUND__LIMITER__URL".into(), redis),
        ("OUTBOUND__LIMITER__LEASE_TTL".into(), "12s".into()),
        ("OUTBOUND__BUS__KIND".into(), "kafka".into()),
        ("OUTBOUND__BUS__BROKERS".into(), cluster.bootstrap_servers()),
        ("OUTBOUND__BUS__TOPIC_PREFIX".into(), prefix.clone()),
        ("OUTBOUND__BUS__PARTITIONS".into(), "4".into()),
        // The mock cluster's rebalances never settle below 4 s.
        ("OUTBOUND__BUS__SESSION_TIMEOUT".into(), "6s".into()),
        ("OUTBOUND__SCHEDULER__ORPHAN_AFTER".into(), "3s".into()),
        (
            "OUTBOUND__TELEPHONY__MOCK__MIN_DURATION".into(),
            "20ms".into(),
        ),
        (
            "OUTBOUND__TELEPHONY__MOCK__MAX_DURATION".into(),
            "80ms".into(),
        ),
    ];
    let with = |extra: &[(&str, String)]| {
        let mut env = shared.clone();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        env
    };
    let journal_env = |name: &str| {
        (
            "OUTBOUND__TELEPHONY__MOCK__JOURNAL",
            journal(name).display().to_string(),
        )
    };
    let (env_api, env_a, env_b, env_rec) = (
        with(&[]),
        with(&[journal_env("call-a")]),
        with(&[journal_env("call-b")]),
        with(&[]),
    );
    let (api, call_a, call_b, recorder) = tokio::join!(
        Process::start(dir.path(), "api,scheduler", &env_api),
        Process::start(dir.path(), "call", &env_a),
        Process::start(dir.path(), "call", &env_b),
        Process::start(dir.path(), "status,retry", &env_rec),
    );

    let limit = 8u64;
    let (status, created) = api
        .post(
            "/api/v1/campaigns",
            json!({
                "name": unique_name("fleet"),
                "time_zone": "UTC",
                "max_concurrent_calls": limit,
                "retry_policy": {"max_attempts": 3, "base_delay": "100ms", "max_delay": "500ms"},
                "targets": targets(300, 0),
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let (status, _) = api
        .post(&format!("/api/v1/campaigns/{id}/start"), json!({}))
        .await;
    assert_eq!(status, 204);

    // Kill one call process with SIGKILL mid-campaign.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, stats) = api.get(&format!("/api/v1/campaigns/{id}/stats")).await;
        assert_invariant(&stats);
        if stats["attempts_total"].as_u64() >= Some(60) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fleet does not dial: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    call_a.kill_hard();
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();

    let deadline = Instant::now() + Duration::from_secs(180);
    let stats = loop {
        let (_, stats) = api.get(&format!("/api/v1/campaigns/{id}/stats")).await;
        assert_invariant(&stats);
        let (_, campaign) = api.get(&format!("/api/v1/campaigns/{id}")).await;
        if campaign["status"] == "completed" {
            // Completion commits with the last counts: read them after seeing it.
            break api.get(&format!("/api/v1/campaigns/{id}/stats")).await.1;
        }
        assert!(Instant::now() < deadline, "not completed: {stats}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Nothing lost: every target ends with a terminal call, and the counters match the rows.
    let calls = all_calls(&api.client, &api.base, &id).await;
    assert_eq!(calls.len(), 300);
    let counts = tally(&calls);
    let terminal: u64 = ["completed", "failed", "canceled"]
        .iter()
        .map(|s| counts.get(*s).copied().unwrap_or(0))
        .sum();
    assert_eq!(terminal, 300, "{counts:?}");
    assert_eq!(
        stats["completed_calls"].as_u64(),
        Some(counts.get("completed").copied().unwrap_or(0))
    );
    let attempts: u64 = calls
        .iter()
        .map(|c| c["attempt_count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(stats["attempts_total"].as_u64(), Some(attempts));

    // The limit held across both call processes: the exact number of simultaneous calls, from
    // both providers' journals on one clock.
    let mut all = Vec::new();
    for name in ["call-a", "call-b"] {
        let text = std::fs::read_to_string(journal(name)).unwrap_or_default();
        let mine = intervals(&text, &id, killed_at);
        assert!(!mine.is_empty(), "{name} dialed");
        all.extend(mine);
    }
    let peak = max_overlap(&all);
    assert!(
        peak as u64 <= limit,
        "{peak} simultaneous calls, limit {limit}"
    );
    assert!(peak > 1, "both processes worked in parallel");
    eprintln!(
        "fleet: {} attempts, peak {peak} of {limit}, {counts:?}",
        stats["attempts_total"]
    );
    for process in [call_b, recorder, api] {
        assert!(process.terminate().success(), "clean exit");
    }
}
