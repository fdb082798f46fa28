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

/// A dispatch that sat in the bus longer than its lease lives has lost its slot, which may have
/// gone to another call meanwhile. The call role must not dial it on the dead lease (that
/// would put the campaign over its limit): it waits, unacknowledged, for a new lease, and dials
/// as soon as one frees up. Driven step by step on the real adapters (PostgreSQL, Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_whose_lease_expired_waits_for_a_new_one() {
    use std::collections::BTreeSet;

    use outbound::context::AppContext;
    use outbound::domain::business_hours::BusinessHours;
    use outbound::domain::campaign::{RetryPolicy, StatusAction};
    use outbound::domain::ids::{CampaignId, InstanceId};
    use outbound::domain::phone::PhoneNumber;
    use outbound::ports::{Delivery, NewCampaign, NewTarget};
    use outbound::roles::call::CallWorker;
    use outbound::roles::messages::{self, DispatchMessage, PolicyTerms};
    use outbound::runtime::role::RoleName;
    use outbound::settings::GoDuration;

    let dir = tempfile::tempdir().expect("dir");
    let mut settings = crate::helpers::test_settings(dir.path());
    crate::helpers::distributed(&mut settings).await;
    // Calls that outlast the test, so a dialed call stays in flight.
    settings.telephony.mock.min_duration = GoDuration(Duration::from_secs(60));
    settings.telephony.mock.max_duration = GoDuration(Duration::from_secs(60));
    settings.limiter.lease_ttl = GoDuration(Duration::from_millis(500));
    let roles: BTreeSet<RoleName> = [RoleName::Call].into_iter().collect();
    let ctx = AppContext::build(settings, &roles, true)
        .await
        .expect("context");
    let mock = ctx.provider_counts.clone().expect("mock provider counts");

    let campaign = CampaignId::new();
    ctx.store
        .create_campaign(
            NewCampaign {
                id: campaign,
                name: unique_name("expired-lease"),
                description: String::new(),
                time_zone: chrono_tz::UTC,
                max_concurrent_calls: 1,
                retry_policy: RetryPolicy::default(),
                business_hours: BusinessHours::default(),
                targets: vec![NewTarget {
                    phone_number: PhoneNumber::parse("+15555550100").expect("number"),
                    metadata: None,
                }],
            },
            chrono::Utc::now(),
        )
        .await
        .expect("create");
    ctx.store
        .transition_campaign(campaign, StatusAction::Start, chrono::Utc::now())
        .await
        .expect("start");
    // The scheduler's part: a lease, a claim by a live claimer, a dispatch.
    let claimer = InstanceId::new();
    ctx.store
        .heartbeat(claimer, chrono::Utc::now())
        .await
        .expect("heartbeat");
    let lease = ctx.limiter.acquire(campaign, 1, 1).await.expect("lease")[0];
    let claimed = ctx
        .store
        .claim_calls(campaign, 1, claimer, chrono::Utc::now())
        .await
        .expect("claim");
    let call = claimed.first().expect("a claimed call").clone();
    let dispatch = DispatchMessage {
        v: messages::VERSION,
        call_id: call.call_id,
        campaign_id: campaign,
        attempt: call.attempt,
        phone_number: call.phone_number.clone(),
        lease_id: lease,
        policy: PolicyTerms {
            base_delay_ms: 1_000,
            max_delay_ms: 10_000,
            jitter: 0.0,
        },
        owner: claimer,
        limit: 1,
    };

    // In transit longer than the lease lives; meanwhile the slot goes to someone else.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let other = ctx.limiter.acquire(campaign, 1, 1).await.expect("acquire");
    assert_eq!(other.len(), 1, "the expired lease freed the slot");

    let mut worker = CallWorker::new(ctx.clone());
    let delivery = Delivery {
        message: messages::encode(call.call_id.to_string(), &dispatch),
        token: 1,
    };
    let done = worker.process_batch(vec![delivery]).await.expect("batch");
    assert!(done.is_empty(), "waiting, so not acknowledged: {done:?}");
    assert_eq!(worker.in_flight(), 0, "not dialed on a dead lease");
    assert_eq!(mock.campaign(campaign).peak, 0);
    assert_eq!(ctx.limiter.active(campaign).await.expect("active"), 1);

    // Still no slot: still waiting.
    worker.process_batch(Vec::new()).await.expect("batch");
    assert_eq!(worker.in_flight(), 0);

    // The slot frees up: the waiting dispatch takes a new lease and dials, once.
    ctx.limiter
        .release(&[(campaign, other[0])])
        .await
        .expect("release");
    worker.process_batch(Vec::new()).await.expect("batch");
    assert_eq!(worker.in_flight(), 1, "dialed under a new lease");
    assert_eq!(mock.campaign(campaign).active, 1);
    assert_eq!(ctx.limiter.active(campaign).await.expect("active"), 1);
    worker.process_batch(Vec::new()).await.expect("batch");
    assert_eq!(
        mock.campaign(campaign).peak,
        1,
        "dialed once, never over the limit"
    );
}
