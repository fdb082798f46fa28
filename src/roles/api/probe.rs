//! What `/healthz` and `/readyz` report of the backends: read at most once per `FRESH`
//! however often they are asked, so a flood of health checks costs the store nothing.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::context::AppContext;

/// How long a probe of the backends answers for.
const FRESH: Duration = Duration::from_secs(1);

/// Whether the backends answered, as of `checked_at`.
#[derive(Debug, Clone, Copy)]
pub struct Backends {
    pub store: bool,
    /// The timeline apart from the store, when there is one (`true` without).
    pub timeline: bool,
    pub checked_at: DateTime<Utc>,
}

/// The last probe of the backends, shared by every worker of the listener.
#[derive(Default)]
pub struct Probe {
    last: tokio::sync::Mutex<Option<(Instant, Backends)>>,
}

impl Probe {
    /// The backends' state, probed anew only when the last probe is older than `FRESH`;
    /// callers that arrive during a probe wait for its answer rather than probe again.
    pub async fn backends(&self, ctx: &AppContext) -> Backends {
        let mut last = self.last.lock().await;
        if let Some((at, backends)) = *last {
            if at.elapsed() < FRESH {
                return backends;
            }
        }
        let store = ctx.store.ping().await.is_ok();
        let timeline = match &ctx.separate_timeline {
            Some(timeline) => timeline.ping().await.is_ok(),
            None => true,
        };
        let backends = Backends {
            store,
            timeline,
            checked_at: Utc::now(),
        };
        *last = Some((Instant::now(), backends));
        backends
    }
}
