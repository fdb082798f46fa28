//! Campaigns: register (or check with `dry_run`), list, read, change, start, pause, complete,
//! and their live statistics.

pub mod input;
pub mod message;
pub mod output;
pub mod results;
pub mod voice;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;

use self::input::{
    validate_business_hours, validate_description, validate_max_concurrent, validate_name,
    validate_recipient_limits, validate_restricted_periods, validate_retry_policy,
    validate_windows, CreateCampaignRequest, UpdateCampaignRequest,
};
use self::output::{
    CampaignListResponse, CampaignResponse, DryRunResponse, StatsResponse, TargetPreview,
    DRY_RUN_PREVIEW,
};
use self::voice::{validate_voice, voice_input};
use crate::context::AppContext;
use crate::domain::campaign::{CampaignChanges, CampaignStatus, StatusAction, Transition};
use crate::domain::carrier::Audio;
use crate::domain::ids::CampaignId;
use crate::ports::Topic;
use crate::roles::api::access::Audit;
use crate::roles::api::error::{ApiError, ErrorBody, MAX_DETAILS, MAX_DRY_RUN_DETAILS};
use crate::roles::api::handlers::targets::{csv_field, csv_targets, json_target_field, FieldOf};
use crate::roles::api::handlers::{
    campaign_id, encode_token, page_params, wake_campaign, Ctx, Problems, Query,
};
use crate::roles::api::uploads::{self, Upload};
use crate::roles::messages::{self, RetryMessage};

#[utoipa::path(post, path = "/api/v1/campaigns",
    request_body(description = "JSON, or text/csv with the targets one per row (a phone_number column, an optional time_zone, every other column kept as metadata) and the campaign's name, time_zone and optional description, max_concurrent_calls, caller_id and message (JSON) as query parameters",
        content(
        (CreateCampaignRequest = "application/json"),
        (String = "text/csv", example = "phone_number,time_zone,customer\n+15555550001,America/Chicago,A-17\n"))),
    params(("name" = Option<String>, Query, description = "with a text/csv body: the campaign's name"),
        ("time_zone" = Option<String>, Query, description = "with a text/csv body: the campaign's IANA time zone"),
        ("description" = Option<String>, Query, description = "with a text/csv body"),
        ("max_concurrent_calls" = Option<String>, Query, description = "with a text/csv body: 1 to 100000"),
        ("caller_id" = Option<String>, Query, description = "with a text/csv body: E.164"),
        ("message" = Option<String>, Query, description = "with a text/csv body: the campaign's message (spec/voice.md), as JSON"),
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
    let new = body
        .validate(CampaignId::new(), &ctx.settings, field_of)
        .map_err(|problems| {
            let most = if dry_run {
                MAX_DRY_RUN_DETAILS
            } else {
                MAX_DETAILS
            };
            ApiError::validation_up_to(problems.0, most)
        })?;
    if dry_run {
        return Ok(HttpResponse::Ok().json(DryRunResponse {
            dry_run: true,
            targets: new.targets.len(),
            preview: new
                .targets
                .iter()
                .take(DRY_RUN_PREVIEW)
                .map(|target| TargetPreview::of(target, new.voice.message()))
                .collect(),
        }));
    }
    let id = new.id;
    let campaign = ctx
        .store
        .create_campaign_audited(
            new,
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
    // A new message must be speakable to every call still to dial.
    if let Some(Some(Audio::Message(message))) = &changes.audio {
        message::check_waiting_calls(&ctx, id, message, &mut problems).await?;
        if !problems.is_empty() {
            return Err(ApiError::validation_up_to(problems.0, MAX_DETAILS));
        }
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
