//! Concurrency limiter shared by every engine process through Redis.
//!
//! Key layout, under a configurable prefix:
//! - `{prefix}campaign:{campaign_id}`: a sorted set of the campaign's lease ids, each scored by
//!   its expiry time in milliseconds since the Unix epoch;
//! - `{prefix}global`: one sorted set of every lease in the system, members
//!   `{campaign_id}:{lease_id}`, scored the same way.
//!
//! A lease is live while its score is in the future. Every operation is one Lua script, so
//! purging expired leases, counting and granting happen atomically: two processes racing for
//! the last slot cannot both get it. The scripts read the clock with Redis `TIME` rather than
//! taking it from the caller, because the processes sharing the limiter run on different
//! machines whose clocks drift apart; one clock makes them agree on which leases are expired.
//! Each write also sets a `PEXPIRE` of four lease lifetimes on the keys it touches, which
//! outlasts every lease they hold, so the keys of an abandoned campaign vanish by themselves.
//!
//! The scripts name several keys; on a Redis Cluster they would need one hash slot, which a
//! prefix with a hash tag (`outbound:{limiter}:`) gives.

use std::fmt::Display;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::{self, cmd, Script};
use deadpool_redis::{Config, Manager, Pool, PoolConfig, Runtime, Timeouts};

use crate::domain::ids::{CampaignId, LeaseId};
use crate::domain::pacing::Pace;
use crate::ports::{ConcurrencyLimiter, LimiterError};

/// Bounds every wait on the pool, so an unreachable Redis turns into an error the roles can
/// report and retry instead of a hang.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);

/// Leases per release or renew script call: a script blocks the whole Redis server while it
/// runs, so a huge batch is split rather than stalling other processes.
const BATCH: usize = 500;

/// Shared by every script: the server clock in milliseconds, the global member naming, and
/// the purge of expired leases.
const PRELUDE: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function member(campaign, lease)
  return campaign .. ':' .. lease
end
local function purge(key, now)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
end
";

/// KEYS: campaign set, global set. ARGV: limit, want, global cap, ttl ms, keep ms,
/// campaign id, then `want` lease ids. Returns how many of the leases, in order, were granted.
const ACQUIRE: &str = r"
local campaign_key, global_key = KEYS[1], KEYS[2]
local limit, want, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ttl, keep, campaign = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local now = now_ms()
purge(campaign_key, now)
purge(global_key, now)
local grant = math.min(want,
  limit - redis.call('ZCARD', campaign_key),
  cap - redis.call('ZCARD', global_key))
if grant <= 0 then
  return 0
end
local expires = now + ttl
for i = 1, grant do
  local lease = ARGV[6 + i]
  redis.call('ZADD', campaign_key, expires, lease)
  redis.call('ZADD', global_key, expires, member(campaign, lease))
end
redis.call('PEXPIRE', campaign_key, keep)
redis.call('PEXPIRE', global_key, keep)
return grant
";

/// KEYS: global set, then the campaign set of each lease. ARGV: keep ms, then campaign id and
/// lease id of each lease. Removing an absent member is a no-op, which makes it idempotent.
const RELEASE: &str = r"
local global_key, keep = KEYS[1], tonumber(ARGV[1])
for i = 1, #KEYS - 1 do
  local campaign, lease = ARGV[2 * i], ARGV[2 * i + 1]
  redis.call('ZREM', KEYS[1 + i], lease)
  redis.call('ZREM', global_key, member(campaign, lease))
  redis.call('PEXPIRE', KEYS[1 + i], keep)
end
redis.call('PEXPIRE', global_key, keep)
return 0
";

/// KEYS: global set, then the campaign set of each lease. ARGV: ttl ms, keep ms, then campaign
/// id and lease id of each lease. Expired leases are purged first: `ZADD XX` alone would give
/// new life to a lease that expired but that nobody had purged yet, while its slot may already
/// have been counted free by another process.
const RENEW: &str = r"
local global_key = KEYS[1]
local ttl, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
local expires = now + ttl
purge(global_key, now)
local purged = {}
local alive = {}
for i = 1, #KEYS - 1 do
  local key = KEYS[1 + i]
  local campaign, lease = ARGV[1 + 2 * i], ARGV[2 + 2 * i]
  if not purged[key] then
    purge(key, now)
    purged[key] = true
  end
  alive[i] = redis.call('ZADD', key, 'XX', 'CH', expires, lease)
  redis.call('ZADD', global_key, 'XX', expires, member(campaign, lease))
  redis.call('PEXPIRE', key, keep)
end
redis.call('PEXPIRE', global_key, keep)
return alive
";

/// KEYS: one set. Returns its live leases.
const COUNT: &str = r"
purge(KEYS[1], now_ms())
return redis.call('ZCARD', KEYS[1])
";

