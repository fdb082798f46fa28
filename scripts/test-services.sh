#!/usr/bin/env bash
# Starts the throwaway services the integration tests need (Redis, PostgreSQL, and Chromium's
# WebDriver for the console), and exports where they listen. Meant to be sourced
# (scripts/test.sh does), so the exports reach the `cargo test` that follows:
#
#   source scripts/test-services.sh && cargo test --test it limiter
#
# Each service gets a start function that installs what is missing, picks a free loopback port,
# starts an instance under a temporary directory, waits for it and exports its URL; cleanup runs
# on EXIT of the sourcing shell. Every instance is private to this run, so parallel runs and
# left-over state cannot leak into the tests. `OUTBOUND_TEST_NO_BROWSER=1` leaves Chromium out.
set -euo pipefail

OUTBOUND_TEST_SERVICES_DIR="$(mktemp -d "${TMPDIR:-/tmp}/outbound-test-services.XXXXXX")"
# Stop functions of the started services, run in reverse order by outbound_stop_test_services.
OUTBOUND_TEST_SERVICES_STOPS=()

outbound_as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  else
    sudo "$@"
  fi
}

# apt-get install, refreshing the package lists only when the first attempt fails: a fresh
# container has none, but an up-to-date machine should not pay for the download.
outbound_apt_install() {
  if ! outbound_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"; then
    outbound_as_root apt-get update
    outbound_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
  fi
}

# Prints a TCP port nobody listens on. The kernel picks it, so two runs do not race for the
# same guess; the short window before the server binds it is acceptable for tests.
outbound_free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
    return
  fi
  local port
  for _ in $(seq 1 200); do
    port=$((20000 + RANDOM % 40000))
    # A refused connection means the port is free.
    if ! (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then
      echo "${port}"
      return
    fi
  done
  echo "test-services: no free port found" >&2
  return 1
}

# Runs "$@" every 0.1 s until it succeeds or `deadline_s` elapses.
outbound_wait_for() {
  local deadline_s=$1 what=$2
  shift 2
  local until=$((SECONDS + deadline_s))
  until "$@" >/dev/null 2>&1; do
    if [ "${SECONDS}" -ge "${until}" ]; then
      echo "test-services: ${what} not ready after ${deadline_s} s" >&2
      return 1
    fi
    sleep 0.1
  done
}

# ---------------------------------------------------------------------------------------------
# TLS: a throwaway certificate authority and a server certificate for 127.0.0.1 and localhost,
# which the Redis and PostgreSQL servers below also serve TLS with.

outbound_make_certificates() {
  if ! command -v openssl >/dev/null 2>&1; then
    outbound_apt_install openssl
  fi
  local dir="${OUTBOUND_TEST_SERVICES_DIR}/tls"
  mkdir -p "${dir}"
  (
    cd "${dir}"
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
      -subj /CN=outbound-test-ca -days 2 -keyout ca.key -out ca.crt
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
      -subj /CN=localhost -keyout server.key -out server.csr
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -out server.crt -extfile server.ext
    chmod 644 server.key
  ) >"${dir}/openssl.log" 2>&1 || {
    cat "${dir}/openssl.log" >&2
    return 1
  }
  export OUTBOUND_TEST_TLS_CA="${dir}/ca.crt"
}

# ---------------------------------------------------------------------------------------------
# Redis: the distributed concurrency limiter.

outbound_redis_ping() {
  [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = "PONG" ]
}

