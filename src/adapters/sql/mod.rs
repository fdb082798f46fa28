//! What the two SQL stores (SQLite and PostgreSQL) share: row shapes and their conversion to
//! the domain, the failure of a statement body, statements kept prepared, and the SQL
//! timeline's pages. Nothing here knows a backend's dialect; the rules the stores apply are in
//! `crate::domain`.

pub mod bound;
pub mod page;
pub mod prepared;
pub mod rows;
pub mod run;
pub mod single;
pub mod statements;
pub mod webhooks;

use chrono::{DateTime, TimeZone, Utc};
use diesel::result::Error as DieselError;

use crate::domain::campaign::InvalidTransition;
use crate::ports::StoreError;

/// Times are stored as BIGINT milliseconds since the epoch.
pub fn to_ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// What a statement body fails with: a database error, which the store that ran it classifies
/// (each backend knows which of its errors go away by themselves), or a store error the body
/// decided itself. Bodies use `?` on both; the store's `read` and `write` helpers classify.
#[derive(Debug)]
pub enum Failure {
    Db(DieselError),
    Store(StoreError),
}

impl Failure {
    pub fn into_store_error(self, classify: fn(DieselError) -> StoreError) -> StoreError {
        match self {
            Failure::Db(err) => classify(err),
            Failure::Store(err) => err,
        }
    }
}

impl From<DieselError> for Failure {
    fn from(err: DieselError) -> Self {
        Failure::Db(err)
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        Failure::Store(err)
    }
}

impl From<InvalidTransition> for Failure {
    fn from(err: InvalidTransition) -> Self {
        Failure::Store(StoreError::InvalidState(err))
    }
}

/// The text a business-hours column holds.
pub fn hours_json(
    hours: &crate::domain::business_hours::BusinessHours,
) -> Result<String, StoreError> {
    serde_json::to_string(hours.windows()).map_err(|err| StoreError::Internal(err.to_string()))
}

pub fn periods_json(
    periods: &[crate::domain::compliance::RestrictedPeriod],
) -> Result<String, StoreError> {
    serde_json::to_string(periods).map_err(|err| StoreError::Internal(err.to_string()))
}

