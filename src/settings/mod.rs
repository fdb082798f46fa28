//! Configuration: built-in defaults, then `config/outbound.toml` if present, then `--config
//! FILE`, then `OUTBOUND__SECTION__KEY` environment variables (figment). Every section rejects
//! unknown keys, and `validate` refuses impossible combinations, naming the key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

mod address;
mod masking;
pub mod scylla_url;
mod telephony;
mod validate;
mod values;

pub use self::address::{BusAddress, LimiterAddress, StoreAddress, TimelineAddress, MOCK_BROKERS};
pub use self::masking::mask_url;
pub use self::telephony::{MockSettings, ProviderName, TelephonySettings, TwilioSettings};
use self::values::DAY;
pub use self::values::{Days, GoDuration, Property, Secret};
use crate::domain::access::KeyPolicy;
use crate::process::role::RoleName;

/// The audit log's upkeep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Entries older than this are removed; at least a day.
    pub retention: Days,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            retention: Days(DAY * 400),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    pub bind: String,
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// Threads serving HTTP; 0 means one per core.
    pub workers: usize,
    /// Where a process without the api role serves `/healthz`, `/readyz` and `/metrics`.
    pub admin_bind: String,
    /// An idle connection is closed after this long.
    pub keep_alive: GoDuration,
    /// A request's head (line and headers) must arrive within this, or it gets 408.
    pub request_timeout: GoDuration,
    /// A request's body must arrive within this, or it gets 408.
    pub body_timeout: GoDuration,
    /// Requests with bodies over 1 MiB handled at once; more wait their turn.
    pub max_large_bodies: usize,
    /// Event streams one key may hold open at once.
    pub max_streams_per_key: usize,
    /// Event streams the process holds open at once, all callers.
    pub max_streams: usize,
    /// HTTPS on the API and admin listeners when both are set.
    pub tls: TlsSettings,
}

/// A certificate chain and its private key, PEM files; both empty: plain HTTP.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    pub cert: String,
    pub key: String,
}

impl TlsSettings {
    pub fn enabled(&self) -> bool {
        !self.cert.is_empty() || !self.key.is_empty()
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8081".into(),
            body_limit_bytes: 64 * 1024 * 1024,
            workers: 0,
            admin_bind: "127.0.0.1:9091".into(),
            keep_alive: Duration::from_secs(5).into(),
            request_timeout: Duration::from_secs(5).into(),
            body_timeout: Duration::from_secs(60).into(),
            max_large_bodies: 2,
            max_streams_per_key: 8,
            max_streams: 256,
            tls: TlsSettings::default(),
        }
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    pub url: String,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://data/outbound.db".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusKind {
    Memory,
    Kafka,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusSettings {
    pub kind: BusKind,
    pub brokers: String,
    /// Prefix of every topic and consumer group, so deployments can share a cluster.
    pub topic_prefix: String,
    /// Partitions of each topic created at start: the most consumers a role's group can use.
    pub partitions: i32,
    pub replication: i32,
    /// A consumer silent this long leaves its group and its partitions move on.
    pub session_timeout: GoDuration,
    /// How long a fetch with nothing to return waits at the broker (`fetch.wait.max.ms`).
    /// Kafka answers as soon as a message arrives, so this only paces idle polling; brokers
    /// that answer only at the deadline (librdkafka's mock cluster) add it to every hop.
    pub fetch_wait: GoDuration,
    /// How long a message is tried before its publish fails (`message.timeout.ms`). A role
    /// whose publish failed keeps the message and publishes it again, so this bounds how long
    /// one attempt waits on a broker that does not answer, not whether the message arrives.
    pub delivery_timeout: GoDuration,
    /// librdkafka settings passed through unchanged (`security.protocol`, `sasl.mechanisms`,
    /// `sasl.username`, `sasl.password`, `ssl.ca.location`, …): what managed Kafka needs.
    /// Secret values are masked by `outbound config`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, Property>,
}

/// Whether a librdkafka setting holds a secret: `outbound config` shows `***` instead.
pub fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "jaas", "token", ".pem", "credentials"]
        .iter()
        .any(|word| key.contains(word))
}

