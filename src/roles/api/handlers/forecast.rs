//! When a campaign will be done, and what that forecast assumes.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

use super::campaigns::input::{
    validate_business_hours, validate_max_concurrent, BusinessHourInput,
};
use super::{campaign_id, Ctx, Problems, Query};
use crate::domain::admission::CampaignRules;
use crate::domain::business_hours::BusinessHours;
use crate::domain::campaign::CampaignStatus;
use crate::domain::forecast;
use crate::roles::api::error::{ApiError, ErrorBody};
use crate::roles::api::rfc3339;

/// When a campaign will be done, with what the forecast assumed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ForecastResponse {
    pub campaign_id: String,
    pub status: String,
    /// The predicted instant the last call ends (RFC 3339); absent when no attempt has ended
    /// yet to measure calls by, or when no end is in sight within 90 days of windows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completes_at: Option<String>,
    /// What a forecast asked with other settings changed (`max_concurrent_calls`,
    /// `business_hours`); empty for the campaign as it is.
    pub what_if: Vec<String>,
    pub assumptions: ForecastAssumptions,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ForecastAssumptions {
    /// The limit the forecast dials with.
    pub max_concurrent_calls: u32,
    /// Mean length of an ended attempt, as the carrier reported it.
    pub call_seconds: f64,
    /// Seconds a slot is held per attempt: measured over the run (the dialer's own time
    /// included) once the run has ended twice its limit in attempts, else the call length.
    pub slot_seconds: f64,
    /// Completed calls over ended calls, when some have ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer_rate: Option<f64>,
    /// Retries over attempts so far.
    pub retry_rate: f64,
    pub attempts_per_call: f64,
    pub remaining_attempts: f64,
    /// While every waiting call's rules are open.
    pub attempts_per_second: f64,
    /// Waiting calls sampled for their recipients' hours and states, and the distinct rule sets
    /// among them; frequency caps and backoff delays are not modelled.
    pub sampled_calls: usize,
    pub recipient_groups: usize,
}

/// Waiting calls a forecast samples for their recipients' rules.
const FORECAST_SAMPLE: usize = 1_000;

/// When the campaign will be done, and what it assumed; what-if parameters answer for other
/// settings without changing the campaign.
// The document states `business_hours` as JSON content, an array of `BusinessHourInput`
// (contract.rs).
/// What a forecast is asked to assume instead of the campaign's own settings, with the names
/// of the parameters that ask it.
struct WhatIf {
    names: Vec<String>,
    limit: Option<u32>,
    hours: Option<BusinessHours>,
}

fn what_if(query: &HashMap<String, String>) -> Result<WhatIf, ApiError> {
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
    Ok(WhatIf {
        names: what_if,
        limit,
        hours,
    })
}

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
    let WhatIf {
        names: what_if,
        limit,
        hours,
    } = what_if(&query)?;
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
