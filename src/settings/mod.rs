//! Configuration: built-in defaults, then `config/outbound.toml` if present, then `--config
//! FILE`, then `OUTBOUND__SECTION__KEY` environment variables (figment). Every section rejects
//! unknown keys, and `validate` refuses impossible combinations, naming the key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod address;
pub mod scylla_url;
mod validate;

pub use self::address::{BusAddress, LimiterAddress, StoreAddress, TimelineAddress, MOCK_BROKERS};
use crate::domain::access::KeyPolicy;
use crate::domain::carrier::MachineOutcome;
use crate::domain::duration::{format_go_duration, parse_go_duration};
use crate::process::role::RoleName;

/// A duration written as Go does ("500ms", "2s", "1m30s").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoDuration(pub Duration);

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_go_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_go_duration(&text)
            .map(GoDuration)
            .map_err(serde::de::Error::custom)
    }
}

impl From<Duration> for GoDuration {
    fn from(value: Duration) -> Self {
        Self(value)
    }
}

/// A long duration: whole days ("400d"), or as Go writes it ("36h").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Days(pub Duration);

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

impl Serialize for Days {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let secs = self.0.as_secs();
        if self.0.subsec_nanos() == 0 && secs % DAY.as_secs() == 0 {
            serializer.serialize_str(&format!("{}d", secs / DAY.as_secs()))
        } else {
            serializer.serialize_str(&format_go_duration(self.0))
        }
    }
}

impl<'de> Deserialize<'de> for Days {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let trimmed = text.trim();
        if let Some(days) = trimmed.strip_suffix('d') {
            return days
                .parse::<u32>()
                .map(|days| Days(DAY * days))
                .map_err(|_| {
                    serde::de::Error::custom(format!("{text:?} is not a number of days"))
                });
        }
        parse_go_duration(trimmed)
            .map(Days)
            .map_err(serde::de::Error::custom)
    }
}

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

/// A librdkafka setting's value. Its `Debug` hides it: some are secrets (passwords, keys), and
/// a logged settings struct must not show them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Property(#[serde(deserialize_with = "text")] String);

impl Property {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn value(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"…\"")
    }
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
pub struct MockSettings {
    pub success_rate: f64,
    pub retryable_rate: f64,
    pub min_duration: GoDuration,
    pub max_duration: GoDuration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// A file the mock appends every call's start and end to (for tests across processes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
}

impl Default for MockSettings {
    fn default() -> Self {
        Self {
            success_rate: 0.8,
            retryable_rate: 0.7,
            min_duration: Duration::from_secs(1).into(),
            max_duration: Duration::from_secs(5).into(),
            seed: None,
            journal: None,
        }
    }
}

/// A secret value: `Debug` never shows it, so a logged settings struct cannot leak it.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(#[serde(deserialize_with = "text")] String);

/// A string setting that an environment variable may spell like a number: `OUTBOUND__*`
/// values are parsed, so a token of digits arrives as a number.
fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Spelled {
        Text(String),
        Unsigned(u64),
        Signed(i64),
        Float(f64),
        Bool(bool),
    }
    Ok(match Spelled::deserialize(deserializer)? {
        Spelled::Text(text) => text,
        Spelled::Unsigned(n) => n.to_string(),
        Spelled::Signed(n) => n.to_string(),
        Spelled::Float(n) => n.to_string(),
        Spelled::Bool(b) => b.to_string(),
    })
}

