//! Go-style duration strings ("300ms", "1.5h", "2h45m"), parsed like Go's
//! `time.ParseDuration` and printed like `time.Duration.String()`, so that
//! configuration and API values read the same as in the Go tooling around us.
//! Unlike Go, only non-negative durations are accepted.

use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("invalid duration \"\": empty string")]
    Empty,
    #[error("invalid duration \"{input}\": a sign is not allowed, durations are non-negative")]
    Signed { input: String },
    #[error("invalid duration \"{input}\"")]
    Invalid { input: String },
    #[error("missing unit in duration \"{input}\"")]
    MissingUnit { input: String },
    #[error("unknown unit \"{unit}\" in duration \"{input}\"")]
    UnknownUnit { unit: String, input: String },
    #[error("duration \"{input}\" is too large")]
    Overflow { input: String },
}

const NANOS_PER_MICRO: u64 = 1_000;
const NANOS_PER_MILLI: u64 = 1_000_000;
const NANOS_PER_SECOND: u64 = 1_000_000_000;

fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        // Go accepts the ASCII spelling, MICRO SIGN (U+00B5) and GREEK MU (U+03BC).
        "us" | "\u{b5}s" | "\u{3bc}s" => NANOS_PER_MICRO,
        "ms" => NANOS_PER_MILLI,
        "s" => NANOS_PER_SECOND,
        "m" => 60 * NANOS_PER_SECOND,
        "h" => 3600 * NANOS_PER_SECOND,
        _ => return None,
    })
}

/// Parses a Go duration string such as "1h30m" or "1.5s".
///
/// Accepts everything Go's `time.ParseDuration` accepts except a sign, up to
/// `u64::MAX` nanoseconds (Go stops at `i64::MAX`). Fractions are exact,
/// truncated to whole nanoseconds.
pub fn parse_go_duration(s: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid {
        input: s.to_owned(),
    };
    let overflow = || DurationError::Overflow {
        input: s.to_owned(),
    };

    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.starts_with(['+', '-']) {
        return Err(DurationError::Signed {
            input: s.to_owned(),
        });
    }
    // Go special-cases a bare zero, the only unit-less value it accepts.
    if s == "0" {
        return Ok(Duration::ZERO);
    }

    let mut rest = s;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after_int) = rest.split_at(int_len);
        let (frac_digits, after_number) = match after_int.strip_prefix('.') {
            Some(after_dot) => {
                let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                after_dot.split_at(frac_len)
            }
            None => ("", after_int),
        };
        // "5." and ".5" are fine, as in Go; "." and a unit with no number are not.
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(invalid());
        }

        let unit_len = after_number
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit {
                input: s.to_owned(),
            });
        }
        let unit_ns = unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit {
            unit: unit.to_owned(),
            input: s.to_owned(),
        })?;

        let mut whole: u64 = 0;
        for d in int_digits.bytes() {
            whole = whole
                .checked_mul(10)
                .and_then(|w| w.checked_add(u64::from(d - b'0')))
                .ok_or_else(overflow)?;
        }
        let component = whole
            .checked_mul(unit_ns)
            .and_then(|w| w.checked_add(fraction_nanos(frac_digits, unit_ns)))
            .ok_or_else(overflow)?;
        total = total.checked_add(component).ok_or_else(overflow)?;
        rest = after_unit;
    }
    Ok(Duration::from_nanos(total))
}

/// `floor(unit_ns * 0.<digits>)`, exactly, for any number of digits.
///
/// Folding from the last digit keeps the accumulator below `unit_ns`, and
/// `floor((a + floor(x)) / 10) == floor((a + x) / 10)` for integer `a`, so
/// truncating at every step gives the same result as truncating once.
fn fraction_nanos(digits: &str, unit_ns: u64) -> u64 {
    digits
        .bytes()
        .rev()
        .fold(0, |acc, d| (acc + u64::from(d - b'0') * unit_ns) / 10)
}

/// Formats like Go's `time.Duration.String()`: "0s", "1.5µs", "500ms",
/// "1m30s", "1h0m0s", "72h3m0.5s".
pub fn format_go_duration(d: Duration) -> String {
    // u128 so that durations beyond u64 nanoseconds still format.
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < u128::from(NANOS_PER_MICRO) {
        return format!("{nanos}ns");
    }
    if nanos < u128::from(NANOS_PER_MILLI) {
        return format!("{}\u{b5}s", decimal(nanos, 3));
    }
    if nanos < u128::from(NANOS_PER_SECOND) {
        return format!("{}ms", decimal(nanos, 6));
    }

    let total_secs = nanos / u128::from(NANOS_PER_SECOND);
    let secs_with_frac = decimal(
        total_secs % 60 * u128::from(NANOS_PER_SECOND) + nanos % u128::from(NANOS_PER_SECOND),
        9,
    );
    let total_minutes = total_secs / 60;
    let hours = total_minutes / 60;
    let minutes = total_minutes % 60;
    // Like Go, minutes are always shown once hours are, and hours are the
    // largest unit because days vary in length.
    if hours > 0 {
        format!("{hours}h{minutes}m{secs_with_frac}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs_with_frac}s")
    } else {
        format!("{secs_with_frac}s")
    }
}

