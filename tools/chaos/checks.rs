//! What a chaos run checks, from the mock providers' journals (what was really placed, and
//! when) and the API (what the engine recorded). Every check is exact: no sampling, no gauge.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::loadtest::journal::max_overlap;

/// One placed attempt as a journal saw it, on the harness's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub campaign: String,
    pub call: String,
    pub attempt: u32,
    pub number: String,
    pub start: u128,
    pub end: u128,
}

/// One journal: its text, how far its process's clock was ahead of the harness's (ns), and
/// when its process died (a call still open then ended with it).
#[derive(Debug, Clone)]
pub struct JournalText {
    pub text: String,
    pub ahead_ns: i128,
    pub open_until: u128,
}

fn shift(at: u128, ahead_ns: i128) -> u128 {
    let shifted = i128::try_from(at).unwrap_or(i128::MAX) - ahead_ns;
    u128::try_from(shifted.max(0)).unwrap_or(0)
}

/// Every attempt the journals placed.
pub fn placed(journals: &[JournalText]) -> Vec<Placed> {
    let mut all = Vec::new();
    for journal in journals {
        let mut open: HashMap<(String, u32), Placed> = HashMap::new();
        for line in journal.text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [event, campaign, call, attempt, at, number] = fields.as_slice() else {
                continue;
            };
            let (Ok(attempt), Ok(at)) = (attempt.parse::<u32>(), at.parse::<u128>()) else {
                continue;
            };
            let at = shift(at, journal.ahead_ns);
            match *event {
                "start" => {
                    open.insert(
                        ((*call).to_owned(), attempt),
                        Placed {
                            campaign: (*campaign).to_owned(),
                            call: (*call).to_owned(),
                            attempt,
                            number: (*number).to_owned(),
                            start: at,
                            end: at,
                        },
                    );
                }
                "end" => {
                    if let Some(mut call) = open.remove(&((*call).to_owned(), attempt)) {
                        call.end = at;
                        all.push(call);
                    }
                }
                _ => {}
            }
        }
        all.extend(open.into_values().map(|mut call| {
            call.end = journal.open_until.max(call.start);
            call
        }));
    }
    all
}

fn overlap<'a>(calls: impl Iterator<Item = &'a Placed>) -> usize {
    let intervals: Vec<(u128, u128)> = calls.map(|c| (c.start, c.end)).collect();
    max_overlap(&intervals)
}

/// The most simultaneous calls of one campaign.
pub fn campaign_peak(placed: &[Placed], campaign: &str) -> usize {
    overlap(placed.iter().filter(|c| c.campaign == campaign))
}

/// The most simultaneous calls over every campaign.
pub fn total_peak(placed: &[Placed]) -> usize {
    overlap(placed.iter())
}

/// Numbers rung more than once at some instant, with how many at once (a call placed twice is
/// one of them: its number is live twice).
pub fn numbers_live_twice(placed: &[Placed]) -> BTreeMap<String, usize> {
    let mut by_number: HashMap<&str, Vec<&Placed>> = HashMap::new();
    for call in placed {
        by_number.entry(&call.number).or_default().push(call);
    }
    by_number
        .into_iter()
        .filter_map(|(number, calls)| {
            let most = overlap(calls.into_iter());
            (most > 1).then(|| (number.to_owned(), most))
        })
        .collect()
}

/// A call as the engine recorded it: its status and its attempts with their errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    pub id: String,
    pub status: String,
    pub attempts: Vec<(u32, Option<String>)>,
}

/// Attempts the engine counts that no provider ever placed, other than those recorded lost
/// (a process may die between beginning an attempt and placing it); and placed attempts the
/// engine does not know. Both should be empty.
pub fn unaccounted_attempts(
    placed: &[Placed],
    recorded: &[RecordedCall],
) -> (Vec<String>, Vec<String>) {
    let journaled: HashSet<(&str, u32)> = placed
        .iter()
        .map(|c| (c.call.as_str(), c.attempt))
        .collect();
    let mut spent_unplaced = Vec::new();
    let mut known: HashSet<(&str, u32)> = HashSet::new();
    for call in recorded {
        for (attempt, error) in &call.attempts {
            known.insert((call.id.as_str(), *attempt));
            let lost = error.as_deref() == Some("attempt_lost");
            if !journaled.contains(&(call.id.as_str(), *attempt)) && !lost {
                spent_unplaced.push(format!("{} #{attempt} ({error:?})", call.id));
            }
        }
    }
    let recorded_ids: HashSet<&str> = recorded.iter().map(|c| c.id.as_str()).collect();
    let mut unknown: Vec<String> = journaled
        .iter()
        .filter(|(call, _)| recorded_ids.contains(call))
        .filter(|key| !known.contains(*key))
        .map(|(call, attempt)| format!("{call} #{attempt}"))
        .collect();
    unknown.sort();
    (spent_unplaced, unknown)
}

/// Calls not in a final state.
pub fn unfinished(recorded: &[RecordedCall]) -> usize {
    recorded
        .iter()
        .filter(|c| !matches!(c.status.as_str(), "completed" | "failed" | "canceled"))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(text: &str) -> JournalText {
        JournalText {
            text: text.to_owned(),
            ahead_ns: 0,
            open_until: 1_000,
        }
    }

    #[test]
    fn journals_merge_on_one_clock_and_open_calls_end_with_their_process() {
        let fast = JournalText {
            ahead_ns: 100,
            ..journal("start k b 1 150 +1\nend k b 1 190 +1\n")
        };
        let killed = journal("start k a 1 10 +2\n");
        let all = placed(&[fast, killed]);
        assert_eq!(all.len(), 2);
        let b = all.iter().find(|c| c.call == "b").map(|c| (c.start, c.end));
        assert_eq!(b, Some((50, 90)), "shifted back by the skew");
        let a = all.iter().find(|c| c.call == "a").map(|c| c.end);
        assert_eq!(a, Some(1_000), "open until its process died");
        assert_eq!(campaign_peak(&all, "k"), 2);
        assert_eq!(total_peak(&all), 2);
    }

    #[test]
    fn a_number_rung_twice_at_once_is_found() {
        let all = placed(&[
            journal("start k a 1 10 +1\nend k a 1 20 +1\nstart j b 1 15 +1\nend j b 1 30 +1\n"),
            journal("start k c 1 20 +1\nend k c 1 25 +2\n"),
        ]);
        let twice = numbers_live_twice(&all);
        assert_eq!(twice.get("+1"), Some(&2));
        assert_eq!(twice.len(), 1);
    }

    #[test]
    fn attempts_spent_without_a_placed_call_are_found() {
        let all = placed(&[journal(
            "start k a 1 10 +1\nend k a 1 20 +1\nstart k b 2 1 +2\n",
        )]);
        let recorded = vec![
            RecordedCall {
                id: "a".into(),
                status: "completed".into(),
                attempts: vec![(1, None)],
            },
            RecordedCall {
                id: "b".into(),
                status: "failed".into(),
                attempts: vec![
                    (1, Some("dispatch_failed".into())),
                    (2, Some("busy".into())),
                    (3, Some("attempt_lost".into())),
                ],
            },
        ];
        let (spent, unknown) = unaccounted_attempts(&all, &recorded);
        assert_eq!(spent.len(), 1, "{spent:?}");
        assert!(spent[0].starts_with("b #1"));
        assert!(unknown.is_empty());
        assert_eq!(unfinished(&recorded), 0);
    }
}
