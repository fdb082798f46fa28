//! What a call becomes once the carrier says who answered it, and what silence after the
//! message means while that verdict is awaited.

use std::time::Duration;

use super::{MachineAction, Message, Missing, Values};
use crate::domain::answer::AnsweredBy;
use crate::domain::call::AttemptOutcome;
use crate::domain::carrier::MachineOutcome;

/// What the engine does with a live call when the carrier's verdict on who answered arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnVerdict {
    /// Nothing: a person (or a verdict that cannot tell) goes on hearing the message.
    Continue,
    /// The machine's greeting is over: the call is changed to say this voicemail, then hang up.
    LeaveVoicemail(String),
    /// The call is ended and its attempt finishes with this outcome.
    End(AttemptOutcome),
}

/// What silence after the message means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterSilence {
    /// The callee pressed nothing: the response is `none`, and the call hangs up.
    Nothing,
    /// A machine may still be answering: the call stays up this long for its verdict, with no
    /// response recorded, then hangs up.
    Wait(Duration),
}

/// What a machine the engine hung up on counts as.
fn hung_up(machine_outcome: MachineOutcome) -> AttemptOutcome {
    match machine_outcome {
        MachineOutcome::Completed => AttemptOutcome::Answered,
        MachineOutcome::Retry => machine_failure(),
    }
}

fn machine_failure() -> AttemptOutcome {
    AttemptOutcome::Failed {
        error: "machine".to_owned(),
        retryable: true,
    }
}

impl Message {
    /// The engine's answer to the verdict `by` on a call of this message.
    /// `machine_outcome` is what a machine hung up on counts as
    /// (`telephony.twilio.machine_outcome`).
    pub fn on_verdict(
        &self,
        by: AnsweredBy,
        values: &dyn Values,
        machine_outcome: MachineOutcome,
    ) -> Result<OnVerdict, Missing> {
        if let Some(outcome) = self.ending(by, machine_outcome) {
            return Ok(OnVerdict::End(outcome));
        }
        match &self.machine {
            Some(machine)
                if by.greeting_ended() && matches!(machine.action, MachineAction::Message(_)) =>
            {
                Ok(match self.voicemail_twiml(values)? {
                    Some(twiml) => OnVerdict::LeaveVoicemail(twiml),
                    None => OnVerdict::End(hung_up(machine_outcome)),
                })
            }
            _ => Ok(OnVerdict::Continue),
        }
    }

    /// The outcome of an attempt whose call the carrier reported ended as `reported`, once
    /// its verdict was `by`: a call the engine ended for its verdict finishes as the verdict
    /// says, whatever the hang-up looked like to the carrier.
    pub fn settle(
        &self,
        by: AnsweredBy,
        reported: AttemptOutcome,
        machine_outcome: MachineOutcome,
    ) -> AttemptOutcome {
        if let Some(outcome) = self.ending(by, machine_outcome) {
            return outcome;
        }
        // A machine that got the message's voicemail: the attempt completed, whatever the
        // deployment's `machine_outcome` would make of a machine (the message's `machine`
        // replaces it).
        let voicemail = self
            .machine
            .as_ref()
            .is_some_and(|m| matches!(m.action, MachineAction::Message(_)));
        match reported {
            AttemptOutcome::Failed { ref error, .. }
                if voicemail && by.is_machine() && error == "machine" =>
            {
                AttemptOutcome::Answered
            }
            other => other,
        }
    }

    /// The outcome the verdict `by` ends the call with, when it ends it.
    fn ending(&self, by: AnsweredBy, machine_outcome: MachineOutcome) -> Option<AttemptOutcome> {
        if by == AnsweredBy::Fax {
            return Some(AttemptOutcome::Failed {
                error: "fax".to_owned(),
                retryable: false,
            });
        }
        let machine = self.machine.as_ref()?;
        if !by.greeting_ended() {
            return None;
        }
        match &machine.action {
            MachineAction::Message(_) => None,
            MachineAction::Hangup => Some(hung_up(machine_outcome)),
            MachineAction::Retry => Some(machine_failure()),
        }
    }

    /// What no key at all means `since_answer` after the call was answered, with the verdict
    /// `verdict` heard so far: with a machine to look out for and no verdict yet, the call waits
    /// out the rest of the detection time, so a long greeting's verdict still finds it live; a
    /// machine whose voicemail is on its way waits for it. Once the wait is over, the silence is
    /// `none`.
    pub fn after_silence(
        &self,
        verdict: Option<AnsweredBy>,
        since_answer: Duration,
    ) -> AfterSilence {
        let Some(machine) = &self.machine else {
            return AfterSilence::Nothing;
        };
        let left = machine.detection_timeout.saturating_sub(since_answer);
        // Whole seconds, rounded up: `<Pause>` takes no fraction.
        let whole =
            |d: Duration| Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0));
        match verdict {
            None if !left.is_zero() => AfterSilence::Wait(whole(left)),
            Some(by)
                if by.greeting_ended() && matches!(machine.action, MachineAction::Message(_)) =>
            {
                AfterSilence::Wait(whole(left.max(VOICEMAIL_WAIT)))
            }
            _ => AfterSilence::Nothing,
        }
    }
}

