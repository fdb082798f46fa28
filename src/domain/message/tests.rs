use std::time::Duration;

use serde_json::{json, Value};

use super::*;

fn reminder() -> Value {
    json!({
        "identification": "This is Acme Dental.",
        "say": "Hello {{first_name}}, you have an appointment on {{ date }}.",
        "prompt": "Press 1 to confirm, or 2 to reschedule.",
        "responses": [
            {"digit": "1", "name": "confirmed", "reply": "Thank you, {{first_name}}."},
            {"digit": "2", "name": "reschedule"}
        ],
        "machine": {"action": "message", "say": "Please call us about {{date}}."},
        "callback_number": "+1 (800) 555-0100"
    })
}

fn parsed(value: Value) -> Message {
    match Message::parse(&value) {
        Ok(message) => message,
        Err(problems) => panic!("{value} should be a message: {problems:?}"),
    }
}

fn problems(value: Value) -> Vec<(String, String)> {
    match Message::parse(&value) {
        Ok(message) => panic!("{value} should break a rule, parsed as {message:?}"),
        Err(problems) => problems.into_iter().map(|p| (p.field, p.problem)).collect(),
    }
}

fn fields(problems: &[(String, String)]) -> Vec<&str> {
    problems.iter().map(|(field, _)| field.as_str()).collect()
}

fn maria() -> serde_json::Map<String, Value> {
    let value = json!({"first_name": "Maria", "date": "March 3", "age": 41});
    value.as_object().cloned().unwrap_or_default()
}

fn values(metadata: &serde_json::Map<String, Value>) -> TargetValues<'static> {
    TargetValues::with_fields("+14155550100", Some(metadata.clone()))
}

fn with(mut base: Value, field: &str, value: Value) -> Value {
    if let Some(fields) = base.as_object_mut() {
        fields.insert(field.to_owned(), value);
    }
    base
}

#[test]
fn a_reminder_reads_with_the_laws_defaults_and_round_trips() {
    let message = parsed(reminder());
    assert_eq!(message.opt_out, Some(OptOut::default()));
    assert_eq!(message.opt_out.map(|o| o.digit.as_char()), Some('9'));
    let machine = message.machine.clone().map(|m| m.detection_timeout);
    assert_eq!(machine, Some(Duration::from_secs(30)));
    assert_eq!(
        message.callback_number.as_ref().map(|n| n.as_str()),
        Some("+18005550100")
    );
    assert_eq!(
        message.keys().into_iter().collect::<Vec<_>>(),
        ["date", "first_name"]
    );
    let echoed = message.to_value();
    assert_eq!(echoed["opt_out"], json!({"digit": "9", "scope": "global"}));
    assert_eq!(echoed["machine"]["detection_timeout"], json!("30s"));
    assert_eq!(parsed(echoed.clone()), message);
    let stored: Result<Message, _> = serde_json::from_value(echoed);
    assert_eq!(stored.ok(), Some(message));
}

#[test]
fn the_opt_out_can_be_moved_scoped_or_turned_off() {
    let off = parsed(with(reminder(), "opt_out", json!(false)));
    assert_eq!(off.opt_out, None);
    assert_eq!(off.to_value()["opt_out"], json!(false));
    let moved = parsed(with(
        reminder(),
        "opt_out",
        json!({"digit": "8", "scope": "campaign"}),
    ));
    assert_eq!(
        moved.opt_out,
        Some(OptOut {
            digit: Key('8'),
            scope: OptOutScope::Campaign
        })
    );
    assert_eq!(
        fields(&problems(with(
            reminder(),
            "opt_out",
            json!({"digit": "#", "scope": "everyone"})
        ))),
        ["opt_out.digit", "opt_out.scope"]
    );
}

