//! Calls and attempts: a campaign's calls and finished attempts, one call with its attempts,
//! and a single call triggered outside any schedule.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

use super::targets::validate_metadata;
use super::{
    campaign_id, encode_token, page_limit, page_params, parse_id, wake_campaign, Ctx, Problems,
    Query,
};
use crate::domain::call::{merge_attempts, Attempt, Call, CallStatus};
use crate::domain::carrier::CarrierCall;
use crate::domain::ids::{CallId, CampaignId};
use crate::domain::metadata::Metadata;
use crate::domain::phone::PhoneNumber;
use crate::ports::CallFilter;
use crate::roles::api::access::Audit;
use crate::roles::api::error::{ApiError, ErrorBody};
use crate::roles::api::rfc3339;

#[derive(Debug, Deserialize, ToSchema)]
pub struct TriggerCallRequest {
    #[schema(value_type = String, required = true, format = Uuid)]
    pub campaign_id: Option<String>,
    /// A registered target of the campaign.
    #[schema(value_type = String, required = true)]
    pub phone_number: Option<String>,
    /// A JSON object of at most 64 keys and 4096 bytes (compact).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Box<RawValue>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallResponse {
    pub id: String,
    pub campaign_id: String,
    pub phone_number: String,
    pub status: String,
    pub attempt_count: u32,
    pub max_attempts: u32,
    pub scheduled_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
}

