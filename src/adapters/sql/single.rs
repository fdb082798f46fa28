//! The store methods that are one statement (or a few independent ones), written once for both
//! SQL stores: each binds its statement (`sql::bound`) and hands it to the store's `Runner`.
//! Methods whose statements must share a transaction, or whose SQL differs by dialect beyond
//! its text, stay in the stores.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::deserialize::QueryableByName;

use super::bound::answers::{self, KeptMessageRow, KeyNameRow, ResultRow};
use super::bound::{campaigns as campaign, keys as key, query, Binds, Bound};
use super::rows::{
    self, prior_attempts, readable_backlog, scope_column, AuditRow, CallRow, CampaignRow, DncRow,
    KeyRow, MaybeMsRow, OrphanRow, PriorRow, RunnableRow, StatsRow, TimelineRow, TotalRow,
};
use super::run::{Read, Runner};
use super::statements::{
    Statement, CALLS, CALLS_IN_STATUS, CALLS_OF_NUMBER, DNC_COVERING, DNC_ENTRY, DNC_PAGE,
    DNC_REMOVE, LOAD_CAMPAIGN, ORPHANED_ATTEMPTS, PRIOR_ATTEMPTS, PRUNE_INSTANCES,
    PRUNE_NUMBER_ATTEMPTS, RUNNABLE_CAMPAIGNS, TIMELINE_BACKLOG,
};
use super::{as_bigint, from_ms, millis, to_ms};
use crate::domain::access::{ApiKey, AuditEntry, NewKey};
use crate::domain::call::Call;
use crate::domain::campaign::{Campaign, CampaignStatus, PauseReason};
use crate::domain::compliance::caps;
use crate::domain::ids::{CallId, CampaignId, KeyId};
use crate::domain::message::Message;
use crate::domain::phone::PhoneNumber;
use crate::domain::stats::CampaignStats;
use crate::ports::{
    AttemptKey, CallFilter, CallResult, DncEntry, DncScope, NumberFacts, OrphanedAttempt,
    RunnableCampaign, StoreError, TimelineEntry,
};

/// The numbers with a call dialing now, deployment-wide.
static DIALING_NOW: Statement = Statement::new(|| "SELECT count(*) AS n FROM live_numbers".into());

/// When the earliest retry of a running campaign is due.
static NEXT_RETRY_DUE: Statement = Statement::dialects(
    || {
        "SELECT MIN(c.next_attempt_at) AS ms FROM calls c JOIN campaigns k \
         ON k.id = c.campaign_id WHERE c.status = 'retrying' AND k.status = 'in_progress'"
            .into()
    },
    // One index probe per running campaign with retries, not a scan of every retry.
    || {
        "SELECT MIN(d.due) AS ms FROM campaigns k \
         JOIN campaign_stats s ON s.campaign_id = k.id \
         CROSS JOIN LATERAL (SELECT c.next_attempt_at AS due FROM calls c \
         WHERE c.campaign_id = k.id AND c.status = 'retrying' \
         ORDER BY c.next_attempt_at LIMIT 1) d \
         WHERE k.status = 'in_progress' AND s.retrying > 0"
            .into()
    },
);

// Campaigns.

pub async fn get_campaign<S: Runner>(
    store: &S,
    id: CampaignId,
) -> Result<Option<Campaign>, StoreError>
where
    CampaignRow: QueryableByName<S::DB>,
{
    let rows: Vec<CampaignRow> = store
        .rows(Read::Point, campaign::load_campaign(&LOAD_CAMPAIGN, id))
        .await?;
    rows::first(rows)
}

pub async fn list_campaigns<S: Runner>(
    store: &S,
    status: Option<CampaignStatus>,
    after: Option<CampaignId>,
    limit: usize,
) -> Result<Vec<Campaign>, StoreError>
where
    CampaignRow: QueryableByName<S::DB>,
{
    let rows: Vec<CampaignRow> = store
        .rows(Read::Scan, campaign::campaigns(status, after, limit))
        .await?;
    rows::all(rows)
}

