//! Placing calls through Twilio's REST API (telephony.md "Placing a call" and "Promises that
//! hold through the carrier").
//!
//! `dial` returns at once; a task per attempt then waits for the account's pace (the limiter's
//! bucket, shared by every process), asks the store whether the attempt may still be placed,
//! creates the call and reports `Placed` with the carrier's sid. Every create is preceded by
//! that check, however long the wait before it was, and none is sent later than
//! `place_deadline` after the attempt began: past it, or when the check says no, the attempt
//! goes back unspent. What the carrier answers decides the rest, scoped to what it is about:
//! - throttled (429 / 20429): nothing was created; wait (at least `1/cps`, doubling to 30 s)
//!   and create again, the attempt unspent;
//! - refused because of the number (invalid, unreachable, not permitted): the attempt failed
//!   for good, with the carrier's code;
//! - refused because of the campaign's request (a caller ID the account may not use, a bad
//!   audio URL): the campaign pauses, saying why, and the attempt goes back unspent;
//! - bad credentials (401/403/20003, on any request): nothing was created; every dial waits
//!   until a probe of the account (every `probe_interval`) answers 200, and `unavailable` names
//!   the cause;
//! - any other 4xx: the attempt failed, retryably, with the carrier's code;
//! - ambiguous (5xx, a timeout, a connection lost after sending): the call may exist. Before any
//!   new create the calls to that number since the attempt began are listed: one found is the
//!   attempt's call; none found means it was never created.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{callback_url, TwilioConfig};
use crate::adapters::twilio::reads::{credentials_refused, Credentials};
use crate::domain::call::AttemptOutcome;
use crate::domain::carrier::{outcome, Audio, CarrierCall, CarrierStatus};
use crate::metrics::metrics;
use crate::ports::{
    Begin, CallUpdate, ConcurrencyLimiter, CreateCheck, DialRequest, Lookup, PaceTerms,
    PauseReason, PlacedAttempt, ProviderError, ProviderEvent, ProviderReport, ReportSink,
    TelephonyProvider, Unplaced, AMD_PATH, VOICE_PATH,
};

/// Create refusals that are about the called number (invalid, unreachable, not permitted,
/// not verified on a trial account): the attempt fails for good.
pub(super) const NUMBER_REFUSALS: [u32; 7] = [21211, 21214, 21215, 21217, 21219, 13223, 13224];

/// Create refusals that are about what the campaign asks (its audio URL, its caller ID: one the
/// account does not own or has not verified, or not a valid number): every create of the
/// campaign would be refused alike, and no other campaign's.
pub(super) const CAMPAIGN_REFUSALS: [u32; 4] = [21205, 21210, 21212, 21213];

/// Twilio's code for credentials it does not accept, whatever the HTTP status.
pub(super) const AUTHENTICATION_ERROR: u32 = 20003;

/// How far apart the engine's and the carrier's clocks may be before the engine has read the
/// carrier's (telephony.md: up to 60 s either way).
pub(super) const SKEW: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// The error of the carrier's clock as read from its answers (whole seconds, and the request's
/// round trip).
pub(super) const KNOWN_SKEW_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(3);

/// How long the carrier's lists are given to show a call whose create timed out.
pub(super) const LIST_SETTLE: Duration = Duration::from_secs(1);

/// The longest wait between two creates of a throttled attempt.
pub(super) const THROTTLE_CEILING: Duration = Duration::from_secs(30);
/// The longest wait between two tries of a lookup that failed.
pub(super) const LOOKUP_CEILING: Duration = Duration::from_secs(30);
/// The burst the account's pace allows, as time at `cps`.
pub(super) const PACE_BURST: Duration = Duration::from_millis(50);
/// How often the refusal of the credentials is logged while it lasts.
pub(super) const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);

/// Twilio's call resource, the fields used.
#[derive(Debug, Deserialize)]
pub(super) struct CallResource {
    pub(super) sid: String,
    pub(super) status: String,
    #[serde(default)]
    pub(super) answered_by: Option<String>,
    #[serde(default)]
    pub(super) duration: Option<String>,
    #[serde(default)]
    pub(super) date_created: Option<String>,
    #[serde(default)]
    pub(super) end_time: Option<String>,
    #[serde(default)]
    pub(super) from: Option<String>,
}

