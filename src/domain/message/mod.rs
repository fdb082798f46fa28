//! What a campaign's call says and which keys it listens for (`spec/voice.md`): the caller's
//! identification, the law's opt-out, the message, the prompt and its responses, and what a
//! machine that answers is left.
//!
//! A `Message` is valid by construction: `Message::parse` checks every rule, and its JSON (the
//! API's shape, echoed and stored as it is) is read back through the same function.

mod meanings;
mod speech;
mod template;
#[cfg(test)]
mod tests;
mod verdict;

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Map, Value};

pub use self::speech::{
    inbound_heard_twiml, inbound_twiml, inbound_unidentified_twiml, pause_twiml, Heard, Spoken,
    TwimlPlan,
};
pub use self::template::{Missing, TargetValues, Template, Values, PHONE_NUMBER_KEY};
pub use self::verdict::{AfterSilence, OnVerdict};
use crate::domain::duration::{format_go_duration, parse_go_duration};
use crate::domain::phone::PhoneNumber;

/// How long a machine's verdict is waited for when the message does not say.
pub const DEFAULT_DETECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// The carrier's bounds on `MachineDetectionTimeout`.
const DETECTION_TIMEOUT_RANGE: (u64, u64) = (3, 59);
/// Most characters of a spoken part as the operator writes it.
const MAX_TEXT_CHARS: usize = 2000;
/// Most response keys: the keypad's twelve.
const MAX_RESPONSES: usize = 12;
/// Response names the engine records itself.
pub const RESERVED_RESPONSES: [&str; 3] = ["opt_out", "unrecognized", "none"];

/// A key on the phone's keypad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(char);

impl Key {
    /// `0`–`9`, `*` or `#`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_digit() || c == '*' || c == '#' => Some(Self(c)),
            _ => None,
        }
    }

    pub fn is_digit(self) -> bool {
        self.0.is_ascii_digit()
    }

    pub fn as_char(self) -> char {
        self.0
    }
}

/// The message proper: text the carrier speaks, or audio it plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Say(Template),
    /// An `https` URL.
    Play(String),
}

/// A key the callee may press and the response it records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub digit: Key,
    /// `[a-z0-9_]{1,32}`, none of `RESERVED_RESPONSES`.
    pub name: String,
    /// Said back before the call hangs up.
    pub reply: Option<Template>,
}

/// Whose list a key-press opt-out adds the number to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptOutScope {
    /// Every campaign's.
    Global,
    /// This campaign's.
    Campaign,
}

impl OptOutScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::Campaign => "campaign",
        }
    }
}

/// The law's key-press opt-out, announced right after the identification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptOut {
    /// `0`–`9`.
    pub digit: Key,
    pub scope: OptOutScope,
}

impl Default for OptOut {
    fn default() -> Self {
        Self {
            digit: Key('9'),
            scope: OptOutScope::Global,
        }
    }
}

/// What a machine that answers gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineAction {
    /// A voicemail: the identification, this text, then the callback number to opt out by.
    Message(Template),
    /// The call ends; its outcome is `telephony.twilio.machine_outcome`'s.
    Hangup,
    /// The call ends as a retryable failure `machine`.
    Retry,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub action: MachineAction,
    /// Sent as `MachineDetectionTimeout`, whole seconds within the carrier's range.
    pub detection_timeout: Duration,
}

/// A campaign's message, valid by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub identification: Template,
    pub content: Content,
    pub voice: Option<String>,
    pub language: Option<String>,
    pub prompt: Option<Template>,
    pub responses: Vec<Response>,
    /// `None`: turned off, for calls the law does not require it on.
    pub opt_out: Option<OptOut>,
    pub machine: Option<Machine>,
    pub callback_number: Option<PhoneNumber>,
}

/// A rule a message breaks: the field (a path below `message`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub problem: String,
}

