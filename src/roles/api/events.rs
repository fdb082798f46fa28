//! `GET /api/v1/campaigns/{id}/events`: a campaign's live state as Server-Sent Events, for the
//! console and for anyone who would otherwise poll. Every event is a whole snapshot (the
//! campaign, or its statistics), sent when it changed and at most twice a second; a connection
//! opens with both, so a client that reconnects has missed nothing it shows.

use std::time::{Duration, Instant};

use actix_web::web::{self, Bytes};
use actix_web::HttpResponse;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::dto::{CampaignResponse, StatsResponse};
use super::error::{ApiError, ErrorBody};
use super::handlers::campaign_id;
use crate::context::AppContext;
use crate::domain::ids::CampaignId;

/// How often a stream looks for changes.
const TICK: Duration = Duration::from_millis(500);
/// A comment line after this much silence, so proxies and clients see a live connection.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// What a client waits before reconnecting, in milliseconds.
const RETRY_MS: u64 = 1000;

/// One event of the stream, as the SSE format carries it: `data` is the JSON of the campaign or
/// of its statistics, by `event`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ServerSentEvent {
    /// `campaign` or `stats`.
    event: String,
    /// The snapshot, as JSON text.
    data: String,
    /// Milliseconds a client waits before reconnecting (sent first, alone).
    retry: Option<u64>,
}

/// Ends every event stream when the process stops, so they never hold up its shutdown.
#[derive(Clone)]
pub struct StreamsStop(pub CancellationToken);

struct Follow {
    ctx: web::Data<AppContext>,
    id: CampaignId,
    stop: CancellationToken,
    ticker: Interval,
    first: bool,
    campaign: Option<String>,
    stats: Option<String>,
    quiet_since: Instant,
}

impl Follow {
    /// The next chunk of the stream: the snapshots that changed, or a heartbeat; `None` ends
    /// the stream (the process is stopping, or the campaign is gone).
    async fn next(mut self) -> Option<(Result<Bytes, actix_web::Error>, Self)> {
        loop {
            if !self.first {
                tokio::select! {
                    () = self.stop.cancelled() => return None,
                    _ = self.ticker.tick() => {}
                }
            }
            let mut out = String::new();
            if self.first {
                out.push_str(&format!("retry: {RETRY_MS}\n\n"));
                self.first = false;
            }
            match self.read().await {
                Ok(Some((campaign, stats))) => {
                    push_changed(&mut out, "campaign", campaign, &mut self.campaign);
                    push_changed(&mut out, "stats", stats, &mut self.stats);
                }
                Ok(None) => return None,
                // A store that does not answer now may answer at the next tick; the client
                // keeps what it shows meanwhile.
                Err(err) => {
                    tracing::warn!(campaign_id = %self.id, error = %err, "event stream read failed")
                }
            }
            if out.is_empty() && self.quiet_since.elapsed() >= HEARTBEAT {
                out.push_str(": keep-alive\n\n");
            }
            if !out.is_empty() {
                self.quiet_since = Instant::now();
                return Some((Ok(Bytes::from(out)), self));
            }
        }
    }

    async fn read(&self) -> Result<Option<(String, String)>, ApiError> {
        let Some(campaign) = self.ctx.store.get_campaign(self.id).await? else {
            return Ok(None);
        };
        let Some(stats) = self.ctx.store.campaign_stats(self.id).await? else {
            return Ok(None);
        };
        let encode = |value: Result<String, serde_json::Error>| {
            value.map_err(|err| ApiError::internal(&err))
        };
        Ok(Some((
            encode(serde_json::to_string(&CampaignResponse::from(&campaign)))?,
            encode(serde_json::to_string(&StatsResponse::from(&stats)))?,
        )))
    }
}

/// Appends `event: name` with `data` when it differs from what was last sent.
fn push_changed(out: &mut String, name: &str, data: String, last: &mut Option<String>) {
    if last.as_deref() == Some(data.as_str()) {
        return;
    }
    // Compact JSON holds no line breaks, so one `data:` line carries it.
    out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    *last = Some(data);
}

#[utoipa::path(get, path = "/api/v1/campaigns/{id}/events",
    responses(
        (status = 200, content_type = "text/event-stream", body = ServerSentEvent,
            description = "Server-Sent Events: `campaign` (the campaign, as GET /campaigns/{id} \
            gives it) and `stats` (as GET /campaigns/{id}/stats gives them), each sent when it \
            changed, at most twice a second; both at the start of every connection, so a \
            reconnecting client misses nothing. A `: keep-alive` comment after 15 s of silence."),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn campaign_events(
    ctx: web::Data<AppContext>,
    stop: web::Data<StreamsStop>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = campaign_id(&path)?;
    if ctx.store.get_campaign(id).await?.is_none() {
        return Err(ApiError::not_found("campaign"));
    }
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let follow = Follow {
        ctx: ctx.clone(),
        id,
        stop: stop.0.clone(),
        ticker,
        first: true,
        campaign: None,
        stats: None,
        quiet_since: Instant::now(),
    };
    let stream = futures::stream::unfold(follow, Follow::next);
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        // Proxies that buffer responses (nginx) would hold the events back.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(stream))
}
