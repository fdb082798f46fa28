//! US state calling rules, applied to +1 numbers by the state their area code is presumed to
//! be in (Florida, Oklahoma and Maryland presume it so by statute; elsewhere it is the usual
//! reading). The area codes come from libphonenumber's geocoding data
//! (`data/nanp_area_codes.txt`, Apache-2.0; source and version in its first lines).
//!
//! Each rule carries its statute and the source it was taken from. The table is what the
//! sources in `../shared/guides/telephony-compliance.md` say as of 2026; where they disagree
//! or are unclear, the stricter reading is taken and the row says so. It is not legal advice:
//! operators remain responsible for the rules that bind them (see the README).

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use super::super::business_hours::{BusinessHours, BusinessWindow, WallTime};

const AREA_CODES: &str = include_str!("../data/nanp_area_codes.txt");

/// A state's rules for calls to numbers presumed to be in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRule {
    /// USPS code, e.g. "FL".
    pub state: &'static str,
    pub name: &'static str,
    /// Calling windows in the called party's local time: (days, start, end), days as bits of
    /// Sunday (bit 0) to Saturday (bit 6), times in minutes after midnight.
    windows: &'static [(u8, u16, u16)],
    /// At most this many attempts to one number per this period, per campaign.
    pub cap: Option<(u32, Duration)>,
    pub statute: &'static str,
    pub source: &'static str,
    /// Where the sources disagree, and which reading the table takes.
    pub note: &'static str,
}

const EVERY_DAY: u8 = 0b111_1111;
const MON_SAT: u8 = 0b111_1110;
const MON_FRI: u8 = 0b011_1110;
const SATURDAY: u8 = 0b100_0000;
const SUNDAY: u8 = 0b000_0001;
const DAY: Duration = Duration::from_secs(24 * 3600);

const fn h(hours: u16) -> u16 {
    hours * 60
}