/// A duration as the BIGINT milliseconds a statement binds.
pub fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A count or limit as the BIGINT a statement binds.
pub fn as_bigint(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// The `Store` impl of a SQL store. Both stores have the same modules with the same functions,
/// one module per aggregate: `campaigns`, `calls`, `dispatch` (what the scheduler claims and
/// completes), `attempts` (reports, the dialer's begin and hand-back, orphans, the export
/// backlog), `instances`, and
/// `pool::ping`; each method runs in its module. Expanded inside the store's own module, where
/// those modules are in scope.
macro_rules! store_by_aggregate {
    ($store:ty) => {
        const _: () = {
            use chrono::{DateTime, Utc};
            use $crate::adapters::sql::{single, webhooks};
            use $crate::domain::access::{ApiKey, AuditEntry, NewKey};
            use $crate::domain::call::{Attempt, Call};
            use $crate::domain::campaign::{
                Campaign, CampaignChanges, CampaignStatus, StatusAction, Transition,
            };
            use $crate::domain::ids::{CallId, CampaignId, InstanceId, KeyId};
            use $crate::domain::stats::CampaignStats;
            use $crate::ports::{
                AccessStore, AppliedReport, AttemptKey, AttemptReport, AttemptStore, Begin,
                CallFilter, CallStore, CampaignStore, ClaimedCall, DispatchStore, DncStore,
                HeldAttempt, InstanceStore, NewCampaign, NewTarget, OrphanedAttempt,
                RunnableCampaign, StoreError, TimelineEntry,
            };

            #[async_trait::async_trait]
            impl CampaignStore for $store {
                async fn create_campaign_audited(
                    &self,
                    new: NewCampaign,
                    now: DateTime<Utc>,
                    audit: Option<AuditEntry>,
                ) -> Result<Campaign, StoreError> {
                    campaigns::create(self, new, now, audit).await
                }

                async fn get_campaign(
                    &self,
                    id: CampaignId,
                ) -> Result<Option<Campaign>, StoreError> {
                    single::get_campaign(self, id).await
                }

                async fn list_campaigns(
                    &self,
                    status: Option<CampaignStatus>,
                    after: Option<CampaignId>,
                    limit: usize,
                ) -> Result<Vec<Campaign>, StoreError> {
                    single::list_campaigns(self, status, after, limit).await
                }

                async fn update_campaign_audited(
                    &self,
                    id: CampaignId,
                    changes: CampaignChanges,
                    now: DateTime<Utc>,
                    audit: Option<AuditEntry>,
                ) -> Result<Campaign, StoreError> {
                    campaigns::update(self, id, changes, now, audit).await
                }

                async fn transition_campaign_audited(
                    &self,
                    id: CampaignId,
                    action: StatusAction,
                    now: DateTime<Utc>,
                    audit: Option<AuditEntry>,
                ) -> Result<Transition, StoreError> {
                    campaigns::transition(self, id, action, now, audit).await
                }

                async fn campaign_stats(
                    &self,
                    id: CampaignId,
                ) -> Result<Option<CampaignStats>, StoreError> {
                    single::campaign_stats(self, id).await
                }

                async fn pause_for_carrier(
                    &self,
                    campaign_id: CampaignId,
                    reason: $crate::domain::campaign::PauseReason,
                    now: DateTime<Utc>,
                ) -> Result<bool, StoreError> {
                    single::pause_for_carrier(self, campaign_id, reason, now).await
                }

                async fn complete_finished_campaigns(
                    &self,
                    now: DateTime<Utc>,
                ) -> Result<Vec<CampaignId>, StoreError> {
                    dispatch::complete_finished_campaigns(self, now).await
                }
            }

            #[async_trait::async_trait]
            impl CallStore for $store {
                async fn enqueue_calls_audited(
                    &self,
                    campaign_id: CampaignId,
                    targets: Vec<NewTarget>,
                    now: DateTime<Utc>,
                    audit: Option<AuditEntry>,
                ) -> Result<Vec<Call>, StoreError> {
                    calls::enqueue(self, campaign_id, targets, now, audit).await
                }

                async fn get_call(
                    &self,
                    id: CallId,
                ) -> Result<Option<(Call, Vec<Attempt>)>, StoreError> {
                    calls::get(self, id).await
                }

                async fn list_calls(
                    &self,
                    campaign_id: CampaignId,
                    filter: &CallFilter,
                    after: Option<CallId>,
                    limit: usize,
                ) -> Result<Vec<Call>, StoreError> {
                    single::list_calls(self, campaign_id, filter.clone(), after, limit).await
                }

                async fn pending_calls(
                    &self,
                    campaign_id: CampaignId,
                    after: Option<CallId>,
                    limit: usize,
                    now: DateTime<Utc>,
                ) -> Result<Vec<(CallId, $crate::ports::PendingCall)>, StoreError> {
                    dnc::pending_calls(self, campaign_id, after, limit, now).await
                }
            }

            #[async_trait::async_trait]
            impl DispatchStore for $store {
                async fn runnable_campaigns(&self) -> Result<Vec<RunnableCampaign>, StoreError> {
                    single::runnable_campaigns(self).await
                }

                async fn dialing_now(&self) -> Result<u64, StoreError> {
                    single::dialing_now(self).await
                }

                async fn claim_calls(
                    &self,
                    campaign_id: CampaignId,
                    max: usize,
                    owner: InstanceId,
                    global_cap: u32,
                    now: DateTime<Utc>,
                ) -> Result<Vec<ClaimedCall>, StoreError> {
                    dispatch::claim_calls(self, campaign_id, max, owner, global_cap, now).await
                }

                async fn promote_due_retries(
                    &self,
                    now: DateTime<Utc>,
                    limit: usize,
                ) -> Result<Vec<CampaignId>, StoreError> {
                    dispatch::promote_due_retries(self, now, limit).await
                }

                async fn next_retry_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
                    single::next_retry_due(self).await
                }
            }

            #[async_trait::async_trait]
            impl AttemptStore for $store {
                async fn record_attempts(
                    &self,
                    reports: &[AttemptReport],
                    now: DateTime<Utc>,
                ) -> Result<Vec<AppliedReport>, StoreError> {
                    attempts::record(self, reports, now).await
                }

                async fn begin_attempts(
                    &self,
                    attempts: &[HeldAttempt],
                    owner: InstanceId,
                    now: DateTime<Utc>,
                ) -> Result<Vec<Begin>, StoreError> {
                    attempts::begin(self, attempts, owner, now).await
                }

                async fn hand_to_carrier(
                    &self,
                    attempts: &[(HeldAttempt, crate::domain::carrier::CarrierCall)],
                    now: DateTime<Utc>,
                ) -> Result<Vec<bool>, StoreError> {
                    attempts::hand_to_carrier(self, attempts, now).await
                }

                async fn recheck_attempts(
                    &self,
                    attempts: &[AttemptKey],
                    dialer: InstanceId,
                    now: DateTime<Utc>,
                ) -> Result<Vec<Begin>, StoreError> {
                    attempts::recheck(self, attempts, dialer, now).await
                }

                async fn release_attempts(
                    &self,
                    attempts: &[HeldAttempt],
                    unspent: crate::domain::admission::Unspent,
                    now: DateTime<Utc>,
                ) -> Result<Vec<bool>, StoreError> {
                    attempts::release(self, attempts, unspent, now).await
                }

                async fn orphaned_attempts(
                    &self,
                    silent_for: std::time::Duration,
                    placed_for: std::time::Duration,
                    unanswered_for: std::time::Duration,
                    limit: usize,
                ) -> Result<Vec<OrphanedAttempt>, StoreError> {
                    single::orphaned_attempts(self, silent_for, placed_for, unanswered_for, limit)
                        .await
                }

                async fn timeline_backlog(
                    &self,
                    limit: usize,
                ) -> Result<Vec<TimelineEntry>, StoreError> {
                    single::timeline_backlog(self, limit).await
                }

                async fn forget_attempts(&self, keys: &[AttemptKey]) -> Result<u64, StoreError> {
                    attempts::forget(self, keys).await
                }
            }

            #[async_trait::async_trait]
            impl InstanceStore for $store {
                async fn ping(&self) -> Result<(), StoreError> {
                    pool::ping(self).await
                }

                async fn heartbeat(
                    &self,
                    instance: InstanceId,
                ) -> Result<DateTime<Utc>, StoreError> {
                    instances::heartbeat(self, instance).await
                }

                async fn prune_history(
                    &self,
                    silent_for: std::time::Duration,
                ) -> Result<u64, StoreError> {
                    single::prune_history(self, silent_for).await
                }
            }

            #[async_trait::async_trait]
            impl AccessStore for $store {
                async fn create_key(
                    &self,
                    key: NewKey,
                    now: DateTime<Utc>,
                    audit: Option<AuditEntry>,
                ) -> Result<ApiKey, StoreError> {
                    single::create_key(self, key, now, audit).await
                }

                async fn get_key(&self, id: KeyId) -> Result<Option<ApiKey>, StoreError> {
                    single::get_key(self, id).await
                }

                async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
                    single::list_keys(self).await
                }

                async fn revoke_key(
                    &self,
                    id: KeyId,
                    now: DateTime<Utc>,
                    audit: Option<AuditEntry>,
                ) -> Result<ApiKey, StoreError> {
                    single::revoke_key(self, id, now, audit).await
                }

                async fn touch_keys(
                    &self,
                    used: &[(KeyId, DateTime<Utc>)],
                ) -> Result<(), StoreError> {
                    single::touch_keys(self, used).await
                }

                async fn record_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
                    single::record_audit(self, entries).await
                }

                async fn prune_audit(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
                    single::prune_audit(self, before).await
                }

                async fn list_audit(
                    &self,
                    before: Option<uuid::Uuid>,
                    limit: usize,
                ) -> Result<Vec<AuditEntry>, StoreError> {
                    single::list_audit(self, before, limit).await
                }
            }

            #[async_trait::async_trait]
            impl DncStore for $store {
                async fn add_to_dnc(
                    &self,
                    scope: $crate::ports::DncScope,
                    numbers: Vec<($crate::domain::phone::PhoneNumber, Option<String>)>,
                    now: DateTime<Utc>,
                    audit: Option<AuditEntry>,
                ) -> Result<$crate::ports::DncAdded, StoreError> {
                    dnc::add(self, scope, numbers, now, audit).await
                }

                async fn get_dnc(
                    &self,
                    number: &$crate::domain::phone::PhoneNumber,
                ) -> Result<Option<$crate::ports::DncEntry>, StoreError> {
                    single::get_dnc(self, number).await
                }

                async fn list_dnc(
                    &self,
                    after: Option<($crate::domain::phone::PhoneNumber, $crate::ports::DncScope)>,
                    limit: usize,
                ) -> Result<Vec<$crate::ports::DncEntry>, StoreError> {
                    single::list_dnc(self, after, limit).await
                }

                async fn remove_dnc(
                    &self,
                    number: &$crate::domain::phone::PhoneNumber,
                    audit: Option<AuditEntry>,
                ) -> Result<u64, StoreError> {
                    single::remove_dnc(self, number, audit).await
                }

                async fn number_facts(
                    &self,
                    campaign_id: CampaignId,
                    number: &$crate::domain::phone::PhoneNumber,
                    now: DateTime<Utc>,
                ) -> Result<$crate::ports::NumberFacts, StoreError> {
                    single::number_facts(self, campaign_id, number, now).await
                }
            }

            #[async_trait::async_trait]
            impl $crate::ports::AnswerStore for $store {
                async fn record_answer(
                    &self,
                    key: AttemptKey,
                    heard: $crate::domain::answer::Heard,
                    opt_out: Option<$crate::ports::OptOutListing>,
                    now: DateTime<Utc>,
                ) -> Result<bool, StoreError> {
                    answers::record(self, key, heard, opt_out, now).await
                }

                async fn list_opt_out(
                    &self,
                    listing: $crate::ports::OptOutListing,
                    now: DateTime<Utc>,
                ) -> Result<$crate::ports::DncAdded, StoreError> {
                    answers::list_opt_out(self, listing, now).await
                }

                async fn call_results(
                    &self,
                    campaign_id: CampaignId,
                    after: Option<CallId>,
                    limit: usize,
                ) -> Result<Vec<$crate::ports::CallResult>, StoreError> {
                    single::call_results(self, campaign_id, after, limit).await
                }

                async fn metadata_keys(
                    &self,
                    campaign_id: CampaignId,
                ) -> Result<Vec<String>, StoreError> {
                    single::metadata_keys(self, campaign_id).await
                }

                async fn attempt_message(
                    &self,
                    key: AttemptKey,
                ) -> Result<Option<$crate::domain::message::Message>, StoreError> {
                    single::attempt_message(self, key).await
                }
            }

            #[async_trait::async_trait]
            impl $crate::ports::WebhookStore for $store {
                async fn create_endpoint(
                    &self,
                    endpoint: &$crate::ports::Endpoint,
                    audit: Option<AuditEntry>,
                ) -> Result<(), StoreError> {
                    webhooks::create_endpoint(self, endpoint, audit).await
                }

                async fn list_endpoints(
                    &self,
                ) -> Result<Vec<($crate::ports::Endpoint, $crate::ports::EndpointLoad)>, StoreError>
                {
                    webhooks::list_endpoints(self).await
                }

                async fn active_endpoints(
                    &self,
                ) -> Result<Vec<$crate::ports::Endpoint>, StoreError> {
                    webhooks::active_endpoints(self).await
                }

                async fn get_endpoint(
                    &self,
                    id: $crate::domain::ids::EndpointId,
                ) -> Result<Option<$crate::ports::Endpoint>, StoreError> {
                    webhooks::get_endpoint(self, id).await
                }

                async fn delete_endpoint(
                    &self,
                    id: $crate::domain::ids::EndpointId,
                    audit: Option<AuditEntry>,
                ) -> Result<bool, StoreError> {
                    webhooks::delete_endpoint(self, id, audit).await
                }

                async fn deliveries(
                    &self,
                    endpoint: $crate::domain::ids::EndpointId,
                    status: Option<$crate::ports::DeliveryStatus>,
                    before: Option<String>,
                    limit: usize,
                ) -> Result<Vec<$crate::ports::WebhookDelivery>, StoreError> {
                    webhooks::deliveries(self, endpoint, status, before, limit).await
                }

                async fn retry_delivery(
                    &self,
                    endpoint: $crate::domain::ids::EndpointId,
                    id: &str,
                    now: DateTime<Utc>,
                    audit: Option<AuditEntry>,
                ) -> Result<bool, StoreError> {
                    webhooks::retry_delivery(self, endpoint, id, now, audit).await
                }

                async fn claim_deliveries(
                    &self,
                    endpoint: $crate::domain::ids::EndpointId,
                    claim: &str,
                    now: DateTime<Utc>,
                    until: DateTime<Utc>,
                    limit: usize,
                ) -> Result<Vec<$crate::ports::ClaimedDelivery>, StoreError> {
                    webhooks::claim_deliveries(self, endpoint, claim, now, until, limit).await
                }

                async fn attempt_event(
                    &self,
                    campaign_id: CampaignId,
                    call_id: CallId,
                    attempt: u32,
                ) -> Result<Option<$crate::domain::webhook::AttemptFinished>, StoreError> {
                    webhooks::attempt_event(self, campaign_id, call_id, attempt).await
                }

                async fn call_event(
                    &self,
                    campaign_id: CampaignId,
                    call_id: CallId,
                ) -> Result<Option<$crate::domain::webhook::CallFinished>, StoreError> {
                    webhooks::call_event(self, campaign_id, call_id).await
                }

                async fn finish_deliveries(
                    &self,
                    endpoint: $crate::domain::ids::EndpointId,
                    claim: &str,
                    tries: &[$crate::ports::TryRecord],
                    untried: &[String],
                ) -> Result<(), StoreError> {
                    webhooks::finish_deliveries(self, endpoint, claim, tries, untried).await
                }

                async fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
                    webhooks::prune_deliveries(self, before).await
                }

                async fn events_waiting(&self) -> Result<bool, StoreError> {
                    webhooks::events_waiting(self).await
                }

                async fn fan_out(&self, limit: usize) -> Result<u64, StoreError> {
                    outbox::fan_out(self, limit).await
                }

                async fn disarm_unused(&self) -> Result<bool, StoreError> {
                    outbox::disarm_unused(self).await
                }

                async fn delivery_backlog(&self) -> Result<u64, StoreError> {
                    webhooks::delivery_backlog(self).await
                }

                async fn fewest_due(
                    &self,
                    now: DateTime<Utc>,
                    cap: usize,
                ) -> Result<Option<u64>, StoreError> {
                    webhooks::fewest_due(self, now, cap).await
                }
            }
        };
    };
}

pub(crate) use store_by_aggregate;
