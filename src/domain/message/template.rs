//! Text with `{{key}}` places that a target's metadata fills.
//!
//! A value is inserted once, as text: a `{{…}}` inside a value stays as it is, and control
//! characters in it are dropped. Escaping for the carrier is the TwiML writer's business, so a
//! value can never add a verb whatever it holds.

use std::collections::BTreeSet;

use crate::domain::metadata::Metadata;

/// Most characters of a metadata key named in a template.
const MAX_KEY_CHARS: usize = 64;

/// The key always there: the number being called.
pub const PHONE_NUMBER_KEY: &str = "phone_number";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Key(String),
}

/// A text and the places in it that metadata fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

/// What fills a template's places for one target.
pub trait Values {
    /// The text for `key`, if the target has one.
    fn value(&self, key: &str) -> Option<String>;
}

/// The metadata keys a target lacks for a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing(pub BTreeSet<String>);

impl Template {
    /// `text` with its places; a `{{` must close with `}}` around a key of letters, digits,
    /// `_`, `-` or `.`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| "has a {{ without its }}".to_owned())?;
            let key = after[..close].trim();
            if !is_key(key) {
                return Err(format!(
                    "names {{{{{key}}}}}, which is not a metadata key (letters, digits, _, - or ., \
                     at most {MAX_KEY_CHARS})"
                ));
            }
            parts.push(Part::Key(key.to_owned()));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self {
            text: text.to_owned(),
            parts,
        })
    }

    /// The text as the operator wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The metadata keys the text names (`phone_number` included when named).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Key(key) => Some(key.as_str()),
            Part::Text(_) => None,
        })
    }

    /// The text with every place filled from `values`, or the keys they lack.
    pub fn fill(&self, values: &dyn Values) -> Result<String, Missing> {
        let mut out = String::with_capacity(self.text.len() + 16);
        let mut missing = BTreeSet::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Key(key) => match values.value(key) {
                    Some(value) => out.extend(value.chars().filter(|&c| speakable(c))),
                    None => {
                        missing.insert(key.clone());
                    }
                },
            }
        }
        if missing.is_empty() {
            Ok(out)
        } else {
            Err(Missing(missing))
        }
    }
}

/// Whether a character of a value may be spoken: no control characters, and none of the
/// noncharacters XML forbids.
fn speakable(c: char) -> bool {
    !c.is_control() && !matches!(c, '\u{FFFE}' | '\u{FFFF}')
}

fn is_key(key: &str) -> bool {
    !key.is_empty()
        && key.chars().count() <= MAX_KEY_CHARS
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// A target's values: the number called, and its metadata object's fields. A string is used as
/// it is, a number or boolean as its JSON text; null, objects and arrays are no value to speak.
pub struct TargetValues<'a> {
    phone_number: &'a str,
    fields: Option<serde_json::Map<String, serde_json::Value>>,
}

impl<'a> TargetValues<'a> {
    /// The values of a target or call: its number and its metadata, read once.
    pub fn new(phone_number: &'a str, metadata: Option<&Metadata>) -> Self {
        let fields = match metadata.map(Metadata::to_value) {
            Some(serde_json::Value::Object(fields)) => Some(fields),
            _ => None,
        };
        Self::with_fields(phone_number, fields)
    }

    pub fn with_fields(
        phone_number: &'a str,
        fields: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Self {
        Self {
            phone_number,
            fields,
        }
    }
}

impl Values for TargetValues<'_> {
    fn value(&self, key: &str) -> Option<String> {
        if key == PHONE_NUMBER_KEY {
            return Some(self.phone_number.to_owned());
        }
        match self.fields.as_ref()?.get(key)? {
            serde_json::Value::String(text) => Some(text.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}
