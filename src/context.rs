//! The one place that turns settings into adapters and hands them to the roles as ports.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::adapters::memory::{LocalLimiter, MemoryBus};
use crate::adapters::redis::RedisLimiter;
use crate::adapters::sqlite::{self, SqliteStore};
use crate::adapters::telephony::{MockConfig, MockProvider};
use crate::domain::ids::InstanceId;
use crate::ports::{Bus, ConcurrencyLimiter, Store, StoreError, TelephonyProvider};
use crate::runtime::health::Health;
use crate::runtime::role::RoleName;
use crate::settings::{sqlite_path, Settings};

#[derive(Clone)]
pub struct AppContext {
    pub settings: Arc<Settings>,
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub limiter: Arc<dyn ConcurrencyLimiter>,
    pub provider: Arc<dyn TelephonyProvider>,
    pub health: Health,
    /// This process, as the owner of the attempts it starts.
    pub instance: InstanceId,
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
}

/// Applies the store's pending migrations; returns the versions applied.
pub async fn migrate(settings: &Settings) -> Result<Vec<String>, ContextError> {
    let path = sqlite_path(&settings.storage.url)
        .ok_or_else(|| ContextError::UnsupportedStore(settings.storage.url.clone()))?
        .to_owned();
    let applied = tokio::task::spawn_blocking(move || sqlite::migrate(&path))
        .await
        .map_err(|err| StoreError::Internal(err.to_string()))??;
    Ok(applied)
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
        let path = sqlite_path(&settings.storage.url)
            .ok_or_else(|| ContextError::UnsupportedStore(settings.storage.url.clone()))?;
        let store = SqliteStore::open(path).await?;
        let mock = &settings.telephony.mock;
        let provider = Arc::new(MockProvider::new(MockConfig {
            success_rate: mock.success_rate,
            retryable_rate: mock.retryable_rate,
            min_duration: mock.min_duration.0,
            max_duration: mock.max_duration.0,
            seed: mock.seed,
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
        Ok(Self {
            store: Arc::new(store),
            bus: Arc::new(MemoryBus::new()),
            limiter,
            provider: provider.clone(),
            mock_provider: Some(provider),
            health: Health::new(roles.iter().copied()),
            instance: InstanceId::new(),
            settings: Arc::new(settings),
        })
    }
}
