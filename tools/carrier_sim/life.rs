//! A call's life after its create (ringing, answer, end) and the status callbacks it sends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::state::Ending;
use super::{Counters, Inner, SimCall};
use crate::adapters::twilio::signature;

/// How the call will end, drawn at create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Human,
    Machine,
    Busy,
    NoAnswer,
    FailedPermanent,
    FailedTransient,
    /// The called party's network rejects the caller ID (SIP 608).
    Blocked,
}

impl Outcome {
    fn answers(self) -> bool {
        matches!(self, Outcome::Human | Outcome::Machine)
    }

    /// The ending of a call that was never answered.
    fn unanswered(self) -> Ending {
        let (status, sip_code) = match self {
            Outcome::Busy => ("busy", 486),
            Outcome::FailedPermanent => ("failed", 404),
            Outcome::FailedTransient => ("failed", 503),
            Outcome::Blocked => ("failed", 608),
            Outcome::Human | Outcome::Machine | Outcome::NoAnswer => ("no-answer", 487),
        };
        Ending {
            status,
            sip_code,
            duration_secs: 0,
            answered_by: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Detection {
    Enable,
    DetectMessageEnd,
}

impl Detection {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "Enable" => Some(Detection::Enable),
            "DetectMessageEnd" => Some(Detection::DetectMessageEnd),
            _ => None,
        }
    }

    pub fn answered_by(detection: Option<Self>, outcome: Outcome) -> Option<String> {
        let detection = detection?;
        let value = match (outcome, detection) {
            (Outcome::Machine, Detection::Enable) => "machine_start",
            (Outcome::Machine, Detection::DetectMessageEnd) => "machine_end_beep",
            _ => "human",
        };
        Some(value.to_owned())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Event {
    Initiated,
    Ringing,
    Answered,
    Completed,
}

impl Event {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "initiated" => Some(Event::Initiated),
            "ringing" => Some(Event::Ringing),
            "answered" => Some(Event::Answered),
            "completed" => Some(Event::Completed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Post,
    Get,
}

/// Where and how the call's status callbacks go, and what the knobs do to them.
#[derive(Debug, Clone)]
pub(super) struct Callbacks {
    pub url: String,
    pub method: Method,
    pub events: Vec<Event>,
    pub reorder: bool,
    pub drop_final: bool,
    pub duplicate_rate: f64,
    /// Seeds the call's own generator, so a seeded run repeats its duplicates and shuffles.
    pub seed: u64,
}

#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub sid: String,
    /// How long the call waits in the carrier's queue before it rings.
    pub queue: Duration,
    pub outcome: Outcome,
    pub ring: Duration,
    pub talk: Duration,
    pub detection: Option<Detection>,
    pub callbacks: Option<Callbacks>,
    /// Seeds the callee's keys.
    pub seed: u64,
}

enum Pause {
    Elapsed,
    HungUp,
    Stopped,
}

async fn pause(inner: &Inner, hangup: &CancellationToken, duration: Duration) -> Pause {
    tokio::select! {
        () = inner.cancel.cancelled() => Pause::Stopped,
        () = hangup.cancelled() => Pause::HungUp,
        () = tokio::time::sleep(duration) => Pause::Elapsed,
    }
}

/// Drives one call from its create to its final status, emitting the requested callbacks.
pub(super) async fn run(inner: Arc<Inner>, plan: Plan, call: SimCall, hangup: CancellationToken) {
    let mut out = Emitter::start(&inner, &plan, call);
    match pause(&inner, &hangup, plan.queue).await {
        Pause::Stopped => return,
        Pause::HungUp => return out.emit_current_final(&inner, &plan.sid),
        Pause::Elapsed => {}
    }
    out.emit(&inner, Event::Initiated);
    if !advance(&inner, &mut out, &plan.sid, "ringing") {
        return;
    }
    out.emit(&inner, Event::Ringing);
    match pause(&inner, &hangup, plan.ring).await {
        Pause::Stopped => return,
        Pause::HungUp => return out.emit_current_final(&inner, &plan.sid),
        Pause::Elapsed => {}
    }
    let ending = if plan.outcome.answers() {
        if !advance(&inner, &mut out, &plan.sid, "in-progress") {
            return;
        }
        out.emit(&inner, Event::Answered);
        let answered = std::time::Instant::now();
        if let Some(url) = out.call.amd_callback.clone() {
            inner.runtime.spawn(super::script::send_verdict(
                inner.clone(),
                plan.sid.clone(),
                url,
                plan.outcome,
            ));
        }
        let talked = match out.call.voice_url.clone().filter(|_| inner.config.speak) {
            Some(url) => {
                let script = super::script::Script {
                    inner: inner.clone(),
                    sid: plan.sid.clone(),
                    from: out.call.from.clone(),
                    to: out.call.to.clone(),
                    outcome: plan.outcome,
                    hangup: hangup.clone(),
                    rng: rand::SeedableRng::seed_from_u64(plan.seed),
                };
                match script.run(url).await {
                    super::script::Ran::Done => Pause::Elapsed,
                    super::script::Ran::HungUp => Pause::HungUp,
                    super::script::Ran::Stopped => Pause::Stopped,
                }
            }
            None => pause(&inner, &hangup, plan.talk).await,
        };
        match talked {
            Pause::Stopped => return,
            Pause::HungUp => return out.emit_current_final(&inner, &plan.sid),
            Pause::Elapsed => {}
        }
        let talk = if out.call.voice_url.is_some() && inner.config.speak {
            answered.elapsed()
        } else {
            plan.talk
        };
        Ending {
            status: "completed",
            sip_code: 200,
            duration_secs: whole_seconds(talk),
            answered_by: Detection::answered_by(plan.detection, plan.outcome),
        }
    } else {
        plan.outcome.unanswered()
    };
    match finish(&inner, &plan.sid, &ending) {
        Some(call) => {
            out.call = call;
            out.emit(&inner, Event::Completed);
        }
        None => out.emit_current_final(&inner, &plan.sid),
    }
}

/// Moves the call on; when it was ended meanwhile (REST hang-up), emits that end instead and
/// answers false.
fn advance(inner: &Inner, out: &mut Emitter, sid: &str, status: &str) -> bool {
    let advanced = {
        let mut state = inner.state();
        let advanced = state.advance(sid, status, Utc::now());
        if let Some(record) = state.get(sid) {
            out.call = record.call.clone();
        }
        advanced
    };
    if !advanced {
        out.emit_current_final(inner, sid);
    }
    advanced
}

/// Ends a live call (the one place besides the REST hang-up), writing its journal line.
pub(super) fn finish(inner: &Inner, sid: &str, ending: &Ending) -> Option<SimCall> {
    let call = inner.state().finish(sid, ending, Utc::now())?;
    if let Some(journal) = &inner.journal {
        journal.write("end", &call, std::time::SystemTime::now());
    }
    tracing::debug!(
        sid,
        status = ending.status,
        sip_code = ending.sip_code,
        "call ended"
    );
    Some(call)
}

/// CallDuration: whole seconds, rounded up like the carrier bills.
pub(super) fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

struct Outgoing {
    sequence: u64,
    params: Vec<(String, String)>,
    signature: String,
    is_final: bool,
}

/// Numbers the requested events in the order they happen and hands them to the call's
/// delivery task.
struct Emitter {
    call: SimCall,
    callbacks: Option<(Callbacks, mpsc::UnboundedSender<Outgoing>)>,
    sequence: u64,
    final_emitted: bool,
}

impl Emitter {
    fn start(inner: &Arc<Inner>, plan: &Plan, call: SimCall) -> Self {
        let callbacks = plan.callbacks.clone().map(|callbacks| {
            let (tx, rx) = mpsc::unbounded_channel();
            let task = Delivery {
                inner: inner.clone(),
                sid: plan.sid.clone(),
                callbacks: callbacks.clone(),
                rng: rand::SeedableRng::seed_from_u64(callbacks.seed),
            };
            inner.runtime.spawn(task.run(rx));
            (callbacks, tx)
        });
        Self {
            call,
            callbacks,
            sequence: 0,
            final_emitted: false,
        }
    }

    /// Emits the call's final event from its record, for a call ended through the REST API.
    fn emit_current_final(&mut self, inner: &Inner, sid: &str) {
        if let Some(record) = inner.state().get(sid) {
            self.call = record.call.clone();
        }
        if self.call.is_final() {
            self.emit(inner, Event::Completed);
        }
    }

    fn emit(&mut self, inner: &Inner, event: Event) {
        let Some((callbacks, tx)) = &self.callbacks else {
            return;
        };
        if !callbacks.events.contains(&event) || self.final_emitted {
            return;
        }
        let is_final = event == Event::Completed;
        self.final_emitted = is_final;
        let call = &self.call;
        let status = match event {
            Event::Initiated => "initiated",
            Event::Ringing => "ringing",
            Event::Answered => "in-progress",
            Event::Completed => call.status.as_str(),
        };
        let mut params: Vec<(String, String)> = vec![
            ("CallSid".into(), call.sid.clone()),
            ("AccountSid".into(), inner.config.account_sid.clone()),
            ("From".into(), call.from.clone()),
            ("To".into(), call.to.clone()),
            ("CallStatus".into(), status.to_owned()),
            ("Direction".into(), "outbound-api".into()),
            ("ApiVersion".into(), "2010-04-01".into()),
            ("CallbackSource".into(), "call-progress-events".into()),
            (
                "Timestamp".into(),
                inner.carrier_time(Utc::now()).to_rfc2822(),
            ),
            ("SequenceNumber".into(), self.sequence.to_string()),
        ];
        if is_final {
            params.push((
                "CallDuration".into(),
                call.duration_secs.unwrap_or(0).to_string(),
            ));
            if let Some(sip) = call.sip_code {
                params.push(("SipResponseCode".into(), sip.to_string()));
            }
            if let Some(answered_by) = &call.answered_by {
                params.push(("AnsweredBy".into(), answered_by.clone()));
            }
            if call.status == "failed" {
                let code = if call.sip_code == Some(404) {
                    "32009"
                } else {
                    "32011"
                };
                params.push(("ErrorCode".into(), code.into()));
            }
        }
        // Signed once, with the token current when the event happens: a duplicate is the same
        // request again, byte for byte.
        let token = inner.token();
        let signature = match callbacks.method {
            Method::Post => signature::sign(&token, &callbacks.url, &params),
            Method::Get => signature::sign(&token, &get_url(&callbacks.url, &params), &[]),
        };
        let outgoing = Outgoing {
            sequence: self.sequence,
            params,
            signature,
            is_final,
        };
        self.sequence += 1;
        // The delivery task ends only when the simulator stops; nothing is left to send then.
        let _ = tx.send(outgoing);
    }
}

/// A GET callback carries its parameters in the query, appended to the configured URL.
fn get_url(url: &str, params: &[(String, String)]) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{query}")
}

/// How long a callback is retried before it is abandoned.
const DELIVERY_WINDOW: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

enum Sent {
    Delivered,
    /// Answered 4xx: the receiver refused it, so it is not resent.
    Rejected,
    Abandoned,
    Stopped,
}

/// Sends one call's callbacks, one at a time, so that without `reorder` they arrive in order.
struct Delivery {
    inner: Arc<Inner>,
    sid: String,
    callbacks: Callbacks,
    rng: StdRng,
}

impl Delivery {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
        let cancel = self.inner.cancel.clone();
        if self.callbacks.reorder {
            // Holding everything back until the call has ended is what lets the final event
            // overtake the earlier ones.
            let mut held = Vec::new();
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    next = rx.recv() => match next {
                        Some(outgoing) => held.push(outgoing),
                        None => break,
                    },
                }
            }
            if held.len() > 1 {
                held.shuffle(&mut self.rng);
                if held.windows(2).all(|w| w[0].sequence < w[1].sequence) {
                    held.reverse();
                }
            }
            for outgoing in held {
                if !self.send(outgoing).await {
                    return;
                }
            }
        } else {
            loop {
                let next = tokio::select! {
                    () = cancel.cancelled() => return,
                    next = rx.recv() => next,
                };
                let Some(outgoing) = next else {
                    return;
                };
                if !self.send(outgoing).await {
                    return;
                }
            }
        }
    }

    /// False when the simulator stopped.
    async fn send(&mut self, outgoing: Outgoing) -> bool {
        let counters = &self.inner.counters;
        if outgoing.is_final && self.callbacks.drop_final {
            Counters::bump(&counters.dropped_finals);
            tracing::debug!(sid = %self.sid, "final callback withheld");
            return true;
        }
        let copies = if self.rng.random::<f64>() < self.callbacks.duplicate_rate {
            Counters::bump(&counters.duplicated);
            2
        } else {
            1
        };
        for _ in 0..copies {
            match self.deliver(&outgoing).await {
                Sent::Stopped => return false,
                Sent::Delivered if outgoing.is_final => {
                    self.inner.state().mark_final_callback_sent(&self.sid);
                }
                Sent::Delivered | Sent::Rejected | Sent::Abandoned => {}
            }
        }
        true
    }

    /// One callback, retried on connection errors and 5xx answers for the delivery window.
    async fn deliver(&self, outgoing: &Outgoing) -> Sent {
        let inner = &self.inner;
        let counters = &inner.counters;
        let url = &self.callbacks.url;
        let deadline = Instant::now() + DELIVERY_WINDOW;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let request = match self.callbacks.method {
                Method::Post => inner.client.post(url).form(&outgoing.params),
                Method::Get => inner.client.get(get_url(url, &outgoing.params)),
            }
            .header("X-Twilio-Signature", &outgoing.signature);
            Counters::bump(&counters.requests);
            let answer = tokio::select! {
                () = inner.cancel.cancelled() => return Sent::Stopped,
                answer = request.send() => answer,
            };
            let failure = match answer {
                Ok(response) if response.status().is_client_error() => {
                    Counters::bump(&counters.rejected);
                    tracing::debug!(
                        sid = %self.sid,
                        sequence = outgoing.sequence,
                        status = response.status().as_u16(),
                        "callback rejected"
                    );
                    return Sent::Rejected;
                }
                Ok(response) if !response.status().is_server_error() => {
                    Counters::bump(&counters.delivered);
                    return Sent::Delivered;
                }
                Ok(response) => format!("http {}", response.status().as_u16()),
                Err(err) => err.to_string(),
            };
            Counters::bump(&counters.failed);
            if Instant::now() + backoff > deadline {
                Counters::bump(&counters.given_up);
                tracing::warn!(
                    sid = %self.sid,
                    sequence = outgoing.sequence,
                    error = %failure,
                    "callback abandoned after retrying"
                );
                return Sent::Abandoned;
            }
            tracing::debug!(
                sid = %self.sid,
                sequence = outgoing.sequence,
                error = %failure,
                backoff_ms = backoff.as_millis() as u64,
                "callback failed, retrying"
            );
            tokio::select! {
                () = inner.cancel.cancelled() => return Sent::Stopped,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::ZERO), 0);
        assert_eq!(whole_seconds(Duration::from_millis(20)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(2)), 2);
        assert_eq!(whole_seconds(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn get_callbacks_append_their_parameters_to_the_query() {
        let params = vec![("CallStatus".to_owned(), "in progress".to_owned())];
        assert_eq!(
            get_url("http://h/cb?call=1", &params),
            "http://h/cb?call=1&CallStatus=in+progress"
        );
        assert_eq!(
            get_url("http://h/cb", &params),
            "http://h/cb?CallStatus=in+progress"
        );
    }
}
