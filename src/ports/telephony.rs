//! Telephony: dialing through a provider, its events, and the checks made right before a create.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::admission::Begin;
use crate::domain::call::AttemptOutcome;
use crate::domain::campaign::{PauseReason, PolicyTerms};
use crate::domain::carrier::{CarrierCall, Voice};
use crate::domain::ids::{CallId, CampaignId};
use crate::domain::phone::PhoneNumber;

use super::store::StoreError;
use super::timeline::AttemptKey;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DialRequest {
    pub call_id: CallId,
    pub campaign_id: CampaignId,
    pub attempt: u32,
    pub phone_number: PhoneNumber,
    /// The backoff terms of the attempt, carried to whoever records its outcome (a carrier's
    /// callback names them in its signed URL).
    pub policy: PolicyTerms,
    /// The campaign's caller id and audio.
    pub voice: Voice,
    /// When the attempt began (its claim): with its number, it names this attempt and no
    /// other, even one handed back and made again.
    pub started_at: Option<DateTime<Utc>>,
}

impl DialRequest {
    pub fn key(&self) -> AttemptKey {
        AttemptKey {
            campaign_id: self.campaign_id,
            call_id: self.call_id,
            attempt: self.attempt,
        }
    }
}

/// The provider's report that an attempt ended; it may come long after `dial` returned, as a
/// real provider's webhook would.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderReport {
    pub request: DialRequest,
    pub outcome: AttemptOutcome,
    pub ended_at: DateTime<Utc>,
    /// What the carrier said about the call, when a real carrier placed it.
    pub carrier: Option<CarrierCall>,
}

/// What a provider tells the dialer about a call it was asked to place.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderEvent {
    /// The carrier took the call: it lives there now, and its outcome reaches the store through
    /// the carrier's callbacks (or a lookup), not through this process. The dialer hands the
    /// attempt over and is done with it.
    Placed {
        request: DialRequest,
        carrier: CarrierCall,
    },
    /// The attempt ended (the mock's calls, or a create the carrier refused for good).
    Ended(ProviderReport),
    /// No call was created for the attempt and none will be: it goes back unspent.
    Unplaced { request: DialRequest, why: Unplaced },
}

/// Why a begun attempt was never created at the carrier.
#[derive(Debug, Clone, PartialEq)]
pub enum Unplaced {
    /// The check before a create said no; the store already handed the attempt back (or it
    /// is no longer this dialer's).
    Checked(Begin),
    /// `place_deadline` passed before a create could be sent.
    Deadline,
    /// The carrier refuses the campaign's request: the campaign pauses with this reason.
    Refused(PauseReason),
}

/// The check a provider makes right before each create request (`Store::recheck_attempts` for
/// the dialer that began the attempt).
#[async_trait]
pub trait CreateCheck: Send + Sync + 'static {
    async fn may_create(&self, attempt: AttemptKey) -> Result<Begin, StoreError>;
    /// The carrier's ids of the call's other attempts, which a lookup of this attempt's call
    /// must never take for it.
    async fn other_sids(&self, attempt: AttemptKey) -> Result<Vec<String>, StoreError>;
}

pub type ReportSink = tokio::sync::mpsc::UnboundedSender<ProviderEvent>;

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("provider rejected the call: {0}")]
    Rejected(String),
    #[error("provider unavailable: {0}")]
    Unavailable(String),
}

/// Calls carried now, and the most carried at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActiveCount {
    pub active: u64,
    pub peak: u64,
}

/// What a provider that counts its own calls (the mock) says it carries: the limits checked
/// from the provider's side, by tests and the load tools.
pub trait CallCounts: Send + Sync + 'static {
    /// Over all campaigns.
    fn total(&self) -> ActiveCount;
    fn campaign(&self, campaign_id: CampaignId) -> ActiveCount;
}

/// A placed attempt whose outcome never arrived, as the carrier is asked about it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedAttempt {
    pub key: AttemptKey,
    pub phone_number: PhoneNumber,
    /// When the dialer began placing it, on this host's clock: a call the carrier created
    /// for it is no older.
    pub placed_at: DateTime<Utc>,
    /// The carrier's ids of the call's other attempts, never taken for this one.
    pub other_sids: Vec<String>,
    /// The carrier's id, if the create's answer was recorded.
    pub sid: Option<String>,
}

/// What the carrier knows of a placed attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// The provider keeps no record it could be asked (the mock): the call is lost.
    Unsupported,
    /// No call was created for the attempt: it was never placed.
    NotFound,
    /// The call is still live at the carrier: its slot stays taken.
    Live(CarrierCall),
    /// The call ended; `outcome` is what the attempt becomes.
    Ended {
        carrier: CarrierCall,
        outcome: AttemptOutcome,
        ended_at: DateTime<Utc>,
    },
}

