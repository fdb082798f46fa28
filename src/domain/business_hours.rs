//! Calling windows of a campaign: weekly wall-clock windows (`business_hours[]`)
//! evaluated in the campaign's IANA time zone, including windows that run past
//! midnight and the odd instants produced by daylight-saving changes. Everything
//! here is pure: the current instant is always passed in.

use std::fmt;

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveTime, Offset, TimeDelta, TimeZone, Timelike,
    Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const MINUTES_PER_DAY: u16 = 24 * 60;

/// How far ahead `next_open` looks, in local days. One week is not enough: a
/// window that lies entirely inside a spring-forward gap does not occur that
/// week, so its next occurrence can be up to two weeks away.
const SEARCH_DAYS: i64 = 15;

/// Granularity of the scan for UTC-offset changes. A change is only missed if
/// the offset changes and changes back within one step, which no real zone does.
const TRANSITION_SCAN_STEP_SECS: i64 = 3600;

/// Why a business-hours entry was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusinessHoursError {
    #[error("invalid time \"{value}\": expected HH:MM")]
    InvalidTime { value: String },
    #[error("invalid day of week {day}: expected 0 (sunday) to 6 (saturday)")]
    InvalidDay { day: u8 },
    #[error("empty window: start and end are the same time")]
    EmptyWindow,
    #[error("24:00 is only allowed as an end time")]
    StartAt24,
}

/// A local wall-clock time of day, in minutes since midnight. 1440 ("24:00")
/// only ever appears as a window end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WallTime(u16);

impl WallTime {
    /// Parses a window start: "HH:MM" from 00:00 to 23:59.
    pub fn parse_start(s: &str) -> Result<Self, BusinessHoursError> {
        let t = Self::parse_end(s)?;
        if t.0 == MINUTES_PER_DAY {
            return Err(BusinessHoursError::StartAt24);
        }
        Ok(t)
    }

    /// Parses a window end: "HH:MM" from 00:00 to 23:59, or "24:00".
    pub fn parse_end(s: &str) -> Result<Self, BusinessHoursError> {
        let invalid = || BusinessHoursError::InvalidTime {
            value: s.to_owned(),
        };
        let b = s.as_bytes();
        if b.len() != 5 || b[2] != b':' {
            return Err(invalid());
        }
        let two_digits = |hi: u8, lo: u8| -> Option<u16> {
            (hi.is_ascii_digit() && lo.is_ascii_digit())
                .then(|| u16::from(hi - b'0') * 10 + u16::from(lo - b'0'))
        };
        let hours = two_digits(b[0], b[1]).ok_or_else(invalid)?;
        let minutes = two_digits(b[3], b[4]).ok_or_else(invalid)?;
        match (hours, minutes) {
            (24, 0) => Ok(Self(MINUTES_PER_DAY)),
            (0..=23, 0..=59) => Ok(Self(hours * 60 + minutes)),
            _ => Err(invalid()),
        }
    }

    /// The time `minutes` after local midnight (0 to 1440, "24:00").
    pub fn from_minutes(minutes: u16) -> Result<Self, BusinessHoursError> {
        if minutes > MINUTES_PER_DAY {
            return Err(BusinessHoursError::InvalidTime {
                value: format!("{minutes} minutes"),
            });
        }
        Ok(Self(minutes))
    }

    /// Minutes since local midnight (0..=1440).
    pub fn minutes(self) -> u16 {
        self.0
    }
}

impl fmt::Display for WallTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl Serialize for WallTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WallTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = WallTime;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a time of day as \"HH:MM\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<WallTime, E> {
                // Whether 24:00 is acceptable depends on start vs end, which only
                // the enclosing window knows.
                WallTime::parse_end(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// One weekly calling window. `end` is exclusive; `end < start` means the
/// window runs past midnight into the next day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawBusinessWindow")]
pub struct BusinessWindow {
    /// 0 = Sunday … 6 = Saturday.
    pub day_of_week: u8,
    pub start: WallTime,
    pub end: WallTime,
}

/// Unvalidated wire shape, so that deserialization goes through `BusinessWindow::new`.
#[derive(Deserialize)]
struct RawBusinessWindow {
    day_of_week: u8,
    start: WallTime,
    end: WallTime,
}

impl TryFrom<RawBusinessWindow> for BusinessWindow {
    type Error = BusinessHoursError;

    fn try_from(raw: RawBusinessWindow) -> Result<Self, Self::Error> {
        Self::new(raw.day_of_week, raw.start, raw.end)
    }
}

impl BusinessWindow {
    pub fn new(
        day_of_week: u8,
        start: WallTime,
        end: WallTime,
    ) -> Result<Self, BusinessHoursError> {
        if day_of_week > 6 {
            return Err(BusinessHoursError::InvalidDay { day: day_of_week });
        }
        if start.0 >= MINUTES_PER_DAY {
            return Err(BusinessHoursError::StartAt24);
        }
        if start == end {
            return Err(BusinessHoursError::EmptyWindow);
        }
        Ok(Self {
            day_of_week,
            start,
            end,
        })
    }

    /// True when the window ends on the following day.
    pub fn crosses_midnight(&self) -> bool {
        self.end < self.start
    }
}

/// The weekly calling windows of a campaign; no windows means open 24×7.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BusinessHours {
    windows: Vec<BusinessWindow>,
}

