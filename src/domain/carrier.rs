//! What a carrier tells us about a call it carries, and the rule that turns its final status
//! into the attempt's outcome (telephony.md's outcome table). Independent of the wire format:
//! the Twilio adapter parses into these types.

use serde::{Deserialize, Serialize};

use super::call::AttemptOutcome;

/// A call's status at the carrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CarrierStatus {
    Queued,
    Initiated,
    Ringing,
    InProgress,
    Completed,
    Busy,
    NoAnswer,
    Failed,
    Canceled,
}

impl CarrierStatus {
    const ALL: [Self; 9] = [
        Self::Queued,
        Self::Initiated,
        Self::Ringing,
        Self::InProgress,
        Self::Completed,
        Self::Busy,
        Self::NoAnswer,
        Self::Failed,
        Self::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Initiated => "initiated",
            Self::Ringing => "ringing",
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::Busy => "busy",
            Self::NoAnswer => "no-answer",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// Whether the call is over: no later status can follow.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Busy | Self::NoAnswer | Self::Failed | Self::Canceled
        )
    }
}

/// Whether the carrier listens for an answering machine (`telephony.twilio.machine_detection`),
/// spelled as Twilio's `MachineDetection` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MachineDetection {
    #[default]
    #[serde(rename = "off")]
    Off,
    Enable,
    DetectMessageEnd,
}

impl MachineDetection {
    /// The `MachineDetection` parameter of a create request; none when off.
    pub fn parameter(self) -> Option<&'static str> {
        match self {
            Self::Off => None,
            Self::Enable => Some("Enable"),
            Self::DetectMessageEnd => Some("DetectMessageEnd"),
        }
    }
}

/// What an answering machine counts as (`telephony.twilio.machine_outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MachineOutcome {
    #[default]
    Completed,
    Retry,
}

/// The carrier's record of one attempt, kept with the attempt and shown by the API.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CarrierCall {
    /// The carrier's id of the call (Twilio's `CallSid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The last status known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<CarrierStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    /// Seconds the call was connected, as the carrier bills it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<u64>,
    /// The carrier's error code (a rejected create, or `ErrorCode` of a failed call).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u32>,
    /// The caller ID the call presented (`From`), as the carrier reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_id: Option<String>,
}

/// SIP answers to a failed call that mean the number cannot be reached at all.
const PERMANENT_SIP: [u16; 4] = [404, 410, 484, 604];

/// SIP answers that mean the called party's network or device rejected the call (FCC rules
/// make blocking carriers answer 607 or 608): dialing the number again with the same caller ID
/// would be rejected again, and rings nobody who wants the call.
pub const BLOCKED_SIP: [u16; 3] = [603, 607, 608];

/// The SIP code of a call the called party's side blocked, if it was.
pub fn blocked(call: &CarrierCall) -> Option<u16> {
    match (call.status, call.sip_code) {
        (Some(CarrierStatus::Failed), Some(code)) if BLOCKED_SIP.contains(&code) => Some(code),
        _ => None,
    }
}

