//! Status callbacks: the signature checked against the URL the carrier called (`public_url`,
//! the route and the query as received), then the attempt read from the query and the call's
//! state from the form.

use chrono::{DateTime, Utc};

use super::attempt_url;
use super::{signature, STATUS_PATH};
use crate::domain::campaign::PolicyTerms;
use crate::domain::carrier::{outcome, CarrierCall, CarrierStatus, MachineOutcome};
use crate::ports::{
    AttemptKey, CallbackError, CallbackVerifier, CarrierCallback, MachineVerdict, SignedRequest,
    AMD_PATH,
};

pub struct TwilioCallbacks {
    auth_token: String,
    /// `public_url` without its trailing slash.
    base: String,
    /// `public_url` and the route, as the carrier calls it.
    url: String,
    machine_outcome: MachineOutcome,
}

impl TwilioCallbacks {
    pub fn new(auth_token: &str, public_url: &str, machine_outcome: MachineOutcome) -> Self {
        let base = public_url.trim_end_matches('/').to_owned();
        Self {
            auth_token: auth_token.to_owned(),
            url: format!("{base}{STATUS_PATH}"),
            base,
            machine_outcome,
        }
    }

    fn signed(
        &self,
        url: &str,
        query: &str,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<Vec<(String, String)>, CallbackError> {
        let url = if query.is_empty() {
            url.to_owned()
        } else {
            format!("{url}?{query}")
        };
        let params = pairs(body);
        let signed = signature
            .is_some_and(|signature| signature::verify(&self.auth_token, &url, &params, signature));
        if signed {
            Ok(params)
        } else {
            Err(CallbackError::BadSignature)
        }
    }
}

/// When the attempt began, as its callback URL names it (`started`, epoch milliseconds).
fn started_of(query: &[(String, String)]) -> Result<Option<DateTime<Utc>>, CallbackError> {
    match field(query, "started") {
        None => Ok(None),
        Some(ms) => ms
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_millis)
            .map(Some)
            .ok_or_else(|| CallbackError::UnknownAttempt("started is not an instant".into())),
    }
}

fn pairs(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .filter(|value| !value.is_empty())
}

/// The attempt a query names (`campaign`, `call`, `attempt`).
fn key_of(query: &[(String, String)]) -> Result<AttemptKey, String> {
    let get = |name: &str| field(query, name).ok_or_else(|| format!("no {name} in the query"));
    let key = AttemptKey {
        campaign_id: get("campaign")?
            .parse()
            .map_err(|_| "campaign is not an id".to_owned())?,
        call_id: get("call")?
            .parse()
            .map_err(|_| "call is not an id".to_owned())?,
        attempt: get("attempt")?
            .parse()
            .map_err(|_| "attempt is not a number".to_owned())?,
    };
    if key.attempt == 0 {
        return Err("attempt out of range".to_owned());
    }
    Ok(key)
}

fn attempt_of(query: &[(String, String)]) -> Result<(AttemptKey, PolicyTerms), String> {
    let get = |name: &str| field(query, name).ok_or_else(|| format!("no {name} in the query"));
    let parse = |name: &str| -> Result<u64, String> {
        get(name)?
            .parse()
            .map_err(|_| format!("{name} is not a number"))
    };
    let key = AttemptKey {
        campaign_id: get("campaign")?
            .parse()
            .map_err(|_| "campaign is not an id".to_owned())?,
        call_id: get("call")?
            .parse()
            .map_err(|_| "call is not an id".to_owned())?,
        attempt: u32::try_from(parse("attempt")?).map_err(|_| "attempt out of range")?,
    };
    let jitter: f64 = get("jitter")?
        .parse()
        .map_err(|_| "jitter is not a number".to_owned())?;
    if key.attempt == 0 || !(0.0..=1.0).contains(&jitter) {
        return Err("attempt or jitter out of range".to_owned());
    }
    Ok((
        key,
        PolicyTerms {
            base_delay_ms: parse("base_ms")?,
            max_delay_ms: parse("max_ms")?,
            jitter,
        },
    ))
}

