//! Contract tests of the ports, written once as functions over the trait and run against every
//! adapter of the port. In this build the adapters are the embedded ones; the distributed ones
//! (issue 3) join the `for_each_*` lists.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use outbound::adapters::kafka::{
    KafkaBus, KafkaBusConfig, DEAD_LETTER_REASON_HEADER, ORIGINAL_TOPIC_HEADER,
};
use outbound::adapters::memory::{LocalLimiter, MemoryBus};
use outbound::adapters::postgres::{self, PgStore};
use outbound::adapters::redis::RedisLimiter;
use outbound::adapters::sqlite::{self, SqliteStore};
use outbound::domain::business_hours::BusinessHours;
use outbound::domain::call::{AttemptOutcome, CallStatus, NextStep};
use outbound::domain::campaign::{CampaignChanges, RetryPolicy, StatusAction, Transition};
use outbound::domain::ids::{CampaignId, InstanceId};
use outbound::domain::phone::PhoneNumber;
use outbound::ports::{
    AttemptReport, Bus, ConcurrencyLimiter, Message, NewCampaign, NewTarget, Store, StoreError,
    Topic,
};
use rdkafka::mocking::MockCluster;

// ---------------------------------------------------------------------------------------------
// Bus

/// Every wait of the bus tests: generous, because a Kafka group join takes seconds.
const BUS_WAIT: Duration = Duration::from_secs(60);

fn message(n: usize) -> Message {
    Message {
        key: format!("k{n}"),
        payload: n.to_string().into_bytes(),
        headers: vec![("traceparent".into(), "x".into())],
    }
}

/// A Kafka bus on a mock cluster of its own (librdkafka's, brokers on loopback: no external
/// Kafka), its topics created with `partitions` partitions under a fresh prefix. The mock
/// cluster does not implement topic creation, so the topics are made here and `connect` finds
/// them. The cluster is leaked: it must outlive the test body and the consumers, which close on
/// background threads after it.
async fn kafka_bus(partitions: i32) -> KafkaBus {
    let prefix = format!("test-{}.", uuid::Uuid::now_v7());
    let brokers = {
        let cluster = Box::leak(Box::new(MockCluster::new(1).expect("mock kafka cluster")));
        for topic in ["dispatch", "status", "retry", "wake", "dead-letter"] {
            cluster
                .create_topic(&format!("{prefix}{topic}"), partitions, 1)
                .expect("create a mock topic");
        }
        cluster.bootstrap_servers()
    };
    KafkaBus::connect(KafkaBusConfig {
        brokers,
        topic_prefix: prefix,
        partitions,
        replication: 1,
        client_id: "outbound-test".into(),
        // The mock cluster's rebalances never settle below 4 s.
        session_timeout: Duration::from_secs(5),
        ..KafkaBusConfig::default()
    })
    .await
    .expect("connect to the mock kafka cluster")
}

