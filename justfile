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
