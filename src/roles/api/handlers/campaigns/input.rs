//! A campaign's request bodies and the validation that turns them into domain values. Every
//! check reports the field it concerns; all problems of a request are reported together.

use chrono_tz::Tz;
use serde::Deserialize;
use utoipa::ToSchema;

use super::message::check_targets;
use super::voice::{validate_voice, voice_input};
use crate::domain::business_hours::{BusinessHours, BusinessWindow, WallTime};
use crate::domain::campaign::RetryPolicy;
use crate::domain::carrier::{Audio, Voice};
use crate::domain::compliance::caps::parse_window;
use crate::domain::compliance::{FrequencyCap, RestrictedPeriod};
use crate::domain::duration::{format_go_duration, parse_go_duration};
use crate::domain::ids::CampaignId;
use crate::ports::NewCampaign;
use crate::roles::api::handlers::targets::{validate_targets_as, FieldOf, TargetInput};
use crate::roles::api::handlers::Problems;
use crate::settings::Settings;

pub const MAX_CONCURRENT: i64 = 100_000;

pub const MAX_NAME_CHARS: usize = 200;

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RetryPolicyInput {
    /// 1 to 20; default 5.
    #[schema(minimum = 1, maximum = 20)]
    pub max_attempts: Option<i64>,
    /// A Go duration ("30s", "1m30s"), > 0 and in whole milliseconds; default "2s".
    pub base_delay: Option<String>,
    /// A Go duration, >= base_delay and in whole milliseconds; default "2m".
    pub max_delay: Option<String>,
    /// 0.0 to 1.0; default 0.2.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub jitter: Option<f64>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct BusinessHourInput {
    /// 0 (Sunday) to 6 (Saturday).
    #[schema(value_type = i64, required = true, minimum = 0, maximum = 6)]
    pub day_of_week: Option<i64>,
    /// "HH:MM", 00:00 to 23:59.
    #[schema(value_type = String, required = true, pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub start: Option<String>,
    /// "HH:MM" or "24:00"; before `start` means the window runs past midnight; equal to
    /// `start` is refused (400 validation_failed).
    #[schema(value_type = String, required = true, pattern = "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]
    pub end: Option<String>,
}

/// Days on which no attempt starts, `start` to `end` inclusive.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RestrictedPeriodInput {
    /// 1 to 100 characters.
    #[schema(value_type = String, required = true)]
    pub name: Option<String>,
    /// "YYYY-MM-DD".
    #[schema(value_type = String, required = true)]
    pub start: Option<String>,
    /// "YYYY-MM-DD", not before `start`.
    #[schema(value_type = String, required = true)]
    pub end: Option<String>,
}

/// At most `max_attempts` attempts to one number of the campaign within any `per`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RecipientLimitInput {
    /// 1 to 1000.
    #[schema(value_type = i64, required = true, minimum = 1, maximum = 1000)]
    pub max_attempts: Option<i64>,
    /// A window from "1h" to "30d": a Go duration ("24h", "90m") or whole days ("7d").
    #[schema(value_type = String, required = true, example = "24h")]
    pub per: Option<String>,
}

/// At most this many recipient limits per campaign.
pub const MAX_RECIPIENT_LIMITS: usize = 2;

pub fn validate_recipient_limits(
    input: &[RecipientLimitInput],
    problems: &mut Problems,
) -> Option<Vec<FrequencyCap>> {
    let before = problems.0.len();
    if input.len() > MAX_RECIPIENT_LIMITS {
        problems.push(
            "recipient_limits",
            format!("at most {MAX_RECIPIENT_LIMITS}, got {}", input.len()),
        );
        return None;
    }
    let mut limits = Vec::with_capacity(input.len());
    for (index, limit) in input.iter().enumerate() {
        let field = |name: &str| format!("recipient_limits[{index}].{name}");
        let max_attempts = match limit.max_attempts {
            Some(n) if (1..=1000).contains(&n) => u32::try_from(n).ok(),
            Some(n) => {
                problems.push(
                    &field("max_attempts"),
                    format!("must be 1 to 1000, got {n}"),
                );
                None
            }
            None => {
                problems.push(&field("max_attempts"), "is required");
                None
            }
        };
        let per = match limit.per.as_deref() {
            Some(text) => parse_window(text)
                .map_err(|err| problems.push(&field("per"), format!("{text:?} {err}")))
                .ok(),
            None => {
                problems.push(&field("per"), "is required");
                None
            }
        };
        if let (Some(max_attempts), Some(per)) = (max_attempts, per) {
            limits.extend(FrequencyCap::new(max_attempts, per).ok());
        }
    }
    (problems.0.len() == before).then_some(limits)
}

