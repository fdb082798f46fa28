//! The SQL timeline's pages: the attempts table in primary-key order, resumed after the last
//! `(call_id, attempt)` of the previous page, which the page token carries.

use crate::domain::ids::CallId;
use crate::ports::{TimelineEntry, TimelineError, TimelinePage};

/// The SQL timeline's page token: the last `(call_id, attempt)` of the page, as opaque bytes.
pub fn encode_token(call_id: CallId, attempt: u32) -> String {
    use base64::Engine;
    let mut bytes = Vec::with_capacity(20);
    bytes.extend_from_slice(call_id.0.as_bytes());
    bytes.extend_from_slice(&attempt.to_be_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The `(call_id, attempt)` a page token resumes after.
pub fn decode_token(token: &str) -> Result<(CallId, u32), TimelineError> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| TimelineError::InvalidPageToken)?;
    let (id, attempt) = bytes
        .split_at_checked(16)
        .ok_or(TimelineError::InvalidPageToken)?;
    let id = uuid::Uuid::from_slice(id).map_err(|_| TimelineError::InvalidPageToken)?;
    let attempt: [u8; 4] = attempt
        .try_into()
        .map_err(|_| TimelineError::InvalidPageToken)?;
    let attempt = u32::from_be_bytes(attempt);
    // Attempt numbers are SQL INTEGERs: a larger one was never issued.
    if i32::try_from(attempt).is_err() {
        return Err(TimelineError::InvalidPageToken);
    }
    Ok((CallId(id), attempt))
}

/// Where a page of the SQL timeline starts: after `(call_id, attempt)`, or from the start
/// (an empty id and attempt -1 sort before every row).
pub fn resume_after(page_token: Option<&str>) -> Result<(String, i64), TimelineError> {
    Ok(match page_token {
        Some(token) => {
            let (call, attempt) = decode_token(token)?;
            (call.to_string(), i64::from(attempt))
        }
        None => (String::new(), -1),
    })
}

/// A page from up to `limit + 1` rows in timeline order: the extra row only says there is more.
pub fn page(mut entries: Vec<TimelineEntry>, limit: usize) -> TimelinePage {
    let next_page_token = if entries.len() > limit {
        entries.truncate(limit);
        entries
            .last()
            .map(|entry| encode_token(entry.call_id, entry.attempt.attempt))
    } else {
        None
    };
    TimelinePage {
        entries,
        next_page_token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_tokens_round_trip_and_refuse_what_was_never_issued() {
        let call = CallId(uuid::Uuid::now_v7());
        let token = encode_token(call, 3);
        assert_eq!(decode_token(&token).ok(), Some((call, 3)));
        assert_eq!(resume_after(Some(&token)).ok(), Some((call.to_string(), 3)));
        assert_eq!(resume_after(None).ok(), Some((String::new(), -1)));
        let beyond_sql_integer = encode_token(call, i32::MAX as u32 + 1);
        for token in [beyond_sql_integer.as_str(), "", "%%%", "AAAA"] {
            assert!(
                matches!(decode_token(token), Err(TimelineError::InvalidPageToken)),
                "{token:?}"
            );
        }
    }
}
