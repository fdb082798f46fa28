//! The webhook endpoint every scenario subscribes, and its check: what the API reports finished
//! reached the receiver, signed, whatever the fault.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;

use super::checks::RecordedCall;
use crate::chaos::{ChaosError, Verdict};
use crate::domain::webhook::Secret;
use crate::loadtest::client::ApiClient;
use crate::webhook_receiver::{Behaviour, Received, WebhookReceiver};

const PATH: &str = "/hooks";

pub(super) struct Hooks {
    receiver: WebhookReceiver,
}

impl Hooks {
    /// Starts a receiver and subscribes it to every event.
    pub(super) async fn subscribe(client: &ApiClient) -> Result<Self, ChaosError> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|err| ChaosError::Setup(format!("receiver port: {err}")))?;
        let receiver = WebhookReceiver::start(listener)
            .map_err(|err| ChaosError::Setup(format!("webhook receiver: {err}")))?;
        let endpoint = json!({"url": format!("{}{PATH}", receiver.url()), "events": ["*"]});
        let created = client
            .expect(
                "POST /api/v1/webhooks",
                reqwest::Method::POST,
                "/api/v1/webhooks",
                Some(&endpoint),
                201,
            )
            .await
            .map_err(|err| ChaosError::Api(err.to_string()))?;
        let secret = created["secret"]
            .as_str()
            .and_then(|s| Secret::parse(s).ok())
            .ok_or_else(|| ChaosError::Api(format!("no secret in {created}")))?;
        receiver.expect_secret(PATH, secret);
        Ok(Self { receiver })
    }

    /// The receiver answers 503 for `outage`, then takes deliveries again.
    pub(super) fn down_for(&self, outage: Duration) {
        self.receiver.set(PATH, Behaviour::Fail(503));
        let receiver = self.receiver.clone();
        tokio::spawn(async move {
            tokio::time::sleep(outage).await;
            receiver.set(PATH, Behaviour::Accept);
        });
    }

    /// Waits (at most `limit`) until every attempt and call of `recorded` and each of the
    /// `campaigns` completions was delivered; the verdict of what was.
    pub(super) async fn wait_for_all(
        &self,
        recorded: &[RecordedCall],
        campaigns: usize,
        limit: Duration,
    ) -> Verdict {
        let deadline = Instant::now() + limit;
        loop {
            let accepted = self.receiver.accepted(PATH);
            let missing = missing(recorded, campaigns, &accepted);
            let unsigned = accepted.iter().filter(|r| !r.signed).count();
            let done = missing.is_empty() && unsigned == 0;
            if done || Instant::now() > deadline {
                return Verdict::of(
                    done,
                    format!(
                        "{} delivered, {unsigned} unsigned; missing: {}",
                        accepted.len(),
                        missing.join(", ")
                    ),
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(super) async fn stop(&self) {
        self.receiver.stop().await;
    }
}

/// What `recorded` says finished and `accepted` lacks.
fn missing(recorded: &[RecordedCall], campaigns: usize, accepted: &[Received]) -> Vec<String> {
    let mut attempts = HashSet::new();
    let mut calls = HashSet::new();
    let mut completed = 0;
    for received in accepted {
        let data = &received.body["data"];
        let text = |key: &str| data[key].as_str().unwrap_or_default().to_owned();
        match received.body["type"].as_str() {
            Some("attempt.finished") => {
                attempts.insert((text("call_id"), data["attempt"].as_u64().unwrap_or(0)));
            }
            Some("call.finished") => {
                calls.insert(text("call_id"));
            }
            Some("campaign.status_changed") if data["to"] == "completed" => completed += 1,
            _ => {}
        }
    }
    let mut missing = Vec::new();
    for call in recorded {
        if !calls.contains(&call.id) {
            missing.push(format!("call.finished {}", call.id));
        }
        for (attempt, _) in &call.attempts {
            if !attempts.contains(&(call.id.clone(), u64::from(*attempt))) {
                missing.push(format!("attempt.finished {} #{attempt}", call.id));
            }
        }
    }
    if completed < campaigns {
        missing.push(format!("{} of {campaigns} completions", completed));
    }
    missing.truncate(20);
    missing
}
