//! What the roles say to each other on the bus. Payloads are JSON with a version field, keyed
//! so that the messages of one call stay in order; headers carry the trace context.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::context::AppContext;
use crate::domain::call::AttemptOutcome;
use crate::domain::carrier::{CarrierCall, Voice};
use crate::domain::ids::{CallId, CampaignId, InstanceId};
use crate::domain::phone::PhoneNumber;
use crate::metrics::metrics;
use crate::ports::{Bus, BusError, Message, Topic};
use crate::process::health::RoleHealth;
use crate::process::role::RoleName;
use crate::telemetry;

/// 2: dispatches and statuses no longer carry a limiter lease (the store counts slots).
pub const VERSION: u32 = 2;

pub use crate::domain::campaign::PolicyTerms;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DispatchMessage {
    pub v: u32,
    pub call_id: CallId,
    pub campaign_id: CampaignId,
    pub attempt: u32,
    pub phone_number: PhoneNumber,
    pub policy: PolicyTerms,
    /// The instance that claimed the attempt: the dialer begins it only while that claimer
    /// still holds it, which fences off a superseded dispatch.
    pub owner: InstanceId,
    /// The campaign's caller id and audio for a real carrier.
    #[serde(default, skip_serializing_if = "Voice::is_default")]
    pub voice: Voice,
    /// When the claim began the attempt: what ties a carrier's callbacks to this attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusMessage {
    pub v: u32,
    pub call_id: CallId,
    pub campaign_id: CampaignId,
    pub attempt: u32,
    pub outcome: AttemptOutcome,
    pub ended_at: DateTime<Utc>,
    pub policy: PolicyTerms,
    /// The carrier's record of the call, when a real carrier placed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<CarrierCall>,
    /// When set, the outcome is of the attempt that began at this instant, and of no other
    /// with the same number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_started_at: Option<DateTime<Utc>>,
}

/// A retry became due at `due_at` (or, at a campaign's start, retries may be due now).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryMessage {
    pub v: u32,
    pub campaign_id: CampaignId,
    pub due_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WakeMessage {
    pub v: u32,
    pub campaign_id: CampaignId,
}

#[derive(Debug, thiserror::Error)]
#[error("undecodable message on {topic}: {source}")]
pub struct DecodeError {
    pub topic: &'static str,
    #[source]
    pub source: serde_json::Error,
}

pub fn encode<T: Serialize>(key: String, value: &T) -> Message {
    let mut headers = Vec::new();
    telemetry::inject_context(&mut headers);
    Message {
        key,
        // Serialising these plain structs cannot fail.
        payload: serde_json::to_vec(value).unwrap_or_default(),
        headers,
    }
}

pub fn decode<T: DeserializeOwned>(topic: Topic, message: &Message) -> Result<T, DecodeError> {
    serde_json::from_slice(&message.payload).map_err(|source| DecodeError {
        topic: topic.as_str(),
        source,
    })
}

/// What a role's loop does with a bus error: the bus closing (this process stopping) ends the
/// role; anything else, a broker outage, is logged, marks the role failing and is waited out
/// for `pause`, since every message not acknowledged is delivered again.
pub async fn outlast(
    error: BusError,
    ctx: &AppContext,
    role: RoleName,
    pause: std::time::Duration,
) -> Result<(), BusError> {
    if matches!(error, BusError::Closed) {
        return Err(error);
    }
    tracing::warn!(error = %error, role = role.as_str(), "bus unavailable, waiting it out");
    ctx.health.set(role, RoleHealth::Failing);
    tokio::time::sleep(pause).await;
    Ok(())
}

pub async fn publish(bus: &dyn Bus, topic: Topic, messages: Vec<Message>) -> Result<(), BusError> {
    if messages.is_empty() {
        return Ok(());
    }
    let count = messages.len() as u64;
    bus.publish(topic, messages).await?;
    metrics()
        .dispatched
        .with_label_values(&[topic.as_str()])
        .inc_by(count);
    Ok(())
}

pub async fn wake(
    bus: &dyn Bus,
    campaigns: impl IntoIterator<Item = CampaignId>,
) -> Result<(), BusError> {
    let messages = campaigns
        .into_iter()
        .map(|campaign_id| {
            encode(
                campaign_id.to_string(),
                &WakeMessage {
                    v: VERSION,
                    campaign_id,
                },
            )
        })
        .collect();
    publish(bus, Topic::Wake, messages).await
}
