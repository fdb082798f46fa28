//! The carrier's asynchronous verdict on who answered a call of a campaign with a message
//! (`spec/voice.md`, `/webhooks/twilio/amd`). The message has been playing since the answer, so
//! a person never waits in silence for the verdict; a machine whose greeting is over gets what
//! the message's `machine` asks for through a change of the live call.

use actix_web::{web, HttpRequest, HttpResponse};

use super::voice::{attempt_of, store_unavailable};
use super::webhooks::{callback_body, counted, forged, signature_of};
use crate::context::AppContext;
use crate::domain::answer::{AnsweredBy, Heard};
use crate::domain::call::AttemptOutcome;
use crate::domain::message::{OnVerdict, TargetValues};
use crate::ports::{CallUpdate, CallbackError, MachineVerdict, ProviderError, AMD_PATH};
use crate::roles::api::error::{ApiError, ErrorBody, ErrorCode};

fn done() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

/// The verdict the carrier signed, or the refusal of a request it did not; `None` for a signed
/// request that names no attempt (nothing to do).
fn verified(
    ctx: &AppContext,
    req: &HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<Option<MachineVerdict>, ApiError> {
    let body = callback_body(body)?;
    let signature = signature_of(req)?;
    let Some(verifier) = &ctx.callbacks else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "no carrier calls here: telephony.provider is not twilio",
        ));
    };
    match verifier.verify_verdict(req.query_string(), &body, Some(signature), ctx.clock.now()) {
        Ok(verdict) => Ok(Some(verdict)),
        Err(CallbackError::BadSignature) => Err(forged(AMD_PATH)),
        Err(CallbackError::UnknownAttempt(why) | CallbackError::Malformed(why)) => {
            counted("unknown");
            tracing::warn!(why, "a signed machine verdict names no attempt");
            Ok(None)
        }
    }
}

#[utoipa::path(post, path = "/webhooks/twilio/amd",
    params(
        ("campaign" = String, Query, format = Uuid, description = "the attempt's campaign, as the engine set it"),
        ("call" = String, Query, format = Uuid, description = "the attempt's call"),
        ("attempt" = u32, Query, description = "the attempt's number"),
        ("base_ms" = u64, Query, description = "the retry policy's base delay"),
        ("max_ms" = u64, Query, description = "the retry policy's longest delay"),
        ("jitter" = f64, Query, description = "the retry policy's jitter"),
        ("X-Twilio-Signature" = String, Header, description = "base64 HMAC-SHA1 of the URL and the sorted parameters, keyed by the auth token"),
    ),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "CallSid, AccountSid, AnsweredBy (human, machine_end_beep, machine_end_silence, machine_end_other, fax or unknown), MachineDetectionDuration"),
    responses(
        (status = 204, description = "the verdict is recorded and carried out (or the attempt is over: nothing to do)"),
        (status = 400, body = ErrorBody, description = "malformed_body: no AnsweredBy the engine knows"),
        (status = 403, body = ErrorBody, description = "invalid_signature"),
        (status = 404, body = ErrorBody, description = "no carrier configured"),
        (status = 503, body = ErrorBody, description = "the verdict could not be recorded or carried out now"),
    ))]
pub async fn twilio_amd(
    ctx: web::Data<AppContext>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let Some(verdict) = verified(&ctx, &req, body)? else {
        return Ok(done());
    };
    let by = verdict
        .answered_by
        .as_deref()
        .and_then(AnsweredBy::parse)
        .ok_or_else(|| {
            ApiError::malformed(format!(
                "AnsweredBy {:?} is not a verdict the engine knows",
                verdict.answered_by
            ))
        })?;
    let Some(attempt) = attempt_of(&ctx, verdict.key).await?.filter(|a| a.current) else {
        counted("unknown");
        return Ok(done());
    };
    let Some(message) = attempt.message else {
        return Ok(done());
    };
    let (call, voicemail_left) = (attempt.call, attempt.answer.voicemail_left);
    ctx.store
        .record_answer(verdict.key, Heard::AnsweredBy(by), None, ctx.clock.now())
        .await
        .map_err(|err| store_unavailable(err, &call))?;
    let values = TargetValues::new(call.phone_number.as_str(), call.metadata.as_ref());
    let machine_outcome = ctx.settings.telephony.twilio.machine_outcome;
    let step = match message.on_verdict(by, &values, machine_outcome) {
        Ok(step) => step,
        Err(missing) => {
            tracing::warn!(call_id = %call.id, keys = ?missing.0, "a call's metadata no longer fills its voicemail; hanging up");
            OnVerdict::End(AttemptOutcome::Answered)
        }
    };
    let sid = verdict.sid.clone().unwrap_or_default();
    match step {
        OnVerdict::Continue => {}
        // A repeated verdict (the carrier retries on a timeout) leaves no second voicemail.
        OnVerdict::LeaveVoicemail(_) if voicemail_left => {}
        OnVerdict::LeaveVoicemail(twiml) => {
            if changed(&ctx, &sid, CallUpdate::Twiml(twiml)).await? {
                ctx.store
                    .record_answer(verdict.key, Heard::VoicemailLeft, None, ctx.clock.now())
                    .await
                    .map_err(|err| store_unavailable(err, &call))?;
                tracing::info!(call_id = %call.id, "voicemail left");
            }
        }
        // The carrier's final status of the call follows; its recording reads the verdict
        // kept above and finishes the attempt as the verdict says (`Message::settle`), so the
        // attempt has one report and keeps its slot until the call is over.
        OnVerdict::End(_) => {
            changed(&ctx, &sid, CallUpdate::Hangup).await?;
        }
    }
    counted("verdict");
    Ok(done())
}

/// Changes the live call; `false` when the carrier says it is already over.
async fn changed(ctx: &AppContext, sid: &str, update: CallUpdate) -> Result<bool, ApiError> {
    match ctx.provider.update_call(sid, update).await {
        Ok(()) => Ok(true),
        Err(ProviderError::Rejected(why)) => {
            tracing::info!(why, "the call was over before it could be changed");
            Ok(false)
        }
        Err(ProviderError::Unavailable(why)) => {
            tracing::warn!(why, "cannot change a live call now");
            Err(ApiError::unavailable())
        }
    }
}
