//! A carrier simulator that speaks Twilio's Programmable Voice REST API (2010-04-01) and sends
//! its signed status callbacks, so the engine's Twilio adapter can be exercised end to end in
//! tests, in `just load-test` and in an operator's rehearsal (`outbound carrier-sim`).
//!
//! It keeps the truth the engine is judged against: every call it created, when each was live,
//! the peaks per campaign, per number and in total, and how fast calls were created. Its knobs
//! reproduce what a real carrier does to a client: throttling (429), slow or hung create answers
//! for calls that exist anyway, callbacks duplicated, reordered or lost.

mod api;
mod args;
mod life;
mod script;
mod state;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use args::{MsRange, SimArgs, SimArgsError};

use state::{Gcra, Journal, State};

/// What the simulated carrier does; `Default` is a fast, well-behaved carrier.
#[derive(Clone)]
pub struct SimConfig {
    /// `AC` + 32 hex; the only account the simulator knows.
    pub account_sid: String,
    /// The initial auth token; see [`CarrierSim::set_auth_token`].
    pub auth_token: String,
    /// Creates per second admitted; over it, `429`. Zero, negative or not finite: no limit.
    pub cps: f64,
    /// Creates admitted back to back before the `cps` pacing applies (GCRA burst; 0 counts as 1).
    pub burst: u32,
    pub mix: OutcomeMix,
    /// Uniform time from create to answer, busy, no-answer or failure.
    pub ring: (Duration, Duration),
    /// Uniform length of an answered call.
    pub talk: (Duration, Duration),
    /// Share of callbacks sent twice.
    pub duplicate_rate: f64,
    /// Share of calls whose callbacks are delivered in a shuffled order.
    pub reorder_rate: f64,
    /// Share of calls whose final callback is never sent.
    pub drop_final_rate: f64,
    /// Share of creates whose HTTP answer is held back by `hang_for` (the call is created).
    pub hang_rate: f64,
    pub hang_for: Duration,
    /// Added to every create answer (after the call is created).
    pub create_delay: Duration,
    /// How long a created call stays `queued` at the carrier (no start time yet) before it
    /// rings: an account whose calls wait in the carrier's queue.
    pub queue_for: Duration,
    /// How far the carrier's clock is from the true time (positive: ahead). Every time it
    /// reports (`date_created`, `start_time`, `end_time`, callbacks' `Timestamp`) and every
    /// time filter it reads is on its own clock.
    pub clock_offset: chrono::TimeDelta,
    /// `To` numbers starting with one of these get `400` code 21217 and nothing is created.
    pub unreachable_prefixes: Vec<String>,
    /// Caller IDs (`From`) the account may not use: `400` code 21210, nothing is created.
    pub refused_callers: Vec<String>,
    /// Caller IDs the called parties' networks block: their calls end `failed` with SIP 608
    /// without ringing, as a blocking carrier answers.
    pub blocked_callers: Vec<String>,
    pub seed: Option<u64>,
    /// Append `start`/`end` lines here, in the mock provider's journal format.
    pub journal: Option<PathBuf>,
    /// Whether an answered call with a `Url` fetches its TwiML and runs it (as Twilio does);
    /// off, it only talks for its drawn time.
    pub speak: bool,
    /// The keys a person presses at a Gather, each with its share of calls (the rest press
    /// nothing): `--press "1:0.5,9:0.05"`.
    pub press: Vec<(char, f64)>,
    /// Words a second the carrier speaks a `<Say>` at.
    pub speech_wps: f64,
    /// When a machine's greeting ends and the asynchronous verdict is sent, after the answer.
    pub beep_after: Duration,
    /// Multiplies every time a script takes (speech, pauses, Gather timeouts, the beep), so
    /// tests run calls of minutes in a fraction of a second.
    pub time_scale: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            account_sid: "AC00000000000000000000000000000000".into(),
            auth_token: "carrier-sim-token".into(),
            cps: 1000.0,
            burst: 10,
            mix: OutcomeMix::default(),
            ring: (Duration::from_millis(10), Duration::from_millis(50)),
            talk: (Duration::from_millis(20), Duration::from_millis(100)),
            duplicate_rate: 0.0,
            reorder_rate: 0.0,
            drop_final_rate: 0.0,
            hang_rate: 0.0,
            hang_for: Duration::from_secs(30),
            create_delay: Duration::ZERO,
            queue_for: Duration::ZERO,
            clock_offset: chrono::TimeDelta::zero(),
            unreachable_prefixes: Vec::new(),
            refused_callers: Vec::new(),
            blocked_callers: Vec::new(),
            seed: None,
            journal: None,
            speak: true,
            press: Vec::new(),
            speech_wps: 2.5,
            beep_after: Duration::from_secs(3),
            time_scale: 1.0,
        }
    }
}