pub async fn campaign_stats<S: Runner>(
    store: &S,
    id: CampaignId,
) -> Result<Option<CampaignStats>, StoreError>
where
    StatsRow: QueryableByName<S::DB>,
{
    let rows: Vec<StatsRow> = store.rows(Read::Point, campaign::stats(id)).await?;
    rows::first(rows)
}

/// Whether the campaign was running and is now paused by the carrier's `reason`.
pub async fn pause_for_carrier<S: Runner>(
    store: &S,
    id: CampaignId,
    reason: PauseReason,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let paused = store
        .write(campaign::pause_for_carrier(id, &reason, now)?, None)
        .await?;
    Ok(paused == 1)
}

// Calls and dispatch.

pub async fn list_calls<S: Runner>(
    store: &S,
    campaign_id: CampaignId,
    filter: CallFilter,
    after: Option<CallId>,
    limit: usize,
) -> Result<Vec<Call>, StoreError>
where
    CallRow: QueryableByName<S::DB>,
{
    let after = after.map(|id| id.to_string()).unwrap_or_default();
    let campaign = campaign_id.to_string();
    let page: Bound<S::DB> = match (filter.phone_number, filter.status) {
        (Some(number), status) => {
            let status = status.map_or("", |s| s.as_str());
            query(&CALLS_OF_NUMBER)
                .text(number.as_str())
                .text(campaign)
                .text(status)
                .text(status)
        }
        (None, Some(status)) => query(&CALLS_IN_STATUS).text(campaign).text(status.as_str()),
        (None, None) => query(&CALLS).text(campaign),
    };
    let rows: Vec<CallRow> = store
        .rows(Read::Scan, page.text(after).big(as_bigint(limit)))
        .await?;
    rows::all(rows)
}

pub async fn runnable_campaigns<S: Runner>(store: &S) -> Result<Vec<RunnableCampaign>, StoreError>
where
    RunnableRow: QueryableByName<S::DB>,
{
    let rows: Vec<RunnableRow> = store.rows(Read::Scan, query(&RUNNABLE_CAMPAIGNS)).await?;
    rows::all(rows)
}

pub async fn dialing_now<S: Runner>(store: &S) -> Result<u64, StoreError>
where
    TotalRow: QueryableByName<S::DB>,
{
    let rows: Vec<TotalRow> = store.rows(Read::Scan, query(&DIALING_NOW)).await?;
    Ok(rows
        .into_iter()
        .next()
        .map_or(0, |row| u64::try_from(row.n).unwrap_or(0)))
}

pub async fn next_retry_due<S: Runner>(store: &S) -> Result<Option<DateTime<Utc>>, StoreError>
where
    MaybeMsRow: QueryableByName<S::DB>,
{
    let rows: Vec<MaybeMsRow> = store.rows(Read::Scan, query(&NEXT_RETRY_DUE)).await?;
    Ok(rows.into_iter().next().and_then(|row| row.ms).map(from_ms))
}

// Attempts.

pub async fn orphaned_attempts<S: Runner>(
    store: &S,
    silent_for: Duration,
    placed_for: Duration,
    unanswered_for: Duration,
    limit: usize,
) -> Result<Vec<OrphanedAttempt>, StoreError>
where
    OrphanRow: QueryableByName<S::DB>,
{
    let orphans = query(&ORPHANED_ATTEMPTS)
        .big(millis(silent_for))
        .big(millis(placed_for))
        .big(millis(unanswered_for))
        .big(as_bigint(limit));
    let rows: Vec<OrphanRow> = store.rows(Read::Scan, orphans).await?;
    rows::all(rows)
}

