//! What a call heard back (`spec/voice.md`, "What comes back"): who answered, the response the
//! callee's keys chose, the keys themselves, and whether a voicemail was left. Each attempt keeps
//! its own; a call shows, field by field, its latest attempt's that has one, and the campaign's
//! counters count calls by what they show.

use std::collections::BTreeMap;

/// The response of a callee who pressed the opt-out key.
pub const OPT_OUT: &str = "opt_out";
/// The response of a callee who pressed two keys that mean nothing.
pub const UNRECOGNIZED: &str = "unrecognized";
/// The response of a callee who pressed no key.
pub const NONE: &str = "none";

/// The carrier's verdict on who answered (Twilio's `AnsweredBy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnsweredBy {
    Human,
    MachineStart,
    MachineEndBeep,
    MachineEndSilence,
    MachineEndOther,
    Fax,
    Unknown,
}

impl AnsweredBy {
    pub const ALL: [Self; 7] = [
        Self::Human,
        Self::MachineStart,
        Self::MachineEndBeep,
        Self::MachineEndSilence,
        Self::MachineEndOther,
        Self::Fax,
        Self::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::MachineStart => "machine_start",
            Self::MachineEndBeep => "machine_end_beep",
            Self::MachineEndSilence => "machine_end_silence",
            Self::MachineEndOther => "machine_end_other",
            Self::Fax => "fax",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|by| by.as_str() == s)
    }

    /// An answering machine, whatever it did after its greeting.
    pub fn is_machine(self) -> bool {
        matches!(
            self,
            Self::MachineStart
                | Self::MachineEndBeep
                | Self::MachineEndSilence
                | Self::MachineEndOther
        )
    }

    /// A machine whose greeting is over: the moment a voicemail is heard from its start.
    pub fn greeting_ended(self) -> bool {
        matches!(
            self,
            Self::MachineEndBeep | Self::MachineEndSilence | Self::MachineEndOther
        )
    }
}

/// What one attempt (or, field by field, one call) heard back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub answered_by: Option<AnsweredBy>,
    /// A response's name, `opt_out`, `unrecognized` or `none`; set once per attempt.
    pub response: Option<String>,
    /// Every key pressed, in order.
    pub digits: Option<String>,
    pub voicemail_left: bool,
}

impl Answer {
    /// An answer as a store keeps it: the verdict's spelling, and the voicemail as a flag.
    pub fn stored(
        answered_by: Option<&str>,
        response: Option<String>,
        digits: Option<String>,
        voicemail_left: i32,
    ) -> Self {
        Self {
            answered_by: answered_by.and_then(AnsweredBy::parse),
            response,
            digits,
            voicemail_left: voicemail_left != 0,
        }
    }
}

/// Something the carrier told the engine about a live attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// The keys pressed so far on the attempt, and the response when they end the call.
    Keys {
        digits: String,
        response: Option<String>,
    },
    /// The carrier's verdict on who answered.
    AnsweredBy(AnsweredBy),
    /// A voicemail was left on the machine that answered.
    VoicemailLeft,
}

impl Answer {
    /// The attempt's answer once `heard` is recorded; `None` when it changes nothing, as a
    /// repeated or retried request does. A response, once recorded, is final: the call it
    /// ended has hung up, so later keys of the same attempt can only be a replay. The first
    /// verdict on who answered stands for the same reason.
    pub fn after(&self, heard: &Heard) -> Option<Answer> {
        let mut next = self.clone();
        match heard {
            Heard::Keys { digits, response } => {
                if self.response.is_some() {
                    return None;
                }
                next.digits = (!digits.is_empty()).then(|| digits.clone());
                next.response = response.clone();
            }
            Heard::AnsweredBy(by) => {
                if self.answered_by.is_some() {
                    return None;
                }
                next.answered_by = Some(*by);
            }
            Heard::VoicemailLeft => next.voicemail_left = true,
        }
        (next != *self).then_some(next)
    }

    /// What a call shows once its latest attempt's answer is `latest`: each field that attempt
    /// has, else the call's earlier one.
    pub fn shown_with(&self, latest: &Answer) -> Answer {
        Answer {
            answered_by: latest.answered_by.or(self.answered_by),
            response: latest.response.clone().or_else(|| self.response.clone()),
            digits: latest.digits.clone().or_else(|| self.digits.clone()),
            voicemail_left: latest.voicemail_left || self.voicemail_left,
        }
    }

    fn is_machine(&self) -> bool {
        self.answered_by.is_some_and(AnsweredBy::is_machine)
    }
}

/// Signed changes to a campaign's answer counters when one call's shown answer changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnswerDelta {
    /// Calls by response name.
    pub responses: BTreeMap<String, i64>,
    pub voicemails_left: i64,
    pub machine_answered: i64,
}

impl AnswerDelta {
    /// The change when a call's shown answer goes from `before` to `after`.
    pub fn between(before: &Answer, after: &Answer) -> Self {
        let mut delta = Self::default();
        if before.response != after.response {
            for (response, by) in [(&before.response, -1), (&after.response, 1)] {
                if let Some(name) = response {
                    *delta.responses.entry(name.clone()).or_default() += by;
                }
            }
        }
        delta.voicemails_left = i64::from(after.voicemail_left) - i64::from(before.voicemail_left);
        delta.machine_answered = i64::from(after.is_machine()) - i64::from(before.is_machine());
        delta
    }
}

