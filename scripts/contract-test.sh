#!/usr/bin/env bash
# The contract test: runs schemathesis (all checks, every phase, stateful included) against a
# server started here with keys required, and fails on any failure or error. Installs
# schemathesis into a virtual environment under target/ on first use.
#
#   scripts/contract-test.sh [path/to/outbound] [extra schemathesis options]
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${1:-target/debug/outbound}"
shift || true
SCHEMATHESIS_VERSION="4.32.5"
VENV="${OUTBOUND_CONTRACT_VENV:-target/contract-venv}"

if ! "${VENV}/bin/schemathesis" --version 2>/dev/null | grep -q "${SCHEMATHESIS_VERSION}"; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    echo "contract-test: installing python3-venv"
    as_root=""
    [ "$(id -u)" -eq 0 ] || as_root="sudo"
    ${as_root} env DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv ||
      { ${as_root} apt-get update && ${as_root} env DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv; }
  fi
  rm -rf "${VENV}"
  python3 -m venv "${VENV}"
  "${VENV}/bin/pip" install --quiet --disable-pip-version-check "schemathesis==${SCHEMATHESIS_VERSION}"
fi

DIR="$(mktemp -d "${TMPDIR:-/tmp}/outbound-contract.XXXXXX")"
SERVER_PID=""
cleanup() {
  if [ -n "${SERVER_PID}" ]; then
    kill "${SERVER_PID}" 2>/dev/null || true
    wait "${SERVER_PID}" 2>/dev/null || true
  fi
  rm -rf "${DIR}"
}
trap cleanup EXIT

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
ADMIN_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
export OUTBOUND__STORAGE__URL="sqlite://${DIR}/outbound.db"
export OUTBOUND__HTTP__BIND="127.0.0.1:${PORT}"
export OUTBOUND__HTTP__ADMIN_BIND="127.0.0.1:${ADMIN_PORT}"
export OUTBOUND__AUTH__MODE=keys
# The fuzzer sends hundreds of requests a second with one key.
export OUTBOUND__AUTH__RATE_LIMIT=100000
export OUTBOUND__LOG__LEVEL=warn
KEY="$("${BIN}" keys create --name contract-test --role admin | tail -n 1)"
"${BIN}" serve >"${DIR}/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:${PORT}/healthz" >/dev/null 2>&1; then
    break
  fi
  sleep 0.1
done

status=0
# One worker: with two, hypothesis's lambda-source cache raced on some runs (a KeyError inside
# the fuzzer, reported as a runtime error).
"${VENV}/bin/schemathesis" --config-file scripts/schemathesis.toml run \
  "http://127.0.0.1:${PORT}/api/v1/openapi.json" \
  --checks all \
  --header "Authorization: Bearer ${KEY}" \
  --max-examples "${OUTBOUND_CONTRACT_EXAMPLES:-50}" \
  --workers 1 \
  --seed "${OUTBOUND_CONTRACT_SEED:-1}" \
  "$@" || status=$?
if [ "${status}" -ne 0 ]; then
  echo "contract-test: schemathesis reported failures or errors (server log: below)" >&2
  tail -n 50 "${DIR}/server.log" >&2 || true
fi
exit "${status}"
