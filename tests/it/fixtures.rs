//! What the tests open and create, in one place: the adapters of each port on fresh state (a
//! new SQLite file, a new PostgreSQL database, a new Redis prefix, a new mock Kafka cluster),
//! and the campaigns the store tests start from.
//!
//! PostgreSQL and Redis come from `scripts/test-services.sh` (`OUTBOUND_TEST_DATABASE_URL`,
//! `OUTBOUND_TEST_REDIS_URL`); without them the tests fail rather than pass having checked
//! only one adapter.

use std::sync::Arc;
use std::time::Duration;

use crate::helpers::Unaudited;
use chrono::Utc;
use outbound::adapters::kafka::{KafkaBus, KafkaBusConfig};
use outbound::adapters::memory::{LocalLimiter, MemoryBus};
use outbound::adapters::postgres::{self, PgStore};
use outbound::adapters::redis::RedisLimiter;
use outbound::adapters::sqlite::{self, SqliteStore};
use outbound::domain::business_hours::BusinessHours;
use outbound::domain::call::AttemptOutcome;
use outbound::domain::campaign::{RetryPolicy, StatusAction};
use outbound::domain::compliance::Compliance;
use outbound::domain::ids::{CallId, CampaignId, InstanceId};
use outbound::domain::phone::PhoneNumber;
use outbound::ports::{AttemptReport, Bus, ConcurrencyLimiter, NewCampaign, NewTarget, Store};
use rdkafka::mocking::MockCluster;

/// Connections per PostgreSQL store in the tests: several, so concurrent tasks of one test
/// really run on separate connections.
const TEST_POOL_SIZE: usize = 8;

/// A new, migrated SQLite file under `dir`; returns its path.
pub async fn fresh_sqlite_file(dir: &tempfile::TempDir) -> String {
    let path = dir
        .path()
        .join(format!("test-{}.db", uuid::Uuid::now_v7().simple()));
    let path = path.to_str().expect("utf-8 path").to_owned();
    let migrate_path = path.clone();
    tokio::task::spawn_blocking(move || sqlite::migrate(&migrate_path))
        .await
        .expect("join")
        .expect("migrate");
    path
}

pub async fn sqlite_store(dir: &tempfile::TempDir) -> Arc<SqliteStore> {
    let path = fresh_sqlite_file(dir).await;
    Arc::new(SqliteStore::open(&path).await.expect("open"))
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

pub async fn postgres_store() -> Arc<PgStore> {
    Arc::new(
        PgStore::connect(&fresh_postgres_database().await, TEST_POOL_SIZE)
            .await
            .expect("connect to the test database"),
    )
}

/// The adapters of the `Store` port.
#[derive(Debug, Clone, Copy)]
pub enum StoreAdapter {
    Sqlite,
    Postgres,
}

impl StoreAdapter {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    /// A store over fresh state (a file under `dir`, or a new database).
    pub async fn open(self, dir: &tempfile::TempDir) -> Arc<dyn Store> {
        match self {
            Self::Sqlite => sqlite_store(dir).await,
            Self::Postgres => postgres_store().await,
        }
    }

    /// `count` stores over one fresh state, as that many processes would open it.
    pub async fn replicas(self, dir: &tempfile::TempDir, count: usize) -> Vec<Arc<dyn Store>> {
        self.replicas_applying(dir, count, Compliance::default())
            .await
    }

    /// `count` stores over one fresh state applying `compliance`.
    pub async fn replicas_applying(
        self,
        dir: &tempfile::TempDir,
        count: usize,
        compliance: Compliance,
    ) -> Vec<Arc<dyn Store>> {
        let mut stores: Vec<Arc<dyn Store>> = Vec::with_capacity(count);
        match self {
            Self::Sqlite => {
                let path = fresh_sqlite_file(dir).await;
                for _ in 0..count {
                    stores.push(Arc::new(
                        SqliteStore::open(&path)
                            .await
                            .expect("open")
                            .with_compliance(compliance.clone()),
                    ));
                }
            }
            Self::Postgres => {
                let url = fresh_postgres_database().await;
                for _ in 0..count {
                    stores.push(Arc::new(
                        PgStore::connect(&url, TEST_POOL_SIZE)
                            .await
                            .expect("connect to the test database")
                            .with_compliance(compliance.clone()),
                    ));
                }
            }
        }
        stores
    }
}

/// The adapters of the `ConcurrencyLimiter` port.
#[derive(Debug, Clone, Copy)]
pub enum LimiterAdapter {
    Local,
    Redis,
}

impl LimiterAdapter {
    pub fn name(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Redis => "redis",
        }
    }

    /// A limiter with a global cap of `global` and leases living `ttl`, on fresh state.
    pub async fn open(self, global: u32, ttl: Duration) -> Arc<dyn ConcurrencyLimiter> {
        match self {
            Self::Local => Arc::new(LocalLimiter::new(global, ttl)),
            Self::Redis => {
                let url = std::env::var("OUTBOUND_TEST_REDIS_URL").unwrap_or_else(|_| {
                    panic!(
                        "OUTBOUND_TEST_REDIS_URL is not set: run the tests through \
                         scripts/test.sh, which starts Redis"
                    )
                });
                // A fresh prefix keeps tests running in parallel on one server apart.
                let prefix = format!("outbound-test:{}:", uuid::Uuid::now_v7());
                Arc::new(
                    RedisLimiter::connect(&url, None, global, ttl, &prefix)
                        .await
                        .expect("connect to the test redis"),
                )
            }
        }
    }
}

