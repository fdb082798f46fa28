//! The `ConcurrencyLimiter` port: never above a limit under races, the global cap, leases
//! that expire unless renewed.

use std::time::Duration;

use outbound::domain::ids::CampaignId;

use crate::fixtures::LimiterAdapter;

async fn never_exceeds_a_limit_under_races(adapter: LimiterAdapter) {
    let name = adapter.name();
    let limiter = adapter.open(1_000, Duration::from_secs(30)).await;
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

async fn enforces_the_global_cap_and_frees_on_release(adapter: LimiterAdapter) {
    let name = adapter.name();
    let limiter = adapter.open(5, Duration::from_secs(30)).await;
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

async fn leases_expire_unless_renewed(adapter: LimiterAdapter) {
    let name = adapter.name();
    let limiter = adapter.open(100, Duration::from_millis(300)).await;
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

/// Many waiters on one pacing bucket for a second: no more than the rate plus the burst get
/// through, the burst goes at once, and a refused waiter learns a positive wait.
async fn paces_events_at_the_rate_after_one_burst(adapter: LimiterAdapter) {
    let limiter = adapter.open(1_000, Duration::from_secs(30)).await;
    let key = format!("contract-{}", uuid::Uuid::now_v7());
    let (rate, burst) = (20.0, 3);
    let mut first = 0;
    for _ in 0..burst + 2 {
        match limiter.pace(&key, rate, burst).await.expect("pace") {
            None => first += 1,
            Some(wait) => assert!(wait > Duration::ZERO && wait <= Duration::from_millis(50)),
        }
    }
    assert_eq!(
        first,
        burst,
        "{}: the burst goes at once, then waits",
        adapter.name()
    );
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let limiter = limiter.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let mut admitted = Vec::new();
                while started.elapsed() < Duration::from_secs(1) {
                    match limiter.pace(&key, rate, burst).await.expect("pace") {
                        None => admitted.push(started.elapsed()),
                        Some(wait) => tokio::time::sleep(wait).await,
                    }
                }
                admitted
            })
        })
        .collect();
    let mut admitted = Vec::new();
    for task in tasks {
        admitted.extend(task.await.expect("task"));
    }
    let in_the_second = admitted
        .iter()
        .filter(|at| **at < Duration::from_secs(1))
        .count();
    // The burst was spent before the second began: at most one interval's worth of slack.
    assert!(
        in_the_second <= 20 + 1,
        "{}: {in_the_second} events in one second at 20/s",
        adapter.name()
    );
    assert!(in_the_second > 0, "{}: nothing admitted", adapter.name());
}

contract_suite!(
    LimiterAdapter {
        local => LimiterAdapter::Local,
        redis => LimiterAdapter::Redis,
    },
    [
        never_exceeds_a_limit_under_races,
        enforces_the_global_cap_and_frees_on_release,
        leases_expire_unless_renewed,
        paces_events_at_the_rate_after_one_burst,
    ]
);
