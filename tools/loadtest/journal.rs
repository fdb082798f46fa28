//! Exact concurrency from mock provider journals (`telephony.mock.journal`): one line per call
//! start and end, `start|end CAMPAIGN CALL ATTEMPT NANOS NUMBER`. With several call processes each
//! writes its own; merged, they give the true number of calls a campaign had at any instant,
//! which no per-process gauge can (peaks of different processes at different instants do not
//! add up). Journals of different hosts compare only as well as their clocks agree.

use std::collections::{BTreeMap, HashMap};

/// Calls of one campaign in a journal: (start, end) in ns; a call still open at the end of the
/// journal (its process died, or it is still dialing) lasts until `open_until`.
pub fn intervals(text: &str, campaign: &str, open_until: u128) -> Vec<(u128, u128)> {
    let mut open: HashMap<(&str, &str), u128> = HashMap::new();
    let mut done = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (event, campaign_id, call, attempt, at) = match fields.as_slice() {
            [event, campaign_id, call, attempt, at, ..] => (event, campaign_id, call, attempt, at),
            _ => continue,
        };
        if *campaign_id != campaign {
            continue;
        }
        let Ok(at) = at.parse::<u128>() else { continue };
        match *event {
            "start" => {
                open.insert((call, attempt), at);
            }
            "end" => {
                if let Some(start) = open.remove(&(*call, *attempt)) {
                    done.push((start, at));
                }
            }
            _ => {}
        }
    }
    done.extend(open.into_values().map(|start| (start, open_until)));
    done
}

/// The most calls carried at once, over every interval.
pub fn max_overlap(intervals: &[(u128, u128)]) -> usize {
    let mut events: Vec<(u128, i32)> = intervals
        .iter()
        .flat_map(|(start, end)| [(*start, 1), (*end, -1)])
        .collect();
    // Ends before starts at the same instant: a slot handed over is not two calls.
    events.sort_by_key(|(at, delta)| (*at, *delta));
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, delta) in events {
        now += delta;
        peak = peak.max(now);
    }
    peak.max(0) as usize
}

/// Each campaign's most simultaneous calls over all the journals.
pub fn peaks(journals: &[String], campaigns: &[String]) -> BTreeMap<String, u64> {
    campaigns
        .iter()
        .map(|campaign| {
            let all: Vec<(u128, u128)> = journals
                .iter()
                .flat_map(|text| intervals(text, campaign, u128::MAX))
                .collect();
            (campaign.clone(), max_overlap(&all) as u64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_counts_simultaneous_calls() {
        assert_eq!(max_overlap(&[(0, 10), (5, 15), (10, 20)]), 2);
        assert_eq!(max_overlap(&[(0, 10), (10, 20)]), 1);
        assert_eq!(max_overlap(&[]), 0);
        let journal = "start c a 1 5\nstart c b 1 6\nend c a 1 9\nstart x z 1 7\n";
        assert_eq!(intervals(journal, "c", 100), vec![(5, 9), (6, 100)]);
    }

    #[test]
    fn journals_of_several_processes_merge() {
        // Each process alone never carries two calls of campaign c; together they do.
        let first = "start c a 1 10\nend c a 1 20\nstart c b 1 30\nend c b 1 40\n".to_owned();
        let second = "start c d 1 15\nend c d 1 25\ngarbage\nstart x e 1 1\n".to_owned();
        let peaks = peaks(
            &[first.clone(), second],
            &["c".into(), "x".into(), "y".into()],
        );
        assert_eq!(peaks.get("c"), Some(&2));
        assert_eq!(peaks.get("x"), Some(&1));
        assert_eq!(peaks.get("y"), Some(&0));
        assert_eq!(super::peaks(&[first], &["c".into()]).get("c"), Some(&1));
    }
}
