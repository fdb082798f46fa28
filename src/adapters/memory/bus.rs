//! In-process bus with consumer groups and at-least-once delivery.
//!
//! Every group of a topic gets every message; the members of one group compete for them. A
//! message handed out stays in the subscription's in-flight set until acknowledged; when the
//! subscription is dropped unacknowledged messages go back to the head of the group's queue.
//! Messages published before any group joined wait in a backlog that the first group takes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::ports::{Bus, BusError, Delivery, Message, Subscription, Topic};

#[derive(Default)]
struct GroupQueue {
    queue: Mutex<VecDeque<Message>>,
    notify: Notify,
}

impl GroupQueue {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Message>> {
        // A panic while holding the lock cannot leave the queue half-updated (single push/pop
        // operations), so a poisoned lock is safe to reuse.
        self.queue
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[derive(Default)]
struct TopicState {
    groups: HashMap<String, Arc<GroupQueue>>,
    backlog: VecDeque<Message>,
}

/// Dead letters kept in memory, newest last, for inspection; the oldest go beyond this many.
const DEAD_LETTERS_KEPT: usize = 1_000;

#[derive(Default)]
pub struct MemoryBus {
    topics: Mutex<HashMap<Topic, TopicState>>,
    dead_letters: Mutex<VecDeque<(Topic, Message, String)>>,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    fn topics(&self) -> MutexGuard<'_, HashMap<Topic, TopicState>> {
        self.topics
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The latest poison messages with their topic and reason.
    pub fn dead_letters(&self) -> Vec<(Topic, Message, String)> {
        self.dead_letters
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Messages waiting (not in flight) for `group` on `topic`; feeds the queue-depth metric.
    pub fn depth(&self, topic: Topic, group: &str) -> usize {
        self.topics()
            .get(&topic)
            .and_then(|state| state.groups.get(group))
            .map(|queue| queue.lock().len())
            .unwrap_or(0)
    }
}

#[async_trait]
impl Bus for MemoryBus {
    fn crosses_processes(&self) -> bool {
        false
    }

    async fn publish(&self, topic: Topic, messages: Vec<Message>) -> Result<(), BusError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut topics = self.topics();
        let state = topics.entry(topic).or_default();
        if state.groups.is_empty() {
            state.backlog.extend(messages);
            return Ok(());
        }
        for group in state.groups.values() {
            group.lock().extend(messages.iter().cloned());
            group.notify.notify_one();
        }
        Ok(())
    }

    async fn dead_letter(
        &self,
        topic: Topic,
        message: Message,
        reason: &str,
    ) -> Result<(), BusError> {
        tracing::warn!(topic = topic.as_str(), key = %message.key, reason, "message moved to the dead-letter queue");
        crate::metrics::metrics()
            .dead_letters
            .with_label_values(&[topic.as_str()])
            .inc();
        let mut kept = self
            .dead_letters
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if kept.len() == DEAD_LETTERS_KEPT {
            kept.pop_front();
        }
        kept.push_back((topic, message, reason.to_owned()));
        Ok(())
    }

    async fn subscribe(
        &self,
        topic: Topic,
        group: &str,
    ) -> Result<Box<dyn Subscription>, BusError> {
        let mut topics = self.topics();
        let state = topics.entry(topic).or_default();
        let backlog = std::mem::take(&mut state.backlog);
        let queue = state.groups.entry(group.to_owned()).or_default().clone();
        if !backlog.is_empty() {
            queue.lock().extend(backlog);
            queue.notify.notify_one();
        }
        Ok(Box::new(MemorySubscription {
            queue,
            in_flight: HashMap::new(),
            next_token: 0,
        }))
    }
}

struct MemorySubscription {
    queue: Arc<GroupQueue>,
    in_flight: HashMap<u64, Message>,
    next_token: u64,
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Delivery>, BusError> {
        let max = max.max(1);
        loop {
            let notified = self.queue.notify.notified();
            let taken: Vec<Message> = {
                let mut queue = self.queue.lock();
                let count = queue.len().min(max);
                let taken = queue.drain(..count).collect();
                if !queue.is_empty() {
                    // Pass the wake-up on so another member of the group drains the rest.
                    self.queue.notify.notify_one();
                }
                taken
            };
            if taken.is_empty() {
                notified.await;
                continue;
            }
            let deliveries = taken
                .into_iter()
                .map(|message| {
                    self.next_token += 1;
                    self.in_flight.insert(self.next_token, message.clone());
                    Delivery {
                        message,
                        token: self.next_token,
                    }
                })
                .collect();
            return Ok(deliveries);
        }
    }

    async fn ack(&mut self, tokens: &[u64]) -> Result<(), BusError> {
        for token in tokens {
            self.in_flight.remove(token);
        }
        Ok(())
    }
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        if self.in_flight.is_empty() {
            return;
        }
        let mut pending: Vec<(u64, Message)> = self.in_flight.drain().collect();
        pending.sort_by_key(|(token, _)| *token);
        let mut queue = self.queue.lock();
        for (_, message) in pending.into_iter().rev() {
            queue.push_front(message);
        }
        self.queue.notify.notify_one();
    }
}
