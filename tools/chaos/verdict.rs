//! What a scenario found: the calls the engine recorded, followed to their end, checked
//! against what the carrier and the numbers saw.

use std::collections::BTreeMap;

use serde_json::Value;

use super::checks::{JournalText, RecordedCall};
use crate::chaos::{checks, Verdict, Workload};
use crate::loadtest::client::ApiClient;
use crate::loadtest::driver::stats_consistent;

/// What following the campaigns saw: reads, reads that broke the invariant, failed reads.
#[derive(Debug, Default)]
pub(super) struct Follow {
    pub(super) reads: u64,
    pub(super) broken: Vec<String>,
    pub(super) unavailable: u64,
}

impl Follow {
    /// Reads every campaign's statistics once; returns the attempts made so far.
    pub(super) async fn read(&mut self, client: &ApiClient, campaigns: &[(String, usize)]) -> u64 {
        let mut attempts = 0;
        for (id, _) in campaigns {
            match client.stats(id).await {
                Ok(stats) => {
                    self.reads += 1;
                    if !stats_consistent(&stats) {
                        self.broken.push(stats.to_string());
                    }
                    attempts += stats["attempts_total"].as_u64().unwrap_or(0);
                }
                Err(_) => self.unavailable += 1,
            }
        }
        attempts
    }

    pub(super) async fn all_completed(
        &self,
        client: &ApiClient,
        campaigns: &[(String, usize)],
    ) -> bool {
        for (id, _) in campaigns {
            match client.campaign(id).await {
                Ok(campaign) if campaign["status"] == "completed" => {}
                _ => return false,
            }
        }
        true
    }
}

/// Every call of the campaigns with its attempts, as the API reports them.
pub(super) async fn recorded_calls(
    client: &ApiClient,
    campaigns: &[(String, usize)],
) -> Vec<RecordedCall> {
    let mut recorded = Vec::new();
    for (id, _) in campaigns {
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/campaigns/{id}/calls?limit=1000");
            if let Some(token) = &token {
                path.push_str(&format!("&page_token={token}"));
            }
            let Ok((200, page)) = client
                .send(
                    "GET /api/v1/campaigns/{id}/calls",
                    reqwest::Method::GET,
                    &path,
                    None,
                )
                .await
            else {
                break;
            };
            for call in page["calls"].as_array().cloned().unwrap_or_default() {
                let call_id = call["id"].as_str().unwrap_or_default().to_owned();
                let detail = client
                    .send(
                        "GET /api/v1/calls/{id}",
                        reqwest::Method::GET,
                        &format!("/api/v1/calls/{call_id}"),
                        None,
                    )
                    .await
                    .map(|(_, body)| body)
                    .unwrap_or(Value::Null);
                let attempts = detail["attempts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|a| {
                        (
                            a["attempt"].as_u64().unwrap_or(0) as u32,
                            a["error"].as_str().map(str::to_owned),
                        )
                    })
                    .collect();
                recorded.push(RecordedCall {
                    id: call_id,
                    status: call["status"].as_str().unwrap_or_default().to_owned(),
                    attempts,
                });
            }
            match page["next_page_token"].as_str() {
                Some(next) => token = Some(next.to_owned()),
                None => break,
            }
        }
    }
    recorded
}

pub(super) fn verdicts(
    workload: &Workload,
    campaigns: &[(String, usize)],
    journals: &[JournalText],
    recorded: Vec<RecordedCall>,
    completed: bool,
    follow: &Follow,
    survived: Vec<String>,
) -> BTreeMap<&'static str, Verdict> {
    let placed = checks::placed(journals);
    let mut out = BTreeMap::new();

    let peaks: Vec<usize> = campaigns
        .iter()
        .map(|(id, _)| checks::campaign_peak(&placed, id))
        .collect();
    let total = checks::total_peak(&placed);
    let limit = workload.limit as usize;
    let cap = workload.global_cap as usize;
    out.insert(
        "limit",
        Verdict::of(
            peaks.iter().all(|p| *p <= limit) && total <= cap && total > 0,
            format!("peaks {peaks:?} of {limit}, all {total} of {cap}"),
        ),
    );

    let twice = checks::numbers_live_twice(&placed);
    out.insert(
        "number_once",
        Verdict::of(
            twice.is_empty(),
            format!("{} numbers live twice: {twice:?}", twice.len()),
        ),
    );

    let expected: usize = campaigns.iter().map(|(_, calls)| calls).sum();
    let unfinished = checks::unfinished(&recorded);
    out.insert(
        "nothing_lost",
        Verdict::of(
            completed && unfinished == 0 && recorded.len() == expected,
            format!(
                "{} of {expected} calls, {unfinished} unfinished, campaigns completed: {completed}",
                recorded.len()
            ),
        ),
    );

    let (spent, unknown) = checks::unaccounted_attempts(&placed, &recorded);
    out.insert(
        "attempts_placed",
        Verdict::of(
            spent.is_empty() && unknown.is_empty(),
            format!(
                "{} placed; spent unplaced {spent:?}; placed unrecorded {unknown:?}",
                placed.len()
            ),
        ),
    );

    out.insert(
        "invariant",
        Verdict::of(
            follow.broken.is_empty() && follow.reads > 0,
            format!(
                "{} reads ({} unavailable), broken: {:?}",
                follow.reads, follow.unavailable, follow.broken
            ),
        ),
    );

    out.insert(
        "survived",
        Verdict::of(survived.is_empty(), format!("{survived:?}")),
    );
    out
}
