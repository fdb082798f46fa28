//! The webhook outbox in both SQL stores: endpoints, the events the record path and the
//! triggers write, the deliveries they fan out to, their claims and tries. Every method is one statement (or one
//! transaction of a few), written once over the store's `Runner`.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel::QueryableByName;

use super::bound::{query, Binds, Bound, Dialect};
use super::rows::{corrupt, parse_id, scope_column, TotalRow};
use super::run::{Read, Runner};
use super::statements::Statement;
use super::{as_bigint, from_ms, to_ms};
use crate::domain::access::AuditEntry;
use crate::domain::ids::{CallId, CampaignId, EndpointId};
use crate::domain::settlement::{AttemptReport, Settlement};
use crate::domain::webhook::{
    AttemptFinished, CallFinished, CallOptedOut, Event, EventType, Secret, Subscription,
};
use crate::ports::{
    ClaimedDelivery, DeliveryStatus, DncScope, Endpoint, EndpointLoad, OptOutListing, StoreError,
    TryRecord, WebhookDelivery,
};

/// The outbox's triggers, for the changes no record or release path writes itself (a queued
/// call canceled, a campaign's status), which exist only while an endpoint does: a trigger
/// costs every row its table's statements touch, so a deployment without endpoints has none.
/// The first endpoint creates them in its own transaction, so no change commits unseen once it
/// exists; `disarm_unused` drops them when the last is gone.
const SQLITE_TRIGGERS: &str = include_str!("triggers/sqlite.sql");
const POSTGRES_TRIGGERS: &str = include_str!("triggers/postgres.sql");

