//! The do-not-call routes: add numbers (JSON or CSV) for the deployment or one campaign, look
//! one up, page the list, take a number off it.

use std::collections::{HashMap, HashSet};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::rfc3339;
use crate::context::AppContext;
use crate::domain::compliance::dnc::MAX_REASON_CHARS;
use crate::domain::ids::CampaignId;
use crate::domain::phone::PhoneNumber;
use crate::ports::{DncEntry, DncScope, StoreError};
use crate::roles::api::access::Audit;
use crate::roles::api::error::{ApiError, ErrorBody};
use crate::roles::api::uploads::{self, Upload};

/// Problems listed in one refusal; an upload with more says how many it left out.
const MAX_LISTED_PROBLEMS: usize = crate::roles::api::error::MAX_DETAILS - 1;

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"numbers": ["+15555550100"], "reason": "asked not to be called"}))]
pub struct DncRequest {
    /// E.164 numbers (the usual separators are tolerated), each valid in its country's
    /// numbering plan; at least one and at most 1,000,000 (413 beyond).
    #[schema(value_type = Vec<String>, required = true, min_items = 1)]
    #[serde(default, deserialize_with = "uploads::at_most_entries")]
    pub numbers: Option<Vec<String>>,
    /// Kept with every entry; at most 500 characters.
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DncAddedResponse {
    /// Numbers newly on the list in this scope (one listed already keeps its entry).
    pub added: u64,
    /// Waiting calls (queued or retrying) the listing canceled.
    pub canceled: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DncEntryResponse {
    pub phone_number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `global` or `campaign:<id>`.
    pub scope: String,
    pub created_at: String,
}

impl From<&DncEntry> for DncEntryResponse {
    fn from(entry: &DncEntry) -> Self {
        Self {
            phone_number: entry.phone_number.as_str().to_owned(),
            reason: entry.reason.clone(),
            scope: entry.scope.to_string(),
            created_at: rfc3339(entry.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DncListResponse {
    pub entries: Vec<DncEntryResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// Numbers to list, validated: canonical, distinct, each with its reason.
type Listing = Vec<(PhoneNumber, Option<String>)>;

fn check_reason(reason: Option<&str>, field: &str, problems: &mut Vec<String>) -> Option<String> {
    let reason = reason.map(str::trim).filter(|r| !r.is_empty())?;
    if reason.chars().count() > MAX_REASON_CHARS {
        problems.push(format!("{field}: at most {MAX_REASON_CHARS} characters"));
        return None;
    }
    if reason.chars().any(char::is_control) {
        problems.push(format!("{field}: must not contain control characters"));
        return None;
    }
    Some(reason.to_owned())
}

/// Collects `(field, raw number, reason)` rows into a listing, or every problem with them.
struct Collector {
    seen: HashSet<PhoneNumber>,
    listing: Listing,
    problems: Vec<String>,
    more_problems: usize,
    /// Bytes of reasons held, against `stored_limit`: one reason given for a whole listing is
    /// held once per number.
    stored: usize,
    stored_limit: usize,
}

/// Entries set aside before the first is read: more grow as they come, so a body's size never
/// reserves memory by itself.
const PREALLOCATED: usize = 65_536;

impl Collector {
    fn new(capacity: usize, stored_limit: usize) -> Self {
        let capacity = capacity.min(PREALLOCATED);
        Self {
            seen: HashSet::with_capacity(capacity),
            listing: Vec::with_capacity(capacity),
            problems: Vec::new(),
            more_problems: 0,
            stored: 0,
            stored_limit,
        }
    }

    fn problem(&mut self, problem: String) {
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.problems.push(problem);
        } else {
            self.more_problems += 1;
        }
    }

    fn add(&mut self, field: &str, raw: &str, reason: Option<&str>) -> Result<(), ApiError> {
        match PhoneNumber::parse(raw) {
            Ok(number) => {
                if self.seen.insert(number.clone()) {
                    self.stored += reason.map_or(0, str::len);
                    if self.stored > self.stored_limit {
                        return Err(ApiError::stored_too_large(self.stored_limit));
                    }
                    self.listing.push((number, reason.map(str::to_owned)));
                }
            }
            Err(err) => self.problem(format!("{field}: {raw:?} is {err}")),
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Listing, ApiError> {
        if self.listing.is_empty() && self.problems.is_empty() {
            self.problems
                .push("numbers: must list at least one number".into());
        }
        if self.problems.is_empty() {
            return Ok(self.listing);
        }
        if self.more_problems > 0 {
            self.problems
                .push(format!("and {} more problems", self.more_problems));
        }
        Err(ApiError::validation(self.problems))
    }
}

fn from_json(body: &[u8], stored_limit: usize) -> Result<Listing, ApiError> {
    let request: DncRequest = uploads::json(body)?;
    let mut problems = Vec::new();
    let reason = check_reason(request.reason.as_deref(), "reason", &mut problems);
    let numbers = request.numbers.unwrap_or_default();
    let mut collector = Collector::new(numbers.len(), stored_limit);
    for problem in problems {
        collector.problem(problem);
    }
    for (index, raw) in numbers.iter().enumerate() {
        collector.add(&format!("numbers[{index}]"), raw, reason.as_deref())?;
    }
    collector.finish()
}

/// A CSV upload: a header row naming `phone_number` (and optionally `reason`), then one
/// number per row.
fn from_csv(body: &[u8], stored_limit: usize) -> Result<Listing, ApiError> {
    let mut reader = uploads::reader(body);
    let headers = uploads::headers(&mut reader)?;
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let number_at = column("phone_number").ok_or_else(|| {
        ApiError::validation(vec![
            "csv: the header row must name a phone_number column".into()
        ])
    })?;
    let reason_at = column("reason");
    let mut collector = Collector::new(body.len() / 14, stored_limit);
    for (index, record) in reader.records().enumerate() {
        if index == uploads::MAX_ENTRIES {
            return Err(ApiError::too_many_entries(uploads::MAX_ENTRIES));
        }
        let line = uploads::line_of(index);
        let record = match uploads::bounded_record(index, record) {
            Ok(record) => record,
            Err(problem) => {
                collector.problem(problem);
                continue;
            }
        };
        let Some(raw) = record.get(number_at).filter(|raw| !raw.is_empty()) else {
            collector.problem(format!("line {line}: phone_number is empty"));
            continue;
        };
        let mut problems = Vec::new();
        let reason = check_reason(
            reason_at.and_then(|at| record.get(at)),
            &format!("line {line}: reason"),
            &mut problems,
        );
        for problem in problems {
            collector.problem(problem);
        }
        collector.add(&format!("line {line}"), raw, reason.as_deref())?;
    }
    collector.finish()
}

async fn listing(
    ctx: &AppContext,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Listing, ApiError> {
    // A million-number upload takes a while to parse: off the worker's thread.
    // Reasons held may take as much room as the largest body, no more.
    let limit = ctx.settings.http.body_limit_bytes;
    match uploads::read(req, payload, limit).await? {
        Upload::Json(body) => uploads::parse_off_thread(move || from_json(&body, limit)).await,
        Upload::Csv(body) => uploads::parse_off_thread(move || from_csv(&body, limit)).await,
    }
}

async fn add(
    ctx: &AppContext,
    audit: &Audit,
    scope: DncScope,
    numbers: Listing,
) -> Result<HttpResponse, ApiError> {
    let count = numbers.len();
    let added = ctx
        .store
        .add_to_dnc(
            scope,
            numbers,
            Utc::now(),
            audit.entry(StatusCode::OK, None),
        )
        .await
        .map_err(|err| match err {
            StoreError::NotFound => ApiError::not_found("campaign"),
            other => other.into(),
        })?;
    audit.recorded();
    tracing::info!(%scope, numbers = count, added = added.added, canceled = added.canceled, "numbers added to the do-not-call list");
    Ok(HttpResponse::Ok().json(DncAddedResponse {
        added: added.added,
        canceled: added.canceled,
    }))
}

#[utoipa::path(post, path = "/api/v1/dnc",
    request_body(content(
        (DncRequest = "application/json"),
        (String = "text/csv", example = "phone_number,reason\n+15555550100,asked not to be called\n"))),
    responses((status = 200, body = DncAddedResponse), (status = 400, body = ErrorBody)))]
pub async fn add_global(
    ctx: web::Data<AppContext>,
    audit: Audit,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let numbers = listing(&ctx, &req, payload).await?;
    add(&ctx, &audit, DncScope::Global, numbers).await
}

#[utoipa::path(post, path = "/api/v1/campaigns/{id}/dnc",
    request_body(content(
        (DncRequest = "application/json"),
        (String = "text/csv", example = "phone_number,reason\n+15555550100,asked not to be called\n"))),
    responses((status = 200, body = DncAddedResponse), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn add_for_campaign(
    ctx: web::Data<AppContext>,
    audit: Audit,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = CampaignId(super::parse_id(&path)?);
    let numbers = listing(&ctx, &req, payload).await?;
    add(&ctx, &audit, DncScope::Campaign(id), numbers).await
}

/// A number in a path: E.164 with its `+` as is or percent-encoded.
fn path_number(raw: &str) -> Result<PhoneNumber, ApiError> {
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    PhoneNumber::parse(&decoded).map_err(|err| {
        ApiError::validation(vec![format!("number: {:?} is {err}", decoded.as_ref())])
    })
}

#[utoipa::path(get, path = "/api/v1/dnc/{number}",
    params(("number" = String, Path, description = "E.164 with the usual separators tolerated, its `+` as is or as %2B; valid in its country's numbering plan", example = "+15555550100")),
    responses((status = 200, body = DncEntryResponse), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_entry(
    ctx: web::Data<AppContext>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let number = path_number(&path)?;
    let entry = ctx
        .store
        .get_dnc(&number)
        .await?
        .ok_or_else(|| ApiError::not_found("number on the do-not-call list"))?;
    Ok(HttpResponse::Ok().json(DncEntryResponse::from(&entry)))
}

#[utoipa::path(delete, path = "/api/v1/dnc/{number}",
    params(("number" = String, Path, description = "E.164 with the usual separators tolerated, its `+` as is or as %2B; valid in its country's numbering plan", example = "+15555550100")),
    responses((status = 204, description = "the number is on no list (any more)"),
        (status = 400, body = ErrorBody)))]
pub async fn remove_entry(
    ctx: web::Data<AppContext>,
    audit: Audit,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let number = path_number(&path)?;
    let removed = ctx
        .store
        .remove_dnc(&number, audit.entry(StatusCode::NO_CONTENT, None))
        .await?;
    audit.recorded();
    tracing::info!(entries = removed, "number taken off the do-not-call list");
    Ok(HttpResponse::NoContent().finish())
}

fn encode_position(entry: &DncEntry) -> String {
    URL_SAFE_NO_PAD.encode(format!("{} {}", entry.phone_number.as_str(), entry.scope))
}

fn decode_position(token: &str) -> Result<(PhoneNumber, DncScope), ApiError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| ApiError::invalid_page_token())?;
    let text = String::from_utf8(bytes).map_err(|_| ApiError::invalid_page_token())?;
    let (number, scope) = text
        .split_once(' ')
        .ok_or_else(ApiError::invalid_page_token)?;
    Ok((
        PhoneNumber::parse(number).map_err(|_| ApiError::invalid_page_token())?,
        scope.parse().map_err(|_| ApiError::invalid_page_token())?,
    ))
}

#[utoipa::path(get, path = "/api/v1/dnc",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "page size, 1 to 1000; default 100"),
        ("page_token" = Option<String>, Query, pattern = "^[A-Za-z0-9_-]*$", description = "the next_page_token of the previous page; empty: the first page")),
    responses((status = 200, body = DncListResponse), (status = 400, body = ErrorBody)))]
pub async fn list_entries(
    ctx: web::Data<AppContext>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let limit = super::page_limit(&query)?;
    let after = match query.get("page_token").filter(|t| !t.is_empty()) {
        Some(token) => Some(decode_position(token)?),
        None => None,
    };
    let mut entries = ctx.store.list_dnc(after, limit + 1).await?;
    let next_page_token = if entries.len() > limit {
        entries.truncate(limit);
        entries.last().map(encode_position)
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(DncListResponse {
        entries: entries.iter().map(DncEntryResponse::from).collect(),
        next_page_token,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn csv_uploads_read_their_header_and_name_every_bad_line() {
        let body = b"\xef\xbb\xbfPhone_Number,reason\n+1 555 555 0100,moved\n+15555550100,dup\n\n+15555550101,\n";
        let listing = from_csv(body, 1 << 20).expect("valid");
        assert_eq!(listing.len(), 2, "the duplicate is listed once");
        assert_eq!(listing[0].0.as_str(), "+15555550100");
        assert_eq!(listing[0].1.as_deref(), Some("moved"));
        assert_eq!(listing[1].1, None);
        let err = from_csv(b"phone_number\n+15555550100\nnope\n", 1 << 20).expect_err("bad line");
        assert_eq!(err.code().as_str(), "validation_failed");
        assert!(format!("{:?}", err.details()).contains("line 3"));
        let err = from_csv(b"number\n+15555550100\n", 1 << 20).expect_err("no column");
        assert!(format!("{:?}", err.details()).contains("phone_number column"));
    }

    #[test]
    fn page_positions_round_trip_and_refuse_what_was_never_issued() {
        let entry = DncEntry {
            phone_number: PhoneNumber::parse("+15555550100").unwrap(),
            scope: DncScope::Campaign(CampaignId::new()),
            reason: None,
            created_at: Utc::now(),
        };
        let (number, scope) = decode_position(&encode_position(&entry)).unwrap();
        assert_eq!((number, scope), (entry.phone_number, entry.scope));
        for bad in ["%%", "bm9wZQ", "KzE1NTU1NTUwMTAwIG5vcGU"] {
            assert!(decode_position(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_numbers_take_their_plus_as_is_or_encoded() {
        assert_eq!(
            path_number("%2B15555550100").unwrap().as_str(),
            "+15555550100"
        );
        assert_eq!(
            path_number("+15555550100").unwrap().as_str(),
            "+15555550100"
        );
        assert!(path_number("15555550100").is_err());
    }
}
