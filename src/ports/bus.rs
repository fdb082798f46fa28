//! The bus: topics, messages and subscriptions between the roles.

use async_trait::async_trait;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// scheduler → call: an attempt to dial now.
    Dispatch,
    /// call → status: the outcome of an attempt.
    Status,
    /// status → retry: a retry was scheduled.
    Retry,
    /// anyone → scheduler: a campaign has work or capacity (start, trigger, freed slot).
    Wake,
}

impl Topic {
    pub const ALL: [Topic; 4] = [Self::Dispatch, Self::Status, Self::Retry, Self::Wake];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dispatch => "dispatch",
            Self::Status => "status",
            Self::Retry => "retry",
            Self::Wake => "wake",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Partition key: messages with one key keep their order.
    pub key: String,
    pub payload: Vec<u8>,
    /// Carries the trace context across processes.
    pub headers: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Delivery {
    pub message: Message,
    /// Opaque handle to acknowledge this delivery.
    pub token: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus closed")]
    Closed,
    #[error("bus unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Whether a message may be consumed by another process than the one that published it.
    /// When it cannot (the in-process bus), a dispatch only ever reaches the process that
    /// claimed the attempt, which needs no adoption to know it owns it.
    fn crosses_processes(&self) -> bool;

    async fn publish(&self, topic: Topic, messages: Vec<Message>) -> Result<(), BusError>;
    /// Moves a poison message (one no consumer can ever process) out of the way, to the
    /// dead-letter queue, with the reason; counted in `outbound_dead_letters_total`. The caller
    /// acknowledges the original once this returns.
    async fn dead_letter(
        &self,
        topic: Topic,
        message: Message,
        reason: &str,
    ) -> Result<(), BusError>;

    /// Joins consumer group `group` on `topic`. Members of a group share its messages; every
    /// group gets every message.
    async fn subscribe(&self, topic: Topic, group: &str)
        -> Result<Box<dyn Subscription>, BusError>;
}

/// At-least-once delivery: a message not acknowledged before the subscription is dropped (or its
/// process dies) is delivered again.
#[async_trait]
pub trait Subscription: Send {
    /// Waits for at least one message and returns up to `max`.
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Delivery>, BusError>;
    async fn ack(&mut self, tokens: &[u64]) -> Result<(), BusError>;
}