fn trigger(all: &str, n: usize) -> String {
    all.split("\n\n")
        .nth(n)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

static ARM: [Statement; 2] = [
    Statement::dialects(
        || trigger(SQLITE_TRIGGERS, 0),
        || trigger(POSTGRES_TRIGGERS, 0),
    ),
    Statement::dialects(
        || trigger(SQLITE_TRIGGERS, 1),
        || trigger(POSTGRES_TRIGGERS, 1),
    ),
];

/// The triggers' names with their tables.
pub const TRIGGERS: [(&str, &str); 2] = [
    ("webhook_call_finished", "calls"),
    ("webhook_campaign_status_changed", "campaigns"),
];

/// What a recorded batch finished, written by its own transaction as one statement whatever
/// its size (a per-row trigger there cost dialing 40% of its rate), and nothing while no
/// endpoint exists.
static FINISHED_EVENTS: Statement = Statement::dialects(
    || {
        "INSERT INTO webhook_events (type, campaign_id, call_id, attempt, created_at) \
         SELECT json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'), \
         json_extract(j.value, '$[2]'), json_extract(j.value, '$[3]'), ? \
         FROM json_each(?) j WHERE EXISTS (SELECT 1 FROM webhook_endpoints)"
            .into()
    },
    || {
        "INSERT INTO webhook_events (type, campaign_id, call_id, attempt, created_at) \
         SELECT j->>0, j->>1, j->>2, (j->>3)::int, $1 \
         FROM jsonb_array_elements($2::jsonb) j WHERE EXISTS (SELECT 1 FROM webhook_endpoints)"
            .into()
    },
);

/// The events up to a sequence number (SQLite, whose one writer then deletes them) or the
/// oldest unlocked ones (PostgreSQL, deleted by the same statement), each fanned out to a
/// delivery per endpoint that listens. An endpoint created while an event waited gets it too:
/// the change happened, and clocks of different hosts decide nothing here.
pub static FAN_OUT: Statement = Statement::dialects(
    || {
        format!(
            "INSERT INTO webhook_deliveries ({DELIVERY_INSERT}) \
             SELECT 'msg_' || printf('%012x', ev.created_at) || lower(hex(randomblob(10))), \
             {FANNED} FROM webhook_events ev JOIN webhook_endpoints e ON {LISTENS} \
             WHERE ev.seq <= ?"
        )
    },
    || {
        format!(
            "WITH taken AS (DELETE FROM webhook_events WHERE seq IN (SELECT seq \
             FROM webhook_events ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING *), \
             fanned AS (INSERT INTO webhook_deliveries ({DELIVERY_INSERT}) \
             SELECT 'msg_' || lpad(to_hex(ev.created_at), 12, '0') \
             || substr(replace(gen_random_uuid()::text, '-', ''), 1, 20), \
             {FANNED} FROM taken ev JOIN webhook_endpoints e ON {LISTENS}) \
             SELECT count(*) AS n FROM taken"
        )
    },
);

const DELIVERY_INSERT: &str = "id, endpoint_id, type, campaign_id, call_id, attempt, detail, \
     body, created_at, status, next_attempt_at";
const FANNED: &str = "e.id, ev.type, ev.campaign_id, ev.call_id, ev.attempt, ev.detail, ev.body, \
     ev.created_at, 'pending', ev.created_at";
const LISTENS: &str = "(e.campaign_id IS NULL OR e.campaign_id = ev.campaign_id) \
     AND (e.events LIKE '%,*,%' OR e.events LIKE '%,' || ev.type || ',%')";

/// Whether an endpoint exists, read by SQLite's record and release paths in their transaction
/// just before they would write events: without one they build none (the events' JSON costs a
/// few microseconds per attempt, for nothing). PostgreSQL's leave it to the statement's own
/// `WHERE EXISTS`: a separate read there is a round trip.
pub static ANY_ENDPOINT: Statement = Statement::new(|| {
    "SELECT count(*) AS n FROM (SELECT 1 FROM webhook_endpoints LIMIT 1) e".into()
});

/// What `ANY_ENDPOINT` read.
pub fn listening(rows: &[TotalRow]) -> bool {
    rows.first().is_some_and(|row| row.n > 0)
}

/// One change a batch made, for `finished_events`.
pub enum Finished {
    Attempt {
        campaign_id: CampaignId,
        call_id: CallId,
        attempt: u32,
    },
    Call {
        campaign_id: CampaignId,
        call_id: CallId,
    },
}

impl Finished {
    /// What settling a report finished: its attempt, and its call unless it is retried.
    pub fn settled(report: &AttemptReport, settlement: &Settlement) -> Vec<Finished> {
        let mut finished = vec![Finished::Attempt {
            campaign_id: report.campaign_id,
            call_id: report.call_id,
            attempt: report.attempt,
        }];
        if settlement.call_status.is_terminal() {
            finished.push(Finished::Call {
                campaign_id: report.campaign_id,
                call_id: report.call_id,
            });
        }
        finished
    }
}

/// The events of what a batch finished, to run in the transaction that finishes them; `None`
/// when it finished nothing.
pub fn finished_events<DB: Dialect>(
    finished: &[Finished],
    now: DateTime<Utc>,
) -> Option<Bound<DB>> {
    if finished.is_empty() {
        return None;
    }
    let rows: Vec<serde_json::Value> = finished
        .iter()
        .map(|change| match change {
            Finished::Attempt {
                campaign_id,
                call_id,
                attempt,
            } => serde_json::json!([
                EventType::AttemptFinished.as_str(),
                campaign_id.to_string(),
                call_id.to_string(),
                attempt
            ]),
            Finished::Call {
                campaign_id,
                call_id,
            } => serde_json::json!([
                EventType::CallFinished.as_str(),
                campaign_id.to_string(),
                call_id.to_string(),
                null
            ]),
        })
        .collect();
    Some(
        query::<DB>(&FINISHED_EVENTS)
            .big(to_ms(now))
            .text(serde_json::Value::Array(rows).to_string()),
    )
}

static INSERT_ENDPOINT: Statement = Statement::new(|| {
    "INSERT INTO webhook_endpoints (id, url, events, campaign_id, description, secret, \
     created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
        .into()
});

const ENDPOINT_COLUMNS: &str = "e.id, e.url, e.events, e.campaign_id, e.description, e.secret, \
     e.created_at";

/// With each endpoint's backlog and failures: its deliveries counted on their own partial
/// indexes (SQLite would otherwise walk the endpoint's whole log by its primary key), plus the
/// waiting events it listens to (a scan of `webhook_events`, which the fan-out keeps short
/// unless every endpoint has deliveries due).
static ENDPOINTS: Statement = Statement::dialects(
    || {
        endpoints_text(
            " INDEXED BY webhook_deliveries_due",
            " INDEXED BY webhook_deliveries_failed",
        )
    },
    || endpoints_text("", ""),
);

fn endpoints_text(pending_index: &str, failed_index: &str) -> String {
    format!(
        "SELECT {ENDPOINT_COLUMNS}, \
         (SELECT count(*) FROM webhook_deliveries d{pending_index} WHERE d.endpoint_id = e.id \
          AND d.status = 'pending') \
         + (SELECT count(*) FROM webhook_events ev WHERE {LISTENS}) AS pending, \
         (SELECT count(*) FROM webhook_deliveries d{failed_index} WHERE d.endpoint_id = e.id \
          AND d.status = 'failed') AS failed \
         FROM webhook_endpoints e ORDER BY e.created_at, e.id"
    )
}

static ACTIVE_ENDPOINTS: Statement = Statement::new(|| {
    format!(
        "SELECT {ENDPOINT_COLUMNS}, CAST(0 AS BIGINT) AS pending, CAST(0 AS BIGINT) AS failed \
         FROM webhook_endpoints e ORDER BY e.created_at, e.id"
    )
});

static ENDPOINT: Statement = Statement::new(|| {
    format!(
        "SELECT {ENDPOINT_COLUMNS}, CAST(0 AS BIGINT) AS pending, CAST(0 AS BIGINT) AS failed FROM webhook_endpoints e \
         WHERE e.id = ?"
    )
});

static DELETE_ENDPOINT_DELIVERIES: Statement =
    Statement::new(|| "DELETE FROM webhook_deliveries WHERE endpoint_id = ?".into());

/// Before an endpoint's deliveries are deleted, PostgreSQL waits for every transaction that
/// is writing deliveries (its triggers read the endpoint as it was when they began) and holds
/// off new ones, so none is left behind for an endpoint that is gone. SQLite's one writer
/// already does.
static HOLD_DELIVERIES: Statement = Statement::dialects(
    || "DELETE FROM webhook_deliveries WHERE 0 = 1".into(),
    || "LOCK TABLE webhook_deliveries IN SHARE ROW EXCLUSIVE MODE".into(),
);

static DELETE_ENDPOINT: Statement =
    Statement::new(|| "DELETE FROM webhook_endpoints WHERE id = ?".into());

const DELIVERY_COLUMNS: &str = "id, type, created_at, status, attempts, last_status_code, \
     last_error, next_attempt_at, delivered_at";

/// Newest first, before the page's bound.
static DELIVERIES: Statement = Statement::new(|| deliveries_text(""));

/// The same, in one status (bound after the endpoint).
static DELIVERIES_IN_STATUS: Statement = Statement::new(|| deliveries_text("AND status = ?"));

fn deliveries_text(status: &str) -> String {
    format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE endpoint_id = ? {status} \
         AND id < ? ORDER BY id DESC LIMIT ?"
    )
}