/// The table. Holidays named by some statutes (Alabama, Louisiana, Mississippi, Rhode Island)
/// are not in it: campaigns state them as restricted periods.
pub const STATE_RULES: &[StateRule] = &[
    StateRule {
        state: "FL",
        name: "Florida",
        windows: &[(EVERY_DAY, h(8), h(20))],
        cap: Some((3, DAY)),
        statute: "Fla. Stat. § 501.616(6)(b) (SB 1120, 2021)",
        source: "https://www.flsenate.gov/Session/Bill/2021/1120/BillText/er/HTML",
        note: "3 calls per 24 h on the same subject; applied per campaign",
    },
    StateRule {
        state: "OK",
        name: "Oklahoma",
        windows: &[(EVERY_DAY, h(8), h(20))],
        cap: Some((3, DAY)),
        statute: "15 O.S. § 755.1 (since 2022-11-01)",
        source: "https://lexace.ai/us/statute/oklahoma/15-755.1",
        note: "area-code presumption reported by secondary sources only; applied",
    },
    StateRule {
        state: "MD",
        name: "Maryland",
        windows: &[(EVERY_DAY, h(8), h(20))],
        cap: Some((3, DAY)),
        statute: "Md. Code, Com. Law § 14-4502 (Stop the Spam Calls Act of 2023)",
        source: "https://lexace.ai/us/statute/maryland/CL-14-4502",
        note: "effective date given as 2023 or 2024 by different sources; applied",
    },
    StateRule {
        state: "WA",
        name: "Washington",
        windows: &[(EVERY_DAY, h(8), h(20))],
        cap: None,
        statute: "RCW 19.158.040(2)",
        source: "https://app.leg.wa.gov/RCW/default.aspx?cite=19.158.040",
        note: "",
    },
    StateRule {
        state: "RI",
        name: "Rhode Island",
        windows: &[(MON_FRI, h(9), h(18)), (SATURDAY, h(10), h(17))],
        cap: None,
        statute: "R.I. Gen. Laws § 5-61-3.6",
        source: "http://webserver.rilin.state.ri.us/Statutes/TITLE5/5-61/5-61-3.6.HTM",
        note: "no Sundays; holidays are the campaign's restricted periods",
    },
    StateRule {
        state: "TX",
        name: "Texas",
        windows: &[(MON_SAT, h(9), h(21)), (SUNDAY, h(12), h(21))],
        cap: None,
        statute: "Tex. Bus. & Com. Code § 304.051",
        source: "https://lexace.ai/us/statute/texas/304.051",
        note: "the Sunday window (noon to 21:00) is unverified; the stricter reading is taken",
    },
    StateRule {
        state: "AL",
        name: "Alabama",
        windows: &[(MON_SAT, h(8), h(20))],
        cap: None,
        statute: "Ala. Code § 8-19A-3 (as summarised by the source)",
        source: "https://www.dropcowboy.com/state-compliance",
        note: "secondary source; no Sundays; holidays are the campaign's restricted periods",
    },
    StateRule {
        state: "LA",
        name: "Louisiana",
        windows: &[(MON_SAT, h(8), h(20))],
        cap: None,
        statute: "La. R.S. 45:844.11 (as summarised by the source)",
        source: "https://www.dropcowboy.com/state-compliance",
        note: "secondary source; no Sundays; holidays are the campaign's restricted periods",
    },
    StateRule {
        state: "MS",
        name: "Mississippi",
        windows: &[(MON_SAT, h(8), h(20))],
        cap: None,
        statute: "Miss. Code § 77-3-725 (as summarised by the source)",
        source: "https://getpocketlaw.com",
        note: "secondary source; no Sundays; holidays are the campaign's restricted periods",
    },
    StateRule {
        state: "CT",
        name: "Connecticut",
        windows: &[(EVERY_DAY, h(9), h(20))],
        cap: None,
        statute: "Conn. Gen. Stat. § 42-288a (as summarised by the source)",
        source: "https://www.dropcowboy.com/state-compliance",
        note: "sources give 20:00 or 21:00 as the end; the stricter 20:00 is taken",
    },
    StateRule {
        state: "KY",
        name: "Kentucky",
        windows: &[(EVERY_DAY, h(10), h(21))],
        cap: None,
        statute: "KRS 367.46955 (as summarised by the source)",
        source: "https://www.dropcowboy.com/state-compliance",
        note: "secondary source",
    },
    StateRule {
        state: "MI",
        name: "Michigan",
        windows: &[(EVERY_DAY, h(9), h(21))],
        cap: None,
        statute: "MCL 445.111b (as summarised by the source)",
        source: "https://www.dropcowboy.com/state-compliance",
        note: "secondary source",
    },
    StateRule {
        state: "MN",
        name: "Minnesota",
        windows: &[(EVERY_DAY, h(9), h(21))],
        cap: None,
        statute: "Minn. Stat. § 325E.27 (as summarised by the source)",
        source: "https://www.dropcowboy.com/state-compliance",
        note: "secondary source",
    },
    StateRule {
        state: "NM",
        name: "New Mexico",
        windows: &[(EVERY_DAY, h(9), h(21))],
        cap: None,
        statute: "N.M. Stat. § 57-12-22 (as summarised by the source)",
        source: "https://www.dropcowboy.com/state-compliance",
        note: "secondary source",
    },
    StateRule {
        state: "NV",
        name: "Nevada",
        windows: &[(EVERY_DAY, h(9), h(20))],
        cap: None,
        statute: "NRS 228.590 (as summarised by the source)",
        source: "https://www.dropcowboy.com/state-compliance",
        note: "secondary source",
    },
    StateRule {
        state: "MA",
        name: "Massachusetts",
        windows: &[(EVERY_DAY, h(8), h(20))],
        cap: None,
        statute: "940 CMR 38.02 (as summarised by the source)",
        source: "https://www.dropcowboy.com/state-compliance",
        note: "secondary source",
    },
];

impl StateRule {
    /// The state's calling windows, to be read in the called party's local time.
    pub fn hours(&self) -> BusinessHours {
        let mut windows = Vec::new();
        for &(days, start, end) in self.windows {
            for day in 0..7u8 {
                if days & (1 << day) == 0 {
                    continue;
                }
                let (Ok(start), Ok(end)) =
                    (WallTime::from_minutes(start), WallTime::from_minutes(end))
                else {
                    continue;
                };
                if let Ok(window) = BusinessWindow::new(day, start, end) {
                    windows.push(window);
                }
            }
        }
        BusinessHours::new(windows)
    }
}

