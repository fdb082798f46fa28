//! Statements both dialects accept, written once with `?` placeholders. SQLite runs the text as
//! it is; PostgreSQL gets the placeholders numbered (`$1`, `$2`, ...). Each text is built once
//! per process. Statements whose dialects differ (locking clauses, `unnest`, `RETURNING` on
//! PostgreSQL's CTEs, multi-row `VALUES`) stay in the store that runs them.

use std::sync::OnceLock;

use super::rows::{
    ATTEMPT_COLUMNS, AUDIT_COLUMNS, CALL_COLUMNS, CAMPAIGN_COLUMNS, CURRENT_CALL_COLUMNS,
    KEY_COLUMNS, STATS_COLUMNS, TIMELINE_COLUMNS,
};

pub struct Statement {
    sqlite_text: fn() -> String,
    postgres_text: fn() -> String,
    sqlite: OnceLock<String>,
    postgres: OnceLock<String>,
}

impl Statement {
    pub(crate) const fn new(text: fn() -> String) -> Self {
        Self::dialects(text, text)
    }

    /// A statement whose text differs between the dialects but binds the same values in the
    /// same order, plus (in SQLite's) any its store binds after them.
    pub(crate) const fn dialects(sqlite: fn() -> String, postgres: fn() -> String) -> Self {
        Self {
            sqlite_text: sqlite,
            postgres_text: postgres,
            sqlite: OnceLock::new(),
            postgres: OnceLock::new(),
        }
    }

    pub fn sqlite(&self) -> &str {
        self.sqlite
            .get_or_init(|| (self.sqlite_text)().replace(NOW_MS, SQLITE_NOW_MS))
    }

    pub fn postgres(&self) -> &str {
        self.postgres
            .get_or_init(|| numbered(&(self.postgres_text)().replace(NOW_MS, POSTGRES_NOW_MS)))
    }
}

/// Stands, in a statement's text, for the store's clock in milliseconds since the epoch: times
/// that decide between processes (heartbeats, orphan ages) are read on the one clock all
/// processes share, never compared across hosts.
const NOW_MS: &str = "{now_ms}";
const SQLITE_NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";
pub(crate) const POSTGRES_NOW_MS: &str =
    "CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)";

/// `text` with its `?` placeholders numbered `$1`, `$2`, ... in order; a `?` inside a quoted
/// literal or identifier is left alone.
fn numbered(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut quote: Option<char> = None;
    let mut next = 1;
    for c in text.chars() {
        match (quote, c) {
            (Some(open), c) if c == open => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '?') => {
                out.push_str(&format!("${next}"));
                next += 1;
                continue;
            }
            (None, _) => {}
        }
        out.push(c);
    }
    out
}

