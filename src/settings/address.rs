//! The addresses of the backends, each parsed from its setting by one rule: the store, the
//! limiter, the timeline and the bus.

use std::time::Duration;

use super::scylla_url::ScyllaUrl;
use super::{mask_url, BusKind, BusSettings};

/// The store `storage.url` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreAddress {
    /// `sqlite://PATH`: the embedded store's file.
    Sqlite { path: String },
    /// `postgres://...` or `postgresql://...`: the URL as given, credentials included.
    Postgres { url: String },
}

/// The limiter `limiter.url` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimiterAddress {
    /// `local`: leases counted in this process.
    Local,
    /// `redis://...` or `rediss://...`, as given.
    Redis { url: String },
}

/// Where finished attempts are kept, from `timeline.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimelineAddress {
    /// `store`: the store keeps them.
    Store,
    Scylla(ScyllaUrl),
}

/// The bus `bus.kind` and `bus.brokers` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusAddress {
    /// The in-process bus.
    Memory,
    /// A Kafka cluster at these bootstrap servers.
    Kafka { brokers: String },
    /// `bus.brokers = "mock"`: librdkafka's mock cluster, started in this process (so every
    /// role runs in it); Kafka's semantics without a Kafka, for trials, tests and benchmarks.
    MockKafka,
}

/// The `bus.brokers` value that starts an in-process mock cluster.
pub const MOCK_BROKERS: &str = "mock";

/// `bus.fetch_wait` against the mock cluster unless configured otherwise: its broker answers an
/// empty fetch only at the deadline, where Kafka answers as soon as a message arrives, so the
/// default 20 ms would add up to 20 ms to every hop, which no real cluster does.
pub(crate) const MOCK_FETCH_WAIT: Duration = Duration::from_millis(2);

impl StoreAddress {
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path".into());
            }
            return Ok(Self::Sqlite {
                path: path.to_owned(),
            });
        }
        // Host, database and credentials are checked when the store connects.
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres {
                url: url.to_owned(),
            });
        }
        Err(format!(
            "expected sqlite://PATH or postgres://..., got {:?}",
            mask_url(url)
        ))
    }
}

impl LimiterAddress {
    pub fn parse(url: &str) -> Result<Self, String> {
        if url == "local" {
            return Ok(Self::Local);
        }
        if url.starts_with("redis://") || url.starts_with("rediss://") {
            return Ok(Self::Redis {
                url: url.to_owned(),
            });
        }
        Err(format!(
            "expected local or redis://..., got {:?}",
            mask_url(url)
        ))
    }
}

impl TimelineAddress {
    pub fn parse(url: &str) -> Result<Self, String> {
        if url == "store" {
            return Ok(Self::Store);
        }
        ScyllaUrl::parse(url)
            .map(Self::Scylla)
            .map_err(|err| format!("expected `store` or a scylla:// URL: {err}"))
    }
}

impl BusSettings {
    pub fn address(&self) -> BusAddress {
        match self.kind {
            BusKind::Memory => BusAddress::Memory,
            BusKind::Kafka if self.brokers.trim() == MOCK_BROKERS => BusAddress::MockKafka,
            BusKind::Kafka => BusAddress::Kafka {
                brokers: self.brokers.clone(),
            },
        }
    }

    /// The `fetch.wait.max.ms` consumers use: `fetch_wait`, or against the mock cluster 2 ms
    /// when `fetch_wait` is left at its default.
    pub fn effective_fetch_wait(&self) -> Duration {
        if self.address() == BusAddress::MockKafka
            && self.fetch_wait == BusSettings::default().fetch_wait
        {
            MOCK_FETCH_WAIT
        } else {
            self.fetch_wait.0
        }
    }
}