/// librdkafka settings the engine sets itself, for its delivery guarantees.
pub const RESERVED_PROPERTIES: [&str; 8] = [
    "bootstrap.servers",
    "message.timeout.ms",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "acks",
    "auto.offset.reset",
];

impl Default for BusSettings {
    fn default() -> Self {
        Self {
            kind: BusKind::Memory,
            brokers: "localhost:9092".into(),
            topic_prefix: "outbound.".into(),
            partitions: 12,
            replication: 1,
            session_timeout: Duration::from_secs(10).into(),
            fetch_wait: Duration::from_millis(20).into(),
            delivery_timeout: Duration::from_secs(30).into(),
            properties: BTreeMap::new(),
        }
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimiterSettings {
    pub url: String,
    /// PEM file of the certificate authority a `rediss://` server's certificate is checked
    /// against; empty: the system's roots.
    pub ca_file: String,
    /// A limiter lease not renewed for this long is dropped. Calls' concurrency slots are
    /// not leases: the store counts them.
    pub lease_ttl: GoDuration,
}

impl Default for LimiterSettings {
    fn default() -> Self {
        Self {
            url: "local".into(),
            ca_file: String::new(),
            lease_ttl: Duration::from_secs(30).into(),
        }
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimelineSettings {
    pub url: String,
    /// Attempts the status role copies from the store to a separate timeline per round.
    pub export_batch: usize,
    /// How often the exporter looks for finished attempts when the last round found none.
    pub export_interval: GoDuration,
}

impl Default for TimelineSettings {
    fn default() -> Self {
        Self {
            url: "store".into(),
            export_batch: 1_000,
            export_interval: Duration::from_millis(500).into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CampaignSettings {
    pub default_max_concurrent_calls: u32,
}

impl Default for CampaignSettings {
    fn default() -> Self {
        Self {
            default_max_concurrent_calls: 500,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleSettings {
    pub global_concurrency: u32,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            global_concurrency: 50_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerSettings {
    /// Safety-net rescan; starts, triggers and freed capacity wake the scheduler at once.
    pub interval: GoDuration,
    /// Most calls claimed for one campaign in one step.
    pub batch_size: u32,
    /// How often this process proves it is alive, so others can tell its attempts are live.
    pub heartbeat_interval: GoDuration,
    /// A dialing attempt whose owner has not heartbeated for this long is recorded as lost
    /// and retried per the campaign's policy.
    pub orphan_after: GoDuration,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1).into(),
            batch_size: 1_000,
            heartbeat_interval: Duration::from_secs(1).into(),
            orphan_after: Duration::from_secs(10).into(),
        }
    }
}

/// Deliveries to the operator's endpoints (spec/webhooks.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// A try that has not had a 2xx by then failed.
    pub timeout: GoDuration,
    /// The waits between the automatic tries after a failed one; after the last, `failed`.
    pub retry_schedule: Vec<GoDuration>,
    /// Tries at once per endpoint per process.
    pub max_in_flight_per_endpoint: usize,
    /// Endpoints may be plain `http` URLs.
    pub allow_http: bool,
    /// Endpoints may be (and resolve to) loopback, private, shared, link-local or metadata
    /// addresses.
    pub allow_private_networks: bool,
    /// Delivered deliveries are kept this long.
    pub retention: Days,
    /// How often an endpoint with nothing due looks again.
    pub poll_interval: GoDuration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        let schedule = crate::domain::webhook::RetrySchedule::default();
        Self {
            timeout: Duration::from_secs(10).into(),
            retry_schedule: schedule.0.into_iter().map(GoDuration).collect(),
            max_in_flight_per_endpoint: 16,
            allow_http: false,
            allow_private_networks: false,
            retention: Days(DAY * 7),
            poll_interval: Duration::from_millis(200).into(),
        }
    }
}

impl WebhookSettings {
    pub fn schedule(&self) -> crate::domain::webhook::RetrySchedule {
        crate::domain::webhook::RetrySchedule(self.retry_schedule.iter().map(|d| d.0).collect())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// Safety-net rescan for due retries.
    pub poll_interval: GoDuration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1).into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSettings {
    pub roles: Vec<RoleName>,
    /// How long shutdown waits for dialing calls to end before exiting anyway.
    pub shutdown_grace: GoDuration,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            roles: vec![RoleName::All],
            shutdown_grace: Duration::from_secs(30).into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `pretty` on a terminal, `json` otherwise, unless set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<LogFormat>,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: None,
            level: "info".into(),
        }
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtelSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub service_name: String,
}

impl Default for OtelSettings {
    fn default() -> Self {
        Self {
            endpoint: None,
            service_name: "outbound".into(),
        }
    }
}

/// The calling rules' deployment-wide settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComplianceSettings {
    /// A campaign's recipient hours when it gives none: windows read in each called party's
    /// time zone. The default is the federal window, 08:00-21:00 every day.
    pub recipient_hours: Vec<crate::domain::business_hours::BusinessWindow>,
    /// Whether the rules of a +1 number's state (by area code) apply.
    pub state_rules: bool,
    /// Attempts to one number across every campaign, e.g. `{count = 3, per = "24h"}`.
    pub max_attempts_per_number: Option<NumberCapSettings>,
    /// Number-to-zone entries replacing the built-in map's: digits of the country code and
    /// leading digits (an optional `+`), to IANA zones.
    pub zone_overrides: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberCapSettings {
    pub count: u32,
    /// From "1h" to "30d".
    pub per: String,
}

impl Default for ComplianceSettings {
    fn default() -> Self {
        Self {
            recipient_hours: crate::domain::compliance::default_recipient_hours()
                .windows()
                .to_vec(),
            state_rules: true,
            max_attempts_per_number: None,
            zone_overrides: std::collections::BTreeMap::new(),
        }
    }
}

impl ComplianceSettings {
    /// The calling rules these settings make, or the key of the first that is wrong.
    pub fn policy(&self) -> Result<crate::domain::compliance::Compliance, SettingsError> {
        use crate::domain::compliance::{caps, zones::ZoneMap, Compliance, FrequencyCap};
        let cap = self
            .max_attempts_per_number
            .as_ref()
            .map(|cap| {
                let per = caps::parse_window(&cap.per).map_err(|err| {
                    invalid(
                        "compliance.max_attempts_per_number.per",
                        format!("{:?} {err}", cap.per),
                    )
                })?;
                FrequencyCap::new(cap.count, per)
                    .map_err(|err| invalid("compliance.max_attempts_per_number", err))
            })
            .transpose()?;
        let zones = if self.zone_overrides.is_empty() {
            None
        } else {
            let overrides = self
                .zone_overrides
                .iter()
                .map(|(prefix, zones)| (prefix.as_str(), zones.as_slice()));
            Some(
                ZoneMap::builtin()
                    .with_overrides(overrides)
                    .map_err(|err| invalid("compliance.zone_overrides", err))?,
            )
        };
        Ok(Compliance::new(self.state_rules, zones, cap))
    }

    pub fn recipient_hours(&self) -> crate::domain::business_hours::BusinessHours {
        crate::domain::business_hours::BusinessHours::new(self.recipient_hours.clone())
    }
}

/// Whether the API asks for keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// No key for requests made on this host to a loopback listener; `keys` for any other
    /// (see `Settings::key_policy`).
    Auto,
    Keys,
    Off,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    pub mode: AuthMode,
    /// Requests per second per key, and the burst allowed.
    pub rate_limit: u32,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            mode: AuthMode::Auto,
            rate_limit: 1000,
        }
    }
}

impl Settings {
    /// Whether a public URL is configured that names a host other than this one: a carrier
    /// (or anyone) elsewhere reaches the listener through it. A loopback URL (a carrier
    /// simulator on this host) opens nothing.
    fn public_url_reaches_out(&self) -> bool {
        let url = self.telephony.twilio.public_url.trim();
        if url.is_empty() {
            return false;
        }
        let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
        let authority = after_scheme
            .split(['/', '?', '#'])
            .next()
            .unwrap_or_default();
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        !crate::domain::access::is_loopback_host(host)
    }

    /// When requests on a listener bound to `bind` need a key. `auto` waives them only for
    /// requests from this host to a loopback listener that nothing announces to the outside:
    /// a configured public URL means a tunnel or a proxy reaches it, whatever it is bound to.
    pub fn key_policy(&self, bind: std::net::IpAddr) -> KeyPolicy {
        match self.auth.mode {
            AuthMode::Keys => KeyPolicy::Always,
            AuthMode::Off => KeyPolicy::Never,
            AuthMode::Auto if !bind.is_loopback() => KeyPolicy::Always,
            AuthMode::Auto if self.public_url_reaches_out() => KeyPolicy::Always,
            AuthMode::Auto => KeyPolicy::UnlessLocal,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub http: HttpSettings,
    pub auth: AuthSettings,
    pub audit: AuditSettings,
    pub compliance: ComplianceSettings,
    pub storage: StorageSettings,
    pub bus: BusSettings,
    pub limiter: LimiterSettings,
    pub timeline: TimelineSettings,
    pub telephony: TelephonySettings,
    pub campaign: CampaignSettings,
    pub throttle: ThrottleSettings,
    pub scheduler: SchedulerSettings,
    pub retry: RetrySettings,
    pub webhooks: WebhookSettings,
    pub runtime: RuntimeSettings,
    pub log: LogSettings,
    pub otel: OtelSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("invalid configuration: {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl fmt::Display) -> SettingsError {
    SettingsError::Invalid {
        key,
        message: message.to_string(),
    }
}

impl Settings {
    /// The figment layers of the spec, with `file` as `--config`.
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file("config/outbound.toml"));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment.merge(Env::prefixed("OUTBOUND__").split("__"))
    }

    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        let settings: Settings = Self::figment(file).extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Loads the layers, then lets `roles` (the `--roles` flag, when given) replace
    /// `runtime.roles`, then validates: a file's roles stand unless the flag names others.
    pub fn load_for_roles(
        file: Option<&Path>,
        roles: Option<Vec<RoleName>>,
    ) -> Result<Self, SettingsError> {
        let mut settings: Settings = Self::figment(file).extract().map_err(Box::new)?;
        if let Some(roles) = roles {
            settings.runtime.roles = roles;
        }
        settings.validate()?;
        Ok(settings)
    }

    pub fn store_address(&self) -> Result<StoreAddress, SettingsError> {
        StoreAddress::parse(&self.storage.url).map_err(|message| invalid("storage.url", message))
    }

    pub fn limiter_address(&self) -> Result<LimiterAddress, SettingsError> {
        LimiterAddress::parse(&self.limiter.url).map_err(|message| invalid("limiter.url", message))
    }

    pub fn timeline_address(&self) -> Result<TimelineAddress, SettingsError> {
        TimelineAddress::parse(&self.timeline.url)
            .map_err(|message| invalid("timeline.url", message))
    }

    /// The effective configuration as TOML, with secrets masked: connection URLs' passwords and
    /// the carrier's auth token.
    pub fn dump(&self) -> Result<String, toml::ser::Error> {
        let mut copy = self.clone();
        copy.telephony.twilio.mask();
        copy.storage.url = mask_url(&copy.storage.url);
        for (key, value) in copy.bus.properties.iter_mut() {
            if is_secret_property(key) {
                *value = Property::new("***");
            }
        }
        copy.limiter.url = mask_url(&copy.limiter.url);
        copy.timeline.url = mask_url(&copy.timeline.url);
        copy.otel.endpoint = copy.otel.endpoint.as_deref().map(mask_url);
        toml::to_string_pretty(&copy)
    }
}

#[cfg(test)]
mod tests;
