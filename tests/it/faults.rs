//! Roles under a failing bus, driven step by step on the embedded adapters: a dispatch that
//! cannot be published spends no attempt, and a call process keeps what it could not publish
//! until the bus is back. The bus is the real in-process one behind a switch that makes
//! publishing fail, as a broker outage would.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use outbound::context::AppContext;
use outbound::domain::business_hours::BusinessHours;
use outbound::domain::call::CallStatus;
use outbound::domain::campaign::{RetryPolicy, StatusAction};
use outbound::domain::ids::CampaignId;
use outbound::domain::phone::PhoneNumber;
use outbound::domain::stats::CampaignStats;
use outbound::ports::{
    Bus, BusError, CallFilter, Message, NewCampaign, NewTarget, Subscription, Topic,
};
use outbound::process::role::RoleName;
use outbound::roles::call::CallWorker;
use outbound::roles::consume::{self, Consumer};
use outbound::roles::messages::{self, RetryMessage};
use outbound::roles::scheduler::Scheduler;
use outbound::settings::GoDuration;
use tokio_util::sync::CancellationToken;

use crate::helpers::test_settings;
use crate::helpers::Unaudited;

/// The in-process bus, whose publishing fails while `down` is set.
struct SwitchedBus {
    inner: Arc<dyn Bus>,
    down: AtomicBool,
}

#[async_trait]
impl Bus for SwitchedBus {
    fn crosses_processes(&self) -> bool {
        self.inner.crosses_processes()
    }

    async fn publish(&self, topic: Topic, messages: Vec<Message>) -> Result<(), BusError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(BusError::Unavailable("broker down (test)".into()));
        }
        self.inner.publish(topic, messages).await
    }

    async fn dead_letter(
        &self,
        topic: Topic,
        message: Message,
        reason: &str,
    ) -> Result<(), BusError> {
        self.inner.dead_letter(topic, message, reason).await
    }

    async fn subscribe(
        &self,
        topic: Topic,
        group: &str,
    ) -> Result<Box<dyn Subscription>, BusError> {
        self.inner.subscribe(topic, group).await
    }
}

/// A context with the given roles, whose bus can be switched off.
async fn switched_context(
    dir: &tempfile::TempDir,
    roles: &[RoleName],
) -> (AppContext, Arc<SwitchedBus>) {
    let mut settings = test_settings(dir.path());
    // Calls that outlast the test step, so they are in flight when the bus goes down.
    settings.telephony.mock.min_duration = GoDuration(Duration::from_millis(50));
    settings.telephony.mock.max_duration = GoDuration(Duration::from_millis(50));
    let roles: BTreeSet<RoleName> = roles.iter().copied().collect();
    let mut ctx = AppContext::build(settings, &roles, true)
        .await
        .expect("context");
    let bus = Arc::new(SwitchedBus {
        inner: ctx.bus.clone(),
        down: AtomicBool::new(false),
    });
    ctx.bus = bus.clone();
    (ctx, bus)
}

async fn stats(ctx: &AppContext, campaign: CampaignId) -> CampaignStats {
    ctx.store
        .campaign_stats(campaign)
        .await
        .expect("stats")
        .expect("exists")
}