pub static LOAD_CAMPAIGN: Statement =
    Statement::new(|| format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = ?"));

/// A campaign's calling rules, written by the transaction that creates or updates it.
pub static SET_CAMPAIGN_RULES: Statement = Statement::new(|| {
    "UPDATE campaigns SET recipient_hours = ?, restricted_periods = ?, recipient_limits = ? \
     WHERE id = ?"
        .into()
});

/// Earlier attempts to one number since an instant (ms), any campaign's.
pub static PRIOR_ATTEMPTS: Statement = Statement::new(|| {
    "SELECT phone_number, campaign_id, started_at FROM number_attempts \
     WHERE phone_number = ? AND started_at > ?"
        .into()
});

/// An attempt's entry in its number's log, removed when it goes back unspent (it rang no one)
/// or before its create is checked again (it must not count against itself).
pub static FORGET_NUMBER_ATTEMPT: Statement = Statement::new(|| {
    "DELETE FROM number_attempts WHERE phone_number = ? AND call_id = ? AND attempt = ?".into()
});

/// The engine pauses a running campaign by itself, saying why.
pub static PAUSE_FOR_CARRIER: Statement = Statement::new(|| {
    "UPDATE campaigns SET status = 'paused', pause_reason = ?, updated_at = ? \
     WHERE id = ? AND status = 'in_progress'"
        .into()
});

/// Attempt times older than the longest cap window (ms) count toward no cap.
pub static PRUNE_NUMBER_ATTEMPTS: Statement =
    Statement::new(|| "DELETE FROM number_attempts WHERE started_at < {now_ms} - ?".into());

/// The entry covering a call of a campaign: global first.
pub static DNC_COVERING: Statement = Statement::new(|| {
    "SELECT phone_number, scope, reason, created_at FROM do_not_call \
     WHERE phone_number = ? AND scope IN ('global', ?) ORDER BY scope = 'global' DESC LIMIT 1"
        .into()
});

pub static DNC_ENTRY: Statement = Statement::new(|| {
    "SELECT phone_number, scope, reason, created_at FROM do_not_call WHERE phone_number = ? \
     ORDER BY scope = 'global' DESC, scope LIMIT 1"
        .into()
});

pub static DNC_PAGE: Statement = Statement::new(|| {
    "SELECT phone_number, scope, reason, created_at FROM do_not_call \
     WHERE (phone_number, scope) > (?, ?) ORDER BY phone_number, scope LIMIT ?"
        .into()
});

/// A campaign's waiting calls in id order, with the list entry covering each.
pub static PENDING_CALLS: Statement = Statement::new(|| {
    "SELECT c.id AS id, c.phone_number AS phone_number, c.status AS status, \
     c.next_attempt_at AS next_attempt_at, c.time_zone AS time_zone, \
     (SELECT d.scope FROM do_not_call d WHERE d.phone_number = c.phone_number \
     AND d.scope IN ('global', c.campaign_id) LIMIT 1) AS listed FROM calls c \
     WHERE c.campaign_id = ? AND c.status IN ('queued', 'retrying') AND c.id > ? \
     ORDER BY c.id LIMIT ?"
        .into()
});

/// The queued calls a claim would take next, with the list entry covering each.
pub static SCREEN_CALLS: Statement = Statement::new(|| {
    "SELECT c.id AS id, c.phone_number AS phone_number, c.status AS status, \
     c.next_attempt_at AS next_attempt_at, c.time_zone AS time_zone, \
     (SELECT d.scope FROM do_not_call d WHERE d.phone_number = c.phone_number \
     AND d.scope IN ('global', c.campaign_id) LIMIT 1) AS listed FROM calls c \
     WHERE c.campaign_id = ? AND c.status = 'queued' AND c.dial_after <= ? \
     AND NOT EXISTS (SELECT 1 FROM live_numbers l WHERE l.phone_number = c.phone_number) \
     ORDER BY c.dial_after, c.id LIMIT ?"
        .into()
});

/// A queued call a claim's screen canceled: its number is on the do-not-call list.
pub static FORBID_QUEUED: Statement = Statement::new(|| {
    "UPDATE calls SET status = 'canceled', last_error = 'do_not_call', dial_after = 0, \
     updated_at = ? WHERE id = ? AND status = 'queued'"
        .into()
});

/// A queued call a claim's screen set aside until its rules allow it.
pub static SET_ASIDE: Statement =
    Statement::new(|| "UPDATE calls SET dial_after = ? WHERE id = ? AND status = 'queued'".into());

pub static DNC_REMOVE: Statement =
    Statement::new(|| "DELETE FROM do_not_call WHERE phone_number = ?".into());

/// A call whose number is on the do-not-call list, after its attempt went back unspent.
pub static FORBID_CALL: Statement = Statement::new(|| {
    "UPDATE calls SET status = 'canceled', last_error = 'do_not_call', dial_after = 0 \
     WHERE id = ?"
        .into()
});

/// A campaign's calls set aside by its old rules, claimable again so its new rules screen them.
pub static REOPEN_HELD: Statement = Statement::new(|| {
    "UPDATE calls SET dial_after = 0 WHERE campaign_id = ? AND status = 'queued' \
     AND dial_after > 0"
        .into()
});

/// A call held back by a calling rule is not claimed before the instant it may be dialed.
pub static HOLD_CALL: Statement =
    Statement::new(|| "UPDATE calls SET dial_after = ? WHERE id = ?".into());

/// An entry written twice (by its change's transaction, whose answer was lost, and again by
/// the guard) is kept once.
pub static INSERT_AUDIT: Statement = Statement::new(|| {
    "INSERT INTO audit_log (id, at, key_id, key_name, method, route, resource_id, status, \
     request_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
        .into()
});

pub static INSERT_KEY: Statement = Statement::new(|| {
    "INSERT INTO api_keys (id, name, role, hash, created_at) VALUES (?, ?, ?, ?, ?)".into()
});

pub static LOAD_KEY: Statement =
    Statement::new(|| format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?"));

pub static KEYS: Statement =
    Statement::new(|| format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id"));

/// Keeps the first revocation time of a key revoked twice.
pub static REVOKE_KEY: Statement = Statement::new(|| {
    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?".into()
});

/// Audit entries older than an id, newest first. Ids are UUID v7 text (byte order under
/// PostgreSQL's "C" collation): "before" in id order is "older"; every id sorts below "g", so
/// that bound reads from the newest.
pub static AUDIT_PAGE: Statement = Statement::new(|| {
    format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id < ? ORDER BY id DESC LIMIT ?")
});

/// Removes the audit entries recorded before a time.
pub static PRUNE_AUDIT: Statement = Statement::new(|| "DELETE FROM audit_log WHERE at < ?".into());

/// The bound of `AUDIT_PAGE` that reads from the newest entry.
pub const AUDIT_FROM_NEWEST: &str = "g";

pub static CAMPAIGN_STATS: Statement = Statement::dialects(
    || {
        format!(
            "SELECT {STATS_COLUMNS}, {} FROM campaign_stats WHERE campaign_id = ?",
            responses("json_group_object(response, calls)")
        )
    },
    || {
        format!(
            "SELECT {STATS_COLUMNS}, {} FROM campaign_stats WHERE campaign_id = ?",
            responses("json_object_agg(response, calls)::text")
        )
    },
);

/// The campaign's calls by response, as a JSON object (`NULL` when there are none), read with
/// its counters in one statement; `aggregate` is the dialect's object aggregate.
fn responses(aggregate: &str) -> String {
    format!(
        "(SELECT {aggregate} FROM campaign_responses r \
         WHERE r.campaign_id = campaign_stats.campaign_id AND r.calls > 0) AS responses"
    )
}

/// Moves a campaign's counters by a `StatsDelta`, in field order, then `updated_at` and the id.
pub static APPLY_STATS: Statement = Statement::new(|| {
    "UPDATE campaign_stats SET total_calls = total_calls + ?, queued = queued + ?, \
     retrying = retrying + ?, dialing = dialing + ?, completed = completed + ?, \
     failed = failed + ?, canceled = canceled + ?, attempts_total = attempts_total + ?, \
     retries_attempted = retries_attempted + ?, duration_ms_total = duration_ms_total + ?, \
     finished_attempts = finished_attempts + ?, updated_at = ? WHERE campaign_id = ?"
        .to_owned()
});

/// A page of campaigns in one status, after an id: `(status, id)` is an index.
pub static CAMPAIGNS_IN_STATUS: Statement = Statement::new(|| {
    format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE status = ? AND id > ? \
         ORDER BY id LIMIT ?"
    )
});

pub static CAMPAIGNS: Statement = Statement::new(|| {
    format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id > ? ORDER BY id LIMIT ?")
});

pub static RUNNABLE_CAMPAIGNS: Statement = Statement::new(|| {
    format!(
        "SELECT {CAMPAIGN_COLUMNS}, s.queued AS queued, s.dialing AS dialing FROM campaigns \
         JOIN campaign_stats s ON s.campaign_id = campaigns.id \
         WHERE campaigns.status = 'in_progress' AND s.queued > 0 ORDER BY campaigns.id"
    )
});

/// A page of a campaign's calls in one status, after a call id.
pub static CALLS_IN_STATUS: Statement = Statement::new(|| {
    format!(
        "SELECT {CALL_COLUMNS} FROM calls WHERE campaign_id = ? AND status = ? AND id > ? \
         ORDER BY id LIMIT ?"
    )
});

/// A page of a campaign's calls to one number, after a call id, in one status or in any (an
/// empty status).
pub static CALLS_OF_NUMBER: Statement = Statement::new(|| {
    format!(
        "SELECT {CALL_COLUMNS} FROM calls WHERE phone_number = ? AND campaign_id = ? \
         AND (? = '' OR status = ?) AND id > ? ORDER BY id LIMIT ?"
    )
});

/// A page of a campaign's calls, after a call id.
pub static CALLS: Statement = Statement::new(|| {
    format!("SELECT {CALL_COLUMNS} FROM calls WHERE campaign_id = ? AND id > ? ORDER BY id LIMIT ?")
});

/// Every attempt of a call the store holds, dialing or finished.
pub static CALL_ATTEMPTS: Statement = Statement::new(|| {
    format!(
        "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE campaign_id = ? AND call_id = ? \
         ORDER BY attempt"
    )
});

/// The finished attempts of a call: the store as its own timeline.
pub static FINISHED_CALL_ATTEMPTS: Statement = Statement::new(|| {
    format!(
        "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE campaign_id = ? AND call_id = ? \
         AND ended_at IS NOT NULL ORDER BY attempt"
    )
});

/// Finished attempts waiting to be exported to a separate timeline; one whose webhook is still
/// to be rendered from it (its event not fanned out yet, or its delivery not yet tried) waits
/// until it is: offered now, it would be copied again every round and never forgotten.
pub static TIMELINE_BACKLOG: Statement = Statement::new(|| {
    format!(
        "SELECT {TIMELINE_COLUMNS} FROM attempts WHERE ended_at IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.body IS NULL \
         AND d.type = 'attempt.finished' AND d.call_id = attempts.call_id \
         AND d.attempt = attempts.attempt) \
         AND NOT EXISTS (SELECT 1 FROM webhook_events ev WHERE ev.type = 'attempt.finished' \
         AND ev.call_id = attempts.call_id AND ev.attempt = attempts.attempt) LIMIT ?"
    )
});

/// Dialing attempts whose owner stopped heartbeating before a time.
/// Dialing attempts whose owner has not heartbeated for `?` milliseconds, on the store's clock;
/// of those placed, only the ones placed more than `?` milliseconds ago (longer than any call
/// lasts), since a placed call may still be live at the carrier.
pub static ORPHANED_ATTEMPTS: Statement = Statement::new(|| {
    "SELECT c.id AS call_id, c.campaign_id AS campaign_id, c.attempt_count AS attempt, \
     k.max_attempts AS max_attempts, k.base_delay_ms AS base_delay_ms, \
     k.max_delay_ms AS max_delay_ms, k.jitter AS jitter, c.owner AS owner, \
     c.placed_at AS placed_at, c.phone_number AS phone_number, a.carrier AS carrier \
     FROM calls c \
     JOIN campaigns k ON k.id = c.campaign_id \
     LEFT JOIN instances i ON i.id = c.owner \
     LEFT JOIN attempts a ON a.campaign_id = c.campaign_id AND a.call_id = c.id \
     AND a.attempt = c.attempt_count \
     WHERE c.status = 'dialing' \
     AND (i.heartbeat_at IS NULL OR i.heartbeat_at < {now_ms} - ?) \
     AND (c.placed_at IS NULL OR c.placed_at < {now_ms} - ? \
     OR (a.carrier IS NULL AND c.placed_at < {now_ms} - ?)) LIMIT ?"
        .to_owned()
});

/// Records that instance `?` is alive now, on the store's clock.
pub static HEARTBEAT: Statement = Statement::new(|| {
    "INSERT INTO instances (id, heartbeat_at) VALUES (?, {now_ms}) \
     ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at"
        .to_owned()
});

/// Forgets instances silent for `?` milliseconds that hold no call.
pub static PRUNE_INSTANCES: Statement = Statement::new(|| {
    "DELETE FROM instances WHERE heartbeat_at < {now_ms} - ? \
     AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.owner = instances.id \
     AND c.status = 'dialing')"
        .to_owned()
});

/// A campaign's new attempt budget, for every call not yet finished: a call's budget is its
/// campaign's, whether it was registered, triggered or is waiting out a backoff.
pub static RETRY_BUDGET: Statement = Statement::new(|| {
    "UPDATE calls SET max_attempts = ? WHERE campaign_id = ? \
     AND status IN ('queued', 'retrying', 'dialing')"
        .to_owned()
});

/// The campaign's limit and dialing calls, and the calls dialing in the whole deployment (one
/// live number each), if the campaign is `in_progress`.
pub static CLAIM_CAPACITY: Statement = Statement::new(|| {
    "SELECT k.max_concurrent_calls AS campaign_limit, s.dialing AS campaign_dialing, \
     (SELECT count(*) FROM live_numbers) AS global_dialing FROM campaigns k \
     JOIN campaign_stats s ON s.campaign_id = k.id WHERE k.id = ? AND k.status = 'in_progress'"
        .to_owned()
});

/// Claimed calls with their campaign's status and hours, as the dialer checks them: SQLite's
/// by ids in one JSON array, PostgreSQL's by campaign and call ids, locked. A duplicate in the
/// batch is judged on the call as the first answer left it (`DialDecision::leave`).
pub static BEGIN_CALLS: Statement = Statement::dialects(
    || {
        format!(
            "{} WHERE c.id IN (SELECT value FROM json_each(?))",
            begin_calls()
        )
    },
    || {
        format!(
            "{} WHERE (c.campaign_id, c.id) IN (SELECT * FROM unnest(?::text[], ?::text[])) \
             ORDER BY c.campaign_id, c.id FOR UPDATE OF c",
            begin_calls()
        )
    },
);

fn begin_calls() -> String {
    format!(
        "SELECT {CURRENT_CALL_COLUMNS}, k.time_zone AS time_zone, \
         k.business_hours AS business_hours, k.recipient_hours AS recipient_hours, \
         k.restricted_periods AS restricted_periods, k.recipient_limits AS recipient_limits, \
         c.phone_number AS phone_number, c.campaign_id AS call_campaign_id, \
         c.time_zone AS call_time_zone, (SELECT d.scope FROM do_not_call d \
         WHERE d.phone_number = c.phone_number AND d.scope IN ('global', c.campaign_id) \
         LIMIT 1) AS listed FROM calls c \
         JOIN campaigns k ON k.id = c.campaign_id \
         LEFT JOIN attempts a ON a.campaign_id = c.campaign_id AND a.call_id = c.id \
         AND a.attempt = c.attempt_count"
    )
}

/// Reported calls as they are: SQLite's by ids in one JSON array, PostgreSQL's by campaign
/// and an array of ids, locked in id order.
pub static CURRENT_CALLS: Statement = Statement::dialects(
    || {
        format!(
            "{} WHERE c.id IN (SELECT value FROM json_each(?))",
            current_calls()
        )
    },
    || {
        format!(
            "{} WHERE c.campaign_id = ? AND c.id = ANY(?) ORDER BY c.id FOR UPDATE OF c",
            current_calls()
        )
    },
);

/// One call as it is, by id.
pub static CURRENT_CALL: Statement =
    Statement::new(|| format!("{} WHERE c.id = ?", current_calls()));

fn current_calls() -> String {
    format!(
        "SELECT {CURRENT_CALL_COLUMNS} FROM calls c \
         JOIN campaigns k ON k.id = c.campaign_id \
         LEFT JOIN attempts a ON a.campaign_id = c.campaign_id AND a.call_id = c.id \
         AND a.attempt = c.attempt_count"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_outside_quotes_only() {
        assert_eq!(
            numbered("SELECT '?' AS q, \"a?\" FROM t WHERE a = ? AND b > ? LIMIT ?"),
            "SELECT '?' AS q, \"a?\" FROM t WHERE a = $1 AND b > $2 LIMIT $3"
        );
        assert_eq!(HEARTBEAT.postgres().matches('$').count(), 1);
        assert!(HEARTBEAT.postgres().contains("clock_timestamp()"));
        assert!(HEARTBEAT.sqlite().contains("julianday('now')"));
        assert!(!ORPHANED_ATTEMPTS.postgres().contains(NOW_MS));
        assert_eq!(APPLY_STATS.postgres().matches('$').count(), 13);
        assert!(APPLY_STATS.postgres().ends_with("WHERE campaign_id = $13"));
        assert!(!LOAD_CAMPAIGN.sqlite().contains('$'));
    }
}