/// How long a machine whose voicemail is being sent is kept on the line for it.
const VOICEMAIL_WAIT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use serde_json::json;

    use super::*;
    use crate::domain::message::TargetValues;

    fn message(machine: serde_json::Value) -> Message {
        Message::parse(&json!({
            "identification": "This is Acme Dental.",
            "say": "See you on Monday.",
            "machine": machine,
            "callback_number": "+18005550100",
        }))
        .expect("a valid message")
    }

    #[test]
    fn a_machine_after_its_greeting_gets_what_the_message_asks() {
        let values = TargetValues::new("+15555550001", None);
        let voicemail = message(json!({"action": "message", "say": "Call us."}));
        let OnVerdict::LeaveVoicemail(twiml) = voicemail
            .on_verdict(
                AnsweredBy::MachineEndBeep,
                &values,
                MachineOutcome::Completed,
            )
            .expect("filled")
        else {
            panic!("a voicemail is left");
        };
        assert!(twiml.contains("Call us."), "{twiml}");
        assert!(twiml.ends_with("<Hangup/></Response>"), "{twiml}");
        for by in [
            AnsweredBy::Human,
            AnsweredBy::Unknown,
            AnsweredBy::MachineStart,
        ] {
            assert_eq!(
                voicemail.on_verdict(by, &values, MachineOutcome::Completed),
                Ok(OnVerdict::Continue)
            );
        }
        assert_eq!(
            voicemail.on_verdict(AnsweredBy::Fax, &values, MachineOutcome::Completed),
            Ok(OnVerdict::End(AttemptOutcome::Failed {
                error: "fax".into(),
                retryable: false
            }))
        );
        let hangup = message(json!({"action": "hangup"}));
        for (outcome, expected) in [
            (MachineOutcome::Completed, AttemptOutcome::Answered),
            (MachineOutcome::Retry, machine_failure()),
        ] {
            assert_eq!(
                hangup.on_verdict(AnsweredBy::MachineEndSilence, &values, outcome),
                Ok(OnVerdict::End(expected))
            );
        }
        let canceled = AttemptOutcome::Failed {
            error: "canceled".into(),
            retryable: false,
        };
        assert_eq!(
            hangup.settle(
                AnsweredBy::MachineEndBeep,
                canceled.clone(),
                MachineOutcome::Retry
            ),
            machine_failure(),
            "a machine hung up on while the carrier still counted it ringing"
        );
        assert_eq!(
            hangup.settle(AnsweredBy::Human, canceled.clone(), MachineOutcome::Retry),
            canceled
        );
        let retry = message(json!({"action": "retry"}));
        assert_eq!(
            retry.on_verdict(
                AnsweredBy::MachineEndOther,
                &values,
                MachineOutcome::Completed
            ),
            Ok(OnVerdict::End(machine_failure()))
        );
    }

    #[test]
    fn silence_waits_for_a_pending_verdict_until_the_detection_time_is_over() {
        let waits = message(json!({"action": "hangup", "detection_timeout": "30s"}));
        assert_eq!(
            waits.after_silence(None, Duration::from_millis(12_500)),
            AfterSilence::Wait(Duration::from_secs(18))
        );
        assert_eq!(
            waits.after_silence(None, Duration::from_secs(31)),
            AfterSilence::Nothing
        );
        assert_eq!(
            waits.after_silence(Some(AnsweredBy::Human), Duration::from_secs(1)),
            AfterSilence::Nothing
        );
        let leaves = message(json!({"action": "message", "say": "Call us."}));
        assert_eq!(
            leaves.after_silence(Some(AnsweredBy::MachineEndBeep), Duration::from_secs(40)),
            AfterSilence::Wait(VOICEMAIL_WAIT),
            "a machine whose voicemail is on its way is not hung up on"
        );
        assert_eq!(
            leaves.settle(
                AnsweredBy::MachineEndBeep,
                machine_failure(),
                MachineOutcome::Retry
            ),
            AttemptOutcome::Answered,
            "a voicemail left completes the attempt"
        );
        let plain = Message::parse(&json!({"identification": "Acme.", "say": "Hi."}))
            .expect("a valid message");
        assert_eq!(
            plain.after_silence(None, Duration::ZERO),
            AfterSilence::Nothing
        );
    }
}
