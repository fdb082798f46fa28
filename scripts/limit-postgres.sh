#!/usr/bin/env bash
# The distributed store's physical limit on this machine, the PostgreSQL twin of limit-sqlite.sh:
# the engine's write path for N attempts done set-based in batches of B by psql, in ONE session,
# on the project's own schema (migrations/postgres, applied as diesel applies them), no engine
# logic at all:
#   claim:  queued -> dialing (attempt counted, owner), statistics, the number into live_numbers
#   begin:  placed_at set, the per-number attempt log row (frequency caps)
#   record: attempt row, dialing -> completed, statistics, the number out of live_numbers
# Durability: the engine's PostgreSQL adapter sets nothing per connection or session (no
# synchronous_commit, no SET: READ COMMITTED transactions on the server's defaults), so neither
# does this; the server's synchronous_commit/fsync are echoed on stderr, since they decide the
# number (the test server of scripts/test-services.sh runs with fsync=off, synchronous_commit=off).
# Left out: the claim's reads (capacity, calling-rule screen, SKIP LOCKED pick, live-number
# check), begin's and record's FOR UPDATE reads and domain decisions, prepared statements, the
# webhook_events insert (none without an endpoint), and that the engine's claim writes the
# attempts row ('dialing') and record updates it, where this (like limit-sqlite.sh) inserts it
# at record, so both stores do the same row writes. The migrations arm no triggers on a fresh
# database (webhook triggers exist only while an endpoint does), so none fire here.
# Ids are TEXT COLLATE "C" (UUID v7 text in the engine), so zero-padded decimal ids sort in
# byte order and a batch is an id range on the (campaign_id, status, id) index; every statement
# names campaign_id, the Citus distribution column, as the engine's do.
# Columns are named, so a migration that adds columns with defaults does not break it.
# Prints one JSON line with attempts/s; on failure {"scenario": "postgres_limit", "error": ...}
# and exit 1. The server is $DATABASE_URL, else $OUTBOUND_TEST_DATABASE_URL (a postgres:// URL);
# a throwaway database is created on it and dropped at the end.
# usage: scripts/limit-postgres.sh [N] [B] (from the project checkout)
set -eu
n=${1:-200000}; b=${2:-500}
usage() { echo "limit-postgres: $1 (usage: scripts/limit-postgres.sh [N] [B])" >&2; exit 2; }
[[ $n =~ ^[1-9][0-9]*$ ]] || usage "N must be a positive integer, got '$n'"
[[ $b =~ ^[1-9][0-9]*$ ]] || usage "B must be a positive integer, got '$b'"
# phone numbers are +1415 and 7 digits, as in limit-sqlite.sh; one live call per number
((n <= 9999999)) || usage "N must be at most 9999999"
server=${DATABASE_URL:-${OUTBOUND_TEST_DATABASE_URL:-}}
[ -n "$server" ] || usage "set DATABASE_URL (or OUTBOUND_TEST_DATABASE_URL) to a postgres:// URL"
[[ $server =~ ^postgres(ql)?:// ]] || usage "DATABASE_URL must be a postgres:// or postgresql:// URL"
compgen -G 'migrations/postgres/*/up.sql' >/dev/null || usage "no migrations/postgres: run it from the project checkout"

fail() {
  python3 -c 'import json, sys; print(json.dumps({"scenario": "postgres_limit", "error": sys.argv[1]}))' "$1"
  exit 1
}
# $server with its database (the URL's path) replaced by $1, query string kept.
with_database() {
  local base=${server%%\?*} query="" rest
  [[ $server == *\?* ]] && query="?${server#*\?}"
  rest=${base#*://}
  printf '%s://%s/%s%s' "${base%%://*}" "${rest%%/*}" "$1" "$query"
}
# -w: never wait at a password prompt (the password comes with the URL or ~/.pgpass)
sql() { psql -X -w -q -v ON_ERROR_STOP=1 "$@"; }
# the migrations' notices (DROP TRIGGER IF EXISTS on a fresh database) are noise
migrate() { PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning" sql -d "$url" "$@" >/dev/null; }

name=outbound_limit_$$_$RANDOM
url=$(with_database "$name")
d=$(mktemp -d)
created=
cleanup() {
  local rc=$?
  if [ -n "$created" ]; then
    sql -d "$server" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null ||
      echo "limit-postgres: could not drop database $name" >&2
  fi
  rm -rf "$d"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

sql -d "$server" -c "CREATE DATABASE $name" >/dev/null || fail "cannot create database $name"
created=1
# Each migration as diesel runs it: in one transaction, unless its metadata.toml says
# run_in_transaction = false (CREATE INDEX CONCURRENTLY cannot run in one).
for up in migrations/postgres/*/up.sql; do
  m=${up%/up.sql}
  if grep -Eqs '^[[:space:]]*run_in_transaction[[:space:]]*=[[:space:]]*false' "$m/metadata.toml"; then
    migrate -f "$up" || fail "migration ${m##*/} failed"
  else
    migrate --single-transaction -f "$up" || fail "migration ${m##*/} failed"
  fi
done
sql -d "$url" >/dev/null <<SQL || fail "seeding failed"
INSERT INTO campaigns (id, name, description, time_zone, status, max_concurrent_calls, max_attempts,
  base_delay_ms, max_delay_ms, jitter, business_hours, target_count, created_at, updated_at)
  VALUES ('c', 'c', '', 'UTC', 'in_progress', 100000, 1, 1, 1, 0, '[]', $n, 0, 0);
INSERT INTO campaign_names (name_key, campaign_id) VALUES ('c', 'c');
INSERT INTO campaign_stats (campaign_id, total_targets, total_calls, queued, updated_at) VALUES ('c', $n, $n, $n, 0);
INSERT INTO calls (id, campaign_id, phone_number, status, attempt_count, max_attempts, scheduled_at, created_at, updated_at)
SELECT lpad(i::text, 12, '0'), 'c', '+1415' || lpad(i::text, 7, '0'), 'queued', 0, 1, 0, 0, 0
FROM generate_series(1, $n) AS s(i);
-- planner statistics a running deployment would have; outside the timed part
VACUUM ANALYZE;
SQL
settings=$(sql -d "$url" -At -c "SELECT 'synchronous_commit=' || current_setting('synchronous_commit')
  || ' fsync=' || current_setting('fsync') || ' full_page_writes=' || current_setting('full_page_writes')") ||
  fail "cannot read server settings"
echo "limit-postgres: server $settings (server defaults; the engine sets none per session)" >&2

# The last batch may be short: statistics move by the batch's real size.
for ((k = 0; k < n; k += b)); do
  h=$((k + b < n ? k + b : n)); c=$((h - k))
  printf -v lo '%012d' $((k + 1)); printf -v hi '%012d' "$h"
  r="campaign_id='c' AND status='dialing' AND id BETWEEN '$lo' AND '$hi'"
  printf '%s\n' "BEGIN; UPDATE calls SET status='dialing', attempt_count=attempt_count+1, owner='p', updated_at=1 WHERE campaign_id='c' AND status='queued' AND id BETWEEN '$lo' AND '$hi';
INSERT INTO live_numbers (phone_number, campaign_id, call_id) SELECT phone_number, 'c', id FROM calls WHERE $r;
UPDATE campaign_stats SET queued=queued-$c, dialing=dialing+$c, attempts_total=attempts_total+$c WHERE campaign_id='c'; COMMIT;
BEGIN; UPDATE calls SET placed_at=1 WHERE $r;
INSERT INTO number_attempts (phone_number, started_at, campaign_id, call_id, attempt) SELECT phone_number, 1, 'c', id, 1 FROM calls WHERE $r; COMMIT;
BEGIN; INSERT INTO attempts (campaign_id, call_id, attempt, status, error, started_at, ended_at, duration_ms) SELECT 'c', id, 1, 'completed', NULL, 1, 2, 1 FROM calls WHERE $r;
DELETE FROM live_numbers WHERE phone_number IN (SELECT phone_number FROM calls WHERE $r);
UPDATE calls SET status='completed', owner=NULL, updated_at=2 WHERE $r;
UPDATE campaign_stats SET dialing=dialing-$c, completed=completed+$c, finished_attempts=finished_attempts+$c WHERE campaign_id='c'; COMMIT;"
done > "$d/work.sql"
t0=$(date +%s.%N)
sql -d "$url" -f "$d/work.sql" >/dev/null || fail "write path failed (psql exit $?)"
t1=$(date +%s.%N)
done_n=$(sql -d "$url" -At -c "SELECT completed FROM campaign_stats WHERE campaign_id='c'") ||
  fail "cannot read campaign_stats"
[ "$done_n" = "$n" ] || fail "completed $done_n of $n"
python3 -c 'import sys; n, t = int(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2])
print("{\"scenario\": \"postgres_limit\", \"attempts\": %d, \"seconds\": %.3f, \"attempts_per_sec\": %.0f}" % (n, t, n / t))' \
  "$done_n" "$t0" "$t1"
