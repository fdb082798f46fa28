//! The webhook outbox of every store: a change writes its deliveries in its own transaction,
//! one per endpoint that listens; claims are exclusive until their deadline; tries are kept.

use chrono::{Duration, Utc};
use outbound::domain::admission::Unspent;
use outbound::domain::campaign::{PauseReason, StatusAction};
use outbound::domain::ids::EndpointId;
use outbound::domain::phone::PhoneNumber;
use outbound::domain::webhook::{EventType, Secret, Subscription};
use outbound::ports::{DeliveryStatus, DncScope, Endpoint, OptOutListing, Store, TryRecord};

use crate::fixtures::{started_campaign, StoreAdapter};
use crate::helpers::Unaudited;

fn endpoint(
    subscription: Subscription,
    campaign_id: Option<outbound::domain::ids::CampaignId>,
) -> Endpoint {
    Endpoint {
        id: EndpointId::new(),
        url: "https://example.com/hooks".into(),
        subscription,
        campaign_id,
        description: Some("crm".into()),
        secret: Secret::from_bytes([7; 32]),
        created_at: Utc::now(),
    }
}

async fn answer_one(
    store: &dyn Store,
    campaign: outbound::domain::ids::CampaignId,
) -> outbound::domain::ids::CallId {
    let claimed = store
        .claim_calls(
            campaign,
            1,
            outbound::domain::ids::InstanceId::new(),
            50_000,
            Utc::now(),
        )
        .await
        .expect("claim");
    super::store::answer(store, campaign, &claimed[0]).await;
    claimed[0].call_id
}

/// Each endpoint with its pending count, as the endpoints' list gives them.
async fn pending(store: &dyn Store) -> Vec<(EndpointId, u64)> {
    let listed = store.list_endpoints().await.expect("list");
    listed.iter().map(|(e, l)| (e.id, l.pending)).collect()
}

