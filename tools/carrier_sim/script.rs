//! What an answered call does with TwiML, as Twilio's voice engine does: it fetches the create's
//! `Url` (signed, like every request the carrier makes), then runs `<Say>`, `<Play>`, `<Pause>`,
//! `<Gather>`, `<Redirect>` and `<Hangup>` in order. A person presses a key at a Gather as the
//! `press` shares say; a machine presses nothing. A live-call update (`Twiml`) replaces what the
//! call was running. With an `AsyncAmdStatusCallback`, the verdict goes there after the beep
//! (machines) or at once (people).

use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_xml::events::Event as Xml;
use quick_xml::Reader;
use tokio_util::sync::CancellationToken;

use super::life::Outcome;
use super::Inner;
use crate::adapters::twilio::signature;

/// A verb of a TwiML document, as far as the simulator runs it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Verb {
    Say(String),
    Play(String),
    Pause(Duration),
    Gather {
        action: Option<String>,
        timeout: Duration,
        action_on_empty: bool,
        nested: Vec<Verb>,
    },
    Redirect(String),
    Hangup,
}

/// The verbs of `twiml`'s `<Response>`; anything unknown is skipped, as Twilio skips nothing
/// but the simulator has no use for it.
pub(super) fn parse(twiml: &str) -> Vec<Verb> {
    let mut reader = Reader::from_str(twiml);
    let mut stack: Vec<Vec<Verb>> = vec![Vec::new()];
    let mut gathers: Vec<(Option<String>, Duration, bool)> = Vec::new();
    let mut text = String::new();
    let mut open: Option<String> = None;
    loop {
        match reader.read_event() {
            Ok(Xml::Start(tag)) => {
                let name = String::from_utf8_lossy(tag.name().as_ref()).into_owned();
                let attr = |key: &str| {
                    tag.attributes().flatten().find_map(|a| {
                        (a.key.as_ref() == key.as_bytes())
                            .then(|| {
                                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                    .map(|v| v.into_owned())
                                    .ok()
                            })
                            .flatten()
                    })
                };
                if name == "Gather" {
                    let timeout = attr("timeout").and_then(|t| t.parse().ok()).unwrap_or(5);
                    gathers.push((
                        attr("action"),
                        Duration::from_secs(timeout),
                        attr("actionOnEmptyResult").as_deref() == Some("true"),
                    ));
                    stack.push(Vec::new());
                } else {
                    open = Some(name);
                    text.clear();
                }
            }
            Ok(Xml::Empty(tag)) => {
                let name = String::from_utf8_lossy(tag.name().as_ref()).into_owned();
                let length = tag.attributes().flatten().find_map(|a| {
                    (a.key.as_ref() == b"length")
                        .then(|| {
                            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                .ok()?
                                .parse::<u64>()
                                .ok()
                        })
                        .flatten()
                });
                let verb = match name.as_str() {
                    "Pause" => Some(Verb::Pause(Duration::from_secs(length.unwrap_or(1)))),
                    "Hangup" => Some(Verb::Hangup),
                    _ => None,
                };
                if let (Some(verb), Some(top)) = (verb, stack.last_mut()) {
                    top.push(verb);
                }
            }
            Ok(Xml::Text(t)) => {
                if let Ok(t) = t.decode() {
                    text.push_str(&t);
                }
            }
            Ok(Xml::GeneralRef(r)) => {
                // An escaped character inside a Say: `&amp;` and the like.
                let name = String::from_utf8_lossy(r.as_ref()).into_owned();
                let c = match name.as_str() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    _ => "",
                };
                text.push_str(c);
            }
            Ok(Xml::End(tag)) => {
                let name = String::from_utf8_lossy(tag.name().as_ref()).into_owned();
                let verb = match (name.as_str(), open.take()) {
                    ("Say", Some(_)) => Some(Verb::Say(std::mem::take(&mut text))),
                    ("Play", Some(_)) => Some(Verb::Play(std::mem::take(&mut text))),
                    ("Redirect", Some(_)) => Some(Verb::Redirect(std::mem::take(&mut text))),
                    ("Gather", _) => {
                        let nested = stack.pop().unwrap_or_default();
                        gathers
                            .pop()
                            .map(|(action, timeout, action_on_empty)| Verb::Gather {
                                action,
                                timeout,
                                action_on_empty,
                                nested,
                            })
                    }
                    _ => None,
                };
                if let (Some(verb), Some(top)) = (verb, stack.last_mut()) {
                    top.push(verb);
                }
            }
            Ok(Xml::Eof) | Err(_) => break,
            Ok(_) => {}
        }
    }
    stack.into_iter().next().unwrap_or_default()
}

