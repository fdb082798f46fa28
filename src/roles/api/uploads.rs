//! Bodies a route takes as JSON or as CSV: the media type decides, the body is read within the
//! listener's limits, and a CSV of targets becomes the same inputs a JSON body gives.

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::ApiError;
use super::handlers::targets::TargetInput;
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
    let expected = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<usize>().ok());
    if media == "application/json" || media.ends_with("+json") {
        Ok(Upload::Json(read_body(payload, limit, expected).await?))
    } else if media == "text/csv" {
        Ok(Upload::Csv(read_body(payload, limit, expected).await?))
    } else {
        Err(ApiError::unsupported_media_type_of(
            "application/json or text/csv",
        ))
    }
}

/// A JSON body, answered as the JSON extractor answers a malformed one; a list longer than
/// `MAX_ENTRIES` (read with `at_most_entries`) gets 413.
pub fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|err| {
        if err.to_string().contains(TOO_MANY_ENTRIES) {
            ApiError::too_many_entries(MAX_ENTRIES)
        } else {
            ApiError::malformed(format!("malformed JSON body: {err}"))
        }
    })
}

/// What a list past `MAX_ENTRIES` fails with, for `json` to recognise.
const TOO_MANY_ENTRIES: &str = "a list of more than MAX_ENTRIES entries";

/// A list of at most `MAX_ENTRIES` items: reading stops at the one past them, before the
/// rest of a huge list is held.
pub struct Bounded<T>(pub Vec<T>);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Bounded<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Items<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Items<T> {
            type Value = Vec<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<T>, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(item) = seq.next_element()? {
                    if items.len() == MAX_ENTRIES {
                        return Err(serde::de::Error::custom(TOO_MANY_ENTRIES));
                    }
                    items.push(item);
                }
                Ok(items)
            }
        }
        deserializer
            .deserialize_seq(Items(std::marker::PhantomData))
            .map(Bounded)
    }
}

/// For `#[serde(default, deserialize_with = "at_most_entries")]` on an optional list.
pub fn at_most_entries<'de, D, T>(deserializer: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    Ok(Option::<Bounded<T>>::deserialize(deserializer)?.map(|list| list.0))
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

/// Most targets (or do-not-call numbers) one upload registers: the memory an upload holds
/// grows with its entries, so past these the upload is refused (413) to be sent in parts.
pub const MAX_ENTRIES: usize = 1_000_000;

/// Most columns of a CSV upload.
pub const MAX_CSV_COLUMNS: usize = 64;
/// Most bytes of a CSV upload's header row.
pub const MAX_CSV_HEADER_BYTES: usize = 4096;

/// The header row, its names without a byte-order mark, within the bounds above.
pub fn headers(reader: &mut csv::Reader<&[u8]>) -> Result<Vec<String>, ApiError> {
    let header = reader
        .byte_headers()
        .map_err(|err| ApiError::malformed(format!("unreadable CSV header: {err}")))?;
    let bytes = header.as_slice().len() + header.len();
    if header.len() > MAX_CSV_COLUMNS {
        return Err(ApiError::validation(vec![format!(
            "line 1: at most {MAX_CSV_COLUMNS} columns, the header names {}",
            header.len()
        )]));
    }
    if bytes > MAX_CSV_HEADER_BYTES {
        return Err(ApiError::validation(vec![format!(
            "line 1: the header row must be at most {MAX_CSV_HEADER_BYTES} bytes"
        )]));
    }
    Ok(reader
        .headers()
        .map_err(|err| ApiError::malformed(format!("unreadable CSV header: {err}")))?
        .iter()
        .map(|name| name.trim_start_matches('\u{feff}').to_owned())
        .collect())
}

/// A record of at most `MAX_CSV_COLUMNS` cells, or the problem naming its line.
pub fn bounded_record(
    index: usize,
    record: Result<csv::StringRecord, csv::Error>,
) -> Result<csv::StringRecord, String> {
    let line = line_of(index);
    let record = record.map_err(|err| format!("line {line}: unreadable CSV: {err}"))?;
    if record.len() > MAX_CSV_COLUMNS {
        return Err(format!(
            "line {line}: at most {MAX_CSV_COLUMNS} columns, the row has {}",
            record.len()
        ));
    }
    Ok(record)
}

