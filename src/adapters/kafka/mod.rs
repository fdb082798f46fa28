//! The Kafka bus of distributed mode (`rdkafka`, librdkafka bundled), behind the same `Bus`
//! port as the in-process bus.
//!
//! Layout: each `Topic` is the Kafka topic `{prefix}{topic}` (`dispatch`, `status`, `retry`,
//! `wake`), plus `{prefix}dead-letter` for poison messages; all are created at start when
//! missing. A group `g` is the Kafka consumer group `{prefix}g`, so deployments (and test runs)
//! sharing a cluster stay apart.
//!
//! Guarantees:
//! - **Order per key.** A message's key is its Kafka key, so the messages of one key go to one
//!   partition and keep their order; the producer is idempotent (`acks=all`), so its retries
//!   neither duplicate nor reorder them. There is no order across keys.
//! - **At least once.** `publish` returns once every message is acknowledged by the brokers.
//!   A consumer commits nothing by itself (`enable.auto.commit=false`); `ack` commits, per
//!   partition, one past the highest offset below which every message handed out is
//!   acknowledged, so out-of-order acknowledgements never commit past a message still in
//!   flight. Roles acknowledge after their store transaction, so an offset is committed only
//!   once the work is durable. A new group starts from the earliest message.
//! - **Rebalances.** When a member leaves (its subscription is dropped, its process dies, or it
//!   stops polling for `max.poll.interval.ms`), its partitions move to the other members of the
//!   group, which resume from the committed offsets: its unacknowledged messages are delivered
//!   again, possibly with some acknowledged after them. A member whose partitions are revoked
//!   forgets their in-flight messages: it no longer hands out what it had fetched from them,
//!   and acknowledging what it had handed out commits nothing (the new owner has them).
//! - **Shutdown never hangs.** Destroying a librdkafka client can block for more than 30 s
//!   (rust-rdkafka #509); every client is destroyed on a thread of its own that nobody waits
//!   for. Every other wait (metadata, topic creation, delivery, group join) has a deadline.

mod offsets;
mod subscription;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{
    DefaultProducerContext, DeliveryFuture, FutureProducer, FutureRecord, Producer,
};
use rdkafka::util::Timeout;
use tokio::time::Instant;

use crate::ports::{Bus, BusError, Message, Subscription, Topic};
use subscription::{GroupConsumer, GroupContext, KafkaSubscription, Shared};

/// Header naming the topic a dead letter was taken from.
pub const ORIGINAL_TOPIC_HEADER: &str = "x-original-topic";
/// Header saying why a message was dead-lettered.
pub const DEAD_LETTER_REASON_HEADER: &str = "x-dead-letter-reason";

/// Deadline of metadata requests and topic creation at start.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How much longer than the delivery timeout a whole `publish` may take: enqueuing (the local
/// queue may be full) comes before delivery.
const ENQUEUE_ALLOWANCE: Duration = Duration::from_secs(5);
/// Back-off while the producer's local queue is full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);
/// Shortest wait of `subscribe` for the member's first assignment.
const MIN_JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// What `KafkaBus::connect` needs; `context` fills it from `BusSettings`.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaBusConfig {
    /// `bootstrap.servers`: `host:port[,host:port...]`.
    pub brokers: String,
    /// Prefix of every topic and consumer group.
    pub topic_prefix: String,
    /// Partitions of each topic created at start: the most consumers one group can use.
    pub partitions: i32,
    /// Replication factor of each topic created at start.
    pub replication: i32,
    /// `client.id`, shown in broker logs and metrics.
    pub client_id: String,
    /// `session.timeout.ms` of consumers: a member silent this long leaves its group.
    pub session_timeout: Duration,
    /// `fetch.wait.max.ms` of consumers: how long a fetch with nothing to return waits.
    pub fetch_wait: Duration,
    /// `message.timeout.ms` of the producer: how long it keeps trying to deliver a message
    /// before the publish fails.
    pub delivery_timeout: Duration,
    /// Further librdkafka properties for every client (security, tuning), applied last.
    pub extra: Vec<(String, String)>,
}