pub async fn timeline_backlog<S: Runner>(
    store: &S,
    limit: usize,
) -> Result<Vec<TimelineEntry>, StoreError>
where
    TimelineRow: QueryableByName<S::DB>,
{
    let backlog = query(&TIMELINE_BACKLOG).big(as_bigint(limit));
    let rows: Vec<TimelineRow> = store.rows(Read::Scan, backlog).await?;
    Ok(readable_backlog(rows))
}

/// Forgets the heartbeats silent for `silent_for`, the attempt times older than any cap window,
/// and the messages kept for attempts over for two days: none counts toward anything.
pub async fn prune_history<S: Runner>(store: &S, silent_for: Duration) -> Result<u64, StoreError> {
    let pruned = store
        .write(query(&PRUNE_INSTANCES).big(millis(silent_for)), None)
        .await?;
    store
        .write(
            query(&PRUNE_NUMBER_ATTEMPTS).big(millis(caps::MAX_WINDOW)),
            None,
        )
        .await?;
    store.write(answers::prune_attempt_messages(), None).await?;
    Ok(pruned as u64)
}

// Access.

pub async fn create_key<S: Runner>(
    store: &S,
    new: NewKey,
    now: DateTime<Utc>,
    audit: Option<AuditEntry>,
) -> Result<ApiKey, StoreError>
where
    KeyRow: QueryableByName<S::DB>,
{
    let writes = vec![key::insert_key(&new, now)];
    let rows: Vec<KeyRow> = store
        .write_and_load(writes, key::load_key(new.id), audit)
        .await?;
    rows::first(rows)?.ok_or(StoreError::NotFound)
}

/// Revokes a key; a key revoked twice keeps its first revocation time.
pub async fn revoke_key<S: Runner>(
    store: &S,
    id: KeyId,
    now: DateTime<Utc>,
    audit: Option<AuditEntry>,
) -> Result<ApiKey, StoreError>
where
    KeyRow: QueryableByName<S::DB>,
{
    let writes = vec![key::revoke_key(id, now)];
    let rows: Vec<KeyRow> = store
        .write_and_load(writes, key::load_key(id), audit)
        .await?;
    rows::first(rows)?.ok_or(StoreError::NotFound)
}

/// Records when each key was last used.
pub async fn touch_keys<S: Runner>(
    store: &S,
    used: &[(KeyId, DateTime<Utc>)],
) -> Result<(), StoreError> {
    if used.is_empty() {
        return Ok(());
    }
    let writes = used
        .iter()
        .map(|(id, at)| key::touch_key(*id, *at))
        .collect();
    store.writes(writes, None).await?;
    Ok(())
}

/// Records audit entries not written by a change of their own.
pub async fn record_audit<S: Runner>(store: &S, entries: &[AuditEntry]) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let writes = entries.iter().map(key::insert_audit).collect();
    store.writes(writes, None).await?;
    Ok(())
}

pub async fn get_key<S: Runner>(store: &S, id: KeyId) -> Result<Option<ApiKey>, StoreError>
where
    KeyRow: QueryableByName<S::DB>,
{
    let rows: Vec<KeyRow> = store.rows(Read::Point, key::load_key(id)).await?;
    rows::first(rows)
}

pub async fn list_keys<S: Runner>(store: &S) -> Result<Vec<ApiKey>, StoreError>
where
    KeyRow: QueryableByName<S::DB>,
{
    let rows: Vec<KeyRow> = store.rows(Read::Scan, key::keys()).await?;
    rows::all(rows)
}

pub async fn list_audit<S: Runner>(
    store: &S,
    before: Option<uuid::Uuid>,
    limit: usize,
) -> Result<Vec<AuditEntry>, StoreError>
where
    AuditRow: QueryableByName<S::DB>,
{
    let rows: Vec<AuditRow> = store
        .rows(Read::Scan, key::audit_page(before, limit))
        .await?;
    rows::all(rows)
}

pub async fn prune_audit<S: Runner>(store: &S, before: DateTime<Utc>) -> Result<u64, StoreError> {
    Ok(store.write(key::prune_audit(before), None).await? as u64)
}

// The do-not-call list.