/// Names of the keys under one prefix; the scripts receive full key names so that the layout
/// is decided here only.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn campaign(&self, campaign_id: CampaignId) -> String {
        format!("{}campaign:{campaign_id}", self.prefix)
    }

    fn global(&self) -> String {
        format!("{}global", self.prefix)
    }
}

/// Longest lease lifetime sent to Redis (about 35 years): four of them added to the server
/// clock still fit `PEXPIRE`'s signed 64 bits and Lua's exact integers.
const MAX_TTL_MS: u64 = 1 << 40;

/// Milliseconds of a lease lifetime, at least 1: a zero TTL would make `PEXPIRE` delete the
/// keys outright.
fn ttl_millis(lease_ttl: Duration) -> u64 {
    u64::try_from(lease_ttl.as_millis())
        .unwrap_or(MAX_TTL_MS)
        .clamp(1, MAX_TTL_MS)
}

fn unavailable(what: &str, error: impl Display) -> LimiterError {
    LimiterError::Unavailable(format!("redis limiter {what}: {error}"))
}

/// `domain::pacing::take` on the server's clock, so every process shares one bucket: KEYS[1] holds
/// the next arrival time in microseconds; ARGV are the interval and the tolerance in
/// microseconds. Answers 0 when the event may happen now, else the microseconds to wait.
const PACE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local ahead = tat - now
if ahead > tolerance then
  return ahead - tolerance
end
-- Integral microseconds near 1.7e15: exact as doubles, but tostring would round them to
-- 14 significant digits (100 µs), which would skew every interval.
redis.call('SET', KEYS[1], string.format('%.0f', tat + interval), 'PX', math.floor((ahead + interval) / 1000) + 1000)
return 0
";

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

pub struct RedisLimiter {
    pool: Pool,
    keys: Keys,
    global_cap: u32,
    ttl_ms: u64,
    /// How long keys outlive their last write; see the module documentation.
    keep_ms: u64,
    acquire: Script,
    release: Script,
    renew: Script,
    count: Script,
    pace: Script,
}

impl RedisLimiter {
    /// Connects to the Redis at `url` (`limiter.url`) and checks it answers. `key_prefix` is
    /// prepended to every key, so several deployments can share one server.
    /// Connects to `url` (`redis://` or `rediss://`); a `rediss://` server's certificate is
    /// checked against the system's roots, or against `ca_file` (PEM) when given.
    pub async fn connect(
        url: &str,
        ca_file: Option<&std::path::Path>,
        global_cap: u32,
        lease_ttl: Duration,
        key_prefix: &str,
    ) -> Result<Self, LimiterError> {
        let timeouts = Timeouts {
            wait: Some(POOL_TIMEOUT),
            create: Some(POOL_TIMEOUT),
            recycle: Some(POOL_TIMEOUT),
        };
        // The url may carry a password: the messages name the setting, never its value.
        let invalid =
            |e: &dyn Display| LimiterError::Unavailable(format!("invalid limiter.url: {e}"));
        let pool = match ca_file {
            None => {
                let mut config = Config::from_url(url);
                config.pool = Some(PoolConfig {
                    timeouts,
                    ..PoolConfig::default()
                });
                config
                    .create_pool(Some(Runtime::Tokio1))
                    .map_err(|e| invalid(&e))?
            }
            Some(path) => {
                let root = std::fs::read(path).map_err(|e| {
                    LimiterError::Unavailable(format!(
                        "limiter.ca_file: cannot read {}: {e}",
                        path.display()
                    ))
                })?;
                let client = redis::Client::build_with_tls(
                    url,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root),
                    },
                )
                .map_err(|e| invalid(&e))?;
                let manager =
                    Manager::new(client.get_connection_info().clone()).map_err(|e| invalid(&e))?;
                Pool::builder(manager)
                    .runtime(Runtime::Tokio1)
                    .timeouts(timeouts)
                    .build()
                    .map_err(|e| invalid(&e))?
            }
        };
        let ttl_ms = ttl_millis(lease_ttl);
        let limiter = Self {
            pool,
            keys: Keys {
                prefix: key_prefix.to_owned(),
            },
            global_cap,
            ttl_ms,
            keep_ms: ttl_ms * 4,
            acquire: script(ACQUIRE),
            release: script(RELEASE),
            renew: script(RENEW),
            count: script(COUNT),
            pace: Script::new(PACE),
        };
        let mut conn = limiter.connection().await.map_err(|e| {
            LimiterError::Unavailable(format!("cannot reach the redis of limiter.url: {e}"))
        })?;
        let _: String = cmd("PING").query_async(&mut conn).await.map_err(|e| {
            LimiterError::Unavailable(format!("redis of limiter.url does not answer: {e}"))
        })?;
        Ok(limiter)
    }

    async fn connection(&self) -> Result<deadpool_redis::Connection, LimiterError> {
        self.pool
            .get()
            .await
            .map_err(|e| unavailable("connection", e))
    }

    async fn count(&self, key: String) -> Result<u32, LimiterError> {
        let mut conn = self.connection().await?;
        let n: u64 = self
            .count
            .key(key)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable("count", e))?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }
}

