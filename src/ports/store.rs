//! The store: campaigns, calls, dispatch, attempts, instances, keys and audit, the
//! do-not-call list; one trait per aggregate, and `Store`, all of them, as the roles hold it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::domain::access::{ApiKey, AuditEntry, NewKey};
use crate::domain::answer::Heard;
use crate::domain::business_hours::BusinessHours;
use crate::domain::call::{Attempt, Call, CallStatus};
use crate::domain::campaign::{
    Campaign, CampaignChanges, CampaignStatus, InvalidTransition, RetryPolicy, StatusAction,
    Transition,
};
use crate::domain::carrier::{CarrierCall, Voice};
use crate::domain::compliance::RestrictedPeriod;
use crate::domain::ids::{CallId, CampaignId, InstanceId, KeyId};
use crate::domain::message::Message;
use crate::domain::phone::PhoneNumber;
use crate::domain::stats::CampaignStats;

use super::timeline::{AttemptKey, TimelineEntry};

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
    /// Its calls dialing when it was read.
    pub dialing_calls: u64,
    pub voice: Voice,
}

impl RunnableCampaign {
    /// Whether its limit left a slot free when it was read. Calls that end later free more;
    /// the claim counts exactly.
    pub fn has_free_slot(&self) -> bool {
        crate::domain::admission::free_slots(
            u64::from(self.max_concurrent_calls),
            self.dialing_calls,
        ) > 0
    }
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

/// Campaigns: registration, settings, status and statistics.
#[async_trait]
pub trait CampaignStore: Send + Sync + 'static {
    /// Inserts the campaign, its targets, one queued call per target and its statistics, in one
    /// transaction, with `audit` (the API's record of the request, if any).
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

    async fn update_campaign_audited(
        &self,
        id: CampaignId,
        changes: CampaignChanges,
        now: DateTime<Utc>,
        audit: Option<AuditEntry>,
    ) -> Result<Campaign, StoreError>;

    /// Applies a status action; `complete` cancels every call not dialing, in the same transaction.
    async fn transition_campaign_audited(
        &self,
        id: CampaignId,
        action: StatusAction,
        now: DateTime<Utc>,
        audit: Option<AuditEntry>,
    ) -> Result<Transition, StoreError>;

    async fn campaign_stats(&self, id: CampaignId) -> Result<Option<CampaignStats>, StoreError>;

    /// The carrier refuses what the campaign asks of it (its caller ID, its audio): the
    /// campaign, if `in_progress`, is paused with `reason`, which stays on it until it starts
    /// again. Returns whether it was paused now.
    async fn pause_for_carrier(
        &self,
        campaign_id: CampaignId,
        reason: PauseReason,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Completes every `in_progress` campaign whose calls are all terminal.
    async fn complete_finished_campaigns(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<CampaignId>, StoreError>;
}

/// Calls: queued targets, and what a campaign's waiting calls are held by.
#[async_trait]
pub trait CallStore: Send + Sync + 'static {
    /// Queues one new call per number, each with a fresh attempt budget. Every number must be a
    /// registered target of a campaign that is not completed.
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

/// Dispatch: which campaigns run, claims of calls within the limits, retries coming due.
#[async_trait]
pub trait DispatchStore: Send + Sync + 'static {
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

    /// Moves retrying calls whose backoff has elapsed back to `queued`, for `in_progress`
    /// campaigns only (paused campaigns hold their retries). Returns the campaigns touched.
    async fn promote_due_retries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<CampaignId>, StoreError>;

    /// The earliest backoff end among retrying calls of `in_progress` campaigns.
    async fn next_retry_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
}

/// Attempts: begun, placed, handed back or recorded, recovered when their process died, and exported to a separate timeline.
#[async_trait]
pub trait AttemptStore: Send + Sync + 'static {
    /// Records attempt results idempotently, moving calls on, updating statistics and completing
    /// campaigns whose calls are all terminal, in one transaction.
    async fn record_attempts(
        &self,
        reports: &[AttemptReport],
        now: DateTime<Utc>,
    ) -> Result<Vec<AppliedReport>, StoreError>;

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

    /// Finished attempts not yet handed to a separate timeline, in no particular order; used
    /// only when `timeline.url` is not the store itself. A row that cannot be read is logged
    /// and left out, so it cannot hold up the others.
    async fn timeline_backlog(&self, limit: usize) -> Result<Vec<TimelineEntry>, StoreError>;

