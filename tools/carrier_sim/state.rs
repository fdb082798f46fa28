//! The simulator's memory: every call, the live counts with their peaks, create pacing and the
//! journal.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{lock, SimCall};

pub(super) struct Record {
    pub call: SimCall,
    pub updated_at: DateTime<Utc>,
    /// When dialing began (Twilio's `start_time`).
    pub start_time: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    /// Cancelled when the call is ended through the REST API, to wake its task.
    pub hangup: CancellationToken,
}

/// How a call ended.
#[derive(Debug, Clone)]
pub(super) struct Ending {
    pub status: &'static str,
    pub sip_code: u16,
    pub duration_secs: u64,
    pub answered_by: Option<String>,
}

#[derive(Default)]
pub(super) struct State {
    pub records: Vec<Record>,
    index: HashMap<String, usize>,
    live_total: u64,
    pub peak_total: u64,
    live_by_campaign: HashMap<String, u64>,
    pub peak_by_campaign: HashMap<String, u64>,
    live_by_number: HashMap<String, u64>,
    pub numbers_live_twice: BTreeSet<String>,
    recent_creates: VecDeque<Instant>,
    pub max_creates_per_second: u64,
    pub throttled: u64,
    /// Numbers whose creates were throttled at least once.
    pub throttled_numbers: BTreeSet<String>,
    pub invalid: u64,
}

impl State {
    pub fn live(&self) -> u64 {
        self.live_total
    }

    pub fn peak_live(&self, campaign: &str) -> u64 {
        self.peak_by_campaign.get(campaign).copied().unwrap_or(0)
    }

    pub fn get(&self, sid: &str) -> Option<&Record> {
        self.index.get(sid).and_then(|&i| self.records.get(i))
    }

    pub fn get_mut(&mut self, sid: &str) -> Option<&mut Record> {
        match self.index.get(sid) {
            Some(&i) => self.records.get_mut(i),
            None => None,
        }
    }

    /// Records a new live call created at `now`.
    pub fn insert(&mut self, record: Record, now: Instant) {
        let window = Duration::from_secs(1);
        while self
            .recent_creates
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) >= window)
        {
            self.recent_creates.pop_front();
        }
        self.recent_creates.push_back(now);
        self.max_creates_per_second = self
            .max_creates_per_second
            .max(self.recent_creates.len() as u64);

        self.live_total += 1;
        self.peak_total = self.peak_total.max(self.live_total);
        if let Some(campaign) = &record.call.campaign {
            let live = self.live_by_campaign.entry(campaign.clone()).or_insert(0);
            *live += 1;
            let peak = self.peak_by_campaign.entry(campaign.clone()).or_insert(0);
            *peak = (*peak).max(*live);
        }
        let on_number = self
            .live_by_number
            .entry(record.call.to.clone())
            .or_insert(0);
        *on_number += 1;
        if *on_number > 1 {
            self.numbers_live_twice.insert(record.call.to.clone());
        }

        self.index
            .insert(record.call.sid.clone(), self.records.len());
        self.records.push(record);
    }

    /// Moves a call that is not final yet to `status`; false when it is final already (or
    /// unknown), so the caller knows someone else ended it.
    pub fn advance(&mut self, sid: &str, status: &str, now: DateTime<Utc>) -> bool {
        let Some(record) = self.get_mut(sid) else {
            return false;
        };
        if record.call.is_final() {
            return false;
        }
        record.call.status = status.to_owned();
        record.updated_at = now;
        match status {
            "ringing" => record.start_time = Some(record.start_time.unwrap_or(now)),
            "in-progress" => record.answered_at = Some(now),
            _ => {}
        }
        true
    }

    /// Ends a live call; `None` when it was final already. The live counts drop here, the only
    /// place a call stops being live.
    pub fn finish(&mut self, sid: &str, ending: &Ending, now: DateTime<Utc>) -> Option<SimCall> {
        let record = self.get_mut(sid)?;
        if record.call.is_final() {
            return None;
        }
        record.call.status = ending.status.to_owned();
        record.call.sip_code = Some(ending.sip_code);
        record.call.duration_secs = Some(ending.duration_secs);
        record.call.answered_by = ending.answered_by.clone();
        record.call.ended_at = Some(now);
        record.updated_at = now;
        let call = record.call.clone();

        self.live_total = self.live_total.saturating_sub(1);
        if let Some(campaign) = &call.campaign {
            if let Some(live) = self.live_by_campaign.get_mut(campaign) {
                *live = live.saturating_sub(1);
            }
        }
        if let Some(live) = self.live_by_number.get_mut(&call.to) {
            *live = live.saturating_sub(1);
            if *live == 0 {
                self.live_by_number.remove(&call.to);
            }
        }
        Some(call)
    }

    pub fn mark_final_callback_sent(&mut self, sid: &str) {
        if let Some(record) = self.get_mut(sid) {
            record.call.final_callback_sent = true;
        }
    }
}

