//! The law's calling rules, decided once: whether a call may start now, and if not, every rule
//! that holds it and when each stops holding. The scheduler admits by `Rules::holds` being
//! empty and the explain routes show the same list, so the two cannot disagree.
//!
//! The rules read the called party's clock: recipient hours (the campaign's `recipient_hours`,
//! 08:00–21:00 every day by default, the federal TCPA window of 47 CFR 64.1200(c)(1)) must hold
//! in every zone the number may ring in (the intersection), the rules of the state of a +1
//! number's area code narrow them further, restricted periods (holidays, in the campaign's
//! zone) stop everything, and frequency caps count attempts to the number over sliding
//! windows.

pub mod caps;
pub mod dnc;
pub mod states;
pub mod zones;

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;

pub use self::caps::{Cap, CapSource, FrequencyCap, PriorAttempt};
use self::states::StateRule;
use self::zones::ZoneMap;
use super::business_hours::{BusinessHours, BusinessWindow, WallTime};

/// Why a call is not dialed now; the codes are the API's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HoldCode {
    CampaignNotRunning,
    OutsideBusinessHours,
    OutsideRecipientHours,
    RestrictedPeriod,
    CampaignLimit,
    GlobalLimit,
    RateLimit,
    Backoff,
    DoNotCall,
    FrequencyCap,
    AttemptsExhausted,
}

impl HoldCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CampaignNotRunning => "campaign_not_running",
            Self::OutsideBusinessHours => "outside_business_hours",
            Self::OutsideRecipientHours => "outside_recipient_hours",
            Self::RestrictedPeriod => "restricted_period",
            Self::CampaignLimit => "campaign_limit",
            Self::GlobalLimit => "global_limit",
            Self::RateLimit => "rate_limit",
            Self::Backoff => "backoff",
            Self::DoNotCall => "do_not_call",
            Self::FrequencyCap => "frequency_cap",
            Self::AttemptsExhausted => "attempts_exhausted",
        }
    }
}

/// One rule holding a call: what, why, and the next instant it stops holding, when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub code: HoldCode,
    pub message: String,
    pub until: Option<DateTime<Utc>>,
}

/// Days on which no attempt starts, `start` to `end` inclusive, in the campaign's zone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RestrictedPeriod {
    pub name: String,
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl RestrictedPeriod {
    /// The instant the period ends (the start of the day after `end`), when it holds `at`.
    fn holding(&self, tz: Tz, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let today = at.with_timezone(&tz).date_naive();
        if today < self.start || today > self.end {
            return None;
        }
        let next = self.end.succ_opt()?;
        // A day that starts inside a DST gap starts at the gap's end.
        Some(
            next.and_hms_opt(0, 0, 0)
                .and_then(|midnight| midnight.and_local_timezone(tz).earliest())
                .map_or(at + TimeDelta::days(1), |t| t.with_timezone(&Utc)),
        )
    }
}

/// Recipient hours when a campaign gives none: every day 08:00–21:00.
pub fn default_recipient_hours() -> BusinessHours {
    let windows = (0..7u8)
        .filter_map(|day| {
            let start = WallTime::from_minutes(8 * 60).ok()?;
            let end = WallTime::from_minutes(21 * 60).ok()?;
            BusinessWindow::new(day, start, end).ok()
        })
        .collect();
    BusinessHours::new(windows)
}

/// Everything the time-based rules need about one call and its campaign.
#[derive(Debug, Clone)]
pub struct CallRules<'a> {
    pub campaign_zone: Tz,
    pub business_hours: &'a BusinessHours,
    pub recipient_hours: &'a BusinessHours,
    /// Where the number rings: its target's `time_zone`, or its number range's zones; empty
    /// means the campaign's zone.
    pub recipient_zones: &'a [Tz],
    /// The rule of the state of a +1 number's area code, when state rules are on.
    pub state: Option<&'static StateRule>,
    pub restricted: &'a [RestrictedPeriod],
    /// The frequency caps that apply, and the earlier attempts to the number they count.
    pub caps: &'a [Cap],
    pub prior: &'a [PriorAttempt],
}

