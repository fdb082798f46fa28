//! Why calls wait: for one call, and for a campaign's waiting calls as a whole.

use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

use super::campaigns::output::PauseReasonResponse;
use super::{campaign_id, parse_id, Ctx};
use crate::domain::admission::{
    CampaignRules, DialCheck, LimitsReached, NumberFacts, PendingTally,
};
use crate::domain::call::CallStatus;
use crate::domain::campaign::CampaignStatus;
use crate::domain::compliance::{Hold, HoldCode};
use crate::domain::ids::CallId;
use crate::roles::api::error::{ApiError, ErrorBody};
use crate::roles::api::rfc3339;

/// Why a call is or is not being dialed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExplainResponse {
    pub call_id: String,
    pub status: String,
    /// Queued with nothing holding it: the next claim may take it.
    pub dialable_now: bool,
    pub reasons: Vec<ReasonResponse>,
}

/// Why a campaign's waiting calls wait.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignExplainResponse {
    pub campaign_id: String,
    pub status: String,
    /// Running, with a waiting call nothing holds.
    pub dialable_now: bool,
    /// The first instant a waiting call may be dialed, when the campaign runs and it is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_dial_at: Option<String>,
    /// Waiting calls (queued or retrying) by the first rule holding each, with the codes of
    /// the call explanation; calls nothing holds are not counted. Estimates when `exact` is
    /// false: the shares of the sample applied to all the campaign's waiting calls.
    pub pending_by_reason: std::collections::BTreeMap<String, u64>,
    /// Why the engine paused the campaign by itself, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<PauseReasonResponse>,
    /// Whether every waiting call was read (at most 2,000 wait); otherwise the counts are
    /// estimated from `sampled_calls` of them, the earliest registered.
    pub exact: bool,
    /// How many waiting calls the estimate read, when `exact` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampled_calls: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReasonResponse {
    /// campaign_not_running, outside_business_hours, outside_recipient_hours,
    /// restricted_period, campaign_limit, global_limit, backoff, attempts_exhausted, ...
    pub code: String,
    pub message: String,
    /// When this reason stops holding, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
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