/// Makes a delivery due now, unless a try of it is under way (claimed, its claim not lapsed):
/// that try is the one asked for, and taking the row from under it would leave it unrecorded.
static RETRY_DELIVERY: Statement = Statement::new(|| {
    "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, claim = NULL \
     WHERE endpoint_id = ? AND id = ? \
     AND NOT (status = 'pending' AND claim IS NOT NULL AND next_attempt_at > ?)"
        .into()
});

/// Whether an endpoint has a delivery due: read before claiming, so an idle endpoint costs a
/// read, not a write.
static DUE: Statement = Statement::new(|| {
    "SELECT count(*) AS n FROM (SELECT 1 AS one FROM webhook_deliveries WHERE endpoint_id = ? \
     AND status = 'pending' AND next_attempt_at <= ? LIMIT 1) due"
        .into()
});

/// The oldest due deliveries of an endpoint, moved past the claim's deadline, as they are
/// then. PostgreSQL skips rows another process is claiming instead of waiting for it.
static CLAIM: Statement =
    Statement::dialects(|| claim_text(""), || claim_text(" FOR UPDATE SKIP LOCKED"));

fn claim_text(lock: &str) -> String {
    format!(
        "UPDATE webhook_deliveries SET claim = ?, next_attempt_at = ? WHERE endpoint_id = ? \
         AND id IN (SELECT id FROM webhook_deliveries WHERE endpoint_id = ? \
         AND status = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?{lock}) \
         RETURNING id, type, campaign_id, call_id, attempt, detail, body, created_at, attempts"
    )
}

