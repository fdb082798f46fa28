//! One handler per endpoint. Handlers validate, call the store through its port, and publish
//! the wake-ups that let the scheduler react at once.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use uuid::Uuid;

use super::access::Audit;
use super::dto::*;
use super::error::{ApiError, ErrorBody, MAX_DETAILS, MAX_DRY_RUN_DETAILS};
use super::probe::Probe;
use super::uploads::{self, Upload};
use crate::context::AppContext;
use crate::domain::admission::{
    CampaignRules, DialCheck, LimitsReached, NumberFacts, PendingTally,
};
use crate::domain::call::{merge_attempts, CallStatus};
use crate::domain::campaign::{CampaignChanges, CampaignStatus, StatusAction, Transition};
use crate::domain::carrier::Voice;
use crate::domain::compliance::{Hold, HoldCode};
use crate::domain::forecast;
use crate::domain::ids::{CallId, CampaignId};
use crate::domain::phone::PhoneNumber;
use crate::ports::{CallFilter, NewCampaign, Topic};
use crate::roles::messages::{self, RetryMessage};

type Ctx = web::Data<AppContext>;
type Query = web::Query<HashMap<String, String>>;

/// An id as the contract document describes it: a hyphenated UUID, nothing else.
pub(super) fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    if raw.len() != 36 {
        return Err(ApiError::invalid_id(raw));
    }
    Uuid::parse_str(raw).map_err(|_| ApiError::invalid_id(raw))
}

pub(super) fn campaign_id(raw: &str) -> Result<CampaignId, ApiError> {
    parse_id(raw).map(CampaignId)
}

pub(super) fn encode_token(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

pub(super) fn decode_token(token: &str) -> Result<Uuid, ApiError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| ApiError::invalid_page_token())?;
    Uuid::from_slice(&bytes).map_err(|_| ApiError::invalid_page_token())
}

struct PageParams {
    limit: usize,
    after: Option<Uuid>,
    status: Option<String>,
}

fn page_params(query: &HashMap<String, String>) -> Result<PageParams, ApiError> {
    let limit = page_limit(query)?;
    // The system we replace paged with the id to continue after; it is checked even when the
    // page token, which takes precedence, is there too.
    let after_id = match query.get("after_id").filter(|id| !id.is_empty()) {
        Some(id) => Some(
            parse_id(id)
                .map_err(|_| ApiError::validation(vec![format!("after_id: not an id: {id:?}")]))?,
        ),
        None => None,
    };
    let after = match query.get("page_token").filter(|token| !token.is_empty()) {
        Some(token) => Some(decode_token(token)?),
        None => after_id,
    };
    Ok(PageParams {
        limit,
        after,
        status: query.get("status").filter(|s| !s.is_empty()).cloned(),
    })
}

pub(super) fn page_limit(query: &HashMap<String, String>) -> Result<usize, ApiError> {
    Ok(match query.get("limit") {
        None => 100,
        Some(raw) => match raw.parse::<usize>() {
            Ok(limit) if (1..=1000).contains(&limit) => limit,
            _ => {
                return Err(ApiError::validation(vec![format!(
                    "limit: must be an integer from 1 to 1000, got {raw:?}"
                )]))
            }
        },
    })
}

async fn wake_campaign(ctx: &AppContext, campaign_id: CampaignId) {
    // The scheduler also rescans on a timer, so a lost wake-up only delays dialing.
    if let Err(err) = messages::wake(&*ctx.bus, [campaign_id]).await {
        tracing::warn!(error = %err, %campaign_id, "cannot wake the scheduler");
    }
}

/// How a CSV upload names a target's field: by its line (line 1 is the header).
fn csv_field(index: usize, column: &str) -> String {
    format!("line {}: {column}", uploads::line_of(index))
}

/// Targets from a CSV body, parsed off the worker's thread; their metadata may take at most
/// as much room as the largest body.
async fn csv_targets(ctx: &AppContext, body: web::Bytes) -> Result<Vec<TargetInput>, ApiError> {
    let stored_limit = ctx.settings.http.body_limit_bytes;
    uploads::parse_off_thread(move || uploads::targets_from_csv(&body, stored_limit)).await
}