/// One answered call running its TwiML.
pub(super) struct Script {
    pub inner: Arc<Inner>,
    pub sid: String,
    pub from: String,
    pub to: String,
    pub outcome: Outcome,
    pub hangup: CancellationToken,
    /// Draws the callee's keys, seeded from the call.
    pub rng: rand::rngs::StdRng,
}

/// How a script ended.
pub(super) enum Ran {
    /// The document ended or hung up: the call is over, completed.
    Done,
    /// Ended through the REST API.
    HungUp,
    /// The simulator is stopping.
    Stopped,
}

enum Waited {
    Elapsed,
    Updated,
    Ended(Ran),
}

impl Script {
    fn scaled(&self, duration: Duration) -> Duration {
        duration.mul_f64(self.inner.config.time_scale.max(0.0))
    }

    /// The number of live-call updates the call has had.
    fn updates(&self) -> usize {
        self.inner
            .state()
            .get(&self.sid)
            .map_or(0, |record| record.call.twiml_updates.len())
    }

    fn note(&self, heard: Option<String>, pressed: Option<char>) {
        let mut state = self.inner.state();
        if let Some(record) = state.get_mut(&self.sid) {
            record.call.heard.extend(heard);
            record.call.pressed.extend(pressed);
        }
    }

    /// Waits `duration` (scaled), waking for a live-call update or the call's end.
    async fn wait(&self, duration: Duration, seen: usize) -> Waited {
        let until = Instant::now() + self.scaled(duration);
        loop {
            if self.updates() > seen {
                return Waited::Updated;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Waited::Elapsed;
            }
            tokio::select! {
                () = self.inner.cancel.cancelled() => return Waited::Ended(Ran::Stopped),
                () = self.hangup.cancelled() => return Waited::Ended(Ran::HungUp),
                () = tokio::time::sleep(left.min(Duration::from_millis(20))) => {}
            }
        }
    }

    /// Posts the carrier's signed request to `url` and answers the TwiML it gets back.
    async fn fetch(&self, url: &str, extra: &[(&str, &str)]) -> Option<String> {
        let mut params: Vec<(String, String)> = vec![
            ("CallSid".into(), self.sid.clone()),
            ("AccountSid".into(), self.inner.config.account_sid.clone()),
            ("From".into(), self.from.clone()),
            ("To".into(), self.to.clone()),
            ("CallStatus".into(), "in-progress".into()),
            ("Direction".into(), "outbound-api".into()),
        ];
        params.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let signed = signature::sign(&self.inner.token(), url, &params);
        let answer = self
            .inner
            .client
            .post(url)
            .header("X-Twilio-Signature", signed)
            .form(&params)
            .send()
            .await
            .ok()?;
        if !answer.status().is_success() {
            tracing::debug!(sid = %self.sid, status = answer.status().as_u16(), "twiml fetch refused");
            return None;
        }
        answer.text().await.ok()
    }

    /// The key the callee presses at a Gather, if any.
    fn press(&mut self) -> Option<char> {
        if self.outcome != Outcome::Human {
            return None;
        }
        let draw: f64 = rand::Rng::random(&mut self.rng);
        let mut sum = 0.0;
        for (key, share) in &self.inner.config.press {
            sum += share;
            if draw < sum {
                return Some(*key);
            }
        }
        None
    }

    /// Says, plays or pauses `verb`; any other verb takes no time here.
    async fn one(&self, verb: &Verb, seen: usize) -> Waited {
        match verb {
            Verb::Say(text) => {
                let words = text.split_whitespace().count().max(1) as f64;
                self.note(Some(text.clone()), None);
                let speaking =
                    Duration::from_secs_f64(words / self.inner.config.speech_wps.max(0.1));
                self.wait(speaking, seen).await
            }
            Verb::Play(url) => {
                self.note(Some(format!("[{url}]")), None);
                self.wait(Duration::from_secs(1), seen).await
            }
            Verb::Pause(length) => self.wait(*length, seen).await,
            _ => Waited::Elapsed,
        }
    }