// The token is a secret: it must not reach logs through `{:?}`.
impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"***")
            .field("cps", &self.cps)
            .field("burst", &self.burst)
            .field("mix", &self.mix)
            .field("ring", &self.ring)
            .field("talk", &self.talk)
            .field("duplicate_rate", &self.duplicate_rate)
            .field("reorder_rate", &self.reorder_rate)
            .field("drop_final_rate", &self.drop_final_rate)
            .field("hang_rate", &self.hang_rate)
            .field("hang_for", &self.hang_for)
            .field("create_delay", &self.create_delay)
            .field("queue_for", &self.queue_for)
            .field("clock_offset", &self.clock_offset)
            .field("unreachable_prefixes", &self.unreachable_prefixes)
            .field("refused_callers", &self.refused_callers)
            .field("blocked_callers", &self.blocked_callers)
            .field("seed", &self.seed)
            .field("journal", &self.journal)
            .field("speak", &self.speak)
            .field("press", &self.press)
            .field("speech_wps", &self.speech_wps)
            .field("beep_after", &self.beep_after)
            .field("time_scale", &self.time_scale)
            .finish()
    }
}

/// Relative weights of the call outcomes; they need not sum to 1 (all zero: every call human).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OutcomeMix {
    pub human: f64,
    pub machine: f64,
    pub busy: f64,
    pub no_answer: f64,
    /// Ends `failed` with SIP 404.
    pub failed_permanent: f64,
    /// Ends `failed` with SIP 503.
    pub failed_transient: f64,
}

impl OutcomeMix {
    /// Every call answered by a person: runs whose outcomes must not vary.
    pub fn human_only() -> Self {
        Self {
            human: 1.0,
            machine: 0.0,
            busy: 0.0,
            no_answer: 0.0,
            failed_permanent: 0.0,
            failed_transient: 0.0,
        }
    }
}

impl Default for OutcomeMix {
    fn default() -> Self {
        Self {
            human: 0.8,
            machine: 0.05,
            busy: 0.05,
            no_answer: 0.05,
            failed_permanent: 0.025,
            failed_transient: 0.025,
        }
    }
}

/// One call as the carrier knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimCall {
    pub sid: String,
    pub to: String,
    pub from: String,
    /// `queued`, `ringing`, `in-progress`, `completed`, `busy`, `no-answer`, `failed` or `canceled`.
    pub status: String,
    pub answered_by: Option<String>,
    pub sip_code: Option<u16>,
    pub duration_secs: Option<u64>,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub status_callback: Option<String>,
    /// The create's `Url`, where the call's TwiML is fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice_url: Option<String>,
    /// The create's `AsyncAmdStatusCallback`, where the verdict on who answered goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amd_callback: Option<String>,
    /// The TwiML the call was changed to say, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub twiml_updates: Vec<String>,
    /// What the callee heard, in order: each `<Say>`'s words, each `<Play>` as `[url]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heard: Vec<String>,
    /// The keys the callee pressed, in order.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pressed: String,
    /// From the StatusCallback URL's query (`campaign`, `call`, `attempt`).
    pub campaign: Option<String>,
    pub call: Option<String>,
    pub attempt: Option<u32>,
    /// Whether the final callback was delivered (answered 2xx) at least once.
    pub final_callback_sent: bool,
}

impl SimCall {
    pub fn is_final(&self) -> bool {
        is_final_status(&self.status)
    }
}

pub(crate) fn is_final_status(status: &str) -> bool {
    matches!(
        status,
        "completed" | "busy" | "no-answer" | "failed" | "canceled"
    )
}

/// Status callback deliveries, counted over the simulator's life.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallbackStats {
    /// HTTP requests made (each try of each copy).
    pub requests: u64,
    /// Requests answered 2xx or 3xx.
    pub delivered: u64,
    /// Requests that failed with a connection error, a timeout or a 5xx (each is retried).
    pub failed: u64,
    /// Requests answered 4xx (not retried).
    pub rejected: u64,
    /// Callbacks abandoned after retrying for the whole delivery window.
    pub given_up: u64,
    /// Extra copies sent by `duplicate_rate`.
    pub duplicated: u64,
    /// Final callbacks withheld by `drop_final_rate`.
    pub dropped_finals: u64,
}

