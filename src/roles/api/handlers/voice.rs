//! The carrier's requests for a message's words and for what the keys a callee presses mean
//! (`spec/voice.md`). Each is signed like a status callback and names its attempt in a query
//! the engine wrote. The answer is TwiML; a signed request for an attempt that is unknown or
//! over is answered by hanging up, never with an error the carrier would read out to the
//! callee.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;

use super::webhooks::{callback_body, counted, forged, message_of, signature_of};
use crate::context::AppContext;
use crate::domain::answer::{self, Answer};
use crate::domain::call::{Call, CallStatus};
use crate::domain::message::{
    inbound_heard_twiml, inbound_twiml, inbound_unidentified_twiml, pause_twiml, AfterSilence,
    Heard, Key, Message, OptOutScope, TargetValues, TwimlPlan,
};
use crate::domain::phone::PhoneNumber;
use crate::ports::{
    AttemptKey, CallbackError, DncScope, OptOutListing, SignedRequest, StoreError, GATHER_PATH,
    INBOUND_PATH, VOICE_PATH,
};
use crate::roles::api::error::{ApiError, ErrorBody, ErrorCode};

/// What a call whose attempt is unknown or over is told.
const HANG_UP: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Hangup/></Response>";

/// The query parameter of a gather URL that keeps the keys pressed before on the attempt.
const PRESSED: &str = "pressed";
/// The query parameter of a gather URL that keeps what each key meant when the callee heard
/// the prompt (`Message::meanings`).
const OFFERED: &str = "keys";
/// The query parameter of a gather URL that keeps when the call was answered (epoch
/// milliseconds on the store's clock).
const ANSWERED: &str = "answered";

fn twiml(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/xml; charset=utf-8")
        .body(body)
}

fn hang_up() -> HttpResponse {
    twiml(HANG_UP.to_owned())
}

/// The request the carrier signed for `path`, or the refusal of one it did not. A signed
/// request that names no attempt is `None`: the call it is about hangs up, as for an attempt
/// that is over.
fn signed(
    ctx: &AppContext,
    req: &HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
    path: &str,
) -> Result<Option<SignedRequest>, ApiError> {
    let body = callback_body(body)?;
    let signature = signature_of(req)?;
    let Some(verifier) = &ctx.callbacks else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "no carrier calls here: telephony.provider is not twilio",
        ));
    };
    match verifier.verify_request(path, req.query_string(), &body, Some(signature)) {
        Ok(request) => Ok(Some(request)),
        Err(CallbackError::UnknownAttempt(why) | CallbackError::Malformed(why)) => {
            counted("unknown");
            tracing::warn!(
                path,
                why,
                "a signed carrier request names no attempt; hanging up"
            );
            Ok(None)
        }
        Err(CallbackError::BadSignature) => Err(forged(path)),
    }
}

/// An attempt the carrier asks about: its call, its campaign's message, what it heard back
/// so far, and whether it is still its call's live attempt.
pub(super) struct AttemptNow {
    pub call: Call,
    /// `None` when the campaign no longer speaks a message of its own.
    pub message: Option<Message>,
    pub answer: Answer,
    pub current: bool,
}

/// The attempt `key` names, with the message it speaks: its campaign's, or the one it began
/// with when that has changed since; `None` when there is no such attempt.
pub(super) async fn attempt_of(
    ctx: &AppContext,
    key: AttemptKey,
) -> Result<Option<AttemptNow>, ApiError> {
    let Some((call, attempts)) = ctx.store.get_call(key.call_id).await? else {
        return Ok(None);
    };
    if call.campaign_id != key.campaign_id || call.attempt_count < key.attempt {
        return Ok(None);
    }
    let current = call.attempt_count == key.attempt && call.status == CallStatus::Dialing;
    let answer = attempts
        .into_iter()
        .find(|attempt| attempt.attempt == key.attempt)
        .map(|attempt| attempt.answer)
        .unwrap_or_default();
    let message = message_of(ctx, key).await?;
    Ok(Some(AttemptNow {
        call,
        message,
        answer,
        current,
    }))
}

/// A store that cannot record what the carrier said now: nothing is said back, and the
/// carrier's request fails.
pub(super) fn store_unavailable(err: StoreError, call: &Call) -> ApiError {
    tracing::warn!(error = %err, call_id = %call.id, "cannot record what a call heard now");
    ApiError::unavailable()
}