    /// Runs the call from its voice URL until its TwiML ends or it is ended.
    pub async fn run(mut self, url: String) -> Ran {
        let mut document = self.fetch(&url, &[]).await;
        let mut seen = 0;
        'documents: while let Some(twiml) = document.take() {
            for verb in parse(&twiml) {
                let waited = match verb {
                    Verb::Hangup => return Ran::Done,
                    Verb::Redirect(url) => {
                        document = self.fetch(&url, &[]).await;
                        continue 'documents;
                    }
                    Verb::Gather {
                        action,
                        timeout,
                        action_on_empty,
                        nested,
                    } => {
                        let mut waited = Waited::Elapsed;
                        for part in &nested {
                            waited = self.one(part, seen).await;
                            if !matches!(waited, Waited::Elapsed) {
                                break;
                            }
                        }
                        if matches!(waited, Waited::Elapsed) {
                            // A person presses after hearing the prompt; silence lasts the
                            // Gather's timeout.
                            let key = self.press();
                            waited = match key {
                                Some(_) => self.wait(Duration::from_millis(300), seen).await,
                                None => self.wait(timeout, seen).await,
                            };
                            let action = action.filter(|_| key.is_some() || action_on_empty);
                            if let (Waited::Elapsed, Some(action)) = (&waited, action) {
                                self.note(None, key);
                                let digits = key.map(String::from).unwrap_or_default();
                                document = self.fetch(&action, &[("Digits", &digits)]).await;
                                continue 'documents;
                            }
                        }
                        waited
                    }
                    other => self.one(&other, seen).await,
                };
                match waited {
                    Waited::Elapsed => {}
                    Waited::Ended(ran) => return ran,
                    Waited::Updated => {
                        seen = self.updates();
                        document = self
                            .inner
                            .state()
                            .get(&self.sid)
                            .and_then(|record| record.call.twiml_updates.last().cloned());
                        continue 'documents;
                    }
                }
            }
            // The document ran out: the call ends, as Twilio ends it.
            return Ran::Done;
        }
        Ran::Done
    }
}

/// Sends the asynchronous verdict on who answered, after the machine's beep or at once for a
/// person, while the call is live.
pub(super) async fn send_verdict(inner: Arc<Inner>, sid: String, url: String, outcome: Outcome) {
    let (answered_by, after) = match outcome {
        Outcome::Machine => ("machine_end_beep", inner.config.beep_after),
        _ => ("human", Duration::from_millis(500)),
    };
    tokio::select! {
        () = inner.cancel.cancelled() => return,
        () = tokio::time::sleep(after.mul_f64(inner.config.time_scale.max(0.0))) => {}
    }
    let live = inner
        .state()
        .get(&sid)
        .is_some_and(|record| !record.call.is_final());
    if !live {
        return;
    }
    let params: Vec<(String, String)> = vec![
        ("CallSid".into(), sid.clone()),
        ("AccountSid".into(), inner.config.account_sid.clone()),
        ("AnsweredBy".into(), answered_by.into()),
        (
            "MachineDetectionDuration".into(),
            after.as_millis().to_string(),
        ),
    ];
    let signed = signature::sign(&inner.token(), &url, &params);
    let sent = inner
        .client
        .post(&url)
        .header("X-Twilio-Signature", signed)
        .form(&params)
        .send()
        .await;
    if let Err(err) = sent {
        tracing::debug!(sid, error = %err, "verdict not delivered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_parses_into_its_verbs() {
        let verbs = parse(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Gather input=\"dtmf\" \
             numDigits=\"1\" timeout=\"5\" finishOnKey=\"\" actionOnEmptyResult=\"true\" \
             action=\"http://x/g?a=1&amp;b=2\"><Say>Hello &amp; welcome.</Say>\
             <Play>https://x/a.mp3</Play></Gather><Pause length=\"3\"/><Hangup/></Response>",
        );
        assert_eq!(
            verbs,
            vec![
                Verb::Gather {
                    action: Some("http://x/g?a=1&b=2".into()),
                    timeout: Duration::from_secs(5),
                    action_on_empty: true,
                    nested: vec![
                        Verb::Say("Hello & welcome.".into()),
                        Verb::Play("https://x/a.mp3".into())
                    ],
                },
                Verb::Pause(Duration::from_secs(3)),
                Verb::Hangup,
            ]
        );
    }
}
