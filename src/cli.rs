//! The command line: `serve`, `migrate`, `config`, `keys`, `load-test`, `bench`, `chaos`,
//! `carrier-sim`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::process::role::RoleName;

#[derive(Debug, Parser)]
#[command(
    name = "outbound",
    version,
    about = "Outbound voice-call campaign engine"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the selected roles until SIGTERM or SIGINT.
    Serve {
        /// Roles to run in this process, comma-separated; overrides `runtime.roles` (whose
        /// default is `all`) only when given.
        #[arg(long, value_enum, value_delimiter = ',')]
        roles: Option<Vec<RoleName>>,
        /// Configuration file, layered over config/outbound.toml and under OUTBOUND__* variables.
        #[arg(long, env = "OUTBOUND_CONFIG")]
        config: Option<PathBuf>,
        /// Do not apply pending migrations at start.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Apply pending migrations to the configured store and exit.
    Migrate {
        #[arg(long, env = "OUTBOUND_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run the benchmark scenarios (throughput, utilization, fairness, api, register), each
    /// printing one line of JSON.
    Bench {
        /// Scenarios to run; all when omitted.
        #[arg(long, value_delimiter = ',')]
        scenario: Vec<String>,
        /// Run against the configured PostgreSQL, Redis and Kafka (`bus.brokers = "mock"`:
        /// librdkafka's in-process mock cluster), a fresh database and topics per scenario.
        #[arg(long)]
        distributed: bool,
        /// The store's own write limit in attempts/s, measured in the same run: a number, or
        /// the JSON line scripts/limit-sqlite.sh or scripts/limit-postgres.sh prints. The
        /// throughput line then states its figure as a ratio to it.
        #[arg(long, value_parser = store_limit)]
        store_limit: Option<f64>,
        #[arg(long, env = "OUTBOUND_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run the fault-injection suite: each scenario runs a deployment on this machine, injects
    /// one fault (SIGKILL or SIGSTOP of a role's process, Redis FLUSHALL or restart, a PostgreSQL
    /// restart,
    /// a Kafka broker down, skewed clocks, a stalled SQLite writer) and checks from the mock
    /// providers' journals that no limit was exceeded, no number rung twice at once, no call
    /// lost, no attempt spent unplaced and every statistics read consistent. Prints a table;
    /// exits 1 on any miss.
    Chaos {
        /// Scenarios to run; all when omitted.
        #[arg(long, value_delimiter = ',')]
        scenario: Vec<String>,
        /// Smaller campaigns and shorter outages (what CI runs).
        #[arg(long)]
        quick: bool,
        /// A PostgreSQL server; each scenario creates its own database on it.
        #[arg(long, env = "OUTBOUND_TEST_DATABASE_URL")]
        database_url: String,
        /// A Redis server (the processes' limiter, and the FLUSHALL scenario).
        #[arg(long, env = "OUTBOUND_TEST_REDIS_URL")]
        redis_url: String,
        /// A shell command that restarts the PostgreSQL server; without it the
        /// postgres-restart scenario is skipped.
        #[arg(long, env = "OUTBOUND_TEST_POSTGRES_RESTART")]
        postgres_restart: Option<String>,
        /// A shell command that restarts the Redis server empty; without it the
        /// redis-restart scenario is skipped.
        #[arg(long, env = "OUTBOUND_TEST_REDIS_RESTART")]
        redis_restart: Option<String>,
        /// The tansu executable (an independent Kafka-compatible broker, fetched by
        /// scripts/tansu.sh); without it the tansu-* scenarios are skipped.
        #[arg(long, env = "OUTBOUND_TEST_TANSU")]
        tansu: Option<PathBuf>,
    },
    /// Make, list and revoke API keys, working directly on the configured store (pending
    /// migrations applied first), so the first key can be made before the API asks for one.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
        #[arg(long, env = "OUTBOUND_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
    /// Print the effective configuration as TOML (passwords masked).
    Config {
        #[arg(long, env = "OUTBOUND_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Register campaigns, start them, follow them to completion and report throughput,
    /// latency, peak concurrency against the limit and statistics invariant breaks. Fails
    /// (exit 1) if a limit was exceeded, an invariant broke or the run timed out.
    LoadTest {
        /// Number of campaigns.
        #[arg(long, default_value_t = 3)]
        campaigns: usize,
        /// Unique targets per campaign.
        #[arg(long, default_value_t = 50)]
        calls: usize,
        /// Concurrent API requests.
        #[arg(long, default_value_t = 10)]
        concurrent: usize,
        /// max_concurrent_calls of each campaign.
        #[arg(long, default_value_t = 10)]
        limit: u32,
        /// A running server; without it, an embedded server is started in this process on a
        /// fresh SQLite file (with mock calls of 0-50 ms unless OUTBOUND__TELEPHONY__MOCK__*
        /// say otherwise).
        #[arg(long)]
        url: Option<String>,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// The mock provider journal (`telephony.mock.journal`) of each call process, for
        /// exact peak concurrency across processes; repeat per file. Without it the peaks come
        /// from the server's `/metrics`, which sees only the calls of its own process.
        #[arg(long = "journal")]
        journals: Vec<PathBuf>,
        /// Give up (and fail) after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
        /// Place the calls through a carrier simulator started in this process (Twilio's
        /// REST API, signed callbacks) instead of the mock: the embedded server gets
        /// `telephony.provider = "twilio"`, and the peaks and the create rate are the carrier's
        /// own counts. Not with --url.
        #[arg(long, conflicts_with = "url")]
        carrier_sim: bool,
        /// With --carrier-sim: the account's calls per second (`telephony.twilio.cps`), which
        /// the simulator also enforces.
        #[arg(long, default_value_t = 500.0)]
        cps: f64,
        /// With --carrier-sim: share of callbacks the simulator sends twice and share of calls
        /// whose callbacks it reorders.
        #[arg(long, default_value_t = 0.0)]
        callback_chaos: f64,
        /// Configuration for the embedded server.
        #[arg(long, env = "OUTBOUND_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run a carrier simulator speaking Twilio's Programmable Voice REST API, with signed
    /// status callbacks, until SIGTERM or SIGINT; prints its URL, then its summary as JSON.
    CarrierSim {
        #[command(flatten)]
        args: Box<crate::carrier_sim::SimArgs>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a key; the key alone is the last line of the output (shown this once).
    Create {
        #[arg(long)]
        name: String,
        /// viewer, operator or admin.
        #[arg(long)]
        role: String,
        /// Print the API's JSON object instead.
        #[arg(long)]
        json: bool,
    },
    /// Every key (never the keys themselves), revoked ones included.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id; every running process refuses it within 5 seconds.
    Revoke { id: String },
}

/// A store limit given as attempts per second, or as the limit script's JSON line (its
/// `attempts_per_sec`).
fn store_limit(text: &str) -> Result<f64, String> {
    let limit = match text.trim().parse::<f64>() {
        Ok(limit) => limit,
        Err(_) => serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|line| line.get("attempts_per_sec")?.as_f64())
            .ok_or_else(|| {
                "expected attempts per second, or a JSON line with attempts_per_sec".to_owned()
            })?,
    };
    if limit.is_finite() && limit > 0.0 {
        Ok(limit)
    } else {
        Err(format!("{limit} is not a positive rate"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;

    fn serve_roles(args: &[&str]) -> Option<Vec<RoleName>> {
        match Cli::try_parse_from(args).unwrap().command {
            Command::Serve { roles, .. } => roles,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn roles_are_an_override_only_when_given() {
        assert_eq!(serve_roles(&["outbound", "serve"]), None);
        assert_eq!(
            serve_roles(&["outbound", "serve", "--roles", "call,status"]),
            Some(vec![RoleName::Call, RoleName::Status])
        );
        let err = Cli::try_parse_from(["outbound", "serve", "--roles", "dialer"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("scheduler"), "names the valid roles: {err}");
    }

    /// `just bench` passes the limit script's JSON line as it printed it.
    #[test]
    fn a_store_limit_is_a_rate_or_the_limit_scripts_line() {
        let limit = |value: &str| {
            Cli::try_parse_from(["outbound", "bench", "--store-limit", value]).map(|cli| match cli
                .command
            {
                Command::Bench { store_limit, .. } => store_limit,
                other => panic!("not bench: {other:?}"),
            })
        };
        assert_eq!(limit("52704").unwrap(), Some(52_704.0));
        let line = r#"{"scenario": "sqlite_limit", "attempts": 100000, "seconds": 1.897, "attempts_per_sec": 52704}"#;
        assert_eq!(limit(line).unwrap(), Some(52_704.0));
        for wrong in [
            "",
            "0",
            "-3",
            "NaN",
            r#"{"scenario": "sqlite_limit", "error": "x"}"#,
        ] {
            assert!(limit(wrong).is_err(), "{wrong:?} refused");
        }
    }

    /// The carrier simulator's flags, as `outbound carrier-sim` reads them.
    #[test]
    fn the_cli_flags_build_a_config() {
        let parse = |extra: &[&str]| {
            let mut argv = vec![
                "outbound",
                "carrier-sim",
                "--port",
                "0",
                "--account-sid",
                "AC0123456789abcdef0123456789abcdef",
                "--auth-token",
                "sim-token",
            ];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv).map(|cli| match cli.command {
                Command::CarrierSim { args } => *args,
                other => panic!("not carrier-sim: {other:?}"),
            })
        };
        let args = parse(&[
            "--cps",
            "5",
            "--burst",
            "2",
            "--ring-ms",
            "5,10",
            "--duplicate-rate",
            "0.1",
            "--mix",
            "human=1,busy=1",
            "--unreachable-prefix",
            "+1999",
            "--unreachable-prefix",
            "+1888",
        ])
        .unwrap();
        assert_eq!(args.bind.to_string(), "127.0.0.1");
        let config = args.config().unwrap();
        assert_eq!((config.cps, config.burst), (5.0, 2));
        assert_eq!(
            config.ring,
            (Duration::from_millis(5), Duration::from_millis(10))
        );
        assert_eq!(
            config.talk,
            (Duration::from_millis(20), Duration::from_millis(100))
        );
        assert_eq!(config.duplicate_rate, 0.1);
        assert_eq!(
            (config.mix.human, config.mix.busy, config.mix.machine),
            (1.0, 1.0, 0.0)
        );
        assert_eq!(config.unreachable_prefixes, ["+1999", "+1888"]);
        assert_eq!(config.hang_for, Duration::from_secs(30));
        assert!(parse(&["--reorder-rate", "2"]).is_err());
        assert!(parse(&["--talk-ms", "9,1"]).is_err());
        let mut bad_sid = parse(&[]).unwrap();
        bad_sid.account_sid = "AC123".into();
        assert!(bad_sid.config().is_err());
    }
}
