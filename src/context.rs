//! The one place that turns settings into adapters and hands them to the roles as ports.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::adapters::kafka::{KafkaBus, KafkaBusConfig};
use crate::adapters::memory::{LocalLimiter, MemoryBus};
use crate::adapters::postgres::{self, PgStore};
use crate::adapters::redis::RedisLimiter;
use crate::adapters::sqlite::{self, SqliteStore};
use crate::adapters::telephony::{MockConfig, MockProvider};
use crate::domain::ids::InstanceId;
use crate::ports::{Bus, ConcurrencyLimiter, Store, StoreError, TelephonyProvider};
use crate::runtime::health::Health;
use crate::runtime::role::RoleName;
use crate::settings::{is_postgres_url, mask_password, sqlite_path, BusKind, Settings};

#[derive(Clone)]
pub struct AppContext {
    pub settings: Arc<Settings>,
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub limiter: Arc<dyn ConcurrencyLimiter>,
    pub provider: Arc<dyn TelephonyProvider>,
    pub health: Health,
    /// This process, as the owner of the attempts its scheduler claims.
    pub instance: InstanceId,
    /// This process's call role, as the owner of the attempts it adopts from a claimer: a
    /// separate identity, so that an attempt is adopted once even when the claimer and the
    /// dialer share a process and the dispatch is redelivered elsewhere.
    pub dialer: InstanceId,
    /// The mock provider itself when it is the configured one, for its call counters.
    pub mock_provider: Option<Arc<MockProvider>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("storage.url: {0}")]
    Store(#[from] StoreError),
    #[error("storage.url: unsupported store {0:?}")]
    UnsupportedStore(String),
    #[error(transparent)]
    Limiter(#[from] crate::ports::LimiterError),
    #[error("bus.brokers: {0}")]
    Bus(#[from] crate::ports::BusError),
}

/// Connections in the PostgreSQL store's pool, per process: enough for the API's workers and the
/// background roles to query at once, small enough for many processes to share one server.
const POSTGRES_POOL_SIZE: usize = 16;

/// Which store `storage.url` names.
enum StoreUrl<'a> {
    Sqlite(&'a str),
    Postgres(&'a str),
}

fn store_url(url: &str) -> Result<StoreUrl<'_>, ContextError> {
    if let Some(path) = sqlite_path(url) {
        return Ok(StoreUrl::Sqlite(path));
    }
    if is_postgres_url(url) {
        return Ok(StoreUrl::Postgres(url));
    }
    Err(ContextError::UnsupportedStore(mask_password(url)))
}

/// Applies the store's pending migrations; returns the versions applied.
pub async fn migrate(settings: &Settings) -> Result<Vec<String>, ContextError> {
    let applied = match store_url(&settings.storage.url)? {
        StoreUrl::Sqlite(path) => {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || sqlite::migrate(&path))
                .await
                .map_err(|err| StoreError::Internal(err.to_string()))??
        }
        StoreUrl::Postgres(url) => postgres::migrate(url).await?,
    };
    Ok(applied)
}

fn roles_label(roles: &BTreeSet<RoleName>) -> String {
    roles
        .iter()
        .map(|role| role.as_str())
        .collect::<Vec<_>>()
        .join("-")
}

impl AppContext {
    pub async fn build(
        settings: Settings,
        roles: &BTreeSet<RoleName>,
        run_migrations: bool,
    ) -> Result<Self, ContextError> {
        if run_migrations {
            let applied = migrate(&settings).await?;
            if !applied.is_empty() {
                tracing::info!(?applied, "applied migrations");
            }
        }
        let store: Arc<dyn Store> = match store_url(&settings.storage.url)? {
            StoreUrl::Sqlite(path) => Arc::new(SqliteStore::open(path).await?),
            StoreUrl::Postgres(url) => Arc::new(PgStore::connect(url, POSTGRES_POOL_SIZE).await?),
        };
        let mock = &settings.telephony.mock;
        let provider = Arc::new(MockProvider::new(MockConfig {
            success_rate: mock.success_rate,
            retryable_rate: mock.retryable_rate,
            min_duration: mock.min_duration.0,
            max_duration: mock.max_duration.0,
            seed: mock.seed,
            journal: mock.journal.as_ref().map(std::path::PathBuf::from),
        }));
        let limiter: Arc<dyn ConcurrencyLimiter> = if settings.limiter.url == "local" {
            Arc::new(LocalLimiter::new(
                settings.throttle.global_concurrency,
                settings.limiter.lease_ttl.0,
            ))
        } else {
            Arc::new(
                RedisLimiter::connect(
                    &settings.limiter.url,
                    settings.throttle.global_concurrency,
                    settings.limiter.lease_ttl.0,
                    "outbound:",
                )
                .await?,
            )
        };
        let bus: Arc<dyn Bus> = match settings.bus.kind {
            BusKind::Memory => Arc::new(MemoryBus::new()),
            BusKind::Kafka => Arc::new(
                KafkaBus::connect(KafkaBusConfig {
                    brokers: settings.bus.brokers.clone(),
                    topic_prefix: settings.bus.topic_prefix.clone(),
                    partitions: settings.bus.partitions,
                    replication: settings.bus.replication,
                    client_id: format!("outbound-{}", roles_label(roles)),
                    session_timeout: settings.bus.session_timeout.0,
                    extra: Vec::new(),
                })
                .await?,
            ),
        };
        Ok(Self {
            store,
            bus,
            limiter,
            provider: provider.clone(),
            mock_provider: Some(provider),
            health: Health::new(roles.iter().copied()),
            instance: InstanceId::new(),
            dialer: InstanceId::new(),
            settings: Arc::new(settings),
        })
    }
}