/// What `GET /sim/summary` answers and `outbound carrier-sim` prints at exit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimSummary {
    pub url: String,
    pub created: u64,
    pub live: u64,
    pub peak_live_total: u64,
    pub peak_live_by_campaign: BTreeMap<String, u64>,
    pub max_creates_in_any_second: u64,
    pub throttled: u64,
    /// Creates answered 400.
    pub invalid: u64,
    pub numbers_live_twice: Vec<String>,
    /// Calls by current status.
    pub by_status: BTreeMap<String, u64>,
    pub callbacks: CallbackStats,
    /// Calls that heard something of their TwiML.
    #[serde(default)]
    pub spoken_to: u64,
    /// Keys pressed at Gathers, by key.
    #[serde(default)]
    pub keys_pressed: BTreeMap<String, u64>,
    /// Calls changed by a live-call update (a voicemail after a machine's beep).
    #[serde(default)]
    pub updated: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    rejected: AtomicU64,
    given_up: AtomicU64,
    duplicated: AtomicU64,
    dropped_finals: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> CallbackStats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CallbackStats {
            requests: read(&self.requests),
            delivered: read(&self.delivered),
            failed: read(&self.failed),
            rejected: read(&self.rejected),
            given_up: read(&self.given_up),
            duplicated: read(&self.duplicated),
            dropped_finals: read(&self.dropped_finals),
        }
    }
}

/// Shared by the HTTP workers, the call tasks and every handle.
pub(crate) struct Inner {
    config: SimConfig,
    auth_token: RwLock<String>,
    state: Mutex<State>,
    rng: Mutex<StdRng>,
    gcra: Mutex<Gcra>,
    journal: Option<Journal>,
    client: reqwest::Client,
    counters: Counters,
    /// Reads (lists and fetches) still to be answered 401 whatever the credentials: a carrier
    /// that refuses a request now and then.
    refuse_reads: AtomicU64,
    /// Requests answered 401 or 403, reads and creates alike.
    unauthorized: AtomicU64,
    /// While set, every create is answered 429 (an account over its limit for a while).
    throttle_all: AtomicBool,
    /// Creates still to be refused with 400 and `refuse_code`, whatever they ask.
    refuse_creates: AtomicU64,
    refuse_code: AtomicU64,
    cancel: CancellationToken,
    /// The runtime `start` ran on: the HTTP workers run on threads of their own, and call tasks
    /// spawned there would die with a worker.
    runtime: tokio::runtime::Handle,
    url: String,
    server: Mutex<Option<ServerHandle>>,
    served: Mutex<Option<JoinHandle<std::io::Result<()>>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the simulator's bookkeeping down with it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn rng(&self) -> MutexGuard<'_, StdRng> {
        lock(&self.rng)
    }

    /// `at` as the carrier's own clock reads it.
    fn carrier_time(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        at + self.config.clock_offset
    }

