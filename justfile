# Recipes wrap the README's commands. Install just with `pip install rust-just`.

# Run every role in one process with the embedded store (SQLite file under data/).
run *ARGS:
    cargo run --release -- serve {{ARGS}}

# The whole test suite (what CI runs).
test *ARGS:
    scripts/test.sh {{ARGS}}

# Formatting and lints only.
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings

fmt:
    cargo fmt --all

# Apply pending migrations to the configured store.
migrate:
    cargo run --release -- migrate

# Print the effective configuration.
config:
    cargo run --release -- config

# Load test against an embedded server started for the run (or URL=http://host:port).
# Accepts `just load-test 3 50 10` or the seed's `just load-test CAMPAIGNS=3 CALLS=50 CONCURRENT=10`.
load-test CAMPAIGNS="3" CALLS="50" CONCURRENT="10" *ARGS="":
    #!/usr/bin/env bash
    set -euo pipefail
    campaigns='{{CAMPAIGNS}}'; calls='{{CALLS}}'; concurrent='{{CONCURRENT}}'
    campaigns="${campaigns#CAMPAIGNS=}"; calls="${calls#CALLS=}"; concurrent="${concurrent#CONCURRENT=}"
    url_args=()
    if [ -n "${URL:-}" ]; then url_args=(--url "$URL"); fi
    cargo run --release -- load-test --campaigns "$campaigns" --calls "$calls" \
        --concurrent "$concurrent" "${url_args[@]}" {{ARGS}}

# The load test through the carrier simulator (Twilio's REST API and signed callbacks, in this
# process) instead of the mock: `just load-test-carrier 3 300 10 --cps 300 --callback-chaos 0.3`.
# Peaks and the create rate are the carrier's own counts.
load-test-carrier CAMPAIGNS="3" CALLS="50" CONCURRENT="10" *ARGS="":
    #!/usr/bin/env bash
    set -euo pipefail
    campaigns='{{CAMPAIGNS}}'; calls='{{CALLS}}'; concurrent='{{CONCURRENT}}'
    campaigns="${campaigns#CAMPAIGNS=}"; calls="${calls#CALLS=}"; concurrent="${concurrent#CONCURRENT=}"
    cargo run --release -- load-test --carrier-sim --campaigns "$campaigns" --calls "$calls" \
        --concurrent "$concurrent" {{ARGS}}

# The load test on the distributed backends, all roles in one process: throwaway PostgreSQL and
# Redis (as the tests start them) and librdkafka's in-process mock cluster for Kafka. Against a
# real distributed deployment, use `URL=http://api-host:port just load-test ...` instead.
load-test-distributed CAMPAIGNS="3" CALLS="50" CONCURRENT="10" *ARGS="":
    #!/usr/bin/env bash
    set -euo pipefail
    campaigns='{{CAMPAIGNS}}'; calls='{{CALLS}}'; concurrent='{{CONCURRENT}}'
    campaigns="${campaigns#CAMPAIGNS=}"; calls="${calls#CALLS=}"; concurrent="${concurrent#CONCURRENT=}"
    cargo build --release
    OUTBOUND_TEST_NO_BROWSER=1 source scripts/test-services.sh
    OUTBOUND__STORAGE__URL="$OUTBOUND_TEST_DATABASE_URL" \
    OUTBOUND__LIMITER__URL="$OUTBOUND_TEST_REDIS_URL" \
    OUTBOUND__BUS__KIND=kafka OUTBOUND__BUS__BROKERS=mock \
        target/release/outbound load-test --campaigns "$campaigns" --calls "$calls" \
        --concurrent "$concurrent" {{ARGS}}

# The fault-injection suite on this machine: throwaway PostgreSQL and Redis (as the tests start
# them), librdkafka's mock Kafka cluster or tansu (an independent Kafka-compatible broker,
# fetched by scripts/tansu.sh), one process per role subset; prints scenario x check.
# `just chaos --quick` is the bounded form CI runs; `just chaos --scenario sigkill-call` one.
chaos *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build
    OUTBOUND_TEST_NO_BROWSER=1 source scripts/test-services.sh
    if ! command -v faketime >/dev/null 2>&1; then outbound_apt_install faketime; fi
    OUTBOUND_TEST_TANSU="$(scripts/tansu.sh)" target/debug/outbound chaos {{ARGS}}

# The API contract test: schemathesis (every check, stateful phase included) against a server
# started for the run with keys required. Extra arguments go to schemathesis.
contract *ARGS:
    cargo build
    scripts/contract-test.sh target/debug/outbound {{ARGS}}

# Benchmark scenarios (throughput, utilization, fairness, api, register, bodies, callbacks,
# carrier), one JSON line each.
# `just bench api,register` runs a subset. Figures and targets: BENCHMARKS.md.
# With throughput among them, SQLite's own write limit is measured first, in the same run
# (scripts/limit-sqlite.sh), and the throughput line states its ratio to it.
bench SCENARIOS="":
    #!/usr/bin/env bash
    set -euo pipefail
    args=()
    if [ -n '{{SCENARIOS}}' ]; then args=(--scenario '{{SCENARIOS}}'); fi
    cargo build --release
    if [ -z '{{SCENARIOS}}' ] || [[ ',{{SCENARIOS}},' == *,throughput,* ]]; then
        if ! command -v sqlite3 >/dev/null; then
            sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
            $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y sqlite3 ||
                { $sudo apt-get update && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y sqlite3; }
        fi
        if limit=$(scripts/limit-sqlite.sh); then
            echo "$limit"
            args+=(--store-limit "$limit")
        else
            echo "bench: the store's limit was not measured, throughput without its ratio: $limit" >&2
        fi
    fi
    target/release/outbound bench "${args[@]}"

# The benchmark scenarios in distributed mode on this machine: throwaway PostgreSQL and Redis
# (as the tests start them) and librdkafka's in-process mock cluster for Kafka.
bench-distributed SCENARIOS="":
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release
    OUTBOUND_TEST_NO_BROWSER=1 source scripts/test-services.sh
    args=(--distributed)
    if [ -n '{{SCENARIOS}}' ]; then args+=(--scenario '{{SCENARIOS}}'); fi
    # PostgreSQL's own write limit on the same server, in the same run (see `bench`).
    if [ -z '{{SCENARIOS}}' ] || [[ ',{{SCENARIOS}},' == *,throughput,* ]]; then
        if limit=$(DATABASE_URL="$OUTBOUND_TEST_DATABASE_URL" scripts/limit-postgres.sh); then
            echo "$limit"
            args+=(--store-limit "$limit")
        else
            echo "bench: the store's limit was not measured, throughput without its ratio: $limit" >&2
        fi
    fi
    OUTBOUND__STORAGE__URL="$OUTBOUND_TEST_DATABASE_URL" \
    OUTBOUND__LIMITER__URL="$OUTBOUND_TEST_REDIS_URL" \
    OUTBOUND__BUS__KIND=kafka OUTBOUND__BUS__BROKERS=mock \
        target/release/outbound bench "${args[@]}"
