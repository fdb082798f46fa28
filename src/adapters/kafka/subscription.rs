//! One member of a consumer group on one topic.
//!
//! A dedicated thread polls the consumer all the time, so the member takes part in rebalances
//! even while the role is busy between batches (librdkafka only runs the rebalance callback
//! from a poll). It hands messages to the subscription through a small bounded channel, in
//! chunks of what was immediately available. When the role stops draining, the channel fills
//! and the thread stops polling, exactly like a Kafka consumer that stops calling poll:
//! rebalances then wait for it, up to `max.poll.interval.ms`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Headers, Message as _};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};

use super::offsets::{Offsets, Position};
use super::Detached;
use crate::ports::{BusError, Delivery, Message, Subscription};

/// How long one poll of the consumer blocks when nothing arrives; bounds how late the polling
/// thread notices that its subscription was dropped.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Most messages in one chunk handed from the polling thread.
const CHUNK: usize = 256;
/// Chunks buffered between the polling thread and the subscription.
const CHUNKS_BUFFERED: usize = 4;

/// A fetched message with where it came from.
pub(crate) struct Polled {
    message: Message,
    position: Position,
}

/// State shared by the subscription and the rebalance callbacks (which run on the polling
/// thread, inside a poll).
pub(crate) struct Shared {
    offsets: Mutex<Offsets>,
    /// Becomes true at the first assignment (even an empty one): the member has joined.
    joined: watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self {
            offsets: Mutex::new(Offsets::default()),
            joined: watch::Sender::new(false),
        }
    }

    fn offsets(&self) -> MutexGuard<'_, Offsets> {
        // Every update of `Offsets` completes or panics before mutating, so a poisoned lock
        // still guards consistent data.
        self.offsets
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// The consumer's context: keeps the offset bookkeeping in step with rebalances and reports
/// failed commits.
pub(crate) struct GroupContext {
    pub(crate) shared: Arc<Shared>,
    pub(crate) topic: String,
    pub(crate) group: String,
}

impl GroupContext {
    fn partitions(&self, list: &TopicPartitionList) -> Vec<i32> {
        list.elements()
            .iter()
            .filter(|element| element.topic() == self.topic)
            .map(|element| element.partition())
            .collect()
    }
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                let partitions = self.partitions(list);
                tracing::info!(
                    topic = %self.topic,
                    group = %self.group,
                    ?partitions,
                    "kafka partitions revoked; their unacknowledged messages go to the next owner"
                );
                self.shared.offsets().revoke(partitions);
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(error) => {
                tracing::warn!(
                    topic = %self.topic,
                    group = %self.group,
                    %error,
                    "kafka rebalance failed"
                );
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let partitions = self.partitions(list);
            tracing::info!(
                topic = %self.topic,
                group = %self.group,
                ?partitions,
                "kafka partitions assigned"
            );
            self.shared.offsets().assign(partitions);
            self.shared.joined.send_replace(true);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::trace!(
                topic = %self.topic,
                group = %self.group,
                count = offsets.count(),
                "kafka offsets committed"
            ),
            // Not fatal: the messages are delivered again, and the next commit covers them.
            Err(error) => tracing::warn!(
                topic = %self.topic,
                group = %self.group,
                %error,
                "kafka offset commit failed; acknowledged messages may be delivered again"
            ),
        }
    }
}

pub(crate) type GroupConsumer = BaseConsumer<GroupContext>;

/// Starts the polling thread of `consumer`. It stops when `stop` is set or the receiver is
/// dropped.
pub(crate) fn spawn_poller(
    consumer: Arc<Detached<GroupConsumer>>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    label: String,
) -> Result<mpsc::Receiver<Vec<Polled>>, BusError> {
    let (chunks, receiver) = mpsc::channel(CHUNKS_BUFFERED);
    std::thread::Builder::new()
        .name("kafka-poll".into())
        .spawn(move || poll_loop(&consumer, &shared, &stop, &chunks, &label))
        .map_err(|e| {
            BusError::Unavailable(format!("cannot start the kafka polling thread: {e}"))
        })?;
    Ok(receiver)
}

fn poll_loop(
    consumer: &Detached<GroupConsumer>,
    shared: &Shared,
    stop: &AtomicBool,
    chunks: &mpsc::Sender<Vec<Polled>>,
    label: &str,
) {
    let Ok(consumer) = consumer.get() else {
        return;
    };
    while !stop.load(Ordering::Relaxed) {
        let Some(first) = poll_one(consumer, shared, POLL_INTERVAL, label) else {
            continue;
        };
        let mut chunk = vec![first];
        while chunk.len() < CHUNK {
            match poll_one(consumer, shared, Duration::ZERO, label) {
                Some(polled) => chunk.push(polled),
                None => break,
            }
        }
        if chunks.blocking_send(chunk).is_err() {
            break;
        }
    }
    tracing::debug!(subscription = %label, "kafka polling thread stopped");
}

/// One poll: a message, or `None` for nothing (or an error event, which is logged).
fn poll_one(
    consumer: &GroupConsumer,
    shared: &Shared,
    timeout: Duration,
    label: &str,
) -> Option<Polled> {
    match consumer.poll(timeout)? {
        Ok(message) => Some(to_polled(&message, shared)),
        Err(error) => {
            // Transport errors and the like: librdkafka retries by itself.
            tracing::warn!(subscription = %label, %error, "kafka consumer error");
            None
        }
    }
}

