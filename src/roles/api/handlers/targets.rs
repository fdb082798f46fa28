//! A campaign's targets: their validation, as JSON or CSV, and their addition to a campaign.

use std::collections::HashSet;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::campaigns::message::check_targets;
use super::{campaign_id, wake_campaign, Ctx, Problems};
use crate::context::AppContext;
use crate::domain::metadata::Metadata;
use crate::domain::phone::PhoneNumber;
use crate::ports::NewTarget;
use crate::roles::api::access::Audit;
use crate::roles::api::error::{ApiError, ErrorBody, MAX_DETAILS};
use crate::roles::api::uploads::{self, Upload};

#[derive(Debug, Deserialize, ToSchema)]
pub struct TargetInput {
    /// E.164, e.g. "+15555550001": a number valid in its country's numbering plan.
    #[schema(value_type = String, required = true)]
    pub phone_number: Option<String>,
    /// A JSON object of at most 64 keys and 4096 bytes (compact).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Box<RawValue>>,
    /// The called party's IANA time zone, when it is known better than from the number.
    pub time_zone: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"targets": [{"phone_number": "+15555550001"}]}))]
pub struct AddTargetsRequest {
    /// At least one and at most 1,000,000 (413 beyond); each a registered target of the
    /// campaign.
    #[schema(value_type = Vec<TargetInput>, required = true, min_items = 1)]
    #[serde(default, deserialize_with = "super::uploads::at_most_entries")]
    pub targets: Option<Vec<TargetInput>>,
}

/// A target's metadata as sent (`null` is absent, before this is reached).
pub fn validate_metadata(raw: &RawValue) -> Result<Metadata, String> {
    Metadata::parse(raw.get()).map_err(|problem| problem.to_string())
}

/// How an upload names the field of its `index`-th target: `targets[3].phone_number` in JSON,
/// `line 5: phone_number` in CSV.
pub type FieldOf = fn(usize, &str) -> String;

/// How a JSON body names a target's field.
pub fn json_target_field(index: usize, column: &str) -> String {
    format!("targets[{index}].{column}")
}

/// Parses, canonicalises and deduplicates target numbers (the first metadata wins), naming a
/// problem's field with `field_of(index, column)`.
pub fn validate_targets_as(
    input: Vec<TargetInput>,
    problems: &mut Problems,
    field_of: FieldOf,
) -> Vec<NewTarget> {
    let mut seen = HashSet::with_capacity(input.len());
    let mut targets = Vec::with_capacity(input.len());
    for (index, target) in input.into_iter().enumerate() {
        let field = field_of(index, "phone_number");
        let Some(raw) = target.phone_number else {
            problems.push(&field, "is required");
            continue;
        };
        let time_zone = match target.time_zone.as_deref() {
            None => None,
            Some(zone) => match zone.parse::<Tz>() {
                Ok(tz) => Some(tz),
                Err(_) => {
                    problems.push(
                        &field_of(index, "time_zone"),
                        format!("{zone:?} is not an IANA time zone"),
                    );
                    continue;
                }
            },
        };
        let metadata = match target.metadata.as_deref().map(validate_metadata) {
            None => None,
            Some(Ok(metadata)) => Some(metadata),
            Some(Err(problem)) => {
                problems.push(&field_of(index, "metadata"), problem);
                continue;
            }
        };
        match PhoneNumber::parse(&raw) {
            Ok(number) => {
                if seen.insert(number.clone()) {
                    targets.push(NewTarget {
                        phone_number: number,
                        metadata,
                        time_zone,
                    });
                }
            }
            Err(err) => problems.push(&field, format!("{raw:?} is {err}")),
        }
    }
    targets
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedResponse {
    pub accepted: u64,
}

/// How a CSV upload names a target's field: by its line (line 1 is the header).
pub(super) fn csv_field(index: usize, column: &str) -> String {
    format!("line {}: {column}", uploads::line_of(index))
}

/// Targets from a CSV body, parsed off the worker's thread; their metadata may take at most
/// as much room as the largest body.
pub(super) async fn csv_targets(
    ctx: &AppContext,
    body: web::Bytes,
) -> Result<Vec<TargetInput>, ApiError> {
    let stored_limit = ctx.settings.http.body_limit_bytes;
    uploads::parse_off_thread(move || uploads::targets_from_csv(&body, stored_limit)).await
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
    // The message's keys are checked against the campaign as it is now; its store write
    // checks nothing more, so an upload racing a change of the message may miss it.
    let campaign = ctx
        .store
        .get_campaign(id)
        .await?
        .ok_or_else(|| ApiError::not_found("campaign"))?;
    if let Some(message) = campaign.voice.message() {
        check_targets(message, &targets, field_of, &mut problems);
        if !problems.is_empty() {
            return Err(ApiError::validation_up_to(problems.0, MAX_DETAILS));
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::roles::api::handlers::Problems;

    #[test]
    fn targets_are_canonical_and_deduplicated() {
        let mut problems = Problems::default();
        let input = vec![
            TargetInput {
                phone_number: Some("+15555550001".into()),
                metadata: None,
                time_zone: None,
            },
            TargetInput {
                phone_number: Some("+1 555 555 0001".into()),
                metadata: None,
                time_zone: None,
            },
            TargetInput {
                phone_number: Some("12345".into()),
                metadata: None,
                time_zone: None,
            },
        ];
        let targets = validate_targets_as(input, &mut problems, json_target_field);
        assert_eq!(targets.len(), 1);
        assert_eq!(problems.0.len(), 1);
        assert!(problems.0[0].starts_with("targets[2].phone_number"));
    }
}
