//! A delivery's tries: what one try came to, what the delivery records of it, and when the
//! next is due.
//!
//! `attempts` counts every try made, manual ones included. Automatic tries follow the schedule
//! by that count, so a manual retry of a pending delivery also moves it one step along. A
//! delivery retried by hand after it settled (`failed`, or `delivered` and sent again) gets that
//! one try and no schedule: if it fails it is `failed` again, and stays so until retried again.

use std::time::Duration;

/// Most characters of a transport error kept as `last_error`; the client's messages nest
/// causes and can run long.
const MAX_ERROR_CHARS: usize = 300;

/// Whether a status code delivers: any 2xx.
pub fn is_success(status: u16) -> bool {
    (200..=299).contains(&status)
}

/// The waits before the automatic tries after the first (`webhooks.retry_schedule`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(pub Vec<Duration>);

impl Default for RetrySchedule {
    /// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h: eight tries over about 28 hours.
    fn default() -> Self {
        let minute = 60;
        let hour = 60 * minute;
        Self(
            [
                5,
                5 * minute,
                30 * minute,
                2 * hour,
                5 * hour,
                10 * hour,
                10 * hour,
            ]
            .into_iter()
            .map(Duration::from_secs)
            .collect(),
        )
    }
}

impl RetrySchedule {
    /// The wait before the next automatic try once `tries_made` tries have failed; `None`
    /// when the schedule is spent and the delivery is `failed`. No try made yet means now.
    /// Manual tries count like the others: a failed delivery sent again by hand is failed
    /// again if that one try fails, and a delivered one that fails is back on the schedule.
    pub fn after(&self, tries_made: u32) -> Option<Duration> {
        let Some(step) = tries_made.checked_sub(1) else {
            return Some(Duration::ZERO);
        };
        self.0.get(usize::try_from(step).ok()?).copied()
    }
}

/// What one try came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TryResult {
    /// A 2xx within the timeout.
    Delivered {
        status: u16,
    },
    /// Any other status; redirects are not followed, so 3xx land here too.
    Status(u16),
    Timeout,
    ConnectionRefused,
    /// Not attempted: the host resolved to an address of this class (see `forbidden`).
    Refused(&'static str),
    /// Any other failure to get a response (DNS, TLS, reset), as the client described it.
    Other(String),
}

impl TryResult {
    /// The result of a response with `status`.
    pub fn from_status(status: u16) -> Self {
        if is_success(status) {
            Self::Delivered { status }
        } else {
            Self::Status(status)
        }
    }

    pub fn is_delivered(&self) -> bool {
        matches!(self, Self::Delivered { .. })
    }

    /// The delivery's `last_status_code`: the status of a response, if one came.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Self::Delivered { status } | Self::Status(status) => Some(*status),
            _ => None,
        }
    }

    /// The delivery's `last_error`: why this try failed, `None` when it delivered.
    pub fn last_error(&self) -> Option<String> {
        match self {
            Self::Delivered { .. } => None,
            Self::Status(status) => Some(format!("status {status}")),
            Self::Timeout => Some("timeout".to_owned()),
            Self::ConnectionRefused => Some("connection refused".to_owned()),
            Self::Refused(class) => Some(format!("forbidden address ({class})")),
            Self::Other(text) => Some(text.chars().take(MAX_ERROR_CHARS).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60;
    const HOUR: u64 = 60 * MIN;

    #[test]
    fn the_default_schedule_is_the_specifications() {
        let schedule = RetrySchedule::default();
        let waits: Vec<Option<u64>> = (1..=8)
            .map(|tries| schedule.after(tries).map(|wait| wait.as_secs()))
            .collect();
        assert_eq!(
            waits,
            [
                Some(5),
                Some(5 * MIN),
                Some(30 * MIN),
                Some(2 * HOUR),
                Some(5 * HOUR),
                Some(10 * HOUR),
                Some(10 * HOUR),
                None
            ]
        );
        assert_eq!(schedule.after(9), None);
        assert_eq!(schedule.after(u32::MAX), None);
        assert_eq!(schedule.after(0), Some(Duration::ZERO));
        assert_eq!(schedule.0.len() + 1, 8, "the first try and one per wait");
    }

    #[test]
    fn a_custom_schedule_is_followed() {
        let schedule = RetrySchedule(vec![Duration::from_secs(1)]);
        assert_eq!(schedule.after(1), Some(Duration::from_secs(1)));
        assert_eq!(schedule.after(2), None);
        assert_eq!(RetrySchedule(Vec::new()).after(1), None);
    }

    #[test]
    fn a_failed_delivery_sent_again_by_hand_gets_one_try() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.after(9), None);
    }

    #[test]
    fn only_2xx_delivers() {
        assert!(!is_success(199));
        assert!(is_success(200));
        assert!(is_success(204));
        assert!(is_success(299));
        assert!(!is_success(300));
        assert!(!is_success(302));
        assert!(!is_success(500));
        assert_eq!(
            TryResult::from_status(202),
            TryResult::Delivered { status: 202 }
        );
        assert_eq!(TryResult::from_status(301), TryResult::Status(301));
        assert!(TryResult::from_status(200).is_delivered());
        assert!(!TryResult::Timeout.is_delivered());
    }

    #[test]
    fn failures_are_described() {
        let cases = [
            (TryResult::Delivered { status: 200 }, None, Some(200)),
            (
                TryResult::Status(500),
                Some("status 500".to_owned()),
                Some(500),
            ),
            (TryResult::Timeout, Some("timeout".to_owned()), None),
            (
                TryResult::ConnectionRefused,
                Some("connection refused".to_owned()),
                None,
            ),
            (
                TryResult::Refused("private"),
                Some("forbidden address (private)".to_owned()),
                None,
            ),
            (
                TryResult::Other("tls handshake failed".to_owned()),
                Some("tls handshake failed".to_owned()),
                None,
            ),
        ];
        for (result, error, status) in cases {
            assert_eq!(result.last_error(), error, "{result:?}");
            assert_eq!(result.status_code(), status, "{result:?}");
        }
    }

    #[test]
    fn long_errors_are_cut_on_a_character() {
        let text = "é".repeat(MAX_ERROR_CHARS + 10);
        let kept = TryResult::Other(text).last_error().unwrap_or_default();
        assert_eq!(kept.chars().count(), MAX_ERROR_CHARS);
    }
}
