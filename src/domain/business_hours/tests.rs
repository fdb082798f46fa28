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
                    base + TimeDelta::seconds(i64::try_from((seed >> 33) % (3 * 86_400)).unwrap())
                })
                .collect();
            // Densely around every transition of the year, where it is subtle.
            let transitions =
                offset_transitions(tz, utc("2026-01-01T00:00:00Z"), utc("2027-01-01T00:00:00Z"));
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
                    t = DateTime::<Utc>::from_timestamp((t.timestamp() / 60 + 1) * 60, 0).unwrap();
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