impl Problem {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// The toll-free area codes of the North American plan.
const TOLL_FREE: [&str; 7] = ["800", "833", "844", "855", "866", "877", "888"];

impl Message {
    /// The message a JSON value describes, or every rule it breaks.
    pub fn parse(value: &Value) -> Result<Self, Vec<Problem>> {
        let Some(fields) = value.as_object() else {
            return Err(vec![Problem::new("", "must be an object")]);
        };
        let mut problems = Vec::new();
        let mut reader = Reader {
            fields,
            problems: &mut problems,
        };
        let identification = reader.template("identification", true);
        let say = reader.template("say", false);
        let play = reader.string("play");
        let voice = reader.string("voice");
        let language = reader.string("language");
        let prompt = reader.template("prompt", false);
        let callback_number = reader.string("callback_number");
        let content = match (say, play) {
            (Some(say), None) => Some(Content::Say(say)),
            (None, Some(url)) => {
                if !is_https_url(&url) {
                    problems.push(Problem::new("play", "must be an https URL"));
                }
                Some(Content::Play(url))
            }
            (Some(_), Some(_)) => {
                problems.push(Problem::new("play", "give say or play, not both"));
                None
            }
            (None, None) => {
                problems.push(Problem::new(
                    "say",
                    "give say (text) or play (an https URL)",
                ));
                None
            }
        };
        if let Some(voice) = &voice {
            if !is_voice(voice) {
                problems.push(Problem::new("voice", "must match [A-Za-z0-9._-]{1,64}"));
            }
        }
        if let Some(language) = &language {
            if !is_language_tag(language) {
                problems.push(Problem::new("language", "must be a BCP 47 tag, e.g. en-US"));
            }
        }
        let opt_out = opt_out(fields.get("opt_out"), &mut problems);
        let responses = responses(fields.get("responses"), &mut problems);
        if !responses.is_empty() && prompt.is_none() {
            problems.push(Problem::new(
                "prompt",
                "is required with responses: say which keys to press",
            ));
        }
        check_keys(&responses, opt_out.as_ref(), &mut problems);
        let machine = machine(fields.get("machine"), &mut problems);
        let callback_number = callback(callback_number, machine.as_ref(), &mut problems);
        match (identification, content) {
            (Some(identification), Some(content)) if problems.is_empty() => Ok(Self {
                identification,
                content,
                voice,
                language,
                prompt,
                responses,
                opt_out,
                machine,
                callback_number,
            }),
            _ => Err(problems),
        }
    }

    /// Every template of the message, for the keys they name.
    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        let say = match &self.content {
            Content::Say(say) => Some(say),
            Content::Play(_) => None,
        };
        let machine = match self.machine.as_ref().map(|m| &m.action) {
            Some(MachineAction::Message(say)) => Some(say),
            _ => None,
        };
        std::iter::once(&self.identification)
            .chain(say)
            .chain(self.prompt.as_ref())
            .chain(self.responses.iter().filter_map(|r| r.reply.as_ref()))
            .chain(machine)
    }

    /// The metadata keys the message names, `phone_number` aside (every target has it).
    pub fn keys(&self) -> BTreeSet<&str> {
        self.templates()
            .flat_map(Template::keys)
            .filter(|key| *key != PHONE_NUMBER_KEY)
            .collect()
    }

    /// The keys of `keys()` a target's values lack.
    pub fn missing(&self, values: &dyn Values) -> BTreeSet<String> {
        self.keys()
            .into_iter()
            .filter(|key| values.value(key).is_none())
            .map(str::to_owned)
            .collect()
    }

    /// The response a key records, if it is one of the message's.
    pub fn response(&self, key: Key) -> Option<&Response> {
        self.responses.iter().find(|r| r.digit == key)
    }

    /// The message as the API shows it (and the store keeps it).
    pub fn to_value(&self) -> Value {
        let mut out = Map::new();
        out.insert("identification".into(), json!(self.identification.as_str()));
        match &self.content {
            Content::Say(say) => out.insert("say".into(), json!(say.as_str())),
            Content::Play(url) => out.insert("play".into(), json!(url)),
        };
        if let Some(voice) = &self.voice {
            out.insert("voice".into(), json!(voice));
        }
        if let Some(language) = &self.language {
            out.insert("language".into(), json!(language));
        }
        if let Some(prompt) = &self.prompt {
            out.insert("prompt".into(), json!(prompt.as_str()));
        }
        let responses: Vec<Value> = self
            .responses
            .iter()
            .map(|r| {
                let mut entry = json!({"digit": r.digit.as_char().to_string(), "name": r.name});
                if let (Some(reply), Some(fields)) = (&r.reply, entry.as_object_mut()) {
                    fields.insert("reply".into(), json!(reply.as_str()));
                }
                entry
            })
            .collect();
        out.insert("responses".into(), Value::Array(responses));
        out.insert(
            "opt_out".into(),
            match self.opt_out {
                Some(o) => {
                    json!({"digit": o.digit.as_char().to_string(), "scope": o.scope.as_str()})
                }
                None => Value::Bool(false),
            },
        );
        if let Some(machine) = &self.machine {
            let timeout = format_go_duration(machine.detection_timeout);
            let value = match &machine.action {
                MachineAction::Message(say) => {
                    json!({"action": "message", "say": say.as_str(), "detection_timeout": timeout})
                }
                MachineAction::Hangup => json!({"action": "hangup", "detection_timeout": timeout}),
                MachineAction::Retry => json!({"action": "retry", "detection_timeout": timeout}),
            };
            out.insert("machine".into(), value);
        }
        if let Some(number) = &self.callback_number {
            out.insert("callback_number".into(), json!(number.as_str()));
        }
        Value::Object(out)
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Message::parse(&value).map_err(|problems| {
            let first = problems
                .first()
                .map(|p| format!("message.{}: {}", p.field, p.problem))
                .unwrap_or_default();
            serde::de::Error::custom(first)
        })
    }
}