/// The attempt a signed request to `path` is about, with the request; `None` (the call hangs
/// up) when it names no attempt of a campaign with a message.
async fn live(
    ctx: &AppContext,
    req: &HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
    path: &str,
) -> Result<Option<(SignedRequest, AttemptNow)>, ApiError> {
    let Some(request) = signed(ctx, req, body, path)? else {
        return Ok(None);
    };
    Ok(attempt_of(ctx, request.key)
        .await?
        .map(|attempt| (request, attempt)))
}

#[utoipa::path(post, path = "/webhooks/twilio/voice",
    params(
        ("campaign" = String, Query, format = Uuid, description = "the attempt's campaign, as the engine set it"),
        ("call" = String, Query, format = Uuid, description = "the attempt's call"),
        ("attempt" = u32, Query, description = "the attempt's number"),
        ("X-Twilio-Signature" = String, Header, description = "base64 HMAC-SHA1 of the URL and the sorted parameters, keyed by the auth token"),
    ),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "CallSid, AccountSid, CallStatus, From, To"),
    responses(
        (status = 200, content_type = "text/xml", body = String, description = "the call's TwiML: the message inside one Gather, then hang up; hang up at once for an attempt unknown or over"),
        (status = 400, body = ErrorBody, description = "malformed_body"),
        (status = 403, body = ErrorBody, description = "invalid_signature"),
        (status = 404, body = ErrorBody, description = "no carrier configured"),
    ))]
pub async fn twilio_voice(
    ctx: web::Data<AppContext>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let Some((
        request,
        AttemptNow {
            call,
            message: Some(message),
            current: true,
            ..
        },
    )) = live(&ctx, &req, body, VOICE_PATH).await?
    else {
        return Ok(hang_up());
    };
    let values = TargetValues::new(call.phone_number.as_str(), call.metadata.as_ref());
    // The voice URL is fetched as the call is answered: the time a machine's verdict is
    // awaited from, carried in the gather URL for whichever api process gets it.
    let answered = ctx.clock.now().timestamp_millis().to_string();
    let offered = message.meanings();
    let gather_url = gather_url(&ctx, &request, &answered, &offered, "");
    match message.voice_twiml(
        &values,
        TwimlPlan {
            gather_url: &gather_url,
        },
    ) {
        Ok(body) => Ok(twiml(body)),
        // Checked when the target was registered; metadata changed since is not spoken half.
        Err(missing) => {
            tracing::warn!(call_id = %call.id, keys = ?missing.0, "a call's metadata no longer fills its message");
            Ok(hang_up())
        }
    }
}

fn gather_url(
    ctx: &AppContext,
    request: &SignedRequest,
    answered: &str,
    offered: &str,
    pressed: &str,
) -> String {
    let mut extra: Vec<(&str, &str)> = vec![(ANSWERED, answered), (OFFERED, offered)];
    if !pressed.is_empty() {
        extra.push((PRESSED, pressed));
    }
    ctx.callbacks
        .as_ref()
        .map(|verifier| verifier.attempt_url(GATHER_PATH, request.key, &extra))
        .unwrap_or_default()
}

fn keys(text: &str) -> Vec<Key> {
    text.chars()
        .filter_map(|c| Key::parse(c.encode_utf8(&mut [0; 4])))
        .collect()
}

#[utoipa::path(post, path = "/webhooks/twilio/gather",
    params(
        ("campaign" = String, Query, format = Uuid, description = "the attempt's campaign, as the engine set it"),
        ("call" = String, Query, format = Uuid, description = "the attempt's call"),
        ("attempt" = u32, Query, description = "the attempt's number"),
        ("pressed" = Option<String>, Query, description = "the keys pressed before on this attempt"),
        ("X-Twilio-Signature" = String, Header, description = "base64 HMAC-SHA1 of the URL and the sorted parameters, keyed by the auth token"),
    ),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "Digits (empty when no key was pressed), CallSid, AccountSid"),
    responses(
        (status = 200, content_type = "text/xml", body = String, description = "what the key means, said; an opt-out is on the do-not-call list before this answer"),
        (status = 400, body = ErrorBody, description = "malformed_body"),
        (status = 403, body = ErrorBody, description = "invalid_signature"),
        (status = 404, body = ErrorBody, description = "no carrier configured"),
        (status = 503, body = ErrorBody, description = "the key press could not be recorded (nor an opt-out listed) now; nothing was said"),
    ))]