impl From<&Call> for CallResponse {
    fn from(c: &Call) -> Self {
        Self {
            id: c.id.to_string(),
            campaign_id: c.campaign_id.to_string(),
            phone_number: c.phone_number.to_string(),
            status: c.status.as_str().to_owned(),
            attempt_count: c.attempt_count,
            max_attempts: c.max_attempts,
            scheduled_at: rfc3339(c.scheduled_at),
            next_attempt_at: c.next_attempt_at.map(rfc3339),
            last_attempt_at: c.last_attempt_at.map(rfc3339),
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
            last_error: c.last_error.clone(),
            metadata: c.metadata.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptResponse {
    pub attempt: u32,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// What the carrier said about the call (real carriers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderCallResponse>,
    /// Who answered, when answering machine detection ran: human, machine_start,
    /// machine_end_beep, machine_end_silence, machine_end_other, fax or unknown.
    pub answered_by: Option<String>,
    /// What the callee's keys chose: a response's name, opt_out, unrecognized or none; null
    /// when the call ended before its message asked.
    pub response: Option<String>,
    /// Every key pressed, in order.
    pub digits: Option<String>,
    /// Whether the message's voicemail was left on the machine that answered.
    pub voicemail_left: bool,
}

/// The carrier's record of an attempt's call.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderCallResponse {
    /// The carrier's call id (Twilio's `CallSid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_sid: Option<String>,
    /// The last status the carrier reported: queued, initiated, ringing, in-progress,
    /// completed, busy, no-answer, failed or canceled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip_response_code: Option<u16>,
    /// human, machine_start, machine_end_beep, machine_end_silence, machine_end_other, fax or
    /// unknown, when answering machine detection ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    /// Connected seconds, as the carrier bills them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<u64>,
    /// The carrier's error code, for a refused create or a failed call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u32>,
}

impl From<&CarrierCall> for ProviderCallResponse {
    fn from(c: &CarrierCall) -> Self {
        Self {
            call_sid: c.sid.clone(),
            status: c.status.map(|s| s.as_str().to_owned()),
            sip_response_code: c.sip_code,
            answered_by: c.answered_by.clone(),
            duration_secs: c.duration_secs,
            error_code: c.error_code,
        }
    }
}

impl From<&Attempt> for AttemptResponse {
    fn from(a: &Attempt) -> Self {
        Self {
            attempt: a.attempt,
            status: a.status.as_str().to_owned(),
            error: a.error.clone(),
            started_at: rfc3339(a.started_at),
            ended_at: a.ended_at.map(rfc3339),
            duration_ms: a.duration_ms,
            provider: a.carrier.as_ref().map(ProviderCallResponse::from),
            answered_by: a
                .answer
                .answered_by
                .map(|by| by.as_str().to_owned())
                .or_else(|| a.carrier.as_ref().and_then(|c| c.answered_by.clone())),
            response: a.answer.response.clone(),
            digits: a.answer.digits.clone(),
            voicemail_left: a.answer.voicemail_left,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallDetailResponse {
    #[serde(flatten)]
    pub call: CallResponse,
    pub attempts: Vec<AttemptResponse>,
}

/// One finished attempt with the call it belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignAttemptResponse {
    pub call_id: String,
    #[serde(flatten)]
    pub attempt: AttemptResponse,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptListResponse {
    pub attempts: Vec<CampaignAttemptResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallListResponse {
    pub calls: Vec<CallResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// A number in a query string. Its `+` is meant when a bare one was sent, which form decoding
/// turns into a space.
fn query_number(raw: &str) -> Result<PhoneNumber, ApiError> {
    let number = match raw.strip_prefix(' ') {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => format!("+{rest}"),
        _ => raw.to_owned(),
    };
    PhoneNumber::parse(&number)
        .map_err(|err| ApiError::validation(vec![format!("phone_number: {raw:?} is {err}")]))
}

#[utoipa::path(get, path = "/api/v1/campaigns/{id}/calls",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "page size, 1 to 1000; default 100"), ("page_token" = Option<String>, Query, pattern = "^([A-Za-z0-9_-]{21}[AQgw])?$", description = "the next_page_token of the previous page; empty: the first page"), ("after_id" = Option<String>, Query, pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$", description = "the id to continue after (the page token takes precedence); empty: the first page"), ("status" = Option<String>, Query, pattern = "^(|queued|dialing|retrying|completed|failed|canceled)$", description = "only calls in this status; empty: all"), ("phone_number" = Option<String>, Query, description = "only calls to this number, E.164 with the usual separators tolerated (its `+` as %2B; a bare `+`, which a query string reads as a space, is taken for it); possible in its country's numbering plan, 400 validation_failed otherwise; empty: all", example = "+15555550100")),
    responses((status = 200, body = CallListResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_calls(
    ctx: Ctx,
    path: web::Path<String>,
    query: Query,
) -> Result<HttpResponse, ApiError> {
    let id = campaign_id(&path)?;
    let params = page_params(&query)?;
    let status = match params.status.as_deref() {
        None => None,
        Some(raw) => Some(CallStatus::parse(raw).ok_or_else(|| {
            ApiError::validation(vec![format!("status: unknown call status {raw:?}")])
        })?),
    };
    let phone_number = match query.get("phone_number").filter(|n| !n.is_empty()) {
        Some(raw) => Some(query_number(raw)?),
        None => None,
    };
    if ctx.store.get_campaign(id).await?.is_none() {
        return Err(ApiError::not_found("campaign"));
    }
    let filter = CallFilter {
        status,
        phone_number,
    };
    let mut calls = ctx
        .store
        .list_calls(id, &filter, params.after.map(CallId), params.limit + 1)
        .await?;
    let next_page_token = if calls.len() > params.limit {
        calls.truncate(params.limit);
        calls.last().map(|c| encode_token(c.id.0))
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(CallListResponse {
        calls: calls.iter().map(CallResponse::from).collect(),
        next_page_token,
    }))
}

/// A campaign's finished attempts, from the timeline. With a separate timeline (Scylla), an
/// attempt appears here once the status role has exported it, within about
/// `timeline.export_interval` of its end.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/attempts",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "page size, 1 to 1000; default 100"), ("page_token" = Option<String>, Query, description = "the next_page_token of the previous page (opaque: a token the server did not issue gets 400 invalid_page_token); empty: the first page")),
    responses((status = 200, body = AttemptListResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_attempts(
    ctx: Ctx,
    path: web::Path<String>,
    query: Query,
) -> Result<HttpResponse, ApiError> {
    let id = campaign_id(&path)?;
    let limit = page_limit(&query)?;
    let token = query.get("page_token").filter(|token| !token.is_empty());
    if ctx.store.get_campaign(id).await?.is_none() {
        return Err(ApiError::not_found("campaign"));
    }
    let page = ctx
        .timeline()
        .campaign_attempts(id, token.map(String::as_str), limit)
        .await?;
    Ok(HttpResponse::Ok().json(AttemptListResponse {
        attempts: page
            .entries
            .iter()
            .map(|entry| CampaignAttemptResponse {
                call_id: entry.call_id.to_string(),
                attempt: AttemptResponse::from(&entry.attempt),
            })
            .collect(),
        next_page_token: page.next_page_token,
    }))
}

#[utoipa::path(post, path = "/api/v1/calls", request_body = TriggerCallRequest,
    responses((status = 202, body = CallResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn trigger_call(
    ctx: Ctx,
    audit: Audit,
    body: web::Json<TriggerCallRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut problems = Problems::default();
    let campaign = match body.campaign_id.as_deref() {
        None => {
            problems.push("campaign_id", "is required");
            None
        }
        Some(raw) => match Uuid::parse_str(raw) {
            Ok(id) => Some(CampaignId(id)),
            Err(_) => {
                problems.push("campaign_id", format!("{raw:?} is not a UUID"));
                None
            }
        },
    };
    let metadata = match body.metadata.as_deref().map(validate_metadata) {
        Some(Err(problem)) => {
            problems.push("metadata", problem);
            None
        }
        Some(Ok(metadata)) => Some(metadata),
        None => None,
    };
    let number = match body.phone_number.as_deref() {
        None => {
            problems.push("phone_number", "is required");
            None
        }
        Some(raw) => PhoneNumber::parse(raw)
            .map_err(|err| problems.push("phone_number", format!("{raw:?} is {err}")))
            .ok(),
    };
    let (Some(campaign_id), Some(phone_number), true) = (campaign, number, problems.is_empty())
    else {
        return Err(ApiError::validation(problems.0));
    };
    let calls = ctx
        .store
        .enqueue_calls_audited(
            campaign_id,
            vec![crate::ports::NewTarget {
                phone_number,
                time_zone: None,
                metadata,
            }],
            Utc::now(),
            audit.entry(StatusCode::ACCEPTED, Some(campaign_id.to_string())),
        )
        .await
        .map_err(|err| match err {
            crate::ports::StoreError::NotFound => ApiError::not_found("campaign"),
            other => other.into(),
        })?;
    audit.recorded();
    wake_campaign(&ctx, campaign_id).await;
    let call = calls
        .first()
        .ok_or_else(|| ApiError::internal(&"enqueue returned no call"))?;
    Ok(HttpResponse::build(StatusCode::ACCEPTED).json(CallResponse::from(call)))
}

#[utoipa::path(get, path = "/api/v1/calls/{id}",
    responses((status = 200, body = CallDetailResponse), (status = 404, body = ErrorBody)))]
pub async fn get_call(ctx: Ctx, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = CallId(parse_id(&path)?);
    let (call, mut attempts) = ctx
        .store
        .get_call(id)
        .await?
        .ok_or_else(|| ApiError::not_found("call"))?;
    if let Some(timeline) = &ctx.separate_timeline {
        // After the store: an attempt the exporter moved meanwhile is in the timeline by then.
        let exported = timeline.call_attempts(call.campaign_id, id).await?;
        attempts = merge_attempts(attempts, exported);
    }
    Ok(HttpResponse::Ok().json(CallDetailResponse {
        call: CallResponse::from(&call),
        attempts: attempts.iter().map(AttemptResponse::from).collect(),
    }))
}
