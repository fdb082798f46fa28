//! The bodies events are sent with: `{"type", "timestamp", "data"}`, compact JSON in that key
//! order, every instant RFC 3339 in UTC to the millisecond (`2026-03-01T12:00:00.250Z`).
//!
//! A body is built at a delivery's first try from the rows the change left (or, for an
//! opt-out, when it is written) and stored as text: every later try sends (and signs) the same
//! bytes, with the `timestamp` of the change it reports.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

use super::EventType;

/// The body of an event of `event_type` committed at `timestamp`. `data` is one of the structs
/// below or a `serde_json::Value`; a value writes its keys sorted (serde_json keeps no insertion
/// order here), a struct in the order of its fields.
pub fn body(event_type: EventType, timestamp: DateTime<Utc>, data: impl Serialize) -> String {
    envelope(event_type, timestamp, &data)
}

#[derive(Serialize)]
struct Envelope<'a, T> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(serialize_with = "rfc3339_millis")]
    timestamp: DateTime<Utc>,
    data: &'a T,
}

fn envelope<T: Serialize>(kind: EventType, timestamp: DateTime<Utc>, data: &T) -> String {
    let envelope = Envelope {
        kind: kind.as_str(),
        timestamp,
        data,
    };
    // Only maps with non-string keys fail to become JSON, and the event structs and JSON values
    // this is given have none; were one to, its type and time still go out.
    serde_json::to_string(&envelope).unwrap_or_else(|_| {
        format!(
            "{{\"type\":\"{}\",\"timestamp\":\"{}\",\"data\":{{}}}}",
            kind.as_str(),
            timestamp.to_rfc3339_opts(SecondsFormat::Millis, true)
        )
    })
}

fn rfc3339_millis<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// `attempt.finished`: an attempt's outcome is recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptFinished {
    pub call_id: String,
    pub campaign_id: String,
    pub phone_number: String,
    pub attempt: u32,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
    #[serde(serialize_with = "rfc3339_millis")]
    pub started_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339_millis")]
    pub ended_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digits: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voicemail_left: Option<bool>,
    pub metadata: serde_json::Value,
}

/// `call.finished`: a call reaches `completed`, `failed` or `canceled`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallFinished {
    pub call_id: String,
    pub campaign_id: String,
    pub phone_number: String,
    pub status: String,
    /// How many attempts were made.
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    pub metadata: serde_json::Value,
}

/// `call.opted_out`: a number is listed by a key press or the inbound line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallOptedOut {
    pub phone_number: String,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    #[serde(serialize_with = "rfc3339_millis")]
    pub at: DateTime<Utc>,
}

/// `campaign.status_changed`: a campaign's status changes, by request or by itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignStatusChanged {
    pub campaign_id: String,
    pub name: String,
    pub from: String,
    pub to: String,
    #[serde(serialize_with = "rfc3339_millis")]
    pub at: DateTime<Utc>,
    /// Why the engine paused it by itself, as the campaign shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<serde_json::Value>,
}

/// An event with its data, which knows its own type, so a body cannot be sent under another.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    AttemptFinished(AttemptFinished),
    CallFinished(CallFinished),
    CallOptedOut(CallOptedOut),
    CampaignStatusChanged(CampaignStatusChanged),
}

impl Event {
    pub fn event_type(&self) -> EventType {
        match self {
            Self::AttemptFinished(_) => EventType::AttemptFinished,
            Self::CallFinished(_) => EventType::CallFinished,
            Self::CallOptedOut(_) => EventType::CallOptedOut,
            Self::CampaignStatusChanged(_) => EventType::CampaignStatusChanged,
        }
    }

    /// The body of this event committed at `timestamp`, as `body` writes it for its type.
    pub fn body(&self, timestamp: DateTime<Utc>) -> String {
        let kind = self.event_type();
        match self {
            Self::AttemptFinished(data) => envelope(kind, timestamp, data),
            Self::CallFinished(data) => envelope(kind, timestamp, data),
            Self::CallOptedOut(data) => envelope(kind, timestamp, data),
            Self::CampaignStatusChanged(data) => envelope(kind, timestamp, data),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn to_value(data: &impl Serialize) -> serde_json::Value {
        serde_json::to_value(data).unwrap()
    }

    fn at(secs: i64, millis: u32) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, millis * 1_000_000).unwrap()
    }