/// An E.164 number setting: `OUTBOUND__…=+15551234567` arrives parsed as the integer
/// 15551234567, which gets its `+` back.
fn e164<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Text(String),
        Digits(u64),
    }
    Ok(match Number::deserialize(deserializer)? {
        Number::Text(text) => text,
        Number::Digits(digits) => format!("+{digits}"),
    })
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// A Twilio-compatible carrier (telephony.md). `auth_token` is a secret: `outbound config`
/// masks it and nothing logs it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwilioSettings {
    pub api_base: String,
    pub account_sid: String,
    pub auth_token: Secret,
    #[serde(deserialize_with = "e164")]
    pub from: String,
    pub public_url: String,
    pub twiml: String,
    pub cps: f64,
    pub ring_timeout: GoDuration,
    pub request_timeout: GoDuration,
    /// `off`, `Enable` or `DetectMessageEnd`.
    pub machine_detection: String,
    pub machine_outcome: MachineOutcome,
    pub max_call_duration: GoDuration,
    /// How often refused credentials are checked again.
    pub probe_interval: GoDuration,
    /// No create request for an attempt is sent later than this after its begin.
    pub place_deadline: GoDuration,
    /// A placed call with no final status is looked up this long after its ring timeout,
    /// then at doubling intervals up to 30 min.
    pub lookup_after: GoDuration,
}

impl Default for TwilioSettings {
    fn default() -> Self {
        Self {
            api_base: "https://api.twilio.com".into(),
            account_sid: String::new(),
            auth_token: Secret::default(),
            from: String::new(),
            public_url: String::new(),
            twiml: "<Response><Say>Hello from outbound.</Say></Response>".into(),
            cps: 1.0,
            ring_timeout: Duration::from_secs(30).into(),
            request_timeout: Duration::from_secs(15).into(),
            machine_detection: "off".into(),
            machine_outcome: MachineOutcome::Completed,
            max_call_duration: Duration::from_secs(4 * 3600).into(),
            probe_interval: Duration::from_secs(30).into(),
            place_deadline: Duration::from_secs(60).into(),
            lookup_after: Duration::from_secs(120).into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelephonySettings {
    pub provider: String,
    pub mock: MockSettings,
    pub twilio: TwilioSettings,
}

impl TelephonySettings {
    pub fn is_twilio(&self) -> bool {
        self.provider == "twilio"
    }

    /// How long after it was placed a call whose final status never came is looked up: with
    /// the mock, once it is certainly over; at a carrier, `lookup_after` past its ring timeout
    /// (then again at doubling intervals while it is live there).
    pub fn longest_call(&self) -> Duration {
        if self.is_twilio() {
            self.twilio.ring_timeout.0 + self.twilio.lookup_after.0
        } else {
            self.mock.max_duration.0 + Duration::from_secs(1)
        }
    }
}

impl TelephonySettings {
    /// How long after a dialer began an attempt whose create answer it never recorded the
    /// carrier is asked about it: no create is sent past `place_deadline`, and the last one
    /// sent has its answer within `request_timeout`. With the mock, which keeps no record to
    /// ask, as long as any call lasts.
    pub fn unanswered_create(&self) -> Duration {
        if self.is_twilio() {
            self.twilio.place_deadline.0 + self.twilio.request_timeout.0
        } else {
            self.longest_call()
        }
    }
}

impl Default for TelephonySettings {
    fn default() -> Self {
        Self {
            provider: "mock".into(),
            mock: MockSettings::default(),
            twilio: TwilioSettings::default(),
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

/// A URL with its credentials replaced by `***`: the password of its user-info
/// (`scheme://user:password@host`) and the value of every query or key-value parameter that
/// names a password, a secret or a token (`?password=…`, `sslpassword=…`, `auth_token=…`).
pub fn mask_url(url: &str) -> String {
    let masked = match url.split_once("://") {
        Some((scheme, rest)) => {
            // The user-info ends the authority's first part: an '@' after a '/', '?' or '#'
            // belongs to the path or the query.
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..authority_end].rsplit_once('@') {
                Some((credentials, _)) => match credentials.split_once(':') {
                    Some((user, _)) => {
                        format!("{scheme}://{user}:***@{}", &rest[credentials.len() + 1..])
                    }
                    None => url.to_owned(),
                },
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    };
    mask_secret_parameters(&masked)
}

/// Masks the values of `name=value` parameters whose name holds a secret's word.
fn mask_secret_parameters(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('=') {
        let (before, after) = rest.split_at(at);
        let name_start = before
            .rfind(['?', '&', ';', ' ', '\t'])
            .map_or(0, |i| i + 1);
        let name = before[name_start..].to_ascii_lowercase();
        out.push_str(before);
        out.push('=');
        let value = &after[1..];
        let value_end = value
            .find(['&', ';', ' ', '\t', '#'])
            .unwrap_or(value.len());
        if ["password", "secret", "token"]
            .iter()
            .any(|word| name.contains(word))
            && value_end > 0
        {
            out.push_str("***");
        } else {
            out.push_str(&value[..value_end]);
        }
        rest = &value[value_end..];
    }
    out.push_str(rest);
    out
}

/// Formats a settings section as its serialized form after `mask` replaced its secrets.
fn debug_masked<T: Serialize + Clone>(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    value: &T,
    mask: impl FnOnce(&mut T),
) -> fmt::Result {
    let mut copy = value.clone();
    mask(&mut copy);
    match serde_json::to_value(&copy) {
        Ok(fields) => write!(f, "{name} {fields}"),
        Err(_) => write!(f, "{name} {{ .. }}"),
    }
}

impl fmt::Debug for StorageSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_masked(f, "StorageSettings", self, |s| s.url = mask_url(&s.url))
    }
}

impl fmt::Debug for LimiterSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_masked(f, "LimiterSettings", self, |s| s.url = mask_url(&s.url))
    }
}

impl fmt::Debug for TimelineSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_masked(f, "TimelineSettings", self, |s| s.url = mask_url(&s.url))
    }
}

impl fmt::Debug for OtelSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_masked(f, "OtelSettings", self, |s| {
            s.endpoint = s.endpoint.as_deref().map(mask_url)
        })
    }
}

