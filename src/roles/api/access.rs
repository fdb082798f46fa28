//! Keys at the door: each `/api/v1` route is registered with the `Access` it requires, and
//! `guard` (wrapped around that one route) authenticates the caller, checks its role and rate,
//! and records the audit entry of every request that is not a read.
//!
//! Keys are cached per process and the cache is reloaded every `REFRESH` from the store, so a
//! key revoked anywhere (another process, the CLI) stops working here within that time. A key
//! not in the cache is looked up directly, so a key made elsewhere works at once. When the
//! cache could not be reloaded for `STALE_AFTER`, keys are looked up on every request instead
//! of trusting what may be an old revocation state. `last_used_at` is kept in memory and
//! written once per reload, not per request.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use actix_web::body::BoxBody;
use actix_web::dev::{Payload, RequestHead, ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use chrono::{DateTime, Utc};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::error::ApiError;
use crate::domain::access::{claimed_id, Access, ApiKey, AuditEntry, KeyHash, KeyPolicy, Role};
use crate::domain::ids::KeyId;
use crate::ports::{Store, StoreError};

/// How often each process reloads the keys (and writes `last_used_at`).
pub const REFRESH: Duration = Duration::from_secs(1);
/// A cache older than this is not trusted for revocations.
const STALE_AFTER: Duration = Duration::from_secs(4);
/// Most unknown ids remembered between reloads.
const MAX_MISSES: usize = 10_000;
/// Most client addresses whose refusals are recorded apart in one second; the refusals of any
/// more are recorded together, under the unspecified address.
const MAX_REFUSING_CLIENTS: usize = 100;
/// How often entries past the audit log's retention are removed.
const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);
/// Refused requests per second (and burst) a client address may make before it gets 429.
const STRANGER_RATE: NonZeroU32 = match NonZeroU32::new(50) {
    Some(rate) => rate,
    None => NonZeroU32::MIN,
};

/// Who is calling, for the handlers that answer by the caller: `None` when keys are off and
/// none was sent.
#[derive(Debug, Clone)]
pub struct Caller(pub Option<Principal>);

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: KeyId,
    pub key_name: String,
    pub role: Role,
}

struct Cache {
    keys: HashMap<KeyId, ApiKey>,
    loaded_at: Option<Instant>,
}

/// The keys this process knows, and the rate each has used.
pub struct Gate {
    store: Arc<dyn Store>,
    policy: KeyPolicy,
    cache: RwLock<Cache>,
    used: Mutex<HashMap<KeyId, DateTime<Utc>>>,
    /// Ids the store did not know at their last lookup, until the next reload.
    misses: Mutex<HashSet<KeyId>>,
    rates: DefaultKeyedRateLimiter<KeyId>,
    /// Refusals per client address: a client without a valid key that keeps asking is slowed
    /// down (429) before its requests cost lookups.
    strangers: DefaultKeyedRateLimiter<IpAddr>,
    /// Changes refused for a missing or unknown key since the last reload, by client address:
    /// written as one entry per address (with how many it stands for) at each reload, so a
    /// flood grows the audit log by one entry per address per second at most.
    refused: Mutex<HashMap<IpAddr, AuditEntry>>,
    /// How long audit entries are kept, when this gate removes the older ones.
    retention: Option<Duration>,
}

/// The address a client is counted by: an IPv6 client by its /64, which one holder commonly
/// has whole.
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !u128::from(u64::MAX),
            )),
        },
    }
}

#[derive(Debug)]
enum Refusal {
    Unauthorized,
    /// Refused too often from one address: answered 429 and not audited.
    Flooding(Duration),
    Forbidden(Role),
    RateLimited(Duration),
    Store(StoreError),
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Unauthorized => ApiError::unauthorized(),
            Refusal::Flooding(wait) => ApiError::rate_limited(wait.as_secs_f64().ceil() as u64),
            Refusal::Forbidden(needed) => ApiError::forbidden(needed.as_str()),
            Refusal::RateLimited(wait) => ApiError::rate_limited(wait.as_secs_f64().ceil() as u64),
            Refusal::Store(err) => err.into(),
        }
    }
}

impl Gate {
    pub fn new(store: Arc<dyn Store>, policy: KeyPolicy, rate_limit: u32) -> Self {
        let rate = NonZeroU32::new(rate_limit).unwrap_or(NonZeroU32::MIN);
        Self {
            store,
            policy,
            cache: RwLock::new(Cache {
                keys: HashMap::new(),
                loaded_at: None,
            }),
            used: Mutex::new(HashMap::new()),
            misses: Mutex::new(HashSet::new()),
            rates: RateLimiter::keyed(Quota::per_second(rate).allow_burst(rate)),
            strangers: RateLimiter::keyed(
                Quota::per_second(STRANGER_RATE).allow_burst(STRANGER_RATE),
            ),
            refused: Mutex::new(HashMap::new()),
            retention: None,
        }
    }

