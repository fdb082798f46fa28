//! Frequency caps: how many attempts one number may get within a sliding window, counted over
//! the deployment (`compliance.max_attempts_per_number`), over one campaign (its
//! `recipient_limits`), or by a state's law (per campaign, as the statutes count calls "on the
//! same subject").

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::states::StateRule;
use crate::domain::duration::{format_go_duration, parse_go_duration};

/// The shortest and longest window a cap may count over. The longest also bounds how long
/// the store keeps attempt times per number.
pub const MIN_WINDOW: Duration = Duration::from_secs(3600);
pub const MAX_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// At most `max_attempts` attempts to one number within any `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrequencyCap {
    pub max_attempts: u32,
    #[serde(with = "window")]
    pub per: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    #[error("must be a duration such as \"24h\" or \"7d\"")]
    Unreadable,
    #[error("must be from 1h to 30d")]
    OutOfRange,
    #[error("max_attempts must be at least 1")]
    NoAttempts,
}

/// Reads a window: a Go duration ("24h", "90m") or whole days ("7d").
pub fn parse_window(text: &str) -> Result<Duration, CapError> {
    let text = text.trim();
    let parsed = match text.strip_suffix('d') {
        Some(days) if !days.is_empty() && days.bytes().all(|b| b.is_ascii_digit()) => days
            .parse::<u64>()
            .ok()
            .and_then(|days| days.checked_mul(24 * 3600))
            .map(Duration::from_secs),
        _ => parse_go_duration(text).ok(),
    };
    let window = parsed.ok_or(CapError::Unreadable)?;
    if !(MIN_WINDOW..=MAX_WINDOW).contains(&window) {
        return Err(CapError::OutOfRange);
    }
    Ok(window)
}

/// Prints a window as it is read back: whole days as "7d", anything else as Go prints it.
pub fn format_window(window: Duration) -> String {
    const DAY: u64 = 24 * 3600;
    if window.subsec_nanos() == 0 && window.as_secs() % DAY == 0 && window.as_secs() > 0 {
        format!("{}d", window.as_secs() / DAY)
    } else {
        format_go_duration(window)
    }
}

mod window {
    use super::*;

    pub fn serialize<S: Serializer>(window: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_window(*window))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse_window(&text).map_err(serde::de::Error::custom)
    }
}

impl FrequencyCap {
    pub fn new(max_attempts: u32, per: Duration) -> Result<Self, CapError> {
        if max_attempts == 0 {
            return Err(CapError::NoAttempts);
        }
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&per) {
            return Err(CapError::OutOfRange);
        }
        Ok(Self { max_attempts, per })
    }

    /// When the cap holds at `now` given the start times of earlier attempts to the number:
    /// the instant enough of them have left the window.
    pub fn holding(
        &self,
        attempts: impl IntoIterator<Item = DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let per = TimeDelta::from_std(self.per).ok()?;
        let mut recent: Vec<DateTime<Utc>> = attempts
            .into_iter()
            .filter(|&at| at > now - per && at <= now)
            .collect();
        let max = usize::try_from(self.max_attempts).unwrap_or(usize::MAX);
        if recent.len() < max {
            return None;
        }
        recent.sort();
        // With `len - max + 1` of them gone, one more attempt fits.
        recent.get(recent.len() - max).map(|&oldest| oldest + per)
    }
}

impl fmt::Display for FrequencyCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} attempts per {}",
            self.max_attempts,
            format_window(self.per)
        )
    }
}

/// An earlier attempt to the same number, as the caps count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriorAttempt {
    pub at: DateTime<Utc>,
    /// Whether it was an attempt of the campaign being checked.
    pub same_campaign: bool,
}

/// Who set a cap, which also says what it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapSource {
    /// The deployment's: attempts of every campaign.
    Deployment,
    /// The campaign's `recipient_limits`: its own attempts.
    Campaign,
    /// A state's law: the campaign's own attempts.
    State(&'static StateRule),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub limit: FrequencyCap,
    pub source: CapSource,
}

impl Cap {
    fn counts(&self, attempt: &PriorAttempt) -> bool {
        matches!(self.source, CapSource::Deployment) || attempt.same_campaign
    }

    /// When this cap holds at `now`, the instant it stops.
    pub fn holding(&self, prior: &[PriorAttempt], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.limit.holding(
            prior
                .iter()
                .filter(|attempt| self.counts(attempt))
                .map(|a| a.at),
            now,
        )
    }

    pub fn describe(&self) -> String {
        match self.source {
            CapSource::Deployment => {
                format!("the deployment's cap of {} to a number", self.limit)
            }
            CapSource::Campaign => format!("the campaign's limit of {} to a number", self.limit),
            CapSource::State(rule) => format!(
                "{}'s cap of {} to a number per campaign ({})",
                rule.name, self.limit, rule.statute
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, 0, 0).unwrap()
    }

    #[test]
    fn caps_free_a_slot_when_the_oldest_counted_attempt_leaves_the_window() {
        let cap = FrequencyCap::new(3, Duration::from_secs(24 * 3600)).unwrap();
        let now = utc(2026, 12, 2, 12);
        let attempts = [
            utc(2026, 12, 1, 11), // outside the window
            utc(2026, 12, 1, 13),
            utc(2026, 12, 2, 9),
            utc(2026, 12, 2, 11),
        ];
        assert_eq!(cap.holding(attempts, now), Some(utc(2026, 12, 2, 13)));
        assert_eq!(cap.holding(attempts[..3].to_vec(), now), None);
    }

    #[test]
    fn a_deployment_cap_counts_every_campaign_and_a_campaign_cap_its_own() {
        let limit = FrequencyCap::new(1, Duration::from_secs(3600)).unwrap();
        let now = utc(2026, 12, 2, 12);
        let elsewhere = [PriorAttempt {
            at: now - TimeDelta::minutes(10),
            same_campaign: false,
        }];
        let deployment = Cap {
            limit,
            source: CapSource::Deployment,
        };
        let campaign = Cap {
            limit,
            source: CapSource::Campaign,
        };
        assert_eq!(
            deployment.holding(&elsewhere, now),
            Some(now + TimeDelta::minutes(50))
        );
        assert_eq!(campaign.holding(&elsewhere, now), None);
    }

    #[test]
    fn windows_read_hours_and_days_within_bounds() {
        assert_eq!(parse_window("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_window("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_window("30d"), Ok(MAX_WINDOW));
        assert_eq!(parse_window("1h"), Ok(MIN_WINDOW));
        assert_eq!(parse_window("59m"), Err(CapError::OutOfRange));
        assert_eq!(parse_window("31d"), Err(CapError::OutOfRange));
        for bad in ["", "d", "3x", "-1h", "1.5d"] {
            assert_eq!(parse_window(bad), Err(CapError::Unreadable), "{bad:?}");
        }
        assert_eq!(format_window(Duration::from_secs(86_400)), "1d");
        assert_eq!(format_window(Duration::from_secs(5400)), "1h30m0s");
        let cap: FrequencyCap =
            serde_json::from_str(r#"{"max_attempts": 2, "per": "36h"}"#).unwrap();
        assert_eq!(cap.per, Duration::from_secs(36 * 3600));
        assert_eq!(
            serde_json::to_value(cap).unwrap(),
            serde_json::json!({"max_attempts": 2, "per": "36h0m0s"})
        );
    }
}
