//! The `Timeline` port, run against every adapter: the SQLite and PostgreSQL stores (the
//! `store` timeline) and Scylla when `SCYLLA_URL` names a cluster (none can be installed here:
//! without it the Scylla run is reported as skipped, never passed). Then the exporter that
//! moves finished attempts from a store to a separate timeline.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use outbound::adapters::scylla::{ScyllaTimeline, ScyllaUrl};
use outbound::domain::answer::{Answer, AnsweredBy};
use outbound::domain::call::{merge_attempts, Attempt, AttemptStatus};
use outbound::domain::carrier::{CarrierCall, CarrierStatus};
use outbound::domain::ids::{CallId, CampaignId};
use outbound::ports::{Store, Timeline, TimelineEntry, TimelineError};
use outbound::roles::export::TimelineExporter;

use crate::fixtures::{campaign_with_finished_attempts, postgres_store, sqlite_store};

/// A fresh keyspace on the cluster `SCYLLA_URL` names (`scylla://host:port/anything`; the
/// keyspace part is replaced), or `None`, reported, when it is unset.
async fn scylla_timeline(test: &str) -> Option<Arc<dyn Timeline>> {
    let Ok(url) = std::env::var("SCYLLA_URL") else {
        eprintln!(
            "SKIPPED: {test} against scylla: SCYLLA_URL is not set (no Scylla server can be \
             installed here; set SCYLLA_URL=scylla://host:9042/ks to run it)"
        );
        return None;
    };
    let mut url = ScyllaUrl::parse(&url).expect("SCYLLA_URL is a scylla:// URL");
    url.keyspace = format!("t_{}", uuid::Uuid::now_v7().simple());
    outbound::adapters::scylla::migrate(&url)
        .await
        .expect("apply cql/");
    Some(Arc::new(
        ScyllaTimeline::connect(&url).await.expect("connect"),
    ))
}

/// The adapters of the `Timeline` port; Scylla only when `SCYLLA_URL` is set.
#[derive(Debug, Clone, Copy)]
enum TimelineAdapter {
    Sqlite,
    Postgres,
    Scylla,
}

impl TimelineAdapter {
    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Scylla => "scylla",
        }
    }

    /// A timeline over fresh state, or `None` (reported as skipped) for an unreachable Scylla.
    async fn open(self, dir: &tempfile::TempDir, test: &str) -> Option<Arc<dyn Timeline>> {
        match self {
            Self::Sqlite => Some(sqlite_store(dir).await),
            Self::Postgres => Some(postgres_store().await),
            Self::Scylla => scylla_timeline(test).await,
        }
    }
}

fn finished(campaign_id: CampaignId, call_id: CallId, number: u32) -> TimelineEntry {
    let started = Utc
        .timestamp_millis_opt(1_764_000_000_000 + i64::from(number) * 60_000)
        .single()
        .expect("valid time");
    let failed = number % 2 == 1;
    TimelineEntry {
        campaign_id,
        call_id,
        attempt: Attempt {
            attempt: number,
            status: if failed {
                AttemptStatus::Failed
            } else {
                AttemptStatus::Completed
            },
            error: failed.then(|| "no_answer".to_owned()),
            started_at: started,
            ended_at: Some(started + chrono::Duration::milliseconds(1_234)),
            duration_ms: Some(1_234),
            // The carrier's record travels with the attempt.
            carrier: (!failed).then(|| CarrierCall {
                sid: Some(format!("CA{number:032}")),
                status: Some(CarrierStatus::Completed),
                duration_secs: Some(1),
                answered_by: Some("human".to_owned()),
                ..CarrierCall::default()
            }),
            // What a spoken message heard back travels with the attempt.
            answer: if failed {
                Answer::default()
            } else {
                Answer {
                    answered_by: Some(AnsweredBy::Human),
                    response: Some("confirm".to_owned()),
                    digits: Some("41".to_owned()),
                    voicemail_left: number % 4 == 0,
                }
            },
        },
    }
}