#[async_trait]
pub trait TelephonyProvider: Send + Sync + 'static {
    /// Places the call. Returns once the provider took the request; what becomes of it goes to
    /// `events`.
    /// A provider that waits before creating (for its pace, for credentials, for an answer)
    /// asks `check` right before each create.
    async fn dial(
        &self,
        request: DialRequest,
        events: ReportSink,
        check: Arc<dyn CreateCheck>,
    ) -> Result<(), ProviderError>;

    /// Asks the carrier about a placed attempt whose outcome never arrived.
    async fn lookup(&self, _attempt: &PlacedAttempt) -> Result<Lookup, ProviderError> {
        Ok(Lookup::Unsupported)
    }

    /// Why the provider cannot place calls now (bad credentials), for `/readyz`.
    fn unavailable(&self) -> Option<String> {
        None
    }

    /// The pace dials must keep, when the provider has one: the dialer takes one event of it
    /// (through the limiter, shared by every process) before it begins each attempt, so an
    /// attempt waiting for its turn is not yet placed and can still be held back.
    fn pace(&self) -> Option<PaceTerms> {
        None
    }

    /// Changes a live call the carrier knows as `sid`: what it says next, or its end.
    async fn update_call(&self, _sid: &str, _update: CallUpdate) -> Result<(), ProviderError> {
        Err(ProviderError::Rejected(
            "this provider cannot change a live call".to_owned(),
        ))
    }
}

/// A change to a live call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallUpdate {
    /// The call says this TwiML instead of what it was saying.
    Twiml(String),
    /// The call ends.
    Hangup,
}

/// A pacing bucket: its key in the limiter, its rate and its burst.
#[derive(Debug, Clone, PartialEq)]
pub struct PaceTerms {
    pub key: String,
    pub per_second: f64,
    pub burst: u32,
}

/// Where the api role receives the carrier's status callbacks, under `public_url`.
pub const STATUS_CALLBACK_PATH: &str = "/webhooks/twilio/status";
/// Where the carrier fetches the TwiML of a call with a message.
pub const VOICE_PATH: &str = "/webhooks/twilio/voice";
/// Where the carrier sends the key a callee pressed on a message's prompt.
pub const GATHER_PATH: &str = "/webhooks/twilio/gather";

/// Where the carrier sends its asynchronous verdict on who answered a call.
pub const AMD_PATH: &str = "/webhooks/twilio/amd";

/// Where the account's own numbers send their calls: the opt-out line a voicemail points to.
pub const INBOUND_PATH: &str = "/webhooks/twilio/inbound";

/// Every path the carrier requests, each signed.
pub const CARRIER_PATHS: [&str; 5] = [
    STATUS_CALLBACK_PATH,
    VOICE_PATH,
    GATHER_PATH,
    AMD_PATH,
    INBOUND_PATH,
];

/// A signed request of the carrier about one attempt, other than a status callback: its
/// query (which the engine wrote, and the signature covers) and its form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub key: AttemptKey,
    pub query: Vec<(String, String)>,
    pub form: Vec<(String, String)>,
}

impl SignedRequest {
    pub fn query_field(&self, name: &str) -> Option<&str> {
        field(&self.query, name)
    }

    pub fn form_field(&self, name: &str) -> Option<&str> {
        field(&self.form, name)
    }
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// One status callback of a carrier, verified.
#[derive(Debug, Clone, PartialEq)]
pub struct CarrierCallback {
    pub key: AttemptKey,
    pub policy: PolicyTerms,
    pub carrier: CarrierCall,
    /// The attempt's outcome, when the callback reports a final status.
    pub outcome: Option<AttemptOutcome>,
    /// When the callback arrived, on the engine's clock (never the carrier's `Timestamp`).
    pub at: DateTime<Utc>,
    /// When the attempt began, as its callback URL names it.
    pub attempt_started_at: Option<DateTime<Utc>>,
}

/// The carrier's verdict on who answered one attempt's call, verified.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineVerdict {
    pub key: AttemptKey,
    pub policy: PolicyTerms,
    /// When the attempt began, as its callback URL names it.
    pub attempt_started_at: Option<DateTime<Utc>>,
    /// The carrier's id of the call (`CallSid`).
    pub sid: Option<String>,
    /// `AnsweredBy` as the carrier spelled it.
    pub answered_by: Option<String>,
    /// When the verdict arrived, on the engine's clock.
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// The signature is missing or is not the carrier's for this request: forged or altered.
    #[error("signature does not verify")]
    BadSignature,
    /// Signed, but it names no attempt.
    #[error("callback names no attempt: {0}")]
    UnknownAttempt(String),
    /// Signed, but not a status callback we can read.
    #[error("malformed callback: {0}")]
    Malformed(String),
}

/// Checks and reads a carrier's status callbacks (the api role's webhook route).
pub trait CallbackVerifier: Send + Sync + 'static {
    /// `query` is the raw query string of the request as received and `body` its form body.
    fn verify(
        &self,
        query: &str,
        body: &[u8],
        signature: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<CarrierCallback, CallbackError>;

    /// A verdict on who answered, sent to `AMD_PATH` with the query of the attempt's status
    /// callback, checked the same way.
    fn verify_verdict(
        &self,
        query: &str,
        body: &[u8],
        signature: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<MachineVerdict, CallbackError>;

    /// A request the carrier made to `path` under `public_url` (a voice or gather URL the
    /// engine gave it), checked the same way.
    fn verify_request(
        &self,
        path: &str,
        query: &str,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<SignedRequest, CallbackError>;

    /// The URL of `path` for `attempt`, with `extra` query parameters, as the carrier will
    /// request it.
    fn attempt_url(&self, path: &str, attempt: AttemptKey, extra: &[(&str, &str)]) -> String;

    /// The form of a request the carrier made to `path` about no attempt of ours (a call to
    /// the account's own number), checked the same way.
    fn verify_form(
        &self,
        path: &str,
        query: &str,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<Vec<(String, String)>, CallbackError>;

    /// The URL of `path` with `query`, as the carrier will request it.
    fn url(&self, path: &str, query: &[(&str, &str)]) -> String;
}