/// What recording something heard on a live attempt changes: the attempt's answer, what its
/// call shows, and the campaign's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerChange {
    pub attempt: Answer,
    pub call: Answer,
    pub delta: AnswerDelta,
}

impl AnswerChange {
    /// The change `heard` makes to an attempt answered `attempt` whose call shows `call`;
    /// `None` when it changes nothing.
    pub fn of(attempt: &Answer, call: &Answer, heard: &Heard) -> Option<Self> {
        let next = attempt.after(heard)?;
        let shown = call.shown_with(&next);
        Some(Self {
            delta: AnswerDelta::between(call, &shown),
            attempt: next,
            call: shown,
        })
    }
}

/// A campaign's answer counters, as the statistics show them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnswerStats {
    /// Calls by the response they show; a name no call shows any more is left out.
    pub responses: BTreeMap<String, u64>,
    pub voicemails_left: u64,
    pub machine_answered: u64,
}

impl AnswerStats {
    /// Calls whose callee opted out by key press.
    pub fn opted_out(&self) -> u64 {
        self.responses.get(OPT_OUT).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;

    fn keys(digits: &str, response: Option<&str>) -> Heard {
        Heard::Keys {
            digits: digits.to_owned(),
            response: response.map(str::to_owned),
        }
    }

    #[test]
    fn a_change_moves_the_counters_by_what_the_call_shows() {
        let call = Answer {
            response: Some("confirm".into()),
            ..Answer::default()
        };
        let change = AnswerChange::of(&Answer::default(), &call, &keys("9", Some(OPT_OUT)))
            .expect("a change");
        assert_eq!(change.attempt.response.as_deref(), Some(OPT_OUT));
        assert_eq!(change.call.response.as_deref(), Some(OPT_OUT));
        assert_eq!(
            change.delta.responses,
            BTreeMap::from([("confirm".into(), -1), (OPT_OUT.into(), 1)])
        );
        assert_eq!(
            AnswerChange::of(&change.attempt, &change.call, &keys("9", Some(OPT_OUT))),
            None
        );
    }

    #[test]
    fn answered_by_spells_twilios_verdicts() {
        for by in AnsweredBy::ALL {
            assert_eq!(AnsweredBy::parse(by.as_str()), Some(by));
        }
        assert_eq!(AnsweredBy::parse("machine"), None);
        assert!(AnsweredBy::MachineEndBeep.is_machine());
        assert!(!AnsweredBy::Fax.is_machine());
        assert!(!AnsweredBy::MachineStart.greeting_ended());
    }

    #[test]
    fn a_response_is_recorded_once_and_a_replay_changes_nothing() {
        let first = Answer::default().after(&keys("4", None)).expect("a miss");
        assert_eq!(first.digits.as_deref(), Some("4"));
        assert_eq!(first.response, None);
        assert_eq!(first.after(&keys("4", None)), None, "the same miss again");
        let second = first
            .after(&keys("45", Some(UNRECOGNIZED)))
            .expect("a second miss");
        assert_eq!(second.response.as_deref(), Some(UNRECOGNIZED));
        assert_eq!(second.digits.as_deref(), Some("45"));
        assert_eq!(second.after(&keys("45", Some(UNRECOGNIZED))), None);
        assert_eq!(second.after(&keys("1", Some("confirm"))), None);
        let silent = Answer::default()
            .after(&keys("", Some(NONE)))
            .expect("none");
        assert_eq!(silent.digits, None);
        assert_eq!(silent.response.as_deref(), Some(NONE));
    }

    #[test]
    fn the_first_verdict_stands_and_a_voicemail_is_left_once() {
        let human = Answer::default()
            .after(&Heard::AnsweredBy(AnsweredBy::Human))
            .expect("a verdict");
        assert_eq!(human.after(&Heard::AnsweredBy(AnsweredBy::Fax)), None);
        let left = human.after(&Heard::VoicemailLeft).expect("left");
        assert!(left.voicemail_left);
        assert_eq!(left.after(&Heard::VoicemailLeft), None);
    }

    #[test]
    fn a_call_shows_its_latest_attempts_fields_and_the_counters_follow() {
        let machine = Answer {
            answered_by: Some(AnsweredBy::MachineEndBeep),
            ..Answer::default()
        };
        let shown = Answer::default().shown_with(&machine);
        let delta = AnswerDelta::between(&Answer::default(), &shown);
        assert_eq!(delta.machine_answered, 1);
        assert!(delta.responses.is_empty());
        // The retry reaches a person who confirms.
        let person = Answer {
            answered_by: Some(AnsweredBy::Human),
            response: Some("confirm".into()),
            digits: Some("1".into()),
            voicemail_left: false,
        };
        let after = shown.shown_with(&person);
        let delta = AnswerDelta::between(&shown, &after);
        assert_eq!(delta.machine_answered, -1);
        assert_eq!(delta.responses, BTreeMap::from([("confirm".into(), 1)]));
        // A later attempt without a response keeps the call's earlier one.
        let kept = after.shown_with(&Answer::default());
        assert_eq!(kept, after);
        assert_eq!(AnswerDelta::between(&after, &kept), AnswerDelta::default());
        let changed = after.shown_with(&Answer {
            response: Some(OPT_OUT.into()),
            ..Answer::default()
        });
        assert_eq!(
            AnswerDelta::between(&after, &changed).responses,
            BTreeMap::from([("confirm".into(), -1), (OPT_OUT.into(), 1)])
        );
    }
}