async fn writes_are_idempotent_and_read_per_call(adapter: TimelineAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let Some(timeline) = adapter
        .open(&dir, "writes_are_idempotent_and_read_per_call")
        .await
    else {
        return;
    };
    timeline.ping().await.expect("ping");
    let campaign = CampaignId::new();
    let (first, second) = (CallId::new(), CallId::new());
    let entries = vec![
        finished(campaign, first, 2),
        finished(campaign, first, 1),
        finished(campaign, second, 1),
    ];
    timeline.write(&entries).await.expect("write");
    // A repeated export (after a crash between copy and delete) changes nothing.
    timeline.write(&entries).await.expect("write again");
    timeline
        .write(&entries[..1])
        .await
        .expect("write one again");
    timeline.write(&[]).await.expect("write nothing");

    let attempts = timeline.call_attempts(campaign, first).await.expect("read");
    assert_eq!(
        attempts,
        vec![entries[1].attempt.clone(), entries[0].attempt.clone()],
        "{name}: by attempt number, once each, as written"
    );
    assert_eq!(
        timeline
            .call_attempts(campaign, second)
            .await
            .expect("read"),
        vec![entries[2].attempt.clone()],
        "{name}"
    );
    assert!(
        timeline
            .call_attempts(CampaignId::new(), first)
            .await
            .expect("read")
            .is_empty(),
        "{name}: another campaign's call is not this one"
    );
    assert!(timeline
        .call_attempts(campaign, CallId::new())
        .await
        .expect("read")
        .is_empty());
}