/// A Kafka bus on a mock cluster of its own (librdkafka's, brokers on loopback: no external
/// Kafka), its topics created with `partitions` partitions under a fresh prefix. The mock
/// cluster does not implement topic creation, so the topics are made here and `connect` finds
/// them. The cluster is leaked: it must outlive the test body and the consumers, which close on
/// background threads after it.
pub async fn kafka_bus(partitions: i32) -> KafkaBus {
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

/// The adapters of the `Bus` port. Kafka's topics have one partition here: the contract tests
/// check the order of messages with different keys, which Kafka keeps within a partition only
/// (the port promises order per key; `kafka_members_split_partitions` covers several).
#[derive(Debug, Clone, Copy)]
pub enum BusAdapter {
    Memory,
    Kafka,
}

impl BusAdapter {
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Kafka => "kafka",
        }
    }

    pub async fn open(self) -> Arc<dyn Bus> {
        match self {
            Self::Memory => Arc::new(MemoryBus::new()),
            Self::Kafka => Arc::new(kafka_bus(1).await),
        }
    }
}

/// Registers and starts a campaign of `targets` numbers (two attempts each, no hours limit, the
/// highest concurrency limit).
pub async fn started_campaign(store: &dyn Store, targets: usize) -> CampaignId {
    let numbers = (0..targets).map(|i| format!("+1555{i:07}")).collect();
    start_campaign(store, "contract", numbers, 1000, 2).await
}

/// Registers a campaign of `numbers` without hours limits, and starts it.
pub async fn start_campaign(
    store: &dyn Store,
    prefix: &str,
    numbers: Vec<String>,
    max_concurrent_calls: u32,
    max_attempts: u32,
) -> CampaignId {
    let id = CampaignId::new();
    let targets = numbers
        .iter()
        .map(|number| NewTarget {
            phone_number: PhoneNumber::parse(number).expect("number"),
            metadata: None,
            time_zone: None,
        })
        .collect();
    store
        .create_campaign(
            NewCampaign {
                id,
                name: format!("{prefix}-{id}"),
                description: String::new(),
                time_zone: chrono_tz::UTC,
                max_concurrent_calls,
                retry_policy: RetryPolicy {
                    max_attempts,
                    ..RetryPolicy::default()
                },
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
    store
        .transition_campaign(id, StatusAction::Start, Utc::now())
        .await
        .expect("start");
    id
}

/// A started campaign of five calls: three with a finished first attempt, two still dialing.
pub async fn campaign_with_finished_attempts(store: &dyn Store) -> (CampaignId, Vec<CallId>) {
    let numbers = (0..5).map(|i| format!("+1555888{i:04}")).collect();
    let id = start_campaign(store, "export", numbers, 10, 3).await;
    let claimed = store
        .claim_calls(id, 5, InstanceId::new(), 50_000, Utc::now())
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 5);
    // Three end (one retryable failure, two answered); two stay dialing.
    let reports: Vec<AttemptReport> = claimed[..3]
        .iter()
        .enumerate()
        .map(|(i, call)| AttemptReport {
            call_id: call.call_id,
            campaign_id: id,
            attempt: call.attempt,
            outcome: if i == 0 {
                AttemptOutcome::Failed {
                    error: "busy".into(),
                    retryable: true,
                }
            } else {
                AttemptOutcome::Answered
            },
            ended_at: Utc::now(),
            retry_at: Utc::now() + chrono::Duration::hours(1),
            expected_owner: None,
            carrier: None,
            attempt_started_at: None,
        })
        .collect();
    store
        .record_attempts(&reports, Utc::now())
        .await
        .expect("record");
    (id, claimed.iter().map(|c| c.call_id).collect())
}