/// At most this many restricted periods per campaign.
pub const MAX_RESTRICTED_PERIODS: usize = 100;

pub fn validate_restricted_periods(
    input: &[RestrictedPeriodInput],
    problems: &mut Problems,
) -> Option<Vec<RestrictedPeriod>> {
    let before = problems.0.len();
    if input.len() > MAX_RESTRICTED_PERIODS {
        problems.push(
            "restricted_periods",
            format!("at most {MAX_RESTRICTED_PERIODS}, got {}", input.len()),
        );
        return None;
    }
    let mut periods = Vec::with_capacity(input.len());
    for (index, period) in input.iter().enumerate() {
        let field = |name: &str| format!("restricted_periods[{index}].{name}");
        let name = match period.name.as_deref().map(str::trim) {
            Some(name) if !name.is_empty() && name.chars().count() <= 100 => Some(name.to_owned()),
            Some(_) => {
                problems.push(&field("name"), "must be 1 to 100 characters");
                None
            }
            None => {
                problems.push(&field("name"), "is required");
                None
            }
        };
        let mut date = |name: &str, value: Option<&str>| match value {
            Some(text) => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map_err(|_| {
                    problems.push(&field(name), format!("{text:?} is not a YYYY-MM-DD date"))
                })
                .ok(),
            None => {
                problems.push(&field(name), "is required");
                None
            }
        };
        let start = date("start", period.start.as_deref());
        let end = date("end", period.end.as_deref());
        if let (Some(name), Some(start), Some(end)) = (name, start, end) {
            if end < start {
                problems.push(&field("end"), "must not be before start");
            } else {
                periods.push(RestrictedPeriod { name, start, end });
            }
        }
    }
    (problems.0.len() == before).then_some(periods)
}

/// Every name of the IANA time zone database the server knows, exactly what it accepts.
fn time_zone_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())))
        .examples(["America/New_York"])
        .build()
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({
    "name": "spring-renewals",
    "time_zone": "America/New_York",
    "max_concurrent_calls": 10,
    "retry_policy": {"max_attempts": 3, "base_delay": "30s", "max_delay": "10m", "jitter": 0.2},
    "business_hours": [{"day_of_week": 1, "start": "09:00", "end": "17:00"}],
    "targets": [{"phone_number": "+15555550001", "metadata": {"customer": "A-17"}}]
}))]
pub struct CreateCampaignRequest {
    /// 1 to 200 characters once trimmed, no control characters; unique among campaigns
    /// regardless of case (409 otherwise).
    #[schema(value_type = String, required = true)]
    pub name: Option<String>,
    /// At most 2000 characters, no control characters but line breaks and tabs.
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// IANA time zone, e.g. "America/New_York".
    #[schema(schema_with = time_zone_schema, required = true)]
    pub time_zone: Option<String>,
    /// 1 to 100000; default from configuration (500).
    #[schema(minimum = 1, maximum = 100000)]
    pub max_concurrent_calls: Option<i64>,
    pub retry_policy: Option<RetryPolicyInput>,
    /// Empty or absent: 24x7.
    pub business_hours: Option<Vec<BusinessHourInput>>,
    /// Windows read in each called party's time zone; absent: every day 08:00–21:00 (the
    /// configured `compliance.recipient_hours`); empty: no restriction.
    pub recipient_hours: Option<Vec<BusinessHourInput>>,
    /// Days no attempt starts (holidays), in the campaign's time zone; at most 100.
    #[schema(max_items = 100)]
    pub restricted_periods: Option<Vec<RestrictedPeriodInput>>,
    /// Caps on attempts to one number within this campaign; at most 2.
    #[schema(max_items = 2)]
    pub recipient_limits: Option<Vec<RecipientLimitInput>>,
    /// At most 1,000,000 (413 beyond: register the rest with POST /campaigns/{id}/targets).
    #[serde(default, deserialize_with = "super::uploads::at_most_entries")]
    pub targets: Option<Vec<TargetInput>>,
    /// Caller id for a real carrier (E.164); absent: `telephony.twilio.from`.
    pub caller_id: Option<String>,
    /// TwiML an answered call plays (at most 4000 characters); absent: `telephony.twilio.twiml`.
    /// Not with `voice_url`.
    pub twiml: Option<String>,
    /// An absolute http(s) URL the carrier fetches TwiML from. Not with `twiml`.
    pub voice_url: Option<String>,
    /// What the call says and listens for, personalised per target (`spec/voice.md`). Not with
    /// `twiml` or `voice_url`.
    #[schema(value_type = Option<Object>)]
    pub message: Option<serde_json::Value>,
}

