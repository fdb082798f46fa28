//! The carrier's status callbacks. Any api process may receive a callback for a call placed
//! anywhere: it checks the signature, then hands a final status to the status role through the
//! bus, which records it idempotently (a repeated or late callback changes nothing); while the
//! bus is down it records the status itself. Progress events (initiated, ringing, answered)
//! change nothing in the store and are only counted.

use actix_web::error::PayloadError;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::context::AppContext;
use crate::domain::answer::{AnsweredBy, Heard};
use crate::domain::call::AttemptOutcome;
use crate::domain::message::Message;
use crate::metrics::metrics;
use crate::ports::{AttemptKey, CallbackError, CarrierCallback, StoreError, Topic};
use crate::roles::api::error::{ApiError, ErrorBody, ErrorCode};
use crate::roles::messages::{self, StatusMessage};
use crate::roles::outcomes::{OutcomeRecorder, RecordError};

/// The largest callback body read.
pub const MAX_CALLBACK_BYTES: usize = 64 * 1024;

/// The header carrying the carrier's signature.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

pub(super) fn counted(result: &'static str) {
    metrics()
        .carrier_callbacks
        .with_label_values(&[result])
        .inc();
}

/// A callback's body, or its own error in the API's envelope: too large, too slow, or cut off.
pub(super) fn callback_body(
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<web::Bytes, ApiError> {
    body.map_err(|err| match err.as_error::<PayloadError>() {
        Some(PayloadError::Overflow) => ApiError::payload_too_large(MAX_CALLBACK_BYTES),
        Some(inner) if crate::roles::api::limits::timed_out(inner) => ApiError::body_timeout(),
        _ => ApiError::malformed(format!("unreadable body: {err}")),
    })
}

/// The carrier's signature of a request. An unsigned request is refused before anything else
/// is said about this deployment.
pub(super) fn signature_of(req: &HttpRequest) -> Result<&str, ApiError> {
    let signature = req
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok());
    signature.ok_or_else(|| {
        counted("bad_signature");
        ApiError::new(
            ErrorCode::InvalidSignature,
            "the X-Twilio-Signature header is missing",
        )
    })
}

/// The refusal of a request to `path` the carrier did not sign (or signed for another URL),
/// counted and logged; nothing it asks for is done.
pub(super) fn forged(path: &str) -> ApiError {
    counted("bad_signature");
    tracing::warn!(
        path,
        "carrier request refused: the signature does not verify"
    );
    ApiError::new(
        ErrorCode::InvalidSignature,
        "the X-Twilio-Signature header does not verify for this request",
    )
}

/// A carrier's status callback (Twilio's form parameters, signed with `X-Twilio-Signature`).
/// The callback the carrier signed, or the refusal of a request it did not sign (or that does
/// not say which attempt it is about).
fn verified(
    ctx: &AppContext,
    req: &HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<CarrierCallback, ApiError> {
    let body = callback_body(body)?;
    let signature = Some(signature_of(req)?);
    let Some(verifier) = &ctx.callbacks else {
        counted("unknown");
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "no carrier sends callbacks here: telephony.provider is not twilio",
        ));
    };
    match verifier.verify(req.query_string(), &body, signature, ctx.clock.now()) {
        Ok(callback) => Ok(callback),
        Err(CallbackError::BadSignature) => Err(forged(crate::ports::STATUS_CALLBACK_PATH)),
        Err(CallbackError::UnknownAttempt(why)) => {
            counted("unknown");
            Err(ApiError::new(
                ErrorCode::UnknownAttempt,
                format!("the callback names no attempt: {why}"),
            ))
        }
        Err(CallbackError::Malformed(why)) => {
            counted("malformed");
            Err(ApiError::malformed(format!("malformed callback: {why}")))
        }
    }
}

#[utoipa::path(post, path = "/webhooks/twilio/status",
    params(
        ("campaign" = String, Query, format = Uuid, description = "the attempt's campaign, as the engine set it"),
        ("call" = String, Query, format = Uuid, description = "the attempt's call"),
        ("attempt" = u32, Query, description = "the attempt's number"),
        ("X-Twilio-Signature" = String, Header, description = "base64 HMAC-SHA1 of the URL and the sorted parameters, keyed by the auth token"),
    ),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "CallSid, AccountSid, CallStatus, CallDuration, Timestamp, SequenceNumber, SipResponseCode, AnsweredBy, ErrorCode"),
    responses(
        (status = 204, description = "recorded, or a progress event"),
        (status = 400, body = ErrorBody, description = "malformed_body"),
        (status = 403, body = ErrorBody, description = "invalid_signature"),
        (status = 404, body = ErrorBody, description = "unknown_attempt, or no carrier configured"),
        (status = 503, body = ErrorBody, description = "neither the bus nor the store can take it now"),
    ))]