/// Generic cell rate algorithm: one create per `1/cps`, with `burst` of them back to back.
pub(super) struct Gcra {
    interval: Option<Duration>,
    tolerance: Duration,
    theoretical_arrival: Option<Instant>,
}

impl Gcra {
    pub fn new(cps: f64, burst: u32) -> Self {
        let interval = if cps.is_finite() && cps > 0.0 {
            Some(
                Duration::try_from_secs_f64(1.0 / cps)
                    .unwrap_or(Duration::from_secs(u32::MAX.into())),
            )
        } else {
            None
        };
        let tolerance = interval
            .and_then(|i| i.checked_mul(burst.max(1) - 1))
            .unwrap_or(Duration::ZERO);
        Self {
            interval,
            tolerance,
            theoretical_arrival: None,
        }
    }

    /// Whether a create arriving at `now` is within the budget; an admitted one spends it.
    pub fn admit(&mut self, now: Instant) -> bool {
        let Some(interval) = self.interval else {
            return true;
        };
        let tat = self.theoretical_arrival.map_or(now, |tat| tat.max(now));
        if tat.saturating_duration_since(now) > self.tolerance {
            return false;
        }
        self.theoretical_arrival = Some(tat.checked_add(interval).unwrap_or(tat));
        true
    }
}

/// `<start|end> <campaign> <call> <attempt> <unix_ns> <to>` lines, the mock provider's format,
/// so the load test and chaos checks read both the same way. Unbuffered: a killed simulator
/// leaves every line it wrote.
pub(super) struct Journal {
    file: Mutex<std::fs::File>,
}

impl Journal {
    pub fn open(path: &std::path::Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    pub fn write(&self, event: &str, call: &SimCall, at: SystemTime) {
        use std::io::Write;
        let nanos = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let line = format!(
            "{event} {} {} {} {nanos} {}\n",
            call.campaign.as_deref().unwrap_or("-"),
            call.call.as_deref().unwrap_or("-"),
            call.attempt.unwrap_or(0),
            call.to
        );
        if let Err(err) = lock(&self.file).write_all(line.as_bytes()) {
            tracing::warn!(error = %err, "cannot write the carrier simulator journal");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_admits_the_burst_then_one_per_interval() {
        let mut gcra = Gcra::new(10.0, 3);
        let t0 = Instant::now();
        assert!(gcra.admit(t0));
        assert!(gcra.admit(t0));
        assert!(gcra.admit(t0));
        assert!(!gcra.admit(t0));
        assert!(!gcra.admit(t0 + Duration::from_millis(50)));
        assert!(gcra.admit(t0 + Duration::from_millis(100)));
        assert!(!gcra.admit(t0 + Duration::from_millis(110)));
        let mut unlimited = Gcra::new(0.0, 1);
        assert!((0..1000).all(|_| unlimited.admit(t0)));
    }
}
