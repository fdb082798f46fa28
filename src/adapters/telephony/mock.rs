//! The mock provider: configurable success and retryable rates, uniform call durations and an
//! optional seed for reproducible outcomes. It counts the calls it carries per campaign and the
//! peak, exported in `/metrics`, so a load test can prove the concurrency limit held. The series
//! of the most recent `CAMPAIGN_SERIES` campaigns are kept; older idle ones are dropped, so
//! `/metrics` does not grow with every campaign ever run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::domain::call::AttemptOutcome;
use crate::domain::ids::CampaignId;
use crate::metrics::metrics;
use crate::ports::{
    ActiveCount, CallCounts, CreateCheck, DialRequest, ProviderError, ProviderEvent,
    ProviderReport, ReportSink, TelephonyProvider,
};

#[derive(Debug, Clone, PartialEq)]
pub struct MockConfig {
    pub success_rate: f64,
    pub retryable_rate: f64,
    pub min_duration: Duration,
    pub max_duration: Duration,
    pub seed: Option<u64>,
    /// Appends `start`/`end` lines of every call to this file, so tests can compute the exact
    /// number of simultaneous calls across processes.
    pub journal: Option<std::path::PathBuf>,
}

/// Campaigns whose counts (and `/metrics` series) the mock keeps.
const CAMPAIGN_SERIES: usize = 1024;

struct Shared {
    rng: StdRng,
    /// Per campaign: the counts, and the sequence number of its latest call.
    counts: HashMap<CampaignId, (ActiveCount, u64)>,
    calls: u64,
    total: ActiveCount,
}

impl Shared {
    /// Forgets the campaign whose latest call is oldest among those carrying none, once more
    /// than `CAMPAIGN_SERIES` are kept.
    fn forget_idle_campaign(&mut self) {
        if self.counts.len() <= CAMPAIGN_SERIES {
            return;
        }
        let idle = self
            .counts
            .iter()
            .filter(|(_, (count, _))| count.active == 0)
            .min_by_key(|(_, (_, latest))| *latest)
            .map(|(id, _)| *id);
        if let Some(id) = idle {
            self.counts.remove(&id);
            let label = id.to_string();
            let m = metrics();
            let _ = m.mock_active.remove_label_values(&[&label]);
            let _ = m.mock_peak.remove_label_values(&[&label]);
        }
    }
}

pub struct MockProvider {
    config: MockConfig,
    shared: Arc<Mutex<Shared>>,
    journal: Option<Arc<Journal>>,
}

/// One line per call start and end:
/// `<start|end> <campaign_id> <call_id> <attempt> <unix_ns> <phone_number>`, written unbuffered so
/// a killed process leaves every line it wrote. An end is stamped with the instant the call ends
/// at the carrier (start plus its duration), even if the process writes it late (stopped).
struct Journal {
    file: Mutex<std::fs::File>,
}

impl Journal {
    fn open(path: &std::path::Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    fn write(&self, event: &str, request: &DialRequest, at: std::time::SystemTime) {
        use std::io::Write;
        let nanos = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let line = format!(
            "{event} {} {} {} {nanos} {}\n",
            request.campaign_id, request.call_id, request.attempt, request.phone_number
        );
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Err(err) = file.write_all(line.as_bytes()) {
            tracing::warn!(error = %err, "cannot write the mock provider journal");
        }
    }
}

const RETRYABLE_ERRORS: [&str; 3] = ["no_answer", "busy", "network_error"];
const FATAL_ERRORS: [&str; 2] = ["invalid_number", "rejected"];

impl MockProvider {
    pub fn new(config: MockConfig) -> Self {
        let journal = config.journal.as_deref().and_then(|path| match Journal::open(path) {
            Ok(journal) => Some(Arc::new(journal)),
            Err(err) => {
                tracing::error!(error = %err, path = %path.display(), "cannot open the mock provider journal");
                None
            }
        });
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Self {
            config,
            shared: Arc::new(Mutex::new(Shared {
                rng,
                counts: HashMap::new(),
                calls: 0,
                total: ActiveCount::default(),
            })),
            journal,
        }
    }

    fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
        shared.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

impl CallCounts for MockProvider {
    fn total(&self) -> ActiveCount {
        Self::lock(&self.shared).total
    }

    fn campaign(&self, campaign_id: CampaignId) -> ActiveCount {
        Self::lock(&self.shared)
            .counts
            .get(&campaign_id)
            .map(|(count, _)| *count)
            .unwrap_or_default()
    }
}

#[async_trait]
impl TelephonyProvider for MockProvider {
    /// The mock places at once, right after the dialer's begin made its check: it never waits
    /// before a create, so it never asks `_check` again.
    async fn dial(
        &self,
        request: DialRequest,
        reports: ReportSink,
        _check: Arc<dyn CreateCheck>,
    ) -> Result<(), ProviderError> {
        let campaign_label = request.campaign_id.to_string();
        let (outcome, duration) = {
            let mut shared = Self::lock(&self.shared);
            let roll: f64 = shared.rng.random();
            let outcome = if roll < self.config.success_rate {
                AttemptOutcome::Answered
            } else {
                let retryable = shared.rng.random::<f64>() < self.config.retryable_rate;
                let pool: &[&str] = if retryable {
                    &RETRYABLE_ERRORS
                } else {
                    &FATAL_ERRORS
                };
                let error = pool[shared.rng.random_range(0..pool.len())].to_owned();
                AttemptOutcome::Failed { error, retryable }
            };
            let (min, max) = (self.config.min_duration, self.config.max_duration);
            let duration = if max > min {
                min + Duration::from_nanos(
                    shared
                        .rng
                        .random_range(0..=(max - min).as_nanos().min(u64::MAX as u128) as u64),
                )
            } else {
                min
            };
            shared.total.active += 1;
            shared.total.peak = shared.total.peak.max(shared.total.active);
            let total = shared.total;
            shared.calls += 1;
            let sequence = shared.calls;
            let entry = shared.counts.entry(request.campaign_id).or_default();
            entry.0.active += 1;
            entry.0.peak = entry.0.peak.max(entry.0.active);
            entry.1 = sequence;
            let count = entry.0;
            shared.forget_idle_campaign();
            let m = metrics();
            m.mock_active_total.set(total.active as i64);
            // Several providers live in one test process; the gauge keeps the highest peak.
            if total.peak as i64 > m.mock_peak_total.get() {
                m.mock_peak_total.set(total.peak as i64);
            }
            m.mock_active
                .with_label_values(&[&campaign_label])
                .set(count.active as i64);
            m.mock_peak
                .with_label_values(&[&campaign_label])
                .set(count.peak as i64);
            (outcome, duration)
        };
        let started = std::time::SystemTime::now();
        if let Some(journal) = &self.journal {
            journal.write("start", &request, started);
        }
        let journal = self.journal.clone();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            if !duration.is_zero() {
                tokio::time::sleep(duration).await;
            }
            {
                let mut shared = Self::lock(&shared);
                shared.total.active = shared.total.active.saturating_sub(1);
                metrics().mock_active_total.set(shared.total.active as i64);
                if let Some((count, _)) = shared.counts.get_mut(&request.campaign_id) {
                    count.active = count.active.saturating_sub(1);
                    metrics()
                        .mock_active
                        .with_label_values(&[&campaign_label])
                        .set(count.active as i64);
                }
            }
            if let Some(journal) = &journal {
                journal.write("end", &request, started + duration);
            }
            // The receiver is gone only when the call role is shutting down; the attempt then
            // stays `dialing` in the store and is recovered as lost.
            let _ = reports.send(ProviderEvent::Ended(ProviderReport {
                request,
                outcome,
                ended_at: Utc::now(),
                carrier: None,
            }));
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::domain::ids::CallId;
    use crate::domain::phone::PhoneNumber;

    fn request(campaign_id: CampaignId, attempt: u32) -> DialRequest {
        DialRequest {
            call_id: CallId::new(),
            campaign_id,
            attempt,
            phone_number: PhoneNumber::parse("+15555550001").unwrap(),
            policy: crate::domain::campaign::PolicyTerms {
                base_delay_ms: 10,
                max_delay_ms: 100,
                jitter: 0.0,
            },
            voice: Default::default(),
            started_at: None,
        }
    }

    async fn outcomes(config: MockConfig, n: u32) -> Vec<AttemptOutcome> {
        let provider = MockProvider::new(config);
        let (sink, mut reports) = tokio::sync::mpsc::unbounded_channel();
        let campaign = CampaignId::new();
        for attempt in 0..n {
            provider
                .dial(
                    request(campaign, attempt),
                    sink.clone(),
                    Arc::new(AlwaysDial),
                )
                .await
                .unwrap();
        }
        let mut seen = Vec::new();
        while seen.len() < n as usize {
            seen.push(ended(reports.recv().await.unwrap()));
        }
        seen.sort_by_key(|r| r.request.attempt);
        seen.into_iter().map(|r| r.outcome).collect()
    }

    struct AlwaysDial;

    #[async_trait]
    impl CreateCheck for AlwaysDial {
        async fn may_create(
            &self,
            _attempt: crate::ports::AttemptKey,
        ) -> Result<crate::ports::Begin, crate::ports::StoreError> {
            Ok(crate::ports::Begin::Dial)
        }

        async fn other_sids(
            &self,
            _attempt: crate::ports::AttemptKey,
        ) -> Result<Vec<String>, crate::ports::StoreError> {
            Ok(Vec::new())
        }
    }

    fn ended(event: ProviderEvent) -> ProviderReport {
        match event {
            ProviderEvent::Ended(report) => report,
            other => panic!("the mock only reports ends: {other:?}"),
        }
    }

    fn config(success_rate: f64, retryable_rate: f64, seed: Option<u64>) -> MockConfig {
        MockConfig {
            success_rate,
            retryable_rate,
            min_duration: Duration::ZERO,
            max_duration: Duration::ZERO,
            seed,
            journal: None,
        }
    }

    #[tokio::test]
    async fn rates_are_honoured_and_seeds_reproduce() {
        let all_answered = outcomes(config(1.0, 0.0, Some(1)), 50).await;
        assert!(all_answered.iter().all(|o| *o == AttemptOutcome::Answered));
        let all_fatal = outcomes(config(0.0, 0.0, Some(1)), 50).await;
        assert!(all_fatal.iter().all(|o| matches!(
            o,
            AttemptOutcome::Failed {
                retryable: false,
                ..
            }
        )));
        let first = outcomes(config(0.5, 0.5, Some(42)), 200).await;
        let second = outcomes(config(0.5, 0.5, Some(42)), 200).await;
        assert_eq!(first, second, "a fixed seed gives the same outcomes");
        let answered = first
            .iter()
            .filter(|o| **o == AttemptOutcome::Answered)
            .count();
        assert!(
            (60..=140).contains(&answered),
            "about half answered: {answered}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn counts_active_calls_and_the_peak() {
        let provider = MockProvider::new(MockConfig {
            min_duration: Duration::from_secs(1),
            max_duration: Duration::from_secs(1),
            ..config(1.0, 0.0, Some(3))
        });
        let (sink, mut reports) = tokio::sync::mpsc::unbounded_channel();
        let campaign = CampaignId::new();
        for attempt in 0..3 {
            provider
                .dial(
                    request(campaign, attempt),
                    sink.clone(),
                    Arc::new(AlwaysDial),
                )
                .await
                .unwrap();
        }
        assert_eq!(
            provider.campaign(campaign),
            ActiveCount { active: 3, peak: 3 }
        );
        for _ in 0..3 {
            reports.recv().await.unwrap();
        }
        assert_eq!(
            provider.campaign(campaign),
            ActiveCount { active: 0, peak: 3 }
        );
        assert_eq!(provider.total().peak, 3);
    }
}
