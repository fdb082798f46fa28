//! Request and response bodies of the REST API, and the validation that turns requests into
//! domain values. Every check reports the field it concerns; all problems of a request are
//! reported together.

use std::collections::HashSet;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::domain::business_hours::{BusinessHours, BusinessWindow, WallTime};
use crate::domain::call::{Attempt, Call};
use crate::domain::campaign::{Campaign, PauseReason, RetryPolicy};
use crate::domain::carrier::{twiml_problem, voice_url_problem, Audio, CarrierCall};
use crate::domain::compliance::caps::{format_window, parse_window};
use crate::domain::compliance::{FrequencyCap, RestrictedPeriod};
use crate::domain::duration::{format_go_duration, parse_go_duration};
use crate::domain::metadata::Metadata;
use crate::domain::phone::PhoneNumber;
use crate::domain::stats::CampaignStats;
use crate::ports::NewTarget;

pub const MAX_CONCURRENT: i64 = 100_000;
pub const MAX_NAME_CHARS: usize = 200;

pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

// ---------------------------------------------------------------------------------------------
// Requests

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

#[derive(Debug, Deserialize, ToSchema)]
pub struct TargetInput {
    /// E.164, e.g. "+15555550001": a number valid in its country's numbering plan.
    #[schema(value_type = String, required = true)]
    pub phone_number: Option<String>,
    /// A JSON object of at most 64 keys and 4096 bytes (compact).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Box<RawValue>>,
    /// The called party's IANA time zone, when it is known better than from the number.
    pub time_zone: Option<String>,
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
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"targets": [{"phone_number": "+15555550001"}]}))]
pub struct AddTargetsRequest {
    /// At least one and at most 1,000,000 (413 beyond); each a registered target of the
    /// campaign.
    #[schema(value_type = Vec<TargetInput>, required = true, min_items = 1)]
    #[serde(default, deserialize_with = "super::uploads::at_most_entries")]
    pub targets: Option<Vec<TargetInput>>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TriggerCallRequest {
    #[schema(value_type = String, required = true, format = Uuid)]
    pub campaign_id: Option<String>,
    /// A registered target of the campaign.
    #[schema(value_type = String, required = true)]
    pub phone_number: Option<String>,
    /// A JSON object of at most 64 keys and 4096 bytes (compact).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Box<RawValue>>,
}

/// Collects every problem of a request before answering.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<String>);

impl Problems {
    pub fn push(&mut self, field: &str, message: impl std::fmt::Display) {
        self.0.push(format!("{field}: {message}"));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
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

/// A campaign's caller id and audio as given: each `None` when not given, `Some(None)` when
/// given empty (an update's way to return to the configured default).
pub struct VoiceInput<'a> {
    pub caller_id: Option<&'a str>,
    pub twiml: Option<&'a str>,
    pub voice_url: Option<&'a str>,
}

/// The voice fields of a create or update request, which both spell the same way.
macro_rules! voice_input {
    ($body:expr) => {
        VoiceInput {
            caller_id: $body.caller_id.as_deref(),
            twiml: $body.twiml.as_deref(),
            voice_url: $body.voice_url.as_deref(),
        }
    };
}
pub(super) use voice_input;

/// The caller id and audio changes `input` asks for.
pub fn validate_voice(
    input: VoiceInput<'_>,
    problems: &mut Problems,
) -> (Option<Option<String>>, Option<Option<Audio>>) {
    let caller_id = input.caller_id.map(|raw| {
        if raw.trim().is_empty() {
            return None;
        }
        match PhoneNumber::parse(raw) {
            Ok(number) => Some(number.as_str().to_owned()),
            Err(err) => {
                problems.push("caller_id", format!("must be an E.164 number: {err}"));
                None
            }
        }
    });
    let twiml = input.twiml.filter(|t| !t.trim().is_empty());
    let url = input.voice_url.filter(|u| !u.trim().is_empty());
    let audio = match (twiml, url) {
        (Some(_), Some(_)) => {
            problems.push("voice_url", "give twiml or voice_url, not both");
            None
        }
        (Some(twiml), None) => match twiml_problem(twiml) {
            Some(problem) => {
                problems.push("twiml", problem);
                None
            }
            None => Some(Some(Audio::Twiml(twiml.trim().to_owned()))),
        },
        (None, Some(url)) => match voice_url_problem(url) {
            Some(problem) => {
                problems.push("voice_url", problem);
                None
            }
            None => Some(Some(Audio::VoiceUrl(url.to_owned()))),
        },
        // Given, but empty: back to the default.
        (None, None) if input.twiml.is_some() || input.voice_url.is_some() => Some(None),
        (None, None) => None,
    };
    (caller_id, audio)
}

/// A target's metadata as sent (`null` is absent, before this is reached).
pub fn validate_metadata(raw: &RawValue) -> Result<Metadata, String> {
    Metadata::parse(raw.get()).map_err(|problem| problem.to_string())
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

/// How an upload names the field of its `index`-th target: `targets[3].phone_number` in JSON,
/// `line 5: phone_number` in CSV.
pub type FieldOf = fn(usize, &str) -> String;

/// How a JSON body names a target's field.
pub fn json_target_field(index: usize, column: &str) -> String {
    format!("targets[{index}].{column}")
}

/// Parses, canonicalises and deduplicates target numbers (the first metadata wins), naming a
/// problem's field with `field_of(index, column)`.
pub fn validate_targets_as(
    input: Vec<TargetInput>,
    problems: &mut Problems,
    field_of: FieldOf,
) -> Vec<NewTarget> {
    let mut seen = HashSet::with_capacity(input.len());
    let mut targets = Vec::with_capacity(input.len());
    for (index, target) in input.into_iter().enumerate() {
        let field = field_of(index, "phone_number");
        let Some(raw) = target.phone_number else {
            problems.push(&field, "is required");
            continue;
        };
        let time_zone = match target.time_zone.as_deref() {
            None => None,
            Some(zone) => match zone.parse::<Tz>() {
                Ok(tz) => Some(tz),
                Err(_) => {
                    problems.push(
                        &field_of(index, "time_zone"),
                        format!("{zone:?} is not an IANA time zone"),
                    );
                    continue;
                }
            },
        };
        let metadata = match target.metadata.as_deref().map(validate_metadata) {
            None => None,
            Some(Ok(metadata)) => Some(metadata),
            Some(Err(problem)) => {
                problems.push(&field_of(index, "metadata"), problem);
                continue;
            }
        };
        match PhoneNumber::parse(&raw) {
            Ok(number) => {
                if seen.insert(number.clone()) {
                    targets.push(NewTarget {
                        phone_number: number,
                        metadata,
                        time_zone,
                    });
                }
            }
            Err(err) => problems.push(&field, format!("{raw:?} is {err}")),
        }
    }
    targets
}

// ---------------------------------------------------------------------------------------------
// Responses

#[derive(Debug, Serialize, ToSchema)]
pub struct RetryPolicyResponse {
    pub max_attempts: u32,
    pub base_delay: String,
    pub max_delay: String,
    pub jitter: f64,
}

impl From<&RetryPolicy> for RetryPolicyResponse {
    fn from(policy: &RetryPolicy) -> Self {
        Self {
            max_attempts: policy.max_attempts,
            base_delay: format_go_duration(policy.base_delay),
            max_delay: format_go_duration(policy.max_delay),
            jitter: policy.jitter,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BusinessHourResponse {
    pub day_of_week: u8,
    pub start: String,
    pub end: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignResponse {
    pub id: String,
    pub name: String,
    pub description: String,
    pub time_zone: String,
    pub status: String,
    pub max_concurrent_calls: u32,
    pub retry_policy: RetryPolicyResponse,
    pub business_hours: Vec<BusinessHourResponse>,
    /// Windows read in each called party's time zone; empty: no restriction.
    pub recipient_hours: Vec<BusinessHourResponse>,
    pub restricted_periods: Vec<RestrictedPeriodResponse>,
    pub recipient_limits: Vec<RecipientLimitResponse>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    pub target_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub twiml: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice_url: Option<String>,
    /// Why the engine paused the campaign by itself; absent for an operator's pause and once
    /// it starts again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<PauseReasonResponse>,
}

/// Why the engine paused a campaign by itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct PauseReasonResponse {
    /// `carrier_refused`: the carrier refuses what the campaign asks of it (its caller ID, its
    /// audio URL).
    pub code: String,
    /// The carrier's error code, when it gave one (21210: a caller ID the account may not use).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carrier_code: Option<u32>,
    pub message: String,
}

impl From<&PauseReason> for PauseReasonResponse {
    fn from(reason: &PauseReason) -> Self {
        Self {
            code: reason.code.clone(),
            carrier_code: reason.carrier_code,
            message: reason.message.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecipientLimitResponse {
    pub max_attempts: u32,
    /// As given, days as "7d", other windows as Go prints them ("36h0m0s").
    pub per: String,
}

impl From<&FrequencyCap> for RecipientLimitResponse {
    fn from(cap: &FrequencyCap) -> Self {
        Self {
            max_attempts: cap.max_attempts,
            per: format_window(cap.per),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RestrictedPeriodResponse {
    pub name: String,
    pub start: String,
    pub end: String,
}

fn windows_response(hours: &BusinessHours) -> Vec<BusinessHourResponse> {
    hours
        .windows()
        .iter()
        .map(|w| BusinessHourResponse {
            day_of_week: w.day_of_week,
            start: w.start.to_string(),
            end: w.end.to_string(),
        })
        .collect()
}

impl From<&Campaign> for CampaignResponse {
    fn from(c: &Campaign) -> Self {
        Self {
            id: c.id.to_string(),
            name: c.name.clone(),
            description: c.description.clone(),
            time_zone: c.time_zone.name().to_owned(),
            status: c.status.as_str().to_owned(),
            max_concurrent_calls: c.max_concurrent_calls,
            retry_policy: (&c.retry_policy).into(),
            business_hours: windows_response(&c.business_hours),
            recipient_hours: windows_response(&c.recipient_hours),
            restricted_periods: c
                .restricted_periods
                .iter()
                .map(|p| RestrictedPeriodResponse {
                    name: p.name.clone(),
                    start: p.start.to_string(),
                    end: p.end.to_string(),
                })
                .collect(),
            recipient_limits: c.recipient_limits.iter().map(Into::into).collect(),
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
            started_at: c.started_at.map(rfc3339),
            completed_at: c.completed_at.map(rfc3339),
            target_count: c.target_count,
            caller_id: c.voice.caller_id.clone(),
            twiml: match &c.voice.audio {
                Some(Audio::Twiml(twiml)) => Some(twiml.clone()),
                _ => None,
            },
            voice_url: match &c.voice.audio {
                Some(Audio::VoiceUrl(url)) => Some(url.clone()),
                _ => None,
            },
            pause_reason: c.pause_reason.as_ref().map(Into::into),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignListResponse {
    pub campaigns: Vec<CampaignResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallResponse {
    pub id: String,
    pub campaign_id: String,
    pub phone_number: String,
    pub status: String,
    pub attempt_count: u32,
    pub max_attempts: u32,
    pub scheduled_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
}

impl From<&Call> for CallResponse {
    fn from(c: &Call) -> Self {
        Self {
            id: c.id.to_string(),
            campaign_id: c.campaign_id.to_string(),
            phone_number: c.phone_number.to_string(),
            status: c.status.as_str().to_owned(),
            attempt_count: c.attempt_count,
            max_attempts: c.max_attempts,
            scheduled_at: rfc3339(c.scheduled_at),
            next_attempt_at: c.next_attempt_at.map(rfc3339),
            last_attempt_at: c.last_attempt_at.map(rfc3339),
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
            last_error: c.last_error.clone(),
            metadata: c.metadata.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptResponse {
    pub attempt: u32,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// What the carrier said about the call (real carriers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderCallResponse>,
}

/// The carrier's record of an attempt's call.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderCallResponse {
    /// The carrier's call id (Twilio's `CallSid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_sid: Option<String>,
    /// The last status the carrier reported: queued, initiated, ringing, in-progress,
    /// completed, busy, no-answer, failed or canceled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip_response_code: Option<u16>,
    /// human, machine_start, machine_end_beep, machine_end_silence, machine_end_other, fax or
    /// unknown, when answering machine detection ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    /// Connected seconds, as the carrier bills them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<u64>,
    /// The carrier's error code, for a refused create or a failed call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u32>,
}

impl From<&CarrierCall> for ProviderCallResponse {
    fn from(c: &CarrierCall) -> Self {
        Self {
            call_sid: c.sid.clone(),
            status: c.status.map(|s| s.as_str().to_owned()),
            sip_response_code: c.sip_code,
            answered_by: c.answered_by.clone(),
            duration_secs: c.duration_secs,
            error_code: c.error_code,
        }
    }
}

impl From<&Attempt> for AttemptResponse {
    fn from(a: &Attempt) -> Self {
        Self {
            attempt: a.attempt,
            status: a.status.as_str().to_owned(),
            error: a.error.clone(),
            started_at: rfc3339(a.started_at),
            ended_at: a.ended_at.map(rfc3339),
            duration_ms: a.duration_ms,
            provider: a.carrier.as_ref().map(ProviderCallResponse::from),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallDetailResponse {
    #[serde(flatten)]
    pub call: CallResponse,
    pub attempts: Vec<AttemptResponse>,
}

/// One finished attempt with the call it belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignAttemptResponse {
    pub call_id: String,
    #[serde(flatten)]
    pub attempt: AttemptResponse,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptListResponse {
    pub attempts: Vec<CampaignAttemptResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallListResponse {
    pub calls: Vec<CallResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// Why a call is or is not being dialed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExplainResponse {
    pub call_id: String,
    pub status: String,
    /// Queued with nothing holding it: the next claim may take it.
    pub dialable_now: bool,
    pub reasons: Vec<ReasonResponse>,
}

/// When a campaign will be done, with what the forecast assumed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ForecastResponse {
    pub campaign_id: String,
    pub status: String,
    /// The predicted instant the last call ends (RFC 3339); absent when no attempt has ended
    /// yet to measure calls by, or when no end is in sight within 90 days of windows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completes_at: Option<String>,
    /// What a forecast asked with other settings changed (`max_concurrent_calls`,
    /// `business_hours`); empty for the campaign as it is.
    pub what_if: Vec<String>,
    pub assumptions: ForecastAssumptions,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ForecastAssumptions {
    /// The limit the forecast dials with.
    pub max_concurrent_calls: u32,
    /// Mean length of an ended attempt, as the carrier reported it.
    pub call_seconds: f64,
    /// Seconds a slot is held per attempt: measured over the run (the dialer's own time
    /// included) once the run has ended twice its limit in attempts, else the call length.
    pub slot_seconds: f64,
    /// Completed calls over ended calls, when some have ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer_rate: Option<f64>,
    /// Retries over attempts so far.
    pub retry_rate: f64,
    pub attempts_per_call: f64,
    pub remaining_attempts: f64,
    /// While every waiting call's rules are open.
    pub attempts_per_second: f64,
    /// Waiting calls sampled for their recipients' hours and states, and the distinct rule sets
    /// among them; frequency caps and backoff delays are not modelled.
    pub sampled_calls: usize,
    pub recipient_groups: usize,
}

/// Why a campaign's waiting calls wait.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignExplainResponse {
    pub campaign_id: String,
    pub status: String,
    /// Running, with a waiting call nothing holds.
    pub dialable_now: bool,
    /// The first instant a waiting call may be dialed, when the campaign runs and it is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_dial_at: Option<String>,
    /// Waiting calls (queued or retrying) by the first rule holding each, with the codes of
    /// the call explanation; calls nothing holds are not counted. Estimates when `exact` is
    /// false: the shares of the sample applied to all the campaign's waiting calls.
    pub pending_by_reason: std::collections::BTreeMap<String, u64>,
    /// Why the engine paused the campaign by itself, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<PauseReasonResponse>,
    /// Whether every waiting call was read (at most 2,000 wait); otherwise the counts are
    /// estimated from `sampled_calls` of them, the earliest registered.
    pub exact: bool,
    /// How many waiting calls the estimate read, when `exact` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampled_calls: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReasonResponse {
    /// campaign_not_running, outside_business_hours, outside_recipient_hours,
    /// restricted_period, campaign_limit, global_limit, backoff, attempts_exhausted, ...
    pub code: String,
    pub message: String,
    /// When this reason stops holding, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatsResponse {
    pub campaign_id: String,
    pub total_targets: u64,
    pub total_calls: u64,
    pub pending_calls: u64,
    /// The pending calls waiting for their turn (a window, the limit, their first dial).
    pub queued_calls: u64,
    /// The pending calls waiting out a backoff before their next attempt.
    pub retrying_calls: u64,
    pub in_progress_calls: u64,
    pub completed_calls: u64,
    pub failed_calls: u64,
    pub canceled_calls: u64,
    pub retries_attempted: u64,
    pub attempts_total: u64,
    pub avg_duration_ms: f64,
    pub updated_at: String,
}

impl From<&CampaignStats> for StatsResponse {
    fn from(s: &CampaignStats) -> Self {
        Self {
            campaign_id: s.campaign_id.to_string(),
            total_targets: s.total_targets,
            total_calls: s.total_calls,
            pending_calls: s.pending_calls(),
            queued_calls: s.queued_calls,
            retrying_calls: s.retrying_calls,
            in_progress_calls: s.dialing_calls,
            completed_calls: s.completed_calls,
            failed_calls: s.failed_calls,
            canceled_calls: s.canceled_calls,
            retries_attempted: s.retries_attempted,
            attempts_total: s.attempts_total,
            avg_duration_ms: s.avg_duration_ms(),
            updated_at: rfc3339(s.updated_at),
        }
    }
}

/// What a valid create would register, without registering it (`?dry_run=true`); an invalid
/// one gets the create's 400 with every problem.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"dry_run": true, "targets": 2}))]
pub struct DryRunResponse {
    pub dry_run: bool,
    /// Distinct target numbers.
    pub targets: usize,
    /// The first targets as a create would register them (canonical numbers, duplicates
    /// merged), at most `DRY_RUN_PREVIEW`.
    pub preview: Vec<TargetPreview>,
}

/// How many targets a dry run shows.
pub const DRY_RUN_PREVIEW: usize = 10;

/// A target as it would be registered.
#[derive(Debug, Serialize, ToSchema)]
pub struct TargetPreview {
    pub phone_number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
}

impl From<&NewTarget> for TargetPreview {
    fn from(t: &NewTarget) -> Self {
        Self {
            phone_number: t.phone_number.as_str().to_owned(),
            time_zone: t.time_zone.map(|tz| tz.name().to_owned()),
            metadata: t.metadata.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedResponse {
    pub accepted: u64,
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

    #[test]
    fn targets_are_canonical_and_deduplicated() {
        let mut problems = Problems::default();
        let input = vec![
            TargetInput {
                phone_number: Some("+15555550001".into()),
                metadata: None,
                time_zone: None,
            },
            TargetInput {
                phone_number: Some("+1 555 555 0001".into()),
                metadata: None,
                time_zone: None,
            },
            TargetInput {
                phone_number: Some("12345".into()),
                metadata: None,
                time_zone: None,
            },
        ];
        let targets = validate_targets_as(input, &mut problems, json_target_field);
        assert_eq!(targets.len(), 1);
        assert_eq!(problems.0.len(), 1);
        assert!(problems.0[0].starts_with("targets[2].phone_number"));
    }
}