impl CreateCampaignRequest {
    /// A create whose targets came as CSV: the campaign's simple fields from the query.
    pub fn from_query(
        query: &std::collections::HashMap<String, String>,
        targets: Vec<TargetInput>,
    ) -> Result<Self, Vec<String>> {
        let max_concurrent_calls = match query.get("max_concurrent_calls") {
            None => None,
            Some(raw) => Some(raw.parse::<i64>().map_err(|_| {
                vec![format!(
                    "max_concurrent_calls: must be an integer, got {raw:?}"
                )]
            })?),
        };
        Ok(Self {
            name: query.get("name").cloned(),
            description: query.get("description").cloned(),
            time_zone: query.get("time_zone").cloned(),
            max_concurrent_calls,
            retry_policy: None,
            business_hours: None,
            recipient_hours: None,
            restricted_periods: None,
            recipient_limits: None,
            targets: Some(targets),
            caller_id: query.get("caller_id").cloned(),
            twiml: None,
            voice_url: None,
            message: match query.get("message") {
                None => None,
                Some(raw) => Some(
                    serde_json::from_str(raw)
                        .map_err(|err| vec![format!("message: must be a JSON object ({err})")])?,
                ),
            },
        })
    }

    /// The campaign this request registers as `id`, or every problem it has. `field_of` names
    /// a target's field as the body spelled it (JSON or CSV).
    pub fn validate(
        self,
        id: CampaignId,
        settings: &Settings,
        field_of: FieldOf,
    ) -> Result<NewCampaign, Problems> {
        let mut problems = Problems::default();
        let name = validate_name(self.name.as_deref(), &mut problems);
        let time_zone = validate_time_zone(self.time_zone.as_deref(), &mut problems);
        let max_concurrent = validate_max_concurrent(
            self.max_concurrent_calls
                .unwrap_or(i64::from(settings.campaign.default_max_concurrent_calls)),
            &mut problems,
        );
        let policy = validate_retry_policy(&self.retry_policy.unwrap_or_default(), &mut problems);
        let hours =
            validate_business_hours(&self.business_hours.unwrap_or_default(), &mut problems);
        let recipient_hours = match self.recipient_hours.as_deref() {
            Some(windows) => validate_windows("recipient_hours", windows, &mut problems),
            None => Some(settings.compliance.recipient_hours()),
        };
        let restricted_periods = validate_restricted_periods(
            self.restricted_periods.as_deref().unwrap_or_default(),
            &mut problems,
        );
        let recipient_limits = validate_recipient_limits(
            self.recipient_limits.as_deref().unwrap_or_default(),
            &mut problems,
        );
        let targets =
            validate_targets_as(self.targets.unwrap_or_default(), &mut problems, field_of);
        let description = validate_description(self.description, &mut problems);
        let (caller_id, audio) = validate_voice(voice_input!(self), &mut problems);
        let voice = Voice {
            caller_id: caller_id.flatten(),
            audio: audio.flatten(),
        };
        if let Some(Audio::Message(message)) = &voice.audio {
            check_targets(message, &targets, field_of, &mut problems);
        }
        let (
            Some(name),
            Some(time_zone),
            Some(max_concurrent),
            Some(policy),
            Some(hours),
            Some(recipient_hours),
            Some(restricted_periods),
            Some(recipient_limits),
            true,
        ) = (
            name,
            time_zone,
            max_concurrent,
            policy,
            hours,
            recipient_hours,
            restricted_periods,
            recipient_limits,
            problems.is_empty(),
        )
        else {
            return Err(problems);
        };
        Ok(NewCampaign {
            id,
            name,
            description: description.unwrap_or_default(),
            time_zone,
            max_concurrent_calls: max_concurrent,
            retry_policy: policy,
            business_hours: hours,
            recipient_hours,
            restricted_periods,
            recipient_limits,
            voice,
            targets,
        })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"max_concurrent_calls": 20, "description": "raised for the last week"}))]