/// Reads a message's scalar fields, noting what is wrong with each.
struct Reader<'a> {
    fields: &'a Map<String, Value>,
    problems: &'a mut Vec<Problem>,
}

impl Reader<'_> {
    /// A non-empty string field; absent or null is `None`.
    fn string(&mut self, field: &str) -> Option<String> {
        match self.fields.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) if text.trim().is_empty() => {
                self.problems.push(Problem::new(field, "must not be empty"));
                None
            }
            Some(Value::String(text)) if text.chars().count() > MAX_TEXT_CHARS => {
                let problem = format!("must be at most {MAX_TEXT_CHARS} characters");
                self.problems.push(Problem::new(field, problem));
                None
            }
            Some(Value::String(text)) => Some(text.trim().to_owned()),
            Some(_) => {
                self.problems.push(Problem::new(field, "must be a string"));
                None
            }
        }
    }

    fn template(&mut self, field: &str, required: bool) -> Option<Template> {
        let text = self.string(field);
        if text.is_none() && required && !self.problems.iter().any(|p| p.field == field) {
            self.problems.push(Problem::new(field, "is required"));
        }
        match Template::parse(&text?) {
            Ok(template) => Some(template),
            Err(problem) => {
                self.problems.push(Problem::new(field, problem));
                None
            }
        }
    }
}

fn template_at(
    value: Option<&Value>,
    field: &str,
    problems: &mut Vec<Problem>,
) -> Option<Template> {
    let mut fields = Map::new();
    if let Some(value) = value {
        fields.insert(field.to_owned(), value.clone());
    }
    let mut inner = Vec::new();
    let template = Reader {
        fields: &fields,
        problems: &mut inner,
    }
    .template(field, false);
    problems.extend(inner);
    template
}

fn opt_out(value: Option<&Value>, problems: &mut Vec<Problem>) -> Option<OptOut> {
    let fields = match value {
        None | Some(Value::Null) | Some(Value::Bool(true)) => return Some(OptOut::default()),
        Some(Value::Bool(false)) => return None,
        Some(Value::Object(fields)) => fields,
        Some(_) => {
            problems.push(Problem::new("opt_out", "must be {digit, scope} or false"));
            return None;
        }
    };
    let digit = match fields.get("digit") {
        None | Some(Value::Null) => Some(OptOut::default().digit),
        Some(Value::String(text)) => Key::parse(text).filter(|k| k.is_digit()),
        Some(_) => None,
    };
    let scope = match fields.get("scope").and_then(Value::as_str) {
        None if fields.get("scope").is_none_or(Value::is_null) => Some(OptOutScope::Global),
        Some("global") => Some(OptOutScope::Global),
        Some("campaign") => Some(OptOutScope::Campaign),
        _ => None,
    };
    if digit.is_none() {
        problems.push(Problem::new("opt_out.digit", "must be one of 0-9"));
    }
    if scope.is_none() {
        problems.push(Problem::new("opt_out.scope", "must be global or campaign"));
    }
    Some(OptOut {
        digit: digit?,
        scope: scope?,
    })
}

fn responses(value: Option<&Value>, problems: &mut Vec<Problem>) -> Vec<Response> {
    let entries = match value {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(entries)) if entries.len() <= MAX_RESPONSES => entries,
        Some(Value::Array(_)) => {
            let problem = format!("must hold at most {MAX_RESPONSES} entries");
            problems.push(Problem::new("responses", problem));
            return Vec::new();
        }
        Some(_) => {
            problems.push(Problem::new("responses", "must be an array"));
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let at = |field: &str| format!("responses[{i}].{field}");
        let Some(fields) = entry.as_object() else {
            problems.push(Problem::new(
                format!("responses[{i}]"),
                "must be {digit, name, reply?}",
            ));
            continue;
        };
        let digit = fields
            .get("digit")
            .and_then(Value::as_str)
            .and_then(Key::parse);
        if digit.is_none() {
            problems.push(Problem::new(at("digit"), "must be one of 0-9, * or #"));
        }
        let name = fields
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| is_response_name(n));
        if name.is_none() {
            problems.push(Problem::new(
                at("name"),
                "must match [a-z0-9_]{1,32} and not be opt_out, unrecognized or none",
            ));
        }
        let mut inner = Vec::new();
        let reply = template_at(fields.get("reply"), "reply", &mut inner);
        problems.extend(
            inner
                .into_iter()
                .map(|p| Problem::new(at("reply"), p.problem)),
        );
        if let (Some(digit), Some(name)) = (digit, name) {
            out.push(Response {
                digit,
                name: name.to_owned(),
                reply,
            });
        }
    }
    out
}