static ATTEMPT_EVENT: Statement = Statement::new(|| {
    "SELECT a.call_id, a.campaign_id, c.phone_number, a.attempt, a.status, a.error, \
     a.duration_ms, a.started_at, a.ended_at, a.answered_by, a.response, a.digits, \
     a.voicemail_left, c.metadata FROM attempts a JOIN calls c \
     ON c.campaign_id = a.campaign_id AND c.id = a.call_id \
     WHERE a.campaign_id = ? AND a.call_id = ? AND a.attempt = ?"
        .into()
});

static CALL_EVENT: Statement = Statement::new(|| {
    "SELECT id, campaign_id, phone_number, status, attempt_count, last_error, response, \
     metadata FROM calls WHERE campaign_id = ? AND id = ?"
        .into()
});

static FINISH: Statement = Statement::new(|| {
    "UPDATE webhook_deliveries SET body = COALESCE(?, body), status = ?, attempts = attempts + 1, \
     next_attempt_at = ?, last_status_code = ?, last_error = ?, delivered_at = ?, claim = NULL \
     WHERE endpoint_id = ? AND id = ? AND claim = ?"
        .into()
});

/// A delivery a claim holds but did not try, due again with its tries unchanged: due since
/// its event, so it keeps its place among the endpoint's deliveries (claimed oldest due first)
/// rather than waiting behind every event made while it was held.
static HAND_BACK: Statement = Statement::new(|| {
    "UPDATE webhook_deliveries SET next_attempt_at = created_at, claim = NULL \
     WHERE endpoint_id = ? AND id = ? AND claim = ?"
        .into()
});

/// A `call.opted_out`, written in the transaction that lists the number: (campaign, call,
/// body, at).
static OPT_OUT_EVENT: Statement = Statement::new(|| {
    "INSERT INTO webhook_events (type, campaign_id, call_id, body, created_at) \
     SELECT 'call.opted_out', ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM webhook_endpoints)"
        .into()
});

/// The event of a callee's opt-out, to run in the transaction that lists the number.
pub fn opt_out_event<DB: Dialect>(listing: &OptOutListing, now: DateTime<Utc>) -> Bound<DB> {
    let campaign_id = listing
        .call
        .map(|(campaign, _)| campaign)
        .or(match listing.scope {
            DncScope::Campaign(id) => Some(id),
            DncScope::Global => None,
        });
    let event = Event::CallOptedOut(CallOptedOut {
        phone_number: listing.number.as_str().to_owned(),
        scope: scope_column(listing.scope),
        campaign_id: campaign_id.map(|id| id.to_string()),
        call_id: listing.call.map(|(_, call)| call.to_string()),
        at: now,
    });
    query::<DB>(&OPT_OUT_EVENT)
        .opt_text(campaign_id.map(|id| id.to_string()))
        .opt_text(listing.call.map(|(_, call)| call.to_string()))
        .text(event.body(now))
        .big(to_ms(now))
}

static PRUNE: Statement = Statement::new(|| {
    "DELETE FROM webhook_deliveries WHERE status = 'delivered' AND delivered_at < ?".into()
});

/// Deliveries pending, and the deliveries events still waiting for the fan-out will make.
static BACKLOG: Statement = Statement::new(|| {
    format!(
        "SELECT (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending') \
         + (SELECT count(*) FROM webhook_events ev JOIN webhook_endpoints e ON {LISTENS}) AS n"
    )
});

static EVENTS_WAITING: Statement = Statement::new(|| {
    "SELECT count(*) AS n FROM (SELECT 1 FROM webhook_events ORDER BY seq LIMIT 1) ev".into()
});

/// The fewest deliveries due that any endpoint has, each counted up to a cap on its partial
/// index; -1 without an endpoint.
static FEWEST_DUE: Statement = Statement::dialects(
    || fewest_due_text(" INDEXED BY webhook_deliveries_due"),
    || fewest_due_text(""),
);