/// The deployment's calling-rule settings, as the dialer and the explain routes apply them.
#[derive(Debug, Clone)]
pub struct Compliance {
    /// Whether the rules of a +1 number's state apply.
    pub state_rules: bool,
    /// The number-to-zone map with the deployment's overrides; `None`: the built-in one.
    zones: Option<Arc<ZoneMap>>,
    /// Attempts to one number across every campaign.
    pub max_attempts_per_number: Option<FrequencyCap>,
}

impl Default for Compliance {
    fn default() -> Self {
        Self {
            state_rules: true,
            zones: None,
            max_attempts_per_number: None,
        }
    }
}

impl Compliance {
    pub fn new(
        state_rules: bool,
        zones: Option<ZoneMap>,
        max_attempts_per_number: Option<FrequencyCap>,
    ) -> Self {
        Self {
            state_rules,
            zones: zones.map(Arc::new),
            max_attempts_per_number,
        }
    }

    pub fn zones(&self) -> &ZoneMap {
        self.zones.as_deref().unwrap_or_else(|| ZoneMap::builtin())
    }

    /// The state rule that applies to a number, if state rules are on.
    pub fn state_rule(&self, e164: &str) -> Option<&'static StateRule> {
        self.state_rules.then(|| states::rule_for(e164)).flatten()
    }

    /// The caps on a call of a campaign with `recipient_limits` to a number under `state`.
    pub fn caps(
        &self,
        recipient_limits: &[FrequencyCap],
        state: Option<&'static StateRule>,
    ) -> Vec<Cap> {
        let deployment = self.max_attempts_per_number.map(|limit| Cap {
            limit,
            source: CapSource::Deployment,
        });
        let campaign = recipient_limits.iter().map(|&limit| Cap {
            limit,
            source: CapSource::Campaign,
        });
        let state = state.and_then(|rule| {
            let (max_attempts, per) = rule.cap?;
            Some(Cap {
                limit: FrequencyCap { max_attempts, per },
                source: CapSource::State(rule),
            })
        });
        deployment
            .into_iter()
            .chain(campaign)
            .chain(state)
            .collect()
    }
}

/// How far ahead `next_dialable` looks before giving up.
const HORIZON_DAYS: i64 = 400;
/// Rounds of `next_dialable` before giving up (each round moves past one hold).
const MAX_ROUNDS: usize = 256;

impl CallRules<'_> {
    fn zones(&self) -> Vec<Tz> {
        if self.recipient_zones.is_empty() {
            vec![self.campaign_zone]
        } else {
            self.recipient_zones.to_vec()
        }
    }

    /// Every time-based rule holding the call at `now` (empty: it may start).
    pub fn holds(&self, now: DateTime<Utc>) -> Vec<Hold> {
        let mut holds = Vec::new();
        if !self.business_hours.is_open(self.campaign_zone, now) {
            holds.push(Hold {
                code: HoldCode::OutsideBusinessHours,
                message: format!(
                    "outside the campaign's business hours ({})",
                    self.campaign_zone
                ),
                until: self.business_hours.next_open(self.campaign_zone, now),
            });
        }
        let zones = self.zones();
        if let Some(until) = closed_until(self.recipient_hours, &zones, now) {
            holds.push(Hold {
                code: HoldCode::OutsideRecipientHours,
                message: format!("outside the recipient's hours in {}", zone_names(&zones)),
                until,
            });
        }
        if let Some(rule) = self.state {
            if let Some(until) = closed_until(&rule.hours(), &zones, now) {
                holds.push(Hold {
                    code: HoldCode::OutsideRecipientHours,
                    message: format!(
                        "outside {}'s calling hours ({}) in {}",
                        rule.name,
                        rule.statute,
                        zone_names(&zones)
                    ),
                    until,
                });
            }
        }
        for period in self.restricted {
            if let Some(until) = period.holding(self.campaign_zone, now) {
                holds.push(Hold {
                    code: HoldCode::RestrictedPeriod,
                    message: format!(
                        "restricted period {:?} ({} to {})",
                        period.name, period.start, period.end
                    ),
                    until: Some(until),
                });
            }
        }
        for cap in self.caps {
            if let Some(until) = cap.holding(self.prior, now) {
                holds.push(Hold {
                    code: HoldCode::FrequencyCap,
                    message: format!("{} is reached", cap.describe()),
                    until: Some(until),
                });
            }
        }
        holds
    }

    /// The first instant at or after `now` when no time-based rule holds the call; `None`
    /// when none comes within about a year.
    pub fn next_dialable(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let horizon = now + TimeDelta::days(HORIZON_DAYS);
        let mut at = now;
        for _ in 0..MAX_ROUNDS {
            let holds = self.holds(at);
            if holds.is_empty() {
                return Some(at);
            }
            // Every hold must be gone: the latest of their ends is the next candidate.
            let mut next = at;
            for hold in &holds {
                next = next.max(hold.until?);
            }
            if next <= at || next > horizon {
                return None;
            }
            at = next;
        }
        None
    }
}

