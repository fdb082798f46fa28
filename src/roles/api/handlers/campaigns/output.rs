//! A campaign as the API answers it.

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::business_hours::BusinessHours;
use crate::domain::campaign::{Campaign, PauseReason, RetryPolicy};
use crate::domain::carrier::Audio;
use crate::domain::compliance::caps::format_window;
use crate::domain::compliance::FrequencyCap;
use crate::domain::duration::format_go_duration;
use crate::domain::message::Message;
use crate::domain::metadata::Metadata;
use crate::domain::stats::CampaignStats;
use crate::ports::NewTarget;
use crate::roles::api::rfc3339;

#[derive(Debug, Serialize, ToSchema)]
pub struct RetryPolicyResponse {
    pub max_attempts: u32,
    pub base_delay: String,
    pub max_delay: String,
    pub jitter: f64,
}

impl From<&RetryPolicy> for RetryPolicyResponse {
    fn from(policy: &RetryPolicy) -> Self {
        Self {
            max_attempts: policy.max_attempts,
            base_delay: format_go_duration(policy.base_delay),
            max_delay: format_go_duration(policy.max_delay),
            jitter: policy.jitter,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BusinessHourResponse {
    pub day_of_week: u8,
    pub start: String,
    pub end: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignResponse {
    pub id: String,
    pub name: String,
    pub description: String,
    pub time_zone: String,
    pub status: String,
    pub max_concurrent_calls: u32,
    pub retry_policy: RetryPolicyResponse,
    pub business_hours: Vec<BusinessHourResponse>,
    /// Windows read in each called party's time zone; empty: no restriction.
    pub recipient_hours: Vec<BusinessHourResponse>,
    pub restricted_periods: Vec<RestrictedPeriodResponse>,
    pub recipient_limits: Vec<RecipientLimitResponse>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    pub target_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub twiml: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice_url: Option<String>,
    /// What the call says and listens for (`spec/voice.md`), with its defaults filled in.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub message: Option<serde_json::Value>,
    /// Why the engine paused the campaign by itself; absent for an operator's pause and once
    /// it starts again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<PauseReasonResponse>,
}

/// Why the engine paused a campaign by itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct PauseReasonResponse {
    /// `carrier_refused`: the carrier refuses what the campaign asks of it (its caller ID, its
    /// audio URL).
    pub code: String,
    /// The carrier's error code, when it gave one (21210: a caller ID the account may not use).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carrier_code: Option<u32>,
    pub message: String,
}

impl From<&PauseReason> for PauseReasonResponse {
    fn from(reason: &PauseReason) -> Self {
        Self {
            code: reason.code.clone(),
            carrier_code: reason.carrier_code,
            message: reason.message.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecipientLimitResponse {
    pub max_attempts: u32,
    /// As given, days as "7d", other windows as Go prints them ("36h0m0s").
    pub per: String,
}

impl From<&FrequencyCap> for RecipientLimitResponse {
    fn from(cap: &FrequencyCap) -> Self {
        Self {
            max_attempts: cap.max_attempts,
            per: format_window(cap.per),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RestrictedPeriodResponse {
    pub name: String,
    pub start: String,
    pub end: String,
}

fn windows_response(hours: &BusinessHours) -> Vec<BusinessHourResponse> {
    hours
        .windows()
        .iter()
        .map(|w| BusinessHourResponse {
            day_of_week: w.day_of_week,
            start: w.start.to_string(),
            end: w.end.to_string(),
        })
        .collect()
}

impl From<&Campaign> for CampaignResponse {
    fn from(c: &Campaign) -> Self {
        Self {
            id: c.id.to_string(),
            name: c.name.clone(),
            description: c.description.clone(),
            time_zone: c.time_zone.name().to_owned(),
            status: c.status.as_str().to_owned(),
            max_concurrent_calls: c.max_concurrent_calls,
            retry_policy: (&c.retry_policy).into(),
            business_hours: windows_response(&c.business_hours),
            recipient_hours: windows_response(&c.recipient_hours),
            restricted_periods: c
                .restricted_periods
                .iter()
                .map(|p| RestrictedPeriodResponse {
                    name: p.name.clone(),
                    start: p.start.to_string(),
                    end: p.end.to_string(),
                })
                .collect(),
            recipient_limits: c.recipient_limits.iter().map(Into::into).collect(),
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
            started_at: c.started_at.map(rfc3339),
            completed_at: c.completed_at.map(rfc3339),
            target_count: c.target_count,
            caller_id: c.voice.caller_id.clone(),
            twiml: match &c.voice.audio {
                Some(Audio::Twiml(twiml)) => Some(twiml.clone()),
                _ => None,
            },
            voice_url: match &c.voice.audio {
                Some(Audio::VoiceUrl(url)) => Some(url.clone()),
                _ => None,
            },
            message: c.voice.message().map(Message::to_value),
            pause_reason: c.pause_reason.as_ref().map(Into::into),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignListResponse {
    pub campaigns: Vec<CampaignResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatsResponse {
    pub campaign_id: String,
    pub total_targets: u64,
    pub total_calls: u64,
    pub pending_calls: u64,
    /// The pending calls waiting for their turn (a window, the limit, their first dial).
    pub queued_calls: u64,
    /// The pending calls waiting out a backoff before their next attempt.
    pub retrying_calls: u64,
    pub in_progress_calls: u64,
    pub completed_calls: u64,
    pub failed_calls: u64,
    pub canceled_calls: u64,
    pub retries_attempted: u64,
    pub attempts_total: u64,
    pub avg_duration_ms: f64,
    /// Calls by the response their latest attempt with one recorded: the message's response
    /// names, opt_out, unrecognized and none.
    #[schema(value_type = std::collections::BTreeMap<String, u64>)]
    pub responses: std::collections::BTreeMap<String, u64>,
    /// Calls whose callee opted out by key press (the `opt_out` response).
    pub opted_out: u64,
    /// Calls with a voicemail left on a machine.
    pub voicemails_left: u64,
    /// Calls whose latest verdict on who answered was a machine.
    pub machine_answered: u64,
    pub updated_at: String,
}

impl From<&CampaignStats> for StatsResponse {
    fn from(s: &CampaignStats) -> Self {
        Self {
            campaign_id: s.campaign_id.to_string(),
            total_targets: s.total_targets,
            total_calls: s.total_calls,
            pending_calls: s.pending_calls(),
            queued_calls: s.queued_calls,
            retrying_calls: s.retrying_calls,
            in_progress_calls: s.dialing_calls,
            completed_calls: s.completed_calls,
            failed_calls: s.failed_calls,
            canceled_calls: s.canceled_calls,
            retries_attempted: s.retries_attempted,
            attempts_total: s.attempts_total,
            avg_duration_ms: s.avg_duration_ms(),
            responses: s.answers.responses.clone(),
            opted_out: s.answers.opted_out(),
            voicemails_left: s.answers.voicemails_left,
            machine_answered: s.answers.machine_answered,
            updated_at: rfc3339(s.updated_at),
        }
    }
}

/// What a valid create would register, without registering it (`?dry_run=true`); an invalid
/// one gets the create's 400 with every problem.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"dry_run": true, "targets": 2}))]
pub struct DryRunResponse {
    pub dry_run: bool,
    /// Distinct target numbers.
    pub targets: usize,
    /// The first targets as a create would register them (canonical numbers, duplicates
    /// merged), at most `DRY_RUN_PREVIEW`.
    pub preview: Vec<TargetPreview>,
}

/// How many targets a dry run shows.
pub const DRY_RUN_PREVIEW: usize = 10;

/// A target as it would be registered.
#[derive(Debug, Serialize, ToSchema)]
pub struct TargetPreview {
    pub phone_number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
    /// With a message: what this target will hear, in order (a `play` part as `[audio URL]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spoken: Option<Vec<String>>,
}

impl TargetPreview {
    pub fn of(t: &NewTarget, message: Option<&Message>) -> Self {
        Self {
            phone_number: t.phone_number.as_str().to_owned(),
            time_zone: t.time_zone.map(|tz| tz.name().to_owned()),
            metadata: t.metadata.clone(),
            spoken: message.map(|message| super::message::spoken(message, t)),
        }
    }
}