fn fewest_due_text(due_index: &str) -> String {
    format!(
        "SELECT coalesce(min(n), -1) AS n FROM (SELECT (SELECT count(*) FROM (SELECT 1 AS one \
         FROM webhook_deliveries d{due_index} WHERE d.endpoint_id = e.id \
         AND d.status = 'pending' AND d.next_attempt_at <= ? LIMIT ?) due) AS n \
         FROM webhook_endpoints e) counts"
    )
}

#[derive(QueryableByName)]
pub struct EndpointRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    url: String,
    #[diesel(sql_type = Text)]
    events: String,
    #[diesel(sql_type = Nullable<Text>)]
    campaign_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    description: Option<String>,
    #[diesel(sql_type = Text)]
    secret: String,
    #[diesel(sql_type = BigInt)]
    created_at: i64,
    #[diesel(sql_type = BigInt)]
    pending: i64,
    #[diesel(sql_type = BigInt)]
    failed: i64,
}

impl TryFrom<EndpointRow> for (Endpoint, EndpointLoad) {
    type Error = StoreError;

    fn try_from(row: EndpointRow) -> Result<Self, StoreError> {
        let endpoint = Endpoint {
            id: parse_id("endpoint id", &row.id)?,
            subscription: Subscription::from_stored(&row.events)
                .ok_or_else(|| corrupt("endpoint events", &row.events))?,
            campaign_id: row
                .campaign_id
                .as_deref()
                .map(|id| parse_id("campaign id", id))
                .transpose()?,
            secret: Secret::parse(&row.secret).map_err(|_| corrupt("endpoint secret", "…"))?,
            url: row.url,
            description: row.description,
            created_at: from_ms(row.created_at),
        };
        let load = EndpointLoad {
            pending: row.pending.max(0) as u64,
            failed: row.failed.max(0) as u64,
        };
        Ok((endpoint, load))
    }
}

#[derive(QueryableByName)]
pub struct DeliveryRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    r#type: String,
    #[diesel(sql_type = BigInt)]
    created_at: i64,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Integer>)]
    last_status_code: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    next_attempt_at: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    delivered_at: Option<i64>,
}

fn event_type(text: &str) -> Result<EventType, StoreError> {
    EventType::parse(text).ok_or_else(|| corrupt("event type", text))
}

impl TryFrom<DeliveryRow> for WebhookDelivery {
    type Error = StoreError;

    fn try_from(row: DeliveryRow) -> Result<Self, StoreError> {
        let status = DeliveryStatus::parse(&row.status)
            .ok_or_else(|| corrupt("delivery status", &row.status))?;
        Ok(WebhookDelivery {
            event_type: event_type(&row.r#type)?,
            id: row.id,
            created_at: from_ms(row.created_at),
            // A pending delivery's due time; the others are not due again by themselves.
            next_attempt_at: row
                .next_attempt_at
                .filter(|_| status == DeliveryStatus::Pending)
                .map(from_ms),
            status,
            attempts: row.attempts.max(0) as u32,
            last_status_code: row.last_status_code.and_then(|c| u16::try_from(c).ok()),
            last_error: row.last_error,
            delivered_at: row.delivered_at.map(from_ms),
        })
    }
}

#[derive(QueryableByName)]
pub struct ClaimedRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    r#type: String,
    #[diesel(sql_type = Nullable<Text>)]
    campaign_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    call_id: Option<String>,
    #[diesel(sql_type = Nullable<Integer>)]
    attempt: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    detail: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    body: Option<String>,
    #[diesel(sql_type = BigInt)]
    created_at: i64,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

impl TryFrom<ClaimedRow> for ClaimedDelivery {
    type Error = StoreError;