pub async fn twilio_status(
    ctx: web::Data<AppContext>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let callback = verified(&ctx, &req, body)?;
    let Some(outcome) = callback.outcome.clone() else {
        counted("progress");
        return Ok(HttpResponse::NoContent().finish());
    };
    // An attempt this deployment never made is refused; but a store that cannot be read now
    // (a failover) must not lose a final status the carrier will not send again: it goes on
    // to the bus, durable there, and its recording ignores an attempt the store does not know.
    // `recorded`: the verdict the engine kept for the attempt, `Some(None)` when it kept none,
    // `None` when the store could not say.
    let (known, recorded) = match ctx.store.get_call(callback.key.call_id).await {
        Ok(Some((call, attempts)))
            if call.campaign_id == callback.key.campaign_id
                && callback.key.attempt <= call.attempt_count =>
        {
            let verdict = attempts
                .into_iter()
                .find(|attempt| attempt.attempt == callback.key.attempt)
                .and_then(|attempt| attempt.answer.answered_by);
            (true, Some(verdict))
        }
        Ok(_) => (false, None),
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the callback's call; passing its status on");
            (true, None)
        }
    };
    if !known {
        counted("unknown");
        return Err(ApiError::new(
            ErrorCode::UnknownAttempt,
            "the callback names an attempt this deployment never made",
        ));
    }
    if let Some(status) = callback.carrier.status {
        metrics()
            .carrier_outcomes
            .with_label_values(&[status.as_str()])
            .inc();
    }
    // The verdict the engine recorded, else the one the final status carries.
    let reported = callback
        .carrier
        .answered_by
        .as_deref()
        .and_then(AnsweredBy::parse);
    let verdict = match (recorded, reported) {
        (Some(Some(kept)), _) => Some(kept),
        // A synchronous detection's verdict arrives only with the final status: kept with the
        // attempt, as an asynchronous one is, so the attempt shows it and the campaign counts
        // the machine. Before the status is passed on, while the attempt is still live.
        (Some(None), Some(by)) => {
            keep_verdict(&ctx, &callback, by).await;
            Some(by)
        }
        (_, reported) => reported,
    };
    let outcome = match verdict {
        Some(by) => settled(&ctx, &callback, by, outcome).await,
        None => outcome,
    };
    let status = StatusMessage {
        v: messages::VERSION,
        call_id: callback.key.call_id,
        campaign_id: callback.key.campaign_id,
        attempt: callback.key.attempt,
        outcome,
        ended_at: callback.at,
        policy: callback.policy,
        carrier: Some(callback.carrier),
        attempt_started_at: callback.attempt_started_at,
    };
    pass_on(&ctx, status).await?;
    counted("recorded");
    Ok(HttpResponse::NoContent().finish())
}

/// Records a verdict the final status carries; a store that cannot take it now loses only the
/// verdict's display and count, never the status, which still goes on.
async fn keep_verdict(ctx: &AppContext, callback: &CarrierCallback, by: AnsweredBy) {
    let heard = Heard::AnsweredBy(by);
    if let Err(err) = ctx
        .store
        .record_answer(callback.key, heard, None, ctx.clock.now())
        .await
    {
        tracing::warn!(error = %err, call_id = %callback.key.call_id, "cannot keep the verdict of a final status");
    }
}

/// The outcome of an attempt the carrier's verdict on who answered may have ended: as its
/// campaign's message says for that verdict (`Message::settle`). A campaign that cannot be read
/// now leaves the carrier's own outcome, which still finishes the attempt.
async fn settled(
    ctx: &AppContext,
    callback: &CarrierCallback,
    by: AnsweredBy,
    reported: AttemptOutcome,
) -> AttemptOutcome {
    let message = match message_of(ctx, callback.key).await {
        Ok(message) => message,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the message of a call with a verdict");
            None
        }
    };
    match message {
        Some(message) => {
            message.settle(by, reported, ctx.settings.telephony.twilio.machine_outcome)
        }
        None => reported,
    }
}

/// The message attempt `key` speaks: the one it began with when its campaign's has changed
/// since, else its campaign's; `None` when the campaign is gone or speaks none of its own.
pub(super) async fn message_of(
    ctx: &AppContext,
    key: AttemptKey,
) -> Result<Option<Message>, StoreError> {
    let campaign = ctx.store.get_campaign(key.campaign_id).await;
    // Read after the campaign: a change committed between the two reads is then seen as kept,
    // never as the campaign's new message. A kept message needs no campaign.
    Ok(match ctx.store.attempt_message(key).await? {
        Some(kept) => Some(kept),
        None => campaign?.and_then(|campaign| campaign.voice.message().cloned()),
    })
}

/// Hands a final status to the status role through the bus, or records it here while the bus
/// cannot take it: Twilio does not deliver a request again unless told to.
pub(super) async fn pass_on(ctx: &AppContext, status: StatusMessage) -> Result<(), ApiError> {
    let message = messages::encode(status.call_id.to_string(), &status);
    let Err(err) = messages::publish(&*ctx.bus, Topic::Status, vec![message]).await else {
        return Ok(());
    };
    tracing::warn!(error = %err, "cannot hand a final status to the bus; recording it here");
    match OutcomeRecorder::new(ctx.clone())
        .record(&[status], ctx.clock.now())
        .await
    {
        // Recorded; only the wake-ups it sends after could not go out, and the scheduler's
        // and retry role's own rescans make up for them.
        Ok(_) | Err(RecordError::Bus(_)) => Ok(()),
        Err(RecordError::Store(err)) => {
            counted("unavailable");
            tracing::warn!(error = %err, "cannot record a final status either");
            Err(ApiError::unavailable())
        }
    }
}