/// Without an endpoint nothing is written; with one, a finished attempt, its finished call and
/// a campaign's new status each become one event, fanned out to a delivery per endpoint that
/// listens to it.
async fn a_change_writes_one_delivery_per_listening_endpoint(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let campaign = started_campaign(&*store, 3).await;
    answer_one(&*store, campaign).await;
    assert_eq!(store.fan_out(100).await.expect("fan out"), 0, "{name}");
    assert_eq!(
        store.delivery_backlog().await.expect("backlog"),
        0,
        "{name}"
    );

    let all = endpoint(Subscription::all(), None);
    let calls_only = endpoint(
        Subscription::only([EventType::CallFinished]).expect("types"),
        Some(campaign),
    );
    let elsewhere = endpoint(
        Subscription::all(),
        Some(outbound::domain::ids::CampaignId::new()),
    );
    for e in [&all, &calls_only, &elsewhere] {
        store.create_endpoint(e, None).await.expect("create");
    }
    let call_id = answer_one(&*store, campaign).await;
    store
        .pause_for_carrier(
            campaign,
            PauseReason::carrier_refused(None, "x".into()),
            Utc::now(),
        )
        .await
        .expect("pause");

    // Until its event is fanned out, a finished attempt stays for the timeline exporter.
    let key = outbound::ports::AttemptKey {
        campaign_id: campaign,
        call_id,
        attempt: 1,
    };
    assert_eq!(
        store.forget_attempts(&[key]).await.expect("forget"),
        0,
        "{name}: an attempt whose event waits is kept"
    );
    let offered = store.timeline_backlog(100).await.expect("backlog");
    assert!(
        offered.iter().all(|entry| entry.call_id != call_id),
        "{name}: nor offered to the exporter"
    );
    // Events waiting for the fan-out are backlog already: three for `all`, one for
    // `calls_only`, none for `elsewhere`.
    assert_eq!(
        store.delivery_backlog().await.expect("backlog"),
        4,
        "{name}: events waiting for the fan-out count"
    );
    let expected = vec![(all.id, 3), (calls_only.id, 1), (elsewhere.id, 0)];
    assert_eq!(
        pending(&*store).await,
        expected,
        "{name}: each endpoint's waiting events are its pending"
    );
    let due_at = Utc::now() + Duration::seconds(1);
    assert_eq!(
        store.fewest_due(due_at, 10).await.expect("due"),
        Some(0),
        "{name}: nothing is due before the fan-out"
    );
    assert!(store.events_waiting().await.expect("waiting"), "{name}");
    assert_eq!(
        store.fan_out(2).await.expect("fan out"),
        2,
        "{name}: the oldest first, as many as asked"
    );
    assert!(
        store.events_waiting().await.expect("waiting"),
        "{name}: one left"
    );
    assert_eq!(store.fan_out(100).await.expect("fan out"), 1, "{name}");
    assert!(
        !store.events_waiting().await.expect("waiting"),
        "{name}: all moved"
    );
    assert_eq!(store.fan_out(100).await.expect("fan out"), 0, "{name}");
    assert_eq!(
        store.delivery_backlog().await.expect("backlog"),
        4,
        "{name}: the same backlog, as deliveries"
    );
    // The fewest due of any endpoint, each counted up to the cap: `elsewhere` has none.
    assert_eq!(
        store.fewest_due(due_at, 10).await.expect("due"),
        Some(0),
        "{name}"
    );

    assert_eq!(
        pending(&*store).await,
        expected,
        "{name}: the same, as deliveries"
    );

    let now = Utc::now() + Duration::seconds(1);
    let until = now + Duration::seconds(60);
    let claimed = store
        .claim_deliveries(all.id, "first", now, until, 10)
        .await
        .expect("claim");
    let mut types: Vec<EventType> = claimed.iter().map(|d| d.event_type).collect();
    types.sort_by_key(|t| t.as_str());
    assert_eq!(
        types,
        vec![
            EventType::AttemptFinished,
            EventType::CallFinished,
            EventType::CampaignStatusChanged
        ],
        "{name}"
    );
    // Claimed deliveries are nobody else's until the claim's deadline.
    assert!(store
        .claim_deliveries(all.id, "second", now, until, 10)
        .await
        .expect("claim")
        .is_empty());

    // A retry asked for while a try is under way is that try: the claim keeps it.
    assert!(store
        .retry_delivery(all.id, &claimed[2].id, now, None)
        .await
        .expect("retry"));
    assert!(
        store
            .claim_deliveries(all.id, "second", now, until, 10)
            .await
            .expect("claim")
            .is_empty(),
        "{name}: a retry does not take a delivery from its try"
    );

    let attempt = claimed
        .iter()
        .find(|d| d.event_type == EventType::AttemptFinished)
        .expect("attempt");
    assert_eq!(attempt.call_id, Some(call_id), "{name}");
    let data = store
        .attempt_event(campaign, call_id, attempt.attempt.expect("number"))
        .await
        .expect("read")
        .expect("attempt");
    assert_eq!(data.status, "completed", "{name}");
    let call = store
        .call_event(campaign, call_id)
        .await
        .expect("read")
        .expect("call");
    assert_eq!(
        (call.status.as_str(), call.attempts),
        ("completed", 1),
        "{name}"
    );
    let change = claimed
        .iter()
        .find(|d| d.event_type == EventType::CampaignStatusChanged)
        .expect("change");
    let detail: serde_json::Value =
        serde_json::from_str(change.detail.as_deref().expect("detail")).expect("json");
    assert_eq!(detail["from"], "in_progress", "{name}");
    assert_eq!(detail["to"], "paused", "{name}");

    // One delivered, one failed for now, one left unfinished: its claim comes back.
    let tries = vec![
        TryRecord {
            id: claimed[0].id.clone(),
            body: Some("{}".into()),
            status: DeliveryStatus::Delivered,
            next_attempt_at: None,
            last_status_code: Some(204),
            last_error: None,
            delivered_at: Some(now),
        },
        TryRecord {
            id: claimed[1].id.clone(),
            body: Some("{\"b\":1}".into()),
            status: DeliveryStatus::Pending,
            next_attempt_at: Some(now + Duration::seconds(5)),
            last_status_code: Some(500),
            last_error: Some("status 500".into()),
            delivered_at: None,
        },
    ];
    // A claim that is no longer held changes nothing.
    store
        .finish_deliveries(all.id, "second", &tries, &[])
        .await
        .expect("stale finish");
    let log = store
        .deliveries(all.id, Some(DeliveryStatus::Delivered), None, 10)
        .await
        .expect("log");
    assert!(log.is_empty(), "{name}: a stale claim finished nothing");
    store
        .finish_deliveries(all.id, "first", &tries, &[])
        .await
        .expect("finish");
    let log = store.deliveries(all.id, None, None, 10).await.expect("log");
    assert_eq!(log.len(), 3, "{name}");
    let failed = log.iter().find(|d| d.id == claimed[1].id).expect("failed");
    assert_eq!(
        (
            failed.attempts,
            failed.last_status_code,
            failed.last_error.as_deref()
        ),
        (1, Some(500), Some("status 500")),
        "{name}"
    );
    let page = store.deliveries(all.id, None, None, 2).await.expect("page");
    let last = page.last().expect("row");
    let rest = store
        .deliveries(all.id, None, Some(last.id.clone()), 2)
        .await
        .expect("rest");
    assert_eq!(
        page.len() + rest.len(),
        3,
        "{name}: pages cover the log once"
    );

    let later = until + Duration::seconds(1);
    let again = store
        .claim_deliveries(all.id, "third", later, later + Duration::seconds(60), 10)
        .await
        .expect("claim");
    let mut ids: Vec<&str> = again.iter().map(|d| d.id.as_str()).collect();
    ids.sort_unstable();
    let mut expected = vec![claimed[1].id.as_str(), claimed[2].id.as_str()];
    expected.sort_unstable();
    assert_eq!(
        ids, expected,
        "{name}: the failed one when due, the lost claim"
    );
    let kept = again.iter().find(|d| d.id == claimed[1].id).expect("kept");
    assert_eq!(
        kept.body.as_deref(),
        Some("{\"b\":1}"),
        "{name}: the same body"
    );

    // A delivered one is sent again on request; an unknown one is not found.
    assert!(store
        .retry_delivery(all.id, &claimed[0].id, later, None)
        .await
        .expect("retry"));
    assert!(!store
        .retry_delivery(calls_only.id, &claimed[0].id, later, None)
        .await
        .expect("retry"));
    assert_eq!(
        store.prune_deliveries(later).await.expect("prune"),
        0,
        "{name}"
    );

    assert!(store.delete_endpoint(all.id, None).await.expect("delete"));
    assert!(!store.delete_endpoint(all.id, None).await.expect("again"));
    assert_eq!(
        store.delivery_backlog().await.expect("backlog"),
        1,
        "{name}"
    );

    // The triggers stay while an endpoint does, and go with the last.
    assert!(!store.disarm_unused().await.expect("disarm"), "{name}");
    for e in [&calls_only, &elsewhere] {
        store.delete_endpoint(e.id, None).await.expect("delete");
    }
    assert_eq!(
        store.fewest_due(due_at, 10).await.expect("due"),
        None,
        "{name}: no endpoint"
    );
    assert!(store.disarm_unused().await.expect("disarm"), "{name}");
    assert!(!store.disarm_unused().await.expect("again"), "{name}");
    // Created again with the next endpoint.
    let again = endpoint(Subscription::all(), None);
    store.create_endpoint(&again, None).await.expect("create");
    store
        .transition_campaign(campaign, StatusAction::Start, Utc::now())
        .await
        .expect("resume");
    answer_one(&*store, campaign).await;
    store.fan_out(100).await.expect("fan out");
    assert_eq!(
        store.delivery_backlog().await.expect("backlog"),
        4,
        "{name}: the resume, the attempt, its call and the completion"
    );
    // Counted up to the cap, and only what is due by then.
    let soon = Utc::now() + Duration::seconds(1);
    assert_eq!(
        store.fewest_due(soon, 10).await.expect("due"),
        Some(4),
        "{name}"
    );
    assert_eq!(
        store.fewest_due(soon, 3).await.expect("due"),
        Some(3),
        "{name}"
    );
    assert_eq!(
        store
            .fewest_due(Utc::now() - Duration::hours(1), 10)
            .await
            .expect("due"),
        Some(0),
        "{name}: not due before their time"
    );
}

