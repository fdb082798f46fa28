//! `Scheduler::tick` driven directly at fixed instants, against the embedded adapters with no
//! other role running: business hours decide at the instant given, the campaign and global
//! limits hold, and free global capacity is shared between campaigns.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeZone, Utc};
use outbound::context::AppContext;
use outbound::domain::business_hours::{BusinessHours, BusinessWindow, WallTime};
use outbound::domain::campaign::{RetryPolicy, StatusAction};
use outbound::domain::ids::CampaignId;
use outbound::domain::phone::PhoneNumber;
use outbound::ports::{NewCampaign, NewTarget};
use outbound::process::role::RoleName;
use outbound::roles::scheduler::Scheduler;

use crate::helpers::test_settings;
use crate::helpers::Unaudited;

/// Monday 2026-11-30 15:00 UTC, 10:00 in New York.
fn monday_morning_in_new_york() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 15, 0, 0)
        .single()
        .expect("valid instant")
}

/// Saturday 2026-11-28 15:00 UTC, 10:00 in New York.
fn saturday_morning_in_new_york() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 15, 0, 0)
        .single()
        .expect("valid instant")
}

/// Monday to Friday, 09:00 to 17:00.
fn weekdays() -> BusinessHours {
    BusinessHours::new(
        (1..=5)
            .map(|day| {
                BusinessWindow::new(
                    day,
                    WallTime::parse_start("09:00").expect("start"),
                    WallTime::parse_end("17:00").expect("end"),
                )
                .expect("window")
            })
            .collect(),
    )
}

/// A context with the embedded adapters and only the scheduler, on a fresh SQLite file.
async fn scheduler_context(dir: &tempfile::TempDir, global_concurrency: u32) -> AppContext {
    let mut settings = test_settings(dir.path());
    settings.throttle.global_concurrency = global_concurrency;
    AppContext::build(settings, &BTreeSet::from([RoleName::Scheduler]), true)
        .await
        .expect("context")
}

async fn started(ctx: &AppContext, targets: usize, limit: u32) -> CampaignId {
    let id = CampaignId::new();
    let targets = (0..targets)
        .map(|i| NewTarget {
            phone_number: PhoneNumber::parse(&format!("+1555444{i:04}")).expect("number"),
            metadata: None,
            time_zone: None,
        })
        .collect();
    let now = monday_morning_in_new_york();
    ctx.store
        .create_campaign(
            NewCampaign {
                id,
                name: format!("tick-{id}"),
                description: String::new(),
                time_zone: chrono_tz::America::New_York,
                max_concurrent_calls: limit,
                retry_policy: RetryPolicy::default(),
                business_hours: weekdays(),
                recipient_hours: BusinessHours::default(),
                restricted_periods: Vec::new(),
                recipient_limits: Vec::new(),
                voice: Default::default(),
                targets,
            },
            now,
        )
        .await
        .expect("create");
    ctx.store
        .transition_campaign(id, StatusAction::Start, now)
        .await
        .expect("start");
    id
}

async fn dialing(ctx: &AppContext, id: CampaignId) -> u64 {
    ctx.store
        .campaign_stats(id)
        .await
        .expect("stats")
        .expect("exists")
        .dialing_calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_outside_the_windows_dials_nothing_and_inside_fills_the_limit() {
    let dir = tempfile::tempdir().expect("dir");
    let ctx = scheduler_context(&dir, 1_000).await;
    let campaign = started(&ctx, 5, 3).await;
    let mut scheduler = Scheduler::new(ctx.clone());

    let closed = scheduler
        .tick(saturday_morning_in_new_york())
        .await
        .expect("tick");
    assert_eq!((closed.dispatched, closed.campaigns_closed), (0, 1));
    assert_eq!(dialing(&ctx, campaign).await, 0);

    let open = scheduler
        .tick(monday_morning_in_new_york())
        .await
        .expect("tick");
    assert_eq!((open.dispatched, open.campaigns_open), (3, 1));
    assert_eq!(dialing(&ctx, campaign).await, 3);
    let full = scheduler
        .tick(monday_morning_in_new_york())
        .await
        .expect("tick");
    assert_eq!(full.dispatched, 0, "the campaign's limit is taken");
    assert_eq!(full.claims, 0, "a campaign with no slot free is not asked");
    assert_eq!(ctx.store.dialing_now().await.expect("dialing"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_cap_is_shared_between_campaigns() {
    let dir = tempfile::tempdir().expect("dir");
    let ctx = scheduler_context(&dir, 4).await;
    let first = started(&ctx, 10, 10).await;
    let second = started(&ctx, 10, 10).await;
    let outcome = Scheduler::new(ctx.clone())
        .tick(monday_morning_in_new_york())
        .await
        .expect("tick");
    assert_eq!(outcome.dispatched, 4, "the global cap");
    assert_eq!(dialing(&ctx, first).await, 2, "an equal share");
    assert_eq!(dialing(&ctx, second).await, 2, "an equal share");
    assert_eq!(ctx.store.dialing_now().await.expect("dialing"), 4);
}
