//! What one client can take from the listener: a body must arrive within `http.body_timeout`,
//! and large bodies are taken `http.max_large_bodies` at a time (by `take_turn`, which the key
//! guard calls once the caller is admitted).
//!
//! A large body costs far more memory than its size once parsed (a 64 MiB create of 1M
//! targets peaks at several hundred MiB between its JSON, its validated targets and its rows),
//! so a few concurrent ones could take the process down. A large request waits for its turn,
//! for up to `LARGE_BODY_WAIT`, and is then told to come back (503 with `Retry-After`); the
//! turn is held until its response is ready. Small requests never wait.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{web, HttpMessage};
use futures::Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use super::error::ApiError;

/// A body larger than this (or of unknown length) needs a turn.
pub const LARGE_BODY_BYTES: u64 = 1024 * 1024;
/// How long a large request waits for a turn before it is turned away.
const LARGE_BODY_WAIT: Duration = Duration::from_secs(30);

/// The turns for large bodies and the deadline of every body, shared by the workers.
pub struct BodyLimits {
    turns: Arc<Semaphore>,
    body_timeout: Duration,
}

impl BodyLimits {
    pub fn new(max_large_bodies: usize, body_timeout: Duration) -> Self {
        Self {
            turns: Arc::new(Semaphore::new(max_large_bodies.max(1))),
            body_timeout,
        }
    }
}

/// A request body that fails with a time-out once its deadline passes.
struct Deadline {
    inner: Payload,
    sleep: Pin<Box<Sleep>>,
    expired: bool,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.expired = true;
            return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request body not received in time",
            )))));
        }
        Poll::Pending
    }
}

/// Whether a body read failed because its deadline passed.
pub fn timed_out(err: &PayloadError) -> bool {
    matches!(err, PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut)
}

fn has_body(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.trim() != "0")
}

fn is_large(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    match headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
    {
        Some(length) => length > LARGE_BODY_BYTES,
        // Chunked: its size is unknown until it is read, so it takes a turn.
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

/// A turn for a large body (`None` for a small one), taken after the caller was admitted, so
/// that nobody without a key can hold the turns. Waits up to `LARGE_BODY_WAIT`, then answers
/// 503 `busy`.
pub async fn take_turn(req: &ServiceRequest) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
    let Some(limits) = req.app_data::<web::Data<BodyLimits>>() else {
        return Ok(None);
    };
    if !is_large(req) {
        return Ok(None);
    }
    match tokio::time::timeout(LARGE_BODY_WAIT, limits.turns.clone().acquire_owned()).await {
        Ok(Ok(turn)) => Ok(Some(turn)),
        _ => Err(ApiError::busy(LARGE_BODY_WAIT.as_secs())),
    }
}

/// Puts every request body under the `http.body_timeout` deadline.
pub async fn bound_bodies(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let limits = req.app_data::<web::Data<BodyLimits>>().cloned();
    // A request without a body (most reads) has nothing to time.
    let Some(limits) = limits.filter(|_| has_body(&req)) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let payload = req.take_payload();
    let deadline = Deadline {
        inner: payload,
        sleep: Box::pin(tokio::time::sleep(limits.body_timeout)),
        expired: false,
    };
    req.set_payload(Payload::Stream {
        payload: Box::pin(deadline),
    });
    next.call(req)
        .await
        .map(ServiceResponse::map_into_boxed_body)
}

/// Reads a whole request body of at most `limit` bytes, answering as the JSON extractor does
/// when it is too large, too slow or broken off. `expected` (the declared length) sets the
/// buffer aside at once, so a large body is never copied into ever larger buffers (which
/// would hold up to twice its size).
pub async fn read_body(
    mut payload: web::Payload,
    limit: usize,
    expected: Option<usize>,
) -> Result<Bytes, ApiError> {
    use futures::StreamExt;
    if expected.is_some_and(|length| length > limit) {
        return Err(ApiError::payload_too_large(limit));
    }
    let mut body = web::BytesMut::with_capacity(expected.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|err| {
            if timed_out(&err) {
                ApiError::body_timeout()
            } else {
                ApiError::malformed(format!("unreadable body: {err}"))
            }
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