#[utoipa::path(post, path = "/api/v1/campaigns",
    request_body(description = "JSON, or text/csv with the targets one per row (a phone_number column, an optional time_zone, every other column kept as metadata) and the campaign's name, time_zone and optional description, max_concurrent_calls and caller_id as query parameters",
        content(
        (CreateCampaignRequest = "application/json"),
        (String = "text/csv", example = "phone_number,time_zone,customer\n+15555550001,America/Chicago,A-17\n"))),
    params(("name" = Option<String>, Query, description = "with a text/csv body: the campaign's name"),
        ("time_zone" = Option<String>, Query, description = "with a text/csv body: the campaign's IANA time zone"),
        ("description" = Option<String>, Query, description = "with a text/csv body"),
        ("max_concurrent_calls" = Option<String>, Query, description = "with a text/csv body: 1 to 100000"),
        ("caller_id" = Option<String>, Query, description = "with a text/csv body: E.164"),
        ("dry_run" = Option<bool>, Query, description = "true: validate only and create nothing: 200 with the count of targets a create would register, or the create's 400 listing its problems (up to 10000 of them; the name's uniqueness is checked only when creating)")),
    responses((status = 201, body = CampaignResponse), (status = 200, body = DryRunResponse, description = "with dry_run=true"),
        (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_campaign(
    ctx: Ctx,
    audit: Audit,
    req: HttpRequest,
    query: Query,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let dry_run = match query.get("dry_run").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::validation(vec![format!(
                "dry_run: must be true or false, got {other:?}"
            )]))
        }
    };
    let limit = ctx.settings.http.body_limit_bytes;
    let (body, field_of): (CreateCampaignRequest, FieldOf) =
        match uploads::read(&req, payload, limit).await? {
            Upload::Json(bytes) => (uploads::json(&bytes)?, json_target_field),
            Upload::Csv(bytes) => {
                let targets = csv_targets(&ctx, bytes).await?;
                let body = CreateCampaignRequest::from_query(&query, targets)
                    .map_err(ApiError::validation)?;
                (body, csv_field)
            }
        };
    let mut problems = Problems::default();
    let name = validate_name(body.name.as_deref(), &mut problems);
    let time_zone = validate_time_zone(body.time_zone.as_deref(), &mut problems);
    let max_concurrent = validate_max_concurrent(
        body.max_concurrent_calls.unwrap_or(i64::from(
            ctx.settings.campaign.default_max_concurrent_calls,
        )),
        &mut problems,
    );
    let policy = validate_retry_policy(&body.retry_policy.unwrap_or_default(), &mut problems);
    let hours = validate_business_hours(&body.business_hours.unwrap_or_default(), &mut problems);
    let recipient_hours = match body.recipient_hours.as_deref() {
        Some(windows) => validate_windows("recipient_hours", windows, &mut problems),
        None => Some(ctx.settings.compliance.recipient_hours()),
    };
    let restricted_periods = validate_restricted_periods(
        body.restricted_periods.as_deref().unwrap_or_default(),
        &mut problems,
    );
    let recipient_limits = validate_recipient_limits(
        body.recipient_limits.as_deref().unwrap_or_default(),
        &mut problems,
    );
    let targets = validate_targets_as(body.targets.unwrap_or_default(), &mut problems, field_of);
    let description = validate_description(body.description, &mut problems);
    let (caller_id, audio) = validate_voice(voice_input!(body), &mut problems);
    let voice = Voice {
        caller_id: caller_id.flatten(),
        audio: audio.flatten(),
    };
    let (
        Some(name),
        Some(time_zone),
        Some(max_concurrent),
        Some(policy),
        Some(hours),
        Some(recipient_hours),
        Some(restricted_periods),
        Some(recipient_limits),
        true,
    ) = (
        name,
        time_zone,
        max_concurrent,
        policy,
        hours,
        recipient_hours,
        restricted_periods,
        recipient_limits,
        problems.is_empty(),
    )
    else {
        let most = if dry_run {
            MAX_DRY_RUN_DETAILS
        } else {
            MAX_DETAILS
        };
        return Err(ApiError::validation_up_to(problems.0, most));
    };
    if dry_run {
        return Ok(HttpResponse::Ok().json(DryRunResponse {
            dry_run: true,
            targets: targets.len(),
            preview: targets
                .iter()
                .take(DRY_RUN_PREVIEW)
                .map(TargetPreview::from)
                .collect(),
        }));
    }
    let id = CampaignId::new();
    let campaign = ctx
        .store
        .create_campaign_audited(
            NewCampaign {
                id,
                name,
                description: description.unwrap_or_default(),
                time_zone,
                max_concurrent_calls: max_concurrent,
                retry_policy: policy,
                business_hours: hours,
                recipient_hours,
                restricted_periods,
                recipient_limits,
                voice,
                targets,
            },
            Utc::now(),
            audit.entry(StatusCode::CREATED, Some(id.to_string())),
        )
        .await?;
    audit.recorded();
    tracing::info!(campaign_id = %campaign.id, targets = campaign.target_count, "campaign created");
    Ok(HttpResponse::Created().json(CampaignResponse::from(&campaign)))
}