pub struct UpdateCampaignRequest {
    pub name: Option<String>,
    /// At most 2000 characters, no control characters but line breaks and tabs.
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    #[schema(minimum = 1, maximum = 100000)]
    pub max_concurrent_calls: Option<i64>,
    /// Replaces the whole policy; omitted sub-fields take their defaults.
    pub retry_policy: Option<RetryPolicyInput>,
    pub business_hours: Option<Vec<BusinessHourInput>>,
    /// Replaces the recipient hours; empty: no restriction.
    pub recipient_hours: Option<Vec<BusinessHourInput>>,
    /// Replaces the restricted periods; at most 100.
    #[schema(max_items = 100)]
    pub restricted_periods: Option<Vec<RestrictedPeriodInput>>,
    /// Replaces the recipient limits; empty: none; at most 2.
    #[schema(max_items = 2)]
    pub recipient_limits: Option<Vec<RecipientLimitInput>>,
    /// Caller id for a real carrier (E.164); an empty string returns to
    /// `telephony.twilio.from`.
    pub caller_id: Option<String>,
    /// TwiML an answered call plays (at most 4000 characters); an empty string (for
    /// either field) returns to `telephony.twilio.twiml`.
    /// Not with `voice_url`.
    pub twiml: Option<String>,
    /// An absolute http(s) URL the carrier fetches TwiML from. Not with `twiml`.
    pub voice_url: Option<String>,
    /// Replaces the message; attempts that begin after the change use the new one. Not with
    /// `twiml` or `voice_url`, which replace it.
    #[schema(value_type = Option<Object>)]
    pub message: Option<serde_json::Value>,
}

pub fn validate_name(name: Option<&str>, problems: &mut Problems) -> Option<String> {
    let Some(name) = name else {
        problems.push("name", "is required");
        return None;
    };
    let trimmed = name.trim();
    if trimmed.chars().any(char::is_control) {
        problems.push("name", "must not contain control characters");
        return None;
    }
    let chars = trimmed.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        problems.push("name", format!("must be 1 to {MAX_NAME_CHARS} characters"));
        return None;
    }
    Some(trimmed.to_owned())
}

/// Most characters of a campaign's description.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;

/// Free text may hold line breaks and tabs, but not NUL or other control characters, which
/// some stores refuse.
pub fn validate_description(
    description: Option<String>,
    problems: &mut Problems,
) -> Option<String> {
    let description = description?;
    let length = description.chars().count();
    if length > MAX_DESCRIPTION_CHARS {
        problems.push(
            "description",
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters, has {length}"),
        );
        return None;
    }
    if description
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        problems.push("description", "must not contain control characters");
        return None;
    }
    Some(description)
}

pub fn validate_time_zone(zone: Option<&str>, problems: &mut Problems) -> Option<Tz> {
    let Some(zone) = zone else {
        problems.push("time_zone", "is required");
        return None;
    };
    match zone.parse::<Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            problems.push("time_zone", format!("{zone:?} is not an IANA time zone"));
            None
        }
    }
}

pub fn validate_max_concurrent(value: i64, problems: &mut Problems) -> Option<u32> {
    if (1..=MAX_CONCURRENT).contains(&value) {
        Some(value as u32)
    } else {
        problems.push(
            "max_concurrent_calls",
            format!("must be between 1 and {MAX_CONCURRENT}, got {value}"),
        );
        None
    }
}

fn parse_delay(
    field: &str,
    value: Option<&str>,
    default: std::time::Duration,
    problems: &mut Problems,
) -> Option<std::time::Duration> {
    match value {
        None => Some(default),
        Some(text) => match parse_go_duration(text) {
            // Delays are kept in whole milliseconds: refuse what would be silently rounded.
            Ok(duration) if duration.subsec_nanos() % 1_000_000 != 0 => {
                problems.push(field, format!("{text:?} is finer than a millisecond"));
                None
            }
            Ok(duration) => Some(duration),
            Err(err) => {
                problems.push(field, err);
                None
            }
        },
    }
}

