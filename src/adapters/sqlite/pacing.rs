//! The one writer's time for work that can wait (the webhook outbox: making deliveries of
//! events, claiming them, recording their tries). While other writes keep the writer busy
//! (dialing), such work holds it at most about one part in `REST_PER_HELD + 1` of the time: after
//! a turn that held the writer for some time, the next waits, while other writes still come,
//! `REST_PER_HELD` times as long. A flood of events then costs dialing little (a delivery's
//! writes and its try cost about what an attempt's do, so delivering as fast as dialing makes
//! events took a fifth to a third of dialing's rate), and the deliveries catch up when dialing
//! pauses. A writer no other write holds or has just begun is taken at once (a campaign dialing
//! at a carrier's pace leaves it idle most of the time), and no turn waits longer than
//! `LONGEST_WAIT`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How much longer than a waiting turn held the writer the other writes then have it alone.
const REST_PER_HELD: u64 = 19;
/// Other writes under way, or begun within this, keep the writer busy: under a flood of
/// dialing the next begins within a few milliseconds of the last.
const BUSY_WITHIN: Duration = Duration::from_millis(10);
/// The longest a turn waits, however busy the writer: deliveries stay within seconds.
const LONGEST_WAIT: Duration = Duration::from_secs(1);
/// `next_turn` while a waiting turn holds the writer: the others wait for it to end.
const TAKEN: u64 = u64::MAX;

pub(super) struct Pacing {
    base: Instant,
    /// Other writes waiting for the writer or holding it.
    others: AtomicUsize,
    /// When other writes last began, in µs since `base` plus one (0: never).
    other_began: AtomicU64,
    /// Before when, in µs since `base`, a waiting turn leaves a busy writer alone.
    next_turn: AtomicU64,
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            others: AtomicUsize::new(0),
            other_began: AtomicU64::new(0),
            next_turn: AtomicU64::new(0),
        }
    }
}

/// A turn of work that can wait: its end sets when the next may come.
pub(super) struct Turn<'a> {
    pacing: &'a Pacing,
    /// It holds the share (`next_turn` is `TAKEN`); otherwise it went without, the writer being
    /// idle or the wait at its longest.
    reserved: bool,
    began: Instant,
    reported: bool,
}

impl Turn<'_> {
    /// The turn ended after holding the writer for `held`.
    pub(super) fn held(mut self, held: Duration) {
        self.pacing.rest_after(Instant::now(), held, self.reserved);
        self.reported = true;
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        // Dropped before it reported (cancelled): what it may have held.
        if !self.reported {
            self.pacing
                .rest_after(Instant::now(), self.began.elapsed(), self.reserved);
        }
    }
}

/// What a turn asking for the writer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// The writer is idle: it goes, without holding the share.
    Go,
    /// Its rest is over: it takes the share, unless another turn takes it first.
    Take,
    /// It asks again after this long.
    Wait(Duration),
}

/// A write other than a waiting turn's, under way.
pub(super) struct OtherWrite<'a> {
    pacing: &'a Pacing,
}

