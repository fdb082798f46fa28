//! The checks `Settings::validate` makes after the layers are merged, section by section; each
//! refusal names its key.

use std::net::SocketAddr;
use std::time::Duration;

use super::address::{BusAddress, LimiterAddress};
use super::{invalid, BusKind, Settings, SettingsError};
use crate::process::role::RoleName;

impl Settings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.validate_http()?;
        self.store_address()?;
        self.limiter_address()?;
        self.timeline_address()?;
        self.validate_bus()?;
        self.validate_timeline_export()?;
        self.validate_telephony()?;
        self.validate_engine()?;
        self.compliance.policy()?;
        self.validate_roles()
    }

    fn validate_http(&self) -> Result<(), SettingsError> {
        for (key, value) in [
            ("http.bind", &self.http.bind),
            ("http.admin_bind", &self.http.admin_bind),
        ] {
            value
                .parse::<SocketAddr>()
                .map_err(|err| invalid(key, format!("{err} ({value:?})")))?;
        }
        // The server's clock for these ticks about twice a second: shorter limits could fire
        // at once.
        for (key, value) in [
            ("http.keep_alive", self.http.keep_alive),
            ("http.request_timeout", self.http.request_timeout),
            ("http.body_timeout", self.http.body_timeout),
        ] {
            if value.0 < std::time::Duration::from_secs(1) {
                return Err(invalid(key, "must be at least 1s"));
            }
        }
        if self.webhooks.timeout.0.is_zero() {
            return Err(invalid("webhooks.timeout", "must be more than 0s"));
        }
        if self.webhooks.max_in_flight_per_endpoint == 0 {
            return Err(invalid(
                "webhooks.max_in_flight_per_endpoint",
                "must be at least 1",
            ));
        }
        if self.webhooks.poll_interval.0.is_zero() {
            return Err(invalid("webhooks.poll_interval", "must be more than 0s"));
        }
        if self.audit.retention.0 < std::time::Duration::from_secs(24 * 60 * 60) {
            return Err(invalid("audit.retention", "must be at least 1d"));
        }
        for (key, value) in [
            ("http.max_large_bodies", self.http.max_large_bodies),
            ("http.max_streams_per_key", self.http.max_streams_per_key),
            ("http.max_streams", self.http.max_streams),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be positive"));
            }
        }
        let tls = &self.http.tls;
        if tls.enabled() {
            for (key, path) in [("http.tls.cert", &tls.cert), ("http.tls.key", &tls.key)] {
                if path.is_empty() {
                    return Err(invalid(
                        key,
                        "both http.tls.cert and http.tls.key are needed",
                    ));
                }
                if let Err(err) = std::fs::metadata(path) {
                    return Err(invalid(key, format!("cannot read {path:?}: {err}")));
                }
            }
        }
        if self.auth.rate_limit == 0 {
            return Err(invalid("auth.rate_limit", "must be positive"));
        }
        if self.http.body_limit_bytes == 0 {
            return Err(invalid("http.body_limit_bytes", "must be positive"));
        }
        Ok(())
    }

    fn validate_bus(&self) -> Result<(), SettingsError> {
        for key in self.bus.properties.keys() {
            if super::RESERVED_PROPERTIES.contains(&key.as_str()) {
                return Err(invalid(
                    "bus.properties",
                    format!(
                        "{key} is set by outbound itself (bus.brokers for the servers, \
                         bus.delivery_timeout for the delivery timeout)"
                    ),
                ));
            }
        }
        if self.bus.kind != BusKind::Kafka {
            return Ok(());
        }
        if self.bus.brokers.trim().is_empty() {
            return Err(invalid("bus.brokers", "kafka needs bootstrap servers"));
        }
        if self.bus.partitions < 1 || self.bus.replication < 1 {
            return Err(invalid(
                "bus.partitions",
                "partitions and replication must be at least 1",
            ));
        }
        if !(Duration::from_millis(1)..=Duration::from_secs(5)).contains(&self.bus.fetch_wait.0) {
            return Err(invalid("bus.fetch_wait", "must be from 1ms to 5s"));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(300))
            .contains(&self.bus.delivery_timeout.0)
        {
            return Err(invalid("bus.delivery_timeout", "must be from 1s to 5m"));
        }
        if self.bus.session_timeout.0 < Duration::from_secs(1) {
            return Err(invalid("bus.session_timeout", "must be at least 1s"));
        }
        Ok(())
    }

    fn validate_timeline_export(&self) -> Result<(), SettingsError> {
        if !(1..=10_000).contains(&self.timeline.export_batch) {
            return Err(invalid(
                "timeline.export_batch",
                format!(
                    "must be from 1 to 10000, got {}",
                    self.timeline.export_batch
                ),
            ));
        }
        if self.timeline.export_interval.0.is_zero() {
            return Err(invalid("timeline.export_interval", "must be above zero"));
        }
        Ok(())
    }

    fn validate_telephony(&self) -> Result<(), SettingsError> {
        if self.telephony.is_twilio() {
            return self.validate_twilio();
        }
        let mock = &self.telephony.mock;
        for (key, rate) in [
            ("telephony.mock.success_rate", mock.success_rate),
            ("telephony.mock.retryable_rate", mock.retryable_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(invalid(key, format!("must be between 0 and 1, got {rate}")));
            }
        }
        if mock.max_duration < mock.min_duration {
            return Err(invalid(
                "telephony.mock.max_duration",
                "must not be below telephony.mock.min_duration",
            ));
        }
        Ok(())
    }

    fn validate_twilio(&self) -> Result<(), SettingsError> {
        let twilio = &self.telephony.twilio;
        let sid = &twilio.account_sid;
        if !(sid.len() == 34
            && sid.starts_with("AC")
            && sid[2..].chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(invalid(
                "telephony.twilio.account_sid",
                "must be AC followed by 32 hex digits",
            ));
        }
        if twilio.auth_token.expose().trim().is_empty() {
            // Never echo the value: it is the secret.
            return Err(invalid("telephony.twilio.auth_token", "is required"));
        }
        crate::domain::phone::PhoneNumber::parse(&twilio.from).map_err(|err| {
            invalid(
                "telephony.twilio.from",
                format!("must be an E.164 number: {err}"),
            )
        })?;
        for (key, url) in [
            ("telephony.twilio.api_base", &twilio.api_base),
            ("telephony.twilio.public_url", &twilio.public_url),
        ] {
            let ok = (url.starts_with("https://") || url.starts_with("http://"))
                && url.split_once("://").is_some_and(|(_, rest)| {
                    !rest.is_empty() && !rest.contains('?') && !rest.contains('#')
                });
            if !ok {
                return Err(invalid(
                    key,
                    format!(
                        "must be an http:// or https:// base URL, got {:?}",
                        super::mask_url(url)
                    ),
                ));
            }
        }
        if !(twilio.cps.is_finite() && twilio.cps > 0.0 && twilio.cps <= 10_000.0) {
            return Err(invalid(
                "telephony.twilio.cps",
                format!("must be above 0 and at most 10000, got {}", twilio.cps),
            ));
        }
        let ring = twilio.ring_timeout.0;
        // The FTC's Telemarketing Sales Rule, 16 CFR 310.4(b)(1)(v): ring at least 15 s.
        if !(Duration::from_secs(15)..=Duration::from_secs(600)).contains(&ring) {
            return Err(invalid(
                "telephony.twilio.ring_timeout",
                "must be from 15s (16 CFR 310.4(b)(1)(v): ring at least 15 seconds) to 600s \
                 (whole seconds are sent)",
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&twilio.place_deadline.0)
        {
            return Err(invalid(
                "telephony.twilio.place_deadline",
                "must be from 1s to 1h",
            ));
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(3600))
            .contains(&twilio.lookup_after.0)
        {
            return Err(invalid(
                "telephony.twilio.lookup_after",
                "must be from 100ms to 1h",
            ));
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(120))
            .contains(&twilio.request_timeout.0)
        {
            return Err(invalid(
                "telephony.twilio.request_timeout",
                "must be from 100ms to 120s",
            ));
        }
        if twilio.max_call_duration.0 < Duration::from_secs(1) {
            return Err(invalid(
                "telephony.twilio.max_call_duration",
                "must be at least 1s",
            ));
        }
        if twilio.twiml.trim().is_empty() || twilio.twiml.len() > 4000 {
            return Err(invalid(
                "telephony.twilio.twiml",
                "must be 1 to 4000 characters",
            ));
        }
        inbound_prompt(&twilio.inbound_prompt)?;
        Ok(())
    }

    /// Campaign defaults, the global cap and the timers of the scheduler, retry and limiter.
    fn validate_engine(&self) -> Result<(), SettingsError> {
        if !(1..=100_000).contains(&self.campaign.default_max_concurrent_calls) {
            return Err(invalid(
                "campaign.default_max_concurrent_calls",
                "must be between 1 and 100000",
            ));
        }
        if self.throttle.global_concurrency == 0 {
            return Err(invalid("throttle.global_concurrency", "must be positive"));
        }
        if self.scheduler.batch_size == 0 {
            return Err(invalid("scheduler.batch_size", "must be positive"));
        }
        for (key, value) in [
            ("scheduler.interval", self.scheduler.interval),
            (
                "scheduler.heartbeat_interval",
                self.scheduler.heartbeat_interval,
            ),
            ("retry.poll_interval", self.retry.poll_interval),
            ("limiter.lease_ttl", self.limiter.lease_ttl),
        ] {
            if value.0.is_zero() {
                return Err(invalid(key, "must be positive"));
            }
        }
        if self.scheduler.orphan_after <= self.scheduler.heartbeat_interval {
            return Err(invalid(
                "scheduler.orphan_after",
                "must be longer than scheduler.heartbeat_interval",
            ));
        }
        Ok(())
    }

    /// A process may run a subset of the roles only on a bus that crosses processes.
    fn validate_roles(&self) -> Result<(), SettingsError> {
        if self.runtime.roles.is_empty() {
            return Err(invalid("runtime.roles", "at least one role is needed"));
        }
        let roles = RoleName::expand(&self.runtime.roles);
        if roles.len() == RoleName::ROLES.len() {
            return Ok(());
        }
        // One pace for the account: a bucket in this process alone would let every dialing
        // process create `cps` calls a second.
        if self.telephony.is_twilio()
            && roles.contains(&RoleName::Call)
            && !matches!(self.limiter_address()?, LimiterAddress::Redis { .. })
        {
            return Err(invalid(
                "limiter.url",
                "a call role running apart from the other roles with telephony.provider = \
                 \"twilio\" needs a shared limiter (redis://...) to keep the account's pace \
                 across processes",
            ));
        }
        match self.bus.address() {
            BusAddress::Memory => Err(invalid(
                "bus.kind",
                "the in-process bus (memory) needs every role in one process; run --roles all or use kafka",
            )),
            BusAddress::MockKafka => Err(invalid(
                "bus.brokers",
                "the mock cluster runs in this process, so every role must; run --roles all or name real brokers",
            )),
            BusAddress::Kafka { .. } => Ok(()),
        }
    }
}

/// What the inbound opt-out line says: spoken as it is, so no control characters.
fn inbound_prompt(prompt: &str) -> Result<(), SettingsError> {
    if prompt.trim().is_empty()
        || prompt.chars().count() > 1000
        || prompt.chars().any(char::is_control)
    {
        return Err(invalid(
            "telephony.twilio.inbound_prompt",
            "must be 1 to 1000 characters, without control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::inbound_prompt;

    #[test]
    fn the_inbound_prompt_is_words_to_speak() {
        assert!(inbound_prompt("To stop all calls from us, press 1.").is_ok());
        for bad in ["", "   ", "press\u{7}1", &"x".repeat(1001)] {
            let err = inbound_prompt(bad).err().map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.contains("telephony.twilio.inbound_prompt")),
                "{bad:?}: {err:?}"
            );
        }
    }
}
