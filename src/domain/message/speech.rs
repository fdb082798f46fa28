//! What a message sounds like for one target, and the TwiML that says it.
//!
//! The spoken order is the law's: the identification, at once the opt-out instruction, then the
//! message and the prompt (47 CFR 64.1200(b)(3) wants the opt-out within two seconds of the
//! identification). Every text is XML-escaped as it is written, so what metadata holds is only
//! ever spoken.

use std::fmt::Write as _;

use quick_xml::escape::escape;

use super::{Content, Key, MachineAction, Message, Missing, Values};
use crate::domain::carrier::MAX_TWIML_CHARS;

pub const OPTED_OUT: &str = "You will not be called again. Goodbye.";
pub const NOT_AN_OPTION: &str = "Sorry, that is not an option.";
pub const GOODBYE: &str = "Goodbye.";
/// One part of what the callee hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spoken {
    Say(String),
    /// An audio URL the carrier plays.
    Play(String),
}

impl Spoken {
    /// The part as a preview shows it: its words, or `[audio URL]`.
    pub fn preview(&self) -> String {
        match self {
            Spoken::Say(text) => text.clone(),
            Spoken::Play(url) => format!("[audio {url}]"),
        }
    }
}

/// What a key press (or its absence) on a message's prompt means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// The opt-out key: list the number, say so and hang up.
    OptOut,
    /// One of the message's responses, by its index.
    Response(usize),
    /// A key that means nothing, the first time: say so and ask again.
    Again,
    /// A second key that means nothing (or silence after one): hang up as `unrecognized`.
    Unrecognized,
    /// No key at all: hang up as `none`.
    Nothing,
}

impl Heard {
    /// The response an attempt records, where this ends the call.
    pub fn response(self, message: &Message) -> Option<&str> {
        match self {
            Heard::OptOut => Some("opt_out"),
            Heard::Response(i) => message.responses.get(i).map(|r| r.name.as_str()),
            Heard::Again => None,
            Heard::Unrecognized => Some("unrecognized"),
            Heard::Nothing => Some("none"),
        }
    }
}

/// Where the carrier sends what the callee pressed, and how long a machine's verdict may take.
#[derive(Debug, Clone, Copy)]
pub struct TwimlPlan<'a> {
    /// The absolute URL of `/webhooks/twilio/gather` for this attempt.
    pub gather_url: &'a str,
}

impl Message {
    /// "To stop these calls, press 9.", when the opt-out is on.
    pub fn opt_out_instruction(&self) -> Option<String> {
        self.opt_out
            .map(|o| format!("To stop these calls, press {}.", o.digit.as_char()))
    }

    /// What a person who answers hears, in order.
    pub fn spoken(&self, values: &dyn Values) -> Result<Vec<Spoken>, Missing> {
        let mut parts = vec![Spoken::Say(self.identification.fill(values)?)];
        if let Some(instruction) = self.opt_out_instruction() {
            parts.push(Spoken::Say(instruction));
        }
        parts.push(match &self.content {
            Content::Say(say) => Spoken::Say(say.fill(values)?),
            Content::Play(url) => Spoken::Play(url.clone()),
        });
        if let Some(prompt) = &self.prompt {
            parts.push(Spoken::Say(prompt.fill(values)?));
        }
        Ok(parts)
    }

    /// What a machine is left, if the message leaves it anything.
    pub fn voicemail(&self, values: &dyn Values) -> Result<Option<Vec<Spoken>>, Missing> {
        let Some(MachineAction::Message(say)) = self.machine.as_ref().map(|m| &m.action) else {
            return Ok(None);
        };
        let mut parts = vec![
            Spoken::Say(self.identification.fill(values)?),
            Spoken::Say(say.fill(values)?),
        ];
        if let Some(number) = &self.callback_number {
            parts.push(Spoken::Say(format!(
                "To stop these calls, call {}.",
                digit_by_digit(number.as_str())
            )));
        }
        Ok(Some(parts))
    }

    /// What a key press means; `earlier` holds the keys pressed before it on this attempt.
    pub fn hear(&self, earlier: &[Key], pressed: Option<Key>) -> Heard {
        let Some(key) = pressed else {
            return if earlier.is_empty() {
                Heard::Nothing
            } else {
                Heard::Unrecognized
            };
        };
        if self.opt_out.is_some_and(|o| o.digit == key) {
            return Heard::OptOut;
        }
        if let Some(i) = self.responses.iter().position(|r| r.digit == key) {
            return Heard::Response(i);
        }
        if earlier.is_empty() {
            Heard::Again
        } else {
            Heard::Unrecognized
        }
    }

    /// The TwiML a call's voice URL answers with: every spoken part inside one Gather, then
    /// (when a machine's verdict is awaited) a pause that keeps the call up for it, then hang up.
    pub fn voice_twiml(&self, values: &dyn Values, plan: TwimlPlan) -> Result<String, Missing> {
        let spoken = self.spoken(values)?;
        let mut out = open_response();
        self.gather(&mut out, plan, &spoken);
        if let Some(machine) = &self.machine {
            let _ = write!(
                out,
                "<Pause length=\"{}\"/>",
                machine.detection_timeout.as_secs()
            );
        }
        out.push_str("<Hangup/></Response>");
        Ok(out)
    }

