//! The one error type of the API and its JSON envelope:
//! `{"error": message, "code": stable_snake_case, "trace_id": id, "details"?: [...]}`.
//! 5xx bodies never carry internal error text; the server logs the cause instead.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::ports::{StoreError, TimelineError};
use crate::telemetry;

/// Most entries `details` lists.
pub const MAX_DETAILS: usize = 100;

/// Most entries a dry run's `details` lists: a check before a create is where an operator reads
/// every rejected row of an upload, so it names far more of them than other errors do.
pub const MAX_DRY_RUN_DETAILS: usize = 10_000;

/// Every code an error body may carry: clients branch on these, so they never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    ValidationFailed,
    MalformedBody,
    InvalidId,
    InvalidPageToken,
    InvalidSignature,
    Unauthorized,
    Forbidden,
    NotFound,
    RouteNotFound,
    UnknownAttempt,
    MethodNotAllowed,
    RequestTimeout,
    DuplicateName,
    InvalidState,
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimited,
    TooManyStreams,
    Busy,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 21] = [
        Self::ValidationFailed,
        Self::MalformedBody,
        Self::InvalidId,
        Self::InvalidPageToken,
        Self::InvalidSignature,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::RouteNotFound,
        Self::UnknownAttempt,
        Self::MethodNotAllowed,
        Self::RequestTimeout,
        Self::DuplicateName,
        Self::InvalidState,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::RateLimited,
        Self::TooManyStreams,
        Self::Busy,
        Self::Unavailable,
        Self::Internal,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ValidationFailed => "validation_failed",
            Self::MalformedBody => "malformed_body",
            Self::InvalidId => "invalid_id",
            Self::InvalidPageToken => "invalid_page_token",
            Self::InvalidSignature => "invalid_signature",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::RouteNotFound => "route_not_found",
            Self::UnknownAttempt => "unknown_attempt",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RequestTimeout => "request_timeout",
            Self::DuplicateName => "duplicate_name",
            Self::InvalidState => "invalid_state",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RateLimited => "rate_limited",
            Self::TooManyStreams => "too_many_streams",
            Self::Busy => "busy",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    /// The one status each code is answered with.
    pub const fn status(self) -> StatusCode {
        match self {
            Self::ValidationFailed
            | Self::MalformedBody
            | Self::InvalidId
            | Self::InvalidPageToken => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::InvalidSignature => StatusCode::FORBIDDEN,
            Self::NotFound | Self::RouteNotFound | Self::UnknownAttempt => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::DuplicateName | Self::InvalidState => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited | Self::TooManyStreams => StatusCode::TOO_MANY_REQUESTS,
            Self::Busy | Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    details: Vec<String>,
    trace_id: String,
    /// Seconds for a `Retry-After` header.
    retry_after: Option<u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Human-readable message.
    pub error: String,
    /// Stable snake_case code.
    pub code: ErrorCode,
    /// The request's trace id (32 hex digits), or empty.
    pub trace_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Vec::new(),
            trace_id: telemetry::current_trace_id(),
            retry_after: None,
        }
    }

    pub fn with_details(self, details: Vec<String>) -> Self {
        self.with_details_up_to(details, MAX_DETAILS)
    }

    fn with_details_up_to(mut self, mut details: Vec<String>, most: usize) -> Self {
        details.truncate(most);
        self.details = details;
        self
    }

    pub fn validation(details: Vec<String>) -> Self {
        Self::validation_up_to(details, MAX_DETAILS)
    }

    /// A validation error listing up to `most` of its problems; the message counts them all.
    pub fn validation_up_to(details: Vec<String>, most: usize) -> Self {
        let message = match details.first() {
            Some(first) if details.len() == 1 => format!("invalid request: {first}"),
            Some(first) => format!("invalid request: {first} (and {} more)", details.len() - 1),
            None => "invalid request".to_owned(),
        };
        Self::new(ErrorCode::ValidationFailed, message).with_details_up_to(details, most)
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::MalformedBody, message)
    }

    pub fn invalid_id(value: &str) -> Self {
        Self::new(
            ErrorCode::InvalidId,
            format!("invalid id {value:?}: expected a UUID"),
        )
    }

    pub fn invalid_page_token() -> Self {
        Self::new(ErrorCode::InvalidPageToken, "invalid page_token")
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn unauthorized() -> Self {
        Self::new(
            ErrorCode::Unauthorized,
            "a valid API key is required: Authorization: Bearer <key>",
        )
    }

    pub fn forbidden(needed: &str) -> Self {
        Self::new(
            ErrorCode::Forbidden,
            format!("this key's role may not use this route (it needs {needed})"),
        )
    }

    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut error = Self::new(
            ErrorCode::RateLimited,
            "too many requests for this key, slow down",
        );
        error.retry_after = Some(retry_after_secs.max(1));
        error
    }

    pub fn too_many_streams(scope: &str) -> Self {
        let mut error = Self::new(
            ErrorCode::TooManyStreams,
            format!("too many event streams open {scope}; close one first"),
        );
        error.retry_after = Some(5);
        error
    }

    pub fn busy(retry_after_secs: u64) -> Self {
        let mut error = Self::new(
            ErrorCode::Busy,
            "too many large requests at once, try again",
        );
        error.retry_after = Some(retry_after_secs.max(1));
        error
    }

    pub fn body_timeout() -> Self {
        Self::new(
            ErrorCode::RequestTimeout,
            "the request body did not arrive in time",
        )
    }

    pub fn route_not_found() -> Self {
        Self::new(ErrorCode::RouteNotFound, "no such route")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            ErrorCode::MethodNotAllowed,
            "method not allowed on this route",
        )
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            ErrorCode::PayloadTooLarge,
            format!("request body is larger than {limit} bytes"),
        )
    }

    /// An upload of more than `most` targets or numbers.
    pub fn too_many_entries(most: usize) -> Self {
        Self::new(
            ErrorCode::PayloadTooLarge,
            format!("an upload registers at most {most} targets or numbers; send it in parts"),
        )
    }

    /// An upload whose stored form would exceed `limit` bytes, though its body did not.
    pub fn stored_too_large(limit: usize) -> Self {
        Self::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the upload would take more than {limit} bytes once stored (each row repeats \
                 its column names in its metadata); split it or send fewer columns"
            ),
        )
    }

    pub fn unsupported_media_type() -> Self {
        Self::unsupported_media_type_of("application/json")
    }

    /// A body of a media type the route does not take; `accepted` names those it does.
    pub fn unsupported_media_type_of(accepted: &str) -> Self {
        Self::new(
            ErrorCode::UnsupportedMediaType,
            format!("request body must be {accepted}"),
        )
    }

    pub fn unavailable() -> Self {
        Self::new(
            ErrorCode::Unavailable,
            "a backend is unavailable, try again",
        )
    }

    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        let error = Self::new(ErrorCode::Internal, "internal error");
        tracing::error!(error.cause = %cause, trace_id = %error.trace_id, "request failed");
        error
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn details(&self) -> &[String] {
        &self.details
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.code.status());
        if let Some(secs) = self.retry_after {
            response.insert_header((actix_web::http::header::RETRY_AFTER, secs.to_string()));
        }
        response.json(ErrorBody {
            error: self.message.clone(),
            code: self.code,
            trace_id: self.trace_id.clone(),
            details: self.details.clone(),
        })
    }
}