impl fmt::Debug for TwilioSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_masked(f, "TwilioSettings", self, TwilioSettings::mask)
    }
}

impl TwilioSettings {
    /// Replaces the secrets: the auth token and any credentials in its URLs.
    fn mask(&mut self) {
        if !self.auth_token.expose().is_empty() {
            self.auth_token = Secret::new("***");
        }
        self.api_base = mask_url(&self.api_base);
        self.public_url = mask_url(&self.public_url);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]
    use std::collections::BTreeSet;

    use super::address::MOCK_FETCH_WAIT;
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_spec() {
        let settings = Settings::default();
        settings.validate().unwrap();
        assert_eq!(settings.http.bind, "127.0.0.1:8081");
        assert_eq!(settings.storage.url, "sqlite://data/outbound.db");
        assert_eq!(settings.campaign.default_max_concurrent_calls, 500);
        assert_eq!(settings.throttle.global_concurrency, 50_000);
        assert_eq!(
            settings.telephony.mock.min_duration.0,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn layers_apply_in_order_and_env_wins() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "custom.toml",
                "[http]\nbind = \"127.0.0.1:9000\"\n[telephony.mock]\nmin_duration = \"0s\"\nmax_duration = \"50ms\"\n",
            )?;
            jail.set_env("OUTBOUND__HTTP__BIND", "127.0.0.1:9001");
            let settings = Settings::load(Some(Path::new("custom.toml"))).expect("loads");
            assert_eq!(settings.http.bind, "127.0.0.1:9001");
            assert_eq!(
                settings.telephony.mock.max_duration.0,
                Duration::from_millis(50)
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[http]\nbindd = \"x\"\n")?;
            let err = Settings::load(Some(Path::new("bad.toml")))
                .unwrap_err()
                .to_string();
            assert!(err.contains("bindd"), "{err}");
            jail.create_file("bad2.toml", "[telephony.mock]\nsuccess_rate = 1.5\n")?;
            let err = Settings::load(Some(Path::new("bad2.toml")))
                .unwrap_err()
                .to_string();
            assert!(err.contains("telephony.mock.success_rate"), "{err}");
            jail.set_env("OUTBOUND__SCHEDULER__INTERVAL", "soon");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.to_lowercase().contains("scheduler.interval"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn memory_bus_refuses_a_role_subset() {
        let mut settings = Settings::default();
        settings.runtime.roles = vec![RoleName::Api];
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("bus.kind"), "{err}");
    }

    #[test]
    fn a_files_roles_stand_unless_the_flag_names_others() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "call.toml",
                "[runtime]\nroles = [\"call\"]\n[bus]\nkind = \"kafka\"\n\
                 [limiter]\nurl = \"redis://127.0.0.1/\"\n",
            )?;
            let file = Some(Path::new("call.toml"));
            let settings = Settings::load_for_roles(file, None).expect("loads");
            assert_eq!(settings.runtime.roles, vec![RoleName::Call]);
            let settings =
                Settings::load_for_roles(file, Some(vec![RoleName::Api, RoleName::Status]))
                    .expect("loads");
            assert_eq!(
                settings.runtime.roles,
                vec![RoleName::Api, RoleName::Status]
            );
            let settings = Settings::load_for_roles(None, None).expect("loads");
            assert_eq!(settings.runtime.roles, vec![RoleName::All]);
            Ok(())
        });
    }

    /// Dotted paths of every key of a serialized value; `null` (an unset optional key) counts.
    fn key_paths(value: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
        if let serde_json::Value::Object(map) = value {
            for (key, child) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                if child.is_object() {
                    key_paths(child, &path, out);
                } else {
                    out.insert(path);
                }
            }
        }
    }

    /// Dotted paths of the keys a TOML text sets or shows commented out (`# key = value`).
    fn documented_keys(text: &str) -> BTreeSet<String> {
        let mut section = String::new();
        let mut keys = BTreeSet::new();
        for line in text.lines().map(str::trim) {
            if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = header.to_owned();
                continue;
            }
            let assignment = line.strip_prefix('#').map_or(line, str::trim);
            let Some((key, _)) = assignment.split_once('=') else {
                continue;
            };
            let key = key.trim();
            if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                keys.insert(format!("{section}.{key}"));
            }
        }
        keys
    }

    #[test]
    fn default_toml_documents_every_key() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml"))
                .expect("config/default.toml exists");
        // Unset optional keys are not serialized: set each, so every key is expected. A new
        // optional key belongs here too.
        let mut every_key_set = Settings::default();
        every_key_set.telephony.mock.seed = Some(42);
        every_key_set.telephony.mock.journal = Some(String::new());
        every_key_set.log.format = Some(LogFormat::Json);
        every_key_set.otel.endpoint = Some(String::new());
        every_key_set.compliance.max_attempts_per_number = Some(NumberCapSettings {
            count: 3,
            per: "24h".into(),
        });
        every_key_set
            .compliance
            .zone_overrides
            .insert("1808".into(), vec!["Pacific/Honolulu".into()]);
        let mut expected = BTreeSet::new();
        key_paths(
            &serde_json::to_value(every_key_set).expect("serializes"),
            "",
            &mut expected,
        );
        let documented = documented_keys(&text);
        // A key holding a table (`max_attempts_per_number = {...}`) documents its fields.
        let within = |key: &String, table: &String| key.starts_with(&format!("{table}."));
        let missing: Vec<_> = expected
            .iter()
            .filter(|key| !documented.contains(*key) && !documented.iter().any(|t| within(key, t)))
            .collect();
        let unknown: Vec<_> = documented
            .iter()
            .filter(|key| !expected.contains(*key) && !expected.iter().any(|k| within(k, key)))
            .collect();
        assert!(
            missing.is_empty() && unknown.is_empty(),
            "config/default.toml lacks {missing:?} and names unknown {unknown:?}"
        );
    }

    #[test]
    fn default_toml_matches_defaults() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml"))
                .expect("config/default.toml exists");
        let parsed: Settings = Figment::from(Toml::string(&text))
            .extract()
            .expect("parses");
        assert_eq!(parsed, Settings::default());
    }

    #[test]
    fn the_distributed_example_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/distributed.toml");
        let mut settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file_exact(path))
            .extract()
            .expect("parses");
        settings.runtime.roles = vec![RoleName::Call];
        settings
            .validate()
            .expect("a role subset is valid with kafka");
        settings.bus.session_timeout = GoDuration(Duration::from_millis(500));
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("bus.session_timeout"), "{err}");
    }

    #[test]
    fn addresses_are_parsed_by_one_rule_each() {
        assert_eq!(
            StoreAddress::parse("sqlite://data/x.db"),
            Ok(StoreAddress::Sqlite {
                path: "data/x.db".into()
            })
        );
        assert!(matches!(
            StoreAddress::parse("postgresql://u:p@h/db"),
            Ok(StoreAddress::Postgres { .. })
        ));
        for bad in ["sqlite://", "mysql://h/db", ""] {
            assert!(StoreAddress::parse(bad).is_err(), "{bad:?}");
        }
        let refused = StoreAddress::parse("mysql://u:secret@h/db").unwrap_err();
        assert!(!refused.contains("secret"), "{refused}");
        assert_eq!(LimiterAddress::parse("local"), Ok(LimiterAddress::Local));
        assert!(matches!(
            LimiterAddress::parse("rediss://h:6380/0"),
            Ok(LimiterAddress::Redis { .. })
        ));
        assert!(LimiterAddress::parse("memcached://h").is_err());
        assert_eq!(TimelineAddress::parse("store"), Ok(TimelineAddress::Store));
        assert!(matches!(
            TimelineAddress::parse("scylla://h1:9042,h2/ks"),
            Ok(TimelineAddress::Scylla(_))
        ));
        assert!(TimelineAddress::parse("cassandra://h/ks").is_err());
    }

    #[test]
    fn the_mock_brokers_run_every_role_in_one_process_and_fetch_quickly() {
        let mut settings = Settings::default();
        settings.bus.kind = BusKind::Kafka;
        settings.bus.brokers = MOCK_BROKERS.into();
        settings.limiter.url = "redis://127.0.0.1/".into();
        assert_eq!(settings.bus.address(), BusAddress::MockKafka);
        assert_eq!(settings.bus.effective_fetch_wait(), MOCK_FETCH_WAIT);
        settings.validate().expect("all roles in one process");
        settings.runtime.roles = vec![RoleName::Call];
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("bus.brokers"), "{err}");
        settings.bus.fetch_wait = GoDuration(Duration::from_millis(7));
        assert_eq!(
            settings.bus.effective_fetch_wait(),
            Duration::from_millis(7)
        );
        settings.bus.brokers = "k1:9092,k2:9092".into();
        assert_eq!(
            settings.bus.address(),
            BusAddress::Kafka {
                brokers: "k1:9092,k2:9092".into()
            }
        );
        assert_eq!(
            settings.bus.effective_fetch_wait(),
            Duration::from_millis(7)
        );
    }

    #[test]
    fn credentials_in_every_url_setting_are_masked_in_debug_and_dump() {
        assert_eq!(
            mask_url("postgres://u:secret@h:5432/db?sslmode=require&password=other"),
            "postgres://u:***@h:5432/db?sslmode=require&password=***"
        );
        assert_eq!(
            mask_url("redis://:secret@h:6379/0"),
            "redis://:***@h:6379/0"
        );
        assert_eq!(
            mask_url("https://h/path@x?auth_token=secret#f"),
            "https://h/path@x?auth_token=***#f"
        );
        assert_eq!(
            mask_url("host=db user=u password=secret dbname=x"),
            "host=db user=u password=*** dbname=x"
        );
        assert_eq!(mask_url("scylla://h:9042/ks"), "scylla://h:9042/ks");
        let mut settings = Settings::default();
        settings.storage.url = "postgres://u:pgsecret@h/db?sslpassword=pgsslsecret".into();
        settings.limiter.url = "rediss://:redissecret@h:6380".into();
        settings.timeline.url = "scylla://u:scyllasecret@h:9042/ks".into();
        settings.otel.endpoint = Some("https://u:otelsecret@collector:4318".into());
        settings.telephony.twilio.api_base = "https://u:apisecret@carrier.example".into();
        settings.telephony.twilio.public_url = "https://u:publicsecret@dialer.example".into();
        settings.telephony.twilio.auth_token = Secret::new("tokensecret");
        let debug = format!("{settings:?}");
        let dump = settings.dump().unwrap();
        for secret in [
            "pgsecret",
            "pgsslsecret",
            "redissecret",
            "scyllasecret",
            "otelsecret",
            "apisecret",
            "publicsecret",
            "tokensecret",
        ] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
            assert!(!dump.contains(secret), "{secret} in {dump}");
        }
        assert!(debug.contains("postgres://u:***@h/db"), "{debug}");
        assert!(dump.contains("rediss://:***@h:6380"), "{dump}");
    }

    #[test]
    fn dump_masks_passwords() {
        assert_eq!(
            mask_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(mask_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    #[test]
    fn numbers_from_the_environment_stay_strings() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("OUTBOUND__TELEPHONY__TWILIO__FROM", "+15555550100");
            jail.set_env("OUTBOUND__TELEPHONY__TWILIO__AUTH_TOKEN", "12345");
            let settings: Settings = Settings::figment(None).extract()?;
            assert_eq!(settings.telephony.twilio.from, "+15555550100");
            assert_eq!(settings.telephony.twilio.auth_token.expose(), "12345");
            Ok(())
        });
    }

    #[test]
    fn kafka_properties_pass_through_with_their_secrets_masked() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "kafka.toml",
                "[bus]\nkind = \"kafka\"\nbrokers = \"b1:9093\"\n[bus.properties]\n\
                 \"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanisms\" = \"PLAIN\"\n\
                 \"sasl.username\" = \"svc\"\n\"sasl.password\" = \"hunter2\"\n\
                 \"socket.timeout.ms\" = 30000\n",
            )?;
            let settings = Settings::load(Some(Path::new("kafka.toml")))
                .map_err(|e| figment::Error::from(e.to_string()))?;
            let properties = &settings.bus.properties;
            assert_eq!(properties["sasl.password"].value(), "hunter2");
            assert_eq!(properties["socket.timeout.ms"].value(), "30000");
            let dump = settings
                .dump()
                .map_err(|e| figment::Error::from(e.to_string()))?;
            assert!(!dump.contains("hunter2"), "{dump}");
            assert!(dump.contains("\"sasl.password\" = \"***\""), "{dump}");
            assert!(dump.contains("\"sasl.username\" = \"svc\""), "{dump}");
            assert!(!format!("{settings:?}").contains("hunter2"));

            jail.create_file(
                "reserved.toml",
                "[bus.properties]\n\"group.id\" = \"mine\"\n",
            )?;
            let err = Settings::load(Some(Path::new("reserved.toml")))
                .expect_err("a reserved property is refused")
                .to_string();
            assert!(
                err.contains("bus.properties") && err.contains("group.id"),
                "{err}"
            );
            Ok(())
        });
        assert!(is_secret_property("ssl.key.password"));
        assert!(is_secret_property("sasl.oauthbearer.client.secret"));
        assert!(!is_secret_property("ssl.ca.location"));
    }

    #[test]
    fn auto_auth_waives_keys_only_on_a_loopback_bind_without_a_public_url() {
        let mut settings = Settings::default();
        assert_eq!(settings.auth.mode, AuthMode::Auto);
        for (ip, policy) in [
            ("127.0.0.1", KeyPolicy::UnlessLocal),
            ("127.0.0.53", KeyPolicy::UnlessLocal),
            ("::1", KeyPolicy::UnlessLocal),
            ("0.0.0.0", KeyPolicy::Always),
            ("::", KeyPolicy::Always),
            ("10.1.2.3", KeyPolicy::Always),
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(settings.key_policy(ip), policy, "{ip}");
        }
        let loopback: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        for url in [
            "https://dialer.example.com",
            "https://abc.trycloudflare.com/x",
            "http://10.0.0.5:8081",
            "https://u:p@dialer.example.com",
        ] {
            settings.telephony.twilio.public_url = url.into();
            assert_eq!(settings.key_policy(loopback), KeyPolicy::Always, "{url}");
        }
        // A carrier simulator on this host reaches the listener on loopback: nothing opens.
        for url in [
            "http://127.0.0.1:8081",
            "http://localhost:9000/",
            "http://[::1]:80",
        ] {
            settings.telephony.twilio.public_url = url.into();
            assert_eq!(
                settings.key_policy(loopback),
                KeyPolicy::UnlessLocal,
                "{url}"
            );
        }
        settings.telephony.twilio.public_url = String::new();
        settings.auth.mode = AuthMode::Keys;
        assert_eq!(settings.key_policy(loopback), KeyPolicy::Always);
        settings.auth.mode = AuthMode::Off;
        assert_eq!(
            settings.key_policy("0.0.0.0".parse().unwrap()),
            KeyPolicy::Never
        );
    }

    #[test]
    fn a_split_call_role_on_a_carrier_keeps_one_pace_and_rings_at_least_15_seconds() {
        let mut settings = Settings::default();
        settings.telephony.provider = "twilio".into();
        settings.telephony.twilio.auth_token = Secret::new("t");
        settings.telephony.twilio.account_sid = "AC0123456789abcdef0123456789abcdef".into();
        settings.telephony.twilio.from = "+15555550100".into();
        settings.telephony.twilio.public_url = "https://dialer.example.com".into();
        settings.bus.kind = BusKind::Kafka;
        settings.bus.brokers = "kafka-1:9092".into();
        settings
            .validate()
            .expect("every role in one process paces alone");
        settings.runtime.roles = vec![RoleName::Api, RoleName::Status];
        settings.validate().expect("no call role, no pace");
        settings.runtime.roles = vec![RoleName::Call];
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("limiter.url"), "{err}");
        settings.limiter.url = "redis://127.0.0.1/".into();
        settings.validate().expect("a shared limiter");
        settings.telephony.twilio.ring_timeout = Duration::from_secs(14).into();
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("telephony.twilio.ring_timeout"), "{err}");
        settings.telephony.twilio.ring_timeout = Duration::from_secs(15).into();
        settings.telephony.twilio.place_deadline = Duration::ZERO.into();
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("telephony.twilio.place_deadline"), "{err}");
    }

    #[test]
    fn the_carriers_auth_token_never_shows() {
        let mut settings = Settings::default();
        settings.telephony.provider = "twilio".into();
        settings.telephony.twilio.auth_token = Secret::new("s3cr3t-token");
        settings.telephony.twilio.account_sid = "AC0123456789abcdef0123456789abcdef".into();
        settings.telephony.twilio.from = "+15555550100".into();
        settings.telephony.twilio.public_url = "https://dialer.example.com".into();
        settings.validate().unwrap();
        let dump = settings.dump().unwrap();
        assert!(!dump.contains("s3cr3t"), "{dump}");
        assert!(dump.contains("auth_token = \"***\""), "{dump}");
        assert!(!format!("{settings:?}").contains("s3cr3t"));

        settings.telephony.twilio.auth_token = Secret::new(" ");
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("telephony.twilio.auth_token"), "{err}");
        settings.telephony.twilio.auth_token = Secret::new("t");
        for (key, bad) in [
            ("account_sid", "AC123"),
            ("from", "555-0100"),
            ("public_url", "dialer.example.com"),
        ] {
            let mut copy = settings.clone();
            match key {
                "account_sid" => copy.telephony.twilio.account_sid = bad.into(),
                "from" => copy.telephony.twilio.from = bad.into(),
                _ => copy.telephony.twilio.public_url = bad.into(),
            }
            let err = copy.validate().unwrap_err().to_string();
            assert!(err.contains(&format!("telephony.twilio.{key}")), "{err}");
        }
        let mut copy = settings.clone();
        copy.telephony.twilio.cps = 0.0;
        assert!(copy.validate().is_err());
        copy.telephony.provider = "nexmo".into();
        assert!(copy
            .validate()
            .unwrap_err()
            .to_string()
            .contains("mock, twilio"));
    }
}
