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
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::Australia::Sydney;
    use chrono_tz::Europe::London;

    const SUN: u8 = 0;
    const MON: u8 = 1;
    const FRI: u8 = 5;
    const SAT: u8 = 6;

    fn window(day: u8, start: &str, end: &str) -> BusinessWindow {
        BusinessWindow::new(
            day,
            WallTime::parse_start(start).unwrap(),
            WallTime::parse_end(end).unwrap(),
        )
        .unwrap()
    }

    fn hours(windows: &[(u8, &str, &str)]) -> BusinessHours {
        BusinessHours::new(windows.iter().map(|&(d, s, e)| window(d, s, e)).collect())
    }

    /// Unambiguous local wall time in `tz` ("YYYY-MM-DD HH:MM:SS") as UTC.
    fn local(tz: Tz, s: &str) -> DateTime<Utc> {
        let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
        tz.from_local_datetime(&naive)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    // 2026-03-02 is a Monday; 2026-03-06 a Friday.

    #[test]
    fn weekday_window_start_inclusive_end_exclusive() {
        let h = hours(&[(MON, "09:00", "17:00")]);
        assert!(!h.is_open(New_York, local(New_York, "2026-03-02 08:59:59")));
        assert!(h.is_open(New_York, local(New_York, "2026-03-02 09:00:00")));
        assert!(h.is_open(New_York, local(New_York, "2026-03-02 16:59:59")));
        assert!(!h.is_open(New_York, local(New_York, "2026-03-02 17:00:00")));
        // Same wall time on another weekday.
        assert!(!h.is_open(New_York, local(New_York, "2026-03-03 10:00:00")));
    }

    #[test]
    fn end_at_24_00_covers_last_minute_only() {
        let h = hours(&[(MON, "20:00", "24:00")]);
        assert!(h.is_open(New_York, local(New_York, "2026-03-02 23:59:59")));
        assert!(!h.is_open(New_York, local(New_York, "2026-03-03 00:00:00")));

        let with_next_day = hours(&[(MON, "20:00", "24:00"), (2, "00:00", "01:00")]);
        assert!(with_next_day.is_open(New_York, local(New_York, "2026-03-03 00:00:00")));
        assert!(!hours(&[(MON, "20:00", "24:00")]).windows()[0].crosses_midnight());
    }

    #[test]
    fn friday_window_crossing_midnight() {
        let h = hours(&[(FRI, "22:00", "02:00")]);
        assert!(h.windows()[0].crosses_midnight());
        assert!(!h.is_open(New_York, local(New_York, "2026-03-06 21:59:00")));
        assert!(h.is_open(New_York, local(New_York, "2026-03-06 22:00:00")));
        assert!(h.is_open(New_York, local(New_York, "2026-03-06 23:59:59")));
        assert!(h.is_open(New_York, local(New_York, "2026-03-07 00:00:00")));
        assert!(h.is_open(New_York, local(New_York, "2026-03-07 01:59:00")));
        assert!(!h.is_open(New_York, local(New_York, "2026-03-07 02:00:00")));
        // The tail belongs to Saturday only, not to every early morning.
        assert!(!h.is_open(New_York, local(New_York, "2026-03-06 01:00:00")));
    }

    #[test]
    fn saturday_window_wraps_into_sunday() {
        let h = hours(&[(SAT, "23:00", "01:30")]);
        assert!(h.is_open(New_York, local(New_York, "2026-03-07 23:30:00")));
        assert!(h.is_open(New_York, local(New_York, "2026-03-08 01:29:00")));
        assert!(!h.is_open(New_York, local(New_York, "2026-03-08 01:30:00")));
        assert!(!h.is_open(New_York, local(New_York, "2026-03-07 01:00:00")));
    }

    #[test]
    fn several_windows_in_one_day() {
        let h = hours(&[(MON, "09:00", "12:00"), (MON, "13:00", "17:00")]);
        assert!(h.is_open(New_York, local(New_York, "2026-03-02 11:59:00")));
        assert!(!h.is_open(New_York, local(New_York, "2026-03-02 12:00:00")));
        assert!(!h.is_open(New_York, local(New_York, "2026-03-02 12:30:00")));
        assert!(h.is_open(New_York, local(New_York, "2026-03-02 13:00:00")));
        let at = local(New_York, "2026-03-02 12:30:00");
        assert_eq!(
            h.next_open(New_York, at),
            Some(local(New_York, "2026-03-02 13:00:00"))
        );
    }

    #[test]
    fn empty_list_is_always_open() {
        let h = BusinessHours::default();
        assert!(h.is_always_open());
        for at in [
            "2026-03-08T07:00:00Z",
            "2026-11-01T06:30:00Z",
            "2026-01-01T00:00:00Z",
        ] {
            assert!(h.is_open(New_York, utc(at)));
            assert_eq!(h.next_open(New_York, utc(at)), Some(utc(at)));
        }
        assert!(!hours(&[(MON, "09:00", "17:00")]).is_always_open());
    }

    // New York springs forward on 2026-03-08 at 07:00Z: 01:59:59 EST -> 03:00:00 EDT.

    #[test]
    fn spring_forward_window_spanning_gap() {
        let h = hours(&[(SUN, "01:00", "03:30")]);
        assert!(!h.is_open(New_York, utc("2026-03-08T05:59:59Z"))); // 00:59 EST
        assert!(h.is_open(New_York, utc("2026-03-08T06:00:00Z"))); // 01:00 EST
        assert!(h.is_open(New_York, utc("2026-03-08T06:59:59Z"))); // 01:59 EST
        assert!(h.is_open(New_York, utc("2026-03-08T07:00:00Z"))); // 03:00 EDT
        assert!(h.is_open(New_York, utc("2026-03-08T07:29:59Z"))); // 03:29 EDT
        assert!(!h.is_open(New_York, utc("2026-03-08T07:30:00Z"))); // 03:30 EDT
    }

    #[test]
    fn spring_forward_window_starting_in_gap_opens_at_gap_end() {
        let h = hours(&[(SUN, "02:30", "05:00")]);
        assert!(!h.is_open(New_York, utc("2026-03-08T06:59:59Z"))); // 01:59 EST
        assert!(h.is_open(New_York, utc("2026-03-08T07:00:00Z"))); // 03:00 EDT
        assert_eq!(
            h.next_open(New_York, utc("2026-03-08T05:00:00Z")),
            Some(utc("2026-03-08T07:00:00Z"))
        );
        // From the previous afternoon, too.
        assert_eq!(
            h.next_open(New_York, local(New_York, "2026-03-07 15:00:00")),
            Some(utc("2026-03-08T07:00:00Z"))
        );
        // A normal week opens at the wall-clock start.
        assert_eq!(
            h.next_open(New_York, local(New_York, "2026-03-14 15:00:00")),
            Some(local(New_York, "2026-03-15 02:30:00"))
        );
    }

    #[test]
    fn window_entirely_inside_gap_skips_that_week() {
        let h = hours(&[(SUN, "02:00", "02:30")]);
        assert!(!h.is_open(New_York, utc("2026-03-08T07:00:00Z")));
        assert_eq!(
            h.next_open(New_York, local(New_York, "2026-03-07 12:00:00")),
            Some(local(New_York, "2026-03-15 02:00:00"))
        );
    }

    // New York falls back on 2026-11-01 at 06:00Z: 01:59:59 EDT -> 01:00:00 EST.

    #[test]
    fn fall_back_repeated_hour_is_open_both_times() {
        let h = hours(&[(SUN, "01:00", "02:00")]);
        assert!(!h.is_open(New_York, utc("2026-11-01T04:59:59Z"))); // 00:59 EDT
        assert!(h.is_open(New_York, utc("2026-11-01T05:30:00Z"))); // 01:30 EDT
        assert!(h.is_open(New_York, utc("2026-11-01T06:30:00Z"))); // 01:30 EST
        assert!(h.is_open(New_York, utc("2026-11-01T06:59:59Z"))); // 01:59 EST
        assert!(!h.is_open(New_York, utc("2026-11-01T07:00:00Z"))); // 02:00 EST
    }

    #[test]
    fn fall_back_next_open_finds_second_occurrence() {
        // 01:00-01:45 has closed at 01:45 EDT but reopens at 01:00 EST.
        let h = hours(&[(SUN, "01:00", "01:45")]);
        let at = utc("2026-11-01T05:50:00Z"); // 01:50 EDT
        assert!(!h.is_open(New_York, at));
        assert_eq!(h.next_open(New_York, at), Some(utc("2026-11-01T06:00:00Z")));

        // A window starting inside the repeated hour: second start at 01:15 EST.
        let h = hours(&[(SUN, "01:15", "01:30")]);
        let at = utc("2026-11-01T05:40:00Z"); // 01:40 EDT
        assert_eq!(h.next_open(New_York, at), Some(utc("2026-11-01T06:15:00Z")));
    }

    #[test]
    fn london_spring_forward() {
        // 2026-03-29 01:00Z: 00:59:59 GMT -> 02:00:00 BST.
        let h = hours(&[(SUN, "00:30", "01:30")]);
        assert!(h.is_open(London, utc("2026-03-29T00:59:59Z")));
        assert!(!h.is_open(London, utc("2026-03-29T01:00:00Z")));

        let h = hours(&[(SUN, "01:15", "10:00")]);
        assert!(!h.is_open(London, utc("2026-03-29T00:59:59Z")));
        assert_eq!(
            h.next_open(London, utc("2026-03-28T12:00:00Z")),
            Some(utc("2026-03-29T01:00:00Z"))
        );
    }

    #[test]
    fn sydney_local_weekday_and_fall_back() {
        // Monday 09:00 in Sydney (AEDT, +11) is Sunday 22:00 UTC.
        let h = hours(&[(MON, "09:00", "17:00")]);
        assert!(!h.is_open(Sydney, utc("2026-03-01T21:59:59Z")));
        assert!(h.is_open(Sydney, utc("2026-03-01T22:00:00Z")));
        assert!(!h.is_open(Sydney, utc("2026-03-02T06:00:00Z"))); // Mon 17:00

        // 2026-04-05 16:00Z: 02:59:59 AEDT -> 02:00:00 AEST, 02:xx repeats.
        let h = hours(&[(SUN, "02:00", "03:00")]);
        assert!(h.is_open(Sydney, utc("2026-04-04T15:30:00Z"))); // 02:30 AEDT
        assert!(h.is_open(Sydney, utc("2026-04-04T16:30:00Z"))); // 02:30 AEST
        assert!(!h.is_open(Sydney, utc("2026-04-04T17:00:00Z"))); // 03:00 AEST
    }

    #[test]
    fn next_open_across_weekend() {
        let h = hours(&[
            (MON, "09:00", "17:00"),
            (2, "09:00", "17:00"),
            (3, "09:00", "17:00"),
            (4, "09:00", "17:00"),
            (FRI, "09:00", "17:00"),
        ]);
        let friday_evening = local(New_York, "2026-03-06 17:00:00");
        assert_eq!(
            h.next_open(New_York, friday_evening),
            Some(local(New_York, "2026-03-09 09:00:00"))
        );
        let saturday = local(New_York, "2026-03-07 10:00:00");
        assert_eq!(
            h.next_open(New_York, saturday),
            Some(local(New_York, "2026-03-09 09:00:00"))
        );
        // Same weekday, after today's window: a full week ahead.
        let monday_late = local(New_York, "2026-03-02 18:00:00");
        let only_monday = hours(&[(MON, "09:00", "17:00")]);
        assert_eq!(
            only_monday.next_open(New_York, monday_late),
            Some(local(New_York, "2026-03-09 09:00:00"))
        );
    }

    #[test]
    fn next_open_when_open_returns_at() {
        let h = hours(&[(FRI, "22:00", "02:00")]);
        let at = local(New_York, "2026-03-07 01:00:00") + TimeDelta::milliseconds(250);
        assert_eq!(h.next_open(New_York, at), Some(at));
    }

    #[test]
    fn next_open_with_subsecond_instant_before_start() {
        let h = hours(&[(MON, "09:00", "17:00")]);
        let at = local(New_York, "2026-03-02 08:59:59") + TimeDelta::milliseconds(999);
        assert_eq!(
            h.next_open(New_York, at),
            Some(local(New_York, "2026-03-02 09:00:00"))
        );
    }

    #[test]
    fn next_open_none_when_no_window_can_occur() {
        // Bypasses validation through the public fields.
        let h = BusinessHours::new(vec![BusinessWindow {
            day_of_week: 9,
            start: WallTime(600),
            end: WallTime(700),
        }]);
        assert_eq!(h.next_open(New_York, utc("2026-03-02T12:00:00Z")), None);
    }

    #[test]
    fn next_open_matches_minute_by_minute_scan() {
        // Away from transitions is_open only changes on whole UTC minutes in
        // these zones, so checking every minute boundary is exhaustive.
        let schedules = [
            hours(&[
                (SUN, "01:00", "01:45"),
                (SUN, "02:30", "03:15"),
                (FRI, "22:00", "02:00"),
            ]),
            hours(&[(SAT, "23:30", "00:15"), (3, "09:00", "24:00")]),
            hours(&[(SUN, "02:00", "02:30")]),
            hours(&[(MON, "00:00", "00:01"), (SUN, "02:59", "03:00")]),
        ];
        let zones = [
            New_York,
            London,
            Sydney,
            chrono_tz::America::Santiago,
            chrono_tz::Australia::Lord_Howe,
        ];
        let starts = [
            utc("2026-03-06T12:00:00Z"),
            utc("2026-03-27T12:00:00Z"),
            utc("2026-04-03T12:00:00Z"),
            utc("2026-09-04T12:00:00Z"),
            utc("2026-10-02T12:00:00Z"),
            utc("2026-10-30T12:00:00Z"),
        ];
        let mut seed: u64 = 1;
        for h in &schedules {
            for &tz in &zones {
                let mut instants: Vec<DateTime<Utc>> = starts
                    .iter()
                    .map(|&base| {
                        seed = seed
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1_442_695_040_888_963_407);
                        base + TimeDelta::seconds(
                            i64::try_from((seed >> 33) % (3 * 86_400)).unwrap(),
                        )
                    })
                    .collect();
                // Densely around every transition of the year, where it is subtle.
                let transitions = offset_transitions(
                    tz,
                    utc("2026-01-01T00:00:00Z"),
                    utc("2027-01-01T00:00:00Z"),
                );
                assert!(transitions.len() >= 2, "{tz}");
                for tr in transitions {
                    instants.extend(
                        (-100..40)
                            .step_by(7)
                            .map(|m| tr + TimeDelta::minutes(m) + TimeDelta::seconds(13)),
                    );
                }
                for at in instants {
                    let got = h.next_open(tz, at);
                    let mut t = at;
                    let expected = loop {
                        if h.is_open(tz, t) {
                            break Some(t);
                        }
                        if t > at + TimeDelta::days(SEARCH_DAYS) {
                            break None;
                        }
                        t = DateTime::<Utc>::from_timestamp((t.timestamp() / 60 + 1) * 60, 0)
                            .unwrap();
                    };
                    assert_eq!(got, expected, "{tz} from {at}");
                }
            }
        }
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(WallTime::parse_start("00:00").unwrap().minutes(), 0);
        assert_eq!(WallTime::parse_start("09:05").unwrap().minutes(), 545);
        assert_eq!(WallTime::parse_start("23:59").unwrap().minutes(), 1439);
        assert_eq!(WallTime::parse_end("24:00").unwrap().minutes(), 1440);
        assert_eq!(WallTime::parse_end("24:00").unwrap().to_string(), "24:00");
        assert_eq!(WallTime::parse_start("07:30").unwrap().to_string(), "07:30");
    }

    #[test]
    fn parse_errors() {
        assert_eq!(
            WallTime::parse_start("24:00"),
            Err(BusinessHoursError::StartAt24)
        );
        for bad in [
            "25:00", "9:00", "", "12:60", "24:01", "12:5", "12-00", "ab:cd", "+1:00", "12:00 ",
            "１2:00",
        ] {
            let expected = || {
                Err(BusinessHoursError::InvalidTime {
                    value: bad.to_owned(),
                })
            };
            assert_eq!(WallTime::parse_start(bad), expected(), "{bad:?}");
            assert_eq!(WallTime::parse_end(bad), expected(), "{bad:?}");
        }
        assert_eq!(
            WallTime::parse_end("25:00").unwrap_err().to_string(),
            "invalid time \"25:00\": expected HH:MM"
        );
    }

    #[test]
    fn window_validation() {
        let nine = WallTime::parse_start("09:00").unwrap();
        let five = WallTime::parse_end("17:00").unwrap();
        let midnight_end = WallTime::parse_end("24:00").unwrap();
        assert_eq!(
            BusinessWindow::new(1, nine, nine),
            Err(BusinessHoursError::EmptyWindow)
        );
        assert_eq!(
            BusinessWindow::new(7, nine, five),
            Err(BusinessHoursError::InvalidDay { day: 7 })
        );
        assert_eq!(
            BusinessWindow::new(1, midnight_end, five),
            Err(BusinessHoursError::StartAt24)
        );
        assert!(BusinessWindow::new(0, nine, five).is_ok());
        assert!(BusinessWindow::new(6, nine, midnight_end).is_ok());
        assert_eq!(
            BusinessHoursError::InvalidDay { day: 7 }.to_string(),
            "invalid day of week 7: expected 0 (sunday) to 6 (saturday)"
        );
    }

    #[test]
    fn serde_round_trip() {
        let w = window(1, "09:00", "18:00");
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(json, r#"{"day_of_week":1,"start":"09:00","end":"18:00"}"#);
        assert_eq!(serde_json::from_str::<BusinessWindow>(&json).unwrap(), w);

        let late: BusinessWindow =
            serde_json::from_str(r#"{"day_of_week":5,"start":"22:00","end":"24:00"}"#).unwrap();
        assert_eq!(late.end.minutes(), 1440);
        assert_eq!(
            serde_json::to_string(&late).unwrap(),
            r#"{"day_of_week":5,"start":"22:00","end":"24:00"}"#
        );

        for bad in [
            r#"{"day_of_week":1,"start":"24:00","end":"18:00"}"#,
            r#"{"day_of_week":1,"start":"09:00","end":"09:00"}"#,
            r#"{"day_of_week":7,"start":"09:00","end":"18:00"}"#,
            r#"{"day_of_week":1,"start":"9:00","end":"18:00"}"#,
            r#"{"day_of_week":1,"start":900,"end":"18:00"}"#,
        ] {
            assert!(
                serde_json::from_str::<BusinessWindow>(bad).is_err(),
                "{bad}"
            );
        }
        let err = serde_json::from_str::<BusinessWindow>(
            r#"{"day_of_week":1,"start":"25:00","end":"18:00"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("invalid time \"25:00\""), "{err}");
    }
}