async fn pages_visit_every_attempt_once(adapter: TimelineAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let Some(timeline) = adapter.open(&dir, "pages_visit_every_attempt_once").await else {
        return;
    };
    let campaign = CampaignId::new();
    let other = CampaignId::new();
    let mut written = Vec::new();
    for call in 0..40u32 {
        let call_id = CallId::new();
        for number in 1..=(call % 3 + 1) {
            written.push(finished(campaign, call_id, number));
        }
        timeline
            .write(&[finished(other, CallId::new(), 1)])
            .await
            .expect("write other");
    }
    timeline.write(&written).await.expect("write");
    let expected: HashSet<(CallId, u32)> = written
        .iter()
        .map(|e| (e.call_id, e.attempt.attempt))
        .collect();
    assert_eq!(expected.len(), written.len());
    assert_eq!(written.len(), 79);

    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = timeline
                .campaign_attempts(campaign, token.as_deref(), 7)
                .await
                .expect("page");
            assert!(
                page.entries.len() <= 7,
                "{name}: a page holds at most limit"
            );
            pages += 1;
            assert!(pages < 100, "{name}: paging ends");
            for entry in page.entries {
                assert_eq!(entry.campaign_id, campaign, "{name}");
                let original = written
                    .iter()
                    .find(|w| w.key() == entry.key())
                    .expect("an entry that was written");
                assert_eq!(&entry, original, "{name}: read back as written");
                seen.push((entry.call_id, entry.attempt.attempt));
            }
            match page.next_page_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        assert!(pages >= 12, "{name}: 79 attempts at 7 a page");
        assert_eq!(seen.len(), written.len(), "{name}: nothing twice");
        assert_eq!(
            seen.iter().copied().collect::<HashSet<_>>(),
            expected,
            "{name}: everything once"
        );
        runs.push(seen);
    }
    assert_eq!(runs[0], runs[1], "{name}: the order is stable");

    let empty = timeline
        .campaign_attempts(CampaignId::new(), None, 10)
        .await
        .expect("page");
    assert!(empty.entries.is_empty() && empty.next_page_token.is_none());
    for token in ["%%%", "AAAA", "AQ"] {
        assert!(
            matches!(
                timeline.campaign_attempts(campaign, Some(token), 10).await,
                Err(TimelineError::InvalidPageToken)
            ),
            "{name}: token {token:?} refused"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The store as an outbox, and the exporter.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_moves_finished_attempts_and_reads_merge() {
    let dir = tempfile::tempdir().expect("dir");
    // Each store exports into a timeline that is not itself, as it would into Scylla.
    type Pair = (&'static str, Arc<dyn Store>, Arc<dyn Timeline>);
    let pairs: Vec<Pair> = vec![
        (
            "sqlite into sqlite",
            sqlite_store(&dir).await,
            sqlite_store(&dir).await,
        ),
        (
            "postgres into postgres",
            postgres_store().await,
            postgres_store().await,
        ),
    ];
    let mut pairs = pairs;
    if let Some(scylla) = scylla_timeline("exporter_moves_finished_attempts").await {
        pairs.push(("postgres into scylla", postgres_store().await, scylla));
    }
    for (name, store, timeline) in pairs {
        let (campaign, calls) = campaign_with_finished_attempts(&*store).await;
        let before: Vec<_> = {
            let mut all = Vec::new();
            for call in &calls {
                all.push(store.get_call(*call).await.expect("get").expect("call").1);
            }
            all
        };
        let exporter = TimelineExporter::new(
            store.clone(),
            timeline.clone(),
            2,
            Duration::from_millis(10),
        );
        assert_eq!(exporter.tick().await.expect("tick"), 2, "{name}: one batch");
        assert_eq!(exporter.tick().await.expect("tick"), 1, "{name}");
        assert_eq!(exporter.tick().await.expect("tick"), 0, "{name}: done");
        assert!(store
            .timeline_backlog(10)
            .await
            .expect("backlog")
            .is_empty());

        for (call, before) in calls.iter().zip(&before) {
            let (_, in_store) = store.get_call(*call).await.expect("get").expect("call");
            let in_timeline = timeline.call_attempts(campaign, *call).await.expect("read");
            assert!(
                in_store.iter().all(|a| a.status == AttemptStatus::Dialing),
                "{name}: only dialing attempts stay in the store"
            );
            assert!(in_timeline.iter().all(|a| a.ended_at.is_some()));
            assert_eq!(
                &merge_attempts(in_store, in_timeline),
                before,
                "{name}: the merged view is the view before the export"
            );
        }
        let page = timeline
            .campaign_attempts(campaign, None, 100)
            .await
            .expect("page");
        assert_eq!(page.entries.len(), 3, "{name}");
    }
}

#[test]
fn a_timeline_that_cannot_be_reached_or_parsed_stops_the_start_naming_the_key() {
    let dir = tempfile::tempdir().expect("dir");
    for (url, expected) in [
        // Port 1 refuses connections: nothing listens there.
        (
            "scylla://127.0.0.1:1/outbound",
            "cannot connect to 127.0.0.1:1",
        ),
        (
            "scylla://127.0.0.1/bad-keyspace",
            "keyspace \"bad-keyspace\"",
        ),
        (
            "cassandra://127.0.0.1/ks",
            "expected `store` or a scylla:// URL",
        ),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_outbound"))
            .args(["serve", "--roles", "all"])
            .env("OUTBOUND__TIMELINE__URL", url)
            .env(
                "OUTBOUND__STORAGE__URL",
                format!("sqlite://{}", dir.path().join("t.db").display()),
            )
            .env("OUTBOUND__HTTP__BIND", "127.0.0.1:0")
            .env("OUTBOUND__LOG__LEVEL", "error")
            .output()
            .expect("run outbound");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{url}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("outbound: ")
                && last.contains("timeline.url")
                && last.contains(expected),
            "{url}: {last}"
        );
    }
}

contract_suite!(
    TimelineAdapter {
        sqlite => TimelineAdapter::Sqlite,
        postgres => TimelineAdapter::Postgres,
        scylla => TimelineAdapter::Scylla,
    },
    [
        writes_are_idempotent_and_read_per_call,
        pages_visit_every_attempt_once,
    ]
);
