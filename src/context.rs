//! The one place that turns settings into adapters and hands them to the roles as ports.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::adapters::http::HttpWebhookSender;
use crate::adapters::kafka::{KafkaBus, KafkaBusConfig};
use crate::adapters::memory::{LocalLimiter, MemoryBus};
use crate::adapters::postgres::{self, PgStore};
use crate::adapters::redis::RedisLimiter;
use crate::adapters::scylla::{self, ScyllaTimeline, ScyllaUrl};
use crate::adapters::sqlite::{self, SqliteStore};
use crate::adapters::telephony::{MockConfig, MockProvider};
use crate::adapters::twilio::{TwilioCallbacks, TwilioConfig, TwilioProvider};
use crate::domain::compliance::Compliance;
use crate::domain::ids::InstanceId;
use crate::ports::{
    Bus, CallCounts, CallbackVerifier, ConcurrencyLimiter, Store, StoreError, TelephonyProvider,
    Timeline, TimelineError, WebhookSender,
};
use crate::process::health::Health;
use crate::process::role::RoleName;
use crate::settings::{
    BusAddress, LimiterAddress, Settings, SettingsError, StoreAddress, TimelineAddress,
};

#[derive(Clone)]
pub struct AppContext {
    pub settings: Arc<Settings>,
    /// The calling rules of `settings.compliance`, as the store applies them too.
    pub compliance: Compliance,
    pub store: Arc<dyn Store>,
    /// The store as its own timeline: the finished attempts it still holds.
    store_timeline: Arc<dyn Timeline>,
    /// A timeline apart from the store (Scylla), when configured and this process's roles use
    /// it: the status role exports finished attempts to it and readers merge the two.
    pub separate_timeline: Option<Arc<dyn Timeline>>,
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
    /// The provider's own count of the calls it carries, when it keeps one (the mock).
    pub provider_counts: Option<Arc<dyn CallCounts>>,
    /// Reads a real carrier's status callbacks; `None` with the mock, which has none.
    pub callbacks: Option<Arc<dyn CallbackVerifier>>,
    /// The store's clock, as this process reads it at each heartbeat.
    pub clock: Arc<StoreClock>,
    /// Posts webhook deliveries (status role) and screens endpoints' addresses (api role).
    pub webhooks: Arc<dyn WebhookSender>,
}

/// The store's clock as a process reads it: calling hours, restricted periods and cap windows
/// are judged on it (telephony.md "One clock for rules"), so a host whose own clock is off
/// dials no earlier and no more often. Until a heartbeat has read it, this host's clock.
#[derive(Debug)]
pub struct StoreClock {
    /// Milliseconds the store's clock is ahead of this host's.
    offset_ms: std::sync::atomic::AtomicI64,
    /// The shortest round trip of a reading so far: a reading much slower (a busy pool) says
    /// less about when the store read its clock, and is not taken.
    best_rtt_ms: std::sync::atomic::AtomicI64,
}

impl Default for StoreClock {
    fn default() -> Self {
        Self {
            offset_ms: std::sync::atomic::AtomicI64::new(0),
            best_rtt_ms: std::sync::atomic::AtomicI64::new(i64::MAX),
        }
    }
}