pub fn validate_retry_policy(
    input: &RetryPolicyInput,
    problems: &mut Problems,
) -> Option<RetryPolicy> {
    let defaults = RetryPolicy::default();
    let before = problems.0.len();
    let max_attempts = input.max_attempts.unwrap_or(defaults.max_attempts as i64);
    if !(1..=20).contains(&max_attempts) {
        problems.push(
            "retry_policy.max_attempts",
            format!("must be between 1 and 20, got {max_attempts}"),
        );
    }
    let base = parse_delay(
        "retry_policy.base_delay",
        input.base_delay.as_deref(),
        defaults.base_delay,
        problems,
    );
    let max = parse_delay(
        "retry_policy.max_delay",
        input.max_delay.as_deref(),
        defaults.max_delay,
        problems,
    );
    if let Some(base) = base {
        if base.is_zero() {
            problems.push("retry_policy.base_delay", "must be greater than 0");
        }
    }
    if let (Some(base), Some(max)) = (base, max) {
        if max < base {
            problems.push(
                "retry_policy.max_delay",
                format!(
                    "must not be below base_delay ({} < {})",
                    format_go_duration(max),
                    format_go_duration(base)
                ),
            );
        }
    }
    let jitter = input.jitter.unwrap_or(defaults.jitter);
    if !jitter.is_finite() || !(0.0..=1.0).contains(&jitter) {
        problems.push(
            "retry_policy.jitter",
            format!("must be between 0.0 and 1.0, got {jitter}"),
        );
    }
    if problems.0.len() != before {
        return None;
    }
    Some(RetryPolicy {
        max_attempts: max_attempts as u32,
        base_delay: base?,
        max_delay: max?,
        jitter,
    })
}

pub fn validate_business_hours(
    input: &[BusinessHourInput],
    problems: &mut Problems,
) -> Option<BusinessHours> {
    validate_windows("business_hours", input, problems)
}

/// Weekly windows of the shape of `business_hours`, reported under `list`.
pub fn validate_windows(
    list: &str,
    input: &[BusinessHourInput],
    problems: &mut Problems,
) -> Option<BusinessHours> {
    let before = problems.0.len();
    let mut windows = Vec::with_capacity(input.len());
    for (index, window) in input.iter().enumerate() {
        let field = |name: &str| format!("{list}[{index}].{name}");
        let day = match window.day_of_week {
            Some(day) if (0..=6).contains(&day) => Some(day as u8),
            Some(day) => {
                problems.push(
                    &field("day_of_week"),
                    format!("must be 0 (Sunday) to 6, got {day}"),
                );
                None
            }
            None => {
                problems.push(&field("day_of_week"), "is required");
                None
            }
        };
        let start = match window.start.as_deref() {
            Some(text) => WallTime::parse_start(text)
                .map_err(|err| problems.push(&field("start"), err))
                .ok(),
            None => {
                problems.push(&field("start"), "is required");
                None
            }
        };
        let end = match window.end.as_deref() {
            Some(text) => WallTime::parse_end(text)
                .map_err(|err| problems.push(&field("end"), err))
                .ok(),
            None => {
                problems.push(&field("end"), "is required");
                None
            }
        };
        if let (Some(day), Some(start), Some(end)) = (day, start, end) {
            match BusinessWindow::new(day, start, end) {
                Ok(window) => windows.push(window),
                Err(err) => problems.push(&format!("{list}[{index}]"), err),
            }
        }
    }
    (problems.0.len() == before).then(|| BusinessHours::new(windows))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn retry_policy_defaults_and_bounds() {
        let mut problems = Problems::default();
        let policy = validate_retry_policy(&RetryPolicyInput::default(), &mut problems).unwrap();
        assert_eq!(policy, RetryPolicy::default());
        let bad = RetryPolicyInput {
            max_attempts: Some(21),
            base_delay: Some("0s".into()),
            max_delay: Some("1x".into()),
            jitter: Some(1.5),
        };
        assert!(validate_retry_policy(&bad, &mut problems).is_none());
        assert_eq!(problems.0.len(), 4, "{:?}", problems.0);
    }
}
