//! The event types an endpoint can listen to, and its subscription: every type (`["*"]`, which
//! takes in types added later) or a chosen set.
//!
//! A subscription is stored as comma-delimited text with a comma at each end (`",*,"`,
//! `",attempt.finished,call.finished,"`), so the store finds an event's endpoints without
//! parsing anything: `events LIKE '%,*,%' OR events LIKE '%,<type>,%'`. The delimiters keep one
//! type name from matching inside another.

use std::fmt;

use super::WebhookError;

/// What happened, as the `type` of an event's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    AttemptFinished,
    CallFinished,
    CallOptedOut,
    CampaignStatusChanged,
}

impl EventType {
    /// Every type, in the order subscriptions list them.
    pub const ALL: [EventType; 4] = [
        Self::AttemptFinished,
        Self::CallFinished,
        Self::CallOptedOut,
        Self::CampaignStatusChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AttemptFinished => "attempt.finished",
            Self::CallFinished => "call.finished",
            Self::CallOptedOut => "call.opted_out",
            Self::CampaignStatusChanged => "campaign.status_changed",
        }
    }

    /// The type a name spells exactly, as `as_str` writes it.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The events an endpoint is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription(Listens);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listens {
    /// `*`: kept apart from "every type listed" because it also takes in types added later.
    All,
    /// A non-empty set of `EventType::bit`s.
    Only(u8),
}

impl Subscription {
    /// Every event, now and later.
    pub fn all() -> Self {
        Self(Listens::All)
    }

    /// Only these types; `None` when there are none, since an endpoint must hear something.
    pub fn only(types: impl IntoIterator<Item = EventType>) -> Option<Self> {
        let mask = types.into_iter().fold(0, |mask, kind| mask | kind.bit());
        (mask != 0).then_some(Self(Listens::Only(mask)))
    }

    /// The `events` list of a create request. Every name is checked, even beside `"*"`, so a
    /// typo is reported rather than hidden by the wildcard.
    pub fn parse(names: &[String]) -> Result<Self, WebhookError> {
        if names.is_empty() {
            return Err(WebhookError::NoEvents);
        }
        let mut all = false;
        let mut types = Vec::with_capacity(names.len());
        for name in names {
            if name == "*" {
                all = true;
            } else {
                types.push(
                    EventType::parse(name)
                        .ok_or_else(|| WebhookError::UnknownEvent(name.clone()))?,
                );
            }
        }
        if all {
            return Ok(Self::all());
        }
        Self::only(types).ok_or(WebhookError::NoEvents)
    }

    pub fn wants(self, kind: EventType) -> bool {
        match self.0 {
            Listens::All => true,
            Listens::Only(mask) => mask & kind.bit() != 0,
        }
    }

    /// The stored form (see the module's documentation).
    pub fn stored(self) -> String {
        let mut text = String::from(",");
        for name in self.as_list() {
            text.push_str(&name);
            text.push(',');
        }
        text
    }

    /// A subscription as `stored` wrote it; `None` for anything else.
    pub fn from_stored(text: &str) -> Option<Self> {
        let inner = text.strip_prefix(',')?.strip_suffix(',')?;
        if inner == "*" {
            return Some(Self::all());
        }
        let types = inner
            .split(',')
            .map(EventType::parse)
            .collect::<Option<Vec<_>>>()?;
        Self::only(types)
    }