/// What a claim did not try is handed back with its record: due since its event (its place by
/// age), its tries unchanged, claimable by anyone; a claim no longer held hands back nothing.
async fn a_claim_hands_back_what_it_did_not_try(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let campaign = started_campaign(&*store, 3).await;
    let all = endpoint(Subscription::all(), None);
    store.create_endpoint(&all, None).await.expect("create");
    answer_one(&*store, campaign).await;
    assert_eq!(store.fan_out(100).await.expect("fan out"), 2, "{name}");

    let now = Utc::now() + Duration::seconds(1);
    let until = now + Duration::seconds(60);
    let claimed = store
        .claim_deliveries(all.id, "big", now, until, 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2, "{name}");
    let tried = TryRecord {
        id: claimed[0].id.clone(),
        body: Some("{}".into()),
        status: DeliveryStatus::Pending,
        next_attempt_at: Some(now + Duration::seconds(5)),
        last_status_code: Some(500),
        last_error: Some("status 500".into()),
        delivered_at: None,
    };
    let untried = vec![claimed[1].id.clone()];
    store
        .finish_deliveries(all.id, "stale", std::slice::from_ref(&tried), &untried)
        .await
        .expect("stale finish");
    assert!(
        store
            .claim_deliveries(all.id, "other", now, until, 10)
            .await
            .expect("claim")
            .is_empty(),
        "{name}: a claim no longer held hands back nothing"
    );
    store
        .finish_deliveries(all.id, "big", &[tried], &untried)
        .await
        .expect("finish");
    let again = store
        .claim_deliveries(all.id, "next", now, until, 10)
        .await
        .expect("claim");
    let again: Vec<(&str, u32)> = again.iter().map(|d| (d.id.as_str(), d.attempts)).collect();
    assert_eq!(
        again,
        vec![(claimed[1].id.as_str(), 0)],
        "{name}: the untried one at once and untouched, the tried one when due"
    );
    // Handed back again by a round that tried nothing.
    store
        .finish_deliveries(all.id, "next", &[], &untried)
        .await
        .expect("finish");
    let pending = store
        .deliveries(all.id, Some(DeliveryStatus::Pending), None, 10)
        .await
        .expect("log");
    let handed = pending.iter().find(|d| d.id == claimed[1].id).expect("row");
    assert_eq!(
        (
            handed.attempts,
            handed.last_error.as_deref(),
            handed.next_attempt_at
        ),
        (0, None, Some(handed.created_at)),
        "{name}: due since its event, in its place by age"
    );
    assert_eq!(
        store
            .claim_deliveries(all.id, "last", now, until, 10)
            .await
            .expect("claim")
            .len(),
        1,
        "{name}"
    );
}

