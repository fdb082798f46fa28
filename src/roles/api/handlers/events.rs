//! `GET /api/v1/campaigns/{id}/events`: a campaign's live state as Server-Sent Events, for the
//! console and for anyone who would otherwise poll. Every event is a whole snapshot (the
//! campaign, or its statistics), sent when it changed and at most twice a second; a connection
//! opens with both, so a client that reconnects has missed nothing it shows.
//!
//! Streams are bounded: each key holds at most `http.max_streams_per_key` and the process
//! `http.max_streams`; a campaign's snapshot is read once per tick however many streams follow
//! it, and at most `STREAM_READERS` of those reads use the store at once, so open streams never
//! take the pool from heartbeats, callbacks and claims. A stream ends soon after its key is
//! revoked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::web::{self, Bytes};
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use tokio::sync::Semaphore;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::campaign_id;
use super::campaigns::output::{CampaignResponse, StatsResponse};
use crate::context::AppContext;
use crate::domain::ids::{CampaignId, KeyId};
use crate::roles::api::access::{Caller, Gate};
use crate::roles::api::error::{ApiError, ErrorBody};

/// How often a stream looks for changes.
const TICK: Duration = Duration::from_millis(500);
/// A comment line after this much silence, so proxies and clients see a live connection, and
/// so a connection the client closed is noticed (a write fails) and its place freed.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// Snapshot reads that may use the store at once, all streams together.
const STREAM_READERS: usize = 2;
/// A snapshot no stream asked for in this long is forgotten.
const SNAPSHOT_IDLE: Duration = Duration::from_secs(10);
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

/// What the event streams of one process share: the signal that ends them all when the
/// process stops, the places they hold, and the snapshots they read.
pub struct Streams {
    stop: CancellationToken,
    per_key: usize,
    total: usize,
    seats: Mutex<Seats>,
    snapshots: Mutex<HashMap<CampaignId, Arc<Snapshot>>>,
    readers: Semaphore,
}

#[derive(Default)]
struct Seats {
    open: usize,
    by_key: HashMap<KeyId, usize>,
}

/// The latest snapshot of one campaign, and when it was read.
#[derive(Default)]
struct Snapshot {
    latest: tokio::sync::Mutex<Option<(Instant, Option<Arc<Encoded>>)>>,
    asked_at: Mutex<Option<Instant>>,
}

/// A campaign and its statistics, as JSON text.
struct Encoded {
    campaign: String,
    stats: String,
}

impl Streams {
    pub fn new(stop: CancellationToken, per_key: usize, total: usize) -> Self {
        Self {
            stop,
            per_key,
            total,
            seats: Mutex::new(Seats::default()),
            snapshots: Mutex::new(HashMap::new()),
            readers: Semaphore::new(STREAM_READERS),
        }
    }

    /// A place for one more stream of `key` (`None`: a caller without a key, bounded by the
    /// process's limit alone), or 429 `too_many_streams`.
    fn take_seat(self: &Arc<Self>, key: Option<KeyId>) -> Result<Seat, ApiError> {
        let mut seats = self
            .seats
            .lock()
            .map_err(|_| ApiError::internal(&"stream seats poisoned"))?;
        if seats.open >= self.total {
            return Err(ApiError::too_many_streams("on this server"));
        }
        if let Some(key) = key {
            let held = seats.by_key.entry(key).or_default();
            if *held >= self.per_key {
                return Err(ApiError::too_many_streams("for this key"));
            }
            *held += 1;
        }
        seats.open += 1;
        Ok(Seat {
            streams: self.clone(),
            key,
        })
    }

    /// The campaign's snapshot, read from the store at most once per tick for all streams.
    async fn snapshot(
        &self,
        ctx: &AppContext,
        id: CampaignId,
    ) -> Result<Option<Arc<Encoded>>, ApiError> {
        let now = Instant::now();
        let entry = {
            let mut snapshots = self
                .snapshots
                .lock()
                .map_err(|_| ApiError::internal(&"stream snapshots poisoned"))?;
            if !snapshots.contains_key(&id) {
                snapshots.retain(|_, snapshot| {
                    Arc::strong_count(snapshot) > 1
                        || snapshot.asked_at.lock().is_ok_and(|at| {
                            at.is_some_and(|at| now.duration_since(at) < SNAPSHOT_IDLE)
                        })
                });
            }
            snapshots.entry(id).or_default().clone()
        };
        if let Ok(mut asked) = entry.asked_at.lock() {
            *asked = Some(now);
        }
        let mut latest = entry.latest.lock().await;
        if let Some((read_at, encoded)) = latest.as_ref() {
            // A little under a tick, so a stream whose tick follows another's reads anew.
            if read_at.elapsed() < TICK.mul_f32(0.8) {
                return Ok(encoded.clone());
            }
        }
        let _reader = self
            .readers
            .acquire()
            .await
            .map_err(|err| ApiError::internal(&err))?;
        let encoded = read(ctx, id).await?.map(Arc::new);
        *latest = Some((Instant::now(), encoded.clone()));
        Ok(encoded)
    }
}