    /// The `events` the API shows: `["*"]` or the type names in `EventType::ALL` order.
    pub fn as_list(self) -> Vec<String> {
        match self.0 {
            Listens::All => vec!["*".to_owned()],
            Listens::Only(_) => EventType::ALL
                .into_iter()
                .filter(|kind| self.wants(*kind))
                .map(|kind| kind.as_str().to_owned())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn event_types_round_trip_through_their_names() {
        let spelled: Vec<&str> = EventType::ALL.iter().map(|kind| kind.as_str()).collect();
        assert_eq!(
            spelled,
            [
                "attempt.finished",
                "call.finished",
                "call.opted_out",
                "campaign.status_changed"
            ]
        );
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.as_str()), Some(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        assert_eq!(EventType::parse("Call.Finished"), None);
        assert_eq!(EventType::parse("call.finished "), None);
        assert_eq!(EventType::parse("*"), None);
    }

    #[test]
    fn a_subscription_needs_an_event() {
        assert_eq!(Subscription::parse(&[]), Err(WebhookError::NoEvents));
        assert_eq!(Subscription::only([]), None);
    }

    #[test]
    fn an_unknown_type_is_named() {
        assert_eq!(
            Subscription::parse(&names(&["call.finished", "call.started"])),
            Err(WebhookError::UnknownEvent("call.started".to_owned()))
        );
        assert_eq!(
            Subscription::parse(&names(&["*", "nope"])),
            Err(WebhookError::UnknownEvent("nope".to_owned()))
        );
        let message = WebhookError::UnknownEvent("call.started".to_owned()).to_string();
        assert!(message.contains("call.started"), "{message}");
    }

    #[test]
    fn the_wildcard_wants_everything_even_beside_types() {
        for list in [names(&["*"]), names(&["call.finished", "*"])] {
            let subscription = Subscription::parse(&list).unwrap();
            assert_eq!(subscription, Subscription::all());
            assert!(EventType::ALL.iter().all(|kind| subscription.wants(*kind)));
            assert_eq!(subscription.as_list(), ["*"]);
            assert_eq!(subscription.stored(), ",*,");
        }
    }

    #[test]
    fn a_chosen_set_wants_only_its_types() {
        let subscription = Subscription::parse(&names(&[
            "call.finished",
            "attempt.finished",
            "call.finished",
        ]))
        .unwrap();
        assert_ne!(subscription, Subscription::all());
        assert!(subscription.wants(EventType::AttemptFinished));
        assert!(subscription.wants(EventType::CallFinished));
        assert!(!subscription.wants(EventType::CallOptedOut));
        assert!(!subscription.wants(EventType::CampaignStatusChanged));
        assert_eq!(
            subscription.as_list(),
            ["attempt.finished", "call.finished"]
        );
        assert_eq!(subscription.stored(), ",attempt.finished,call.finished,");
    }

    #[test]
    fn every_type_listed_is_not_the_wildcard() {
        let every = Subscription::only(EventType::ALL).unwrap();
        assert_ne!(every, Subscription::all());
        assert_ne!(every, Subscription::all());
        assert_eq!(
            every.stored(),
            ",attempt.finished,call.finished,call.opted_out,campaign.status_changed,"
        );
    }

    #[test]
    fn the_stored_form_round_trips() {
        let cases = [
            Subscription::all(),
            Subscription::only([EventType::CampaignStatusChanged]).unwrap(),
            Subscription::only([EventType::CallOptedOut, EventType::AttemptFinished]).unwrap(),
            Subscription::only(EventType::ALL).unwrap(),
        ];
        for subscription in cases {
            assert_eq!(
                Subscription::from_stored(&subscription.stored()),
                Some(subscription)
            );
        }
    }

    #[test]
    fn the_stored_form_matches_as_the_store_does() {
        // The store's LIKE, played with `contains`: each type finds exactly its subscribers.
        let opted = Subscription::only([EventType::CallOptedOut])
            .unwrap()
            .stored();
        let all = Subscription::all().stored();
        for kind in EventType::ALL {
            let needle = format!(",{},", kind.as_str());
            assert!(all.contains(",*,"));
            assert_eq!(opted.contains(&needle), kind == EventType::CallOptedOut);
        }
    }

    #[test]
    fn malformed_stored_forms_are_refused() {
        for text in [
            "",
            ",",
            ",,",
            "*",
            ",*",
            "attempt.finished,",
            ",attempt.finished",
            ",attempt.finished,,",
            ",nope,",
            ",*,call.finished,",
        ] {
            assert_eq!(Subscription::from_stored(text), None, "{text:?}");
        }
    }
}
