#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use outbound::domain::call::Call;
use outbound::domain::campaign::{Campaign, CampaignChanges, StatusAction, Transition};
use outbound::domain::ids::CampaignId;
use outbound::loadtest::client::{routes, ApiClient};
use outbound::ports::{NewCampaign, NewTarget, Store, StoreError};
use outbound::process::role::RoleName;
use outbound::runtime::Node;
use outbound::settings::{GoDuration, Settings};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Settings for a test: port 0, a fresh SQLite file, short mock calls, quick timers.
pub fn test_settings(dir: &std::path::Path) -> Settings {
    let mut settings = Settings::default();
    settings.http.bind = "127.0.0.1:0".into();
    settings.http.workers = 2;
    settings.storage.url = format!("sqlite://{}", dir.join("outbound.db").display());
    settings.telephony.mock.min_duration = GoDuration(Duration::ZERO);
    settings.telephony.mock.max_duration = GoDuration(Duration::from_millis(20));
    settings.telephony.mock.seed = Some(7);
    settings.scheduler.interval = GoDuration(Duration::from_millis(200));
    settings.retry.poll_interval = GoDuration(Duration::from_millis(200));
    settings.runtime.shutdown_grace = GoDuration(Duration::from_secs(5));
    settings.runtime.roles = vec![RoleName::All];
    // The tests run at any hour with fictional numbers; the calling rules have their own.
    settings.compliance.recipient_hours = Vec::new();
    settings
}

/// Where a test app keeps its state: one process's embedded backends, or the distributed
/// ones (a fresh PostgreSQL database, the test Redis, a Kafka mock cluster of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Embedded,
    Distributed,
}

/// Runs an `async fn test(mode: Mode)` once per mode, as two tests named after the modes.
#[macro_export]
macro_rules! in_both_modes {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$name($crate::helpers::Mode::Embedded).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn distributed() {
                super::$name($crate::helpers::Mode::Distributed).await
            }
        }
    };
}

