//! The admin routes of keys, and `whoami` for any key.

use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpResponse};
use chrono::Utc;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::rfc3339;
use crate::context::AppContext;
use crate::domain::access::{self, ApiKey, KeyPolicy, Role};
use crate::domain::ids::KeyId;
use crate::ports::StoreError;
use crate::roles::api::access::{Audit, Caller, Gate};
use crate::roles::api::error::{ApiError, ErrorBody};

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"name": "ci-dashboard", "role": "viewer"}))]
pub struct CreateKeyRequest {
    /// What the key is for, as shown in the key list and the audit log (1 to 100 characters
    /// once trimmed, no control characters).
    #[schema(value_type = String, required = true)]
    pub name: Option<String>,
    /// `viewer`, `operator` or `admin`.
    #[schema(value_type = String, required = true, pattern = "^(viewer|operator|admin)$")]
    pub role: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyResponse {
    pub id: String,
    pub name: String,
    #[schema(value_type = String, example = "operator")]
    pub role: Role,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

impl From<&ApiKey> for KeyResponse {
    fn from(key: &ApiKey) -> Self {
        Self {
            id: key.id.to_string(),
            name: key.name.clone(),
            role: key.role,
            created_at: rfc3339(key.created_at),
            last_used_at: key.last_used_at.map(rfc3339),
            revoked_at: key.revoked_at.map(rfc3339),
        }
    }
}

/// A new key: the only time the key itself is shown. Its `Debug` hides the key.
#[derive(Serialize, ToSchema)]
pub struct CreatedKeyResponse {
    pub id: String,
    pub name: String,
    #[schema(value_type = String, example = "operator")]
    pub role: Role,
    /// Send as `Authorization: Bearer <key>`. Not shown again.
    pub key: String,
    pub created_at: String,
}

impl CreatedKeyResponse {
    pub fn new(key: &ApiKey, secret: String) -> Self {
        Self {
            id: key.id.to_string(),
            name: key.name.clone(),
            role: key.role,
            key: secret,
            created_at: rfc3339(key.created_at),
        }
    }
}

impl std::fmt::Debug for CreatedKeyResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKeyResponse")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("key", &"***")
            .finish()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyListResponse {
    pub keys: Vec<KeyResponse>,
}

/// Makes a key with fresh randomness; the one place the engine draws a key's secret.
pub fn new_key(name: String, role: Role) -> access::IssuedKey {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    access::issue(KeyId::new(), name, role, secret)
}

/// The name and role of a key request, or every problem with them.
pub fn key_request(name: Option<&str>, role: Option<&str>) -> Result<(String, Role), Vec<String>> {
    let mut problems = Vec::new();
    let name = match name {
        None => {
            problems.push("name: is required".to_owned());
            None
        }
        Some(name) => match access::name_problem(name) {
            Some(problem) => {
                problems.push(problem);
                None
            }
            None => Some(name.trim().to_owned()),
        },
    };
    let role = match role.map(str::parse::<Role>) {
        None => {
            problems.push("role: is required".to_owned());
            None
        }
        Some(Err(err)) => {
            problems.push(format!("role: {err}"));
            None
        }
        Some(Ok(role)) => Some(role),
    };
    match (name, role) {
        (Some(name), Some(role)) if problems.is_empty() => Ok((name, role)),
        _ => Err(problems),
    }
}

#[utoipa::path(post, path = "/api/v1/keys", request_body = CreateKeyRequest,
    security(("bearer" = [])),
    responses((status = 201, body = CreatedKeyResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_key(
    ctx: web::Data<AppContext>,
    gate: web::Data<Gate>,
    audit: Audit,
    body: web::Json<CreateKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    let (name, role) =
        key_request(body.name.as_deref(), body.role.as_deref()).map_err(ApiError::validation)?;
    let issued = new_key(name, role);
    let id = issued.record.id;
    let key = ctx
        .store
        .create_key(
            issued.record,
            Utc::now(),
            audit.entry(StatusCode::CREATED, Some(id.to_string())),
        )
        .await?;
    audit.recorded();
    gate.remember(key.clone());
    tracing::info!(key_id = %key.id, key_name = %key.name, role = %key.role, "api key created");
    Ok(HttpResponse::Created().json(CreatedKeyResponse::new(&key, issued.key)))
}

/// The caller, and what it may do.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoamiResponse {
    /// `keys` when this request needed a key, `off` when it did not.
    #[schema(pattern = "^(keys|off)$")]
    pub auth: String,
    /// The policy in force: `keys` (always a key), `off` (never), or `auto` (no key only for a
    /// request made on the server's own host, through no proxy or tunnel).
    #[schema(pattern = "^(keys|off|auto)$")]
    pub auth_mode: String,
    /// The key sent, when one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "operator")]
    pub role: Option<Role>,
    /// The routes the caller may use, as `METHOD /path/{template}`: a client offers only
    /// these (the console hides the rest).
    pub allowed: Vec<String>,
}

#[utoipa::path(get, path = "/api/v1/whoami", security(("bearer" = [])),
    responses((status = 200, body = WhoamiResponse), (status = 401, body = ErrorBody)))]
pub async fn whoami(req: actix_web::HttpRequest, gate: web::Data<Gate>) -> HttpResponse {
    let caller = req
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or(Caller(None));
    let principal = caller.0.as_ref();
    let requires_keys = gate.requires_keys(req.head());
    let allowed = crate::roles::api::endpoints()
        .iter()
        .filter(|e| Gate::allows(principal, e.access, requires_keys))
        .map(|e| format!("{} {}", e.method, e.path))
        .collect();
    HttpResponse::Ok().json(WhoamiResponse {
        auth: if requires_keys { "keys" } else { "off" }.to_owned(),
        auth_mode: match gate.policy() {
            KeyPolicy::Always => "keys",
            KeyPolicy::Never => "off",
            KeyPolicy::UnlessLocal => "auto",
        }
        .to_owned(),
        key_id: principal.map(|p| p.key_id.to_string()),
        key_name: principal.map(|p| p.key_name.clone()),
        role: principal.map(|p| p.role),
        allowed,
    })
}

#[utoipa::path(get, path = "/api/v1/keys", security(("bearer" = [])),
    responses((status = 200, body = KeyListResponse), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn list_keys(ctx: web::Data<AppContext>) -> Result<HttpResponse, ApiError> {
    let keys = ctx.store.list_keys().await?;
    Ok(HttpResponse::Ok().json(KeyListResponse {
        keys: keys.iter().map(KeyResponse::from).collect(),
    }))
}

#[utoipa::path(delete, path = "/api/v1/keys/{id}", security(("bearer" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_key(
    ctx: web::Data<AppContext>,
    gate: web::Data<Gate>,
    audit: Audit,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = KeyId(super::parse_id(&path)?);
    let key = ctx
        .store
        .revoke_key(id, Utc::now(), audit.entry(StatusCode::NO_CONTENT, None))
        .await
        .map_err(|err| match err {
            StoreError::NotFound => ApiError::not_found("key"),
            other => other.into(),
        })?;
    audit.recorded();
    gate.remember(key.clone());
    tracing::info!(key_id = %key.id, key_name = %key.name, "api key revoked");
    Ok(HttpResponse::NoContent().finish())
}