/// The attempt's outcome for a call that ended with `status`; `None` while it is not final.
pub fn outcome(call: &CarrierCall, machine: MachineOutcome) -> Option<AttemptOutcome> {
    let failed = |error: &str, retryable: bool| AttemptOutcome::Failed {
        error: error.to_owned(),
        retryable,
    };
    Some(match call.status? {
        CarrierStatus::Completed => {
            let by_machine = call
                .answered_by
                .as_deref()
                .is_some_and(|by| by.starts_with("machine") || by == "fax");
            match (by_machine, machine) {
                (true, MachineOutcome::Retry) => failed("machine", true),
                _ => AttemptOutcome::Answered,
            }
        }
        CarrierStatus::Busy => failed("busy", true),
        CarrierStatus::NoAnswer => failed("no_answer", true),
        CarrierStatus::Failed => match call.sip_code {
            Some(code) if PERMANENT_SIP.contains(&code) => failed(&format!("sip_{code}"), false),
            Some(code) if BLOCKED_SIP.contains(&code) => failed(&format!("blocked_{code}"), false),
            Some(code) => failed(&format!("sip_{code}"), true),
            None => failed("failed", true),
        },
        CarrierStatus::Canceled => failed("canceled", false),
        CarrierStatus::Queued
        | CarrierStatus::Initiated
        | CarrierStatus::Ringing
        | CarrierStatus::InProgress => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(status: CarrierStatus, sip: Option<u16>, by: Option<&str>) -> CarrierCall {
        CarrierCall {
            sid: Some("CA1".into()),
            status: Some(status),
            sip_code: sip,
            answered_by: by.map(str::to_owned),
            duration_secs: Some(3),
            error_code: None,
            caller_id: None,
        }
    }

    fn failure(error: &str, retryable: bool) -> Option<AttemptOutcome> {
        Some(AttemptOutcome::Failed {
            error: error.into(),
            retryable,
        })
    }

    #[test]
    fn the_outcome_table_of_the_spec() {
        let m = MachineOutcome::Completed;
        use CarrierStatus as S;
        for by in [None, Some("human"), Some("unknown")] {
            assert_eq!(
                outcome(&ended(S::Completed, None, by), MachineOutcome::Retry),
                Some(AttemptOutcome::Answered)
            );
        }
        for by in ["machine_start", "machine_end_beep", "fax"] {
            assert_eq!(
                outcome(&ended(S::Completed, None, Some(by)), m),
                Some(AttemptOutcome::Answered)
            );
            assert_eq!(
                outcome(&ended(S::Completed, None, Some(by)), MachineOutcome::Retry),
                failure("machine", true)
            );
        }
        assert_eq!(
            outcome(&ended(S::Busy, Some(486), None), m),
            failure("busy", true)
        );
        assert_eq!(
            outcome(&ended(S::NoAnswer, Some(487), None), m),
            failure("no_answer", true)
        );
        for sip in [404, 410, 484, 604] {
            assert_eq!(
                outcome(&ended(S::Failed, Some(sip), None), m),
                failure(&format!("sip_{sip}"), false)
            );
        }
        for sip in [603, 607, 608] {
            let call = ended(S::Failed, Some(sip), None);
            assert_eq!(outcome(&call, m), failure(&format!("blocked_{sip}"), false));
            assert_eq!(blocked(&call), Some(sip));
        }
        assert_eq!(blocked(&ended(S::Busy, Some(603), None)), None);
        assert_eq!(
            outcome(&ended(S::Failed, Some(503), None), m),
            failure("sip_503", true)
        );
        assert_eq!(
            outcome(&ended(S::Failed, None, None), m),
            failure("failed", true)
        );
        assert_eq!(
            outcome(&ended(S::Canceled, None, None), m),
            failure("canceled", false)
        );
        for live in [S::Queued, S::Initiated, S::Ringing, S::InProgress] {
            assert!(!live.is_final());
            assert_eq!(outcome(&ended(live, None, None), m), None);
        }
        assert_eq!(outcome(&CarrierCall::default(), m), None);
    }

    #[test]
    fn statuses_round_trip_in_the_carriers_spelling() {
        for status in CarrierStatus::ALL {
            assert_eq!(CarrierStatus::parse(status.as_str()), Some(status));
            let json = serde_json::to_string(&status).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert_eq!(CarrierStatus::parse("answered"), None);
    }
}

/// What an answered call plays: TwiML given inline, fetched from a URL, or the campaign's
/// message, which the engine speaks itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audio {
    Twiml(String),
    VoiceUrl(String),
    Message(Box<crate::domain::message::Message>),
}

/// How a campaign's calls present themselves and what they play, overriding the carrier's
/// configured defaults (`telephony.twilio.from` and `twiml`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Voice {
    /// E.164, canonical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<Audio>,
}

impl Voice {
    pub fn is_default(&self) -> bool {
        self.caller_id.is_none() && self.audio.is_none()
    }

    /// The campaign's message, when the engine speaks for it.
    pub fn message(&self) -> Option<&crate::domain::message::Message> {
        match &self.audio {
            Some(Audio::Message(message)) => Some(message),
            _ => None,
        }
    }
}

/// The carrier's limit on inline TwiML.
pub const MAX_TWIML_CHARS: usize = 4000;
const MAX_URL_CHARS: usize = 2000;

/// Why inline TwiML cannot be sent, if it cannot.
pub fn twiml_problem(twiml: &str) -> Option<String> {
    let trimmed = twiml.trim();
    if trimmed.is_empty() {
        return Some("must not be empty".into());
    }
    if trimmed.chars().count() > MAX_TWIML_CHARS {
        return Some(format!("must be at most {MAX_TWIML_CHARS} characters"));
    }
    let document =
        trimmed.starts_with('<') && trimmed.ends_with('>') && trimmed.contains("<Response");
    if !document {
        return Some("must be a TwiML document: <Response>…</Response>".into());
    }
    None
}

/// Why a voice URL cannot be fetched by the carrier, if it cannot: an absolute http(s) URL
/// with a host and no spaces.
pub fn voice_url_problem(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
    match host {
        _ if url.chars().count() > MAX_URL_CHARS => {
            Some(format!("must be at most {MAX_URL_CHARS} characters"))
        }
        _ if url.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Some("must not contain spaces or control characters".into())
        }
        Some(host) if !host.is_empty() => None,
        _ => Some("must be an absolute http:// or https:// URL".into()),
    }
}

#[cfg(test)]
mod voice_tests {
    use super::*;

    #[test]
    fn twiml_and_urls_are_checked_as_the_carrier_would() {
        assert_eq!(twiml_problem("<Response><Say>Hi</Say></Response>"), None);
        assert!(twiml_problem("").is_some());
        assert!(twiml_problem("Hello").is_some());
        assert!(twiml_problem(&format!("<Response>{}</Response>", "a".repeat(4000))).is_some());
        assert_eq!(voice_url_problem("https://example.com/twiml.xml"), None);
        assert_eq!(voice_url_problem("http://127.0.0.1:9000/x?y=1"), None);
        for bad in ["ftp://x/y", "https://", "example.com/x", "https://x/a b"] {
            assert!(voice_url_problem(bad).is_some(), "{bad}");
        }
        assert!(Voice::default().is_default());
    }
}