pub async fn twilio_gather(
    ctx: web::Data<AppContext>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let Some((
        request,
        AttemptNow {
            call,
            message,
            answer,
            current,
        },
    )) = live(&ctx, &req, body, GATHER_PATH).await?
    else {
        return Ok(hang_up());
    };
    // The keys mean what they meant when the callee heard them, even if the message has been
    // changed since; a gather URL without them (written before they were kept) reads the
    // message as it is.
    let offered = request.query_field(OFFERED).map(str::to_owned);
    let earlier = keys(request.query_field(PRESSED).unwrap_or_default());
    let pressed = request
        .form_field("Digits")
        .and_then(|digits| keys(digits).into_iter().next());
    let Some(message) = message else {
        // The campaign stopped speaking a message of its own mid-call: the opt-out the callee
        // was offered still lists them.
        return opted_out_without_message(&ctx, &request, &call, offered.as_deref(), pressed).await;
    };
    let message = match offered.as_deref() {
        Some(offered) => message.as_heard(offered).unwrap_or(message),
        None => message,
    };
    let offered = offered.unwrap_or_else(|| message.meanings());
    let heard = message.hear(&earlier, pressed);
    // An opt-out is honoured even when its attempt has just been reported over; anything else
    // of an attempt that is over is a replay.
    if !current && heard != Heard::OptOut {
        return Ok(hang_up());
    }
    let answered = request.query_field(ANSWERED).unwrap_or_default().to_owned();
    if heard == Heard::Nothing {
        let since_answer = answered
            .parse::<i64>()
            .ok()
            .and_then(chrono::DateTime::from_timestamp_millis)
            .and_then(|at| (ctx.clock.now() - at).to_std().ok())
            .unwrap_or_default();
        if let AfterSilence::Wait(left) = message.after_silence(answer.answered_by, since_answer) {
            let earlier: String = earlier.iter().map(|k| k.as_char()).collect();
            let again = gather_url(&ctx, &request, &answered, &offered, &earlier);
            return Ok(twiml(pause_twiml(left, &again)));
        }
    }
    let mut all: String = earlier.iter().map(|k| k.as_char()).collect();
    all.extend(pressed.map(Key::as_char));
    record(&ctx, &request, &call, &message, heard, &all, pressed).await?;
    let values = TargetValues::new(call.phone_number.as_str(), call.metadata.as_ref());
    let gather_url = gather_url(&ctx, &request, &answered, &offered, &all);
    let plan = TwimlPlan {
        gather_url: &gather_url,
    };
    Ok(twiml(
        message
            .heard_twiml(heard, &values, plan)
            .unwrap_or_else(|_| HANG_UP.to_owned()),
    ))
}

/// The list entry of a callee who pressed `key` to opt out of `call` under `scope` (global
/// when the message names none).
fn opt_out_listing(call: &Call, scope: Option<OptOutScope>, key: Option<Key>) -> OptOutListing {
    let scope = match scope {
        Some(OptOutScope::Campaign) => DncScope::Campaign(call.campaign_id),
        _ => DncScope::Global,
    };
    let key = key.map(Key::as_char).unwrap_or('?');
    OptOutListing {
        scope,
        number: call.phone_number.clone(),
        reason: format!(
            "opted out by pressing {key} on a call of campaign {}",
            call.campaign_id
        ),
        call: Some((call.campaign_id, call.id)),
    }
}

/// The answer to a key pressed on a call whose campaign no longer has a message: the opt-out
/// offered (`offered`, signed in the gather URL) still lists the callee, recorded as their
/// response; any other key just ends the call.
async fn opted_out_without_message(
    ctx: &AppContext,
    request: &SignedRequest,
    call: &Call,
    offered: Option<&str>,
    pressed: Option<Key>,
) -> Result<HttpResponse, ApiError> {
    let Some(opt_out) = offered
        .and_then(Message::offered_opt_out)
        .filter(|o| Some(o.digit) == pressed)
    else {
        return Ok(hang_up());
    };
    let listing = opt_out_listing(call, Some(opt_out.scope), Some(opt_out.digit));
    let mut digits: String = keys(request.query_field(PRESSED).unwrap_or_default())
        .iter()
        .map(|k| k.as_char())
        .collect();
    digits.push(opt_out.digit.as_char());
    let heard = answer::Heard::Keys {
        digits,
        response: Some(answer::OPT_OUT.to_owned()),
    };
    ctx.store
        .record_answer(request.key, heard, Some(listing), ctx.clock.now())
        .await
        .map_err(|err| store_unavailable(err, call))?;
    tracing::info!(call_id = %call.id, campaign_id = %call.campaign_id, "callee opted out by key press");
    Ok(twiml(inbound_heard_twiml(true)))
}

