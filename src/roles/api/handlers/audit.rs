//! The audit log: who changed what through the API, newest first.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::rfc3339;
use crate::context::AppContext;
use crate::domain::access::AuditEntry;
use crate::roles::api::error::{ApiError, ErrorBody};

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryResponse {
    pub id: String,
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    pub method: String,
    /// The route's pattern, e.g. `/api/v1/campaigns/{id}/start`.
    pub route: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    pub status: u16,
    /// How many requests the entry stands for: refusals for a missing or unknown key from one
    /// client address are recorded at most once a second; 1 for every other entry.
    #[schema(minimum = 1)]
    pub count: u32,
}

impl From<&AuditEntry> for AuditEntryResponse {
    fn from(entry: &AuditEntry) -> Self {
        Self {
            id: entry.id.to_string(),
            at: rfc3339(entry.at),
            key_id: entry.key_id.map(|id| id.to_string()),
            key_name: entry.key_name.clone(),
            method: entry.method.clone(),
            route: entry.route.clone(),
            resource_id: entry.resource_id.clone(),
            status: entry.status,
            count: entry.count,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditListResponse {
    pub entries: Vec<AuditEntryResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/audit", security(("bearer" = [])),
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "page size, 1 to 1000; default 100"),
        ("page_token" = Option<String>, Query, pattern = "^([A-Za-z0-9_-]{21}[AQgw])?$", description = "the next_page_token of the previous page; empty: the first page")),
    responses((status = 200, body = AuditListResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_audit(
    ctx: web::Data<AppContext>,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let limit = super::page_limit(&query)?;
    let before = match query.get("page_token").filter(|t| !t.is_empty()) {
        Some(token) => Some(super::decode_token(token)?),
        None => None,
    };
    let mut entries = ctx.store.list_audit(before, limit + 1).await?;
    let next_page_token = if entries.len() > limit {
        entries.truncate(limit);
        entries.last().map(|e| super::encode_token(e.id))
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(AuditListResponse {
        entries: entries.iter().map(AuditEntryResponse::from).collect(),
        next_page_token,
    }))
}