#[utoipa::path(get, path = "/api/v1/campaigns",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "page size, 1 to 1000; default 100"), ("page_token" = Option<String>, Query, pattern = "^([A-Za-z0-9_-]{21}[AQgw])?$", description = "the next_page_token of the previous page; empty: the first page"), ("after_id" = Option<String>, Query, pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$", description = "the id to continue after (the page token takes precedence); empty: the first page"), ("status" = Option<String>, Query, pattern = "^(|pending|in_progress|paused|completed|failed)$", description = "only campaigns in this status; empty: all")),
    responses((status = 200, body = CampaignListResponse), (status = 400, body = ErrorBody)))]
pub async fn list_campaigns(ctx: Ctx, query: Query) -> Result<HttpResponse, ApiError> {
    let params = page_params(&query)?;
    let status = match params.status.as_deref() {
        None => None,
        Some(raw) => Some(CampaignStatus::parse(raw).ok_or_else(|| {
            ApiError::validation(vec![format!("status: unknown campaign status {raw:?}")])
        })?),
    };
    let mut campaigns = ctx
        .store
        .list_campaigns(status, params.after.map(CampaignId), params.limit + 1)
        .await?;
    let next_page_token = if campaigns.len() > params.limit {
        campaigns.truncate(params.limit);
        campaigns.last().map(|c| encode_token(c.id.0))
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(CampaignListResponse {
        campaigns: campaigns.iter().map(CampaignResponse::from).collect(),
        next_page_token,
    }))
}

#[utoipa::path(get, path = "/api/v1/campaigns/{id}",
    responses((status = 200, body = CampaignResponse), (status = 404, body = ErrorBody)))]
pub async fn get_campaign(ctx: Ctx, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = campaign_id(&path)?;
    let campaign = ctx
        .store
        .get_campaign(id)
        .await?
        .ok_or_else(|| ApiError::not_found("campaign"))?;
    Ok(HttpResponse::Ok().json(CampaignResponse::from(&campaign)))
}

