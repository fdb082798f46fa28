//! A campaign's `message` at the API (`spec/voice.md`): its rules are the domain's; here they
//! are reported under `message.*`, checked against the targets it will be spoken to, and
//! previewed.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::context::AppContext;
use crate::domain::call::CallStatus;
use crate::domain::ids::CampaignId;
use crate::domain::message::{MachineAction, Message, Spoken, TargetValues};
use crate::ports::{CallFilter, NewTarget, StoreError};
use crate::roles::api::handlers::targets::FieldOf;
use crate::roles::api::handlers::Problems;

/// At most this many targets are named for keys they lack; the count says how many more.
pub const MAX_UNFILLED_LISTED: usize = 100;

/// The message `value` describes; `None` when absent or null, or when it breaks a rule (each
/// pushed to `problems`).
pub fn validate_message(value: Option<&Value>, problems: &mut Problems) -> Option<Message> {
    let value = value.filter(|v| !v.is_null())?;
    match Message::parse(value) {
        Ok(message) => Some(message),
        Err(broken) => {
            for problem in broken {
                let field = if problem.field.is_empty() {
                    "message".to_owned()
                } else {
                    format!("message.{}", problem.field)
                };
                problems.push(&field, problem.problem);
            }
            None
        }
    }
}

/// Problems of the targets `message` cannot be spoken to: keys their metadata lacks (the first
/// `MAX_UNFILLED_LISTED` such targets, then a count of the rest), and a voicemail longer than
/// the carrier takes.
pub fn check_targets(
    message: &Message,
    targets: &[NewTarget],
    field_of: FieldOf,
    problems: &mut Problems,
) {
    if message.keys().is_empty() && !leaves_voicemail(message) {
        return;
    }
    let mut unfilled = 0usize;
    for (index, target) in targets.iter().enumerate() {
        let values = TargetValues::new(target.phone_number.as_str(), target.metadata.as_ref());
        let missing: BTreeSet<String> = message.missing(&values);
        if !missing.is_empty() {
            unfilled += 1;
            if unfilled <= MAX_UNFILLED_LISTED {
                let keys: Vec<String> = missing.into_iter().collect();
                problems.push(
                    &field_of(index, "metadata"),
                    format!("lacks {}, which the message names", keys.join(", ")),
                );
            }
            continue;
        }
        if let Some(problem) = message.voicemail_problem(&values) {
            problems.push(&field_of(index, "metadata"), problem);
        }
    }
    if unfilled > MAX_UNFILLED_LISTED {
        problems.push(
            "targets",
            format!(
                "{} more targets lack keys the message names",
                unfilled - MAX_UNFILLED_LISTED
            ),
        );
    }
}

fn leaves_voicemail(message: &Message) -> bool {
    matches!(
        message.machine.as_ref().map(|m| &m.action),
        Some(MachineAction::Message(_))
    )
}

/// What `target` will hear, in order, as a dry run previews it.
pub fn spoken(message: &Message, target: &NewTarget) -> Vec<String> {
    let values = TargetValues::new(target.phone_number.as_str(), target.metadata.as_ref());
    message
        .spoken(&values)
        .map(|parts| parts.iter().map(Spoken::preview).collect())
        .unwrap_or_default()
}

/// Calls read per page when a new message is checked against the calls still to dial.
const WAITING_PAGE: usize = 1000;

/// Problems of the calls that may still be dialed (queued, retrying, or dialing now and maybe
/// retried) that `message` cannot be spoken to, read a page at a time: keys their metadata
/// lacks (the first `MAX_UNFILLED_LISTED` by id and number, then a count) and a voicemail
/// longer than the carrier takes.
pub async fn check_waiting_calls(
    ctx: &AppContext,
    campaign_id: CampaignId,
    message: &Message,
    problems: &mut Problems,
) -> Result<(), StoreError> {
    if message.keys().is_empty() && !leaves_voicemail(message) {
        return Ok(());
    }
    let mut unfilled = 0usize;
    for status in [
        CallStatus::Queued,
        CallStatus::Retrying,
        CallStatus::Dialing,
    ] {
        let filter = CallFilter {
            status: Some(status),
            phone_number: None,
        };
        let mut after = None;
        loop {
            let page = ctx
                .store
                .list_calls(campaign_id, &filter, after, WAITING_PAGE)
                .await?;
            for call in &page {
                let values = TargetValues::new(call.phone_number.as_str(), call.metadata.as_ref());
                let missing = message.missing(&values);
                if missing.is_empty() {
                    if let Some(problem) = message.voicemail_problem(&values) {
                        let field = format!("message (call {} to {})", call.id, call.phone_number);
                        problems.push(&field, problem);
                    }
                    continue;
                }
                unfilled += 1;
                if unfilled <= MAX_UNFILLED_LISTED {
                    let keys: Vec<String> = missing.into_iter().collect();
                    problems.push(
                        &format!("message (call {} to {})", call.id, call.phone_number),
                        format!(
                            "its metadata lacks {}, which the message names",
                            keys.join(", ")
                        ),
                    );
                }
            }
            match page.last() {
                Some(last) if page.len() == WAITING_PAGE => after = Some(last.id),
                _ => break,
            }
        }
    }
    if unfilled > MAX_UNFILLED_LISTED {
        problems.push(
            "message",
            format!(
                "{} more calls still to dial lack keys it names",
                unfilled - MAX_UNFILLED_LISTED
            ),
        );
    }
    Ok(())
}