pub async fn get_dnc<S: Runner>(
    store: &S,
    number: &PhoneNumber,
) -> Result<Option<DncEntry>, StoreError>
where
    DncRow: QueryableByName<S::DB>,
{
    let rows: Vec<DncRow> = store
        .rows(Read::Point, query(&DNC_ENTRY).text(number.as_str()))
        .await?;
    rows::first(rows)
}

pub async fn list_dnc<S: Runner>(
    store: &S,
    after: Option<(PhoneNumber, DncScope)>,
    limit: usize,
) -> Result<Vec<DncEntry>, StoreError>
where
    DncRow: QueryableByName<S::DB>,
{
    let (number, scope) = after
        .map(|(number, scope)| (number.as_str().to_owned(), scope_column(scope)))
        .unwrap_or_default();
    let page = query(&DNC_PAGE)
        .text(number)
        .text(scope)
        .big(as_bigint(limit));
    let rows: Vec<DncRow> = store.rows(Read::Scan, page).await?;
    rows::all(rows)
}

pub async fn remove_dnc<S: Runner>(
    store: &S,
    number: &PhoneNumber,
    audit: Option<AuditEntry>,
) -> Result<u64, StoreError> {
    let removed = store
        .write(query(&DNC_REMOVE).text(number.as_str()), audit)
        .await?;
    Ok(removed as u64)
}

/// What the calling rules read of `number` for a call of `campaign_id`: its list entry and
/// its attempts within the longest cap window.
pub async fn number_facts<S: Runner>(
    store: &S,
    campaign_id: CampaignId,
    number: &PhoneNumber,
    now: DateTime<Utc>,
) -> Result<NumberFacts, StoreError>
where
    DncRow: QueryableByName<S::DB>,
    PriorRow: QueryableByName<S::DB>,
{
    let covering = query(&DNC_COVERING)
        .text(number.as_str())
        .text(campaign_id.to_string());
    let listed: Vec<DncRow> = store.rows(Read::Scan, covering).await?;
    let since = to_ms(now) - millis(caps::MAX_WINDOW);
    let prior = query(&PRIOR_ATTEMPTS).text(number.as_str()).big(since);
    let prior: Vec<PriorRow> = store.rows(Read::Scan, prior).await?;
    Ok(NumberFacts {
        time_zone: None,
        do_not_call: rows::first::<_, DncEntry>(listed)?.map(|entry| entry.scope),
        prior: prior_attempts(&prior, campaign_id),
    })
}

// What calls heard back.

pub async fn call_results<S: Runner>(
    store: &S,
    campaign_id: CampaignId,
    after: Option<CallId>,
    limit: usize,
) -> Result<Vec<CallResult>, StoreError>
where
    ResultRow: QueryableByName<S::DB>,
{
    let rows: Vec<ResultRow> = store
        .rows(Read::Scan, answers::results(campaign_id, after, limit))
        .await?;
    rows::all(rows)
}

/// The message the attempt `key` began with, when its campaign's message changed since.
pub async fn attempt_message<S: Runner>(
    store: &S,
    key: AttemptKey,
) -> Result<Option<Message>, StoreError>
where
    KeptMessageRow: QueryableByName<S::DB>,
{
    let rows: Vec<KeptMessageRow> = store
        .rows(Read::Point, answers::attempt_message(key))
        .await?;
    Ok(rows.into_iter().next().and_then(KeptMessageRow::message))
}

pub async fn metadata_keys<S: Runner>(
    store: &S,
    campaign_id: CampaignId,
) -> Result<Vec<String>, StoreError>
where
    KeyNameRow: QueryableByName<S::DB>,
{
    let rows: Vec<KeyNameRow> = store
        .rows(Read::Scan, answers::metadata_keys(campaign_id))
        .await?;
    let mut keys: Vec<String> = rows.into_iter().map(|row| row.key).collect();
    keys.sort_unstable();
    Ok(keys)
}