impl CallbackVerifier for TwilioCallbacks {
    fn verify(
        &self,
        query: &str,
        body: &[u8],
        signature: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<CarrierCallback, CallbackError> {
        let params = self.signed(&self.url, query, body, signature)?;
        let query_pairs = pairs(query.as_bytes());
        let (key, policy) = attempt_of(&query_pairs).map_err(CallbackError::UnknownAttempt)?;
        let status = field(&params, "CallStatus")
            .ok_or_else(|| CallbackError::Malformed("no CallStatus".into()))?;
        let status = CarrierStatus::parse(status)
            .ok_or_else(|| CallbackError::Malformed(format!("unknown CallStatus {status:?}")))?;
        let number = |name: &str| field(&params, name).and_then(|v| v.parse::<u64>().ok());
        let carrier = CarrierCall {
            sid: field(&params, "CallSid").map(str::to_owned),
            status: Some(status),
            sip_code: number("SipResponseCode").and_then(|c| u16::try_from(c).ok()),
            answered_by: field(&params, "AnsweredBy").map(str::to_owned),
            duration_secs: number("CallDuration"),
            error_code: number("ErrorCode").and_then(|c| u32::try_from(c).ok()),
            caller_id: field(&params, "From").map(str::to_owned),
        };
        // When it arrived, on the engine's clock: the carrier's `Timestamp` is on its own,
        // and a carrier clock that is off must move no backoff and no cap window.
        let at = now;
        let attempt_started_at = started_of(&query_pairs)?;
        Ok(CarrierCallback {
            attempt_started_at,
            key,
            policy,
            outcome: outcome(&carrier, self.machine_outcome),
            carrier,
            at,
        })
    }

    fn verify_verdict(
        &self,
        query: &str,
        body: &[u8],
        signature: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<MachineVerdict, CallbackError> {
        let params = self.signed(&format!("{}{AMD_PATH}", self.base), query, body, signature)?;
        let query_pairs = pairs(query.as_bytes());
        let (key, policy) = attempt_of(&query_pairs).map_err(CallbackError::UnknownAttempt)?;
        Ok(MachineVerdict {
            key,
            policy,
            attempt_started_at: started_of(&query_pairs)?,
            sid: field(&params, "CallSid").map(str::to_owned),
            answered_by: field(&params, "AnsweredBy").map(str::to_owned),
            at: now,
        })
    }

    fn verify_request(
        &self,
        path: &str,
        query: &str,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<SignedRequest, CallbackError> {
        self.request(path, query, body, signature)
    }

    fn attempt_url(&self, path: &str, attempt: AttemptKey, extra: &[(&str, &str)]) -> String {
        attempt_url(&self.base, path, attempt, extra)
    }

    fn verify_form(
        &self,
        path: &str,
        query: &str,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<Vec<(String, String)>, CallbackError> {
        self.signed(&format!("{}{path}", self.base), query, body, signature)
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut url = format!("{}{path}", self.base);
        if !query.is_empty() {
            let query = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(query)
                .finish();
            url.push('?');
            url.push_str(&query);
        }
        url
    }
}

impl TwilioCallbacks {
    /// See `CallbackVerifier::verify_request`.
    fn request(
        &self,
        path: &str,
        query: &str,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<SignedRequest, CallbackError> {
        let form = self.signed(&format!("{}{path}", self.base), query, body, signature)?;
        let query = pairs(query.as_bytes());
        let key = key_of(&query).map_err(CallbackError::UnknownAttempt)?;
        Ok(SignedRequest { key, query, form })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::domain::call::AttemptOutcome;
    use crate::domain::ids::{CallId, CampaignId};
    use crate::domain::phone::PhoneNumber;
    use crate::ports::DialRequest;

    fn request() -> DialRequest {
        DialRequest {
            call_id: CallId::new(),
            campaign_id: CampaignId::new(),
            attempt: 2,
            phone_number: PhoneNumber::parse("+15555550001").unwrap(),
            policy: PolicyTerms {
                base_delay_ms: 1000,
                max_delay_ms: 60_000,
                jitter: 0.2,
            },
            voice: Default::default(),
            started_at: DateTime::from_timestamp_millis(1_764_000_000_123),
        }
    }

    fn form(pairs: &[(&str, &str)]) -> (Vec<(String, String)>, String) {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(owned.iter())
            .finish();
        (owned, body)
    }

    #[test]
    fn a_signed_final_callback_names_its_attempt_and_outcome() {
        let callbacks = TwilioCallbacks::new(
            "tok",
            "https://dialer.example.com/",
            MachineOutcome::Completed,
        );
        let request = request();
        let url = super::super::callback_url("https://dialer.example.com/", &request);
        let query = url.split_once('?').unwrap().1;
        let (params, body) = form(&[
            ("CallSid", "CA0123"),
            ("CallStatus", "busy"),
            ("SipResponseCode", "486"),
            ("Timestamp", "Tue, 01 Dec 2026 10:00:00 +0000"),
        ]);
        let signature = signature::sign("tok", &url, &params);
        let arrived = Utc::now();
        let callback = callbacks
            .verify(query, body.as_bytes(), Some(&signature), arrived)
            .expect("verifies");
        assert_eq!(callback.key, request.key());
        assert_eq!(callback.policy, request.policy);
        assert_eq!(callback.carrier.sid.as_deref(), Some("CA0123"));
        assert_eq!(callback.carrier.sip_code, Some(486));
        assert_eq!(
            callback.outcome,
            Some(AttemptOutcome::Failed {
                error: "busy".into(),
                retryable: true
            })
        );
        // The carrier's Timestamp is on its clock: the engine keeps its own.
        assert_eq!(callback.at, arrived);
        assert_eq!(callback.attempt_started_at, request.started_at);
    }

    #[test]
    fn forged_altered_or_unsigned_callbacks_are_refused() {
        let callbacks = TwilioCallbacks::new("tok", "https://d.example", MachineOutcome::Completed);
        let request = request();
        let url = super::super::callback_url("https://d.example", &request);
        let query = url.split_once('?').unwrap().1;
        let (params, body) = form(&[("CallSid", "CA1"), ("CallStatus", "completed")]);
        let good = signature::sign("tok", &url, &params);
        let forged = signature::sign("other", &url, &params);
        let now = Utc::now();
        assert!(callbacks
            .verify(query, body.as_bytes(), Some(&good), now)
            .is_ok());
        for signature in [None, Some(forged.as_str()), Some("")] {
            assert_eq!(
                callbacks.verify(query, body.as_bytes(), signature, now),
                Err(CallbackError::BadSignature)
            );
        }
        let (_, altered) = form(&[("CallSid", "CA1"), ("CallStatus", "busy")]);
        assert_eq!(
            callbacks.verify(query, altered.as_bytes(), Some(&good), now),
            Err(CallbackError::BadSignature)
        );
        let other_attempt = query.replace("attempt=2", "attempt=3");
        assert_eq!(
            callbacks.verify(&other_attempt, body.as_bytes(), Some(&good), now),
            Err(CallbackError::BadSignature)
        );
    }

    #[test]
    fn a_signed_callback_without_an_attempt_is_unknown() {
        let callbacks =
            TwilioCallbacks::new("tok", "http://127.0.0.1:8080", MachineOutcome::Completed);
        let url = "http://127.0.0.1:8080/webhooks/twilio/status?campaign=x";
        let (params, body) = form(&[("CallSid", "CA1"), ("CallStatus", "ringing")]);
        let signature = signature::sign("tok", url, &params);
        assert!(matches!(
            callbacks.verify("campaign=x", body.as_bytes(), Some(&signature), Utc::now()),
            Err(CallbackError::UnknownAttempt(_))
        ));
    }
}