    // 2026-03-01T12:00:00Z
    const NOON: i64 = 1_772_366_400;

    #[test]
    fn a_body_is_type_timestamp_data_in_that_order() {
        let text = body(
            EventType::CallFinished,
            at(NOON, 250),
            json!({"a": 2, "z": "x"}),
        );
        assert_eq!(
            text,
            r#"{"type":"call.finished","timestamp":"2026-03-01T12:00:00.250Z","data":{"a":2,"z":"x"}}"#
        );
    }

    #[test]
    fn timestamps_keep_milliseconds_even_when_whole() {
        let text = body(EventType::CallOptedOut, at(NOON, 0), json!({}));
        assert!(
            text.contains(r#""timestamp":"2026-03-01T12:00:00.000Z""#),
            "{text}"
        );
        // Finer precision is cut, not rounded into the next millisecond.
        let fine = Utc.timestamp_opt(NOON, 999_999_999).unwrap();
        let text = body(EventType::CallOptedOut, fine, json!({}));
        assert!(
            text.contains(r#""timestamp":"2026-03-01T12:00:00.999Z""#),
            "{text}"
        );
    }

    fn attempt() -> AttemptFinished {
        AttemptFinished {
            call_id: "call_1".to_owned(),
            campaign_id: "cmp_1".to_owned(),
            phone_number: "+15551234567".to_owned(),
            attempt: 2,
            status: "no_answer".to_owned(),
            error: None,
            duration_ms: 30_000,
            started_at: at(NOON, 0),
            ended_at: at(NOON + 30, 0),
            answered_by: None,
            response: None,
            digits: None,
            voicemail_left: None,
            metadata: json!({"crm_id": "42"}),
        }
    }

    #[test]
    fn attempt_finished_leaves_out_what_is_absent() {
        let event = Event::AttemptFinished(attempt());
        assert_eq!(event.event_type(), EventType::AttemptFinished);
        assert_eq!(
            event.body(at(NOON + 30, 5)),
            concat!(
                r#"{"type":"attempt.finished","timestamp":"2026-03-01T12:00:30.005Z","data":{"#,
                r#""call_id":"call_1","campaign_id":"cmp_1","phone_number":"+15551234567","#,
                r#""attempt":2,"status":"no_answer","duration_ms":30000,"#,
                r#""started_at":"2026-03-01T12:00:00.000Z","ended_at":"2026-03-01T12:00:30.000Z","#,
                r#""metadata":{"crm_id":"42"}}}"#
            )
        );
    }

    #[test]
    fn attempt_finished_carries_what_is_present() {
        let full = AttemptFinished {
            status: "completed".to_owned(),
            error: Some("busy".to_owned()),
            answered_by: Some("human".to_owned()),
            response: Some("confirmed".to_owned()),
            digits: Some("1".to_owned()),
            voicemail_left: Some(false),
            ..attempt()
        };
        let value: serde_json::Value =
            serde_json::from_str(&Event::AttemptFinished(full).body(at(NOON, 0))).unwrap();
        let data = &value["data"];
        assert_eq!(data["error"], "busy");
        assert_eq!(data["answered_by"], "human");
        assert_eq!(data["response"], "confirmed");
        assert_eq!(data["digits"], "1");
        assert_eq!(data["voicemail_left"], false);
    }

    #[test]
    fn the_event_body_equals_the_value_body() {
        let events = [
            Event::AttemptFinished(attempt()),
            Event::CallFinished(CallFinished {
                call_id: "call_1".to_owned(),
                campaign_id: "cmp_1".to_owned(),
                phone_number: "+15551234567".to_owned(),
                status: "failed".to_owned(),
                attempts: 3,
                last_error: Some("no_answer".to_owned()),
                response: None,
                metadata: json!({}),
            }),
            Event::CallOptedOut(CallOptedOut {
                phone_number: "+15551234567".to_owned(),
                scope: "global".to_owned(),
                campaign_id: None,
                call_id: None,
                at: at(NOON, 1),
            }),
            Event::CampaignStatusChanged(CampaignStatusChanged {
                campaign_id: "cmp_1".to_owned(),
                name: "Renewals".to_owned(),
                from: "running".to_owned(),
                to: "paused".to_owned(),
                at: at(NOON, 2),
                pause_reason: Some(serde_json::json!({"code": "error_rate"})),
            }),
        ];
        for event in events {
            let kind = event.event_type();
            let (by_struct, data) = match &event {
                Event::AttemptFinished(data) => (body(kind, at(NOON, 9), data), to_value(data)),
                Event::CallFinished(data) => (body(kind, at(NOON, 9), data), to_value(data)),
                Event::CallOptedOut(data) => (body(kind, at(NOON, 9), data), to_value(data)),
                Event::CampaignStatusChanged(data) => {
                    (body(kind, at(NOON, 9), data), to_value(data))
                }
            };
            let typed = event.body(at(NOON, 9));
            assert_eq!(typed, by_struct);
            // Through a JSON value the keys come out sorted: the same object, other text.
            let by_value = body(kind, at(NOON, 9), data);
            let parsed: serde_json::Value = serde_json::from_str(&typed).unwrap();
            assert_eq!(
                parsed,
                serde_json::from_str::<serde_json::Value>(&by_value).unwrap()
            );
            assert_eq!(parsed["type"], kind.as_str());
        }
    }

    #[test]
    fn call_finished_counts_attempts() {
        let event = Event::CallFinished(CallFinished {
            call_id: "call_1".to_owned(),
            campaign_id: "cmp_1".to_owned(),
            phone_number: "+15551234567".to_owned(),
            status: "completed".to_owned(),
            attempts: 2,
            last_error: None,
            response: Some("yes".to_owned()),
            metadata: json!({}),
        });
        assert_eq!(
            event.body(at(NOON, 0)),
            concat!(
                r#"{"type":"call.finished","timestamp":"2026-03-01T12:00:00.000Z","data":{"#,
                r#""call_id":"call_1","campaign_id":"cmp_1","phone_number":"+15551234567","#,
                r#""status":"completed","attempts":2,"response":"yes","metadata":{}}}"#
            )
        );
    }

    #[test]
    fn opt_outs_and_status_changes_read_as_the_specification() {
        let opted = Event::CallOptedOut(CallOptedOut {
            phone_number: "+15551234567".to_owned(),
            scope: "campaign".to_owned(),
            campaign_id: Some("cmp_1".to_owned()),
            call_id: Some("call_1".to_owned()),
            at: at(NOON, 120),
        });
        assert_eq!(
            opted.body(at(NOON, 120)),
            concat!(
                r#"{"type":"call.opted_out","timestamp":"2026-03-01T12:00:00.120Z","data":{"#,
                r#""phone_number":"+15551234567","scope":"campaign","campaign_id":"cmp_1","#,
                r#""call_id":"call_1","at":"2026-03-01T12:00:00.120Z"}}"#
            )
        );
        let changed = Event::CampaignStatusChanged(CampaignStatusChanged {
            campaign_id: "cmp_1".to_owned(),
            name: "Renewals \"Q1\"".to_owned(),
            from: "scheduled".to_owned(),
            to: "running".to_owned(),
            at: at(NOON, 0),
            pause_reason: None,
        });
        assert_eq!(
            changed.body(at(NOON, 0)),
            concat!(
                r#"{"type":"campaign.status_changed","timestamp":"2026-03-01T12:00:00.000Z","#,
                r#""data":{"campaign_id":"cmp_1","name":"Renewals \"Q1\"","from":"scheduled","#,
                r#""to":"running","at":"2026-03-01T12:00:00.000Z"}}"#
            )
        );
    }
}