/// One stream's place, given back when the stream is dropped (it ended, or its client left).
struct Seat {
    streams: Arc<Streams>,
    key: Option<KeyId>,
}

impl Drop for Seat {
    fn drop(&mut self) {
        if let Ok(mut seats) = self.streams.seats.lock() {
            seats.open = seats.open.saturating_sub(1);
            if let Some(key) = self.key {
                if let Some(held) = seats.by_key.get_mut(&key) {
                    *held = held.saturating_sub(1);
                    if *held == 0 {
                        seats.by_key.remove(&key);
                    }
                }
            }
        }
    }
}

async fn read(ctx: &AppContext, id: CampaignId) -> Result<Option<Encoded>, ApiError> {
    let Some(campaign) = ctx.store.get_campaign(id).await? else {
        return Ok(None);
    };
    let Some(stats) = ctx.store.campaign_stats(id).await? else {
        return Ok(None);
    };
    let encode =
        |value: Result<String, serde_json::Error>| value.map_err(|err| ApiError::internal(&err));
    Ok(Some(Encoded {
        campaign: encode(serde_json::to_string(&CampaignResponse::from(&campaign)))?,
        stats: encode(serde_json::to_string(&StatsResponse::from(&stats)))?,
    }))
}

struct Follow {
    ctx: web::Data<AppContext>,
    streams: Arc<Streams>,
    gate: Option<web::Data<Gate>>,
    seat: Seat,
    id: CampaignId,
    ticker: Interval,
    first: bool,
    campaign: Option<String>,
    stats: Option<String>,
    quiet_since: Instant,
}

impl Follow {
    /// The next chunk of the stream: the snapshots that changed, or a heartbeat; `None` ends
    /// the stream (the process is stopping, the campaign is gone, or the key was revoked).
    async fn next(mut self) -> Option<(Result<Bytes, actix_web::Error>, Self)> {
        loop {
            if !self.first {
                tokio::select! {
                    () = self.streams.stop.cancelled() => return None,
                    _ = self.ticker.tick() => {}
                }
            }
            if let (Some(key), Some(gate)) = (self.seat.key, &self.gate) {
                if gate.revoked(key) {
                    return None;
                }
            }
            let mut out = String::new();
            if self.first {
                out.push_str(&format!("retry: {RETRY_MS}\n\n"));
                self.first = false;
            }
            match self.streams.snapshot(&self.ctx, self.id).await {
                Ok(Some(encoded)) => {
                    push_changed(&mut out, "campaign", &encoded.campaign, &mut self.campaign);
                    push_changed(&mut out, "stats", &encoded.stats, &mut self.stats);
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
}

/// Appends `event: name` with `data` when it differs from what was last sent.
fn push_changed(out: &mut String, name: &str, data: &str, last: &mut Option<String>) {
    if last.as_deref() == Some(data) {
        return;
    }
    // Compact JSON holds no line breaks, so one `data:` line carries it.
    out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    *last = Some(data.to_owned());
}

#[utoipa::path(get, path = "/api/v1/campaigns/{id}/events",
    responses(
        (status = 200, content_type = "text/event-stream", body = ServerSentEvent,
            description = "Server-Sent Events: `campaign` (the campaign, as GET /campaigns/{id} \
            gives it) and `stats` (as GET /campaigns/{id}/stats gives them), each sent when it \
            changed, at most twice a second; both at the start of every connection, so a \
            reconnecting client misses nothing. A `: keep-alive` comment after 2 s of silence. The stream ends when the key that opened it \
            is revoked."),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn campaign_events(
    req: HttpRequest,
    ctx: web::Data<AppContext>,
    streams: web::Data<Streams>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = campaign_id(&path)?;
    let key = req
        .extensions()
        .get::<Caller>()
        .and_then(|caller| caller.0.as_ref().map(|principal| principal.key_id));
    let seat = streams.clone().into_inner().take_seat(key)?;
    if ctx.store.get_campaign(id).await?.is_none() {
        return Err(ApiError::not_found("campaign"));
    }
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let follow = Follow {
        ctx: ctx.clone(),
        streams: streams.into_inner(),
        gate: req.app_data::<web::Data<Gate>>().cloned(),
        seat,
        id,
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