/// Records what the keys chose on the attempt (its call and campaign counters with it) and,
/// for the opt-out key, puts the callee's number on the list the message's opt-out names, in
/// one transaction committed before the callee is told anything; as any list entry does, the
/// listing cancels the number's waiting calls in scope. A retried request records and lists
/// nothing twice.
async fn record(
    ctx: &AppContext,
    request: &SignedRequest,
    call: &Call,
    message: &Message,
    heard: Heard,
    digits: &str,
    pressed: Option<Key>,
) -> Result<(), ApiError> {
    let listing = (heard == Heard::OptOut)
        .then(|| opt_out_listing(call, message.opt_out.map(|o| o.scope), pressed));
    let opted_out = listing.is_some();
    let keys = answer::Heard::Keys {
        digits: digits.to_owned(),
        response: heard.response(message).map(str::to_owned),
    };
    ctx.store
        .record_answer(request.key, keys, listing, ctx.clock.now())
        .await
        .map_err(|err| store_unavailable(err, call))?;
    if opted_out {
        tracing::info!(call_id = %call.id, campaign_id = %call.campaign_id, "callee opted out by key press");
    }
    Ok(())
}

/// The inbound line's query parameter that marks the request carrying the caller's key.
const STEP: &str = "step";

#[utoipa::path(post, path = "/webhooks/twilio/inbound",
    params(
        ("step" = Option<String>, Query, description = "heard: the request carrying the caller's key; absent: the call's first request"),
        ("X-Twilio-Signature" = String, Header, description = "base64 HMAC-SHA1 of the URL and the sorted parameters, keyed by the auth token"),
    ),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "From (the caller), Digits (the key heard), CallSid, AccountSid"),
    responses(
        (status = 200, content_type = "text/xml", body = String, description = "the opt-out line: its prompt; after a 1, the caller is on the global do-not-call list before being told"),
        (status = 400, body = ErrorBody, description = "malformed_body"),
        (status = 403, body = ErrorBody, description = "invalid_signature"),
        (status = 404, body = ErrorBody, description = "no carrier configured"),
        (status = 503, body = ErrorBody, description = "the opt-out could not be listed now; nothing was said"),
    ))]
pub async fn twilio_inbound(
    ctx: web::Data<AppContext>,
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let body = callback_body(body)?;
    let signature = signature_of(&req)?;
    let Some(verifier) = &ctx.callbacks else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "no carrier calls here: telephony.provider is not twilio",
        ));
    };
    let form = verifier
        .verify_form(INBOUND_PATH, req.query_string(), &body, Some(signature))
        .map_err(|_| forged(INBOUND_PATH))?;
    let field = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    // A withheld number arrives as a word or a non-number: nothing to list.
    let Some(caller) = field("From").and_then(|from| PhoneNumber::parse(from).ok()) else {
        return Ok(twiml(inbound_unidentified_twiml()));
    };
    let heard =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .is_some_and(|query| query.get(STEP).is_some_and(|step| step == "heard"));
    if !heard {
        let action = verifier.url(INBOUND_PATH, &[(STEP, "heard")]);
        let prompt = &ctx.settings.telephony.twilio.inbound_prompt;
        return Ok(twiml(inbound_twiml(prompt, &action)));
    }
    let listed = field("Digits") == Some("1");
    if listed {
        let reason = "opted out on the inbound line".to_owned();
        let listing = OptOutListing {
            scope: DncScope::Global,
            number: caller,
            reason,
            call: None,
        };
        ctx.store
            .list_opt_out(listing, Utc::now())
            .await
            .map_err(|err| {
                tracing::warn!(error = %err, "cannot list an inbound opt-out now");
                ApiError::unavailable()
            })?;
        tracing::info!("caller opted out on the inbound line");
    }
    Ok(twiml(inbound_heard_twiml(listed)))
}