#[test]
fn each_broken_rule_names_its_field() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({"say": "hi"}), "identification"),
        (json!({"identification": "Acme"}), "say"),
        (
            json!({"identification": "Acme", "say": "hi", "play": "https://a.example/x.mp3"}),
            "play",
        ),
        (
            json!({"identification": "Acme", "play": "http://a.example/x.mp3"}),
            "play",
        ),
        (
            json!({"identification": "Acme", "say": "hi", "voice": "Polly Joanna"}),
            "voice",
        ),
        (
            json!({"identification": "Acme", "say": "hi", "language": "english"}),
            "language",
        ),
        (
            json!({"identification": "Acme", "say": "Hi {{first name}}"}),
            "say",
        ),
        (
            json!({"identification": "Acme {{x", "say": "hi"}),
            "identification",
        ),
        (
            json!({"identification": "Acme", "say": "hi", "responses": [{"digit": "1", "name": "yes"}]}),
            "prompt",
        ),
        (
            json!({"identification": "Acme", "say": "hi", "prompt": "p",
                   "responses": [{"digit": "10", "name": "yes"}]}),
            "responses[0].digit",
        ),
        (
            json!({"identification": "Acme", "say": "hi", "prompt": "p",
                   "responses": [{"digit": "1", "name": "opt_out"}]}),
            "responses[0].name",
        ),
        (
            json!({"identification": "Acme", "say": "hi", "prompt": "p",
                   "responses": [{"digit": "1", "name": "Yes!"}]}),
            "responses[0].name",
        ),
        (
            json!({"identification": "Acme", "say": "hi", "prompt": "p",
                   "responses": [{"digit": "9", "name": "yes"}]}),
            "responses[0].digit",
        ),
        (
            json!({"identification": "Acme", "say": "hi", "prompt": "p",
                   "responses": [{"digit": "1", "name": "yes"}, {"digit": "1", "name": "no"}]}),
            "responses[1].digit",
        ),
        (
            json!({"identification": "Acme", "say": "hi", "machine": {"action": "message", "say": "x"}}),
            "callback_number",
        ),
        (
            json!({"identification": "Acme", "say": "hi", "machine": {"action": "message", "say": "x"},
                   "callback_number": "+14155550100"}),
            "callback_number",
        ),
        (
            json!({"identification": "Acme", "say": "hi", "machine": {"action": "message"},
                   "callback_number": "+18005550100"}),
            "machine.say",
        ),
        (
            json!({"identification": "Acme", "say": "hi", "machine": {"action": "wave"}}),
            "machine.action",
        ),
        (
            json!({"identification": "Acme", "say": "hi",
                   "machine": {"action": "hangup", "detection_timeout": "2m"}}),
            "machine.detection_timeout",
        ),
        (json!("hello"), ""),
    ];
    for (value, field) in cases {
        let found = problems(value.clone());
        assert!(
            fields(&found).contains(&field),
            "{value} should break a rule of {field:?}, broke {found:?}"
        );
    }
    // A + number outside the North American plan need not be toll-free.
    let abroad = json!({"identification": "Acme", "say": "hi",
        "machine": {"action": "message", "say": "x"}, "callback_number": "+442079460000"});
    assert!(Message::parse(&abroad).is_ok());
    // `#` and `*` are keys a response may take.
    let star = json!({"identification": "Acme", "say": "hi", "prompt": "p",
        "responses": [{"digit": "*", "name": "star"}, {"digit": "#", "name": "hash"}]});
    assert_eq!(parsed(star).responses.len(), 2);
}