/// `value / 10^scale` as a decimal with trailing fractional zeros (and a bare
/// point) removed.
fn decimal(value: u128, scale: u32) -> String {
    let divisor = 10u128.pow(scale);
    let (int, frac) = (value / divisor, value % divisor);
    if frac == 0 {
        return int.to_string();
    }
    let width = scale as usize;
    let frac = format!("{frac:0width$}");
    format!("{int}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn ns(n: u64) -> Duration {
        Duration::from_nanos(n)
    }

    const SEC: u64 = NANOS_PER_SECOND;
    const MIN: u64 = 60 * SEC;
    const HOUR: u64 = 60 * MIN;

    #[test]
    fn parses_single_units() {
        let cases: &[(&str, u64)] = &[
            ("0s", 0),
            ("0", 0),
            ("5ns", 5),
            ("7us", 7_000),
            ("7\u{b5}s", 7_000),
            ("7\u{3bc}s", 7_000),
            ("300ms", 300 * NANOS_PER_MILLI),
            ("10s", 10 * SEC),
            ("2m", 2 * MIN),
            ("3h", 3 * HOUR),
            ("000010s", 10 * SEC),
        ];
        for &(input, expected) in cases {
            assert_eq!(parse_go_duration(input), Ok(ns(expected)), "{input:?}");
        }
    }

    #[test]
    fn parses_fractions_and_sequences() {
        let cases: &[(&str, u64)] = &[
            ("1.5h", HOUR + 30 * MIN),
            ("2h45m", 2 * HOUR + 45 * MIN),
            ("1m30s", MIN + 30 * SEC),
            ("1.5s", 1_500_000_000),
            (".5s", 500_000_000),
            ("5.s", 5 * SEC),
            ("1.234ms", 1_234_000),
            ("1.5µs", 1_500),
            ("0.000000001s", 1),
            // Sub-nanosecond remainders truncate.
            ("0.0000000019s", 1),
            ("1.9ns", 1),
            ("0.3333333333333333333333333h", 1_199_999_999_999),
            (
                "1h1m1s1ms1us1ns",
                HOUR + MIN + SEC + NANOS_PER_MILLI + NANOS_PER_MICRO + 1,
            ),
            ("72h3m0.5s", 72 * HOUR + 3 * MIN + 500_000_000),
            // Go allows repeated and out-of-order units.
            ("1s1s", 2 * SEC),
            ("30m1h", HOUR + 30 * MIN),
        ];
        for &(input, expected) in cases {
            assert_eq!(parse_go_duration(input), Ok(ns(expected)), "{input:?}");
        }
    }

    #[test]
    fn parses_up_to_u64_nanoseconds() {
        assert_eq!(
            parse_go_duration("18446744073709551615ns"),
            Ok(ns(u64::MAX))
        );
        assert_eq!(
            parse_go_duration("5124095h34m33.709551615s"),
            Ok(ns(u64::MAX))
        );
    }

    #[test]
    fn rejects_invalid_input() {
        let invalid = |s: &str| {
            Err(DurationError::Invalid {
                input: s.to_owned(),
            })
        };
        let missing = |s: &str| {
            Err(DurationError::MissingUnit {
                input: s.to_owned(),
            })
        };
        let unknown = |u: &str, s: &str| {
            Err(DurationError::UnknownUnit {
                unit: u.to_owned(),
                input: s.to_owned(),
            })
        };
        let signed = |s: &str| {
            Err(DurationError::Signed {
                input: s.to_owned(),
            })
        };
        let overflow = |s: &str| {
            Err(DurationError::Overflow {
                input: s.to_owned(),
            })
        };

        assert_eq!(parse_go_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_go_duration("-1s"), signed("-1s"));
        assert_eq!(parse_go_duration("+1s"), signed("+1s"));
        assert_eq!(parse_go_duration("-0"), signed("-0"));
        assert_eq!(parse_go_duration("10"), missing("10"));
        assert_eq!(parse_go_duration("00"), missing("00"));
        assert_eq!(parse_go_duration("1.5"), missing("1.5"));
        assert_eq!(parse_go_duration("1h30"), missing("1h30"));
        assert_eq!(parse_go_duration("5d"), unknown("d", "5d"));
        assert_eq!(parse_go_duration("1 s"), unknown(" s", "1 s"));
        assert_eq!(parse_go_duration("1S"), unknown("S", "1S"));
        assert_eq!(parse_go_duration("1sec"), unknown("sec", "1sec"));
        assert_eq!(parse_go_duration("s"), invalid("s"));
        assert_eq!(parse_go_duration(".s"), invalid(".s"));
        assert_eq!(parse_go_duration("."), invalid("."));
        // As in Go, the unit runs up to the next digit or point.
        assert_eq!(parse_go_duration("1h-1m"), unknown("h-", "1h-1m"));
        assert_eq!(parse_go_duration("1h.m"), invalid("1h.m"));
        assert_eq!(parse_go_duration("1..5s"), missing("1..5s"));
        assert_eq!(
            parse_go_duration("18446744073709551616ns"),
            overflow("18446744073709551616ns")
        );
        assert_eq!(parse_go_duration("5124096h"), overflow("5124096h"));
        assert_eq!(
            parse_go_duration("5124095h34m34s"),
            overflow("5124095h34m34s")
        );
        assert_eq!(
            parse_go_duration("99999999999999999999999h"),
            overflow("99999999999999999999999h")
        );
    }

    #[test]
    fn error_messages_are_lowercase_and_include_input() {
        assert_eq!(
            parse_go_duration("5d").unwrap_err().to_string(),
            "unknown unit \"d\" in duration \"5d\""
        );
        assert_eq!(
            parse_go_duration("10").unwrap_err().to_string(),
            "missing unit in duration \"10\""
        );
        assert_eq!(
            parse_go_duration("-1s").unwrap_err().to_string(),
            "invalid duration \"-1s\": a sign is not allowed, durations are non-negative"
        );
        assert_eq!(
            parse_go_duration("").unwrap_err().to_string(),
            "invalid duration \"\": empty string"
        );
    }

    #[test]
    fn formats_like_go() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (999, "999ns"),
            (1_000, "1µs"),
            (1_500, "1.5µs"),
            (1_001, "1.001µs"),
            (500 * NANOS_PER_MILLI, "500ms"),
            (1_234_000, "1.234ms"),
            (1_234_567, "1.234567ms"),
            (999_999_999, "999.999999ms"),
            (SEC, "1s"),
            (2 * SEC, "2s"),
            (1_500_000_000, "1.5s"),
            (SEC + 1, "1.000000001s"),
            (59 * SEC, "59s"),
            (2 * MIN, "2m0s"),
            (MIN + 30 * SEC, "1m30s"),
            (HOUR, "1h0m0s"),
            (HOUR + 30 * MIN, "1h30m0s"),
            (2 * HOUR + 45 * MIN, "2h45m0s"),
            (72 * HOUR + 3 * MIN + 500_000_000, "72h3m0.5s"),
            (i64::MAX as u64, "2562047h47m16.854775807s"),
            (u64::MAX, "5124095h34m33.709551615s"),
        ];
        for &(n, expected) in cases {
            assert_eq!(format_go_duration(ns(n)), expected, "{n}");
        }
        // Output uses MICRO SIGN, as Go does.
        assert_eq!(format_go_duration(ns(1_500)), "1.5\u{b5}s");
    }

    #[test]
    fn formats_beyond_u64_nanoseconds() {
        assert_eq!(
            format_go_duration(Duration::from_secs(u64::MAX / 2)),
            "2562047788015215h30m7s"
        );
    }

    #[test]
    fn round_trips() {
        let values = [
            0,
            1,
            999,
            1_000,
            1_500,
            999_999,
            NANOS_PER_MILLI,
            1_234_567,
            999_999_999,
            SEC,
            SEC + 1,
            59 * SEC + 999_999_999,
            MIN,
            MIN + 30 * SEC,
            HOUR,
            25 * HOUR + MIN + SEC + 1,
            72 * HOUR + 3 * MIN + 500_000_000,
            i64::MAX as u64,
            u64::MAX,
        ];
        for n in values {
            let formatted = format_go_duration(ns(n));
            assert_eq!(parse_go_duration(&formatted), Ok(ns(n)), "{formatted}");
        }
        // And a spread of values with every digit pattern.
        let mut n: u64 = 7;
        for _ in 0..2_000 {
            n = n
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let d = ns(n >> (n % 64));
            assert_eq!(parse_go_duration(&format_go_duration(d)), Ok(d));
        }
    }
}