/// No two entries share a key, and none takes the opt-out's.
fn check_keys(responses: &[Response], opt_out: Option<&OptOut>, problems: &mut Vec<Problem>) {
    let mut seen = BTreeSet::new();
    let mut names = BTreeSet::new();
    if let Some(opt_out) = opt_out {
        seen.insert(opt_out.digit);
    }
    for (i, response) in responses.iter().enumerate() {
        if !seen.insert(response.digit) {
            problems.push(Problem::new(
                format!("responses[{i}].digit"),
                format!(
                    "{} is already another entry's key",
                    response.digit.as_char()
                ),
            ));
        }
        if !names.insert(response.name.as_str()) {
            problems.push(Problem::new(
                format!("responses[{i}].name"),
                format!("{} is already another entry's name", response.name),
            ));
        }
    }
}

fn machine(value: Option<&Value>, problems: &mut Vec<Problem>) -> Option<Machine> {
    let fields = match value {
        None | Some(Value::Null) => return None,
        Some(Value::Object(fields)) => fields,
        Some(_) => {
            problems.push(Problem::new("machine", "must be {action, ...}"));
            return None;
        }
    };
    let mut inner = Vec::new();
    let action = match fields.get("action").and_then(Value::as_str) {
        Some("message") => {
            let say = template_at(fields.get("say"), "say", &mut inner);
            if say.is_none() && inner.is_empty() {
                inner.push(Problem::new("say", "is required with action message"));
            }
            say.map(MachineAction::Message)
        }
        Some("hangup") => Some(MachineAction::Hangup),
        Some("retry") => Some(MachineAction::Retry),
        _ => {
            inner.push(Problem::new("action", "must be message, hangup or retry"));
            None
        }
    };
    let detection_timeout = match fields.get("detection_timeout") {
        None | Some(Value::Null) => Some(DEFAULT_DETECTION_TIMEOUT),
        Some(Value::String(text)) => parse_go_duration(text)
            .ok()
            .filter(|d| d.subsec_nanos() == 0)
            .filter(|d| {
                (DETECTION_TIMEOUT_RANGE.0..=DETECTION_TIMEOUT_RANGE.1).contains(&d.as_secs())
            }),
        Some(_) => None,
    };
    if detection_timeout.is_none() {
        let (low, high) = DETECTION_TIMEOUT_RANGE;
        inner.push(Problem::new(
            "detection_timeout",
            format!("must be whole seconds from {low}s to {high}s, e.g. \"30s\""),
        ));
    }
    problems.extend(
        inner
            .into_iter()
            .map(|p| Problem::new(format!("machine.{}", p.field), p.problem)),
    );
    Some(Machine {
        action: action?,
        detection_timeout: detection_timeout?,
    })
}

/// The callback number a voicemail ends with: required for one, E.164, toll-free when +1.
fn callback(
    number: Option<String>,
    machine: Option<&Machine>,
    problems: &mut Vec<Problem>,
) -> Option<PhoneNumber> {
    let leaves_voicemail = matches!(machine.map(|m| &m.action), Some(MachineAction::Message(_)));
    let Some(number) = number else {
        if leaves_voicemail {
            problems.push(Problem::new(
                "callback_number",
                "is required with machine.action message: a voicemail must give a number to \
                 call back and opt out by (47 CFR 64.1200(b)(3))",
            ));
        }
        return None;
    };
    let Ok(parsed) = PhoneNumber::parse(&number) else {
        problems.push(Problem::new("callback_number", "must be an E.164 number"));
        return None;
    };
    if let Some(national) = parsed.as_str().strip_prefix("+1") {
        if !TOLL_FREE.iter().any(|code| national.starts_with(code)) {
            problems.push(Problem::new(
                "callback_number",
                "must be toll-free (800, 833, 844, 855, 866, 877 or 888) when it is a +1 number",
            ));
            return None;
        }
    }
    Some(parsed)
}

fn is_https_url(url: &str) -> bool {
    url.strip_prefix("https://").is_some_and(|rest| {
        !rest.is_empty() && !rest.starts_with('/') && !url.contains(char::is_whitespace)
    })
}

fn is_voice(voice: &str) -> bool {
    (1..=64).contains(&voice.len())
        && voice
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A BCP 47 tag's shape: a 2–3 letter language, then subtags of 1–8 letters or digits.
fn is_language_tag(tag: &str) -> bool {
    let mut subtags = tag.split('-');
    let language_ok = subtags
        .next()
        .is_some_and(|l| (2..=3).contains(&l.len()) && l.chars().all(|c| c.is_ascii_alphabetic()));
    language_ok
        && subtags
            .all(|s| (1..=8).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric()))
}

fn is_response_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !RESERVED_RESPONSES.contains(&name)
}
