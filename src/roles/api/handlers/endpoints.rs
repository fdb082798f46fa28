//! Webhook endpoints (admin): where the engine posts its events, and the log of what it
//! delivered to each (spec/webhooks.md).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{campaign_id, page_limit, parse_id, rfc3339, Ctx, Problems, Query};
use crate::domain::access::AuditEntry;
use crate::domain::ids::{CampaignId, EndpointId};
use crate::domain::webhook::{EndpointUrl, Secret, Subscription};
use crate::ports::{DeliveryStatus, Endpoint, EndpointLoad, WebhookDelivery};
use crate::roles::api::access::Audit;
use crate::roles::api::error::{ApiError, ErrorBody};

/// Longest description kept, in characters.
const MAX_DESCRIPTION: usize = 500;

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"url": "https://crm.example.com/hooks/outbound",
    "events": ["call.finished", "call.opted_out"]}))]
pub struct CreateWebhookRequest {
    /// Where events are posted: an `https` URL (plain `http` only with
    /// `webhooks.allow_http`) without user or password, whose host is and resolves to public
    /// addresses (`webhooks.allow_private_networks` lifts that); at most 2,048 characters.
    #[schema(value_type = String, required = true, max_length = 2048)]
    pub url: Option<String>,
    /// Event types (`attempt.finished`, `call.finished`, `call.opted_out`,
    /// `campaign.status_changed`), or `["*"]` for every one, now and later.
    #[schema(value_type = Vec<EventName>, required = true, min_items = 1)]
    pub events: Option<Vec<String>>,
    /// Only this campaign's events; it must exist.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub campaign_id: Option<String>,
    /// What the endpoint is for: at most 500 characters once trimmed, no control characters.
    #[schema(max_length = 500)]
    pub description: Option<String>,
}

/// An event type an endpoint may listen to, or `*` for all of them.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub enum EventName {
    #[serde(rename = "*")]
    All,
    #[serde(rename = "attempt.finished")]
    AttemptFinished,
    #[serde(rename = "call.finished")]
    CallFinished,
    #[serde(rename = "call.opted_out")]
    CallOptedOut,
    #[serde(rename = "campaign.status_changed")]
    CampaignStatusChanged,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookResponse {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub campaign_id: Option<String>,
    pub description: Option<String>,
    pub created_at: String,
    /// Deliveries still to make.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<u64>,
    /// Deliveries given up on after the retry schedule (retriable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<u64>,
}

impl WebhookResponse {
    fn new(endpoint: &Endpoint, load: Option<EndpointLoad>) -> Self {
        Self {
            id: endpoint.id.to_string(),
            url: endpoint.url.clone(),
            events: endpoint.subscription.as_list(),
            campaign_id: endpoint.campaign_id.map(|id| id.to_string()),
            description: endpoint.description.clone(),
            created_at: rfc3339(endpoint.created_at),
            pending: load.map(|l| l.pending),
            failed: load.map(|l| l.failed),
        }
    }
}

/// A new endpoint, with the only showing of its signing secret. Its `Debug` hides it.
#[derive(Serialize, ToSchema)]
pub struct CreatedWebhookResponse {
    #[serde(flatten)]
    pub endpoint: WebhookResponse,
    /// `whsec_` and the base64 of 32 random bytes: the Standard Webhooks key that signs every
    /// delivery. Not shown again.
    pub secret: String,
}