    fn try_from(row: ClaimedRow) -> Result<Self, StoreError> {
        Ok(ClaimedDelivery {
            event_type: event_type(&row.r#type)?,
            campaign_id: row
                .campaign_id
                .as_deref()
                .map(|id| parse_id("campaign id", id))
                .transpose()?,
            call_id: row
                .call_id
                .as_deref()
                .map(|id| parse_id("call id", id))
                .transpose()?,
            attempt: row.attempt.map(|a| a.max(0) as u32),
            id: row.id,
            detail: row.detail,
            body: row.body,
            created_at: from_ms(row.created_at),
            attempts: row.attempts.max(0) as u32,
        })
    }
}

fn metadata_json(stored: Option<String>) -> serde_json::Value {
    stored
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new()))
}

#[derive(QueryableByName)]
pub struct AttemptEventRow {
    #[diesel(sql_type = Text)]
    call_id: String,
    #[diesel(sql_type = Text)]
    campaign_id: String,
    #[diesel(sql_type = Text)]
    phone_number: String,
    #[diesel(sql_type = Integer)]
    attempt: i32,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<Text>)]
    error: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    duration_ms: Option<i64>,
    #[diesel(sql_type = BigInt)]
    started_at: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    ended_at: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    answered_by: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    response: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    digits: Option<String>,
    #[diesel(sql_type = Integer)]
    voicemail_left: i32,
    #[diesel(sql_type = Nullable<Text>)]
    metadata: Option<String>,
}

impl From<AttemptEventRow> for AttemptFinished {
    fn from(row: AttemptEventRow) -> Self {
        AttemptFinished {
            call_id: row.call_id,
            campaign_id: row.campaign_id,
            phone_number: row.phone_number,
            attempt: row.attempt.max(0) as u32,
            status: row.status,
            error: row.error,
            duration_ms: row.duration_ms.unwrap_or(0).max(0) as u64,
            started_at: from_ms(row.started_at),
            ended_at: from_ms(row.ended_at.unwrap_or(row.started_at)),
            answered_by: row.answered_by,
            response: row.response,
            digits: row.digits,
            voicemail_left: (row.voicemail_left != 0).then_some(true),
            metadata: metadata_json(row.metadata),
        }
    }
}

#[derive(QueryableByName)]
pub struct CallEventRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    campaign_id: String,
    #[diesel(sql_type = Text)]
    phone_number: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    attempt_count: i32,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    response: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    metadata: Option<String>,
}

impl From<CallEventRow> for CallFinished {
    fn from(row: CallEventRow) -> Self {
        CallFinished {
            call_id: row.id,
            campaign_id: row.campaign_id,
            phone_number: row.phone_number,
            status: row.status,
            attempts: row.attempt_count.max(0) as u32,
            last_error: row.last_error,
            response: row.response,
            metadata: metadata_json(row.metadata),
        }
    }
}

fn endpoint_row<DB: Dialect>(statement: &Statement, id: EndpointId) -> Bound<DB> {
    query::<DB>(statement).text(id.to_string())
}

pub async fn create_endpoint<S: Runner>(
    store: &S,
    endpoint: &Endpoint,
    audit: Option<AuditEntry>,
) -> Result<(), StoreError> {
    let mut writes = vec![query::<S::DB>(&INSERT_ENDPOINT)
        .text(endpoint.id.to_string())
        .text(endpoint.url.clone())
        .text(endpoint.subscription.stored())
        .opt_text(endpoint.campaign_id.map(|id| id.to_string()))
        .opt_text(endpoint.description.clone())
        .text(endpoint.secret.expose())
        .big(to_ms(endpoint.created_at))];
    writes.extend(ARM.iter().map(query::<S::DB>));
    store.writes(writes, audit).await.map(|_| ())
}