impl Default for KafkaBusConfig {
    fn default() -> Self {
        Self {
            brokers: "localhost:9092".into(),
            topic_prefix: "outbound.".into(),
            partitions: 12,
            replication: 1,
            client_id: "outbound".into(),
            session_timeout: Duration::from_secs(10),
            fetch_wait: Duration::from_millis(20),
            delivery_timeout: Duration::from_secs(30),
            extra: Vec::new(),
        }
    }
}

/// Owns a librdkafka client whose destruction may block, and destroys it on a thread of its
/// own that nobody waits for.
pub(crate) struct Detached<T: Send + 'static> {
    inner: Option<T>,
    what: &'static str,
}

impl<T: Send + 'static> Detached<T> {
    fn new(inner: T, what: &'static str) -> Self {
        Self {
            inner: Some(inner),
            what,
        }
    }

    pub(crate) fn get(&self) -> Result<&T, BusError> {
        self.inner.as_ref().ok_or(BusError::Closed)
    }
}

impl<T: Send + 'static> Drop for Detached<T> {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        let what = self.what;
        let spawned = std::thread::Builder::new()
            .name("kafka-close".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                drop(inner);
                tracing::debug!(
                    client = what,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "kafka client closed"
                );
            });
        if let Err(error) = spawned {
            // The closure, and the client with it, was dropped here: this close may block.
            tracing::warn!(client = what, %error, "cannot start a thread to close a kafka client");
        }
    }
}

fn unavailable(what: &str, error: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(format!("kafka {what}: {error}"))
}

/// The topics of a deployment: one per bus topic, and the dead-letter topic.
fn topic_names(prefix: &str) -> Vec<String> {
    Topic::ALL
        .iter()
        .map(|topic| format!("{prefix}{}", topic.as_str()))
        .chain([format!("{prefix}dead-letter")])
        .collect()
}

pub struct KafkaBus {
    config: KafkaBusConfig,
    producer_config: ClientConfig,
    producer: std::sync::RwLock<ProducerSlot>,
}

/// The producer in use, and how many were replaced before it.
struct ProducerSlot {
    producer: Detached<FutureProducer>,
    generation: u64,
}

impl KafkaBus {
    /// Connects, creates the missing topics and starts an idempotent producer. Fails when the
    /// brokers cannot be reached or a topic cannot be created within the deadlines.
    pub async fn connect(config: KafkaBusConfig) -> Result<Self, BusError> {
        if config.brokers.trim().is_empty() {
            return Err(BusError::Unavailable("kafka: no brokers configured".into()));
        }
        if config.partitions < 1 || config.replication < 1 {
            return Err(BusError::Unavailable(format!(
                "kafka: partitions ({}) and replication ({}) must be at least 1",
                config.partitions, config.replication
            )));
        }
        let mut producer_config = client_config(&config);
        producer_config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Dispatches are latency-bound (start → first dial): send at once rather than
            // wait to fill batches; bursts still batch while a send is in flight.
            .set("linger.ms", "1")
            .set("message.timeout.ms", millis(config.delivery_timeout));
        apply_extra(&mut producer_config, &config);
        let producer: FutureProducer = producer_config
            .create()
            .map_err(|e| unavailable("cannot create the producer", e))?;
        let bus = Self {
            config,
            producer_config,
            producer: std::sync::RwLock::new(ProducerSlot {
                producer: Detached::new(producer, "producer"),
                generation: 0,
            }),
        };
        bus.ensure_topics().await?;
        tracing::info!(
            brokers = %bus.config.brokers,
            prefix = %bus.config.topic_prefix,
            "kafka bus connected"
        );
        Ok(bus)
    }

    /// The Kafka topic behind `topic`.
    pub fn topic_name(&self, topic: Topic) -> String {
        format!("{}{}", self.config.topic_prefix, topic.as_str())
    }

    /// The topic poison messages go to.
    pub fn dead_letter_topic(&self) -> String {
        format!("{}dead-letter", self.config.topic_prefix)
    }

    /// Reads the dead-letter topic as consumer group `group` (for inspection or replay).
    pub async fn subscribe_dead_letters(
        &self,
        group: &str,
    ) -> Result<Box<dyn Subscription>, BusError> {
        self.subscribe_to(self.dead_letter_topic(), group).await
    }