fn to_polled(message: &BorrowedMessage<'_>, shared: &Shared) -> Polled {
    let partition = message.partition();
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| {
                    let value = header
                        .value
                        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
                        .unwrap_or_default();
                    (header.key.to_owned(), value)
                })
                .collect()
        })
        .unwrap_or_default();
    Polled {
        message: Message {
            key: message
                .key()
                .map(|key| String::from_utf8_lossy(key).into_owned())
                .unwrap_or_default(),
            payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers,
        },
        position: Position {
            partition,
            offset: message.offset(),
            // Rebalance callbacks run inside this thread's polls, so the epoch read here is
            // the one the message was fetched under. 0 (never assigned) marks it stale.
            epoch: shared.offsets().epoch(partition).unwrap_or(0),
        },
    }
}

pub(crate) struct KafkaSubscription {
    pub(crate) topic: String,
    pub(crate) label: String,
    pub(crate) consumer: Arc<Detached<GroupConsumer>>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) chunks: mpsc::Receiver<Vec<Polled>>,
    /// Fetched and not handed out yet (the rest of a chunk larger than a batch).
    pub(crate) pending: VecDeque<Polled>,
    pub(crate) in_flight: HashMap<u64, Position>,
    pub(crate) next_token: u64,
    /// `Offsets::revocations` when `in_flight` was last pruned.
    pub(crate) seen_revocations: u64,
}

impl KafkaSubscription {
    /// Moves pending messages into `batch` until it holds `max`, dropping stale ones.
    fn take_pending(&mut self, batch: &mut Vec<Delivery>, max: usize) {
        if self.pending.is_empty() {
            return;
        }
        let mut offsets = self.shared.offsets();
        if offsets.revocations() != self.seen_revocations {
            self.seen_revocations = offsets.revocations();
            self.in_flight
                .retain(|_, position| offsets.is_current(position));
        }
        while batch.len() < max {
            let Some(polled) = self.pending.pop_front() else {
                break;
            };
            if !offsets.deliver(polled.position) {
                tracing::debug!(
                    subscription = %self.label,
                    partition = polled.position.partition,
                    offset = polled.position.offset,
                    "dropping a message of a revoked partition"
                );
                continue;
            }
            self.next_token += 1;
            self.in_flight.insert(self.next_token, polled.position);
            batch.push(Delivery {
                message: polled.message,
                token: self.next_token,
            });
        }
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Delivery>, BusError> {
        let max = max.max(1);
        loop {
            let mut batch = Vec::new();
            self.take_pending(&mut batch, max);
            while batch.len() < max {
                match self.chunks.try_recv() {
                    Ok(chunk) => {
                        self.pending.extend(chunk);
                        self.take_pending(&mut batch, max);
                    }
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                return Ok(batch);
            }
            // The only await: cancelling here loses nothing.
            match self.chunks.recv().await {
                Some(chunk) => self.pending.extend(chunk),
                None => return Err(BusError::Closed),
            }
        }
    }

    async fn ack(&mut self, tokens: &[u64]) -> Result<(), BusError> {
        let positions: Vec<Position> = tokens
            .iter()
            .filter_map(|token| self.in_flight.remove(token))
            .collect();
        if positions.is_empty() {
            return Ok(());
        }
        let commits = self.shared.offsets().ack(positions);
        if commits.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::with_capacity(commits.len());
        for (partition, offset) in &commits {
            list.add_partition_offset(&self.topic, *partition, Offset::Offset(*offset))
                .map_err(|e| BusError::Unavailable(format!("kafka commit list: {e}")))?;
        }
        // Asynchronous: the result reaches `GroupContext::commit_callback`. A lost commit only
        // means redelivery, and closing the consumer waits for commits in flight.
        let consumer = self.consumer.get()?;
        if let Err(error) = consumer.commit(&list, CommitMode::Async) {
            tracing::warn!(
                subscription = %self.label,
                %error,
                ?commits,
                "kafka offset commit not sent; acknowledged messages may be delivered again"
            );
        }
        Ok(())
    }
}

impl Drop for KafkaSubscription {
    fn drop(&mut self) {
        // The polling thread exits within a poll interval (or at once if it waits on the
        // channel, which is dropped with this struct); whichever of it and this struct lets
        // go of the consumer last closes it, on a thread of its own (see `Detached`).
        self.stop.store(true, Ordering::Relaxed);
        tracing::debug!(
            subscription = %self.label,
            unacknowledged = self.in_flight.len(),
            "kafka subscription dropped; unacknowledged messages will be delivered again"
        );
    }
}

/// Waits for the member's first assignment, up to `deadline`.
pub(crate) async fn wait_joined(shared: &Shared, deadline: Duration, label: &str) {
    let started = Instant::now();
    let mut joined = shared.joined.subscribe();
    let outcome = tokio::time::timeout(deadline, joined.wait_for(|joined| *joined))
        .await
        .map(|result| result.is_ok());
    match outcome {
        Ok(true) => tracing::info!(
            subscription = %label,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "kafka consumer joined its group"
        ),
        // The sender lives in `shared`, which outlives this wait.
        Ok(false) => {}
        Err(_) => tracing::warn!(
            subscription = %label,
            deadline_ms = deadline.as_millis() as u64,
            "kafka consumer has no assignment yet; it keeps joining in the background"
        ),
    }
}