    /// A gate that also removes audit entries older than `retention`, hourly.
    pub fn retaining(mut self, retention: Duration) -> Self {
        self.retention = Some(retention);
        self
    }

    pub fn policy(&self) -> KeyPolicy {
        self.policy
    }

    /// Whether this request needs a key: by the policy, from what the request itself shows
    /// (its `Host`, or the authority of an HTTP/2 request, and its headers' names).
    pub fn requires_keys(&self, head: &RequestHead) -> bool {
        let host = head
            .headers()
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .or_else(|| head.uri.authority().map(|authority| authority.as_str()));
        self.policy
            .requires_key(host, head.headers().keys().map(|name| name.as_str()))
    }

    /// Reloads the keys every `REFRESH` and writes their last use, until `shutdown`; a last
    /// write on the way out.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pruned_at: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => break,
            }
            if let Err(err) = self.refresh().await {
                tracing::warn!(error = %err, "cannot reload api keys");
            }
            self.flush_refused().await;
            if let (Some(retention), true) = (
                self.retention,
                pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY),
            ) {
                pruned_at = Some(Instant::now());
                self.prune(retention).await;
            }
        }
        if let Err(err) = self.flush_use().await {
            tracing::warn!(error = %err, "cannot record when api keys were last used");
        }
        self.flush_refused().await;
    }

    /// Removes audit entries older than `retention`.
    async fn prune(&self, retention: Duration) {
        let Ok(retention) = chrono::Duration::from_std(retention) else {
            return;
        };
        match self.store.prune_audit(Utc::now() - retention).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "audit entries past their retention removed"),
            Err(err) => tracing::warn!(error = %err, "cannot remove old audit entries"),
        }
    }

    /// Counts a change refused for a missing or unknown key from `client`, recorded with the
    /// others of the same second.
    fn note_refused(&self, client: Option<IpAddr>, entry: AuditEntry) {
        let client = client.map_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), client_of);
        let Ok(mut refused) = self.refused.lock() else {
            return;
        };
        let client = if refused.len() >= MAX_REFUSING_CLIENTS && !refused.contains_key(&client) {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        } else {
            client
        };
        refused
            .entry(client)
            .and_modify(|first| first.count = first.count.saturating_add(1))
            .or_insert(entry);
    }

    /// Writes the refusals counted since the last flush, one entry per client address.
    async fn flush_refused(&self) {
        let entries: Vec<AuditEntry> = match self.refused.lock() {
            Ok(mut refused) => refused.drain().map(|(_, entry)| entry).collect(),
            Err(_) => return,
        };
        if entries.is_empty() {
            return;
        }
        if let Err(err) = self.store.record_audit(&entries).await {
            tracing::warn!(error = %err, entries = entries.len(), "cannot write the audit entries of refused requests");
        }
    }

    pub async fn refresh(&self) -> Result<(), StoreError> {
        // A failed write of last uses must not hold up the reload that carries revocations.
        if let Err(err) = self.flush_use().await {
            tracing::warn!(error = %err, "cannot record when api keys were last used");
        }
        // The keys read are as old as the moment the read began: that is their age.
        let asked_at = Instant::now();
        let keys = self.store.list_keys().await?;
        self.reloaded(keys, asked_at);
        if let Ok(mut misses) = self.misses.lock() {
            misses.clear();
        }
        self.rates.retain_recent();
        self.strangers.retain_recent();
        Ok(())
    }

    /// Takes in the keys a reload read, the read having begun at `asked_at`.
    pub fn reloaded(&self, keys: Vec<ApiKey>, asked_at: Instant) {
        if let Ok(mut cache) = self.cache.write() {
            let mut loaded: HashMap<KeyId, ApiKey> =
                keys.into_iter().map(|key| (key.id, key)).collect();
            // A revocation is never undone, so one this process learnt of (it made it, or saw
            // it at a lookup) while this read was under way stays, whatever the read says.
            for (id, known) in &cache.keys {
                if let (Some(at), Some(key)) = (known.revoked_at, loaded.get_mut(id)) {
                    key.revoked_at.get_or_insert(at);
                }
            }
            cache.keys = loaded;
            cache.loaded_at = Some(asked_at);
        }
    }

    async fn flush_use(&self) -> Result<(), StoreError> {
        let used: Vec<(KeyId, DateTime<Utc>)> = match self.used.lock() {
            Ok(mut used) => used.drain().collect(),
            Err(_) => return Ok(()),
        };
        if let Err(err) = self.store.touch_keys(&used).await {
            // Kept for the next attempt rather than lost.
            if let Ok(mut pending) = self.used.lock() {
                for (id, at) in used {
                    let slot = pending.entry(id).or_insert(at);
                    *slot = (*slot).max(at);
                }
            }
            return Err(err);
        }
        Ok(())
    }

    /// Whether the key is known to be revoked, from what this process knows (for streams that
    /// outlive the request that opened them).
    pub fn revoked(&self, id: KeyId) -> bool {
        self.cache.read().is_ok_and(|cache| {
            cache
                .keys
                .get(&id)
                .is_some_and(|key| key.revoked_at.is_some())
        })
    }

    /// Takes note of a key this process just created or revoked, before the next reload.
    pub fn remember(&self, mut key: ApiKey) {
        if let Ok(mut cache) = self.cache.write() {
            // A lookup that began before a revocation must not bring the key back.
            if let Some(at) = cache.keys.get(&key.id).and_then(|known| known.revoked_at) {
                key.revoked_at.get_or_insert(at);
            }
            cache.keys.insert(key.id, key);
        }
    }

    async fn find(&self, id: KeyId) -> Result<Option<ApiKey>, StoreError> {
        if let Ok(cache) = self.cache.read() {
            let fresh = cache.loaded_at.is_some_and(|at| at.elapsed() < STALE_AFTER);
            if let (true, Some(key)) = (fresh, cache.keys.get(&id)) {
                return Ok(Some(key.clone()));
            }
        }
        // An id looked up in vain is not looked up again until the next reload, so made-up
        // keys cost the store one read each per second at most.
        if self.misses.lock().is_ok_and(|misses| misses.contains(&id)) {
            return Ok(None);
        }
        let found = self.store.get_key(id).await?;
        match &found {
            Some(key) => self.remember(key.clone()),
            None => {
                if let Ok(mut misses) = self.misses.lock() {
                    if misses.len() < MAX_MISSES {
                        misses.insert(id);
                    }
                }
            }
        }
        Ok(found)
    }

    /// The caller of a request: `None` for no key. With keys off, a key that does not check
    /// out makes an anonymous caller rather than a refusal.
    async fn authenticate(
        &self,
        req: &ServiceRequest,
        requires_keys: bool,
    ) -> Result<Option<Principal>, Refusal> {
        match self.identify(req, requires_keys).await {
            Err(Refusal::Unauthorized) if !requires_keys => Ok(None),
            other => other,
        }
    }

    async fn identify(
        &self,
        req: &ServiceRequest,
        requires_keys: bool,
    ) -> Result<Option<Principal>, Refusal> {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        let Some(presented) = presented else {
            return if requires_keys {
                Err(Refusal::Unauthorized)
            } else {
                Ok(None)
            };
        };
        // A key that is sent is checked even when keys are off, so the audit log names it.
        let Some(id) = claimed_id(presented) else {
            return Err(Refusal::Unauthorized);
        };
        let key = self
            .find(id)
            .await
            .map_err(Refusal::Store)?
            .ok_or(Refusal::Unauthorized)?;
        if !key.admits(&KeyHash::of(presented)) {
            return Err(Refusal::Unauthorized);
        }
        if let Ok(mut used) = self.used.lock() {
            used.insert(key.id, Utc::now());
        }
        Ok(Some(Principal {
            key_id: key.id,
            key_name: key.name,
            role: key.role,
        }))
    }

    /// Counts a refusal against the client's address.
    fn note_refusal(&self, req: &ServiceRequest) -> Result<(), Refusal> {
        let Some(ip) = req.peer_addr().map(|addr| client_of(addr.ip())) else {
            return Ok(());
        };
        self.strangers.check_key(&ip).map_err(|not_until| {
            Refusal::Flooding(not_until.wait_time_from(DefaultClock::default().now()))
        })
    }

    /// Whether `caller` may use a route requiring `access`, on a request that does or does not
    /// need a key: the one rule the gate applies.
    pub fn allows(caller: Option<&Principal>, access: Access, requires_keys: bool) -> bool {
        match (caller, access.least_role()) {
            (_, None) => true,
            (None, Some(_)) => !requires_keys,
            (Some(principal), Some(_)) => !requires_keys || principal.role.may(access),
        }
    }

    fn authorize(
        &self,
        principal: Option<&Principal>,
        access: Access,
        requires_keys: bool,
    ) -> Result<(), Refusal> {
        let Some(principal) = principal else {
            return Ok(());
        };
        // Where no key is needed a key only names its holder; it limits nothing.
        if let Some(needed) = access.least_role() {
            if !Self::allows(Some(principal), access, requires_keys) {
                return Err(Refusal::Forbidden(needed));
            }
        }
        if let Err(not_until) = self.rates.check_key(&principal.key_id) {
            return Err(Refusal::RateLimited(
                not_until.wait_time_from(DefaultClock::default().now()),
            ));
        }
        Ok(())
    }
}