impl Drop for OtherWrite<'_> {
    fn drop(&mut self) {
        self.pacing.others.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pacing {
    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_micros()).unwrap_or(TAKEN - 1)
    }

    /// Another write begins; it is under way until the guard is dropped.
    pub(super) fn other_write(&self) -> OtherWrite<'_> {
        let now = self.micros(Instant::now()) + 1;
        self.other_began.fetch_max(now, Ordering::Relaxed);
        self.others.fetch_add(1, Ordering::Relaxed);
        OtherWrite { pacing: self }
    }

    /// Whether other writes keep the writer busy at `now` (µs since `base`).
    fn busy_at(&self, now: u64) -> bool {
        let began = self.other_began.load(Ordering::Relaxed);
        self.others.load(Ordering::Relaxed) > 0
            || began > 0 && now.saturating_sub(began - 1) < BUSY_WITHIN.as_micros() as u64
    }

    /// What a turn asking at `now` (µs since `base`) does, with the `next_turn` that decided it.
    fn ask(&self, now: u64) -> (Ask, u64) {
        let next = self.next_turn.load(Ordering::Acquire);
        let ask = if !self.busy_at(now) {
            Ask::Go
        } else if next == TAKEN {
            Ask::Wait(Duration::from_millis(2))
        } else if now >= next {
            Ask::Take
        } else {
            Ask::Wait(Duration::from_micros(next - now))
        };
        (ask, next)
    }

    /// Waits for the writer's share and takes it, or goes at once when the writer is idle, or
    /// without it after `LONGEST_WAIT`.
    pub(super) async fn turn(&self) -> Turn<'_> {
        let asked = Instant::now();
        let reserved = loop {
            let (ask, next) = self.ask(self.micros(Instant::now()));
            let wait = match ask {
                Ask::Go => break false,
                // Swapped from the `next` that decided it, so of several turns waiting for the
                // share only one takes it.
                Ask::Take => {
                    if self
                        .next_turn
                        .compare_exchange(next, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        break true;
                    }
                    Duration::from_millis(2)
                }
                Ask::Wait(wait) => wait,
            };
            let left = LONGEST_WAIT.saturating_sub(asked.elapsed());
            if left.is_zero() {
                break false;
            }
            tokio::time::sleep(wait.min(left).min(BUSY_WITHIN)).await;
        };
        Turn {
            pacing: self,
            reserved,
            began: Instant::now(),
            reported: false,
        }
    }

    /// Sets when the next turn may take the share: `REST_PER_HELD` times `held` after `ended`.
    /// A turn that holds the share gives it back so; one that went without only lengthens the
    /// rest, and leaves a share another turn holds alone.
    fn rest_after(&self, ended: Instant, held: Duration, reserved: bool) {
        let rest = u64::try_from(held.as_micros())
            .unwrap_or(u64::MAX)
            .saturating_mul(REST_PER_HELD);
        let next = self.micros(ended).saturating_add(rest).min(TAKEN - 1);
        if reserved {
            self.next_turn.store(next, Ordering::Release);
        } else {
            let _ = self
                .next_turn
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                    (current != TAKEN).then_some(current.max(next))
                });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(pacing: &Pacing, after: Duration) -> u64 {
        pacing.micros(pacing.base + after)
    }

    fn began_at(pacing: &Pacing, after: Duration) {
        pacing
            .other_began
            .store(at(pacing, after) + 1, Ordering::Relaxed);
    }

    fn ask(pacing: &Pacing, after: Duration) -> Ask {
        pacing.ask(at(pacing, after)).0
    }

    #[test]
    fn an_idle_writer_is_taken_at_once() {
        let pacing = Pacing::default();
        pacing.rest_after(pacing.base, Duration::from_millis(10), true);
        assert_eq!(ask(&pacing, Duration::from_millis(1)), Ask::Go);
    }

    #[test]
    fn a_busy_writer_is_left_alone_for_its_share() {
        let pacing = Pacing::default();
        // A turn held the writer 10 ms, ending at 10 ms; another write began at 150 ms.
        pacing.rest_after(
            pacing.base + Duration::from_millis(10),
            Duration::from_millis(10),
            true,
        );
        began_at(&pacing, Duration::from_millis(150));
        assert_eq!(
            ask(&pacing, Duration::from_millis(155)),
            Ask::Wait(Duration::from_millis(45)),
            "19 times the 10 ms it held, from its end"
        );
        assert_eq!(
            ask(&pacing, Duration::from_millis(165)),
            Ask::Go,
            "no write under way, none begun within 10 ms"
        );
        let under_way = pacing.other_write();
        assert!(matches!(
            ask(&pacing, Duration::from_millis(165)),
            Ask::Wait(_)
        ));
        assert_eq!(ask(&pacing, Duration::from_millis(200)), Ask::Take);
        drop(under_way);
    }

    #[test]
    fn the_writer_is_idle_once_other_writes_stop_coming() {
        let pacing = Pacing::default();
        pacing.rest_after(pacing.base, Duration::from_secs(5), true);
        began_at(&pacing, Duration::from_millis(100));
        assert!(matches!(
            ask(&pacing, Duration::from_millis(105)),
            Ask::Wait(_)
        ));
        assert_eq!(
            ask(&pacing, Duration::from_millis(111)),
            Ask::Go,
            "no write began for a while"
        );
    }

    #[test]
    fn a_turn_without_the_share_leaves_it_to_the_one_holding_it() {
        let pacing = Pacing::default();
        pacing.next_turn.store(TAKEN, Ordering::Release);
        pacing.rest_after(pacing.base, Duration::from_millis(10), false);
        assert_eq!(pacing.next_turn.load(Ordering::Acquire), TAKEN);
        // Once given back, it lengthens the rest and never shortens it.
        pacing.rest_after(pacing.base, Duration::from_millis(10), true);
        pacing.rest_after(pacing.base, Duration::from_millis(1), false);
        assert_eq!(pacing.next_turn.load(Ordering::Acquire), 190_000);
        pacing.rest_after(pacing.base, Duration::from_millis(20), false);
        assert_eq!(pacing.next_turn.load(Ordering::Acquire), 380_000);
    }

    #[tokio::test]
    async fn one_turn_at_a_time_takes_a_busy_writers_share() {
        let pacing = Pacing::default();
        let other = pacing.other_write();
        let first = pacing.turn().await;
        assert!(first.reserved);
        assert_eq!(pacing.next_turn.load(Ordering::Acquire), TAKEN);
        assert_eq!(
            pacing.ask(pacing.micros(Instant::now())).0,
            Ask::Wait(Duration::from_millis(2)),
            "another waits for the first to end"
        );
        first.held(Duration::from_millis(2));
        let next = pacing.next_turn.load(Ordering::Acquire);
        assert!(
            next != TAKEN && next >= 38_000,
            "rests 19 times what it held: {next}"
        );
        drop(other);
    }
}
