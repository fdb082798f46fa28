//! `[telephony]`: which provider places the calls, and the settings of each.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::values::{e164, GoDuration, Secret};
use crate::domain::carrier::{MachineDetection, MachineOutcome};

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
    pub machine_detection: MachineDetection,
    pub machine_outcome: MachineOutcome,
    pub max_call_duration: GoDuration,
    /// How often refused credentials are checked again.
    pub probe_interval: GoDuration,
    /// No create request for an attempt is sent later than this after its begin.
    pub place_deadline: GoDuration,
    /// A placed call with no final status is looked up this long after its ring timeout,
    /// then at doubling intervals up to 30 min.
    pub lookup_after: GoDuration,
    /// What the inbound opt-out line (`/webhooks/twilio/inbound`) says.
    pub inbound_prompt: String,
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
            machine_detection: MachineDetection::Off,
            machine_outcome: MachineOutcome::Completed,
            max_call_duration: Duration::from_secs(4 * 3600).into(),
            probe_interval: Duration::from_secs(30).into(),
            place_deadline: Duration::from_secs(60).into(),
            lookup_after: Duration::from_secs(120).into(),
            inbound_prompt: "To stop all calls from us, press 1.".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelephonySettings {
    pub provider: ProviderName,
    pub mock: MockSettings,
    pub twilio: TwilioSettings,
}

impl TelephonySettings {
    pub fn is_twilio(&self) -> bool {
        self.provider == ProviderName::Twilio
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
            provider: ProviderName::Mock,
            mock: MockSettings::default(),
            twilio: TwilioSettings::default(),
        }
    }
}

/// The telephony provider that places the calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderName {
    /// Simulated calls in the process: nobody is called.
    #[default]
    Mock,
    /// A Twilio-compatible carrier's REST API.
    Twilio,
}

impl ProviderName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mock => "mock",
            Self::Twilio => "twilio",
        }
    }
}