/// The audit entry of the request in hand, for its handler to commit with its store write.
struct AuditSlot {
    /// One id for the entry however it is written, so a fallback write after a commit whose
    /// answer was lost finds it there and adds nothing.
    id: Uuid,
    principal: Option<Principal>,
    method: String,
    route: &'static str,
    resource_id: Option<String>,
    recorded: std::sync::atomic::AtomicBool,
}

impl AuditSlot {
    fn entry(&self, status: StatusCode, resource_id: Option<String>) -> AuditEntry {
        AuditEntry {
            count: 1,
            id: self.id,
            at: Utc::now(),
            key_id: self.principal.as_ref().map(|p| p.key_id),
            key_name: self.principal.as_ref().map(|p| p.key_name.clone()),
            method: self.method.clone(),
            route: self.route.to_owned(),
            resource_id: resource_id.or_else(|| self.resource_id.clone()),
            status: status.as_u16(),
        }
    }
}

/// A handler's hold on its request's audit entry. Extracting it never fails.
pub struct Audit(Option<Arc<AuditSlot>>);

impl Audit {
    /// The entry recording that the request succeeds with `status`, touching `resource_id`
    /// (the route's `{id}` when `None`), to pass to the store write that makes the change.
    pub fn entry(&self, status: StatusCode, resource_id: Option<String>) -> Option<AuditEntry> {
        self.0.as_ref().map(|slot| slot.entry(status, resource_id))
    }

