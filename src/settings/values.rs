//! The kinds of value the settings are written in: Go-style durations, days, secrets and
//! librdkafka properties that never reach a log, and strings an environment variable may
//! spell as numbers.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::duration::{format_go_duration, parse_go_duration};

/// A duration written as Go does ("500ms", "2s", "1m30s").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoDuration(pub Duration);

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_go_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_go_duration(&text)
            .map(GoDuration)
            .map_err(serde::de::Error::custom)
    }
}

impl From<Duration> for GoDuration {
    fn from(value: Duration) -> Self {
        Self(value)
    }
}

/// A long duration: whole days ("400d"), or as Go writes it ("36h").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Days(pub Duration);

pub(super) const DAY: Duration = Duration::from_secs(24 * 60 * 60);

impl Serialize for Days {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let secs = self.0.as_secs();
        if self.0.subsec_nanos() == 0 && secs % DAY.as_secs() == 0 {
            serializer.serialize_str(&format!("{}d", secs / DAY.as_secs()))
        } else {
            serializer.serialize_str(&format_go_duration(self.0))
        }
    }
}

impl<'de> Deserialize<'de> for Days {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let trimmed = text.trim();
        if let Some(days) = trimmed.strip_suffix('d') {
            return days
                .parse::<u32>()
                .map(|days| Days(DAY * days))
                .map_err(|_| {
                    serde::de::Error::custom(format!("{text:?} is not a number of days"))
                });
        }
        parse_go_duration(trimmed)
            .map(Days)
            .map_err(serde::de::Error::custom)
    }
}

/// A librdkafka setting's value. Its `Debug` hides it: some are secrets (passwords, keys), and
/// a logged settings struct must not show them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Property(#[serde(deserialize_with = "text")] String);

impl Property {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn value(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"…\"")
    }
}

/// A secret value: `Debug` never shows it, so a logged settings struct cannot leak it.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(#[serde(deserialize_with = "text")] String);

/// A string setting that an environment variable may spell like a number: `OUTBOUND__*`
/// values are parsed, so a token of digits arrives as a number.
pub(super) fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Spelled {
        Text(String),
        Unsigned(u64),
        Signed(i64),
        Float(f64),
        Bool(bool),
    }
    Ok(match Spelled::deserialize(deserializer)? {
        Spelled::Text(text) => text,
        Spelled::Unsigned(n) => n.to_string(),
        Spelled::Signed(n) => n.to_string(),
        Spelled::Float(n) => n.to_string(),
        Spelled::Bool(b) => b.to_string(),
    })
}

/// An E.164 number setting: `OUTBOUND__…=+15551234567` arrives parsed as the integer
/// 15551234567, which gets its `+` back.
pub(super) fn e164<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Text(String),
        Digits(u64),
    }
    Ok(match Number::deserialize(deserializer)? {
        Number::Text(text) => text,
        Number::Digits(digits) => format!("+{digits}"),
    })
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}
