//! Where a number rings: the time zones of its number range, from libphonenumber's
//! number-to-time-zone map (`data/timezones.txt`, Apache-2.0; its source and version are in
//! the file's first lines), with operator overrides on top.
//!
//! The map gives each digit prefix (country calling code and leading digits) one or more IANA
//! zones; the longest prefix of a number wins. A prefix that is a bare country calling code
//! and lists several zones says only which country the number is in (`1` lists all 42 zones
//! of the North American plan): such a number maps to no zone, and its campaign's time zone
//! applies, as for a number the map does not know at all.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono_tz::Tz;

const MAP: &str = include_str!("../data/timezones.txt");

/// Country calling codes are one to three digits.
const MAX_COUNTRY_CODE_DIGITS: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneMapError {
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("override {prefix:?}: {message}")]
    Override { prefix: String, message: String },
}

/// Digit prefixes and their zones.
#[derive(Debug, Clone, Default)]
pub struct ZoneMap {
    by_prefix: HashMap<String, Vec<Tz>>,
    longest: usize,
}

fn parse_zones(list: &str) -> Result<Vec<Tz>, String> {
    list.split('&')
        .map(|name| {
            name.trim()
                .parse::<Tz>()
                .map_err(|_| format!("{name:?} is not an IANA time zone"))
        })
        .collect()
}

fn is_prefix(text: &str) -> bool {
    !text.is_empty() && text.len() <= 16 && text.bytes().all(|b| b.is_ascii_digit())
}

impl ZoneMap {
    /// The map built into the binary.
    pub fn builtin() -> &'static ZoneMap {
        static BUILTIN: OnceLock<ZoneMap> = OnceLock::new();
        // The file is part of the source and checked by a test, so it always parses.
        BUILTIN.get_or_init(|| Self::parse(MAP).unwrap_or_default())
    }

    pub fn parse(text: &str) -> Result<Self, ZoneMapError> {
        let mut map = ZoneMap::default();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |message: String| ZoneMapError::Line {
                line: index + 1,
                message,
            };
            let (prefix, zones) = line
                .split_once('|')
                .ok_or_else(|| error("expected PREFIX|Zone[&Zone...]".into()))?;
            if !is_prefix(prefix) {
                return Err(error(format!("{prefix:?} is not a digit prefix")));
            }
            map.insert(prefix, parse_zones(zones).map_err(error)?);
        }
        Ok(map)
    }

    fn insert(&mut self, prefix: &str, zones: Vec<Tz>) {
        self.longest = self.longest.max(prefix.len());
        self.by_prefix.insert(prefix.to_owned(), zones);
    }

    /// This map with `overrides` (digit prefix → zone names) replacing or adding entries.
    pub fn with_overrides<'a>(
        &self,
        overrides: impl IntoIterator<Item = (&'a str, &'a [String])>,
    ) -> Result<Self, ZoneMapError> {
        let mut map = self.clone();
        for (prefix, zones) in overrides {
            let prefix = prefix.trim_start_matches('+');
            let error = |message: String| ZoneMapError::Override {
                prefix: prefix.to_owned(),
                message,
            };
            if !is_prefix(prefix) {
                return Err(error(
                    "must be digits (country code and leading digits)".into(),
                ));
            }
            if zones.is_empty() {
                return Err(error("must list at least one zone".into()));
            }
            let zones = zones
                .iter()
                .map(|name| {
                    name.parse::<Tz>()
                        .map_err(|_| error(format!("{name:?} is not an IANA time zone")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            map.insert(prefix, zones);
        }
        Ok(map)
    }

    /// The zones an E.164 number (`+` and digits) rings in; empty when the map does not place
    /// it more precisely than its country.
    pub fn zones_of(&self, e164: &str) -> &[Tz] {
        let digits = e164.trim_start_matches('+');
        let longest = self.longest.min(digits.len());
        for len in (1..=longest).rev() {
            let Some(prefix) = digits.get(..len) else {
                continue;
            };
            if let Some(zones) = self.by_prefix.get(prefix) {
                let country_only = len <= MAX_COUNTRY_CODE_DIGITS && zones.len() > 1;
                return if country_only { &[] } else { zones };
            }
        }
        &[]
    }

    pub fn len(&self) -> usize {
        self.by_prefix.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_prefix.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono_tz::America;

    #[test]
    fn the_builtin_map_parses_whole() {
        let map = ZoneMap::parse(MAP).unwrap();
        assert!(map.len() > 3000, "{}", map.len());
        assert_eq!(ZoneMap::builtin().len(), map.len());
    }

    #[test]
    fn the_longest_prefix_wins() {
        let map = ZoneMap::builtin();
        assert_eq!(map.zones_of("+12015550123"), &[America::New_York]);
        // 808: Hawaii, no daylight saving time.
        assert_eq!(
            map.zones_of("+18085550123"),
            &[chrono_tz::Pacific::Honolulu]
        );
        // 602: Arizona, no daylight saving time.
        assert_eq!(map.zones_of("+16025550123"), &[America::Phoenix]);
        // 208 spans two zones; one exchange of it is known more precisely.
        assert_eq!(
            map.zones_of("+12085550123"),
            &[America::Boise, America::Los_Angeles]
        );
        assert_eq!(map.zones_of("+12082010123"), &[America::Denver]);
    }

    #[test]
    fn a_number_placed_only_by_its_country_maps_to_no_zone() {
        let map = ZoneMap::builtin();
        // 555 is no area code: the map knows only "+1", which lists the whole plan.
        assert!(map.zones_of("+15555550001").is_empty());
        // A country with a single zone is a location.
        assert_eq!(map.zones_of("+33142000000"), &[chrono_tz::Europe::Paris]);
    }

    #[test]
    fn overrides_replace_and_add_entries() {
        let toronto = vec!["America/Toronto".to_owned()];
        let map = ZoneMap::builtin()
            .with_overrides([("+1808", toronto.as_slice())])
            .unwrap();
        assert_eq!(map.zones_of("+18085550123"), &[America::Toronto]);
        let bad = vec!["Mars/Olympus".to_owned()];
        assert!(ZoneMap::builtin()
            .with_overrides([("1808", bad.as_slice())])
            .is_err());
        assert!(ZoneMap::builtin()
            .with_overrides([("18x", toronto.as_slice())])
            .is_err());
    }

    #[test]
    fn malformed_lines_are_named() {
        let err = ZoneMap::parse("# c\n1201|America/New_York\n12x|UTC\n").unwrap_err();
        assert_eq!(
            err,
            ZoneMapError::Line {
                line: 3,
                message: "\"12x\" is not a digit prefix".into()
            }
        );
        assert!(ZoneMap::parse("1201|Nowhere/Town\n").is_err());
    }
}
