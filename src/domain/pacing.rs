//! Pacing: at most `per_second` events per second with room for a burst, as GCRA (the generic
//! cell rate algorithm) decides it. The state is one instant, the theoretical arrival time of
//! the next event, so a shared store (Redis) keeps it in one key; its Lua script follows
//! `take` step for step.

/// The rate and burst of one bucket, in microseconds between events.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    pub interval_us: u64,
    pub burst: u32,
}

impl Pace {
    /// `None` unless `per_second` is a positive finite rate.
    pub fn new(per_second: f64, burst: u32) -> Option<Self> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return None;
        }
        let interval_us = (1_000_000.0 / per_second).round().max(1.0) as u64;
        Some(Self {
            interval_us,
            burst: burst.max(1),
        })
    }

    /// How far ahead of `now` the next arrival time may run: the burst beyond the first event.
    pub fn tolerance_us(&self) -> u64 {
        self.interval_us
            .saturating_mul(u64::from(self.burst).saturating_sub(1))
    }
}

/// What one request for an event gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// The event may happen now; `tat` is the bucket's new state.
    Now { tat: u64 },
    /// Not before `wait_us` from now; the state is unchanged.
    Wait { wait_us: u64 },
}

/// Takes one event at `now` (microseconds on the bucket's one clock) from a bucket whose next
/// arrival time is `tat` (0 for a fresh bucket).
pub fn take(pace: Pace, tat: u64, now: u64) -> Taken {
    let tat = tat.max(now);
    let ahead = tat - now;
    if ahead > pace.tolerance_us() {
        Taken::Wait {
            wait_us: ahead - pace.tolerance_us(),
        }
    } else {
        Taken::Now {
            tat: tat + pace.interval_us,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events admitted when requests come every `step_us` for `span_us`.
    fn admitted(pace: Pace, step_us: u64, span_us: u64) -> Vec<u64> {
        let mut tat = 0;
        let mut at = Vec::new();
        let mut now = 1_000_000;
        while now < 1_000_000 + span_us {
            if let Taken::Now { tat: next } = take(pace, tat, now) {
                tat = next;
                at.push(now);
            }
            now += step_us;
        }
        at
    }

    #[test]
    fn one_per_interval_after_one_burst() {
        let pace = Pace::new(10.0, 3).unwrap_or(Pace {
            interval_us: 0,
            burst: 0,
        });
        assert_eq!(pace.interval_us, 100_000);
        // Hammered every millisecond for one second: the burst, then one per 100 ms.
        let at = admitted(pace, 1_000, 1_000_000);
        assert_eq!(at.len(), 3 + 9, "{at:?}");
        assert_eq!(&at[..3], &[1_000_000, 1_001_000, 1_002_000]);
        // In any window of one second, at most rate + burst - 1.
        let at = admitted(pace, 1_000, 5_000_000);
        for (i, start) in at.iter().enumerate() {
            let in_window = at[i..]
                .iter()
                .take_while(|t| **t < start + 1_000_000)
                .count();
            assert!(in_window <= 10 + 2, "{in_window} events from {start}");
        }
    }

    #[test]
    fn a_denied_request_learns_how_long_to_wait() {
        let pace = Pace {
            interval_us: 1_000,
            burst: 1,
        };
        let Taken::Now { tat } = take(pace, 0, 5_000) else {
            panic!("a fresh bucket admits");
        };
        assert_eq!(tat, 6_000);
        assert_eq!(take(pace, tat, 5_400), Taken::Wait { wait_us: 600 });
        assert_eq!(take(pace, tat, 6_000), Taken::Now { tat: 7_000 });
        // An idle bucket does not bank more than its burst.
        assert_eq!(take(pace, tat, 60_000), Taken::Now { tat: 61_000 });
    }

    #[test]
    fn rejects_rates_that_are_not_positive() {
        assert_eq!(Pace::new(0.0, 1), None);
        assert_eq!(Pace::new(f64::NAN, 1), None);
        assert_eq!(Pace::new(-1.0, 1), None);
        assert_eq!(
            Pace::new(1e9, 0).map(|p| (p.interval_us, p.burst)),
            Some((1, 1))
        );
    }
}
