//! Phone numbers: E.164, checked with libphonenumber's metadata for a possible length.
//!
//! The check is libphonenumber's "possible number" (length fits the country calling code), not
//! its stricter "valid number": test ranges such as `+15555550001` must be accepted.

use std::fmt;

use phonenumber::metadata::DATABASE;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("not an E.164 number (expected '+' then 8 to 15 digits)")]
    NotE164,
    #[error("unknown country calling code")]
    UnknownCountryCode,
    #[error("impossible length for its country calling code")]
    ImpossibleLength,
}

impl PhoneNumber {
    /// Parses `input`, tolerating the usual separators (spaces, dashes, dots, parentheses),
    /// and returns the canonical E.164 form.
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        let trimmed = input.trim();
        let rest = trimmed.strip_prefix('+').ok_or(PhoneError::NotE164)?;
        let mut digits = String::with_capacity(16);
        for ch in rest.chars() {
            match ch {
                '0'..='9' => digits.push(ch),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(PhoneError::NotE164),
            }
        }
        if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
            return Err(PhoneError::NotE164);
        }
        // Country calling codes are prefix-free, so the first 1-3 digit prefix that the
        // metadata knows is the code.
        let (code_len, regions) = (1..=3)
            .find_map(|len| {
                let code: u16 = digits[..len].parse().ok()?;
                DATABASE.by_code(&code).map(|regions| (len, regions))
            })
            .ok_or(PhoneError::UnknownCountryCode)?;
        let national_len = (digits.len() - code_len) as u16;
        // The general descriptor's lengths are not always filled in this metadata, so the
        // union over the number types stands for libphonenumber's possible lengths.
        let possible = regions.iter().any(|meta| {
            let d = meta.descriptors();
            std::iter::once(d.general())
                .chain(d.fixed_line())
                .chain(d.mobile())
                .chain(d.toll_free())
                .chain(d.premium_rate())
                .chain(d.shared_cost())
                .chain(d.personal_number())
                .chain(d.voip())
                .chain(d.pager())
                .chain(d.uan())
                .chain(d.voicemail())
                .any(|desc| {
                    desc.possible_length().contains(&national_len)
                        || desc.possible_local_length().contains(&national_len)
                })
        });
        if !possible {
            return Err(PhoneError::ImpossibleLength);
        }
        Ok(Self(format!("+{digits}")))
    }

    /// Wraps a number already in canonical form (read back from storage).
    pub fn from_canonical(canonical: String) -> Self {
        Self(canonical)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn accepts_seed_examples_and_canonicalises() {
        assert_eq!(
            PhoneNumber::parse("+15555550001").unwrap().as_str(),
            "+15555550001"
        );
        assert_eq!(
            PhoneNumber::parse(" +1 (555) 555-0002 ").unwrap().as_str(),
            "+15555550002"
        );
        assert_eq!(
            PhoneNumber::parse("+442071838750").unwrap().as_str(),
            "+442071838750"
        );
        assert_eq!(
            PhoneNumber::parse("+4915112345678").unwrap().as_str(),
            "+4915112345678"
        );
    }

    #[test]
    fn rejects_non_e164() {
        for bad in [
            "15555550001",
            "+",
            "+1555",
            "+1234567890123456",
            "+0123456789",
            "+1555x550001",
            "",
        ] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn rejects_impossible_length_for_country() {
        // NANP numbers have ten national digits.
        assert_eq!(
            PhoneNumber::parse("+155555500012"),
            Err(PhoneError::ImpossibleLength)
        );
        assert_eq!(
            PhoneNumber::parse("+999123456789").unwrap_err(),
            PhoneError::UnknownCountryCode
        );
    }
}
