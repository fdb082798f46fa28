//! What each key meant when the callee heard the prompt. The voice answer writes it into the
//! gather URL it gives the carrier (the carrier signs that URL back), so a message changed
//! while a call is in progress never changes what a key already offered means: an opt-out the
//! callee was offered stays an opt-out.

use super::{Key, Message, OptOut, OptOutScope};

const OPT_OUT: &str = "opt_out";

impl Message {
    /// The keys' meanings, as `9:opt_out:global,1:confirmed`.
    pub fn meanings(&self) -> String {
        let mut parts = Vec::with_capacity(self.responses.len() + 1);
        if let Some(opt_out) = self.opt_out {
            let scope = match opt_out.scope {
                OptOutScope::Global => "global",
                OptOutScope::Campaign => "campaign",
            };
            parts.push(format!("{}:{OPT_OUT}:{scope}", opt_out.digit.as_char()));
        }
        for response in &self.responses {
            parts.push(format!("{}:{}", response.digit.as_char(), response.name));
        }
        parts.join(",")
    }

    /// The opt-out `meanings` offered, if it offered one and reads as `meanings()` writes it.
    pub fn offered_opt_out(meanings: &str) -> Option<OptOut> {
        meanings.split(',').find_map(|part| {
            let mut fields = part.split(':');
            let key = Key::parse(fields.next()?)?;
            let scope = match (fields.next()?, fields.next()?, fields.next()) {
                (OPT_OUT, "global", None) => OptOutScope::Global,
                (OPT_OUT, "campaign", None) => OptOutScope::Campaign,
                _ => return None,
            };
            Some(OptOut { digit: key, scope })
        })
    }

    /// This message with its keys meaning what `meanings` says they meant when the callee
    /// heard them: a response still named in the message keeps its reply, one no longer named
    /// is recorded without one. `None` when `meanings` is not what `meanings()` writes.
    pub fn as_heard(&self, meanings: &str) -> Option<Message> {
        let mut heard = self.clone();
        heard.opt_out = None;
        heard.responses = Vec::new();
        for part in meanings.split(',').filter(|part| !part.is_empty()) {
            let mut fields = part.split(':');
            let key = Key::parse(fields.next()?)?;
            let name = fields.next()?;
            match (name, fields.next(), fields.next()) {
                (OPT_OUT, Some(scope), None) => {
                    let scope = match scope {
                        "global" => OptOutScope::Global,
                        "campaign" => OptOutScope::Campaign,
                        _ => return None,
                    };
                    heard.opt_out = Some(OptOut { digit: key, scope });
                }
                (name, None, None) if super::is_response_name(name) => {
                    let reply = self
                        .responses
                        .iter()
                        .find(|r| r.name == name)
                        .and_then(|r| r.reply.clone());
                    heard.responses.push(super::Response {
                        digit: key,
                        name: name.to_owned(),
                        reply,
                    });
                }
                _ => return None,
            }
        }
        Some(heard)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use serde_json::json;

    use crate::domain::message::{Heard, Key, Message};

    fn parse(value: serde_json::Value) -> Message {
        Message::parse(&value).expect("a valid message")
    }

    #[test]
    fn a_key_means_what_it_meant_when_it_was_offered() {
        let before = parse(json!({
            "identification": "Acme.", "say": "Hi.", "prompt": "Press 1.",
            "responses": [{"digit": "1", "name": "confirmed", "reply": "Thanks."}],
        }));
        let offered = before.meanings();
        assert_eq!(offered, "9:opt_out:global,1:confirmed");
        // Changed mid-call: the opt-out moved to 8, and 1 now means something else.
        let after = parse(json!({
            "identification": "Acme.", "say": "Hi.", "prompt": "Press 1.",
            "opt_out": {"digit": "8", "scope": "campaign"},
            "responses": [{"digit": "1", "name": "reschedule"}, {"digit": "2", "name": "confirmed", "reply": "Thank you."}],
        }));
        let heard = after.as_heard(&offered).expect("written by meanings()");
        let nine = Key::parse("9");
        assert_eq!(heard.hear(&[], nine), Heard::OptOut);
        assert_eq!(heard.hear(&[], Key::parse("1")), Heard::Response(0));
        assert_eq!(heard.responses[0].name, "confirmed");
        assert!(
            heard.responses[0].reply.is_some(),
            "the reply of the same name is said"
        );
        assert_eq!(heard.hear(&[], Key::parse("8")), Heard::Again);
        assert_eq!(after.as_heard(&heard.meanings()), Some(heard));
        for bad in ["x:confirmed", "1:Bad Name", "9:opt_out:nowhere", "1:a:b:c"] {
            assert_eq!(after.as_heard(bad), None, "{bad}");
        }
        let none = parse(json!({"identification": "Acme.", "say": "Hi.", "opt_out": false}));
        assert_eq!(none.meanings(), "");
        assert_eq!(before.as_heard("").map(|m| m.opt_out), Some(None));
        assert_eq!(
            Message::offered_opt_out(&offered).map(|o| o.digit),
            Key::parse("9")
        );
        assert_eq!(Message::offered_opt_out("1:confirmed"), None);
    }
}
