#![allow(clippy::expect_used)]
use super::*;

fn wake() -> Vec<Message> {
    vec![Message {
        key: "k".into(),
        payload: b"{}".to_vec(),
        headers: Vec::new(),
    }]
}

#[tokio::test]
async fn a_producer_that_failed_for_good_is_replaced() {
    let bus = KafkaBus::connect_to_mock(KafkaBusConfig {
        topic_prefix: format!("fatal-{}.", uuid::Uuid::now_v7()),
        ..KafkaBusConfig::default()
    })
    .await
    .expect("mock cluster");
    bus.publish(Topic::Wake, wake()).await.expect("first send");
    let (producer, generation) = bus.producer().expect("producer");
    let reason = std::ffi::CString::new("fenced by the test").expect("reason");
    // SAFETY: librdkafka's own testing hook, called on the live handle this producer owns
    // (the producer outlives the call), with a NUL-terminated reason.
    unsafe {
        rdkafka::bindings::rd_kafka_test_fatal_error(
            producer.client().native_ptr(),
            rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_PRODUCER_FENCED,
            reason.as_ptr(),
        );
    }
    bus.publish(Topic::Wake, wake())
        .await
        .expect("sent again through a fresh producer");
    let (_, replaced) = bus.producer().expect("producer");
    assert_eq!(replaced, generation + 1, "replaced once");
    bus.publish(Topic::Wake, wake())
        .await
        .expect("the fresh producer sends");
}

/// A broker that answers a delivery with an error no retry of the same producer cures
/// (as a broker does after a hang moved the producer's epoch on), without librdkafka's fatal
/// flag: the producer is replaced and the messages go out again through the fresh one.
#[tokio::test]
async fn a_producer_whose_deliveries_cannot_succeed_is_replaced_and_resends() {
    use rdkafka::bindings::rd_kafka_resp_err_t as Code;
    use rdkafka::types::RDKafkaApiKey;
    // An unknown producer id librdkafka cures by itself (a new epoch): no replacement.
    for (code, replaces) in [
        (Code::RD_KAFKA_RESP_ERR_PRODUCER_FENCED, true),
        (Code::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, true),
        (Code::RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID, false),
    ] {
        let cluster: &'static MockCluster<'static, DefaultProducerContext> =
            Box::leak(Box::new(MockCluster::new(1).expect("mock cluster")));
        let prefix = format!("cureless-{}.", uuid::Uuid::now_v7());
        for name in topic_names(&prefix) {
            cluster.create_topic(&name, 1, 1).expect("topic");
        }
        let bus = KafkaBus::connect(KafkaBusConfig {
            brokers: cluster.bootstrap_servers(),
            topic_prefix: prefix,
            ..KafkaBusConfig::default()
        })
        .await
        .expect("bus");
        bus.publish(Topic::Wake, wake()).await.expect("first send");
        let (_, generation) = bus.producer().expect("producer");
        cluster.request_errors(RDKafkaApiKey::Produce, &[code]);
        bus.publish(Topic::Wake, wake())
            .await
            .unwrap_or_else(|err| panic!("{code:?}: not sent again: {err}"));
        let (_, replaced) = bus.producer().expect("producer");
        assert_eq!(
            replaced,
            generation + u64::from(replaces),
            "{code:?}: replaced once or not at all"
        );
    }
}