    /// Deletes finished attempts the timeline now holds. Attempts still dialing are never
    /// deleted, whatever the keys say.
    async fn forget_attempts(&self, keys: &[AttemptKey]) -> Result<u64, StoreError>;
}

/// The store itself and the processes using it: reachability, heartbeats, upkeep.
#[async_trait]
pub trait InstanceStore: Send + Sync + 'static {
    async fn ping(&self) -> Result<(), StoreError>;

    /// Records that `instance` is alive, on the store's clock.
    /// Returns the store's clock as it wrote the heartbeat: processes judge calling rules on
    /// it, not on their own clocks.
    async fn heartbeat(&self, instance: InstanceId) -> Result<DateTime<Utc>, StoreError>;

    /// Forgets what no longer counts toward anything: instances silent for `silent_for` that
    /// hold no dialing call, attempt times older than any cap window, and messages kept for
    /// attempts long over. Returns how many instances it forgot.
    async fn prune_history(&self, silent_for: std::time::Duration) -> Result<u64, StoreError>;
}

/// API keys and the audit log. A method that changes something takes the audit entry that
/// records it and commits both together.
#[async_trait]
pub trait AccessStore: Send + Sync + 'static {
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
}

/// The do-not-call list, and what the calling rules read of a number.
#[async_trait]
pub trait DncStore: Send + Sync + 'static {
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
}

/// What calls heard back when the engine spoke a campaign's message.
#[async_trait]
pub trait AnswerStore: Send + Sync + 'static {
    /// Records `heard` on the live attempt `key`, on its call and in its campaign's counters,
    /// and lists `opt_out`'s number as `add_to_dnc` does (with its `call.opted_out` event when
    /// the number is newly listed), all in one transaction. Returns
    /// whether the attempt's answer changed: not for an attempt that is no longer live, nor for
    /// a repeated request. The listing is made either way: an opt-out is honoured even when
    /// its call has just ended.
    async fn record_answer(
        &self,
        key: AttemptKey,
        heard: Heard,
        opt_out: Option<OptOutListing>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Lists a callee's opt-out made outside a call (the inbound line) as `add_to_dnc` does,
    /// with its `call.opted_out` event when the number is newly listed, in one transaction.
    async fn list_opt_out(
        &self,
        listing: OptOutListing,
        now: DateTime<Utc>,
    ) -> Result<DncAdded, StoreError>;

    /// A campaign's calls after `after` in call id order, each with what it heard back.
    async fn call_results(
        &self,
        campaign_id: CampaignId,
        after: Option<CallId>,
        limit: usize,
    ) -> Result<Vec<CallResult>, StoreError>;

    /// The message the attempt `key` began with, kept when its campaign's message changed while
    /// it was live; `None` when it did not (the campaign's message is the attempt's).
    async fn attempt_message(&self, key: AttemptKey) -> Result<Option<Message>, StoreError>;

    /// Every key of the metadata of a campaign's calls, sorted.
    async fn metadata_keys(&self, campaign_id: CampaignId) -> Result<Vec<String>, StoreError>;
}

/// One call of a campaign's results.
#[derive(Debug, Clone, PartialEq)]
pub struct CallResult {
    pub call_id: CallId,
    pub phone_number: PhoneNumber,
    pub status: CallStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// What the call shows: each field its latest attempt's that has one.
    pub answer: crate::domain::answer::Answer,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub metadata: Option<crate::domain::metadata::Metadata>,
}

/// The do-not-call entry a callee's opt-out makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptOutListing {
    pub scope: DncScope,
    pub number: PhoneNumber,
    pub reason: String,
    /// The call the callee opted out on; none on the inbound line.
    pub call: Option<(CampaignId, CallId)>,
}

/// The store as the roles hold it: every aggregate's trait. Each adapter implements them
/// all; a role or a test that needs only some can name only those.
pub trait Store:
    CampaignStore
    + CallStore
    + DispatchStore
    + AttemptStore
    + InstanceStore
    + AccessStore
    + DncStore
    + AnswerStore
    + super::WebhookStore
{
}

impl<T> Store for T where
    T: CampaignStore
        + CallStore
        + DispatchStore
        + AttemptStore
        + InstanceStore
        + AccessStore
        + DncStore
        + AnswerStore
        + super::WebhookStore
{
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