    /// The TwiML that answers a key press.
    pub fn heard_twiml(
        &self,
        heard: Heard,
        values: &dyn Values,
        plan: TwimlPlan,
    ) -> Result<String, Missing> {
        let mut out = open_response();
        match heard {
            Heard::OptOut => self.say(&mut out, OPTED_OUT),
            Heard::Response(i) => {
                if let Some(reply) = self.responses.get(i).and_then(|r| r.reply.as_ref()) {
                    self.say(&mut out, &reply.fill(values)?);
                }
            }
            Heard::Again => {
                let mut again = vec![Spoken::Say(NOT_AN_OPTION.to_owned())];
                if let Some(prompt) = &self.prompt {
                    again.push(Spoken::Say(prompt.fill(values)?));
                }
                self.gather(&mut out, plan, &again);
                self.say(&mut out, GOODBYE);
            }
            Heard::Unrecognized => self.say(&mut out, GOODBYE),
            Heard::Nothing => {}
        }
        out.push_str("<Hangup/></Response>");
        Ok(out)
    }

    /// The TwiML a live call is modified with when a machine answers and the message leaves a
    /// voicemail.
    pub fn voicemail_twiml(&self, values: &dyn Values) -> Result<Option<String>, Missing> {
        let Some(parts) = self.voicemail(values)? else {
            return Ok(None);
        };
        let mut out = open_response();
        for part in &parts {
            self.part(&mut out, part);
        }
        out.push_str("<Hangup/></Response>");
        Ok(Some(out))
    }

    /// Why a target's voicemail cannot be sent inline, if it cannot.
    pub fn voicemail_problem(&self, values: &dyn Values) -> Option<String> {
        let twiml = self.voicemail_twiml(values).ok()??;
        let chars = twiml.chars().count();
        (chars > MAX_TWIML_CHARS).then(|| {
            format!("its voicemail would be {chars} characters of TwiML, over the carrier's {MAX_TWIML_CHARS}")
        })
    }

    fn gather(&self, out: &mut String, plan: TwimlPlan, parts: &[Spoken]) {
        let _ = write!(
            out,
            "<Gather input=\"dtmf\" numDigits=\"1\" timeout=\"5\" finishOnKey=\"\" \
             actionOnEmptyResult=\"true\" method=\"POST\" action=\"{}\">",
            escape(plan.gather_url)
        );
        for part in parts {
            self.part(out, part);
        }
        out.push_str("</Gather>");
    }

    fn part(&self, out: &mut String, part: &Spoken) {
        match part {
            Spoken::Say(text) => self.say(out, text),
            Spoken::Play(url) => {
                let _ = write!(out, "<Play>{}</Play>", escape(url.as_str()));
            }
        }
    }

    fn say(&self, out: &mut String, text: &str) {
        out.push_str("<Say");
        if let Some(voice) = &self.voice {
            let _ = write!(out, " voice=\"{}\"", escape(voice.as_str()));
        }
        if let Some(language) = &self.language {
            let _ = write!(out, " language=\"{}\"", escape(language.as_str()));
        }
        let _ = write!(out, ">{}</Say>", escape(speakable(text)));
    }
}

/// The inbound opt-out line's first answer: its prompt inside a Gather that sends the key to
/// `action`, then goodbye.
pub fn inbound_twiml(prompt: &str, action: &str) -> String {
    let mut out = open_response();
    let _ = write!(
        out,
        "<Gather input=\"dtmf\" numDigits=\"1\" timeout=\"5\" finishOnKey=\"\" \
         actionOnEmptyResult=\"true\" method=\"POST\" action=\"{}\"><Say>{}</Say></Gather>\
         <Say>{GOODBYE}</Say><Hangup/></Response>",
        escape(action),
        escape(speakable(prompt))
    );
    out
}

/// What the inbound line says once it heard a key: `listed` when the caller's number is now
/// on the list.
pub fn inbound_heard_twiml(listed: bool) -> String {
    let said = if listed { OPTED_OUT } else { GOODBYE };
    format!("{}<Say>{said}</Say><Hangup/></Response>", open_response())
}

/// What a caller whose number is withheld hears: the line cannot list a number it does not see.
pub fn inbound_unidentified_twiml() -> String {
    format!(
        "{}<Say>We cannot identify your number. To stop our calls to a number, call this line \
         from it.</Say><Hangup/></Response>",
        open_response()
    )
}

/// The TwiML that keeps a silent call up for `length` (whole seconds), then asks `then` (the
/// gather URL) again, which records the silence once the wait is over: the wait for a
/// machine's verdict.
pub fn pause_twiml(length: std::time::Duration, then: &str) -> String {
    format!(
        "{}<Pause length=\"{}\"/><Redirect method=\"POST\">{}</Redirect></Response>",
        open_response(),
        length.as_secs().max(1),
        escape(then)
    )
}

/// `text` without the characters XML 1.0 forbids (control characters other than tab, line
/// feed and carriage return; U+FFFE, U+FFFF), which no escaping can carry: one of them would
/// make the carrier refuse the whole document and read its error out to the callee.
fn speakable(text: &str) -> std::borrow::Cow<'_, str> {
    let forbidden = |c: char| {
        (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}')
    };
    if text.chars().any(forbidden) {
        std::borrow::Cow::Owned(text.chars().filter(|&c| !forbidden(c)).collect())
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

fn open_response() -> String {
    let mut out = String::with_capacity(1024);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>");
    out
}

/// A number as a speaker reads it out a digit at a time: the national number for +1, the
/// digits after the `+` otherwise.
fn digit_by_digit(e164: &str) -> String {
    let digits = e164
        .strip_prefix("+1")
        .unwrap_or(e164.trim_start_matches('+'));
    let spaced: Vec<String> = digits.chars().map(String::from).collect();
    spaced.join(" ")
}