async fn started(ctx: &AppContext, targets: usize) -> CampaignId {
    let id = CampaignId::new();
    let targets = (0..targets)
        .map(|i| NewTarget {
            phone_number: PhoneNumber::parse(&format!("+1555333{i:04}")).expect("number"),
            metadata: None,
            time_zone: None,
        })
        .collect();
    ctx.store
        .create_campaign(
            NewCampaign {
                id,
                name: format!("faults-{id}"),
                description: String::new(),
                time_zone: chrono_tz::UTC,
                max_concurrent_calls: 10,
                retry_policy: RetryPolicy::default(),
                business_hours: BusinessHours::default(),
                recipient_hours: BusinessHours::default(),
                restricted_periods: Vec::new(),
                recipient_limits: Vec::new(),
                voice: Default::default(),
                targets,
            },
            Utc::now(),
        )
        .await
        .expect("create");
    ctx.store
        .transition_campaign(id, StatusAction::Start, Utc::now())
        .await
        .expect("start");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_that_cannot_be_published_spends_no_attempt() {
    let dir = tempfile::tempdir().expect("dir");
    let (ctx, bus) = switched_context(&dir, &[RoleName::Scheduler]).await;
    let campaign = started(&ctx, 4).await;
    let mut scheduler = Scheduler::new(ctx.clone());

    bus.down.store(true, Ordering::SeqCst);
    assert!(
        scheduler.tick(Utc::now()).await.is_err(),
        "the failed publish is reported"
    );
    let stats = stats(&ctx, campaign).await;
    assert_eq!(
        (
            stats.pending_calls(),
            stats.dialing_calls,
            stats.attempts_total
        ),
        (4, 0, 0),
        "handed back unspent: {stats:?}"
    );
    let calls = ctx
        .store
        .list_calls(campaign, &CallFilter::default(), None, 10)
        .await
        .expect("calls");
    assert!(calls
        .iter()
        .all(|c| c.status == CallStatus::Queued && c.attempt_count == 0));
    assert_eq!(ctx.store.dialing_now().await.expect("dialing"), 0);

    // The bus comes back: the same calls go out, as first attempts.
    bus.down.store(false, Ordering::SeqCst);
    let outcome = scheduler.tick(Utc::now()).await.expect("tick");
    assert_eq!(outcome.dispatched, 4);
    let calls = ctx
        .store
        .list_calls(campaign, &CallFilter::default(), None, 10)
        .await
        .expect("calls");
    assert!(calls.iter().all(|c| c.attempt_count == 1), "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_process_keeps_outcomes_it_cannot_publish_until_the_bus_is_back() {
    let dir = tempfile::tempdir().expect("dir");
    let (ctx, bus) = switched_context(&dir, &[RoleName::Scheduler, RoleName::Call]).await;
    let campaign = started(&ctx, 3).await;
    let mut dispatches = ctx
        .bus
        .subscribe(Topic::Dispatch, "call")
        .await
        .expect("subscribe");
    let outcome = Scheduler::new(ctx.clone())
        .tick(Utc::now())
        .await
        .expect("tick");
    assert_eq!(outcome.dispatched, 3);
    let batch = dispatches.next_batch(10).await.expect("dispatches");
    assert_eq!(batch.len(), 3);

    let mut worker = CallWorker::new(ctx.clone());
    let done = worker.process_batch(batch).await.expect("begin and dial");
    assert!(done.is_empty(), "dialing, not acknowledged yet");
    assert_eq!(worker.in_flight(), 3);

    // The calls end while the broker is down: their outcomes cannot be published.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ended = worker.take_reports();
    assert_eq!(ended.len(), 3, "the provider reported every call");
    bus.down.store(true, Ordering::SeqCst);
    assert!(worker.report(ended).await.is_err());
    assert_eq!(worker.in_flight(), 3, "nothing dropped");
    assert!(worker.report(Vec::new()).await.is_err(), "still down");

    // Back up: every outcome goes out once, and every dispatch may be acknowledged.
    bus.down.store(false, Ordering::SeqCst);
    let tokens = worker.report(Vec::new()).await.expect("published");
    assert_eq!(tokens.len(), 3);
    assert_eq!(worker.in_flight(), 0);
    let stats = stats(&ctx, campaign).await;
    assert_eq!(stats.attempts_total, 3, "one attempt each: {stats:?}");
}

/// A carrier's final callback while the broker is down: the api process records it itself,
/// since the carrier will not deliver it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_callback_is_recorded_while_the_bus_is_down() {
    use outbound::adapters::twilio::{callback_url, signature};
    use outbound::domain::campaign::PolicyTerms;
    use outbound::ports::{DialRequest, HeldAttempt};
    use outbound::roles::api::ApiRole;

    let dir = tempfile::tempdir().expect("dir");
    let port = crate::process::free_port();
    let mut settings = test_settings(dir.path());
    settings.http.bind = format!("127.0.0.1:{port}");
    settings.telephony.provider = outbound::settings::ProviderName::Twilio;
    let twilio = &mut settings.telephony.twilio;
    twilio.account_sid = "AC0123456789abcdef0123456789abcdef".into();
    twilio.auth_token = outbound::settings::Secret::new("token");
    twilio.from = "+15555550100".into();
    twilio.public_url = format!("http://127.0.0.1:{port}");
    let roles: BTreeSet<RoleName> = [RoleName::Api].into_iter().collect();
    let mut ctx = AppContext::build(settings, &roles, true)
        .await
        .expect("context");
    let bus = Arc::new(SwitchedBus {
        inner: ctx.bus.clone(),
        down: AtomicBool::new(true),
    });
    ctx.bus = bus.clone();
    let api = ApiRole::build(ctx.clone()).expect("api");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(api.run(shutdown.clone()));

    // One attempt placed at the carrier.
    let campaign = started(&ctx, 1).await;
    let claimer = ctx.instance;
    let claimed = ctx
        .store
        .claim_calls(campaign, 1, claimer, 50_000, Utc::now())
        .await
        .expect("claim");
    let call = &claimed[0];
    let held = HeldAttempt {
        key: outbound::ports::AttemptKey {
            campaign_id: campaign,
            call_id: call.call_id,
            attempt: call.attempt,
        },
        holder: Some(claimer),
        began_at: Some(call.started_at),
    };
    ctx.store
        .begin_attempts(&[held], ctx.dialer, Utc::now())
        .await
        .expect("begin");
    let request = DialRequest {
        call_id: call.call_id,
        campaign_id: campaign,
        attempt: call.attempt,
        phone_number: call.phone_number.clone(),
        policy: PolicyTerms {
            base_delay_ms: 1_000,
            max_delay_ms: 10_000,
            jitter: 0.0,
        },
        voice: Default::default(),
        started_at: Some(call.started_at),
    };
    let url = callback_url(&format!("http://127.0.0.1:{port}"), &request);
    let params: Vec<(String, String)> = [("CallSid", "CA42"), ("CallStatus", "completed")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let signed = signature::sign("token", &url, &params);
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", signed)
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 204);
    let stats = stats(&ctx, campaign).await;
    assert_eq!(
        stats.completed_calls, 1,
        "recorded despite the bus: {stats:?}"
    );
    assert_eq!(stats.dialing_calls, 0, "its slot is free: {stats:?}");
    shutdown.cancel();
    let _ = server.await;
}

/// A role on the shared consume loop that remembers what it was handed and when it ticked.
struct Recording {
    seen: Arc<std::sync::Mutex<Vec<RetryMessage>>>,
    ticks: Arc<std::sync::atomic::AtomicUsize>,
    next: tokio::time::Instant,
}

impl Consumer for Recording {
    type Message = RetryMessage;
    const ROLE: RoleName = RoleName::Retry;
    const TOPIC: Topic = Topic::Retry;
    const GROUP: &'static str = "recording";
    const BATCH: usize = 16;

    async fn handle(
        &mut self,
        messages: Vec<RetryMessage>,
        _shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        self.seen.lock().unwrap().extend(messages);
        Ok(())
    }

    fn next_tick(&self) -> Option<tokio::time::Instant> {
        Some(self.next)
    }

    async fn tick(&mut self) {
        self.ticks.fetch_add(1, Ordering::SeqCst);
        self.next = tokio::time::Instant::now() + Duration::from_secs(3600);
    }
}

#[tokio::test]
async fn the_consume_loop_hands_over_messages_dead_letters_poison_and_runs_timers() {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = AppContext::build(test_settings(dir.path()), &BTreeSet::new(), true)
        .await
        .expect("context");
    let bus = Arc::new(outbound::adapters::memory::MemoryBus::new());
    ctx.bus = bus.clone();
    let subscription = bus.subscribe(Topic::Retry, "recording").await.unwrap();
    let retry = |campaign_id| {
        messages::encode(
            "k".into(),
            &RetryMessage {
                v: messages::VERSION,
                campaign_id,
                due_at: Utc::now(),
            },
        )
    };
    let poison = Message {
        key: "k".into(),
        payload: b"not json".to_vec(),
        headers: Vec::new(),
    };
    let (first, second) = (CampaignId::new(), CampaignId::new());
    bus.publish(Topic::Retry, vec![retry(first), poison, retry(second)])
        .await
        .unwrap();
    let role = Recording {
        seen: Arc::default(),
        ticks: Arc::default(),
        next: tokio::time::Instant::now(),
    };
    let (seen, ticks) = (role.seen.clone(), role.ticks.clone());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
        async move { consume::run(role, &ctx, subscription, shutdown).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while (seen.lock().unwrap().len() < 2 || ticks.load(Ordering::SeqCst) < 1)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();
    let seen: Vec<CampaignId> = seen.lock().unwrap().iter().map(|m| m.campaign_id).collect();
    assert_eq!(seen, vec![first, second]);
    assert_eq!(ticks.load(Ordering::SeqCst), 1, "the timer ran once");
    let dead = bus.dead_letters();
    assert_eq!(dead.len(), 1, "the poison message is dead-lettered");
    assert_eq!(dead[0].0, Topic::Retry);
    assert_eq!(dead[0].1.payload, b"not json".to_vec());
}
