//! The webhook outbox: the operator's endpoints and the deliveries the store's triggers write in
//! the transaction of each change they report (spec/webhooks.md).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::access::AuditEntry;
use crate::domain::ids::{CallId, CampaignId, EndpointId};
use crate::domain::webhook::{
    AttemptFinished, CallFinished, EventType, Secret, Subscription, TryResult,
};

use super::StoreError;

/// An operator's endpoint, with the secret its deliveries are signed with.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: EndpointId,
    pub url: String,
    pub subscription: Subscription,
    pub campaign_id: Option<CampaignId>,
    pub description: Option<String>,
    pub secret: Secret,
    pub created_at: DateTime<Utc>,
}

/// Deliveries to an endpoint still to make and given up on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointLoad {
    pub pending: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// One event for one endpoint, as the deliveries log shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookDelivery {
    pub id: String,
    pub event_type: EventType,
    pub created_at: DateTime<Utc>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// A delivery a process claimed to try: what it reports, by reference until its body is
/// rendered at the first try.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedDelivery {
    pub id: String,
    pub event_type: EventType,
    pub campaign_id: Option<CampaignId>,
    pub call_id: Option<CallId>,
    pub attempt: Option<u32>,
    /// What the change knew that the rows do not keep (a campaign's former status).
    pub detail: Option<String>,
    pub body: Option<String>,
    /// When the change committed: the event's timestamp.
    pub created_at: DateTime<Utc>,
    pub attempts: u32,
}

/// How one try of a claimed delivery ended, and what becomes of the delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct TryRecord {
    pub id: String,
    /// The body sent, kept so every later try sends the same bytes; none when it could not
    /// be rendered.
    pub body: Option<String>,
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    async fn create_endpoint(
        &self,
        endpoint: &Endpoint,
        audit: Option<AuditEntry>,
    ) -> Result<(), StoreError>;

    /// Every endpoint in creation order, with its backlog.
    async fn list_endpoints(&self) -> Result<Vec<(Endpoint, EndpointLoad)>, StoreError>;

    /// Every endpoint, without counting its backlog: what the deliverer runs loops for.
    async fn active_endpoints(&self) -> Result<Vec<Endpoint>, StoreError>;

    async fn get_endpoint(&self, id: EndpointId) -> Result<Option<Endpoint>, StoreError>;

    /// Removes the endpoint and its deliveries; whether it existed.
    async fn delete_endpoint(
        &self,
        id: EndpointId,
        audit: Option<AuditEntry>,
    ) -> Result<bool, StoreError>;

    /// An endpoint's deliveries, newest first (ids begin with their time), before the
    /// delivery `before`.
    async fn deliveries(
        &self,
        endpoint: EndpointId,
        status: Option<DeliveryStatus>,
        before: Option<String>,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, StoreError>;

    /// Makes a delivery of any status due now (one being tried already is left to that try);
    /// whether it exists for that endpoint.
    async fn retry_delivery(
        &self,
        endpoint: EndpointId,
        id: &str,
        now: DateTime<Utc>,
        audit: Option<AuditEntry>,
    ) -> Result<bool, StoreError>;

    /// Claims up to `limit` of the endpoint's deliveries due at `now` under `claim` until
    /// `until`, when they fall due again unless finished: a process that dies gives them back
    /// by not finishing them.
    async fn claim_deliveries(
        &self,
        endpoint: EndpointId,
        claim: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;

    /// What an `attempt.finished` reports, read from the attempt and its call.
    async fn attempt_event(
        &self,
        campaign_id: CampaignId,
        call_id: CallId,
        attempt: u32,
    ) -> Result<Option<AttemptFinished>, StoreError>;

    /// What a `call.finished` reports, read from the call.
    async fn call_event(
        &self,
        campaign_id: CampaignId,
        call_id: CallId,
    ) -> Result<Option<CallFinished>, StoreError>;

    /// Records the tries of deliveries still held under `claim`, and hands back the `untried`
    /// ones it holds with their tries unchanged, due at once and in their place by age; a
    /// delivery claimed again by another process since is left to it.
    async fn finish_deliveries(
        &self,
        endpoint: EndpointId,
        claim: &str,
        tries: &[TryRecord],
        untried: &[String],
    ) -> Result<(), StoreError>;

    /// Deletes deliveries delivered before `before`; how many.
    async fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Whether any event waits for the fan-out: the question most of its polls end on.
    async fn events_waiting(&self) -> Result<bool, StoreError>;

    /// Moves up to `limit` of the oldest events into a delivery per endpoint that listens, in
    /// one transaction with their removal. Returns how many events it moved.
    async fn fan_out(&self, limit: usize) -> Result<u64, StoreError>;

    /// Drops the outbox's triggers when no endpoint is left (they cost every change while they
    /// exist); whether it dropped them.
    async fn disarm_unused(&self) -> Result<bool, StoreError>;

    /// Deliveries still to make, every endpoint together: those pending and those the events
    /// waiting for the fan-out will make.
    async fn delivery_backlog(&self) -> Result<u64, StoreError>;

    /// The fewest deliveries due at `now` that any endpoint has, counted up to `cap`; `None`
    /// without an endpoint.
    async fn fewest_due(&self, now: DateTime<Utc>, cap: usize) -> Result<Option<u64>, StoreError>;
}

/// One try of a delivery: a signed POST to the endpoint.
#[async_trait]
pub trait WebhookSender: Send + Sync + 'static {
    /// Posts `body` with `headers` (and `Content-Type: application/json`) to `url`, reaching
    /// only the addresses the deployment allows, following no redirect, within its timeout.
    async fn send(&self, url: &str, headers: &[(&'static str, String)], body: String) -> TryResult;

    /// Whether `url`'s host may be reached now: the addresses it resolves to are screened as
    /// a connection screens them. `Err` names the class of a refused address; a name that does
    /// not resolve (yet) is not refused.
    async fn screen(&self, url: &str) -> Result<(), &'static str>;
}