impl StoreClock {
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now()
            + chrono::TimeDelta::milliseconds(
                self.offset_ms.load(std::sync::atomic::Ordering::Relaxed),
            )
    }

    /// A reading of the store's clock, `store`, by a request sent at `sent` and answered at
    /// `answered` (this host's clock): the store read it about halfway.
    pub fn observe(&self, sent: DateTime<Utc>, store: DateTime<Utc>, answered: DateTime<Utc>) {
        use std::sync::atomic::Ordering::Relaxed;
        let rtt = (answered - sent).num_milliseconds().max(0);
        let best = self.best_rtt_ms.fetch_min(rtt, Relaxed).min(rtt);
        if rtt > best.saturating_mul(2).saturating_add(50) {
            return;
        }
        let midway = sent + (answered - sent) / 2;
        self.offset_ms
            .store((store - midway).num_milliseconds(), Relaxed);
    }

    /// An instant on the store's clock, as this host's clock reads it.
    pub fn to_host(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        at - chrono::TimeDelta::milliseconds(
            self.offset_ms.load(std::sync::atomic::Ordering::Relaxed),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("storage.url")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Limiter(#[from] crate::ports::LimiterError),
    #[error("bus.brokers")]
    Bus(#[from] crate::ports::BusError),
    #[error("timeline.url")]
    Timeline(#[from] TimelineError),
    #[error("timeline.url")]
    TimelineUrl(#[from] scylla::UrlError),
    #[error("telephony.twilio")]
    Provider(#[from] crate::ports::ProviderError),
    #[error("webhooks: cannot build the HTTP client")]
    Webhooks(#[from] reqwest::Error),
}

/// Connections in the PostgreSQL store's pool, per process: enough for the API's workers and the
/// background roles to query at once, small enough for many processes to share one server.
const POSTGRES_POOL_SIZE: usize = 16;

/// Applies the store's pending migrations; returns the versions applied.
pub async fn migrate(settings: &Settings) -> Result<Vec<String>, ContextError> {
    migrate_for(settings, true).await
}

/// The configured store alone, its pending migrations applied first: what the commands that
/// work on the store directly (`outbound keys`) need.
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, ContextError> {
    migrate_for(settings, false).await?;
    Ok(connect_store(settings).await?.0)
}

async fn connect_store(
    settings: &Settings,
) -> Result<(Arc<dyn Store>, Arc<dyn Timeline>), ContextError> {
    Ok(match settings.store_address()? {
        StoreAddress::Sqlite { path } => {
            let store = Arc::new(
                SqliteStore::open(&path)
                    .await?
                    .with_compliance(compliance(settings)?),
            );
            (store.clone(), store)
        }
        StoreAddress::Postgres { url } => {
            let store = Arc::new(
                PgStore::connect(&url, POSTGRES_POOL_SIZE)
                    .await?
                    .with_compliance(compliance(settings)?),
            );
            (store.clone(), store)
        }
    })
}

fn compliance(settings: &Settings) -> Result<Compliance, ContextError> {
    Ok(settings.compliance.policy()?)
}

/// The store's migrations, and the timeline's schema when `with_timeline`.
async fn migrate_for(
    settings: &Settings,
    with_timeline: bool,
) -> Result<Vec<String>, ContextError> {
    let applied = match settings.store_address()? {
        StoreAddress::Sqlite { path } => {
            tokio::task::spawn_blocking(move || sqlite::migrate(&path))
                .await
                .map_err(|err| StoreError::Internal(err.to_string()))??
        }
        StoreAddress::Postgres { url } => postgres::migrate(&url).await?,
    };
    let mut applied = applied;
    if let Some(url) = scylla_url(settings)?.filter(|_| with_timeline) {
        let files = scylla::migrate(&url).await?;
        applied.extend(files.into_iter().map(|file| format!("cql/{file}")));
    }
    Ok(applied)
}

/// The Scylla cluster `timeline.url` names, or `None` when the store keeps the timeline.
fn scylla_url(settings: &Settings) -> Result<Option<ScyllaUrl>, ContextError> {
    Ok(match settings.timeline_address()? {
        TimelineAddress::Store => None,
        TimelineAddress::Scylla(url) => Some(url),
    })
}

fn roles_label(roles: &BTreeSet<RoleName>) -> String {
    roles
        .iter()
        .map(|role| role.as_str())
        .collect::<Vec<_>>()
        .join("-")
}

impl AppContext {
    /// Where finished attempts are read: the separate timeline when there is one, else the
    /// store.
    pub fn timeline(&self) -> &Arc<dyn Timeline> {
        self.separate_timeline
            .as_ref()
            .unwrap_or(&self.store_timeline)
    }

    pub async fn build(
        settings: Settings,
        roles: &BTreeSet<RoleName>,
        run_migrations: bool,
    ) -> Result<Self, ContextError> {
        // Only the api (reads) and status (exporter) roles use a separate timeline; the others
        // neither connect to it nor depend on it being up.
        let uses_timeline = roles.contains(&RoleName::Api) || roles.contains(&RoleName::Status);
        if run_migrations {
            let applied = migrate_for(&settings, uses_timeline).await?;
            if !applied.is_empty() {
                tracing::info!(?applied, "applied migrations");
            }
        }
        let (store, store_timeline) = connect_store(&settings).await?;
        let separate_timeline: Option<Arc<dyn Timeline>> = match scylla_url(&settings)? {
            Some(url) if uses_timeline => Some(Arc::new(ScyllaTimeline::connect(&url).await?)),
            _ => None,
        };
        let limiter: Arc<dyn ConcurrencyLimiter> = match settings.limiter_address()? {
            LimiterAddress::Local => Arc::new(LocalLimiter::new(
                settings.throttle.global_concurrency,
                settings.limiter.lease_ttl.0,
            )),
            LimiterAddress::Redis { url } => Arc::new(
                RedisLimiter::connect(
                    &url,
                    Some(settings.limiter.ca_file.as_str())
                        .filter(|path| !path.is_empty())
                        .map(std::path::Path::new),
                    settings.throttle.global_concurrency,
                    settings.limiter.lease_ttl.0,
                    "outbound:",
                )
                .await?,
            ),
        };
        let (provider, provider_counts, callbacks) = telephony(&settings, roles, limiter.clone())?;
        let kafka = |brokers: String| KafkaBusConfig {
            brokers,
            topic_prefix: settings.bus.topic_prefix.clone(),
            partitions: settings.bus.partitions,
            replication: settings.bus.replication,
            client_id: format!("outbound-{}", roles_label(roles)),
            session_timeout: settings.bus.session_timeout.0,
            fetch_wait: settings.bus.effective_fetch_wait(),
            delivery_timeout: settings.bus.delivery_timeout.0,
            extra: settings
                .bus
                .properties
                .iter()
                .map(|(key, value)| (key.clone(), value.value().to_owned()))
                .collect(),
        };
        let bus: Arc<dyn Bus> = match settings.bus.address() {
            BusAddress::Memory => Arc::new(MemoryBus::new()),
            BusAddress::Kafka { brokers } => Arc::new(KafkaBus::connect(kafka(brokers)).await?),
            BusAddress::MockKafka => {
                Arc::new(KafkaBus::connect_to_mock(kafka(String::new())).await?)
            }
        };
        let webhooks = HttpWebhookSender::new(
            settings.webhooks.timeout.0,
            settings.webhooks.allow_http,
            settings.webhooks.allow_private_networks,
        )?;
        Ok(Self {
            webhooks: Arc::new(webhooks),
            compliance: compliance(&settings)?,
            store,
            store_timeline,
            separate_timeline,
            bus,
            limiter,
            provider,
            provider_counts,
            callbacks,
            health: Health::new(roles.iter().copied()),
            instance: InstanceId::new(),
            dialer: InstanceId::new(),
            clock: Arc::new(StoreClock::default()),
            settings: Arc::new(settings),
        })
    }
}

type Telephony = (
    Arc<dyn TelephonyProvider>,
    Option<Arc<dyn CallCounts>>,
    Option<Arc<dyn CallbackVerifier>>,
);

/// The provider `telephony.provider` names, with what goes with it.
fn telephony(
    settings: &Settings,
    roles: &BTreeSet<RoleName>,
    pacer: Arc<dyn ConcurrencyLimiter>,
) -> Result<Telephony, ContextError> {
    if !settings.telephony.is_twilio() {
        let mock = &settings.telephony.mock;
        let provider = Arc::new(MockProvider::new(MockConfig {
            success_rate: mock.success_rate,
            retryable_rate: mock.retryable_rate,
            min_duration: mock.min_duration.0,
            max_duration: mock.max_duration.0,
            seed: mock.seed,
            journal: mock.journal.as_ref().map(std::path::PathBuf::from),
        }));
        return Ok((provider.clone(), Some(provider), None));
    }
    let twilio = &settings.telephony.twilio;
    let provider = TwilioProvider::new(
        TwilioConfig {
            api_base: twilio.api_base.clone(),
            account_sid: twilio.account_sid.clone(),
            auth_token: twilio.auth_token.clone(),
            from: twilio.from.clone(),
            public_url: twilio.public_url.clone(),
            twiml: twilio.twiml.clone(),
            cps: twilio.cps,
            ring_timeout: twilio.ring_timeout.0,
            request_timeout: twilio.request_timeout.0,
            machine_detection: twilio.machine_detection,
            machine_outcome: twilio.machine_outcome,
            probe_interval: twilio.probe_interval.0,
            max_call_duration: twilio.max_call_duration.0,
            place_deadline: twilio.place_deadline.0,
        },
        pacer,
    )?;
    // Only a dialing process needs to know early that the credentials are refused.
    if roles.contains(&RoleName::Call) {
        provider.probe_in_background();
    }
    let callbacks = TwilioCallbacks::new(
        twilio.auth_token.expose(),
        &twilio.public_url,
        twilio.machine_outcome,
    );
    Ok((Arc::new(provider), None, Some(Arc::new(callbacks))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_clock_is_read_halfway_through_the_heartbeat() {
        let clock = StoreClock::default();
        let before = Utc::now();
        assert!((clock.now() - before).num_milliseconds().abs() < 1_000);
        // A heartbeat sent at 10:00:00.000 and answered at 10:00:00.200, whose store read
        // 10:01:00.100: the store runs a minute ahead of this host.
        let sent = before;
        let store = sent + chrono::TimeDelta::milliseconds(60_100);
        let answered = sent + chrono::TimeDelta::milliseconds(200);
        clock.observe(sent, store, answered);
        let ahead = clock.now() - Utc::now();
        assert!((ahead.num_milliseconds() - 60_000).abs() < 1_000, "{ahead}");
        // And behind, by as much.
        clock.observe(sent, sent - chrono::TimeDelta::seconds(60), sent);
        let behind = clock.now() - Utc::now();
        assert!(
            (behind.num_milliseconds() + 60_000).abs() < 1_000,
            "{behind}"
        );
    }
}