impl CallResource {
    pub(super) fn carrier(&self) -> CarrierCall {
        CarrierCall {
            sid: Some(self.sid.clone()),
            status: CarrierStatus::parse(&self.status),
            sip_code: None,
            answered_by: self.answered_by.clone().filter(|by| !by.is_empty()),
            duration_secs: self.duration.as_deref().and_then(|d| d.parse().ok()),
            error_code: None,
            caller_id: self.from.clone().filter(|from| !from.is_empty()),
        }
    }

    pub(super) fn created_at(&self) -> Option<DateTime<Utc>> {
        rfc2822(self.date_created.as_deref()?)
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct CallList {
    #[serde(default)]
    pub(super) calls: Vec<CallResource>,
}

/// Twilio's error body.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ErrorBody {
    #[serde(default)]
    pub(super) code: Option<u32>,
    #[serde(default)]
    pub(super) message: Option<String>,
}

pub(super) fn rfc2822(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(text)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

/// What one create request came to.
#[derive(Debug)]
pub(super) enum Created {
    Placed(CarrierCall),
    Throttled,
    /// Refused because of the number: the attempt fails for good.
    Refused {
        status: u16,
        code: Option<u32>,
    },
    /// Refused because of the campaign's request: the campaign pauses, nothing is spent.
    CampaignRefused {
        code: Option<u32>,
        message: String,
    },
    /// Any other refusal: the attempt fails, retryably.
    Failed {
        status: u16,
        code: Option<u32>,
    },
    BadCredentials(u16),
    /// Nothing reached the carrier (no connection): safe to create again.
    NotSent(String),
    Ambiguous(String),
}

/// The carrier's clock as the engine reads it from the calls it creates: `date_created` (on
/// the carrier's clock, in whole seconds) minus when the create's answer arrived, a lower bound
/// of how far the carrier's clock is ahead.
#[derive(Default)]
pub(super) struct CarrierClock {
    /// Milliseconds the carrier's clock is ahead, once `known` (a create was answered).
    pub(super) offset_ms: std::sync::atomic::AtomicI64,
    pub(super) known: AtomicBool,
}

impl CarrierClock {
    pub(super) fn offset(&self) -> Option<chrono::TimeDelta> {
        self.known
            .load(Ordering::Acquire)
            .then(|| chrono::TimeDelta::milliseconds(self.offset_ms.load(Ordering::Acquire)))
    }

    pub(super) fn read(&self, answered: DateTime<Utc>, created: Option<DateTime<Utc>>) {
        if let Some(created) = created {
            let offset = (created - answered).num_milliseconds();
            self.offset_ms.store(offset, Ordering::Release);
            self.known.store(true, Ordering::Release);
        }
    }
}

pub(super) struct Inner {
    pub(super) clock: CarrierClock,
    pub(super) config: TwilioConfig,
    pub(super) client: reqwest::Client,
    pub(super) pacer: Arc<dyn ConcurrencyLimiter>,
    pub(super) credentials: Credentials,
}

pub struct TwilioProvider {
    pub(super) inner: Arc<Inner>,
}

impl TwilioProvider {
    pub fn new(
        config: TwilioConfig,
        pacer: Arc<dyn ConcurrencyLimiter>,
    ) -> Result<Self, ProviderError> {
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("outbound/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Unavailable(format!("http client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                clock: CarrierClock::default(),
                config,
                client,
                pacer,
                credentials: Credentials::default(),
            }),
        })
    }

    /// Checks the credentials once now (a refusal shows in `/readyz` before any dial).
    pub fn probe_in_background(&self) {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            match inner.probe().await {
                Ok(true) => inner.credentials.accept(),
                Ok(false) => inner.watch_credentials(),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot reach the carrier to check the credentials")
                }
            }
        });
    }
}