outbound_start_redis() {
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    echo "test-services: installing redis-server"
    outbound_apt_install redis-server
  fi
  local dir="${OUTBOUND_TEST_SERVICES_DIR}/redis"
  mkdir -p "${dir}"
  OUTBOUND_TEST_REDIS_PORT="$(outbound_free_port)"
  # Debian's package does not start a server here (no systemd), and a shared one would mix
  # state between runs: this one persists nothing and lives only as long as the run.
  OUTBOUND_TEST_REDIS_TLS_PORT="$(outbound_free_port)"
  local tls="${OUTBOUND_TEST_SERVICES_DIR}/tls"
  redis-server --port "${OUTBOUND_TEST_REDIS_PORT}" --bind 127.0.0.1 \
    --tls-port "${OUTBOUND_TEST_REDIS_TLS_PORT}" --tls-cert-file "${tls}/server.crt" \
    --tls-key-file "${tls}/server.key" --tls-ca-cert-file "${tls}/ca.crt" --tls-auth-clients no \
    --save "" --appendonly no --daemonize yes \
    --pidfile "${dir}/redis.pid" --dir "${dir}" --logfile "${dir}/redis.log"
  OUTBOUND_TEST_SERVICES_STOPS+=(outbound_stop_redis)
  if ! outbound_wait_for 20 "redis on port ${OUTBOUND_TEST_REDIS_PORT}" \
    outbound_redis_ping "${OUTBOUND_TEST_REDIS_PORT}"; then
    cat "${dir}/redis.log" >&2 || true
    return 1
  fi
  export OUTBOUND_TEST_REDIS_URL="redis://127.0.0.1:${OUTBOUND_TEST_REDIS_PORT}/"
  export OUTBOUND_TEST_REDIS_TLS_URL="rediss://127.0.0.1:${OUTBOUND_TEST_REDIS_TLS_PORT}/"
  echo "test-services: redis at ${OUTBOUND_TEST_REDIS_URL}"
  # How the fault-injection suite restarts this server: empty, as after a crash without
  # persistence.
  printf '#!/bin/sh\nredis-cli -h 127.0.0.1 -p %s shutdown nosave >/dev/null 2>&1\nsleep 1\nexec redis-server --port %s --bind 127.0.0.1 --tls-port %s --tls-cert-file %q --tls-key-file %q --tls-ca-cert-file %q --tls-auth-clients no --save "" --appendonly no --daemonize yes --pidfile %q --dir %q --logfile %q\n' \
    "${OUTBOUND_TEST_REDIS_PORT}" "${OUTBOUND_TEST_REDIS_PORT}" "${OUTBOUND_TEST_REDIS_TLS_PORT}" \
    "${tls}/server.crt" "${tls}/server.key" "${tls}/ca.crt" "${dir}/redis.pid" "${dir}" \
    "${dir}/redis.log" >"${dir}/restart.sh"
  chmod 755 "${dir}/restart.sh"
  export OUTBOUND_TEST_REDIS_RESTART="${dir}/restart.sh"
}