/// The in-process bus and the Kafka one. Kafka's topics have one partition here: the contract
/// tests check the order of messages with different keys, which Kafka keeps within a partition
/// only (the port promises order per key; `bus_kafka_members_split_partitions` covers several).
async fn bus_adapters() -> Vec<(&'static str, Arc<dyn Bus>)> {
    vec![
        ("memory", Arc::new(MemoryBus::new())),
        ("kafka", Arc::new(kafka_bus(1).await)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_every_group_gets_every_message_and_members_share() {
    for (name, bus) in bus_adapters().await {
        let mut group_a1 = bus.subscribe(Topic::Status, "a").await.expect("subscribe");
        let mut group_a2 = bus.subscribe(Topic::Status, "a").await.expect("subscribe");
        let mut group_b = bus.subscribe(Topic::Status, "b").await.expect("subscribe");
        bus.publish(Topic::Status, (0..10).map(message).collect())
            .await
            .expect("publish");
        let mut seen_b = Vec::new();
        while seen_b.len() < 10 {
            let batch = tokio::time::timeout(BUS_WAIT, group_b.next_batch(4))
                .await
                .unwrap_or_else(|_| panic!("{name}: group b waited too long"))
                .expect("batch");
            assert!(batch.len() <= 4, "{name}: batch above max");
            let tokens: Vec<u64> = batch.iter().map(|d| d.token).collect();
            seen_b.extend(batch.into_iter().map(|d| d.message));
            group_b.ack(&tokens).await.expect("ack");
        }
        assert_eq!(
            seen_b,
            (0..10).map(message).collect::<Vec<_>>(),
            "{name}: order and headers kept"
        );
        let mut seen_a = HashSet::new();
        while seen_a.len() < 10 {
            let batch = tokio::time::timeout(BUS_WAIT, async {
                tokio::select! {
                    batch = group_a1.next_batch(3) => batch,
                    batch = group_a2.next_batch(3) => batch,
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{name}: group a waited too long"))
            .expect("batch");
            for delivery in batch {
                assert!(
                    seen_a.insert(delivery.message.key.clone()),
                    "{name}: a group member got a duplicate"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_redelivers_what_was_not_acknowledged() {
    for (name, bus) in bus_adapters().await {
        bus.publish(Topic::Dispatch, (0..5).map(message).collect())
            .await
            .expect("publish before anyone subscribed");
        let mut first = bus
            .subscribe(Topic::Dispatch, "call")
            .await
            .expect("subscribe");
        let batch = tokio::time::timeout(BUS_WAIT, first.next_batch(5))
            .await
            .unwrap_or_else(|_| panic!("{name}: backlog waited too long"))
            .expect("batch");
        assert_eq!(batch.len(), 5, "{name}: backlog delivered");
        first
            .ack(&[batch[0].token, batch[1].token])
            .await
            .expect("ack");
        drop(first);
        let mut second = bus
            .subscribe(Topic::Dispatch, "call")
            .await
            .expect("subscribe");
        let again = tokio::time::timeout(BUS_WAIT, second.next_batch(10))
            .await
            .expect("redelivery arrives")
            .expect("batch");
        let keys: Vec<String> = again.into_iter().map(|d| d.message.key).collect();
        assert_eq!(
            keys,
            vec!["k2", "k3", "k4"],
            "{name}: unacknowledged come back, in order"
        );
    }
}

/// Kafka only: with several partitions the members of a group split them, each message goes
/// to one member, and the messages of one key keep their order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_kafka_members_split_partitions() {
    let bus = kafka_bus(4).await;
    let mut members = [
        bus.subscribe(Topic::Status, "a").await.expect("subscribe"),
        bus.subscribe(Topic::Status, "a").await.expect("subscribe"),
    ];
    let keyed = |n: usize| Message {
        key: format!("k{}", n % 8),
        payload: n.to_string().into_bytes(),
        headers: Vec::new(),
    };
    bus.publish(Topic::Status, (0..40).map(keyed).collect())
        .await
        .expect("publish");
    let mut per_member = [0usize; 2];
    let mut per_key: HashMap<String, Vec<usize>> = HashMap::new();
    let mut seen = HashSet::new();
    while seen.len() < 40 {
        let [first, second] = &mut members;
        let (member, batch) = tokio::time::timeout(BUS_WAIT, async {
            tokio::select! {
                batch = first.next_batch(5) => (0, batch),
                batch = second.next_batch(5) => (1, batch),
            }
        })
        .await
        .expect("messages arrive");
        let batch = batch.expect("batch");
        let tokens: Vec<u64> = batch.iter().map(|d| d.token).collect();
        for delivery in batch {
            let n: usize = String::from_utf8(delivery.message.payload)
                .expect("utf-8")
                .parse()
                .expect("number");
            assert!(seen.insert(n), "message {n} delivered twice");
            per_member[member] += 1;
            per_key.entry(delivery.message.key).or_default().push(n);
        }
        members[member].ack(&tokens).await.expect("ack");
    }
    assert!(
        per_member.iter().all(|count| *count > 0),
        "both members got partitions: {per_member:?}"
    );
    for (key, numbers) in per_key {
        assert!(
            numbers.windows(2).all(|pair| pair[0] < pair[1]),
            "order of {key} kept: {numbers:?}"
        );
    }
}

/// Kafka only: a poison message moved aside arrives on the dead-letter topic, whole, saying
/// where it came from and why, and is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_arrives_with_its_reason() {
    let bus = kafka_bus(1).await;
    let poison = message(7);
    bus.dead_letter(Topic::Dispatch, poison.clone(), "undecodable payload")
        .await
        .expect("dead letter");
    let mut letters = bus
        .subscribe_dead_letters("inspect")
        .await
        .expect("subscribe");
    let batch = tokio::time::timeout(BUS_WAIT, letters.next_batch(10))
        .await
        .expect("the dead letter arrives")
        .expect("batch");
    assert_eq!(batch.len(), 1);
    let letter = &batch[0].message;
    assert_eq!(letter.key, poison.key);
    assert_eq!(letter.payload, poison.payload);
    let header = |name: &str| {
        letter
            .headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    assert_eq!(header("traceparent"), Some("x"), "original headers kept");
    assert_eq!(
        header(DEAD_LETTER_REASON_HEADER),
        Some("undecodable payload")
    );
    assert_eq!(
        header(ORIGINAL_TOPIC_HEADER),
        Some(bus.topic_name(Topic::Dispatch).as_str())
    );
    let counted = outbound::metrics::metrics()
        .registry
        .gather()
        .iter()
        .filter(|family| family.name() == "outbound_dead_letters_total")
        .flat_map(|family| family.get_metric())
        .filter(|metric| {
            metric
                .get_label()
                .iter()
                .any(|label| label.name() == "topic" && label.value() == "dispatch")
        })
        .map(|metric| metric.get_counter().get_value())
        .sum::<f64>();
    assert!(counted >= 1.0, "dead letters counted: {counted}");
}

// ---------------------------------------------------------------------------------------------
// Limiter

/// The local limiter and the Redis one. Redis comes from `scripts/test-services.sh`; without it
/// the tests fail rather than pass having checked only one adapter.
async fn limiter_adapters(
    global: u32,
    ttl: Duration,
) -> Vec<(&'static str, Arc<dyn ConcurrencyLimiter>)> {
    let url = std::env::var("OUTBOUND_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "OUTBOUND_TEST_REDIS_URL is not set: run the tests through scripts/test.sh, \
             which starts Redis"
        )
    });
    // A fresh prefix per call keeps tests running in parallel on one server apart.
    let prefix = format!("outbound-test:{}:", uuid::Uuid::now_v7());
    let redis = RedisLimiter::connect(&url, global, ttl, &prefix)
        .await
        .expect("connect to the test redis");
    vec![
        ("local", Arc::new(LocalLimiter::new(global, ttl))),
        ("redis", Arc::new(redis)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_never_exceeds_a_limit_under_races() {
    for (name, limiter) in limiter_adapters(1_000, Duration::from_secs(30)).await {
        let campaign = CampaignId::new();
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let limiter = limiter.clone();
            tasks.push(tokio::spawn(async move {
                limiter
                    .acquire(campaign, 10, 3)
                    .await
                    .expect("acquire")
                    .len()
            }));
        }
        let mut granted = 0;
        for task in tasks {
            granted += task.await.expect("task");
        }
        assert_eq!(granted, 10, "{name}: exactly the limit is granted");
        assert_eq!(limiter.active(campaign).await.expect("active"), 10);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_enforces_the_global_cap_and_frees_on_release() {
    for (name, limiter) in limiter_adapters(5, Duration::from_secs(30)).await {
        let a = CampaignId::new();
        let b = CampaignId::new();
        let leases_a = limiter.acquire(a, 4, 4).await.expect("acquire");
        assert_eq!(leases_a.len(), 4);
        let leases_b = limiter.acquire(b, 4, 4).await.expect("acquire");
        assert_eq!(leases_b.len(), 1, "{name}: global cap of 5");
        let pairs: Vec<_> = leases_a.iter().map(|l| (a, *l)).collect();
        limiter.release(&pairs).await.expect("release");
        limiter
            .release(&pairs)
            .await
            .expect("release twice is harmless");
        assert_eq!(limiter.active(a).await.expect("active"), 0);
        assert_eq!(limiter.acquire(b, 4, 4).await.expect("acquire").len(), 3);
        assert_eq!(limiter.active_total().await.expect("total"), 4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_leases_expire_unless_renewed() {
    for (name, limiter) in limiter_adapters(100, Duration::from_millis(300)).await {
        let campaign = CampaignId::new();
        let kept = limiter.acquire(campaign, 10, 2).await.expect("acquire");
        let dropped = limiter.acquire(campaign, 10, 3).await.expect("acquire");
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let pairs: Vec<_> = kept.iter().map(|l| (campaign, *l)).collect();
            let alive = limiter.renew(&pairs).await.expect("renew");
            assert_eq!(alive, vec![true, true], "{name}: renewed leases are alive");
        }
        assert_eq!(
            limiter.active(campaign).await.expect("active"),
            2,
            "{name}: only renewed leases survive"
        );
        let late: Vec<_> = dropped.iter().map(|l| (campaign, *l)).collect();
        assert_eq!(
            limiter.renew(&late).await.expect("renew"),
            vec![false, false, false],
            "{name}: an expired lease is reported dead, not revived"
        );
        assert_eq!(limiter.active(campaign).await.expect("active"), 2);
    }
}

// ---------------------------------------------------------------------------------------------
// Store

/// Connections per PostgreSQL store in these tests: several, so concurrent tasks of one test
/// really run on separate connections.
const TEST_POOL_SIZE: usize = 8;

/// The SQLite store and the PostgreSQL one. PostgreSQL comes from `scripts/test-services.sh`
/// (`OUTBOUND_TEST_DATABASE_URL`, a server URL); without it the tests fail rather than pass
/// having checked only one adapter. Each call gets a fresh file and a fresh database.
async fn store_adapters(dir: &tempfile::TempDir) -> Vec<(&'static str, Arc<dyn Store>)> {
    store_replicas(dir, 1)
        .await
        .into_iter()
        .map(|(name, mut stores)| (name, stores.remove(0)))
        .collect()
}

/// `count` stores per adapter over one database each, as that many processes would open it.
async fn store_replicas(
    dir: &tempfile::TempDir,
    count: usize,
) -> Vec<(&'static str, Vec<Arc<dyn Store>>)> {
    let path = dir
        .path()
        .join(format!("contract-{}.db", uuid::Uuid::now_v7().simple()));
    let path = path.to_str().expect("utf-8 path").to_owned();
    let migrate_path = path.clone();
    tokio::task::spawn_blocking(move || sqlite::migrate(&migrate_path))
        .await
        .expect("join")
        .expect("migrate");
    let url = fresh_postgres_database().await;
    let mut sqlite_stores: Vec<Arc<dyn Store>> = Vec::new();
    let mut postgres_stores: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..count {
        sqlite_stores.push(Arc::new(SqliteStore::open(&path).await.expect("open")));
        postgres_stores.push(Arc::new(
            PgStore::connect(&url, TEST_POOL_SIZE)
                .await
                .expect("connect to the test database"),
        ));
    }
    vec![("sqlite", sqlite_stores), ("postgres", postgres_stores)]
}

/// A new, migrated database on the test server; returns its URL.
pub async fn fresh_postgres_database() -> String {
    let server = std::env::var("OUTBOUND_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "OUTBOUND_TEST_DATABASE_URL is not set: run the tests through scripts/test.sh, \
             which starts PostgreSQL"
        )
    });
    let name = format!("t_{}", uuid::Uuid::now_v7().simple());
    let url = postgres::create_database(&server, &name)
        .await
        .expect("create a test database");
    let applied = postgres::migrate(&url).await.expect("migrate");
    assert!(!applied.is_empty(), "a fresh database gets every migration");
    url
}

async fn started_campaign(store: &dyn Store, targets: usize) -> CampaignId {
    let id = CampaignId::new();
    let targets = (0..targets)
        .map(|i| NewTarget {
            phone_number: PhoneNumber::parse(&format!("+1555{i:07}")).expect("number"),
            metadata: None,
        })
        .collect();
    store
        .create_campaign(
            NewCampaign {
                id,
                name: format!("contract-{id}"),
                description: String::new(),
                time_zone: chrono_tz::UTC,
                max_concurrent_calls: 100,
                retry_policy: RetryPolicy {
                    max_attempts: 2,
                    ..RetryPolicy::default()
                },
                business_hours: BusinessHours::default(),
                targets,
            },
            Utc::now(),
        )
        .await
        .expect("create");
    store
        .transition_campaign(id, StatusAction::Start, Utc::now())
        .await
        .expect("start");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_claims_are_exclusive() {
    let dir = tempfile::tempdir().expect("dir");
    for (name, store) in store_adapters(&dir).await {
        let campaign = started_campaign(&*store, 500).await;
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let claimed = store
                        .claim_calls(campaign, 17, InstanceId::new(), Utc::now())
                        .await
                        .expect("claim");
                    if claimed.is_empty() {
                        return mine;
                    }
                    mine.extend(claimed.into_iter().map(|c| c.call_id));
                }
            }));
        }
        let mut all = HashSet::new();
        let mut total = 0;
        for task in tasks {
            let mine = task.await.expect("task");
            total += mine.len();
            all.extend(mine);
        }
        assert_eq!(total, 500, "{name}: every call claimed");
        assert_eq!(all.len(), 500, "{name}: no call claimed twice");
        let stats = store
            .campaign_stats(campaign)
            .await
            .expect("stats")
            .expect("exists");
        assert_eq!(stats.dialing_calls, 500);
        assert!(stats.is_consistent());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_counts_a_report_once() {
    let dir = tempfile::tempdir().expect("dir");
    for (name, store) in store_adapters(&dir).await {
        let campaign = started_campaign(&*store, 3).await;
        let claimed = store
            .claim_calls(campaign, 3, InstanceId::new(), Utc::now())
            .await
            .expect("claim");
        let now = Utc::now();
        let reports: Vec<AttemptReport> = claimed
            .iter()
            .map(|call| AttemptReport {
                call_id: call.call_id,
                campaign_id: campaign,
                attempt: call.attempt,
                outcome: AttemptOutcome::Failed {
                    error: "busy".into(),
                    retryable: true,
                },
                ended_at: now,
                retry_at: now,
                expected_owner: None,
            })
            .collect();
        let first = store.record_attempts(&reports, now).await.expect("record");
        assert!(
            first
                .iter()
                .all(|a| matches!(a.step, Some(NextStep::RetryAt(_)))),
            "{name}"
        );
        let before = store
            .campaign_stats(campaign)
            .await
            .expect("stats")
            .expect("exists");
        let again = store
            .record_attempts(&reports, now)
            .await
            .expect("record again");
        assert!(
            again.iter().all(|a| a.step.is_none()),
            "{name}: duplicates are no-ops"
        );
        let after = store
            .campaign_stats(campaign)
            .await
            .expect("stats")
            .expect("exists");
        assert_eq!(before.retrying_calls, 3);
        assert_eq!(
            (
                before.retrying_calls,
                before.finished_attempts,
                before.attempts_total
            ),
            (
                after.retrying_calls,
                after.finished_attempts,
                after.attempts_total
            ),
            "{name}: stats unchanged by a redelivery"
        );
        // A paused campaign holds its due retries; starting it again releases them.
        store
            .transition_campaign(campaign, StatusAction::Pause, Utc::now())
            .await
            .expect("pause");
        let held = store
            .promote_due_retries(Utc::now(), 100)
            .await
            .expect("promote");
        assert!(held.is_empty(), "{name}: retries held while paused");
        assert_eq!(store.next_retry_due().await.expect("next due"), None);
        store
            .transition_campaign(campaign, StatusAction::Start, Utc::now())
            .await
            .expect("start");
        // Due retries come back; the second attempt exhausts the budget of 2.
        let promoted = store
            .promote_due_retries(Utc::now(), 100)
            .await
            .expect("promote");
        assert_eq!(promoted, vec![campaign]);
        let second = store
            .claim_calls(campaign, 10, InstanceId::new(), Utc::now())
            .await
            .expect("claim");
        assert!(second.iter().all(|c| c.attempt == 2));
        let reports: Vec<AttemptReport> = second
            .iter()
            .map(|call| AttemptReport {
                call_id: call.call_id,
                campaign_id: campaign,
                attempt: 2,
                outcome: AttemptOutcome::Failed {
                    error: "busy".into(),
                    retryable: true,
                },
                ended_at: now,
                retry_at: now,
                expected_owner: None,
            })
            .collect();
        let last = store
            .record_attempts(&reports, Utc::now())
            .await
            .expect("record");
        assert!(
            last.iter().all(|a| a.step == Some(NextStep::Fail)),
            "{name}"
        );
        let done = store
            .get_campaign(campaign)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(
            done.status.as_str(),
            "completed",
            "{name}: completes by itself"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_finds_attempts_of_dead_owners_only() {
    let dir = tempfile::tempdir().expect("dir");
    for (name, store) in store_adapters(&dir).await {
        let campaign = started_campaign(&*store, 4).await;
        let alive = InstanceId::new();
        let dead = InstanceId::new();
        let long_ago = Utc::now() - chrono::Duration::minutes(5);
        store.heartbeat(dead, long_ago).await.expect("heartbeat");
        store.heartbeat(alive, Utc::now()).await.expect("heartbeat");
        store
            .claim_calls(campaign, 2, alive, Utc::now())
            .await
            .expect("claim");
        store
            .claim_calls(campaign, 2, dead, Utc::now())
            .await
            .expect("claim");
        let stale_before = Utc::now() - chrono::Duration::seconds(10);
        let orphans = store
            .orphaned_attempts(stale_before, 100)
            .await
            .expect("orphans");
        assert_eq!(orphans.len(), 2, "{name}");
        assert!(orphans
            .iter()
            .all(|o| o.attempt == 1 && o.campaign_id == campaign));
    }
}

/// Claims from several stores over one database, as scheduler replicas in separate processes
/// would make them: separate SQLite connections on one file, separate PostgreSQL pools.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_claims_are_exclusive_across_replicas() {
    let dir = tempfile::tempdir().expect("dir");
    for (name, replicas) in store_replicas(&dir, 3).await {
        let campaign = started_campaign(&*replicas[0], 600).await;
        let mut tasks = Vec::new();
        for store in &replicas {
            for _ in 0..3 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    let owner = InstanceId::new();
                    let mut mine = Vec::new();
                    loop {
                        let claimed = store
                            .claim_calls(campaign, 13, owner, Utc::now())
                            .await
                            .expect("claim");
                        if claimed.is_empty() {
                            return mine;
                        }
                        assert!(claimed.windows(2).all(|w| w[0].call_id < w[1].call_id));
                        mine.extend(claimed.into_iter().map(|c| c.call_id));
                    }
                }));
            }
        }
        let mut all = HashSet::new();
        let mut total = 0;
        for task in tasks {
            let mine = task.await.expect("task");
            total += mine.len();
            all.extend(mine);
        }
        assert_eq!(total, 600, "{name}: every call claimed");
        assert_eq!(all.len(), 600, "{name}: no call claimed twice");
        for store in &replicas {
            let stats = store
                .campaign_stats(campaign)
                .await
                .expect("stats")
                .expect("exists");
            assert_eq!(
                (
                    stats.queued_calls,
                    stats.dialing_calls,
                    stats.attempts_total
                ),
                (0, 600, 600),
                "{name}: counters exact under concurrent writers"
            );
            assert!(stats.is_consistent(), "{name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_names_are_unique_case_insensitively() {
    let dir = tempfile::tempdir().expect("dir");
    for (name, store) in store_adapters(&dir).await {
        let new = |campaign_name: &str| NewCampaign {
            id: CampaignId::new(),
            name: campaign_name.into(),
            description: String::new(),
            time_zone: chrono_tz::UTC,
            max_concurrent_calls: 10,
            retry_policy: RetryPolicy::default(),
            business_hours: BusinessHours::default(),
            targets: Vec::new(),
        };
        let alpha = store
            .create_campaign(new("Alpha"), Utc::now())
            .await
            .expect("create");
        let taken = store.create_campaign(new("ALPHA"), Utc::now()).await;
        assert!(
            matches!(taken, Err(StoreError::DuplicateName)),
            "{name}: {taken:?}"
        );
        let beta = store
            .create_campaign(new("Beta"), Utc::now())
            .await
            .expect("create");
        let rename = |to: &str| CampaignChanges {
            name: Some(to.into()),
            ..CampaignChanges::default()
        };
        let clash = store
            .update_campaign(beta.id, rename("alpha"), Utc::now())
            .await;
        assert!(
            matches!(clash, Err(StoreError::DuplicateName)),
            "{name}: {clash:?}"
        );
        let recased = store
            .update_campaign(beta.id, rename("BETA"), Utc::now())
            .await
            .expect("a campaign may change the case of its own name");
        assert_eq!(recased.name, "BETA");
        store
            .update_campaign(alpha.id, rename("Gamma"), Utc::now())
            .await
            .expect("rename");
        store
            .create_campaign(new("alpha"), Utc::now())
            .await
            .expect("a renamed campaign frees its old name");
        let gone = store
            .update_campaign(CampaignId::new(), rename("x"), Utc::now())
            .await;
        assert!(matches!(gone, Err(StoreError::NotFound)), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_complete_cancels_waiting_calls_and_keeps_counts() {
    let dir = tempfile::tempdir().expect("dir");
    for (name, store) in store_adapters(&dir).await {
        let campaign = started_campaign(&*store, 6).await;
        let claimed = store
            .claim_calls(campaign, 2, InstanceId::new(), Utc::now())
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 2);
        let now = Utc::now();
        let report = |call: &outbound::ports::ClaimedCall| AttemptReport {
            call_id: call.call_id,
            campaign_id: campaign,
            attempt: call.attempt,
            outcome: AttemptOutcome::Failed {
                error: "busy".into(),
                retryable: true,
            },
            ended_at: now,
            retry_at: now + chrono::Duration::hours(1),
            expected_owner: None,
        };
        store
            .record_attempts(&[report(&claimed[0])], now)
            .await
            .expect("record");
        let transition = store
            .transition_campaign(campaign, StatusAction::Complete, Utc::now())
            .await
            .expect("complete");
        assert_eq!(
            transition,
            Transition::To(outbound::domain::campaign::CampaignStatus::Completed)
        );
        let stats = store
            .campaign_stats(campaign)
            .await
            .expect("stats")
            .expect("exists");
        assert_eq!(
            (
                stats.queued_calls,
                stats.retrying_calls,
                stats.dialing_calls,
                stats.canceled_calls
            ),
            (0, 0, 1, 5),
            "{name}: queued and retrying calls canceled, the dialing one left alone"
        );
        assert!(stats.is_consistent(), "{name}");
        assert_eq!(store.next_retry_due().await.expect("next due"), None);
        let late = store
            .record_attempts(&[report(&claimed[1])], Utc::now())
            .await
            .expect("record");
        assert_eq!(
            late[0].step,
            Some(NextStep::Cancel),
            "{name}: no retry once completed"
        );
        let stats = store
            .campaign_stats(campaign)
            .await
            .expect("stats")
            .expect("exists");
        assert_eq!(
            (stats.dialing_calls, stats.canceled_calls),
            (0, 6),
            "{name}"
        );
        assert!(stats.is_consistent(), "{name}");
        let more = store.enqueue_calls(campaign, Vec::new(), Utc::now()).await;
        assert!(
            matches!(more, Err(StoreError::InvalidState(_))),
            "{name}: {more:?}"
        );
        let none = store
            .claim_calls(campaign, 10, InstanceId::new(), Utc::now())
            .await
            .expect("claim");
        assert!(none.is_empty(), "{name}");
        let again = store
            .transition_campaign(campaign, StatusAction::Complete, Utc::now())
            .await;
        assert!(matches!(again, Err(StoreError::InvalidState(_))), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_enqueues_registered_numbers_and_pages_calls() {
    let dir = tempfile::tempdir().expect("dir");
    for (name, store) in store_adapters(&dir).await {
        let campaign = started_campaign(&*store, 5).await;
        let number = |text: &str| NewTarget {
            phone_number: PhoneNumber::parse(text).expect("number"),
            metadata: Some(serde_json::json!({ "customer": 7 })),
        };
        let refused = store
            .enqueue_calls(
                campaign,
                vec![number("+15550000001"), number("+15559999999")],
                Utc::now(),
            )
            .await;
        match refused {
            Err(StoreError::NotRegistered(numbers)) => {
                assert_eq!(numbers, vec!["+15559999999".to_owned()], "{name}")
            }
            other => panic!("{name}: expected NotRegistered, got {other:?}"),
        }
        let queued = store
            .enqueue_calls(campaign, vec![number("+15550000001")], Utc::now())
            .await
            .expect("enqueue");
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].status, CallStatus::Queued);
        let stats = store
            .campaign_stats(campaign)
            .await
            .expect("stats")
            .expect("exists");
        assert_eq!(
            (stats.total_targets, stats.total_calls, stats.queued_calls),
            (5, 6, 6),
            "{name}"
        );
        // Pages in id order, with and without a status filter.
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .list_calls(campaign, None, after, 4)
                .await
                .expect("page");
            if page.is_empty() {
                break;
            }
            after = page.last().map(|call| call.id);
            paged.extend(page.into_iter().map(|call| call.id));
        }
        assert_eq!(paged.len(), 6, "{name}");
        assert!(paged.windows(2).all(|w| w[0] < w[1]), "{name}: id order");
        let claimed = store
            .claim_calls(campaign, 2, InstanceId::new(), Utc::now())
            .await
            .expect("claim");
        assert_eq!(
            claimed.iter().map(|c| c.call_id).collect::<Vec<_>>(),
            paged[..2].to_vec(),
            "{name}: oldest calls first"
        );
        let dialing = store
            .list_calls(campaign, Some(CallStatus::Dialing), None, 10)
            .await
            .expect("list");
        assert_eq!(dialing.len(), 2, "{name}");
        let ended = Utc::now();
        store
            .record_attempts(
                &[AttemptReport {
                    call_id: claimed[0].call_id,
                    campaign_id: campaign,
                    attempt: 1,
                    outcome: AttemptOutcome::Answered,
                    ended_at: ended,
                    retry_at: ended,
                    expected_owner: None,
                }],
                ended,
            )
            .await
            .expect("record");
        let (call, attempts) = store
            .get_call(claimed[0].call_id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(call.status, CallStatus::Completed, "{name}");
        assert_eq!(attempts.len(), 1, "{name}");
        assert_eq!(attempts[0].attempt, 1);
        assert!(attempts[0].ended_at.is_some() && attempts[0].duration_ms.is_some());
        let (requeued, _) = store
            .get_call(queued[0].id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(
            requeued.metadata,
            Some(serde_json::json!({ "customer": 7 }))
        );
        assert!(store
            .get_call(outbound::domain::ids::CallId::new())
            .await
            .expect("get")
            .is_none());
        assert!(
            store
                .runnable_campaigns()
                .await
                .expect("runnable")
                .iter()
                .any(|r| r.id == campaign && r.queued_calls == 4),
            "{name}"
        );
    }
}

/// Claims, reports (with redeliveries), retries, triggered calls and the completion sweep all at
/// once on one campaign: no writer fails (no deadlock), the counters match the calls, and the
/// campaign completes only when nothing is left to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_counters_match_calls_under_concurrent_writers() {
    let dir = tempfile::tempdir().expect("dir");
    for (name, store) in store_adapters(&dir).await {
        let campaign = started_campaign(&*store, 120).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut workers = Vec::new();
        for worker in 0..3u32 {
            let store = store.clone();
            workers.push(tokio::spawn(async move {
                let owner = InstanceId::new();
                let mut round = 0u32;
                loop {
                    assert!(tokio::time::Instant::now() < deadline, "workers stalled");
                    let claimed = store
                        .claim_calls(campaign, 7, owner, Utc::now())
                        .await
                        .expect("claim");
                    if claimed.is_empty() {
                        let current = store.get_campaign(campaign).await.expect("get");
                        if current.is_some_and(|c| c.status.as_str() == "completed") {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        continue;
                    }
                    let now = Utc::now();
                    let reports: Vec<AttemptReport> = claimed
                        .iter()
                        .enumerate()
                        .map(|(i, call)| AttemptReport {
                            call_id: call.call_id,
                            campaign_id: campaign,
                            attempt: call.attempt,
                            outcome: match (i as u32 + worker + round) % 3 {
                                0 => AttemptOutcome::Answered,
                                1 => AttemptOutcome::Failed {
                                    error: "busy".into(),
                                    retryable: true,
                                },
                                _ => AttemptOutcome::Failed {
                                    error: "invalid".into(),
                                    retryable: round % 2 == 0,
                                },
                            },
                            ended_at: now,
                            retry_at: now,
                            expected_owner: None,
                        })
                        .collect();
                    store.record_attempts(&reports, now).await.expect("record");
                    if round % 4 == 0 {
                        let again = store
                            .record_attempts(&reports, Utc::now())
                            .await
                            .expect("redelivery");
                        assert!(again.iter().all(|a| a.step.is_none()));
                    }
                    round += 1;
                }
            }));
        }
        let promoter = {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    store
                        .promote_due_retries(Utc::now(), 25)
                        .await
                        .expect("promote");
                    store
                        .complete_finished_campaigns(Utc::now())
                        .await
                        .expect("sweep");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        };
        let triggered = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut queued = 0u64;
                for i in 0..10 {
                    let targets = (0..2)
                        .map(|j| NewTarget {
                            phone_number: PhoneNumber::parse(&format!("+1555{:07}", i * 2 + j))
                                .expect("number"),
                            metadata: None,
                        })
                        .collect();
                    match store.enqueue_calls(campaign, targets, Utc::now()).await {
                        Ok(calls) => queued += calls.len() as u64,
                        Err(outbound::ports::StoreError::InvalidState(_)) => break,
                        Err(err) => panic!("enqueue: {err}"),
                    }
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
                queued
            })
        };
        let queued = triggered.await.expect("enqueuer");
        for worker in workers {
            worker.await.expect("worker");
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        promoter.await.expect("promoter");

        let stats = store
            .campaign_stats(campaign)
            .await
            .expect("stats")
            .expect("exists");
        assert!(stats.is_consistent(), "{name}: {stats:?}");
        assert_eq!(stats.total_calls, 120 + queued, "{name}");
        assert!(!stats.has_open_calls(), "{name}: completed with work left");
        let mut by_status: HashMap<CallStatus, u64> = HashMap::new();
        let mut after = None;
        loop {
            let page = store
                .list_calls(campaign, None, after, 100)
                .await
                .expect("page");
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for call in page {
                *by_status.entry(call.status).or_default() += 1;
            }
        }
        let count = |status| by_status.get(&status).copied().unwrap_or(0);
        assert_eq!(
            (
                count(CallStatus::Completed),
                count(CallStatus::Failed),
                count(CallStatus::Canceled)
            ),
            (
                stats.completed_calls,
                stats.failed_calls,
                stats.canceled_calls
            ),
            "{name}: counters match the calls"
        );
        assert_eq!(stats.finished_attempts, stats.attempts_total, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_adoption_and_lost_attempts_exclude_each_other() {
    let dir = tempfile::tempdir().expect("dir");
    for (name, store) in store_adapters(&dir).await {
        let campaign = started_campaign(&*store, 2).await;
        let claimer = InstanceId::new();
        let caller = InstanceId::new();
        store
            .heartbeat(claimer, Utc::now() - chrono::Duration::minutes(5))
            .await
            .expect("heartbeat");
        store
            .heartbeat(caller, Utc::now())
            .await
            .expect("heartbeat");
        let claimed = store
            .claim_calls(campaign, 2, claimer, Utc::now())
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 2);
        let (first, second) = (&claimed[0], &claimed[1]);

        // The call process adopts the first attempt: it is no longer an orphan, and recording
        // it as lost on behalf of the dead claimer does nothing.
        let adopted = store
            .adopt_attempts(&[(campaign, first.call_id, first.attempt, claimer)], caller)
            .await
            .expect("adopt");
        assert_eq!(adopted, vec![true], "{name}");
        // A redelivery to another call process cannot adopt it again.
        let again = store
            .adopt_attempts(
                &[(campaign, first.call_id, first.attempt, claimer)],
                InstanceId::new(),
            )
            .await
            .expect("adopt");
        assert_eq!(again, vec![false], "{name}: an attempt is adopted once");
        let stale_before = Utc::now() - chrono::Duration::seconds(10);
        let orphans = store
            .orphaned_attempts(stale_before, 10)
            .await
            .expect("orphans");
        assert_eq!(
            orphans.len(),
            1,
            "{name}: only the unadopted attempt is orphaned"
        );
        assert_eq!(orphans[0].call_id, second.call_id);
        assert_eq!(orphans[0].owner, Some(claimer));
        let lost = |call: &outbound::ports::ClaimedCall| AttemptReport {
            call_id: call.call_id,
            campaign_id: campaign,
            attempt: call.attempt,
            outcome: AttemptOutcome::Failed {
                error: "attempt_lost".into(),
                retryable: true,
            },
            ended_at: Utc::now(),
            retry_at: Utc::now(),
            expected_owner: Some(claimer),
        };
        let applied = store
            .record_attempts(&[lost(first), lost(second)], Utc::now())
            .await
            .expect("record");
        assert_eq!(
            applied[0].step, None,
            "{name}: an adopted attempt is not lost"
        );
        assert!(applied[1].step.is_some(), "{name}: the orphan is recorded");

        // Once recorded, the attempt cannot be adopted (and so is never dialed).
        let late = store
            .adopt_attempts(
                &[(campaign, second.call_id, second.attempt, claimer)],
                caller,
            )
            .await
            .expect("adopt");
        assert_eq!(late, vec![false], "{name}");
    }
}