impl std::fmt::Debug for CreatedWebhookResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedWebhookResponse")
            .field("endpoint", &self.endpoint)
            .field("secret", &"***")
            .finish()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookListResponse {
    pub webhooks: Vec<WebhookResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryResponse {
    /// The `webhook-id` it is sent with, the same on every try.
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub created_at: String,
    #[schema(pattern = "^(pending|delivered|failed)$")]
    pub status: String,
    /// Tries made, manual ones included.
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status_code: Option<u16>,
    /// Why the last try failed: `timeout`, `connection refused`, `status 500`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
}

impl From<&WebhookDelivery> for DeliveryResponse {
    fn from(d: &WebhookDelivery) -> Self {
        Self {
            id: d.id.clone(),
            event_type: d.event_type.as_str().to_owned(),
            created_at: rfc3339(d.created_at),
            status: d.status.as_str().to_owned(),
            attempts: d.attempts,
            last_status_code: d.last_status_code,
            last_error: d.last_error.clone(),
            next_attempt_at: d.next_attempt_at.map(rfc3339),
            delivered_at: d.delivered_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryListResponse {
    pub deliveries: Vec<DeliveryResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// A delivery's id as the triggers write it, `msg_` and 32 lowercase hex digits, as bytes.
fn delivery_id(raw: &str) -> Option<[u8; 16]> {
    let hex = raw.strip_prefix("msg_").filter(|h| h.len() == 32)?;
    if !hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    uuid::Uuid::try_parse(hex).ok().map(|id| *id.as_bytes())
}

/// The page token of a delivery: its id, which orders the log (it begins with its time).
fn encode_delivery_token(delivery: &WebhookDelivery) -> Option<String> {
    delivery_id(&delivery.id).map(|id| URL_SAFE_NO_PAD.encode(id))
}

fn decode_delivery_token(token: &str) -> Result<String, ApiError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| ApiError::invalid_page_token())?;
    let id = uuid::Uuid::from_slice(&bytes).map_err(|_| ApiError::invalid_page_token())?;
    Ok(format!("msg_{}", id.simple()))
}

/// The endpoint the request names, checked.
async fn screened_request(
    ctx: &Ctx,
    body: &CreateWebhookRequest,
) -> Result<
    (
        EndpointUrl,
        Subscription,
        Option<CampaignId>,
        Option<String>,
    ),
    ApiError,
> {
    let settings = &ctx.settings.webhooks;
    let mut problems = Problems::default();
    let url = match body.url.as_deref() {
        None => {
            problems.push("url", "is required");
            None
        }
        Some(raw) => match EndpointUrl::parse(raw.trim(), settings.allow_http) {
            Ok(url) => match ctx.webhooks.screen(url.as_str()).await {
                Ok(()) => Some(url),
                Err(class) => {
                    problems.push(
                        "url",
                        format!(
                            "its host is a {class} address, which deliveries may not reach \
                             (webhooks.allow_private_networks)"
                        ),
                    );
                    None
                }
            },
            Err(err) => {
                problems.push("url", err);
                None
            }
        },
    };
    let subscription = match body.events.as_deref() {
        None => {
            problems.push("events", "is required");
            None
        }
        Some(events) => match Subscription::parse(events) {
            Ok(subscription) => Some(subscription),
            Err(err) => {
                problems.push("events", err);
                None
            }
        },
    };
    let campaign = match body.campaign_id.as_deref() {
        None => None,
        Some(raw) => match campaign_id(raw) {
            Ok(id) => match ctx.store.get_campaign(id).await? {
                Some(_) => Some(id),
                None => {
                    problems.push("campaign_id", format!("no campaign {id}"));
                    None
                }
            },
            Err(_) => {
                problems.push("campaign_id", "is not a campaign id");
                None
            }
        },
    };
    let description = body
        .description
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty());
    if let Some(description) = description {
        if description.chars().count() > MAX_DESCRIPTION {
            problems.push(
                "description",
                format!("is longer than {MAX_DESCRIPTION} characters"),
            );
        } else if description.chars().any(char::is_control) {
            problems.push("description", "has control characters");
        }
    }
    match (url, subscription) {
        (Some(url), Some(subscription)) if problems.is_empty() => {
            Ok((url, subscription, campaign, description.map(str::to_owned)))
        }
        _ => Err(ApiError::validation(problems.0)),
    }
}

#[utoipa::path(post, path = "/api/v1/webhooks", request_body = CreateWebhookRequest,
    security(("bearer" = [])),
    responses((status = 201, body = CreatedWebhookResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_webhook(
    ctx: Ctx,
    audit: Audit,
    body: web::Json<CreateWebhookRequest>,
) -> Result<HttpResponse, ApiError> {
    let (url, subscription, campaign_id, description) = screened_request(&ctx, &body).await?;
    let endpoint = Endpoint {
        id: EndpointId::new(),
        url: url.as_str().to_owned(),
        subscription,
        campaign_id,
        description,
        secret: Secret::generate(&mut rand::rng()),
        created_at: ctx.clock.now(),
    };
    let entry: Option<AuditEntry> = audit.entry(StatusCode::CREATED, Some(endpoint.id.to_string()));
    ctx.store.create_endpoint(&endpoint, entry).await?;
    audit.recorded();
    tracing::info!(endpoint = %endpoint.id, events = ?endpoint.subscription.as_list(), "webhook endpoint created");
    Ok(HttpResponse::Created().json(CreatedWebhookResponse {
        secret: endpoint.secret.expose(),
        endpoint: WebhookResponse::new(&endpoint, None),
    }))
}

#[utoipa::path(get, path = "/api/v1/webhooks", security(("bearer" = [])),
    responses((status = 200, body = WebhookListResponse), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn list_webhooks(ctx: Ctx) -> Result<HttpResponse, ApiError> {
    let endpoints = ctx.store.list_endpoints().await?;
    Ok(HttpResponse::Ok().json(WebhookListResponse {
        webhooks: endpoints
            .iter()
            .map(|(endpoint, load)| WebhookResponse::new(endpoint, Some(*load)))
            .collect(),
    }))
}

#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", security(("bearer" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_webhook(
    ctx: Ctx,
    audit: Audit,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = EndpointId(parse_id(&path)?);
    // A delete of nothing is refused before writing, so its audit entry says 404.
    if ctx.store.get_endpoint(id).await?.is_none() {
        return Err(ApiError::not_found("webhook"));
    }
    let deleted = ctx
        .store
        .delete_endpoint(
            id,
            audit.entry(StatusCode::NO_CONTENT, Some(id.to_string())),
        )
        .await?;
    if !deleted {
        return Err(ApiError::not_found("webhook"));
    }
    audit.recorded();
    tracing::info!(endpoint = %id, "webhook endpoint deleted");
    // The last endpoint gone, changes stop paying for the outbox now rather than at the
    // deliverer's next upkeep.
    if let Err(err) = ctx.store.disarm_unused().await {
        tracing::warn!(error = %err, "cannot drop the webhook triggers yet");
    }
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", security(("bearer" = [])),
    params(("status" = Option<String>, Query, pattern = "^(|pending|delivered|failed)$", description = "only deliveries in this status; empty: all"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "page size, 1 to 1000; default 100"),
        ("page_token" = Option<String>, Query, pattern = "^([A-Za-z0-9_-]{21}[AQgw])?$", description = "the next_page_token of the previous page; empty: the first page")),
    responses((status = 200, body = DeliveryListResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list_deliveries(
    ctx: Ctx,
    path: web::Path<String>,
    query: Query,
) -> Result<HttpResponse, ApiError> {
    let id = EndpointId(parse_id(&path)?);
    if ctx.store.get_endpoint(id).await?.is_none() {
        return Err(ApiError::not_found("webhook"));
    }
    let limit = page_limit(&query)?;
    let status = match query
        .get("status")
        .map(String::as_str)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(raw) => Some(DeliveryStatus::parse(raw).ok_or_else(|| {
            ApiError::validation(vec![format!(
                "status: must be pending, delivered or failed, got {raw:?}"
            )])
        })?),
    };
    let before = match query.get("page_token").filter(|t| !t.is_empty()) {
        Some(token) => Some(decode_delivery_token(token)?),
        None => None,
    };
    let mut deliveries = ctx.store.deliveries(id, status, before, limit + 1).await?;
    let next_page_token = if deliveries.len() > limit {
        deliveries.truncate(limit);
        deliveries.last().and_then(encode_delivery_token)
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(DeliveryListResponse {
        deliveries: deliveries.iter().map(DeliveryResponse::from).collect(),
        next_page_token,
    }))
}

#[utoipa::path(post, path = "/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry",
    security(("bearer" = [])),
    params(("delivery_id" = String, Path, pattern = "^msg_[0-9a-f]{32}$", description = "the delivery's id (its webhook-id)")),
    responses((status = 202), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn retry_delivery(
    ctx: Ctx,
    audit: Audit,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (endpoint, delivery) = path.into_inner();
    let endpoint = EndpointId(parse_id(&endpoint)?);
    if delivery_id(&delivery).is_none() {
        return Err(ApiError::not_found("delivery"));
    }
    let retried = ctx
        .store
        .retry_delivery(
            endpoint,
            &delivery,
            ctx.clock.now(),
            audit.entry(StatusCode::ACCEPTED, Some(delivery.clone())),
        )
        .await?;
    if !retried {
        return Err(ApiError::not_found("delivery"));
    }
    audit.recorded();
    Ok(HttpResponse::Accepted().finish())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use super::*;
    use crate::domain::webhook::EventType;

    #[test]
    fn a_page_token_names_the_delivery_it_follows() {
        let delivery = WebhookDelivery {
            id: "msg_0123456789abcdef0123456789abcdef".into(),
            event_type: EventType::CallFinished,
            created_at: chrono::DateTime::from_timestamp_millis(1_765_000_000_123).expect("at"),
            status: DeliveryStatus::Pending,
            attempts: 0,
            last_status_code: None,
            last_error: None,
            next_attempt_at: None,
            delivered_at: None,
        };
        let token = encode_delivery_token(&delivery).expect("token");
        assert_eq!(token.len(), 22);
        assert_eq!(decode_delivery_token(&token).expect("decoded"), delivery.id);
        assert!(decode_delivery_token("short").is_err());
        assert!(delivery_id("msg_0123456789ABCDEF0123456789abcdef").is_none());
    }
}