fn zone_names(zones: &[Tz]) -> String {
    zones
        .iter()
        .map(|z| z.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// When `hours` are closed at `now` in any of `zones`: `Some` of the instant they are open in
/// all of them (`Some(None)` when that never comes).
fn closed_until(
    hours: &BusinessHours,
    zones: &[Tz],
    now: DateTime<Utc>,
) -> Option<Option<DateTime<Utc>>> {
    if zones.iter().all(|&zone| hours.is_open(zone, now)) {
        return None;
    }
    Some(open_everywhere(hours, zones, now))
}

/// The first instant at or after `at` when `hours` are open in every zone.
fn open_everywhere(
    hours: &BusinessHours,
    zones: &[Tz],
    at: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let horizon = at + TimeDelta::days(HORIZON_DAYS);
    let mut candidate = at;
    for _ in 0..MAX_ROUNDS {
        let mut moved = false;
        for &zone in zones {
            let open = hours.next_open(zone, candidate)?;
            if open > candidate {
                candidate = open;
                moved = true;
            }
        }
        if !moved {
            return Some(candidate);
        }
        if candidate > horizon {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;
    use chrono_tz::{America, Pacific};

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn local(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        tz.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn rules<'a>(
        zones: &'a [Tz],
        business: &'a BusinessHours,
        recipient: &'a BusinessHours,
    ) -> CallRules<'a> {
        CallRules {
            campaign_zone: America::New_York,
            business_hours: business,
            recipient_hours: recipient,
            recipient_zones: zones,
            state: None,
            restricted: &[],
            caps: &[],
            prior: &[],
        }
    }

    #[test]
    fn honolulu_waits_for_its_own_morning() {
        // The case: a New York campaign open 24×7 rings Honolulu at 4:00 in winter.
        let always = BusinessHours::default();
        let recipient = default_recipient_hours();
        let zones = [Pacific::Honolulu];
        let r = rules(&zones, &always, &recipient);
        let now = local(Pacific::Honolulu, 2026, 12, 2, 4, 0);
        let holds = r.holds(now);
        assert_eq!(holds.len(), 1);
        assert_eq!(holds[0].code, HoldCode::OutsideRecipientHours);
        let opens = local(Pacific::Honolulu, 2026, 12, 2, 8, 0);
        assert_eq!(holds[0].until, Some(opens));
        assert_eq!(r.next_dialable(now), Some(opens));
        assert!(r.holds(opens).is_empty());
    }

    #[test]
    fn recipient_hours_follow_the_recipients_dst() {
        let always = BusinessHours::default();
        let recipient = default_recipient_hours();
        let zones = [America::Chicago];
        let r = rules(&zones, &always, &recipient);
        // The night before the spring change (2026-03-08) and the morning after.
        let night = local(America::Chicago, 2026, 3, 7, 22, 0);
        assert_eq!(
            r.next_dialable(night),
            Some(local(America::Chicago, 2026, 3, 8, 8, 0))
        );
        // In summer 8:00 CDT is 13:00 UTC; in winter 8:00 CST is 14:00 UTC.
        assert_eq!(
            r.next_dialable(utc(2026, 7, 1, 10, 0)),
            Some(utc(2026, 7, 1, 13, 0))
        );
        assert_eq!(
            r.next_dialable(utc(2026, 12, 1, 10, 0)),
            Some(utc(2026, 12, 1, 14, 0))
        );
    }

    #[test]
    fn zones_without_dst_keep_their_offset() {
        let always = BusinessHours::default();
        let recipient = default_recipient_hours();
        let zones = [America::Phoenix];
        let r = rules(&zones, &always, &recipient);
        // 8:00 MST is 15:00 UTC in July and in December alike.
        assert_eq!(
            r.next_dialable(utc(2026, 7, 1, 10, 0)),
            Some(utc(2026, 7, 1, 15, 0))
        );
        assert_eq!(
            r.next_dialable(utc(2026, 12, 1, 10, 0)),
            Some(utc(2026, 12, 1, 15, 0))
        );
    }

    #[test]
    fn a_number_in_two_zones_waits_for_both() {
        let always = BusinessHours::default();
        let recipient = default_recipient_hours();
        let zones = [America::Boise, America::Los_Angeles];
        let r = rules(&zones, &always, &recipient);
        // 7:30 in Boise is 6:30 in Los Angeles: both must reach 8:00, so 9:00 in Boise.
        let now = local(America::Boise, 2026, 12, 2, 7, 30);
        assert_eq!(
            r.next_dialable(now),
            Some(local(America::Los_Angeles, 2026, 12, 2, 8, 0))
        );
        // 20:30 in Boise is 19:30 in Los Angeles: Boise has closed, so the next morning.
        let evening = local(America::Boise, 2026, 12, 2, 21, 30);
        let holds = r.holds(evening);
        assert_eq!(holds[0].code, HoldCode::OutsideRecipientHours);
        assert_eq!(
            holds[0].until,
            Some(local(America::Los_Angeles, 2026, 12, 3, 8, 0))
        );
    }

    #[test]
    fn no_zone_means_the_campaigns_zone() {
        let always = BusinessHours::default();
        let recipient = default_recipient_hours();
        let r = rules(&[], &always, &recipient);
        let now = local(America::New_York, 2026, 12, 2, 7, 0);
        assert_eq!(
            r.next_dialable(now),
            Some(local(America::New_York, 2026, 12, 2, 8, 0))
        );
    }

    #[test]
    fn state_hours_narrow_recipient_hours() {
        let always = BusinessHours::default();
        let recipient = default_recipient_hours();
        let zones = [America::New_York];
        let mut r = rules(&zones, &always, &recipient);
        r.state = states::rule_for("+13055550100");
        let evening = local(America::New_York, 2026, 12, 2, 20, 30);
        let holds = r.holds(evening);
        assert_eq!(holds.len(), 1);
        assert_eq!(holds[0].code, HoldCode::OutsideRecipientHours);
        assert!(holds[0].message.contains("Florida"), "{}", holds[0].message);
        assert_eq!(
            r.next_dialable(evening),
            Some(local(America::New_York, 2026, 12, 3, 8, 0))
        );
    }

    #[test]
    fn restricted_periods_stop_every_call_until_their_last_day_ends() {
        let always = BusinessHours::default();
        let open = BusinessHours::default();
        let holidays = [RestrictedPeriod {
            name: "winter break".into(),
            start: NaiveDate::from_ymd_opt(2026, 12, 24).unwrap(),
            end: NaiveDate::from_ymd_opt(2026, 12, 26).unwrap(),
        }];
        let zones = [America::New_York];
        let mut r = rules(&zones, &always, &open);
        r.restricted = &holidays;
        let during = local(America::New_York, 2026, 12, 25, 12, 0);
        let holds = r.holds(during);
        assert_eq!(holds[0].code, HoldCode::RestrictedPeriod);
        let after = local(America::New_York, 2026, 12, 27, 0, 0);
        assert_eq!(holds[0].until, Some(after));
        assert_eq!(r.next_dialable(during), Some(after));
        assert!(r
            .holds(local(America::New_York, 2026, 12, 23, 23, 59))
            .is_empty());
    }

    #[test]
    fn all_holds_are_named_and_the_call_waits_for_the_last() {
        let business = BusinessHours::new(vec![BusinessWindow::new(
            3,
            WallTime::parse_start("10:00").unwrap(),
            WallTime::parse_end("18:00").unwrap(),
        )
        .unwrap()]);
        let recipient = default_recipient_hours();
        let zones = [Pacific::Honolulu];
        let r = rules(&zones, &business, &recipient);
        // Wednesday 09:00 in New York is 04:00 in Honolulu: both hold.
        let now = local(America::New_York, 2026, 12, 2, 9, 0);
        let codes: Vec<_> = r.holds(now).iter().map(|h| h.code).collect();
        assert_eq!(
            codes,
            vec![
                HoldCode::OutsideBusinessHours,
                HoldCode::OutsideRecipientHours
            ]
        );
        // Business hours open at 10:00 New York (05:00 Honolulu); Honolulu opens at 08:00,
        // 13:00 in New York, still inside business hours.
        assert_eq!(
            r.next_dialable(now),
            Some(local(Pacific::Honolulu, 2026, 12, 2, 8, 0))
        );
    }

    #[test]
    fn a_reached_cap_holds_until_its_oldest_attempt_leaves_the_window_and_hours_still_apply() {
        let always = BusinessHours::default();
        let recipient = default_recipient_hours();
        let zones = [America::New_York];
        let florida = states::rule_for("+13055550100").unwrap();
        let caps = Compliance::default().caps(&[], Some(florida));
        assert_eq!(caps.len(), 1, "Florida caps attempts per campaign");
        // Three attempts today from 12:00; the first leaves the 24 h window tomorrow at 12:00.
        let noon = local(America::New_York, 2026, 12, 2, 12, 0);
        let prior: Vec<PriorAttempt> = (0..3)
            .map(|hour| PriorAttempt {
                at: noon + TimeDelta::hours(hour),
                same_campaign: true,
            })
            .collect();
        let r = CallRules {
            caps: &caps,
            prior: &prior,
            ..rules(&zones, &always, &recipient)
        };
        let now = local(America::New_York, 2026, 12, 2, 16, 0);
        let holds = r.holds(now);
        assert_eq!(holds.len(), 1);
        assert_eq!(holds[0].code, HoldCode::FrequencyCap);
        assert!(holds[0].message.contains("Florida"), "{}", holds[0].message);
        assert_eq!(holds[0].until, Some(noon + TimeDelta::days(1)));
        assert_eq!(r.next_dialable(now), Some(noon + TimeDelta::days(1)));
        // Other campaigns' attempts do not count toward a state's per-campaign cap.
        let elsewhere: Vec<PriorAttempt> = prior
            .iter()
            .map(|a| PriorAttempt {
                same_campaign: false,
                ..*a
            })
            .collect();
        let r = CallRules {
            prior: &elsewhere,
            ..r
        };
        assert!(r.holds(now).is_empty());
        // With state rules off, no state cap.
        let off = Compliance {
            state_rules: false,
            ..Compliance::default()
        };
        assert_eq!(off.state_rule("+13055550100"), None);
    }

    #[test]
    fn codes_are_the_apis() {
        assert_eq!(
            HoldCode::OutsideRecipientHours.as_str(),
            "outside_recipient_hours"
        );
        assert_eq!(HoldCode::DoNotCall.as_str(), "do_not_call");
        assert_eq!(HoldCode::FrequencyCap.as_str(), "frequency_cap");
    }
}