#[test]
fn the_spoken_order_is_the_laws_and_metadata_fills_each_place_once() {
    let message = parsed(reminder());
    let metadata = maria();
    let spoken: Vec<String> = message
        .spoken(&values(&metadata))
        .unwrap_or_default()
        .iter()
        .map(Spoken::preview)
        .collect();
    assert_eq!(
        spoken,
        [
            "This is Acme Dental.",
            "To stop these calls, press 9.",
            "Hello Maria, you have an appointment on March 3.",
            "Press 1 to confirm, or 2 to reschedule.",
        ]
    );
    let played = parsed(
        json!({"identification": "Acme", "play": "https://a.example/x.mp3",
        "opt_out": false, "say": null}),
    );
    let parts = played.spoken(&values(&metadata)).unwrap_or_default();
    assert_eq!(
        parts.iter().map(Spoken::preview).collect::<Vec<_>>(),
        ["Acme", "[audio https://a.example/x.mp3]"]
    );
    // A value is inserted once, as text, without its control characters.
    let sneaky = json!({"first_name": "{{date}}\u{7}<Hangup/>", "date": "x"});
    let sneaky = sneaky.as_object().cloned().unwrap_or_default();
    let filled = message
        .identification
        .fill(&values(&sneaky))
        .unwrap_or_default();
    assert_eq!(filled, "This is Acme Dental.");
    let say = Template::parse("Hi {{first_name}}").ok();
    let said = say.map(|t| t.fill(&values(&sneaky)));
    assert_eq!(said, Some(Ok("Hi {{date}}<Hangup/>".to_owned())));
    let twiml = message
        .voice_twiml(
            &values(&sneaky),
            TwimlPlan {
                gather_url: "https://e.example/g?a=1&b=2",
            },
        )
        .unwrap_or_default();
    assert!(!twiml.contains("<Hangup/>\u{7}"));
    assert_eq!(twiml.matches("<Hangup/>").count(), 1, "{twiml}");
    assert!(twiml.contains("Hello {{date}}&lt;Hangup/&gt;"), "{twiml}");
    assert!(
        twiml.contains("action=\"https://e.example/g?a=1&amp;b=2\""),
        "{twiml}"
    );
}

#[test]
fn a_target_without_a_named_key_is_told_which() {
    let message = parsed(reminder());
    let partial = json!({"first_name": "Ann", "date": null});
    let partial = partial.as_object().cloned().unwrap_or_default();
    let missing: Vec<String> = message.missing(&values(&partial)).into_iter().collect();
    assert_eq!(missing, ["date"]);
    let none = TargetValues::new("+14155550100", None);
    assert_eq!(message.missing(&none).len(), 2);
    // The number called is always there, whatever the metadata says.
    let numbered = Template::parse("Calling {{phone_number}}").ok();
    let spoofed = json!({"phone_number": "+19999999999"});
    let spoofed = spoofed.as_object().cloned().unwrap_or_default();
    assert_eq!(
        numbered.map(|t| t.fill(&values(&spoofed))),
        Some(Ok("Calling +14155550100".to_owned()))
    );
}

#[test]
fn keys_mean_opt_out_a_response_or_one_more_try() {
    let message = parsed(reminder());
    let k = |c: &str| Key::parse(c);
    assert_eq!(message.hear(&[], k("9")), Heard::OptOut);
    assert_eq!(message.hear(&[], k("1")), Heard::Response(0));
    assert_eq!(message.hear(&[], k("2")), Heard::Response(1));
    assert_eq!(message.hear(&[], k("5")), Heard::Again);
    let missed: Vec<Key> = k("5").into_iter().collect();
    assert_eq!(message.hear(&missed, k("7")), Heard::Unrecognized);
    assert_eq!(message.hear(&missed, k("1")), Heard::Response(0));
    assert_eq!(message.hear(&missed, None), Heard::Unrecognized);
    assert_eq!(message.hear(&[], None), Heard::Nothing);
    assert_eq!(Heard::Response(0).response(&message), Some("confirmed"));
    assert_eq!(Heard::OptOut.response(&message), Some("opt_out"));
    assert_eq!(Heard::Nothing.response(&message), Some("none"));
    assert_eq!(Heard::Again.response(&message), None);
    let off = parsed(with(reminder(), "opt_out", json!(false)));
    assert_eq!(off.hear(&[], k("9")), Heard::Again);
}

