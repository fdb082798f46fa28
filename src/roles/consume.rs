//! The one loop of the roles the bus feeds (status, retry, scheduler): take a batch, decode it,
//! put what cannot be decoded on the dead-letter topic, hand the rest to the role, acknowledge,
//! and wait out a bus outage; between batches, run the role's own timers. A role says what it
//! reads and how much at once, and plugs in what it does with a batch.
//!
//! The call role keeps a loop of its own: it acknowledges a dispatch only once the call's
//! outcome is published, and its intake follows the carrier's pace.

use std::future::Future;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::context::AppContext;
use crate::ports::{Delivery, Subscription, Topic};
use crate::process::health::RoleHealth;
use crate::process::role::RoleName;
use crate::roles::messages;

/// How long a loop waits after a bus failure before asking the bus again.
pub const OUTAGE_PAUSE: Duration = Duration::from_millis(500);

/// A role fed by one subscription.
pub trait Consumer: Send {
    /// What its topic carries.
    type Message: DeserializeOwned + Send;
    const ROLE: RoleName;
    const TOPIC: Topic;
    /// Its consumer group: the processes running the role share the topic's messages.
    const GROUP: &'static str;
    /// Most deliveries taken at once.
    const BATCH: usize;

    /// Acts on one batch's messages, which are acknowledged once this returns. An error stops
    /// the role (and the process); its messages are delivered again after a restart.
    fn handle(
        &mut self,
        messages: Vec<Self::Message>,
        shutdown: &CancellationToken,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// When the role next has work of its own, if ever.
    fn next_tick(&self) -> Option<Instant> {
        None
    }

    /// That work, run once it is due.
    fn tick(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// How long after shutdown to go on taking what is already on the topic.
    fn drain_for(&self) -> Duration {
        Duration::ZERO
    }
}

/// Runs `role` on `subscription` until `shutdown`, then drains for the role's `drain_for`.
pub async fn run<C: Consumer>(
    mut role: C,
    ctx: &AppContext,
    mut subscription: Box<dyn Subscription>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    ctx.health.set(C::ROLE, RoleHealth::Ready);
    loop {
        let due = role.next_tick();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            // A timer comes before more messages, which could otherwise starve it.
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                role.tick().await;
            }
            batch = subscription.next_batch(C::BATCH) => match batch {
                Ok(batch) => take(&mut role, ctx, &mut *subscription, batch, &shutdown).await?,
                Err(err) => messages::outlast(err, ctx, C::ROLE, OUTAGE_PAUSE).await?,
            },
        }
    }
    // Bounded, since other processes keep publishing.
    let deadline = Instant::now() + role.drain_for();
    while Instant::now() < deadline {
        let wait = Duration::from_millis(200);
        let Ok(batch) = tokio::time::timeout(wait, subscription.next_batch(C::BATCH)).await else {
            break;
        };
        take(&mut role, ctx, &mut *subscription, batch?, &shutdown).await?;
    }
    Ok(())
}

/// Decodes, hands over and acknowledges one batch. A dead letter that cannot be written leaves
/// the whole batch unacknowledged, to come again.
async fn take<C: Consumer>(
    role: &mut C,
    ctx: &AppContext,
    subscription: &mut dyn Subscription,
    batch: Vec<Delivery>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let tokens: Vec<u64> = batch.iter().map(|d| d.token).collect();
    let mut decoded = Vec::with_capacity(batch.len());
    for delivery in batch {
        match messages::decode::<C::Message>(C::TOPIC, &delivery.message) {
            Ok(message) => decoded.push(message),
            Err(err) => {
                let reason = err.to_string();
                if let Err(err) = ctx
                    .bus
                    .dead_letter(C::TOPIC, delivery.message, &reason)
                    .await
                {
                    return Ok(messages::outlast(err, ctx, C::ROLE, OUTAGE_PAUSE).await?);
                }
            }
        }
    }
    role.handle(decoded, shutdown).await?;
    if let Err(err) = subscription.ack(&tokens).await {
        // Handled already: a redelivery changes nothing twice.
        messages::outlast(err, ctx, C::ROLE, OUTAGE_PAUSE).await?;
    }
    Ok(())
}
