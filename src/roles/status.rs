//! The status role records the outcomes the call roles report, through the outcome recorder,
//! retrying the store until it succeeds: an unrecorded outcome is never acknowledged. It also
//! delivers the webhook outbox, and with a separate timeline (Scylla) runs the exporter that
//! moves finished attempts there.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{info_span, Instrument};

use crate::context::AppContext;
use crate::ports::{Subscription, Topic};
use crate::process::health::RoleHealth;
use crate::process::role::RoleName;
use crate::roles::consume::{self, Consumer};
use crate::roles::export::TimelineExporter;
use crate::roles::messages::StatusMessage;
use crate::roles::outcomes::OutcomeRecorder;
use crate::roles::webhooks::Deliverer;

pub struct StatusWorker {
    ctx: AppContext,
    recorder: OutcomeRecorder,
}

impl Consumer for StatusWorker {
    type Message = StatusMessage;
    const ROLE: RoleName = RoleName::Status;
    const TOPIC: Topic = Topic::Status;
    const GROUP: &'static str = "status";
    const BATCH: usize = 2048;

    async fn handle(
        &mut self,
        statuses: Vec<StatusMessage>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(50);
        loop {
            let span = info_span!("record_outcomes", count = statuses.len());
            match self
                .recorder
                .record(&statuses, Utc::now())
                .instrument(span)
                .await
            {
                Ok(_) => {
                    self.ctx.health.set(RoleName::Status, RoleHealth::Ready);
                    return Ok(());
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot record outcomes, retrying");
                    self.ctx.health.set(RoleName::Status, RoleHealth::Failing);
                    if shutdown.is_cancelled() && backoff >= Duration::from_secs(5) {
                        // Unacknowledged: the bus delivers them again after a restart.
                        return Err(err.into());
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// What this process's call role reported while it drained.
    fn drain_for(&self) -> Duration {
        self.ctx.settings.runtime.shutdown_grace.0
    }
}

impl StatusWorker {
    pub fn new(ctx: AppContext) -> Self {
        Self {
            recorder: OutcomeRecorder::new(ctx.clone()),
            ctx,
        }
    }

    /// Records outcomes until `shutdown`; with a separate timeline, also exports finished
    /// attempts to it, until the outcomes recorded while draining are exported too.
    pub async fn run(
        self,
        subscription: Box<dyn Subscription>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let ctx = self.ctx.clone();
        let exporter = ctx.separate_timeline.clone().map(|timeline| {
            let settings = &ctx.settings.timeline;
            TimelineExporter::new(
                ctx.store.clone(),
                timeline,
                settings.export_batch,
                settings.export_interval.0,
            )
        });
        // Exports and deliveries go on until the outcomes recorded while draining are in.
        let stop_background = CancellationToken::new();
        let consume = async {
            let consumed = consume::run(self, &ctx, subscription, shutdown).await;
            stop_background.cancel();
            consumed
        };
        let export = async {
            if let Some(exporter) = exporter {
                exporter
                    .run(stop_background.clone())
                    .instrument(info_span!("export_timeline"))
                    .await;
            }
        };
        let deliver = Deliverer::new(ctx.clone())
            .run(stop_background.clone())
            .instrument(info_span!("deliver_webhooks"));
        let (consumed, (), ()) = tokio::join!(consume, export, deliver);
        consumed
    }
}