#[async_trait]
impl ConcurrencyLimiter for RedisLimiter {
    async fn acquire(
        &self,
        campaign_id: CampaignId,
        limit: u32,
        want: u32,
    ) -> Result<Vec<LeaseId>, LimiterError> {
        // More than `limit` can never be granted: no need to mint or ship more ids.
        let want = want.min(limit).min(self.global_cap);
        if want == 0 {
            return Ok(Vec::new());
        }
        let mut leases: Vec<LeaseId> = (0..want).map(|_| LeaseId::new()).collect();
        let mut invocation = self.acquire.prepare_invoke();
        invocation
            .key(self.keys.campaign(campaign_id))
            .key(self.keys.global())
            .arg(limit)
            .arg(want)
            .arg(self.global_cap)
            .arg(self.ttl_ms)
            .arg(self.keep_ms)
            .arg(campaign_id.to_string());
        for lease in &leases {
            invocation.arg(lease.to_string());
        }
        let mut conn = self.connection().await?;
        let granted: u64 = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable("acquire", e))?;
        leases.truncate(usize::try_from(granted).unwrap_or(usize::MAX));
        Ok(leases)
    }

    async fn release(&self, leases: &[(CampaignId, LeaseId)]) -> Result<(), LimiterError> {
        if leases.is_empty() {
            return Ok(());
        }
        let mut conn = self.connection().await?;
        for chunk in leases.chunks(BATCH) {
            let mut invocation = self.release.prepare_invoke();
            invocation.key(self.keys.global()).arg(self.keep_ms);
            for (campaign_id, lease) in chunk {
                invocation
                    .key(self.keys.campaign(*campaign_id))
                    .arg(campaign_id.to_string())
                    .arg(lease.to_string());
            }
            let _: i64 = invocation
                .invoke_async(&mut conn)
                .await
                .map_err(|e| unavailable("release", e))?;
        }
        Ok(())
    }

    async fn renew(&self, leases: &[(CampaignId, LeaseId)]) -> Result<Vec<bool>, LimiterError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let mut alive = Vec::with_capacity(leases.len());
        let mut conn = self.connection().await?;
        for chunk in leases.chunks(BATCH) {
            let mut invocation = self.renew.prepare_invoke();
            invocation
                .key(self.keys.global())
                .arg(self.ttl_ms)
                .arg(self.keep_ms);
            for (campaign_id, lease) in chunk {
                invocation
                    .key(self.keys.campaign(*campaign_id))
                    .arg(campaign_id.to_string())
                    .arg(lease.to_string());
            }
            // ZADD XX CH counts 1 for a member that existed (its expiry moved), 0 otherwise.
            let renewed: Vec<i64> = invocation
                .invoke_async(&mut conn)
                .await
                .map_err(|e| unavailable("renew", e))?;
            alive.extend(renewed.into_iter().map(|changed| changed > 0));
        }
        Ok(alive)
    }

    async fn active(&self, campaign_id: CampaignId) -> Result<u32, LimiterError> {
        self.count(self.keys.campaign(campaign_id)).await
    }

    async fn active_total(&self) -> Result<u32, LimiterError> {
        self.count(self.keys.global()).await
    }

    async fn pace(
        &self,
        key: &str,
        per_second: f64,
        burst: u32,
    ) -> Result<Option<Duration>, LimiterError> {
        let Some(pace) = Pace::new(per_second, burst) else {
            return Ok(None);
        };
        let mut conn = self.connection().await?;
        let wait_us: u64 = self
            .pace
            .key(format!("{}pace:{key}", self.keys.prefix))
            .arg(pace.interval_us)
            .arg(pace.tolerance_us())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable("pace", e))?;
        Ok((wait_us > 0).then(|| Duration::from_micros(wait_us)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_under_the_prefix() {
        let keys = Keys {
            prefix: "outbound:limiter:".into(),
        };
        let id = CampaignId(uuid::Uuid::from_u128(
            0x01890a5d_ac96_774b_bcce_b302099a8057,
        ));
        assert_eq!(
            keys.campaign(id),
            "outbound:limiter:campaign:01890a5d-ac96-774b-bcce-b302099a8057"
        );
        assert_eq!(keys.global(), "outbound:limiter:global");
    }

    #[test]
    fn ttl_is_whole_milliseconds_and_never_zero() {
        assert_eq!(ttl_millis(Duration::from_secs(30)), 30_000);
        assert_eq!(ttl_millis(Duration::from_micros(1_500)), 1);
        assert_eq!(ttl_millis(Duration::ZERO), 1);
        assert_eq!(ttl_millis(Duration::MAX), MAX_TTL_MS);
    }
}