    /// The store committed the entry: the guard must not write another.
    pub fn recorded(&self) {
        if let Some(slot) = &self.0 {
            slot.recorded
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }
}

impl FromRequest for Audit {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(Audit(req.extensions().get::<Arc<AuditSlot>>().cloned())))
    }
}

/// Only GET is a read: any other method is audited, refused or not.
fn is_read(method: &Method) -> bool {
    method == Method::GET
}

/// The middleware of one route that requires `access`, registered at `route` (its pattern).
pub async fn guard(
    access: Access,
    route: &'static str,
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(gate) = req.app_data::<web::Data<Gate>>().cloned() else {
        if access == Access::Public {
            return next.call(req).await;
        }
        return Ok(req.error_response(ApiError::internal(&"the api role has no key gate")));
    };
    let requires_keys = gate.requires_keys(req.head());
    let authenticated = if access == Access::Public {
        Ok(None)
    } else {
        gate.authenticate(&req, requires_keys).await
    };
    // A caller refused for its role is still named in the audit log.
    let principal = authenticated.as_ref().ok().cloned().flatten();
    let caller = Caller(principal.clone());
    let mut admitted = authenticated
        .and_then(|principal| gate.authorize(principal.as_ref(), access, requires_keys));
    if admitted.is_err() {
        admitted = gate.note_refusal(&req).and(admitted);
    }
    // Reads are not audited. A change refused for a missing or unknown key is counted with the
    // others from its client address this second rather than written on its own.
    let stranger = matches!(admitted, Err(Refusal::Flooding(_) | Refusal::Unauthorized));
    let slot = (!is_read(req.method())).then(|| {
        Arc::new(AuditSlot {
            id: Uuid::now_v7(),
            principal,
            method: req.method().to_string(),
            route,
            resource_id: req
                .match_info()
                .get("id")
                .or_else(|| req.match_info().get("number"))
                .map(str::to_owned),
            recorded: std::sync::atomic::AtomicBool::new(false),
        })
    });
    let client = req.peer_addr().map(|addr| addr.ip());
    let response = match admitted {
        Ok(()) => match super::limits::take_turn(&req).await {
            Ok(turn) => {
                if let Some(slot) = &slot {
                    req.extensions_mut().insert(slot.clone());
                }
                req.extensions_mut().insert(caller);
                let answered = next.call(req).await;
                drop(turn);
                answered
            }
            Err(busy) => Ok(req.error_response(busy)),
        },
        Err(refusal) => Ok(req.error_response(ApiError::from(refusal))),
    };
    if let Some(slot) =
        slot.filter(|slot| !slot.recorded.load(std::sync::atomic::Ordering::Acquire))
    {
        let status = match &response {
            Ok(response) => response.status(),
            Err(err) => err.as_response_error().status_code(),
        };
        let entry = slot.entry(status, None);
        if stranger {
            gate.note_refused(client, entry);
            return response;
        }
        if let Err(err) = gate.store.record_audit(&[entry]).await {
            tracing::warn!(error = %err, route, "cannot write the audit entry of a request");
        }
    }
    response
}
