//! Contract tests of the ports, written once as functions over the trait and run against every
//! adapter of the port. In this build the adapters are the embedded ones; the distributed ones
//! (issue 3) join the `for_each_*` lists.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use outbound::adapters::memory::{LocalLimiter, MemoryBus};
use outbound::adapters::redis::RedisLimiter;
use outbound::adapters::sqlite::{self, SqliteStore};
use outbound::domain::business_hours::BusinessHours;
use outbound::domain::call::{AttemptOutcome, NextStep};
use outbound::domain::campaign::{RetryPolicy, StatusAction};
use outbound::domain::ids::{CampaignId, InstanceId};
use outbound::domain::phone::PhoneNumber;
use outbound::ports::{
    AttemptReport, Bus, ConcurrencyLimiter, Message, NewCampaign, NewTarget, Store, Topic,
};

// ---------------------------------------------------------------------------------------------
// Bus

fn message(n: usize) -> Message {
    Message {
        key: format!("k{n}"),
        payload: n.to_string().into_bytes(),
        headers: vec![("traceparent".into(), "x".into())],
    }
}

async fn bus_adapters() -> Vec<(&'static str, Arc<dyn Bus>)> {
    vec![("memory", Arc::new(MemoryBus::new()))]
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
            let batch = group_b.next_batch(4).await.expect("batch");
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
            let batch = tokio::select! {
                batch = group_a1.next_batch(3) => batch,
                batch = group_a2.next_batch(3) => batch,
            }
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
        let batch = first.next_batch(5).await.expect("batch");
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
        let again = tokio::time::timeout(Duration::from_secs(5), second.next_batch(10))
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
        let _dropped = limiter.acquire(campaign, 10, 3).await.expect("acquire");
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let pairs: Vec<_> = kept.iter().map(|l| (campaign, *l)).collect();
            limiter.renew(&pairs).await.expect("renew");
        }
        assert_eq!(
            limiter.active(campaign).await.expect("active"),
            2,
            "{name}: only renewed leases survive"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Store

async fn store_adapters(dir: &tempfile::TempDir) -> Vec<(&'static str, Arc<dyn Store>)> {
    let path = dir.path().join("contract.db");
    let path = path.to_str().expect("utf-8 path").to_owned();
    let migrate_path = path.clone();
    tokio::task::spawn_blocking(move || sqlite::migrate(&migrate_path))
        .await
        .expect("join")
        .expect("migrate");
    vec![(
        "sqlite",
        Arc::new(SqliteStore::open(&path).await.expect("open")),
    )]
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
