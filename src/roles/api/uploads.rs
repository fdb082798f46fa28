//! Bodies a route takes as JSON or as CSV: the media type decides, the body is read within the
//! listener's limits, and a CSV of targets becomes the same inputs a JSON body gives.

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest};
use serde::de::DeserializeOwned;

use super::dto::TargetInput;
use super::error::ApiError;
use super::limits::read_body;

/// A body of a route that takes JSON or CSV.
pub enum Upload {
    Json(Bytes),
    Csv(Bytes),
}

/// The media type of a request, without parameters, lowercased.
pub fn media_type(req: &HttpRequest) -> String {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Reads a JSON or CSV body of at most `limit` bytes; any other media type is refused before
/// the body is read.
pub async fn read(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<Upload, ApiError> {
    let media = media_type(req);
    if media == "application/json" || media.ends_with("+json") {
        Ok(Upload::Json(read_body(payload, limit).await?))
    } else if media == "text/csv" {
        Ok(Upload::Csv(read_body(payload, limit).await?))
    } else {
        Err(ApiError::unsupported_media_type_of(
            "application/json or text/csv",
        ))
    }
}

/// A JSON body, answered as the JSON extractor answers a malformed one.
pub fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|err| ApiError::malformed(format!("malformed JSON body: {err}")))
}

/// Runs a parse of a large body off the worker's thread.
pub async fn parse_off_thread<T, F>(parse: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(parse)
        .await
        .map_err(|err| ApiError::internal(&err))?
}

/// A CSV reader that tolerates surrounding blanks and rows of differing lengths.
pub fn reader(body: &[u8]) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body)
}

/// The header row, its names without a byte-order mark.
pub fn headers(reader: &mut csv::Reader<&[u8]>) -> Result<Vec<String>, ApiError> {
    Ok(reader
        .headers()
        .map_err(|err| ApiError::malformed(format!("unreadable CSV header: {err}")))?
        .iter()
        .map(|name| name.trim_start_matches('\u{feff}').to_owned())
        .collect())
}

/// The line of the `index`-th record (line 1 is the header).
pub fn line_of(index: usize) -> usize {
    index + 2
}

/// Targets from a CSV: a `phone_number` column, an optional `time_zone`, and every other
/// non-empty cell kept in the target's metadata under its column's name.
pub fn targets_from_csv(body: &[u8]) -> Result<Vec<TargetInput>, ApiError> {
    let mut reader = reader(body);
    let headers = headers(&mut reader)?;
    let at = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let number_at = at("phone_number").ok_or_else(|| {
        ApiError::validation(vec![
            "csv: the header row must name a phone_number column".into()
        ])
    })?;
    let zone_at = at("time_zone");
    let mut targets = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let record = record.map_err(|err| {
            ApiError::validation(vec![format!(
                "line {}: unreadable CSV: {err}",
                line_of(index)
            )])
        })?;
        let mut metadata = serde_json::Map::new();
        for (column, value) in record.iter().enumerate() {
            if column == number_at || Some(column) == zone_at || value.is_empty() {
                continue;
            }
            if let Some(name) = headers.get(column).filter(|name| !name.is_empty()) {
                metadata.insert(name.clone(), serde_json::Value::String(value.to_owned()));
            }
        }
        targets.push(TargetInput {
            phone_number: Some(record.get(number_at).unwrap_or_default().to_owned()),
            time_zone: zone_at
                .and_then(|at| record.get(at))
                .filter(|zone| !zone.is_empty())
                .map(str::to_owned),
            metadata: (!metadata.is_empty()).then_some(serde_json::Value::Object(metadata)),
        });
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn csv_targets_keep_their_other_columns_as_metadata() {
        let body = b"\xef\xbb\xbfphone_number,Time_Zone,customer,notes\n\
            +15555550001,America/Chicago,A-17,\n+15555550002,,B-2,call after 5\n";
        let targets = targets_from_csv(body).expect("valid");
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[0].phone_number.as_deref(), Some("+15555550001"));
        assert_eq!(targets[0].time_zone.as_deref(), Some("America/Chicago"));
        assert_eq!(
            targets[0].metadata,
            Some(serde_json::json!({"customer": "A-17"}))
        );
        assert_eq!(targets[1].time_zone, None);
        assert_eq!(
            targets[1].metadata,
            Some(serde_json::json!({"customer": "B-2", "notes": "call after 5"}))
        );
        let err = targets_from_csv(b"number\n+15555550001\n").expect_err("no column");
        assert_eq!(err.code(), "validation_failed");
    }
}
