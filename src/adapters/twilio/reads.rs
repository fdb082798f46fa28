//! What the provider reads back from the carrier: a call by its id, or by its number and
//! the time its attempt began; and whether the account's credentials are accepted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::adapters::twilio::provider::{
    rfc2822, without_url, CallList, CallResource, ErrorBody, Inner, KNOWN_SKEW_MARGIN,
    REFUSAL_LOG_EVERY, SKEW,
};
use crate::domain::phone::PhoneNumber;
use crate::metrics::metrics;
use crate::ports::{CallUpdate, ProviderError};

/// Whether the carrier accepts the account's credentials, as last seen.
#[derive(Default)]
pub(super) struct Credentials {
    pub(super) refused: Mutex<Option<String>>,
    pub(super) logged_at: Mutex<Option<Instant>>,
    pub(super) probing: AtomicBool,
    pub(super) accepted: tokio::sync::Notify,
}

impl Credentials {
    pub(super) fn refusal(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    pub(super) fn refuse(&self, reason: String) {
        let mut logged = self
            .logged_at
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if logged.is_none_or(|at| at.elapsed() >= REFUSAL_LOG_EVERY) {
            tracing::error!(reason = %reason, "the carrier refuses the credentials: dialing waits");
            *logged = Some(Instant::now());
        }
        *self
            .refused
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = Some(reason);
    }

    pub(super) fn accept(&self) {
        let was = self
            .refused
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
        if was.is_some() {
            tracing::info!("the carrier accepts the credentials again: dialing resumes");
        }
        self.accepted.notify_waiters();
    }
}

impl Inner {
    /// The attempt's call, if the carrier created one: the newest call to the number that the
    /// carrier created no earlier than the attempt began and that had not ended before then,
    /// other than `exclude` (the call's other attempts' calls). Read without a time filter:
    /// Twilio's `StartTime` filter reads a call's start time, which a call still queued at the
    /// carrier lacks, and compares dates. Times are compared on the carrier's clock, as far as
    /// the engine knows it from the carrier's own answers; until it does, within `SKEW` either
    /// way. Not filtered by caller id, which a campaign may set: the deployment has one live
    /// call per number, so a call to it since then is this attempt's.
    pub(super) async fn find(
        self: &Arc<Self>,
        to: &PhoneNumber,
        since: DateTime<Utc>,
        exclude: &[String],
    ) -> Result<Option<CallResource>, ProviderError> {
        let started = Instant::now();
        let (since, margin) = match self.clock.offset() {
            Some(offset) => (since + offset, KNOWN_SKEW_MARGIN),
            None => (since, SKEW),
        };
        let earliest = since - margin;
        let response = self
            .client
            .get(format!("{}/Calls.json", self.account_url()))
            .basic_auth(
                &self.config.account_sid,
                Some(self.config.auth_token.expose()),
            )
            .query(&[("To", to.as_str()), ("PageSize", "50")])
            .send()
            .await;
        let result = match response {
            Err(err) => Err(ProviderError::Unavailable(without_url(err).to_string())),
            Ok(response) if response.status().is_success() => response
                .json::<CallList>()
                .await
                .map_err(|e| {
                    ProviderError::Unavailable(format!("unreadable call list: {}", without_url(e)))
                })
                .map(|list| {
                    list.calls
                        .into_iter()
                        .filter(|call| !exclude.contains(&call.sid))
                        .filter(|call| call.created_at().is_some_and(|at| at >= earliest))
                        // Ended before the attempt began: an earlier call to the number.
                        .filter(|call| {
                            call.end_time
                                .as_deref()
                                .and_then(rfc2822)
                                .is_none_or(|ended| ended >= earliest)
                        })
                        .max_by_key(|call| call.created_at())
                }),
            Ok(response) => Err(self.failed_read(response.status().as_u16())),
        };
        metrics()
            .provider_requests
            .with_label_values(&["list", if result.is_ok() { "ok" } else { "error" }])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    pub(super) async fn fetch(
        self: &Arc<Self>,
        sid: &str,
    ) -> Result<Option<CallResource>, ProviderError> {
        let started = Instant::now();
        let response = self
            .client
            .get(format!("{}/Calls/{sid}.json", self.account_url()))
            .basic_auth(
                &self.config.account_sid,
                Some(self.config.auth_token.expose()),
            )
            .send()
            .await;
        let result = match response {
            Err(err) => Err(ProviderError::Unavailable(without_url(err).to_string())),
            Ok(response) if response.status().as_u16() == 404 => Ok(None),
            Ok(response) if response.status().is_success() => response
                .json::<CallResource>()
                .await
                .map(Some)
                .map_err(|e| {
                    ProviderError::Unavailable(format!("unreadable call: {}", without_url(e)))
                }),
            Ok(response) => Err(self.failed_read(response.status().as_u16())),
        };
        metrics()
            .provider_requests
            .with_label_values(&["fetch", if result.is_ok() { "ok" } else { "error" }])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// Changes a live call (`POST .../Calls/{Sid}.json`): `Twiml` to say something else, or
    /// `Status=completed` to end it. A call that is already over is `Rejected`.
    pub(super) async fn update(
        self: &Arc<Self>,
        sid: &str,
        update: CallUpdate,
    ) -> Result<(), ProviderError> {
        let started = Instant::now();
        let form = match update {
            CallUpdate::Twiml(twiml) => [("Twiml", twiml)],
            CallUpdate::Hangup => [("Status", "completed".to_owned())],
        };
        let response = self
            .client
            .post(format!("{}/Calls/{sid}.json", self.account_url()))
            .basic_auth(
                &self.config.account_sid,
                Some(self.config.auth_token.expose()),
            )
            .form(&form)
            .send()
            .await;
        let result = match response {
            Err(err) => Err(ProviderError::Unavailable(without_url(err).to_string())),
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.bytes().await.unwrap_or_default();
                let error: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
                match status {
                    400 | 404 => Err(ProviderError::Rejected(format!(
                        "the carrier cannot change the call ({status}, code {:?})",
                        error.code
                    ))),
                    _ => Err(self.failed_read(status)),
                }
            }
        };
        metrics()
            .provider_requests
            .with_label_values(&["update", if result.is_ok() { "ok" } else { "error" }])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// A read the carrier refused. Refused credentials stop dialing until the account's probe
    /// answers 200 again, so the prober starts here too: a lookup's 401 never stops dialing
    /// for good.
    pub(super) fn failed_read(self: &Arc<Self>, status: u16) -> ProviderError {
        if matches!(status, 401 | 403) {
            self.credentials.refuse(credentials_refused(status));
            self.watch_credentials();
        }
        ProviderError::Unavailable(format!("carrier answered HTTP {status}"))
    }

    /// Whether the carrier accepts the credentials (`GET` of the account).
    pub(super) async fn probe(&self) -> Result<bool, ProviderError> {
        let response = self
            .client
            .get(format!("{}.json", self.account_url()))
            .basic_auth(
                &self.config.account_sid,
                Some(self.config.auth_token.expose()),
            )
            .send()
            .await
            .map_err(|e| ProviderError::Unavailable(without_url(e).to_string()))?;
        let status = response.status().as_u16();
        match status {
            200..=299 => Ok(true),
            401 | 403 => {
                self.credentials.refuse(credentials_refused(status));
                Ok(false)
            }
            _ => Err(ProviderError::Unavailable(format!(
                "carrier answered HTTP {status}"
            ))),
        }
    }

    /// Probes the account every `probe_interval` until the carrier accepts the credentials,
    /// then lets dialing try again (a create refused for another reason is refused again, and
    /// waits another round); one prober per process.
    pub(super) fn watch_credentials(self: &Arc<Self>) {
        if self.credentials.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(inner.config.probe_interval).await;
                match inner.probe().await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(err) => tracing::warn!(error = %err, "cannot probe the carrier account"),
                }
            }
            inner.credentials.probing.store(false, Ordering::Release);
            inner.credentials.accept();
        });
    }

    /// Waits until the carrier accepts the credentials; true if it had to wait.
    pub(super) async fn credentials_accepted(&self) -> bool {
        let mut waited = false;
        loop {
            let accepted = self.credentials.accepted.notified();
            if self.credentials.refusal().is_none() {
                return waited;
            }
            waited = true;
            // A missed wake-up costs at most a second.
            let _ = tokio::time::timeout(Duration::from_secs(1), accepted).await;
        }
    }
}

/// Why dialing waits when the carrier refuses the credentials: names the setting, never the
/// token.
pub(super) fn credentials_refused(status: u16) -> String {
    format!("the carrier answers HTTP {status} to telephony.twilio.account_sid's credentials")
}
