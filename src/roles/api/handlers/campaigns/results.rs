//! A campaign's results (`spec/voice.md`, "What comes back"): one row per call in call id
//! order, as CSV or JSON lines, streamed a page at a time so that a campaign of any size is
//! never held in memory.

use actix_web::http::header::ACCEPT;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt as _;
use serde_json::{json, Value};

use super::super::{campaign_id, rfc3339, Ctx};
use crate::domain::ids::{CallId, CampaignId};
use crate::ports::{CallResult, Store, StoreError};
use crate::roles::api::error::{ApiError, ErrorBody};

/// Calls read per page: large enough that a page's statement is cheap next to its rows.
const PAGE: usize = 2_000;

/// The columns before the metadata's.
const COLUMNS: [&str; 10] = [
    "call_id",
    "phone_number",
    "status",
    "attempts",
    "last_error",
    "answered_by",
    "response",
    "digits",
    "voicemail_left",
    "last_attempt_at",
];

const NDJSON: &str = "application/x-ndjson";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    JsonLines,
}

fn format_of(req: &HttpRequest) -> Format {
    let accept = req
        .headers()
        .get(ACCEPT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if accept.contains(NDJSON) && !accept.contains("text/csv") {
        Format::JsonLines
    } else {
        Format::Csv
    }
}

#[utoipa::path(get, path = "/api/v1/campaigns/{id}/results",
    params(("Accept" = Option<String>, Header, description = "text/csv (the default, also for */*) or application/x-ndjson")),
    responses(
        (status = 200, description = "one row per call, in call id order: call_id, phone_number, status, attempts, last_error, answered_by, response, digits, voicemail_left, last_attempt_at, then one metadata.<key> column per metadata key, sorted (CSV); the same fields with metadata as an object (JSON lines)",
            content(
                (String = "text/csv", example = "call_id,phone_number,status,attempts,last_error,answered_by,response,digits,voicemail_left,last_attempt_at,metadata.first_name\n0193...,+15555550100,completed,1,,human,confirmed,1,false,2026-12-06T10:00:00Z,Maria\n"),
                (String = "application/x-ndjson"),
            )),
        (status = 404, body = ErrorBody),
    ))]
pub async fn campaign_results(
    ctx: Ctx,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = campaign_id(&path)?;
    if ctx.store.get_campaign(id).await?.is_none() {
        return Err(ApiError::not_found("campaign"));
    }
    let format = format_of(&req);
    let (content_type, keys) = match format {
        Format::Csv => (
            "text/csv; charset=utf-8",
            ctx.store.metadata_keys(id).await?,
        ),
        Format::JsonLines => (NDJSON, Vec::new()),
    };
    let head = match format {
        Format::Csv => csv_line(
            COLUMNS
                .iter()
                .map(|c| (*c).to_owned())
                .chain(keys.iter().map(|key| format!("metadata.{key}"))),
        ),
        Format::JsonLines => Vec::new(),
    };
    let pages = Pages {
        store: ctx.store.clone(),
        campaign_id: id,
        format,
        keys,
    };
    let body = futures::stream::once(async move { Ok::<_, StoreError>(Bytes::from(head)) })
        .chain(futures::stream::try_unfold(
            (pages, None::<CallId>, false),
            |(pages, after, done)| async move {
                if done {
                    return Ok(None);
                }
                let calls = pages
                    .store
                    .call_results(pages.campaign_id, after, PAGE)
                    .await?;
                let last = calls.last().map(|call| call.call_id);
                let bytes = Bytes::from(pages.render(&calls));
                let done = calls.len() < PAGE;
                Ok(Some((bytes, (pages, last.or(after), done))))
            },
        ))
        .map(|page| {
            page.map_err(|err| {
                tracing::warn!(error = %err, "a results export stopped: the store failed");
                actix_web::error::ErrorServiceUnavailable("the store failed mid-export")
            })
        });
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .streaming(body))
}

/// What each page of an export needs.
struct Pages {
    store: std::sync::Arc<dyn Store>,
    campaign_id: CampaignId,
    format: Format,
    /// The metadata keys of the CSV's columns.
    keys: Vec<String>,
}

impl Pages {
    fn render(&self, calls: &[CallResult]) -> Vec<u8> {
        let mut out = Vec::with_capacity(calls.len() * 160);
        for call in calls {
            match self.format {
                Format::Csv => out.extend(csv_line(self.csv_cells(call))),
                Format::JsonLines => {
                    if serde_json::to_writer(&mut out, &json_line(call)).is_ok() {
                        out.push(b'\n');
                    }
                }
            }
        }
        out
    }

    fn csv_cells(&self, call: &CallResult) -> impl Iterator<Item = String> + '_ {
        let metadata = call.metadata.as_ref().map(|m| m.to_value());
        let fixed = [
            call.call_id.to_string(),
            call.phone_number.as_str().to_owned(),
            call.status.as_str().to_owned(),
            call.attempts.to_string(),
            call.last_error.clone().unwrap_or_default(),
            call.answer
                .answered_by
                .map(|by| by.as_str().to_owned())
                .unwrap_or_default(),
            call.answer.response.clone().unwrap_or_default(),
            call.answer.digits.clone().unwrap_or_default(),
            call.answer.voicemail_left.to_string(),
            call.last_attempt_at.map(rfc3339).unwrap_or_default(),
        ];
        let extra: Vec<String> = self
            .keys
            .iter()
            .map(|key| match metadata.as_ref().and_then(|m| m.get(key)) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
            })
            .collect();
        fixed.into_iter().chain(extra)
    }
}

/// One RFC 4180 record, CRLF-terminated as the RFC writes it.
fn csv_line(cells: impl IntoIterator<Item = String>) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::with_capacity(256));
    let cells: Vec<String> = cells.into_iter().collect();
    // Writing into memory cannot fail.
    let _ = writer.write_record(&cells);
    writer.into_inner().unwrap_or_default()
}

fn json_line(call: &CallResult) -> Value {
    json!({
        "call_id": call.call_id.to_string(),
        "phone_number": call.phone_number.as_str(),
        "status": call.status.as_str(),
        "attempts": call.attempts,
        "last_error": call.last_error,
        "answered_by": call.answer.answered_by.map(|by| by.as_str()),
        "response": call.answer.response,
        "digits": call.answer.digits,
        "voicemail_left": call.answer.voicemail_left,
        "last_attempt_at": call.last_attempt_at.map(rfc3339),
        "metadata": call.metadata.as_ref().map(|m| m.to_value()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_as_rfc_4180_asks() {
        let line = csv_line(["plain".into(), "a,b".into(), "say \"hi\"".into(), "".into()]);
        assert_eq!(
            String::from_utf8_lossy(&line),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\r\n"
        );
    }
}