/// An opt-out is reported once, when the number is newly listed.
async fn an_opt_out_is_reported_with_its_listing(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let hooks = endpoint(
        Subscription::only([EventType::CallOptedOut]).expect("types"),
        None,
    );
    store.create_endpoint(&hooks, None).await.expect("create");
    let listing = OptOutListing {
        scope: DncScope::Global,
        number: PhoneNumber::parse("+15550001111").expect("number"),
        reason: "inbound".into(),
        call: None,
    };
    let added = store
        .list_opt_out(listing.clone(), Utc::now())
        .await
        .expect("list");
    assert_eq!(added.added, 1, "{name}");
    store
        .list_opt_out(listing, Utc::now())
        .await
        .expect("again");
    assert_eq!(store.fan_out(100).await.expect("fan out"), 1, "{name}");
    let now = Utc::now() + Duration::seconds(1);
    let claimed = store
        .claim_deliveries(hooks.id, "c", now, now + Duration::seconds(9), 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1, "{name}: once");
    let body: serde_json::Value =
        serde_json::from_str(claimed[0].body.as_deref().expect("body")).expect("json");
    assert_eq!(body["type"], "call.opted_out", "{name}");
    assert_eq!(body["data"]["phone_number"], "+15550001111", "{name}");
    assert_eq!(body["data"]["scope"], "global", "{name}");
}

/// Calls that finish without an attempt report it too: a completed campaign's queued calls
/// (by the outbox's triggers) and the one it had dialing, handed back unplaced (by the release).
async fn calls_finished_without_an_attempt_are_reported(adapter: StoreAdapter) {
    let dir = tempfile::tempdir().expect("dir");
    let name = adapter.name();
    let store = adapter.open(&dir).await;
    let campaign = started_campaign(&*store, 3).await;
    let hooks = endpoint(Subscription::all(), Some(campaign));
    store.create_endpoint(&hooks, None).await.expect("create");
    let claimer = outbound::domain::ids::InstanceId::new();
    let claimed = store
        .claim_calls(campaign, 1, claimer, 50_000, Utc::now())
        .await
        .expect("claim");
    store
        .transition_campaign(campaign, StatusAction::Complete, Utc::now())
        .await
        .expect("complete");
    let released = store
        .release_attempts(
            &[super::store::held(campaign, &claimed[0], claimer)],
            Unspent::Unplaced,
            Utc::now(),
        )
        .await
        .expect("release");
    assert_eq!(released, vec![true], "{name}");
    assert_eq!(store.fan_out(100).await.expect("fan out"), 4, "{name}");
    let log = store
        .deliveries(hooks.id, None, None, 10)
        .await
        .expect("log");
    let mut types: Vec<&str> = log.iter().map(|d| d.event_type.as_str()).collect();
    types.sort_unstable();
    assert_eq!(
        types,
        vec![
            "call.finished",
            "call.finished",
            "call.finished",
            "campaign.status_changed"
        ],
        "{name}"
    );
}

contract_suite!(
    StoreAdapter {
        sqlite => StoreAdapter::Sqlite,
        postgres => StoreAdapter::Postgres,
    },
    [
        a_change_writes_one_delivery_per_listening_endpoint,
        an_opt_out_is_reported_with_its_listing,
        a_claim_hands_back_what_it_did_not_try,
        calls_finished_without_an_attempt_are_reported,
    ]
);