pub async fn list_endpoints<S: Runner>(
    store: &S,
) -> Result<Vec<(Endpoint, EndpointLoad)>, StoreError>
where
    EndpointRow: QueryableByName<S::DB>,
{
    let rows: Vec<EndpointRow> = store.rows(Read::Scan, query::<S::DB>(&ENDPOINTS)).await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

pub async fn active_endpoints<S: Runner>(store: &S) -> Result<Vec<Endpoint>, StoreError>
where
    EndpointRow: QueryableByName<S::DB>,
{
    let rows: Vec<EndpointRow> = store
        .rows(Read::Scan, query::<S::DB>(&ACTIVE_ENDPOINTS))
        .await?;
    rows.into_iter()
        .map(|row| <(Endpoint, EndpointLoad)>::try_from(row).map(|(endpoint, _)| endpoint))
        .collect()
}

pub async fn get_endpoint<S: Runner>(
    store: &S,
    id: EndpointId,
) -> Result<Option<Endpoint>, StoreError>
where
    EndpointRow: QueryableByName<S::DB>,
{
    let rows: Vec<EndpointRow> = store
        .rows(Read::Point, endpoint_row::<S::DB>(&ENDPOINT, id))
        .await?;
    let found = rows.into_iter().next().map(TryInto::try_into).transpose()?;
    Ok(found.map(|(endpoint, _): (Endpoint, EndpointLoad)| endpoint))
}

pub async fn delete_endpoint<S: Runner>(
    store: &S,
    id: EndpointId,
    audit: Option<AuditEntry>,
) -> Result<bool, StoreError> {
    let changed = store
        .writes(
            vec![
                query::<S::DB>(&HOLD_DELIVERIES),
                endpoint_row::<S::DB>(&DELETE_ENDPOINT, id),
                endpoint_row::<S::DB>(&DELETE_ENDPOINT_DELIVERIES, id),
            ],
            audit,
        )
        .await?;
    Ok(changed.get(1).copied().unwrap_or(0) > 0)
}

pub async fn deliveries<S: Runner>(
    store: &S,
    endpoint: EndpointId,
    status: Option<DeliveryStatus>,
    before: Option<String>,
    limit: usize,
) -> Result<Vec<WebhookDelivery>, StoreError>
where
    DeliveryRow: QueryableByName<S::DB>,
{
    // Every id sorts before "n" ("msg_..."): no bound is the newest.
    let before = before.unwrap_or_else(|| "n".to_owned());
    let page = match status {
        None => query::<S::DB>(&DELIVERIES).text(endpoint.to_string()),
        Some(status) => query::<S::DB>(&DELIVERIES_IN_STATUS)
            .text(endpoint.to_string())
            .text(status.as_str()),
    };
    let page = page.text(before).big(as_bigint(limit));
    let rows: Vec<DeliveryRow> = store.rows(Read::Scan, page).await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

pub async fn retry_delivery<S: Runner>(
    store: &S,
    endpoint: EndpointId,
    id: &str,
    now: DateTime<Utc>,
    audit: Option<AuditEntry>,
) -> Result<bool, StoreError>
where
    TotalRow: QueryableByName<S::DB>,
{
    let retry = query::<S::DB>(&RETRY_DELIVERY)
        .big(to_ms(now))
        .text(endpoint.to_string())
        .text(id)
        .big(to_ms(now));
    match store
        .write_and_load::<TotalRow>(vec![retry], count_retried::<S::DB>(endpoint, id), audit)
        .await
    {
        Ok(_) => Ok(true),
        Err(StoreError::NotFound) => Ok(false),
        Err(err) => Err(err),
    }
}

static RETRIED: Statement = Statement::new(|| {
    "SELECT count(*) AS n FROM webhook_deliveries WHERE endpoint_id = ? AND id = ? \
     GROUP BY id"
        .into()
});

fn count_retried<DB: Dialect>(endpoint: EndpointId, id: &str) -> Bound<DB> {
    query::<DB>(&RETRIED).text(endpoint.to_string()).text(id)
}

pub async fn claim_deliveries<S: Runner>(
    store: &S,
    endpoint: EndpointId,
    claim: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<ClaimedDelivery>, StoreError>
where
    ClaimedRow: QueryableByName<S::DB>,
    TotalRow: QueryableByName<S::DB>,
{
    let due: Vec<TotalRow> = store
        .rows(
            Read::Point,
            query::<S::DB>(&DUE)
                .text(endpoint.to_string())
                .big(to_ms(now)),
        )
        .await?;
    if due.first().is_none_or(|row| row.n == 0) {
        return Ok(Vec::new());
    }
    let take = query::<S::DB>(&CLAIM)
        .text(claim)
        .big(to_ms(until))
        .text(endpoint.to_string())
        .text(endpoint.to_string())
        .big(to_ms(now))
        .big(as_bigint(limit));
    match store
        .write_and_load_yielding::<ClaimedRow>(Vec::new(), take, None)
        .await
    {
        Ok(rows) => rows.into_iter().map(TryInto::try_into).collect(),
        // Nothing was due after all: the claim of nothing rolled back.
        Err(StoreError::NotFound) => Ok(Vec::new()),
        Err(err) => Err(err),
    }
}

pub async fn attempt_event<S: Runner>(
    store: &S,
    campaign_id: CampaignId,
    call_id: CallId,
    attempt: u32,
) -> Result<Option<AttemptFinished>, StoreError>
where
    AttemptEventRow: QueryableByName<S::DB>,
{
    let read = query::<S::DB>(&ATTEMPT_EVENT)
        .text(campaign_id.to_string())
        .text(call_id.to_string())
        .int(i32::try_from(attempt).unwrap_or(i32::MAX));
    let rows: Vec<AttemptEventRow> = store.rows(Read::Point, read).await?;
    Ok(rows.into_iter().next().map(AttemptFinished::from))
}

pub async fn call_event<S: Runner>(
    store: &S,
    campaign_id: CampaignId,
    call_id: CallId,
) -> Result<Option<CallFinished>, StoreError>
where
    CallEventRow: QueryableByName<S::DB>,
{
    let read = query::<S::DB>(&CALL_EVENT)
        .text(campaign_id.to_string())
        .text(call_id.to_string());
    let rows: Vec<CallEventRow> = store.rows(Read::Point, read).await?;
    Ok(rows.into_iter().next().map(CallFinished::from))
}

pub async fn finish_deliveries<S: Runner>(
    store: &S,
    endpoint: EndpointId,
    claim: &str,
    tries: &[TryRecord],
    untried: &[String],
) -> Result<(), StoreError> {
    if tries.is_empty() && untried.is_empty() {
        return Ok(());
    }
    let mut writes: Vec<_> = tries
        .iter()
        .map(|done| {
            query::<S::DB>(&FINISH)
                .opt_text(done.body.clone())
                .text(done.status.as_str())
                .opt_big(done.next_attempt_at.map(to_ms))
                .opt_int(done.last_status_code.map(i32::from))
                .opt_text(done.last_error.clone())
                .opt_big(done.delivered_at.map(to_ms))
                .text(endpoint.to_string())
                .text(done.id.clone())
                .text(claim)
        })
        .collect();
    writes.extend(untried.iter().map(|id| {
        query::<S::DB>(&HAND_BACK)
            .text(endpoint.to_string())
            .text(id.clone())
            .text(claim)
    }));
    store.writes_yielding(writes, None).await.map(|_| ())
}

pub async fn prune_deliveries<S: Runner>(
    store: &S,
    before: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let pruned = store
        .write(query::<S::DB>(&PRUNE).big(to_ms(before)), None)
        .await?;
    Ok(pruned as u64)
}

pub async fn fewest_due<S: Runner>(
    store: &S,
    now: DateTime<Utc>,
    cap: usize,
) -> Result<Option<u64>, StoreError>
where
    TotalRow: QueryableByName<S::DB>,
{
    let rows: Vec<TotalRow> = store
        .rows(
            Read::Scan,
            query::<S::DB>(&FEWEST_DUE)
                .big(to_ms(now))
                .big(as_bigint(cap)),
        )
        .await?;
    Ok(rows.first().and_then(|row| u64::try_from(row.n).ok()))
}

pub async fn events_waiting<S: Runner>(store: &S) -> Result<bool, StoreError>
where
    TotalRow: QueryableByName<S::DB>,
{
    let rows: Vec<TotalRow> = store
        .rows(Read::Scan, query::<S::DB>(&EVENTS_WAITING))
        .await?;
    Ok(rows.first().is_some_and(|row| row.n > 0))
}

pub async fn delivery_backlog<S: Runner>(store: &S) -> Result<u64, StoreError>
where
    TotalRow: QueryableByName<S::DB>,
{
    let rows: Vec<TotalRow> = store.rows(Read::Scan, query::<S::DB>(&BACKLOG)).await?;
    Ok(rows.first().map_or(0, |row| row.n.max(0) as u64))
}
