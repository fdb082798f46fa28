//! The narrow traits the roles talk to. Each has an embedded adapter (SQLite, in-process bus,
//! local limiter, mock telephony) and, in distributed mode, a networked one; the contract tests
//! in `tests/` run against every adapter of a port.
//!
//! Only `domain` types cross these traits; no adapter type leaks out of `adapters/`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::domain::access::{ApiKey, AuditEntry, NewKey};
use crate::domain::business_hours::BusinessHours;
use crate::domain::call::{Attempt, AttemptOutcome, Call, CallStatus};
use crate::domain::campaign::{
    Campaign, CampaignChanges, CampaignStatus, InvalidTransition, PolicyTerms, RetryPolicy,
    StatusAction, Transition,
};
use crate::domain::carrier::{CarrierCall, Voice};
use crate::domain::compliance::RestrictedPeriod;
use crate::domain::ids::{CallId, CampaignId, InstanceId, KeyId, LeaseId};
use crate::domain::phone::PhoneNumber;
use crate::domain::stats::CampaignStats;

// ---------------------------------------------------------------------------------------------
// Store

pub use crate::domain::call::NewTarget;

#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub id: CampaignId,
    pub name: String,
    pub description: String,
    pub time_zone: Tz,
    pub max_concurrent_calls: u32,
    pub retry_policy: RetryPolicy,
    pub business_hours: BusinessHours,
    pub recipient_hours: BusinessHours,
    pub restricted_periods: Vec<RestrictedPeriod>,
    pub recipient_limits: Vec<crate::domain::compliance::FrequencyCap>,
    pub voice: Voice,
    /// Already deduplicated and canonical.
    pub targets: Vec<NewTarget>,
}

/// A call the scheduler has moved to `dialing`, with the attempt it is about to make.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedCall {
    pub call_id: CallId,
    pub campaign_id: CampaignId,
    pub phone_number: PhoneNumber,
    pub attempt: u32,
    pub started_at: DateTime<Utc>,
}

pub use crate::domain::admission::{Begin, Unspent};
pub use crate::domain::campaign::PauseReason;
pub use crate::domain::settlement::{AppliedReport, AttemptReport};

/// An `in_progress` campaign with calls waiting, as the scheduler needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnableCampaign {
    pub id: CampaignId,
    pub time_zone: Tz,
    pub business_hours: BusinessHours,
    pub max_concurrent_calls: u32,
    pub retry_policy: RetryPolicy,
    pub queued_calls: u64,
    pub voice: Voice,
}

/// An attempt whose owner stopped heartbeating: its outcome will never be reported.
#[derive(Debug, Clone, PartialEq)]
pub struct OrphanedAttempt {
    pub call_id: CallId,
    pub campaign_id: CampaignId,
    pub attempt: u32,
    pub retry_policy: RetryPolicy,
    /// The dead owner, `None` if the attempt had none.
    pub owner: Option<InstanceId>,
    /// Whether a dialer began placing it: the provider may have the call. One never placed is
    /// handed back unspent; a placed one is settled.
    pub placed: bool,
    pub placed_at: Option<DateTime<Utc>>,
    pub phone_number: PhoneNumber,
    /// The carrier's id of the call, if its create was answered.
    pub sid: Option<String>,
}

/// An attempt as its holder (its claimer, or the dialer that began it) names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldAttempt {
    pub key: AttemptKey,
    pub holder: Option<InstanceId>,
    /// When the attempt began, as its claim (the dispatch) says; `None` where unknown. An
    /// attempt handed back unspent and claimed again has the same key and a later start.
    pub began_at: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("a campaign with this name already exists")]
    DuplicateName,
    #[error(transparent)]
    InvalidState(#[from] InvalidTransition),
    #[error("phone numbers are not registered targets of the campaign")]
    NotRegistered(Vec<String>),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store failure: {0}")]
    Internal(String),
}