    fn token(&self) -> String {
        self.auth_token
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A running simulator; clones share it.
#[derive(Clone)]
pub struct CarrierSim {
    inner: Arc<Inner>,
}

/// How long a delivery may take before it counts as failed and is retried.
const CALLBACK_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

impl CarrierSim {
    /// Serves on `listener` (bound already; port 0 in tests) from the current tokio runtime,
    /// where the call tasks and callbacks run too.
    pub async fn start(
        config: SimConfig,
        listener: std::net::TcpListener,
    ) -> std::io::Result<CarrierSim> {
        listener.set_nonblocking(true)?;
        let url = base_url(listener.local_addr()?);
        let journal = config.journal.as_deref().map(Journal::open).transpose()?;
        let client = reqwest::Client::builder()
            .timeout(CALLBACK_REQUEST_TIMEOUT)
            .user_agent("TwilioProxy/1.1")
            .build()
            .map_err(std::io::Error::other)?;
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let inner = Arc::new(Inner {
            auth_token: RwLock::new(config.auth_token.clone()),
            gcra: Mutex::new(Gcra::new(config.cps, config.burst)),
            state: Mutex::new(State::default()),
            rng: Mutex::new(rng),
            journal,
            client,
            counters: Counters::default(),
            refuse_reads: AtomicU64::new(0),
            unauthorized: AtomicU64::new(0),
            throttle_all: AtomicBool::new(false),
            refuse_creates: AtomicU64::new(0),
            refuse_code: AtomicU64::new(0),
            cancel: CancellationToken::new(),
            runtime: tokio::runtime::Handle::current(),
            url,
            server: Mutex::new(None),
            served: Mutex::new(None),
            config,
        });
        let data = web::Data::from(inner.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .configure(api::routes)
                .default_service(web::to(api::not_found))
        })
        // Handlers only touch memory and sleep, so one worker carries thousands of calls and
        // leaves the cores to the engine under test.
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        *lock(&inner.server) = Some(server.handle());
        *lock(&inner.served) = Some(tokio::spawn(server));
        tracing::info!(url = %inner.url, "carrier simulator listening");
        Ok(CarrierSim { inner })
    }

    /// `http://127.0.0.1:PORT` (the loopback address when bound to every interface).
    pub fn url(&self) -> String {
        self.inner.url.clone()
    }

    /// Every call created, in creation order, with its current state.
    pub fn calls(&self) -> Vec<SimCall> {
        self.inner
            .state()
            .records
            .iter()
            .map(|r| r.call.clone())
            .collect()
    }

    /// The most calls of `campaign` live at once.
    pub fn peak_live(&self, campaign: &str) -> u64 {
        self.inner.state().peak_live(campaign)
    }

    pub fn peak_live_total(&self) -> u64 {
        self.inner.state().peak_total
    }

    /// The most creates accepted in any sliding one-second window.
    pub fn max_creates_in_any_second(&self) -> u64 {
        self.inner.state().max_creates_per_second
    }

    /// How many creates were answered 429.
    pub fn throttled(&self) -> u64 {
        self.inner.state().throttled
    }

    /// Numbers that ever had two calls live at once, sorted.
    pub fn numbers_live_twice(&self) -> Vec<String> {
        self.inner
            .state()
            .numbers_live_twice
            .iter()
            .cloned()
            .collect()
    }

    /// Rotates the credentials: requests with the old token get 401 from now on, and
    /// callbacks are signed with the new one.
    pub fn set_auth_token(&self, token: &str) {
        *self
            .inner
            .auth_token
            .write()
            .unwrap_or_else(PoisonError::into_inner) = token.to_owned();
    }

    /// Answers the next `count` reads (call lists and fetches) with 401, whatever the
    /// credentials: a refusal that comes and goes.
    pub fn refuse_reads(&self, count: u64) {
        self.inner.refuse_reads.store(count, Ordering::Relaxed);
    }

    /// Refuses the next `count` creates with 400 and the error `code` (one the engine knows
    /// nothing particular about, say), creating nothing.
    pub fn refuse_creates(&self, count: u64, code: u32) {
        self.inner
            .refuse_code
            .store(u64::from(code), Ordering::Relaxed);
        self.inner.refuse_creates.store(count, Ordering::Relaxed);
    }

    /// While `on`, every create is answered 429 and nothing is created.
    pub fn throttle_all(&self, on: bool) {
        self.inner.throttle_all.store(on, Ordering::Relaxed);
    }

    /// Numbers whose creates were throttled at least once, sorted.
    pub fn throttled_numbers(&self) -> Vec<String> {
        self.inner
            .state()
            .throttled_numbers
            .iter()
            .cloned()
            .collect()
    }

    /// Requests refused for their credentials so far (401 or 403).
    pub fn unauthorized(&self) -> u64 {
        self.inner.unauthorized.load(Ordering::Relaxed)
    }

    pub fn callback_stats(&self) -> CallbackStats {
        self.inner.counters.snapshot()
    }

    pub fn summary(&self) -> SimSummary {
        api::summary(&self.inner)
    }

    /// Stops serving and stops every call and callback task; calls not yet final stay as they
    /// are. Returns at once; [`CarrierSim::shutdown`] also waits for the server to close.
    pub fn stop(&self) {
        self.inner.cancel.cancel();
        if let Some(server) = lock(&self.inner.server).take() {
            // Sending the command is what stops it; the returned future only reports completion.
            drop(server.stop(false));
        }
    }

    /// [`CarrierSim::stop`], then waits until the listener is closed.
    pub async fn shutdown(&self) {
        self.stop();
        let served = lock(&self.inner.served).take();
        if let Some(served) = served {
            match served.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::warn!(error = %err, "carrier simulator server failed"),
                Err(err) => tracing::warn!(error = %err, "carrier simulator server task failed"),
            }
        }
    }
}

fn base_url(addr: SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        match addr {
            SocketAddr::V4(_) => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            SocketAddr::V6(_) => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        }
    } else {
        addr.ip()
    };
    match ip {
        std::net::IpAddr::V4(ip) => format!("http://{ip}:{}", addr.port()),
        std::net::IpAddr::V6(ip) => format!("http://[{ip}]:{}", addr.port()),
    }
}
