//! A campaign's voice fields at the API, which a create and an update spell the same way: its
//! caller id, and what an answered call plays (TwiML, a URL, or the engine's message).

use super::message::validate_message;
use crate::domain::carrier::{twiml_problem, voice_url_problem, Audio};
use crate::domain::phone::PhoneNumber;
use crate::roles::api::handlers::Problems;

/// A campaign's caller id and audio as given: each `None` when not given, `Some(None)` when
/// given empty (an update's way to return to the configured default).
pub struct VoiceInput<'a> {
    pub caller_id: Option<&'a str>,
    pub twiml: Option<&'a str>,
    pub voice_url: Option<&'a str>,
    pub message: Option<&'a serde_json::Value>,
}

/// The voice fields of a create or update request, which both spell the same way.
macro_rules! voice_input {
    ($body:expr) => {
        $crate::roles::api::handlers::campaigns::voice::VoiceInput {
            caller_id: $body.caller_id.as_deref(),
            twiml: $body.twiml.as_deref(),
            voice_url: $body.voice_url.as_deref(),
            message: $body.message.as_ref(),
        }
    };
}
pub(super) use voice_input;

/// The caller id and audio changes `input` asks for.
pub fn validate_voice(
    input: VoiceInput<'_>,
    problems: &mut Problems,
) -> (Option<Option<String>>, Option<Option<Audio>>) {
    let caller_id = input.caller_id.map(|raw| {
        if raw.trim().is_empty() {
            return None;
        }
        match PhoneNumber::parse(raw) {
            Ok(number) => Some(number.as_str().to_owned()),
            Err(err) => {
                problems.push("caller_id", format!("must be an E.164 number: {err}"));
                None
            }
        }
    });
    let twiml = input.twiml.filter(|t| !t.trim().is_empty());
    let url = input.voice_url.filter(|u| !u.trim().is_empty());
    if input.message.is_some_and(|m| !m.is_null()) {
        if twiml.is_some() || url.is_some() {
            problems.push(
                "message",
                "give message, twiml or voice_url, not more than one",
            );
            return (caller_id, None);
        }
        let message = validate_message(input.message, problems);
        return (
            caller_id,
            message.map(|m| Some(Audio::Message(Box::new(m)))),
        );
    }
    let audio = match (twiml, url) {
        (Some(_), Some(_)) => {
            problems.push("voice_url", "give twiml or voice_url, not both");
            None
        }
        (Some(twiml), None) => match twiml_problem(twiml) {
            Some(problem) => {
                problems.push("twiml", problem);
                None
            }
            None => Some(Some(Audio::Twiml(twiml.trim().to_owned()))),
        },
        (None, Some(url)) => match voice_url_problem(url) {
            Some(problem) => {
                problems.push("voice_url", problem);
                None
            }
            None => Some(Some(Audio::VoiceUrl(url.to_owned()))),
        },
        // Given, but empty: back to the default.
        (None, None) if input.twiml.is_some() || input.voice_url.is_some() => Some(None),
        (None, None) => None,
    };
    (caller_id, audio)
}