    fn topic_names(&self) -> Vec<String> {
        topic_names(&self.config.topic_prefix)
    }

    /// A bus on librdkafka's mock cluster, started for it in this process: one broker on
    /// loopback, with the topics of `config` created on it (the mock broker does not create
    /// topics on request). Only this process can reach it. The cluster is leaked: its broker
    /// must outlive every consumer, and consumers close on background threads after the bus
    /// is gone.
    pub async fn connect_to_mock(mut config: KafkaBusConfig) -> Result<Self, BusError> {
        let cluster =
            MockCluster::new(1).map_err(|e| unavailable("cannot start the mock cluster", e))?;
        let cluster: &'static MockCluster<'static, DefaultProducerContext> =
            Box::leak(Box::new(cluster));
        for name in topic_names(&config.topic_prefix) {
            cluster
                .create_topic(&name, config.partitions, 1)
                .map_err(|e| unavailable("cannot create a mock topic", e))?;
        }
        config.brokers = cluster.bootstrap_servers();
        config.replication = 1;
        Self::connect(config).await
    }

    /// Creates the topics the metadata does not list; "already exists" (a concurrent start) is
    /// fine.
    async fn ensure_topics(&self) -> Result<(), BusError> {
        let wanted = self.topic_names();
        let (producer, _) = self.producer()?;
        let existing = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, ADMIN_TIMEOUT)
                .map(|metadata| {
                    metadata
                        .topics()
                        .iter()
                        .map(|topic| topic.name().to_owned())
                        .collect::<Vec<_>>()
                })
        })
        .await
        .map_err(|e| unavailable("metadata request", e))?
        .map_err(|e| unavailable("cannot reach the brokers", e))?;
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|name| !existing.contains(name))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut admin_config = client_config(&self.config);
        apply_extra(&mut admin_config, &self.config);
        let admin: AdminClient<DefaultClientContext> = admin_config
            .create()
            .map_err(|e| unavailable("cannot create the admin client", e))?;
        let admin = Detached::new(admin, "admin");
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|name| {
                NewTopic::new(
                    name,
                    self.config.partitions,
                    TopicReplication::Fixed(self.config.replication),
                )
            })
            .collect();
        let options = AdminOptions::new()
            .operation_timeout(Some(Timeout::After(ADMIN_TIMEOUT)))
            .request_timeout(Some(Timeout::After(ADMIN_TIMEOUT)));
        let results = tokio::time::timeout(
            ADMIN_TIMEOUT + Duration::from_secs(5),
            admin.get()?.create_topics(&new_topics, &options),
        )
        .await
        .map_err(|_| unavailable("topic creation", "timed out"))?
        .map_err(|e| unavailable("topic creation", e))?;
        for result in results {
            match result {
                Ok(name) => tracing::info!(
                    topic = %name,
                    partitions = self.config.partitions,
                    replication = self.config.replication,
                    "kafka topic created"
                ),
                Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    tracing::debug!(topic = %name, "kafka topic already exists");
                }
                Err((name, code)) => {
                    return Err(unavailable(&format!("cannot create topic {name}"), code));
                }
            }
        }
        Ok(())
    }

    /// The producer in use, with its generation.
    fn producer(&self) -> Result<(FutureProducer, u64), BusError> {
        let slot = self.producer.read().map_err(|_| BusError::Closed)?;
        Ok((slot.producer.get()?.clone(), slot.generation))
    }

    /// An idempotent producer hit by a fatal error (fenced, or its sequence lost after a broker
    /// outage) refuses every later send for good: it is replaced by a fresh one, once per
    /// failed generation, so the bus recovers when the brokers do. Some brokers answer each
    /// delivery with such an error without librdkafka raising its fatal flag: `cureless` is
    /// that error, and replaces the producer as well.
    fn replace_if_fatal(
        &self,
        producer: &FutureProducer,
        generation: u64,
        cureless: Option<RDKafkaErrorCode>,
    ) -> bool {
        let Some((code, reason)) = producer.client().fatal_error().or_else(|| {
            cureless.map(|code| {
                (
                    code,
                    "a delivery failed with an error no retry cures".into(),
                )
            })
        }) else {
            return false;
        };
        let Ok(mut slot) = self.producer.write() else {
            return false;
        };
        if slot.generation != generation {
            return true;
        }
        match self.producer_config.create::<FutureProducer>() {
            Ok(fresh) => {
                tracing::warn!(code = ?code, reason, "kafka producer failed for good, replaced");
                *slot = ProducerSlot {
                    producer: Detached::new(fresh, "producer"),
                    generation: generation + 1,
                };
                true
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot replace the failed kafka producer");
                false
            }
        }
    }

    /// Sends every message, then waits for every delivery report. A producer that failed
    /// for good is replaced and the messages are sent again through the fresh one (a message
    /// the old one did deliver arrives twice, which every consumer takes as harmless).
    async fn send_all(&self, topic: &str, messages: Vec<Message>) -> Result<(), BusError> {
        let (producer, generation) = self.producer()?;
        let Err(failed) = self.send_with(&producer, topic, &messages).await else {
            return Ok(());
        };
        if !self.replace_if_fatal(&producer, generation, failed.cureless) {
            return Err(failed.error);
        }
        let (fresh, _) = self.producer()?;
        self.send_with(&fresh, topic, &messages)
            .await
            .map_err(|failed| failed.error)
    }

    async fn send_with(
        &self,
        producer: &FutureProducer,
        topic: &str,
        messages: &[Message],
    ) -> Result<(), SendFailure> {
        let deadline = Instant::now() + self.config.delivery_timeout + ENQUEUE_ALLOWANCE;
        let mut deliveries: Vec<DeliveryFuture> = Vec::with_capacity(messages.len());
        for message in messages {
            loop {
                let mut headers = OwnedHeaders::new_with_capacity(message.headers.len());
                for (key, value) in &message.headers {
                    headers = headers.insert(Header {
                        key,
                        value: Some(value.as_bytes()),
                    });
                }
                let record = FutureRecord::to(topic)
                    .key(message.key.as_bytes())
                    .payload(message.payload.as_slice())
                    .headers(headers);
                match producer.send_result(record) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        if Instant::now() >= deadline {
                            return Err(SendFailure::plain(unavailable(
                                "publish",
                                "local queue full",
                            )));
                        }
                        tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                    }
                    Err((error, _)) => return Err(SendFailure::of("publish", error)),
                }
            }
        }
        let reports = tokio::time::timeout_at(deadline, futures::future::join_all(deliveries))
            .await
            .map_err(|_| SendFailure::plain(unavailable("publish", "delivery timed out")))?;
        for report in reports {
            match report {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => return Err(SendFailure::of("delivery", error)),
                Err(_) => {
                    return Err(SendFailure::plain(unavailable(
                        "delivery",
                        "producer closed",
                    )))
                }
            }
        }
        Ok(())
    }

    async fn subscribe_to(
        &self,
        topic: String,
        group: &str,
    ) -> Result<Box<dyn Subscription>, BusError> {
        let group_id = format!("{}{group}", self.config.topic_prefix);
        let label = format!("{topic}/{group_id}");
        let session_ms = self.config.session_timeout.as_millis().max(1);
        // Heartbeats well inside the session, so a member learns of a rebalance quickly.
        let heartbeat_ms = (session_ms / 3).clamp(100, 3_000);
        let mut consumer_config = client_config(&self.config);
        consumer_config
            .set("group.id", &group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", session_ms.to_string())
            .set("heartbeat.interval.ms", heartbeat_ms.to_string())
            // A fetch returns as soon as anything arrives; an idle one after `fetch_wait`
            // (20 ms by default, not librdkafka's 500, which a broker that answers only at
            // the deadline would add to every hop).
            .set(
                "fetch.wait.max.ms",
                self.config.fetch_wait.as_millis().max(1).to_string(),
            )
            .set("fetch.min.bytes", "1");
        apply_extra(&mut consumer_config, &self.config);
        let shared = Arc::new(Shared::new());
        let context = GroupContext {
            shared: shared.clone(),
            topic: topic.clone(),
            group: group_id.clone(),
        };
        let consumer: GroupConsumer = consumer_config
            .create_with_context(context)
            .map_err(|e| unavailable("cannot create a consumer", e))?;
        let consumer = Arc::new(Detached::new(consumer, "consumer"));
        consumer
            .get()?
            .subscribe(&[&topic])
            .map_err(|e| unavailable("subscribe", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let chunks = subscription::spawn_poller(
            consumer.clone(),
            shared.clone(),
            stop.clone(),
            label.clone(),
        )?;
        // Joining before returning means a member that subscribes and publishes does not see
        // its group rebalance under it right after (which would redeliver).
        let join_timeout = MIN_JOIN_TIMEOUT.max(self.config.session_timeout * 3);
        subscription::wait_joined(&shared, join_timeout, &label).await;
        Ok(Box::new(KafkaSubscription {
            topic,
            label,
            consumer,
            shared,
            stop,
            chunks,
            pending: Default::default(),
            in_flight: Default::default(),
            next_token: 0,
            seen_revocations: 0,
        }))
    }
}

#[async_trait]
impl Bus for KafkaBus {
    fn crosses_processes(&self) -> bool {
        true
    }

    /// Moves a poison message (one that can never be processed) to the dead-letter topic, with
    /// its key, payload and headers, plus `x-original-topic` and `x-dead-letter-reason`. The
    /// caller acknowledges the original once this returns.
    async fn dead_letter(
        &self,
        topic: Topic,
        message: Message,
        reason: &str,
    ) -> Result<(), BusError> {
        let original_topic = self.topic_name(topic);
        let mut message = message;
        message
            .headers
            .retain(|(key, _)| key != ORIGINAL_TOPIC_HEADER && key != DEAD_LETTER_REASON_HEADER);
        message
            .headers
            .push((ORIGINAL_TOPIC_HEADER.into(), original_topic.clone()));
        message
            .headers
            .push((DEAD_LETTER_REASON_HEADER.into(), reason.into()));
        let key = message.key.clone();
        self.send_all(&self.dead_letter_topic(), vec![message])
            .await?;
        crate::metrics::metrics()
            .dead_letters
            .with_label_values(&[topic.as_str()])
            .inc();
        tracing::warn!(
            topic = %original_topic,
            key = %key,
            reason,
            "message moved to the dead-letter topic"
        );
        Ok(())
    }

    async fn publish(&self, topic: Topic, messages: Vec<Message>) -> Result<(), BusError> {
        if messages.is_empty() {
            return Ok(());
        }
        self.send_all(&self.topic_name(topic), messages).await
    }

    async fn subscribe(
        &self,
        topic: Topic,
        group: &str,
    ) -> Result<Box<dyn Subscription>, BusError> {
        self.subscribe_to(self.topic_name(topic), group).await
    }
}

fn millis(duration: Duration) -> String {
    duration.as_millis().to_string()
}

/// Why a send failed, and whether the error is one no retry through the same producer cures.
struct SendFailure {
    error: BusError,
    cureless: Option<RDKafkaErrorCode>,
}

impl SendFailure {
    fn plain(error: BusError) -> Self {
        Self {
            error,
            cureless: None,
        }
    }

    fn of(what: &str, error: KafkaError) -> Self {
        Self {
            cureless: error.rdkafka_error_code().filter(|code| is_cureless(*code)),
            error: unavailable(what, error),
        }
    }
}

/// Errors an idempotent producer cannot get past: the broker gave its producer id a newer
/// epoch or forgot it (while the client was cut off), or lost the sequence of its messages.
fn is_cureless(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::UnknownProducerId
            | RDKafkaErrorCode::OutOfOrderSequenceNumber
            | RDKafkaErrorCode::Fatal
    )
}

/// The properties every client shares.
fn client_config(config: &KafkaBusConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", &config.client_id);
    client
}

fn apply_extra(client: &mut ClientConfig, config: &KafkaBusConfig) {
    for (key, value) in &config.extra {
        client.set(key, value);
    }
}

#[cfg(test)]
mod tests;