impl Inner {
    pub(super) fn account_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}",
            self.config.api_base.trim_end_matches('/'),
            self.config.account_sid
        )
    }

    pub(super) fn form(&self, request: &DialRequest) -> Vec<(&'static str, String)> {
        let config = &self.config;
        let from = request.voice.caller_id.as_ref().unwrap_or(&config.from);
        let audio = match &request.voice.audio {
            Some(Audio::VoiceUrl(url)) => ("Url", url.clone()),
            Some(Audio::Twiml(twiml)) => ("Twiml", twiml.clone()),
            // The engine speaks the message itself, from its voice webhook.
            Some(Audio::Message(_)) => (
                "Url",
                super::attempt_url(&config.public_url, VOICE_PATH, request.key(), &[]),
            ),
            None => ("Twiml", config.twiml.clone()),
        };
        let mut form = vec![
            ("To", request.phone_number.as_str().to_owned()),
            ("From", from.clone()),
            audio,
            ("StatusCallback", callback_url(&config.public_url, request)),
            ("StatusCallbackMethod", "POST".to_owned()),
        ];
        for event in ["initiated", "ringing", "answered", "completed"] {
            form.push(("StatusCallbackEvent", event.to_owned()));
        }
        form.push(("Timeout", config.ring_timeout.as_secs().max(1).to_string()));
        form.push((
            "TimeLimit",
            config.max_call_duration.as_secs().max(1).to_string(),
        ));
        match &request.voice.audio {
            // The message's own machine handling replaces the deployment's: detection runs
            // while the message plays, and the verdict comes back on its own request.
            Some(Audio::Message(message)) if message.machine.is_some() => {
                let timeout = message
                    .machine
                    .as_ref()
                    .map_or(0, |machine| machine.detection_timeout.as_secs());
                form.push(("MachineDetection", "DetectMessageEnd".to_owned()));
                form.push(("MachineDetectionTimeout", timeout.to_string()));
                form.push(("AsyncAmd", "true".to_owned()));
                form.push((
                    "AsyncAmdStatusCallback",
                    super::callback_url_at(&config.public_url, AMD_PATH, request),
                ));
                form.push(("AsyncAmdStatusCallbackMethod", "POST".to_owned()));
            }
            _ => {
                if let Some(detection) = config.machine_detection.parameter() {
                    form.push(("MachineDetection", detection.to_owned()));
                }
            }
        }
        form
    }

    pub(super) async fn create(&self, request: &DialRequest) -> Created {
        let started = Instant::now();
        let sent = self
            .client
            .post(format!("{}/Calls.json", self.account_url()))
            .basic_auth(
                &self.config.account_sid,
                Some(self.config.auth_token.expose()),
            )
            .form(&self.form(request))
            .send()
            .await;
        let created = match sent {
            Err(err) if err.is_connect() => Created::NotSent(without_url(err).to_string()),
            // The request may have reached the carrier: a timeout or a lost connection.
            Err(err) => Created::Ambiguous(without_url(err).to_string()),
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.bytes().await.unwrap_or_default();
                let error: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
                match status {
                    200 | 201 => match serde_json::from_slice::<CallResource>(&body) {
                        Ok(call) => {
                            // Stamped by the carrier before it answered, in whole seconds:
                            // `date_created - answered` never exceeds the true offset, so a
                            // lookup's window built on it only widens, never misses a call.
                            self.clock.read(Utc::now(), call.created_at());
                            Created::Placed(call.carrier())
                        }
                        // Created, but the answer cannot be read: look the call up.
                        Err(err) => Created::Ambiguous(format!("unreadable create answer: {err}")),
                    },
                    429 => Created::Throttled,
                    _ if error.code == Some(20429) => Created::Throttled,
                    401 | 403 => Created::BadCredentials(status),
                    _ if error.code == Some(AUTHENTICATION_ERROR) => {
                        Created::BadCredentials(status)
                    }
                    400..=499
                        if error
                            .code
                            .is_some_and(|code| NUMBER_REFUSALS.contains(&code)) =>
                    {
                        Created::Refused {
                            status,
                            code: error.code,
                        }
                    }
                    400..=499
                        if error
                            .code
                            .is_some_and(|code| CAMPAIGN_REFUSALS.contains(&code)) =>
                    {
                        Created::CampaignRefused {
                            code: error.code,
                            message: error.message.unwrap_or_default(),
                        }
                    }
                    400..=499 => Created::Failed {
                        status,
                        code: error.code,
                    },
                    _ => Created::Ambiguous(format!(
                        "HTTP {status}{}",
                        error.message.map(|m| format!(": {m}")).unwrap_or_default()
                    )),
                }
            }
        };
        let label = match &created {
            Created::Placed(_) => "placed",
            Created::Throttled => "throttled",
            Created::Refused { .. } => "refused",
            Created::CampaignRefused { .. } => "campaign_refused",
            Created::Failed { .. } => "failed",
            Created::BadCredentials(_) => "unauthorized",
            Created::NotSent(_) => "unreachable",
            Created::Ambiguous(_) => "ambiguous",
        };
        metrics()
            .provider_requests
            .with_label_values(&["create", label])
            .observe(started.elapsed().as_secs_f64());
        created
    }

    /// The account's pace: one create per `1/cps` across every process, with a burst of
    /// `PACE_BURST` worth of creates. A waiter wakes up to a millisecond late (the timer's
    /// resolution); without that slack, every late wake-up would be capacity lost for good
    /// (at 300 cps, a quarter of it).
    pub(super) fn pace(&self) -> PaceTerms {
        PaceTerms {
            key: format!("twilio:{}", self.config.account_sid),
            per_second: self.config.cps,
            burst: (self.config.cps * PACE_BURST.as_secs_f64()).ceil().max(1.0) as u32,
        }
    }

    /// Waits for the account's pace, for a create made again (throttled, or after an
    /// ambiguous one that was never created); the dialer paced the first.
    pub(super) async fn paced(&self) {
        let pace = self.pace();
        let mut counted = false;
        loop {
            match self
                .pacer
                .pace(&pace.key, pace.per_second, pace.burst)
                .await
            {
                Ok(None) => return,
                Ok(Some(wait)) => {
                    if !counted {
                        metrics().throttled_dials.inc();
                        counted = true;
                    }
                    tokio::time::sleep(wait).await;
                }
                Err(err) => {
                    // Without the shared bucket the pace cannot be known: wait, never exceed it.
                    tracing::warn!(error = %err, "cannot pace creates; waiting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Waits, until `deadline` at most, for the credentials and for this create's turn in the
    /// account's pace (unless `paced`: the dialer took it). Every dial that waited for the
    /// credentials would go out at once when they come back: each takes a fresh turn instead.
    /// False if the deadline came first.
    async fn take_turn(&self, paced: bool, deadline: tokio::time::Instant) -> bool {
        let ready = async {
            let waited = self.credentials_accepted().await;
            if waited || !paced {
                self.paced().await;
            }
        };
        tokio::time::timeout_at(deadline, ready).await.is_ok()
    }

    /// What became of an ambiguous create. A create still being processed when its request
    /// timed out may show in the carrier's lists a little later: it is looked for twice, a
    /// moment apart, before concluding it was never created. The deadline does not cut this
    /// short: a call that exists must be found. Past `give_up` without an answer, the call may
    /// exist, so it is handed over as placed, with no sid, and the scheduler's lookups (by
    /// number) settle it; this dialer holds nothing meanwhile.
    async fn resolve(
        self: &Arc<Self>,
        why: &str,
        request: &DialRequest,
        began: DateTime<Utc>,
        check: &dyn CreateCheck,
        give_up: tokio::time::Instant,
        retry_wait: &mut Duration,
    ) -> Resolution {
        let mut found = Ok(None);
        for _ in 0..2 {
            tokio::time::sleep(LIST_SETTLE).await;
            found = match check.other_sids(request.key()).await {
                Ok(exclude) => self.find(&request.phone_number, began, &exclude).await,
                Err(err) => Err(ProviderError::Unavailable(err.to_string())),
            };
            if !matches!(found, Ok(None)) {
                break;
            }
        }
        match found {
            Ok(Some(call)) => {
                tracing::info!(sid = %call.sid, "ambiguous create resolved: the call exists");
                Resolution::Created(call.carrier())
            }
            Ok(None) => {
                tracing::info!(reason = %why, "ambiguous create resolved: no call was created");
                Resolution::NotCreated
            }
            Err(err) if tokio::time::Instant::now() < give_up => {
                tracing::warn!(error = %err, "cannot resolve an ambiguous create yet");
                tokio::time::sleep(*retry_wait).await;
                *retry_wait = (*retry_wait * 2).min(LOOKUP_CEILING);
                Resolution::AskAgain
            }
            Err(err) => {
                tracing::warn!(error = %err, "ambiguous create still unresolved: handing it over for lookup");
                Resolution::Created(CarrierCall::default())
            }
        }
    }

    /// Places one attempt, to the end: `Placed`, `Ended` or `Unplaced` goes to `events`. The
    /// dialer took the first create's turn in the account's pace; any later create takes its
    /// own. `check` is asked right before each create.
    pub(super) async fn place(
        self: Arc<Self>,
        request: DialRequest,
        events: ReportSink,
        check: Arc<dyn CreateCheck>,
    ) {
        let mut paced = true;
        let began = Utc::now();
        let deadline = tokio::time::Instant::now() + self.config.place_deadline;
        let give_up = deadline + self.config.request_timeout;
        let floor = Duration::from_secs_f64(1.0 / self.config.cps).max(Duration::from_millis(50));
        let mut throttle_wait = floor;
        let mut retry_wait = floor;
        let mut unresolved: Option<String> = None;
        let unplaced = |request: DialRequest, why: Unplaced| {
            let _ = events.send(ProviderEvent::Unplaced { request, why });
        };
        loop {
            if let Some(why) = &unresolved {
                let resolved = self
                    .resolve(why, &request, began, &*check, give_up, &mut retry_wait)
                    .await;
                match resolved {
                    Resolution::Created(carrier) => {
                        let _ = events.send(ProviderEvent::Placed { request, carrier });
                        return;
                    }
                    Resolution::NotCreated => unresolved = None,
                    Resolution::AskAgain => continue,
                }
            }
            if !self.take_turn(paced, deadline).await {
                return unplaced(request, Unplaced::Deadline);
            }
            paced = false;
            // The store's word on this attempt now, not at its begin: a pause, a listing or
            // the end of a window that committed while this task waited is obeyed.
            match tokio::time::timeout_at(deadline, check.may_create(request.key())).await {
                Err(_) => return unplaced(request, Unplaced::Deadline),
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "cannot check the attempt before creating it");
                    if !sleep_before(deadline, retry_wait).await {
                        return unplaced(request, Unplaced::Deadline);
                    }
                    retry_wait = (retry_wait * 2).min(LOOKUP_CEILING);
                    continue;
                }
                Ok(Ok(Begin::Dial)) => {}
                Ok(Ok(answer)) => return unplaced(request, Unplaced::Checked(answer)),
            }
            if tokio::time::Instant::now() >= deadline {
                return unplaced(request, Unplaced::Deadline);
            }
            match self.create(&request).await {
                Created::Placed(carrier) => {
                    let _ = events.send(ProviderEvent::Placed { request, carrier });
                    return;
                }
                Created::Throttled => {
                    metrics().throttled_dials.inc();
                    if !sleep_before(deadline, throttle_wait).await {
                        return unplaced(request, Unplaced::Deadline);
                    }
                    throttle_wait = (throttle_wait * 2).min(THROTTLE_CEILING);
                }
                Created::Refused { status, code } => {
                    return ended(&events, request, status, code, false);
                }
                Created::Failed { status, code } => {
                    return ended(&events, request, status, code, true);
                }
                Created::CampaignRefused { code, message } => {
                    let why = campaign_refused(&request, code, message);
                    return unplaced(request, why);
                }
                Created::BadCredentials(status) => {
                    self.credentials.refuse(credentials_refused(status));
                    self.watch_credentials();
                }
                Created::NotSent(err) => {
                    tracing::warn!(error = %err, "cannot reach the carrier");
                    if !sleep_before(deadline, retry_wait).await {
                        return unplaced(request, Unplaced::Deadline);
                    }
                    retry_wait = (retry_wait * 2).min(LOOKUP_CEILING);
                }
                Created::Ambiguous(why) => {
                    tracing::warn!(reason = %why, "create call ambiguous: looking it up before any new create");
                    unresolved = Some(why);
                }
            }
        }
    }
}

/// What an ambiguous create turned out to be.
pub(super) enum Resolution {
    /// The call exists (or may: then with no sid).
    Created(CarrierCall),
    NotCreated,
    /// The carrier could not be asked; ask again.
    AskAgain,
}

/// The carrier refuses what the campaign asks of it: the campaign is paused, with the
/// carrier's words.
fn campaign_refused(request: &DialRequest, code: Option<u32>, message: String) -> Unplaced {
    tracing::warn!(
        code = code.unwrap_or_default(),
        message = %message,
        campaign_id = %request.campaign_id,
        "the carrier refuses the campaign's request: pausing the campaign"
    );
    let message = if message.is_empty() {
        "the carrier refused the campaign's request".to_owned()
    } else {
        message
    };
    Unplaced::Refused(PauseReason::carrier_refused(code, message))
}

/// Sleeps `wait`, unless `deadline` comes first; false if it did.
pub(super) async fn sleep_before(deadline: tokio::time::Instant, wait: Duration) -> bool {
    let until = tokio::time::Instant::now() + wait;
    if until >= deadline {
        tokio::time::sleep_until(deadline).await;
        return false;
    }
    tokio::time::sleep_until(until).await;
    true
}

/// Reports an attempt the carrier refused to create as failed with its code.
pub(super) fn ended(
    events: &ReportSink,
    request: DialRequest,
    status: u16,
    code: Option<u32>,
    retryable: bool,
) {
    let error = match code {
        Some(code) => format!("twilio_{code}"),
        None => format!("http_{status}"),
    };
    let _ = events.send(ProviderEvent::Ended(ProviderReport {
        request,
        outcome: AttemptOutcome::Failed { error, retryable },
        ended_at: Utc::now(),
        carrier: Some(CarrierCall {
            error_code: code,
            ..CarrierCall::default()
        }),
    }));
}

/// A request error's text without the URL, which names the account.
pub(super) fn without_url(err: reqwest::Error) -> reqwest::Error {
    err.without_url()
}

#[async_trait]
impl TelephonyProvider for TwilioProvider {
    async fn dial(
        &self,
        request: DialRequest,
        events: ReportSink,
        check: Arc<dyn CreateCheck>,
    ) -> Result<(), ProviderError> {
        tokio::spawn(self.inner.clone().place(request, events, check));
        Ok(())
    }

    async fn lookup(&self, attempt: &PlacedAttempt) -> Result<Lookup, ProviderError> {
        let call = match &attempt.sid {
            Some(sid) => self.inner.fetch(sid).await?,
            None => {
                self.inner
                    .find(
                        &attempt.phone_number,
                        attempt.placed_at,
                        &attempt.other_sids,
                    )
                    .await?
            }
        };
        let Some(call) = call else {
            return Ok(Lookup::NotFound);
        };
        let carrier = call.carrier();
        Ok(match outcome(&carrier, self.inner.config.machine_outcome) {
            // The engine's time, not the carrier's: a carrier clock that is off moves no
            // backoff and no cap window.
            Some(outcome) => Lookup::Ended {
                ended_at: Utc::now(),
                carrier,
                outcome,
            },
            None => Lookup::Live(carrier),
        })
    }

    fn unavailable(&self) -> Option<String> {
        self.inner.credentials.refusal()
    }

    fn pace(&self) -> Option<PaceTerms> {
        Some(self.inner.pace())
    }

    async fn update_call(&self, sid: &str, update: CallUpdate) -> Result<(), ProviderError> {
        self.inner.update(sid, update).await
    }
}