impl BusinessHours {
    pub fn new(windows: Vec<BusinessWindow>) -> Self {
        Self { windows }
    }

    pub fn windows(&self) -> &[BusinessWindow] {
        &self.windows
    }

    pub fn is_always_open(&self) -> bool {
        self.windows.is_empty()
    }

    /// Whether calls may be placed at `at`, judged by the wall clock in `tz`.
    pub fn is_open(&self, tz: Tz, at: DateTime<Utc>) -> bool {
        if self.is_always_open() {
            return true;
        }
        let local = at.with_timezone(&tz);
        let weekday = weekday_from_sunday(local.date_naive());
        // Seconds are deliberately dropped: windows have minute resolution, so
        // 23:59:59 is still inside a window ending at 24:00.
        let minute = u16::try_from(local.hour() * 60 + local.minute()).unwrap_or(0);
        self.is_open_at_wall(weekday, minute)
    }

    /// Earliest instant >= `at` at which `is_open` is true; `at` itself when open now.
    ///
    /// Looks at most 15 local days ahead and returns `None` if nothing opens in
    /// that range (only possible when no window can ever occur).
    pub fn next_open(&self, tz: Tz, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.is_open(tz, at) {
            return Some(at);
        }
        // Openness only flips from closed to open when the local clock reaches a
        // window start, or when the clock jumps (DST): a spring-forward jump can
        // land inside a window whose start was skipped, and a fall-back jump can
        // re-enter a window that had already closed. So those instants are the
        // only candidates.
        let horizon = at
            .checked_add_signed(TimeDelta::days(SEARCH_DAYS + 1))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut candidates = offset_transitions(tz, at, horizon);

        let today = at.with_timezone(&tz).date_naive();
        // Starting a day early catches the second occurrence of a start time
        // repeated by a fall-back just after local midnight.
        for day_offset in -1..=SEARCH_DAYS {
            let Some(date) = today.checked_add_signed(TimeDelta::days(day_offset)) else {
                continue;
            };
            let weekday = weekday_from_sunday(date);
            for window in self.windows.iter().filter(|w| w.day_of_week == weekday) {
                let Some(start) = wall_time_to_naive(window.start) else {
                    continue;
                };
                match tz.from_local_datetime(&date.and_time(start)) {
                    LocalResult::Single(t) => candidates.push(t.with_timezone(&Utc)),
                    // Both occurrences: the later one still opens the window
                    // when `at` falls between them.
                    LocalResult::Ambiguous(first, second) => {
                        candidates.push(first.with_timezone(&Utc));
                        candidates.push(second.with_timezone(&Utc));
                    }
                    // A start inside a spring-forward gap opens at the end of the
                    // gap, which is an offset transition already in `candidates`.
                    LocalResult::None => {}
                }
            }
        }

        candidates
            .into_iter()
            .filter(|&c| c >= at && self.is_open(tz, c))
            .min()
    }

    fn is_open_at_wall(&self, weekday: u8, minute: u16) -> bool {
        let previous_day = (weekday + 6) % 7;
        self.windows.iter().any(|w| {
            if w.crosses_midnight() {
                (w.day_of_week == weekday && minute >= w.start.0)
                    || (w.day_of_week == previous_day && minute < w.end.0)
            } else {
                w.day_of_week == weekday && w.start.0 <= minute && minute < w.end.0
            }
        })
    }
}

fn weekday_from_sunday(date: NaiveDate) -> u8 {
    // num_days_from_sunday is always 0..=6.
    u8::try_from(date.weekday().num_days_from_sunday()).unwrap_or(0)
}

fn wall_time_to_naive(t: WallTime) -> Option<NaiveTime> {
    NaiveTime::from_hms_opt(u32::from(t.0 / 60), u32::from(t.0 % 60), 0)
}

fn utc_offset_at(tz: Tz, timestamp: i64) -> Option<i32> {
    let utc = DateTime::<Utc>::from_timestamp(timestamp, 0)?;
    Some(
        tz.offset_from_utc_datetime(&utc.naive_utc())
            .fix()
            .local_minus_utc(),
    )
}

/// Instants in `[from, to]` at which the UTC offset of `tz` changes, each being
/// the first second that has the new offset. chrono-tz does not expose its
/// transition table, so this samples the offset and bisects where it differs.
fn offset_transitions(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut found = Vec::new();
    let end = to.timestamp();
    let mut prev = from.timestamp();
    let Some(mut prev_offset) = utc_offset_at(tz, prev) else {
        return found;
    };
    while prev < end {
        let next = prev.saturating_add(TRANSITION_SCAN_STEP_SECS).min(end);
        let Some(next_offset) = utc_offset_at(tz, next) else {
            break;
        };
        if next_offset != prev_offset {
            // Invariant: offset(lo) == prev_offset, offset(hi) != prev_offset.
            let (mut lo, mut hi) = (prev, next);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if utc_offset_at(tz, mid) == Some(prev_offset) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            if let Some(t) = DateTime::<Utc>::from_timestamp(hi, 0) {
                found.push(t);
            }
        }
        prev = next;
        prev_offset = next_offset;
    }
    found
}

#[cfg(test)]
mod tests;
