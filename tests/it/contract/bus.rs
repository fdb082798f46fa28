//! The `Bus` port: every group gets every message, members share, unacknowledged messages
//! come back; plus what only Kafka has (partitions split between members, dead letters).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use outbound::adapters::kafka::{
    KafkaBus, KafkaBusConfig, DEAD_LETTER_REASON_HEADER, ORIGINAL_TOPIC_HEADER,
};
use outbound::chaos::tansu::Tansu;
use outbound::ports::{Bus, Message, Topic};

use crate::fixtures::{kafka_bus, BusAdapter};

const BUS_WAIT: Duration = Duration::from_secs(60);

fn message(n: usize) -> Message {
    Message {
        key: format!("k{n}"),
        payload: n.to_string().into_bytes(),
        headers: vec![("traceparent".into(), "x".into())],
    }
}

async fn every_group_gets_every_message_and_members_share(adapter: BusAdapter) {
    let name = adapter.name();
    let bus = adapter.open().await;
    let mut group_a1 = bus.subscribe(Topic::Status, "a").await.expect("subscribe");
    let mut group_a2 = bus.subscribe(Topic::Status, "a").await.expect("subscribe");
    let mut group_b = bus.subscribe(Topic::Status, "b").await.expect("subscribe");
    bus.publish(Topic::Status, (0..10).map(message).collect())
        .await
        .expect("publish");
    let mut seen_b = Vec::new();
    while seen_b.len() < 10 {
        let batch = tokio::time::timeout(BUS_WAIT, group_b.next_batch(4))
            .await
            .unwrap_or_else(|_| panic!("{name}: group b waited too long"))
            .expect("batch");
        assert!(batch.len() <= 4, "{name}: batch above max");
        let tokens: Vec<u64> = batch.iter().map(|d| d.token).collect();
        seen_b.extend(batch.into_iter().map(|d| d.message));
        group_b.ack(&tokens).await.expect("ack");
    }
    assert_eq!(
        seen_b,
        (0..10).map(message).collect::<Vec<_>>(),
        "{name}: order and headers kept"
    );
    let mut seen_a = HashSet::new();
    while seen_a.len() < 10 {
        let batch = tokio::time::timeout(BUS_WAIT, async {
            tokio::select! {
                batch = group_a1.next_batch(3) => batch,
                batch = group_a2.next_batch(3) => batch,
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{name}: group a waited too long"))
        .expect("batch");
        for delivery in batch {
            assert!(
                seen_a.insert(delivery.message.key.clone()),
                "{name}: a group member got a duplicate"
            );
        }
    }
}

async fn redelivers_what_was_not_acknowledged(adapter: BusAdapter) {
    let name = adapter.name();
    let bus = adapter.open().await;
    bus.publish(Topic::Dispatch, (0..5).map(message).collect())
        .await
        .expect("publish before anyone subscribed");
    let mut first = bus
        .subscribe(Topic::Dispatch, "call")
        .await
        .expect("subscribe");
    let batch = tokio::time::timeout(BUS_WAIT, first.next_batch(5))
        .await
        .unwrap_or_else(|_| panic!("{name}: backlog waited too long"))
        .expect("batch");
    assert_eq!(batch.len(), 5, "{name}: backlog delivered");
    first
        .ack(&[batch[0].token, batch[1].token])
        .await
        .expect("ack");
    drop(first);
    let mut second = bus
        .subscribe(Topic::Dispatch, "call")
        .await
        .expect("subscribe");
    let again = tokio::time::timeout(BUS_WAIT, second.next_batch(10))
        .await
        .expect("redelivery arrives")
        .expect("batch");
    let keys: Vec<String> = again.into_iter().map(|d| d.message.key).collect();
    assert_eq!(
        keys,
        vec!["k2", "k3", "k4"],
        "{name}: unacknowledged come back, in order"
    );
}

/// Kafka only: with several partitions the members of a group split them, each message goes
/// to one member, and the messages of one key keep their order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_members_split_partitions() {
    let bus = kafka_bus(4).await;
    let mut members = [
        bus.subscribe(Topic::Status, "a").await.expect("subscribe"),
        bus.subscribe(Topic::Status, "a").await.expect("subscribe"),
    ];
    let keyed = |n: usize| Message {
        key: format!("k{}", n % 8),
        payload: n.to_string().into_bytes(),
        headers: Vec::new(),
    };
    bus.publish(Topic::Status, (0..40).map(keyed).collect())
        .await
        .expect("publish");
    let mut per_member = [0usize; 2];
    let mut per_key: HashMap<String, Vec<usize>> = HashMap::new();
    let mut seen = HashSet::new();
    while seen.len() < 40 {
        let [first, second] = &mut members;
        let (member, batch) = tokio::time::timeout(BUS_WAIT, async {
            tokio::select! {
                batch = first.next_batch(5) => (0, batch),
                batch = second.next_batch(5) => (1, batch),
            }
        })
        .await
        .expect("messages arrive");
        let batch = batch.expect("batch");
        let tokens: Vec<u64> = batch.iter().map(|d| d.token).collect();
        for delivery in batch {
            let n: usize = String::from_utf8(delivery.message.payload)
                .expect("utf-8")
                .parse()
                .expect("number");
            assert!(seen.insert(n), "message {n} delivered twice");
            per_member[member] += 1;
            per_key.entry(delivery.message.key).or_default().push(n);
        }
        members[member].ack(&tokens).await.expect("ack");
    }
    assert!(
        per_member.iter().all(|count| *count > 0),
        "both members got partitions: {per_member:?}"
    );
    for (key, numbers) in per_key {
        assert!(
            numbers.windows(2).all(|pair| pair[0] < pair[1]),
            "order of {key} kept: {numbers:?}"
        );
    }
}

/// Kafka only: a poison message moved aside arrives on the dead-letter topic, whole, saying
/// where it came from and why, and is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_arrives_with_its_reason() {
    let bus = kafka_bus(1).await;
    let poison = message(7);
    bus.dead_letter(Topic::Dispatch, poison.clone(), "undecodable payload")
        .await
        .expect("dead letter");
    let mut letters = bus
        .subscribe_dead_letters("inspect")
        .await
        .expect("subscribe");
    let batch = tokio::time::timeout(BUS_WAIT, letters.next_batch(10))
        .await
        .expect("the dead letter arrives")
        .expect("batch");
    assert_eq!(batch.len(), 1);
    let letter = &batch[0].message;
    assert_eq!(letter.key, poison.key);
    assert_eq!(letter.payload, poison.payload);
    let header = |name: &str| {
        letter
            .headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    assert_eq!(header("traceparent"), Some("x"), "original headers kept");
    assert_eq!(
        header(DEAD_LETTER_REASON_HEADER),
        Some("undecodable payload")
    );
    assert_eq!(
        header(ORIGINAL_TOPIC_HEADER),
        Some(bus.topic_name(Topic::Dispatch).as_str())
    );
    let counted = outbound::metrics::metrics()
        .registry
        .gather()
        .iter()
        .filter(|family| family.name() == "outbound_dead_letters_total")
        .flat_map(|family| family.get_metric())
        .filter(|metric| {
            metric
                .get_label()
                .iter()
                .any(|label| label.name() == "topic" && label.value() == "dispatch")
        })
        .map(|metric| metric.get_counter().get_value())
        .sum::<f64>();
    assert!(counted >= 1.0, "dead letters counted: {counted}");
}

contract_suite!(
    BusAdapter {
        memory => BusAdapter::Memory,
        kafka => BusAdapter::Kafka,
    },
    [
        every_group_gets_every_message_and_members_share,
        redelivers_what_was_not_acknowledged,
    ]
);

/// A group member that read and acknowledged `0..5` and a producer with a message in flight
/// when tansu, an independent Kafka-compatible broker, is frozen past the delivery timeout and
/// the session timeout. tansu then fences the producer's epoch for good; the bus must replace
/// it and publish again, and the evicted member must rejoin from its committed offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_recovers_from_a_broker_frozen_past_its_timeouts() {
    let binary = std::env::var("OUTBOUND_TEST_TANSU").unwrap_or_else(|_| {
        panic!("OUTBOUND_TEST_TANSU is not set: run the tests through scripts/test.sh")
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let tansu = Tansu::start(binary.as_ref(), dir.path())
        .await
        .expect("tansu starts");
    let bus = KafkaBus::connect(KafkaBusConfig {
        brokers: tansu.bootstrap_servers(),
        topic_prefix: format!("frozen-{}.", uuid::Uuid::now_v7()),
        partitions: 1,
        session_timeout: Duration::from_secs(6),
        // Deliveries time out while the broker is frozen, as they do in a long outage.
        delivery_timeout: Duration::from_secs(3),
        ..KafkaBusConfig::default()
    })
    .await
    .expect("connect to tansu");
    let mut member = bus.subscribe(Topic::Status, "g").await.expect("subscribe");
    bus.publish(Topic::Status, (0..5).map(message).collect())
        .await
        .expect("publish");
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let batch = tokio::time::timeout(BUS_WAIT, member.next_batch(5))
            .await
            .expect("first messages in time")
            .expect("batch");
        let tokens: Vec<u64> = batch.iter().map(|d| d.token).collect();
        seen.extend(batch.into_iter().map(|d| d.message.key));
        member.ack(&tokens).await.expect("ack");
    }

    tansu.signal("STOP").expect("freeze");
    let lost = bus.publish(Topic::Status, vec![message(5)]).await;
    assert!(
        lost.is_err(),
        "a delivery to a frozen broker cannot succeed"
    );
    tokio::time::sleep(Duration::from_secs(8)).await;
    tansu.signal("CONT").expect("thaw");

    // The engine's roles publish again until the bus takes the messages: so does the test.
    let deadline = tokio::time::Instant::now() + BUS_WAIT;
    while let Err(err) = bus
        .publish(Topic::Status, (10..15).map(message).collect())
        .await
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bus still refuses a minute after the broker came back: {err}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut after = Vec::new();
    while !after.contains(&"k14".to_owned()) {
        let batch = tokio::time::timeout(BUS_WAIT, member.next_batch(10))
            .await
            .expect("the evicted member reads again in time")
            .expect("batch");
        let tokens: Vec<u64> = batch.iter().map(|d| d.token).collect();
        after.extend(batch.into_iter().map(|d| d.message.key));
        member.ack(&tokens).await.expect("ack");
    }
    assert!(
        after.iter().all(|key| !seen.contains(key)),
        "the member resumed from its committed offset, not before it: {after:?}"
    );
}