/// The line of the `index`-th record (line 1 is the header).
pub fn line_of(index: usize) -> usize {
    index + 2
}

/// Targets from a CSV: a `phone_number` column, an optional `time_zone`, and every other
/// non-empty cell kept in the target's metadata under its column's name.
///
/// Each row's metadata repeats its column names, so a CSV's targets may take far more room
/// than the CSV itself: past `stored_limit` bytes of metadata the upload is refused (413)
/// before more is held.
pub fn targets_from_csv(body: &[u8], stored_limit: usize) -> Result<Vec<TargetInput>, ApiError> {
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
    let mut stored = 0usize;
    for (index, record) in reader.records().enumerate() {
        if index == MAX_ENTRIES {
            return Err(ApiError::too_many_entries(MAX_ENTRIES));
        }
        let record =
            bounded_record(index, record).map_err(|problem| ApiError::validation(vec![problem]))?;
        let mut metadata = serde_json::Map::new();
        for (column, value) in record.iter().enumerate() {
            if column == number_at || Some(column) == zone_at || value.is_empty() {
                continue;
            }
            if let Some(name) = headers.get(column).filter(|name| !name.is_empty()) {
                metadata.insert(name.clone(), serde_json::Value::String(value.to_owned()));
            }
        }
        let metadata = if metadata.is_empty() {
            None
        } else {
            let text = serde_json::Value::Object(metadata).to_string();
            stored += text.len();
            if stored > stored_limit {
                return Err(ApiError::stored_too_large(stored_limit));
            }
            Some(RawValue::from_string(text).map_err(|err| ApiError::internal(&err))?)
        };
        targets.push(TargetInput {
            phone_number: Some(record.get(number_at).unwrap_or_default().to_owned()),
            time_zone: zone_at
                .and_then(|at| record.get(at))
                .filter(|zone| !zone.is_empty())
                .map(str::to_owned),
            metadata,
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
        let targets = targets_from_csv(body, 1 << 20).expect("valid");
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[0].phone_number.as_deref(), Some("+15555550001"));
        assert_eq!(targets[0].time_zone.as_deref(), Some("America/Chicago"));
        let metadata = |i: usize| targets[i].metadata.as_ref().map(|m| m.get().to_owned());
        assert_eq!(metadata(0).as_deref(), Some(r#"{"customer":"A-17"}"#));
        assert_eq!(targets[1].time_zone, None);
        assert_eq!(
            metadata(1).as_deref(),
            Some(r#"{"customer":"B-2","notes":"call after 5"}"#)
        );
        let err = targets_from_csv(b"number\n+15555550001\n", 1 << 20).expect_err("no column");
        assert_eq!(err.code().as_str(), "validation_failed");
    }

    #[test]
    fn a_json_list_past_the_most_entries_is_refused_before_it_is_held() {
        #[derive(serde::Deserialize)]
        struct Listing {
            #[serde(default, deserialize_with = "at_most_entries")]
            items: Option<Vec<u8>>,
        }
        let body = |n: usize| format!("{{\"items\":[{}0]}}", "0,".repeat(n - 1));
        let full: Listing = json(body(MAX_ENTRIES).as_bytes()).expect("at the bound");
        assert_eq!(full.items.map(|items| items.len()), Some(MAX_ENTRIES));
        let err = json::<Listing>(body(MAX_ENTRIES + 1).as_bytes())
            .err()
            .expect("past it");
        assert_eq!(err.code().as_str(), "payload_too_large");
        let none: Listing = json(b"{\"items\":null}").expect("null");
        assert!(none.items.is_none());
        let err = json::<Listing>(b"{\"items\":[1,\"x\"]}")
            .err()
            .expect("malformed");
        assert_eq!(err.code().as_str(), "malformed_body");
    }
}
