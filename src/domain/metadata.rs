//! What an operator attaches to a target: a JSON object of at most `MAX_BYTES` (compact) and
//! `MAX_KEYS` keys, kept as its compact JSON text from the upload to the store and back, so a
//! target costs its text and no more (a parsed JSON tree costs many times its text).

use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// Most bytes of a target's metadata, as compact JSON.
pub const MAX_BYTES: usize = 4096;
/// Most keys of a target's metadata object.
pub const MAX_KEYS: usize = 64;

/// A target's metadata: compact JSON text of an object, within the bounds above.
#[derive(Clone, PartialEq, Eq)]
pub struct Metadata(Arc<str>);

/// Why a value cannot be a target's metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataProblem {
    #[error("must be a JSON object")]
    NotAnObject,
    #[error("must hold at most {MAX_KEYS} keys, has {0}")]
    TooManyKeys(usize),
    #[error("must be at most {MAX_BYTES} bytes of JSON, is {0}")]
    TooLarge(usize),
    #[error("is not JSON: {0}")]
    Malformed(String),
}

impl Metadata {
    /// Metadata from JSON text as a client sent it. Text far over the bound is refused before
    /// it is parsed.
    pub fn parse(text: &str) -> Result<Self, MetadataProblem> {
        // Whitespace may shrink in the compact form, but not below a quarter.
        if text.len() > 4 * MAX_BYTES {
            return Err(MetadataProblem::TooLarge(text.len()));
        }
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|err| MetadataProblem::Malformed(err.to_string()))?;
        Self::from_value(&value)
    }

    /// Metadata from a parsed value.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, MetadataProblem> {
        let object = value.as_object().ok_or(MetadataProblem::NotAnObject)?;
        if object.len() > MAX_KEYS {
            return Err(MetadataProblem::TooManyKeys(object.len()));
        }
        let compact = value.to_string();
        if compact.len() > MAX_BYTES {
            return Err(MetadataProblem::TooLarge(compact.len()));
        }
        Ok(Self(compact.into()))
    }

    /// Metadata as a store kept it: written by `as_json`, so taken as it is.
    pub fn from_stored(text: String) -> Self {
        Self(text.into())
    }

    /// The compact JSON text.
    pub fn as_json(&self) -> &str {
        &self.0
    }

    /// The parsed object, for a reader that needs its fields.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.0).unwrap_or(serde_json::Value::Null)
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Metadata({})", self.0)
    }
}

impl Serialize for Metadata {
    /// As the JSON it is, not as a string holding it.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match serde_json::value::RawValue::from_string(self.0.to_string()) {
            Ok(raw) => raw.serialize(serializer),
            Err(err) => Err(serde::ser::Error::custom(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn metadata_is_a_bounded_object_kept_as_compact_text() {
        let metadata = Metadata::parse("{ \"customer\" : \"A-17\", \"n\": [1, 2] }").unwrap();
        assert_eq!(metadata.as_json(), r#"{"customer":"A-17","n":[1,2]}"#);
        assert_eq!(
            serde_json::to_string(&serde_json::json!({"m": metadata})).unwrap(),
            r#"{"m":{"customer":"A-17","n":[1,2]}}"#
        );
        assert_eq!(Metadata::parse("[1]"), Err(MetadataProblem::NotAnObject));
        assert_eq!(Metadata::parse("\"x\""), Err(MetadataProblem::NotAnObject));
        assert!(matches!(
            Metadata::parse("{"),
            Err(MetadataProblem::Malformed(_))
        ));
        let keys: serde_json::Map<_, _> = (0..=MAX_KEYS)
            .map(|i| (format!("k{i}"), serde_json::Value::from(i)))
            .collect();
        assert_eq!(
            Metadata::from_value(&serde_json::Value::Object(keys)),
            Err(MetadataProblem::TooManyKeys(MAX_KEYS + 1))
        );
        let long = format!("{{\"note\":\"{}\"}}", "x".repeat(MAX_BYTES));
        assert!(matches!(
            Metadata::parse(&long),
            Err(MetadataProblem::TooLarge(_))
        ));
        let padded = format!("{{\"note\":\"x\"{}}}", " ".repeat(5 * MAX_BYTES));
        assert!(matches!(
            Metadata::parse(&padded),
            Err(MetadataProblem::TooLarge(_))
        ));
        let just = format!("{{\"n\":\"{}\"}}", "x".repeat(MAX_BYTES - 8));
        assert_eq!(Metadata::parse(&just).unwrap().as_json().len(), MAX_BYTES);
    }
}