outbound_stop_redis() {
  local pidfile="${OUTBOUND_TEST_SERVICES_DIR}/redis/redis.pid"
  if [ -n "${OUTBOUND_TEST_REDIS_PORT:-}" ]; then
    redis-cli -h 127.0.0.1 -p "${OUTBOUND_TEST_REDIS_PORT}" shutdown nosave >/dev/null 2>&1 || true
  fi
  # Covers a server that never answered: it may still be running.
  if [ -f "${pidfile}" ]; then
    kill "$(cat "${pidfile}")" 2>/dev/null || true
  fi
  unset OUTBOUND_TEST_REDIS_URL OUTBOUND_TEST_REDIS_TLS_URL
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL: the distributed store. The tests create a database per case on this server.

# Prints the bin directory of the newest installed PostgreSQL server, if any.
outbound_postgres_bin() {
  local initdb
  initdb="$(ls -1 /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)"
  [ -n "${initdb}" ] || return 1
  dirname "${initdb}"
}

# Runs "$@" as the `postgres` user when running as root (initdb and postgres refuse root),
# as the current user otherwise.
outbound_as_postgres() {
  if [ "$(id -u)" -ne 0 ]; then
    "$@"
  elif command -v runuser >/dev/null 2>&1; then
    runuser -u postgres -- "$@"
  else
    su postgres -s /bin/sh -c '"$0" "$@"' -- "$@"
  fi
}

outbound_postgres_ready() {
  "${OUTBOUND_TEST_POSTGRES_BIN}/pg_isready" -q -h 127.0.0.1 -p "$1" -U postgres -d postgres
}

outbound_start_postgres() {
  if ! OUTBOUND_TEST_POSTGRES_BIN="$(outbound_postgres_bin)"; then
    echo "test-services: installing postgresql"
    outbound_apt_install postgresql
    OUTBOUND_TEST_POSTGRES_BIN="$(outbound_postgres_bin)" || {
      echo "test-services: no initdb under /usr/lib/postgresql after installing" >&2
      return 1
    }
  fi
  local bin="${OUTBOUND_TEST_POSTGRES_BIN}"
  local dir="${OUTBOUND_TEST_SERVICES_DIR}/postgres"
  mkdir -p "${dir}/sock"
  if [ "$(id -u)" -eq 0 ]; then
    # The server runs as `postgres`: it must reach its folder inside our private one.
    chmod 711 "${OUTBOUND_TEST_SERVICES_DIR}"
    chown -R postgres:postgres "${dir}"
  fi
  OUTBOUND_TEST_POSTGRES_PORT="$(outbound_free_port)"
  # Trust on loopback and a C locale (always present); nothing here outlives the run, so
  # durability is traded for speed.
  if ! (cd "${dir}" && outbound_as_postgres "${bin}/initdb" -D "${dir}/data" -A trust \
    -U postgres --encoding=UTF8 --locale=C --no-sync >"${dir}/initdb.log" 2>&1); then
    cat "${dir}/initdb.log" >&2 || true
    return 1
  fi
  # TLS with the test certificate; the role `tls_only` may connect over TLS only, so a test
  # can tell that a connection really was encrypted.
  cp "${OUTBOUND_TEST_SERVICES_DIR}/tls/server.crt" "${OUTBOUND_TEST_SERVICES_DIR}/tls/server.key" "${dir}/"
  chmod 600 "${dir}/server.key"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres:postgres "${dir}/server.crt" "${dir}/server.key"
  fi
  {
    echo "hostssl all tls_only 127.0.0.1/32 trust"
    echo "host all tls_only 127.0.0.1/32 reject"
    cat "${dir}/data/pg_hba.conf"
  } >"${dir}/pg_hba.conf.new"
  cat "${dir}/pg_hba.conf.new" >"${dir}/data/pg_hba.conf"
  OUTBOUND_TEST_SERVICES_STOPS+=(outbound_stop_postgres)
  local options="-p ${OUTBOUND_TEST_POSTGRES_PORT} -k '${dir}/sock'"
  options+=" -c ssl=on -c ssl_cert_file='${dir}/server.crt' -c ssl_key_file='${dir}/server.key'"
  options+=" -c listen_addresses=127.0.0.1 -c max_connections=300"
  options+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  if ! (cd "${dir}" && outbound_as_postgres "${bin}/pg_ctl" -D "${dir}/data" \
    -l "${dir}/postgres.log" -w -t 60 -o "${options}" start >/dev/null); then
    cat "${dir}/postgres.log" >&2 || true
    return 1
  fi
  if ! outbound_wait_for 30 "postgres on port ${OUTBOUND_TEST_POSTGRES_PORT}" \
    outbound_postgres_ready "${OUTBOUND_TEST_POSTGRES_PORT}"; then
    cat "${dir}/postgres.log" >&2 || true
    return 1
  fi
  "${bin}/psql" -q -h 127.0.0.1 -p "${OUTBOUND_TEST_POSTGRES_PORT}" -U postgres -d postgres \
    -c "CREATE ROLE tls_only SUPERUSER LOGIN" >/dev/null
  export OUTBOUND_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:${OUTBOUND_TEST_POSTGRES_PORT}/postgres"
  export OUTBOUND_TEST_DATABASE_TLS_URL="postgres://tls_only@127.0.0.1:${OUTBOUND_TEST_POSTGRES_PORT}/postgres"
  echo "test-services: postgres at ${OUTBOUND_TEST_DATABASE_URL}"
  # How the fault-injection suite restarts this server (same port and options).
  local as_postgres=""
  if [ "$(id -u)" -eq 0 ]; then
    as_postgres="runuser -u postgres --"
  fi
  printf '#!/bin/sh\ncd %q && exec %s %q -D %q -l %q -m fast -w -t 60 restart >/dev/null\n' \
    "${dir}" "${as_postgres}" "${bin}/pg_ctl" "${dir}/data" "${dir}/postgres.log" \
    >"${dir}/restart.sh"
  chmod 755 "${dir}/restart.sh"
  export OUTBOUND_TEST_POSTGRES_RESTART="${dir}/restart.sh"
}

outbound_stop_postgres() {
  local data="${OUTBOUND_TEST_SERVICES_DIR}/postgres/data"
  if [ -n "${OUTBOUND_TEST_POSTGRES_BIN:-}" ] && [ -f "${data}/postmaster.pid" ]; then
    (cd "${OUTBOUND_TEST_SERVICES_DIR}" &&
      outbound_as_postgres "${OUTBOUND_TEST_POSTGRES_BIN}/pg_ctl" -D "${data}" -m fast -w -t 30 \
        stop >/dev/null 2>&1) || true
  fi
  unset OUTBOUND_TEST_DATABASE_URL OUTBOUND_TEST_DATABASE_TLS_URL
}

# ---------------------------------------------------------------------------------------------
# Chromium and its WebDriver: the console's browser test drives a headless Chromium.

outbound_webdriver_ready() {
  curl -fsS "http://127.0.0.1:$1/status" 2>/dev/null | grep -q '"ready": *true'
}

outbound_start_chromedriver() {
  if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
    echo "test-services: installing chromium and chromium-driver"
    # Without the recommended packages: about 26 instead of a desktop's worth.
    outbound_apt_install --no-install-recommends chromium chromium-driver
  fi
  if ! command -v curl >/dev/null 2>&1; then
    outbound_apt_install curl
  fi
  local dir="${OUTBOUND_TEST_SERVICES_DIR}/chromedriver"
  mkdir -p "${dir}"
  OUTBOUND_TEST_CHROMEDRIVER_PORT="$(outbound_free_port)"
  # Listens on loopback only (its default).
  chromedriver --port="${OUTBOUND_TEST_CHROMEDRIVER_PORT}" \
    --log-path="${dir}/chromedriver.log" >/dev/null 2>&1 &
  OUTBOUND_TEST_CHROMEDRIVER_PID=$!
  OUTBOUND_TEST_SERVICES_STOPS+=(outbound_stop_chromedriver)
  if ! outbound_wait_for 30 "chromedriver on port ${OUTBOUND_TEST_CHROMEDRIVER_PORT}" \
    outbound_webdriver_ready "${OUTBOUND_TEST_CHROMEDRIVER_PORT}"; then
    cat "${dir}/chromedriver.log" >&2 || true
    return 1
  fi
  export OUTBOUND_TEST_WEBDRIVER_URL="http://127.0.0.1:${OUTBOUND_TEST_CHROMEDRIVER_PORT}"
  OUTBOUND_TEST_CHROMIUM="$(command -v chromium)"
  export OUTBOUND_TEST_CHROMIUM
  echo "test-services: chromedriver at ${OUTBOUND_TEST_WEBDRIVER_URL}"
}

outbound_stop_chromedriver() {
  if [ -n "${OUTBOUND_TEST_CHROMEDRIVER_PID:-}" ]; then
    kill "${OUTBOUND_TEST_CHROMEDRIVER_PID}" 2>/dev/null || true
  fi
  unset OUTBOUND_TEST_WEBDRIVER_URL OUTBOUND_TEST_CHROMIUM
}

# ---------------------------------------------------------------------------------------------

outbound_stop_test_services() {
  local i
  for ((i = ${#OUTBOUND_TEST_SERVICES_STOPS[@]} - 1; i >= 0; i--)); do
    "${OUTBOUND_TEST_SERVICES_STOPS[i]}" || true
  done
  OUTBOUND_TEST_SERVICES_STOPS=()
  if [ -n "${OUTBOUND_TEST_SERVICES_DIR:-}" ]; then
    rm -rf "${OUTBOUND_TEST_SERVICES_DIR}"
  fi
}

trap outbound_stop_test_services EXIT

outbound_make_certificates
outbound_start_redis
outbound_start_postgres
# Benchmarks and the chaos suite source this file too and have no browser to drive.
if [ -z "${OUTBOUND_TEST_NO_BROWSER:-}" ]; then
  outbound_start_chromedriver
fi
