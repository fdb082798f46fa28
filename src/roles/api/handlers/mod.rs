//! The API's handlers, one file per resource, each with the request and response bodies it
//! takes and gives. Handlers validate, call the store through its port, and publish the
//! wake-ups that let the scheduler react at once. What every resource shares is here: ids,
//! page tokens and page sizes, and the answers to unknown routes and methods.

pub mod amd;
pub mod audit;
pub mod calls;
pub mod campaigns;
pub mod dnc;
pub mod endpoints;
pub mod events;
pub mod explain;
pub mod forecast;
pub mod health;
pub mod keys;
pub mod targets;
pub mod voice;
pub mod webhooks;

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use crate::context::AppContext;
use crate::domain::ids::CampaignId;
use crate::roles::api::error::ApiError;
use crate::roles::api::uploads;
use crate::roles::messages;

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

pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Collects every problem of a request before answering.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<String>);

impl Problems {
    pub fn push(&mut self, field: &str, message: impl std::fmt::Display) {
        self.0.push(format!("{field}: {message}"));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
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