/// Points `settings` at the distributed backends: PostgreSQL and Redis from
/// `scripts/test-services.sh`, and Kafka's mock cluster, which the app starts for itself
/// (`bus.brokers = "mock"`) with fresh topics.
pub async fn distributed(settings: &mut Settings) {
    let redis = std::env::var("OUTBOUND_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("OUTBOUND_TEST_REDIS_URL is not set: run the tests through scripts/test.sh")
    });
    settings.storage.url = crate::fixtures::fresh_postgres_database().await;
    settings.limiter.url = redis;
    settings.limiter.lease_ttl = GoDuration(Duration::from_secs(12));
    settings.bus.kind = outbound::settings::BusKind::Kafka;
    settings.bus.brokers = outbound::settings::MOCK_BROKERS.into();
    settings.bus.topic_prefix = format!("app-{}.", uuid::Uuid::now_v7().simple());
    settings.bus.partitions = 2;
    // The mock cluster's rebalances never settle below 4 s.
    settings.bus.session_timeout = GoDuration(Duration::from_secs(5));
    // The mock broker answers an idle fetch only at this deadline, so it paces every hop.
    settings.bus.fetch_wait = GoDuration(Duration::from_millis(5));
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    /// The API client the load test and the benchmarks use, for the campaign helpers.
    pub api: ApiClient,
    pub dir: tempfile::TempDir,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    counts: Option<std::sync::Arc<dyn outbound::ports::CallCounts>>,
    /// The app's ports, for tests that talk to them directly.
    pub ctx: outbound::context::AppContext,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        Self::spawn_in(Mode::Embedded, configure).await
    }

    pub async fn spawn_in(mode: Mode, configure: impl FnOnce(&mut Settings)) -> Self {
        outbound::telemetry::init_for_tests();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = test_settings(dir.path());
        if mode == Mode::Distributed {
            distributed(&mut settings).await;
        }
        configure(&mut settings);
        settings.validate().expect("valid test settings");
        let node = Node::build(settings, true).await.expect("node builds");
        let addr = node.api_addr().expect("api role enabled");
        let counts = node.context().provider_counts.clone();
        let ctx = node.context().clone();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(node.run(shutdown.clone()));
        let base = format!("http://{addr}");
        Self {
            addr,
            api: ApiClient::new(&base, 4).expect("api client"),
            base,
            // A connection idle as long as the server's keep-alive (5 s) can be closed by the
            // server just as the client sends on it (`IncompleteMessage`): the client lets
            // its idle connections go first.
            client: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(2))
                .build()
                .expect("http client"),
            dir,
            shutdown,
            handle: Some(handle),
            counts,
            ctx,
        }
    }

    /// The highest number of simultaneous calls this app's mock provider carried.
    pub fn provider_total_peak(&self) -> u64 {
        self.counts.as_ref().map_or(0, |counts| counts.total().peak)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Stops every role and asserts a clean exit.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            let result = tokio::time::timeout(Duration::from_secs(30), handle)
                .await
                .expect("shutdown within 30 s")
                .expect("supervisor task joins");
            result.expect("clean exit");
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request sent");
        decode(response).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .put(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request sent");
        decode(response).await
    }

    pub async fn post_empty(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .send()
            .await
            .expect("request sent");
        decode(response).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent");
        decode(response).await
    }

    pub async fn create_campaign(&self, body: Value) -> Value {
        self.api
            .expect(
                routes::CREATE,
                Method::POST,
                "/api/v1/campaigns",
                Some(&body),
                201,
            )
            .await
            .expect("campaign created")
    }

    pub async fn start(&self, id: &str) {
        self.api.start(id).await.expect("campaign started");
    }

    pub async fn stats(&self, id: &str) -> Value {
        let stats = self.api.stats(id).await.expect("stats read");
        assert_invariant(&stats);
        stats
    }

    pub async fn campaign(&self, id: &str) -> Value {
        self.api.campaign(id).await.expect("campaign read")
    }

    /// Waits until the campaign's stats satisfy `done` (the invariant checked at every read).
    pub async fn wait_stats(
        &self,
        id: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let started = Instant::now();
        loop {
            let stats = self.stats(id).await;
            if done(&stats) {
                return stats;
            }
            assert!(
                started.elapsed() < limit,
                "condition not met after {limit:?}: {stats}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the campaign completes by itself, checking the stats invariant on the way.
    pub async fn wait_completed(&self, id: &str, limit: Duration) -> Value {
        let started = Instant::now();
        loop {
            let stats = self.stats(id).await;
            let campaign = self.campaign(id).await;
            if campaign["status"] == "completed" {
                // Completion commits with the last counts: read them after seeing it.
                return self.stats(id).await;
            }
            assert!(
                started.elapsed() < limit,
                "campaign not completed after {limit:?}: {stats}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every call of a campaign, following the pages.
    pub async fn all_calls(&self, id: &str) -> Vec<Value> {
        all_calls(&self.client, &self.base, id).await
    }

    pub async fn metric(&self, name: &str, campaign_id: &str) -> Option<f64> {
        metric(&self.client, &self.base, name, campaign_id).await
    }
}

pub async fn decode(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body read");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}

pub async fn all_calls(client: &reqwest::Client, base: &str, id: &str) -> Vec<Value> {
    let mut calls = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/v1/campaigns/{id}/calls?limit=1000");
        if let Some(token) = &token {
            url.push_str(&format!("&page_token={token}"));
        }
        let response = client.get(url).send().await.expect("request sent");
        let (status, page) = decode(response).await;
        assert_eq!(status, 200, "{page}");
        calls.extend(page["calls"].as_array().cloned().unwrap_or_default());
        match page["next_page_token"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => return calls,
        }
    }
}

pub async fn metric(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    campaign_id: &str,
) -> Option<f64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let needle = format!("{name}{{campaign_id=\"{campaign_id}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&needle))
        .and_then(|value| value.trim().parse().ok())
}

pub fn assert_invariant(stats: &Value) {
    let n = |key: &str| {
        stats[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {stats}"))
    };
    assert_eq!(
        n("total_calls"),
        n("pending_calls")
            + n("in_progress_calls")
            + n("completed_calls")
            + n("failed_calls")
            + n("canceled_calls"),
        "stats invariant broken: {stats}"
    );
}

/// Counts calls by status and checks every call against its budget.
pub fn tally(calls: &[Value]) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for call in calls {
        let attempts = call["attempt_count"].as_u64().expect("attempt_count");
        let max = call["max_attempts"].as_u64().expect("max_attempts");
        assert!(attempts <= max, "attempt_count above max_attempts: {call}");
        *counts
            .entry(call["status"].as_str().expect("status").to_owned())
            .or_insert(0) += 1;
    }
    counts
}

pub fn targets(count: usize, offset: usize) -> Vec<Value> {
    (0..count)
        .map(|i| json!({"phone_number": format!("+1555{:07}", offset + i)}))
        .collect()
}

pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7())
}

pub fn data_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("outbound.db")
}

/// The store's writes without an audit entry, as a test makes them; the API always records one.
#[allow(async_fn_in_trait)]
pub trait Unaudited: Store {
    async fn create_campaign(
        &self,
        new: NewCampaign,
        now: DateTime<Utc>,
    ) -> Result<Campaign, StoreError> {
        self.create_campaign_audited(new, now, None).await
    }

    async fn update_campaign(
        &self,
        id: CampaignId,
        changes: CampaignChanges,
        now: DateTime<Utc>,
    ) -> Result<Campaign, StoreError> {
        self.update_campaign_audited(id, changes, now, None).await
    }

    async fn transition_campaign(
        &self,
        id: CampaignId,
        action: StatusAction,
        now: DateTime<Utc>,
    ) -> Result<Transition, StoreError> {
        self.transition_campaign_audited(id, action, now, None)
            .await
    }

    async fn enqueue_calls(
        &self,
        campaign_id: CampaignId,
        targets: Vec<NewTarget>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Call>, StoreError> {
        self.enqueue_calls_audited(campaign_id, targets, now, None)
            .await
    }
}

impl<S: Store + ?Sized> Unaudited for S {}