impl From<TimelineError> for ApiError {
    fn from(err: TimelineError) -> Self {
        match err {
            TimelineError::InvalidPageToken => Self::invalid_page_token(),
            TimelineError::Unavailable(cause) => {
                tracing::warn!(error.cause = %cause, "timeline unavailable");
                Self::unavailable()
            }
            TimelineError::Internal(cause) => Self::internal(&cause),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => Self::not_found("resource"),
            StoreError::DuplicateName => Self::new(
                ErrorCode::DuplicateName,
                "a campaign with this name already exists",
            ),
            StoreError::InvalidState(transition) => {
                Self::new(ErrorCode::InvalidState, transition.to_string())
            }
            StoreError::NotRegistered(numbers) => Self::validation(
                numbers
                    .into_iter()
                    .map(|n| format!("{n}: not a registered target of the campaign"))
                    .collect(),
            ),
            StoreError::Unavailable(cause) => {
                tracing::warn!(error.cause = %cause, "store unavailable");
                Self::unavailable()
            }
            StoreError::Internal(cause) => Self::internal(&cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_is_spelled_once_and_as_serialized() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert_eq!(
                serde_json::to_value(code).ok(),
                Some(serde_json::Value::from(code.as_str()))
            );
            assert!(seen.insert(code.as_str()), "{code} twice");
        }
    }
}
