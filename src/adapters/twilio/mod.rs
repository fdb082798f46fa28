//! Twilio's Programmable Voice REST API, and every carrier that speaks it (SignalWire, the
//! carrier simulator): placing calls, reading them back, and the signed status callbacks.

mod callbacks;
mod provider;
mod reads;
pub mod signature;

use std::time::Duration;

pub use callbacks::TwilioCallbacks;
pub use provider::TwilioProvider;

use crate::domain::carrier::{MachineDetection, MachineOutcome};
use crate::ports::{AttemptKey, DialRequest};
use crate::settings::Secret;

pub use crate::ports::STATUS_CALLBACK_PATH as STATUS_PATH;

#[derive(Debug, Clone)]
pub struct TwilioConfig {
    pub api_base: String,
    pub account_sid: String,
    pub auth_token: Secret,
    pub from: String,
    pub public_url: String,
    pub twiml: String,
    pub cps: f64,
    pub ring_timeout: Duration,
    pub request_timeout: Duration,
    /// `MachineDetection`: whether the carrier listens for an answering machine.
    pub machine_detection: MachineDetection,
    pub machine_outcome: MachineOutcome,
    /// How often refused credentials are checked again.
    pub probe_interval: Duration,
    /// Sent as `TimeLimit`: the carrier ends a call that lasts longer.
    pub max_call_duration: Duration,
    /// No create for an attempt is sent later than this after its begin.
    pub place_deadline: Duration,
}

/// The URL of `path` under `public_url` for one attempt: its query names the attempt (as
/// `key_of` reads it), then `extra`.
pub fn attempt_url(
    public_url: &str,
    path: &str,
    attempt: AttemptKey,
    extra: &[(&str, &str)],
) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("campaign", &attempt.campaign_id.to_string())
        .append_pair("call", &attempt.call_id.to_string())
        .append_pair("attempt", &attempt.attempt.to_string());
    query.extend_pairs(extra);
    format!(
        "{}{path}?{}",
        public_url.trim_end_matches('/'),
        query.finish()
    )
}

/// The status callback URL of one attempt. Its query names the attempt and its backoff terms,
/// so any api process can record a callback (even one that arrives before the create's
/// answer) without reading the store, and the carrier's signature covers them.
pub fn callback_url(public_url: &str, request: &DialRequest) -> String {
    callback_url_at(public_url, STATUS_PATH, request)
}

/// The URL of `path` with the query of the attempt's status callback: the asynchronous
/// machine verdict is recorded like a final status when it ends the call.
pub fn callback_url_at(public_url: &str, path: &str, request: &DialRequest) -> String {
    let mut url = format!(
        "{}{path}?campaign={}&call={}&attempt={}&base_ms={}&max_ms={}&jitter={}",
        public_url.trim_end_matches('/'),
        request.campaign_id,
        request.call_id,
        request.attempt,
        request.policy.base_delay_ms,
        request.policy.max_delay_ms,
        request.policy.jitter,
    );
    if let Some(started) = request.started_at {
        url.push_str(&format!("&started={}", started.timestamp_millis()));
    }
    url
}