#[utoipa::path(put, path = "/api/v1/campaigns/{id}", request_body = UpdateCampaignRequest,
    responses((status = 200, body = CampaignResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update_campaign(
    ctx: Ctx,
    audit: Audit,
    path: web::Path<String>,
    body: web::Json<UpdateCampaignRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = campaign_id(&path)?;
    let body = body.into_inner();
    let mut problems = Problems::default();
    let (caller_id, audio) = validate_voice(voice_input!(body), &mut problems);
    let changes = CampaignChanges {
        caller_id,
        audio,
        name: body
            .name
            .as_deref()
            .and_then(|name| validate_name(Some(name), &mut problems)),
        description: validate_description(body.description, &mut problems),
        max_concurrent_calls: body
            .max_concurrent_calls
            .and_then(|value| validate_max_concurrent(value, &mut problems)),
        retry_policy: body
            .retry_policy
            .as_ref()
            .and_then(|policy| validate_retry_policy(policy, &mut problems)),
        business_hours: body
            .business_hours
            .as_deref()
            .and_then(|hours| validate_business_hours(hours, &mut problems)),
        recipient_hours: body
            .recipient_hours
            .as_deref()
            .and_then(|hours| validate_windows("recipient_hours", hours, &mut problems)),
        restricted_periods: body
            .restricted_periods
            .as_deref()
            .and_then(|periods| validate_restricted_periods(periods, &mut problems)),
        recipient_limits: body
            .recipient_limits
            .as_deref()
            .and_then(|limits| validate_recipient_limits(limits, &mut problems)),
    };
    if !problems.is_empty() {
        return Err(ApiError::validation(problems.0));
    }
    let campaign = ctx
        .store
        .update_campaign_audited(id, changes, Utc::now(), audit.entry(StatusCode::OK, None))
        .await
        .map_err(|err| match err {
            crate::ports::StoreError::NotFound => ApiError::not_found("campaign"),
            other => other.into(),
        })?;
    audit.recorded();
    // New limits or hours may let more calls through right away.
    wake_campaign(&ctx, id).await;
    Ok(HttpResponse::Ok().json(CampaignResponse::from(&campaign)))
}

async fn transition(
    ctx: &AppContext,
    audit: Audit,
    raw_id: &str,
    action: StatusAction,
) -> Result<HttpResponse, ApiError> {
    let id = campaign_id(raw_id)?;
    let transition = ctx
        .store
        .transition_campaign_audited(
            id,
            action,
            Utc::now(),
            audit.entry(StatusCode::NO_CONTENT, None),
        )
        .await
        .map_err(|err| match err {
            crate::ports::StoreError::NotFound => ApiError::not_found("campaign"),
            other => other.into(),
        })?;
    audit.recorded();
    tracing::info!(campaign_id = %id, action = action.as_str(), ?transition, "campaign status action");
    if action == StatusAction::Start {
        wake_campaign(ctx, id).await;
        if transition == Transition::To(CampaignStatus::InProgress) {
            // Retries that fell due while paused are due now.
            let kick = messages::encode(
                id.to_string(),
                &RetryMessage {
                    v: messages::VERSION,
                    campaign_id: id,
                    due_at: Utc::now(),
                },
            );
            if let Err(err) = messages::publish(&*ctx.bus, Topic::Retry, vec![kick]).await {
                tracing::warn!(error = %err, campaign_id = %id, "cannot notify the retry role");
            }
        }
    }
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/start",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn start_campaign(
    ctx: Ctx,
    audit: Audit,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    transition(&ctx, audit, &path, StatusAction::Start).await
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/pause",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn pause_campaign(
    ctx: Ctx,
    audit: Audit,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    transition(&ctx, audit, &path, StatusAction::Pause).await
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/complete",
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn complete_campaign(
    ctx: Ctx,
    audit: Audit,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    transition(&ctx, audit, &path, StatusAction::Complete).await
}

#[utoipa::path(get, path = "/api/v1/campaigns/{id}/stats",
    responses((status = 200, body = StatsResponse), (status = 404, body = ErrorBody)))]
pub async fn campaign_stats(ctx: Ctx, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = campaign_id(&path)?;
    let stats = ctx
        .store
        .campaign_stats(id)
        .await?
        .ok_or_else(|| ApiError::not_found("campaign"))?;
    Ok(HttpResponse::Ok().json(StatsResponse::from(&stats)))
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/targets",
    request_body(description = "JSON, or text/csv with one target per row: a phone_number column, an optional time_zone, every other column kept as metadata",
        content(
        (AddTargetsRequest = "application/json"),
        (String = "text/csv", example = "phone_number\n+15555550001\n"))),
    responses((status = 202, body = AcceptedResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_targets(
    ctx: Ctx,
    audit: Audit,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = campaign_id(&path)?;
    let limit = ctx.settings.http.body_limit_bytes;
    let (input, field_of): (Vec<TargetInput>, FieldOf) =
        match uploads::read(&req, payload, limit).await? {
            Upload::Json(bytes) => (
                uploads::json::<AddTargetsRequest>(&bytes)?
                    .targets
                    .unwrap_or_default(),
                json_target_field,
            ),
            Upload::Csv(bytes) => (csv_targets(&ctx, bytes).await?, csv_field),
        };
    let mut problems = Problems::default();
    if input.is_empty() {
        problems.push("targets", "must list at least one target");
    }
    let targets = validate_targets_as(input, &mut problems, field_of);
    if !problems.is_empty() {
        return Err(ApiError::validation(problems.0));
    }
    let calls = ctx
        .store
        .enqueue_calls_audited(
            id,
            targets,
            Utc::now(),
            audit.entry(StatusCode::ACCEPTED, None),
        )
        .await
        .map_err(|err| match err {
            crate::ports::StoreError::NotFound => ApiError::not_found("campaign"),
            other => other.into(),
        })?;
    audit.recorded();
    wake_campaign(&ctx, id).await;
    Ok(
        HttpResponse::build(StatusCode::ACCEPTED).json(AcceptedResponse {
            accepted: calls.len() as u64,
        }),
    )
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

/// Most waiting calls read to explain a campaign: past them the counts are estimated from this
/// sample, so an explanation costs the same on a campaign of any size.
const EXPLAIN_SAMPLE: usize = 2_000;

/// Why a campaign's waiting calls wait, counted from the rules the dialer applies: over every
/// waiting call up to `EXPLAIN_SAMPLE` of them, estimated from the first `EXPLAIN_SAMPLE` in id
/// order (the earliest registered) beyond.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/explain",
    responses((status = 200, body = CampaignExplainResponse), (status = 404, body = ErrorBody)))]
pub async fn explain_campaign(ctx: Ctx, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = campaign_id(&path)?;
    let campaign = ctx
        .store
        .get_campaign(id)
        .await?
        .ok_or_else(|| ApiError::not_found("campaign"))?;
    let now = Utc::now();
    let stats = ctx.store.campaign_stats(id).await?;
    let dialing = stats.as_ref().map_or(0, |stats| stats.dialing_calls);
    let waiting = stats.as_ref().map_or(0, |stats| stats.pending_calls());
    let limits = LimitsReached {
        campaign: dialing >= u64::from(campaign.max_concurrent_calls),
        global: ctx.store.dialing_now().await?
            >= u64::from(ctx.settings.throttle.global_concurrency),
    };
    let rules = CampaignRules::of(&campaign);
    let mut tally = PendingTally::default();
    let sample = ctx
        .store
        .pending_calls(id, None, EXPLAIN_SAMPLE + 1, now)
        .await?;
    let exact = sample.len() <= EXPLAIN_SAMPLE;
    let sampled = sample.len().min(EXPLAIN_SAMPLE);
    for (_, call) in sample.into_iter().take(EXPLAIN_SAMPLE) {
        tally.add(&ctx.compliance, &rules, call, limits, now);
    }
    if !exact {
        tally.scale_to(sampled as u64, waiting.max(sampled as u64));
    }
    let running = campaign.status == CampaignStatus::InProgress;
    let dialable_now = running && tally.dialable > 0;
    let next_dial_at = if dialable_now {
        Some(now)
    } else if running {
        tally.next_dial_at
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(CampaignExplainResponse {
        campaign_id: id.to_string(),
        status: campaign.status.as_str().to_owned(),
        dialable_now,
        next_dial_at: next_dial_at.map(rfc3339),
        pending_by_reason: tally
            .by_reason
            .into_iter()
            .map(|(code, n)| (code.as_str().to_owned(), n))
            .collect(),
        pause_reason: campaign.pause_reason.as_ref().map(Into::into),
        exact,
        sampled_calls: (!exact).then_some(sampled as u64),
    }))
}

/// Waiting calls a forecast samples for their recipients' rules.
const FORECAST_SAMPLE: usize = 1_000;

/// When the campaign will be done, and what it assumed; what-if parameters answer for other
/// settings without changing the campaign.
// The document states `business_hours` as JSON content, an array of `BusinessHourInput`
// (contract.rs).
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/forecast",
    params(("max_concurrent_calls" = Option<u32>, Query, minimum = 1, maximum = 100000, description = "what if the limit were this"),
        ("business_hours" = Option<String>, Query, description = "what if the business hours were these: a JSON array of {day_of_week, start, end}, as a campaign takes them (a window whose start equals its end gets 400 validation_failed)")),
    responses((status = 200, body = ForecastResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn campaign_forecast(
    ctx: Ctx,
    path: web::Path<String>,
    query: Query,
) -> Result<HttpResponse, ApiError> {
    let id = campaign_id(&path)?;
    let mut problems = Problems::default();
    let mut what_if = Vec::new();
    let limit = query.get("max_concurrent_calls").and_then(|raw| {
        what_if.push("max_concurrent_calls".to_owned());
        match raw.parse::<i64>() {
            Ok(n) => validate_max_concurrent(n, &mut problems),
            Err(_) => {
                problems.push(
                    "max_concurrent_calls",
                    format!("must be an integer, got {raw:?}"),
                );
                None
            }
        }
    });
    let hours = query.get("business_hours").and_then(|raw| {
        what_if.push("business_hours".to_owned());
        match serde_json::from_str::<Vec<BusinessHourInput>>(raw) {
            Ok(windows) => validate_business_hours(&windows, &mut problems),
            Err(err) => {
                problems.push(
                    "business_hours",
                    format!("must be a JSON array of windows: {err}"),
                );
                None
            }
        }
    });
    if !problems.is_empty() {
        return Err(ApiError::validation(problems.0));
    }
    let campaign = ctx
        .store
        .get_campaign(id)
        .await?
        .ok_or_else(|| ApiError::not_found("campaign"))?;
    let stats = ctx
        .store
        .campaign_stats(id)
        .await?
        .ok_or_else(|| ApiError::not_found("campaign"))?;
    let now = Utc::now();
    let sample: Vec<_> = ctx
        .store
        .pending_calls(id, None, FORECAST_SAMPLE, now)
        .await?
        .into_iter()
        .map(|(_, call)| call)
        .collect();
    let mut rules = CampaignRules::of(&campaign);
    if let Some(hours) = hours {
        rules.business_hours = hours;
    }
    let observed = forecast::Observed {
        pending_calls: stats.pending_calls(),
        dialing_calls: stats.dialing_calls,
        completed_calls: stats.completed_calls,
        failed_calls: stats.failed_calls,
        attempts_total: stats.attempts_total,
        retries_attempted: stats.retries_attempted,
        finished_attempts: stats.finished_attempts,
        call_seconds: stats.avg_duration_ms() / 1000.0,
        started_at: campaign.started_at,
        limit: campaign.max_concurrent_calls,
    };
    let limit = limit.unwrap_or(campaign.max_concurrent_calls);
    let predicted = forecast::forecast(
        &ctx.compliance,
        &rules,
        limit,
        campaign.retry_policy.max_attempts,
        &observed,
        sample,
        now,
    );
    // A completed campaign ended when it did.
    let completes_at = match (campaign.status, campaign.completed_at) {
        (CampaignStatus::Completed, Some(at)) => Some(at),
        _ => predicted.completes_at,
    };
    let a = predicted.assumptions;
    Ok(HttpResponse::Ok().json(ForecastResponse {
        campaign_id: id.to_string(),
        status: campaign.status.as_str().to_owned(),
        completes_at: completes_at.map(rfc3339),
        what_if,
        assumptions: ForecastAssumptions {
            max_concurrent_calls: a.limit,
            call_seconds: a.call_seconds,
            slot_seconds: a.slot_seconds,
            answer_rate: a.answer_rate,
            retry_rate: a.retry_rate,
            attempts_per_call: a.attempts_per_call,
            remaining_attempts: a.remaining_attempts,
            attempts_per_second: a.attempts_per_second,
            sampled_calls: a.sampled_calls,
            recipient_groups: a.recipient_groups,
        },
    }))
}

/// Why a call is or is not being dialed now, from the rules the dialer applies.
#[utoipa::path(get, path = "/api/v1/calls/{id}/explain",
    responses((status = 200, body = ExplainResponse), (status = 404, body = ErrorBody)))]
pub async fn explain_call(ctx: Ctx, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = CallId(parse_id(&path)?);
    let (call, _) = ctx
        .store
        .get_call(id)
        .await?
        .ok_or_else(|| ApiError::not_found("call"))?;
    let campaign = ctx
        .store
        .get_campaign(call.campaign_id)
        .await?
        .ok_or_else(|| ApiError::not_found("campaign"))?;
    let now = Utc::now();
    let mut reasons: Vec<Hold> = Vec::new();
    let waiting = matches!(call.status, CallStatus::Queued | CallStatus::Retrying);
    if call.status == CallStatus::Canceled && call.last_error.as_deref() == Some("do_not_call") {
        reasons.push(Hold {
            code: HoldCode::DoNotCall,
            message: "canceled: the number is on the do-not-call list".into(),
            until: None,
        });
    }
    if call.status == CallStatus::Failed && call.attempt_count >= call.max_attempts {
        reasons.push(Hold {
            code: HoldCode::AttemptsExhausted,
            message: format!("all {} attempts were made", call.max_attempts),
            until: None,
        });
    }
    if waiting {
        if call.status == CallStatus::Retrying {
            reasons.push(Hold {
                code: HoldCode::Backoff,
                message: "waiting out the retry backoff".into(),
                until: call.next_attempt_at,
            });
        }
        let facts = NumberFacts {
            time_zone: call.time_zone,
            ..ctx
                .store
                .number_facts(campaign.id, &call.phone_number, now)
                .await?
        };
        let check = DialCheck::for_call(
            &ctx.compliance,
            CampaignRules::of(&campaign),
            call.phone_number.as_str(),
            facts,
        );
        reasons.extend(check.explain(now));
        if let Some(stats) = ctx.store.campaign_stats(campaign.id).await? {
            if stats.dialing_calls >= u64::from(campaign.max_concurrent_calls) {
                reasons.push(Hold {
                    code: HoldCode::CampaignLimit,
                    message: format!(
                        "the campaign's {} concurrent calls are all in use",
                        campaign.max_concurrent_calls
                    ),
                    until: None,
                });
            }
        }
        let cap = ctx.settings.throttle.global_concurrency;
        if ctx.store.dialing_now().await? >= u64::from(cap) {
            reasons.push(Hold {
                code: HoldCode::GlobalLimit,
                message: format!("the deployment's {cap} concurrent calls are all in use"),
                until: None,
            });
        }
    }
    Ok(HttpResponse::Ok().json(ExplainResponse {
        call_id: call.id.to_string(),
        status: call.status.as_str().to_owned(),
        dialable_now: call.status == CallStatus::Queued && reasons.is_empty(),
        reasons: reasons
            .into_iter()
            .map(|hold| ReasonResponse {
                code: hold.code.as_str().to_owned(),
                message: hold.message,
                until: hold.until.map(rfc3339),
            })
            .collect(),
    }))
}

pub async fn healthz(ctx: Ctx, probe: web::Data<Probe>) -> HttpResponse {
    let backends = probe.backends(&ctx).await;
    let store_ok = backends.store;
    let live = store_ok && ctx.health.is_live();
    // `errors` names what is wrong, by component, as the system we replace reported it.
    let mut errors = serde_json::Map::new();
    if !store_ok {
        errors.insert("database".into(), "unavailable".into());
    }
    for (role, health) in ctx.health.snapshot() {
        if health == crate::process::health::RoleHealth::Failing {
            errors.insert(role.as_str().into(), "failing".into());
        }
    }
    let body = serde_json::json!({
        "status": if live { "ok" } else { "unhealthy" },
        "database": if store_ok { "ok" } else { "unavailable" },
        "roles": ctx.health.snapshot(),
        "errors": errors,
        "checked_at": rfc3339(backends.checked_at),
    });
    if live {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn readyz(ctx: Ctx, probe: web::Data<Probe>) -> HttpResponse {
    let backends = probe.backends(&ctx).await;
    let mut ready = ctx.health.is_ready() && backends.store && backends.timeline;
    // A process that dials cannot work while the carrier refuses its credentials.
    let provider = ctx
        .health
        .runs(crate::process::role::RoleName::Call)
        .then(|| ctx.provider.unavailable())
        .flatten();
    ready &= provider.is_none();
    let mut body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "roles": ctx.health.snapshot(),
        "checked_at": rfc3339(backends.checked_at),
    });
    if let Some(reason) = provider {
        body["provider"] = serde_json::json!({
            "name": ctx.settings.telephony.provider,
            "status": "unavailable",
            "reason": reason,
        });
    }
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn metrics_text() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::render())
}

pub async fn route_not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::route_not_found())
}

/// The answer to a known path with another method: 405 naming the methods it takes.
pub fn not_allowed(allow: String) -> actix_web::Route {
    web::to(move || {
        let allow = allow.clone();
        async move {
            let mut response =
                actix_web::ResponseError::error_response(&ApiError::method_not_allowed());
            if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allow) {
                response
                    .headers_mut()
                    .insert(actix_web::http::header::ALLOW, value);
            }
            response
        }
    })
}