/// Which of a campaign's calls a listing returns; an absent field filters nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFilter {
    pub status: Option<CallStatus>,
    /// The calls to one number (a campaign has one per target, more after re-dials).
    pub phone_number: Option<PhoneNumber>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn ping(&self) -> Result<(), StoreError>;

    /// Inserts the campaign, its targets, one queued call per target and its statistics, in one
    /// transaction.
    async fn create_campaign(
        &self,
        new: NewCampaign,
        now: DateTime<Utc>,
    ) -> Result<Campaign, StoreError> {
        self.create_campaign_audited(new, now, None).await
    }
    /// `create_campaign`, recording `audit` in the same transaction.
    async fn create_campaign_audited(
        &self,
        new: NewCampaign,
        now: DateTime<Utc>,
        audit: Option<AuditEntry>,
    ) -> Result<Campaign, StoreError>;
    async fn get_campaign(&self, id: CampaignId) -> Result<Option<Campaign>, StoreError>;
    async fn list_campaigns(
        &self,
        status: Option<CampaignStatus>,
        after: Option<CampaignId>,
        limit: usize,
    ) -> Result<Vec<Campaign>, StoreError>;
    async fn update_campaign(
        &self,
        id: CampaignId,
        changes: CampaignChanges,
        now: DateTime<Utc>,
    ) -> Result<Campaign, StoreError> {
        self.update_campaign_audited(id, changes, now, None).await
    }
    async fn update_campaign_audited(
        &self,
        id: CampaignId,
        changes: CampaignChanges,
        now: DateTime<Utc>,
        audit: Option<AuditEntry>,
    ) -> Result<Campaign, StoreError>;
    /// Applies a status action; `complete` cancels every call not dialing, in the same transaction.
    async fn transition_campaign(
        &self,
        id: CampaignId,
        action: StatusAction,
        now: DateTime<Utc>,
    ) -> Result<Transition, StoreError> {
        self.transition_campaign_audited(id, action, now, None)
            .await
    }
    async fn transition_campaign_audited(
        &self,
        id: CampaignId,
        action: StatusAction,
        now: DateTime<Utc>,
        audit: Option<AuditEntry>,
    ) -> Result<Transition, StoreError>;
    async fn campaign_stats(&self, id: CampaignId) -> Result<Option<CampaignStats>, StoreError>;

    /// Queues one new call per number, each with a fresh attempt budget. Every number must be a
    /// registered target of a campaign that is not completed.
    async fn enqueue_calls(
        &self,
        campaign_id: CampaignId,
        targets: Vec<NewTarget>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Call>, StoreError> {
        self.enqueue_calls_audited(campaign_id, targets, now, None)
            .await
    }
    async fn enqueue_calls_audited(
        &self,
        campaign_id: CampaignId,
        targets: Vec<NewTarget>,
        now: DateTime<Utc>,
        audit: Option<AuditEntry>,
    ) -> Result<Vec<Call>, StoreError>;
    async fn get_call(&self, id: CallId) -> Result<Option<(Call, Vec<Attempt>)>, StoreError>;
    async fn list_calls(
        &self,
        campaign_id: CampaignId,
        filter: &CallFilter,
        after: Option<CallId>,
        limit: usize,
    ) -> Result<Vec<Call>, StoreError>;

    async fn runnable_campaigns(&self) -> Result<Vec<RunnableCampaign>, StoreError>;
    /// Calls dialing now in the whole deployment: the slots taken.
    async fn dialing_now(&self) -> Result<u64, StoreError>;
    /// Moves up to `max` queued calls of an `in_progress` campaign to `dialing`, counting the
    /// attempt, atomically: a call is claimed by one caller only. A call in `dialing` holds a
    /// slot until its outcome is recorded, so a claim admits no more than the campaign's
    /// `max_concurrent_calls` and `global_cap` leave free, counting every dialing call, and
    /// skips calls whose number has a live call anywhere in the deployment.
    async fn claim_calls(
        &self,
        campaign_id: CampaignId,
        max: usize,
        owner: InstanceId,
        global_cap: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedCall>, StoreError>;
    /// Records attempt results idempotently, moving calls on, updating statistics and completing
    /// campaigns whose calls are all terminal, in one transaction.
    async fn record_attempts(
        &self,
        reports: &[AttemptReport],
        now: DateTime<Utc>,
    ) -> Result<Vec<AppliedReport>, StoreError>;
    /// Moves retrying calls whose backoff has elapsed back to `queued`, for `in_progress`
    /// campaigns only (paused campaigns hold their retries). Returns the campaigns touched.
    async fn promote_due_retries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<CampaignId>, StoreError>;
    /// The earliest backoff end among retrying calls of `in_progress` campaigns.
    async fn next_retry_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Completes every `in_progress` campaign whose calls are all terminal.
    async fn complete_finished_campaigns(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<CampaignId>, StoreError>;

    /// Right before dialing: for each claimed attempt (held by its claimer), checks at `now`
    /// that it is still that claimer's unplaced attempt and that its campaign may dial (status
    /// and business hours, read now, not at claim time). `Dial` marks it placed and owned by
    /// `owner`, whose heartbeat then vouches for it; `Held` hands it back unspent; `Stale`
    /// means it moved on and must not be dialed.
    async fn begin_attempts(
        &self,
        attempts: &[HeldAttempt],
        owner: InstanceId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Begin>, StoreError>;
    /// The carrier took these placed attempts: each stops belonging to its dialer (whose
    /// heartbeat no longer vouches for it) and keeps the carrier's record. Its slot and number
    /// stay taken until its outcome is recorded, by a callback or a lookup. Returns, per attempt,
    /// whether the holder still held it.
    async fn hand_to_carrier(
        &self,
        attempts: &[(HeldAttempt, CarrierCall)],
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError>;
    /// Right before each create request of an attempt `dialer` began (the first and every one
    /// after a wait): the check `begin_attempts` made, made again at `now`. `Dial` lets the
    /// create go out (the attempt's per-number log entry moves to `now`); `Held` and
    /// `Forbidden` hand the attempt back unspent as begin would; `Stale` means the attempt is
    /// no longer this dialer's to place (recovered, handed over) and no create may be sent.
    async fn recheck_attempts(
        &self,
        attempts: &[AttemptKey],
        dialer: InstanceId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Begin>, StoreError>;
    /// The carrier refuses what the campaign asks of it (its caller ID, its audio): the
    /// campaign, if `in_progress`, is paused with `reason`, which stays on it until it starts
    /// again. Returns whether it was paused now.
    async fn pause_for_carrier(
        &self,
        campaign_id: CampaignId,
        reason: PauseReason,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Hands back unspent attempts (never placed, or never created at the carrier, as
    /// `unspent` says) if their holder still holds them: each call is queued again (canceled if
    /// its campaign completed) and the attempt is not counted. Returns, per attempt, whether it
    /// was handed back.
    async fn release_attempts(
        &self,
        attempts: &[HeldAttempt],
        unspent: Unspent,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError>;

    /// Records that `instance` is alive, on the store's clock.
    /// Returns the store's clock as it wrote the heartbeat: processes judge calling rules on
    /// it, not on their own clocks.
    async fn heartbeat(&self, instance: InstanceId) -> Result<DateTime<Utc>, StoreError>;
    /// Dialing attempts whose owner has not heartbeated for `silent_for` (or that have no
    /// owner: handed to a carrier), judged on the store's clock; of those placed, only the ones
    /// placed more than `placed_for` ago (a placed call may be live at the carrier until then,
    /// and its slot and number stay taken), or more than `unanswered_for` ago when no carrier
    /// record was kept (the create's answer never came: the carrier can be asked sooner).
    async fn orphaned_attempts(
        &self,
        silent_for: std::time::Duration,
        placed_for: std::time::Duration,
        unanswered_for: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<OrphanedAttempt>, StoreError>;
    /// Forgets instances silent for `silent_for` that hold no dialing call.
    async fn prune_instances(&self, silent_for: std::time::Duration) -> Result<u64, StoreError>;

    /// Finished attempts not yet handed to a separate timeline, in no particular order; used
    /// only when `timeline.url` is not the store itself. A row that cannot be read is logged
    /// and left out, so it cannot hold up the others.
    async fn timeline_backlog(&self, limit: usize) -> Result<Vec<TimelineEntry>, StoreError>;
    /// Deletes finished attempts the timeline now holds. Attempts still dialing are never
    /// deleted, whatever the keys say.
    async fn forget_attempts(&self, keys: &[AttemptKey]) -> Result<u64, StoreError>;

    // Keys and the audit log. A method that changes something takes the audit entry that
    // records it and commits both together.

    async fn create_key(
        &self,
        key: NewKey,
        now: DateTime<Utc>,
        audit: Option<AuditEntry>,
    ) -> Result<ApiKey, StoreError>;
    async fn get_key(&self, id: KeyId) -> Result<Option<ApiKey>, StoreError>;
    /// Every key, revoked ones included, oldest first.
    async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError>;
    /// Revokes a key (`NotFound` when there is none); a revoked key keeps its first revocation
    /// time.
    async fn revoke_key(
        &self,
        id: KeyId,
        now: DateTime<Utc>,
        audit: Option<AuditEntry>,
    ) -> Result<ApiKey, StoreError>;
    /// Moves each key's `last_used_at` forward to the time given (never back).
    async fn touch_keys(&self, used: &[(KeyId, DateTime<Utc>)]) -> Result<(), StoreError>;
    /// Records entries whose request changed nothing in the store (refused, or failed).
    async fn record_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError>;
    /// Removes the audit entries recorded before `before`; how many it removed.
    async fn prune_audit(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Audit entries older than `before` (all when `None`), newest first.
    async fn list_audit(
        &self,
        before: Option<uuid::Uuid>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError>;

    // The do-not-call list and what the calling rules read of a number.

    /// Lists `numbers` (canonical, distinct) under `scope` and, in the same transaction,
    /// cancels every call of the scope to them that is queued or retrying; a number already
    /// listed keeps its entry. `NotFound` when the scope's campaign does not exist.
    async fn add_to_dnc(
        &self,
        scope: DncScope,
        numbers: Vec<(PhoneNumber, Option<String>)>,
        now: DateTime<Utc>,
        audit: Option<AuditEntry>,
    ) -> Result<DncAdded, StoreError>;
    /// The number's entry: the global one if listed globally, else one of its campaigns'.
    async fn get_dnc(&self, number: &PhoneNumber) -> Result<Option<DncEntry>, StoreError>;
    /// Entries in (number, scope) order after `after`.
    async fn list_dnc(
        &self,
        after: Option<(PhoneNumber, DncScope)>,
        limit: usize,
    ) -> Result<Vec<DncEntry>, StoreError>;
    /// Takes the number off the list in every scope; returns how many entries went.
    async fn remove_dnc(
        &self,
        number: &PhoneNumber,
        audit: Option<AuditEntry>,
    ) -> Result<u64, StoreError>;
    /// What the calling rules read of a number called by a campaign at `now`: the entry
    /// covering it and its attempts within the longest cap window.
    async fn number_facts(
        &self,
        campaign_id: CampaignId,
        number: &PhoneNumber,
        now: DateTime<Utc>,
    ) -> Result<NumberFacts, StoreError>;
    /// The campaign's queued and retrying calls after `after` in id order, with what the
    /// calling rules read of their numbers at `now`.
    async fn pending_calls(
        &self,
        campaign_id: CampaignId,
        after: Option<CallId>,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<(CallId, PendingCall)>, StoreError>;
}

/// What adding numbers to the do-not-call list did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DncAdded {
    /// Numbers newly listed in the scope.
    pub added: u64,
    /// Waiting calls canceled.
    pub canceled: u64,
}

pub use crate::domain::admission::{NumberFacts, PendingCall};
pub use crate::domain::compliance::dnc::{DncEntry, DncScope};

// ---------------------------------------------------------------------------------------------
// Bus

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// scheduler → call: an attempt to dial now.
    Dispatch,
    /// call → status: the outcome of an attempt.
    Status,
    /// status → retry: a retry was scheduled.
    Retry,
    /// anyone → scheduler: a campaign has work or capacity (start, trigger, freed slot).
    Wake,
}

impl Topic {
    pub const ALL: [Topic; 4] = [Self::Dispatch, Self::Status, Self::Retry, Self::Wake];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dispatch => "dispatch",
            Self::Status => "status",
            Self::Retry => "retry",
            Self::Wake => "wake",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Partition key: messages with one key keep their order.
    pub key: String,
    pub payload: Vec<u8>,
    /// Carries the trace context across processes.
    pub headers: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Delivery {
    pub message: Message,
    /// Opaque handle to acknowledge this delivery.
    pub token: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus closed")]
    Closed,
    #[error("bus unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Whether a message may be consumed by another process than the one that published it.
    /// When it cannot (the in-process bus), a dispatch only ever reaches the process that
    /// claimed the attempt, which needs no adoption to know it owns it.
    fn crosses_processes(&self) -> bool;

    async fn publish(&self, topic: Topic, messages: Vec<Message>) -> Result<(), BusError>;
    /// Moves a poison message (one no consumer can ever process) out of the way, to the
    /// dead-letter queue, with the reason; counted in `outbound_dead_letters_total`. The caller
    /// acknowledges the original once this returns.
    async fn dead_letter(
        &self,
        topic: Topic,
        message: Message,
        reason: &str,
    ) -> Result<(), BusError>;

    /// Joins consumer group `group` on `topic`. Members of a group share its messages; every
    /// group gets every message.
    async fn subscribe(&self, topic: Topic, group: &str)
        -> Result<Box<dyn Subscription>, BusError>;
}

/// At-least-once delivery: a message not acknowledged before the subscription is dropped (or its
/// process dies) is delivered again.
#[async_trait]
pub trait Subscription: Send {
    /// Waits for at least one message and returns up to `max`.
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Delivery>, BusError>;
    async fn ack(&mut self, tokens: &[u64]) -> Result<(), BusError>;
}

// ---------------------------------------------------------------------------------------------
// Limiter

#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error("limiter unavailable: {0}")]
    Unavailable(String),
}

/// Counts calls dialing per campaign and in the whole system. A lease expires unless renewed,
/// so a holder that dies cannot leak capacity.
#[async_trait]
pub trait ConcurrencyLimiter: Send + Sync + 'static {
    /// Takes up to `want` leases for `campaign_id`, never going above `limit` for the campaign
    /// nor above the global cap.
    async fn acquire(
        &self,
        campaign_id: CampaignId,
        limit: u32,
        want: u32,
    ) -> Result<Vec<LeaseId>, LimiterError>;
    async fn release(&self, leases: &[(CampaignId, LeaseId)]) -> Result<(), LimiterError>;
    /// Extends live leases; returns, per lease, whether it was still alive (an expired lease
    /// is never revived: its slot may already be someone else's).
    async fn renew(&self, leases: &[(CampaignId, LeaseId)]) -> Result<Vec<bool>, LimiterError>;
    async fn active(&self, campaign_id: CampaignId) -> Result<u32, LimiterError>;
    async fn active_total(&self) -> Result<u32, LimiterError>;

    /// Takes one event from the pacing bucket `key` (shared by every process using this
    /// limiter), refilled at `per_second` with room for `burst`: `None` when the event may
    /// happen now, else how long to wait before asking again.
    async fn pace(
        &self,
        key: &str,
        per_second: f64,
        burst: u32,
    ) -> Result<Option<Duration>, LimiterError>;
}

// ---------------------------------------------------------------------------------------------
// Timeline

/// One finished attempt of one call, as the timeline keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEntry {
    pub campaign_id: CampaignId,
    pub call_id: CallId,
    pub attempt: Attempt,
}

impl TimelineEntry {
    pub fn key(&self) -> AttemptKey {
        AttemptKey {
            campaign_id: self.campaign_id,
            call_id: self.call_id,
            attempt: self.attempt.attempt,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptKey {
    pub campaign_id: CampaignId,
    pub call_id: CallId,
    pub attempt: u32,
}

/// One page of a campaign's attempts; `next_page_token` is absent on the last page.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelinePage {
    pub entries: Vec<TimelineEntry>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    #[error("invalid page token")]
    InvalidPageToken,
    #[error("timeline unavailable: {0}")]
    Unavailable(String),
    #[error("timeline failure: {0}")]
    Internal(String),
}

/// The history of finished attempts: the SQL store itself (`timeline.url = "store"`), or
/// Scylla, fed from the store by the status role's exporter.
#[async_trait]
pub trait Timeline: Send + Sync + 'static {
    async fn ping(&self) -> Result<(), TimelineError>;
    /// Keeps finished attempts. Writing an attempt again (same call and attempt number)
    /// replaces it, so a repeated export is harmless.
    async fn write(&self, entries: &[TimelineEntry]) -> Result<(), TimelineError>;
    /// The finished attempts of one call, by attempt number.
    async fn call_attempts(
        &self,
        campaign_id: CampaignId,
        call_id: CallId,
    ) -> Result<Vec<Attempt>, TimelineError>;
    /// A campaign's finished attempts, at most `limit` per page, in an order that is stable
    /// across pages: paging from no token to the last page visits each attempt once. The last
    /// page (the one without a token) may be empty.
    async fn campaign_attempts(
        &self,
        campaign_id: CampaignId,
        page_token: Option<&str>,
        limit: usize,
    ) -> Result<TimelinePage, TimelineError>;
}

// ---------------------------------------------------------------------------------------------
// Telephony

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
}