/// USPS codes of the places libphonenumber names for US area codes.
const PLACES: &[(&str, &str)] = &[
    ("Alabama", "AL"),
    ("Alaska", "AK"),
    ("Arizona", "AZ"),
    ("Arkansas", "AR"),
    ("California", "CA"),
    ("Colorado", "CO"),
    ("Connecticut", "CT"),
    ("Delaware", "DE"),
    ("Washington D.C.", "DC"),
    ("Florida", "FL"),
    ("Georgia", "GA"),
    ("Hawaii", "HI"),
    ("Idaho", "ID"),
    ("Illinois", "IL"),
    ("Indiana", "IN"),
    ("Iowa", "IA"),
    ("Kansas", "KS"),
    ("Kentucky", "KY"),
    ("Louisiana", "LA"),
    ("Maine", "ME"),
    ("Maryland", "MD"),
    ("Massachusetts", "MA"),
    ("Michigan", "MI"),
    ("Minnesota", "MN"),
    ("Mississippi", "MS"),
    ("Missouri", "MO"),
    ("Montana", "MT"),
    ("Nebraska", "NE"),
    ("Nevada", "NV"),
    ("New Hampshire", "NH"),
    ("New Jersey", "NJ"),
    ("New Mexico", "NM"),
    ("New York", "NY"),
    ("North Carolina", "NC"),
    ("North Dakota", "ND"),
    ("Ohio", "OH"),
    ("Oklahoma", "OK"),
    ("Oregon", "OR"),
    ("Pennsylvania", "PA"),
    ("Rhode Island", "RI"),
    ("South Carolina", "SC"),
    ("South Dakota", "SD"),
    ("Tennessee", "TN"),
    ("Texas", "TX"),
    ("Utah", "UT"),
    ("Vermont", "VT"),
    ("Virginia", "VA"),
    ("Washington State", "WA"),
    ("West Virginia", "WV"),
    ("Wisconsin", "WI"),
    ("Wyoming", "WY"),
];

/// The USPS code of a libphonenumber place name: a state's name, or "City, XX".
fn state_of_place(place: &str) -> Option<&'static str> {
    if let Some(&(_, code)) = PLACES.iter().find(|(name, _)| *name == place) {
        return Some(code);
    }
    let (_, suffix) = place.rsplit_once(", ")?;
    PLACES
        .iter()
        .map(|&(_, code)| code)
        .find(|code| *code == suffix)
}

fn area_codes() -> &'static HashMap<&'static str, &'static str> {
    static TABLE: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    TABLE.get_or_init(|| {
        AREA_CODES
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (prefix, place) = line.split_once('|')?;
                let area = prefix.strip_prefix('1')?;
                Some((area, state_of_place(place.trim())?))
            })
            .collect()
    })
}

/// The US state a +1 number's area code is presumed to be in.
pub fn state_of(e164: &str) -> Option<&'static str> {
    let area = e164.strip_prefix("+1")?.get(..3)?;
    area_codes().get(area).copied()
}

/// The rule of the state a number's area code is presumed to be in, if that state has one.
pub fn rule_for(e164: &str) -> Option<&'static StateRule> {
    let state = state_of(e164)?;
    STATE_RULES.iter().find(|rule| rule.state == state)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn area_codes_name_their_states() {
        assert_eq!(state_of("+13055550100"), Some("FL"));
        assert_eq!(state_of("+15615550100"), Some("FL")); // "Palm Beach, FL"
        assert_eq!(state_of("+14055550100"), Some("OK"));
        assert_eq!(state_of("+14105550100"), Some("MD"));
        assert_eq!(state_of("+12125550100"), Some("NY")); // "New York, NY"
        assert_eq!(state_of("+12065550100"), Some("WA")); // "Washington State"
        assert_eq!(state_of("+14165550100"), None); // Toronto
        assert_eq!(state_of("+15555550100"), None);
        assert_eq!(state_of("+442071234567"), None);
        // Every US state is reachable through at least one area code.
        for (_, code) in PLACES {
            assert!(
                area_codes().values().any(|state| state == code),
                "no area code for {code}"
            );
        }
    }

    #[test]
    fn every_rule_has_its_statute_source_and_hours() {
        for rule in STATE_RULES {
            assert!(!rule.statute.is_empty() && rule.source.starts_with("http"));
            assert!(!rule.hours().windows().is_empty(), "{}", rule.state);
        }
        let states: Vec<_> = STATE_RULES.iter().map(|r| r.state).collect();
        let mut unique = states.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), states.len());
    }

    #[test]
    fn florida_calls_end_at_eight_and_are_capped() {
        let rule = rule_for("+13055550100").unwrap();
        assert_eq!(rule.cap, Some((3, DAY)));
        let miami = chrono_tz::America::New_York;
        let hours = rule.hours();
        let at = |h, m| {
            miami
                .with_ymd_and_hms(2026, 12, 2, h, m, 0)
                .unwrap()
                .with_timezone(&Utc)
        };
        assert!(hours.is_open(miami, at(19, 59)));
        assert!(!hours.is_open(miami, at(20, 0)));
        assert!(!hours.is_open(miami, at(7, 59)));
        assert_eq!(
            hours.next_open(miami, at(20, 30)),
            Some(
                miami
                    .with_ymd_and_hms(2026, 12, 3, 8, 0, 0)
                    .unwrap()
                    .with_timezone(&Utc)
            )
        );
    }

    #[test]
    fn rhode_island_has_no_sunday_window() {
        let rule = STATE_RULES.iter().find(|r| r.state == "RI").unwrap();
        assert!(rule.hours().windows().iter().all(|w| w.day_of_week != 0));
    }
}
