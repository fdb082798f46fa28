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

/// A waiting turn's hold on the writer's share: its end sets when the next may come.
pub(super) struct Turn<'a> {
    pacing: &'a Pacing,
    reserved: bool,
    began: Instant,
}

impl Turn<'_> {
    /// The turn ended after holding the writer for `held`.
    pub(super) fn held(mut self, held: Duration) {
        self.pacing.rest_after(Instant::now(), held);
        self.reserved = false;
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        // A turn that failed or was dropped before it reported: what it waited and held.
        if self.reserved {
            self.pacing.rest_after(Instant::now(), self.began.elapsed());
        }
    }
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

    /// How long a turn asking at `now` waits before asking again; `None` when it may go.
    fn wait_at(&self, now: u64) -> Option<Duration> {
        let next = self.next_turn.load(Ordering::Acquire);
        if !self.busy_at(now) || now >= next && next != TAKEN {
            return None;
        }
        Some(if next == TAKEN {
            Duration::from_millis(2)
        } else {
            Duration::from_micros(next - now)
        })
    }

    /// Waits for the writer's share, then holds it until the turn reports how long it held
    /// the writer.
    pub(super) async fn turn(&self) -> Turn<'_> {
        let asked = Instant::now();
        loop {
            let now = self.micros(Instant::now());
            let next = self.next_turn.load(Ordering::Acquire);
            match self.wait_at(now) {
                None if !self.busy_at(now) => break,
                // Taken from `next`, so of several turns waiting for it only one goes.
                None => {
                    if self
                        .next_turn
                        .compare_exchange(next, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        break;
                    }
                }
                Some(wait) => {
                    let left = LONGEST_WAIT.saturating_sub(asked.elapsed());
                    if left.is_zero() {
                        break;
                    }
                    tokio::time::sleep(wait.min(left).min(BUSY_WITHIN)).await;
                }
            }
        }
        Turn {
            pacing: self,
            reserved: true,
            began: Instant::now(),
        }
    }

    fn rest_after(&self, ended: Instant, held: Duration) {
        let rest = u64::try_from(held.as_micros())
            .unwrap_or(u64::MAX)
            .saturating_mul(REST_PER_HELD);
        let next = self.micros(ended).saturating_add(rest).min(TAKEN - 1);
        self.next_turn.store(next, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(pacing: &Pacing, after: Duration) -> u64 {
        pacing.micros(pacing.base + after)
    }

    #[test]
    fn an_idle_writer_is_taken_at_once() {
        let pacing = Pacing::default();
        pacing.rest_after(pacing.base, Duration::from_millis(10));
        assert_eq!(pacing.wait_at(at(&pacing, Duration::from_millis(1))), None);
    }

    #[test]
    fn a_busy_writer_is_left_alone_for_its_share() {
        let pacing = Pacing::default();
        // A turn held the writer 10 ms, ending at 10 ms; another write began at 150 ms.
        pacing.rest_after(
            pacing.base + Duration::from_millis(10),
            Duration::from_millis(10),
        );
        let began = at(&pacing, Duration::from_millis(150));
        pacing.other_began.store(began + 1, Ordering::Relaxed);
        assert_eq!(
            pacing.wait_at(at(&pacing, Duration::from_millis(155))),
            Some(Duration::from_millis(45)),
            "19 times the 10 ms it held, from its end"
        );
        assert_eq!(
            pacing.wait_at(at(&pacing, Duration::from_millis(165))),
            None,
            "no write under way, none begun within 10 ms"
        );
        let under_way = pacing.other_write();
        assert!(pacing
            .wait_at(at(&pacing, Duration::from_millis(165)))
            .is_some());
        assert_eq!(
            pacing.wait_at(at(&pacing, Duration::from_millis(200))),
            None
        );
        drop(under_way);
    }

    #[test]
    fn the_writer_is_idle_once_other_writes_stop_coming() {
        let pacing = Pacing::default();
        drop(pacing.other_write());
        pacing.rest_after(pacing.base, Duration::from_secs(5));
        let now = pacing.micros(Instant::now());
        assert!(pacing.wait_at(now).is_some());
        assert_eq!(
            pacing.wait_at(now + BUSY_WITHIN.as_micros() as u64 + 1),
            None,
            "no write began for a while"
        );
    }

    #[tokio::test]
    async fn one_turn_at_a_time_takes_a_busy_writers_share() {
        let pacing = Pacing::default();
        let other = pacing.other_write();
        let first = pacing.turn().await;
        assert_eq!(pacing.next_turn.load(Ordering::Acquire), TAKEN);
        assert!(
            pacing.wait_at(pacing.micros(Instant::now())).is_some(),
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