#[test]
fn the_twiml_gathers_every_part_and_waits_for_a_machines_verdict() {
    let message = parsed(reminder());
    let metadata = maria();
    let plan = TwimlPlan {
        gather_url: "https://e.example/webhooks/twilio/gather?attempt=1",
    };
    let twiml = message
        .voice_twiml(&values(&metadata), plan)
        .unwrap_or_default();
    assert!(twiml.starts_with("<?xml"));
    assert!(twiml.contains("<Gather input=\"dtmf\" numDigits=\"1\" timeout=\"5\" finishOnKey=\"\""));
    let gather = twiml.find("<Gather").unwrap_or(usize::MAX);
    let identification = twiml.find("This is Acme Dental.").unwrap_or(0);
    let opt_out = twiml.find("To stop these calls, press 9.").unwrap_or(0);
    let prompt = twiml.find("Press 1 to confirm").unwrap_or(0);
    let end = twiml.find("</Gather>").unwrap_or(0);
    assert!(
        gather < identification && identification < opt_out && opt_out < prompt && prompt < end
    );
    assert!(
        twiml.ends_with("</Gather><Pause length=\"30\"/><Hangup/></Response>"),
        "{twiml}"
    );

    let reply = message
        .heard_twiml(Heard::Response(0), &values(&metadata), plan)
        .unwrap_or_default();
    assert!(
        reply.contains("<Say>Thank you, Maria.</Say><Hangup/>"),
        "{reply}"
    );
    let opted = message
        .heard_twiml(Heard::OptOut, &values(&metadata), plan)
        .unwrap_or_default();
    assert!(opted.contains(OPTED_OUT_TEXT));
    let again = message
        .heard_twiml(Heard::Again, &values(&metadata), plan)
        .unwrap_or_default();
    assert!(again.contains("<Gather"));
    assert!(again.contains("Sorry, that is not an option."));
    assert!(again.contains("Press 1 to confirm"));
}

const OPTED_OUT_TEXT: &str = "You will not be called again. Goodbye.";

#[test]
fn a_voicemail_ends_with_the_number_to_call_back_digit_by_digit() {
    let message = parsed(reminder());
    let metadata = maria();
    let parts = message
        .voicemail(&values(&metadata))
        .ok()
        .flatten()
        .unwrap_or_default();
    assert_eq!(
        parts.iter().map(Spoken::preview).collect::<Vec<_>>(),
        [
            "This is Acme Dental.",
            "Please call us about March 3.",
            "To stop these calls, call 8 0 0 5 5 5 0 1 0 0.",
        ]
    );
    assert_eq!(message.voicemail_problem(&values(&metadata)), None);
    let long = json!({"first_name": "Maria", "date": "x".repeat(3900)});
    let long = long.as_object().cloned().unwrap_or_default();
    assert!(message.voicemail_problem(&values(&long)).is_some());
    let hangup =
        parsed(json!({"identification": "Acme", "say": "hi", "machine": {"action": "hangup"}}));
    assert_eq!(hangup.voicemail(&values(&metadata)), Ok(None));
}

#[test]
fn what_xml_cannot_carry_is_never_written() {
    let mut value = reminder();
    value["identification"] = json!("Acme\u{1}\u{b} Dental.");
    let message = parsed(value);
    let odd = json!({"first_name": "Ma\u{FFFF}ria\u{FFFE}", "date": "May\u{0} 4"});
    let odd = odd.as_object().cloned().unwrap_or_default();
    let twiml = message
        .voice_twiml(
            &values(&odd),
            TwimlPlan {
                gather_url: "https://e.example/g",
            },
        )
        .unwrap_or_default();
    assert!(twiml.contains(">Acme Dental.</Say>"), "{twiml}");
    assert!(
        twiml.contains("Hello Maria, you have an appointment on May 4."),
        "{twiml}"
    );
    let forbidden = |c: char| (c.is_control() && c != '\n') || c == '\u{FFFE}' || c == '\u{FFFF}';
    assert!(!twiml.chars().any(forbidden), "{twiml:?}");
}
