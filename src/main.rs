use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use outbound::cli::{Cli, Command};
use outbound::loadtest::bench::{Bench, SCENARIOS};
use outbound::loadtest::{self, EmbeddedServer, LoadTestArgs};
use outbound::runtime::Node;
use outbound::settings::Settings;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("outbound: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            roles,
            config,
            no_migrate,
        } => {
            serve(
                Settings::load_for_roles(config.as_deref(), roles)?,
                !no_migrate,
            )
            .await
        }
        Command::Migrate { config } => migrate(&Settings::load(config.as_deref())?).await,
        Command::LoadTest {
            campaigns,
            calls,
            concurrent,
            limit,
            url,
            json,
            timeout_secs,
            config,
            journals,
            carrier_sim,
            cps,
            callback_chaos,
        } => {
            let args = LoadTestArgs {
                campaigns,
                calls,
                concurrent,
                limit,
                url,
                json,
                timeout: std::time::Duration::from_secs(timeout_secs),
                journals,
            };
            let carrier = carrier_sim.then_some(CarrierRun {
                cps,
                chaos: callback_chaos,
            });
            load_test(&args, config.as_deref(), carrier).await
        }
        Command::Bench {
            scenario,
            config,
            distributed,
            store_limit,
        } => bench(scenario, config.as_deref(), distributed, store_limit).await,
        Command::Keys { command, config } => {
            let settings = Settings::load(config.as_deref())?;
            print!("{}", outbound::keys_command::run(command, &settings).await?);
            Ok(())
        }
        Command::Config { config } => {
            print!("{}", Settings::load(config.as_deref())?.dump()?);
            Ok(())
        }
        Command::Chaos {
            scenario,
            quick,
            database_url,
            redis_url,
            postgres_restart,
            redis_restart,
            tansu,
        } => {
            let args = outbound::chaos::ChaosArgs {
                scenarios: scenario,
                quick,
                database_url,
                redis_url,
                postgres_restart,
                redis_restart,
                tansu,
            };
            let reports = outbound::chaos::run(&args).await?;
            print!("{}", outbound::chaos::table(&reports));
            if !outbound::chaos::all_passed(&reports) {
                anyhow::bail!("chaos: a check missed (details above the table)");
            }
            Ok(())
        }
        Command::CarrierSim { args } => carrier_sim(*args).await,
    }
}

/// Runs the configured roles until SIGTERM or SIGINT, then stops them in order.
async fn serve(settings: Settings, run_migrations: bool) -> anyhow::Result<()> {
    let telemetry = outbound::telemetry::init(&settings)?;
    let node = Node::build(settings, run_migrations).await?;
    if let Some(addr) = node.api_addr() {
        tracing::info!(%addr, "api listening");
    } else if let Some(addr) = node.health_addr() {
        tracing::info!(%addr, "admin listening");
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(listen_for_signals(shutdown.clone()));
    let result = node.run(shutdown).await;
    telemetry.shutdown().await;
    result
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let applied = outbound::context::migrate(settings)
        .await
        .context("migration failed")?;
    println!("applied {} migration(s)", applied.len());
    for version in &applied {
        println!("  {version}");
    }
    Ok(())
}

/// Runs the load test against `args.url`, or against a server started here for the run.
/// A load test through the carrier simulator.
struct CarrierRun {
    cps: f64,
    chaos: f64,
}

async fn load_test(
    args: &LoadTestArgs,
    config: Option<&std::path::Path>,
    carrier: Option<CarrierRun>,
) -> anyhow::Result<()> {
    let mut carrier_summary = None;
    let report = match (&args.url, carrier) {
        (Some(url), _) => loadtest::run(args, url).await?,
        (None, None) => {
            let mut settings = load_test_settings(config)?;
            settings.log.level = "warn".into();
            let _telemetry = outbound::telemetry::init(&settings)?;
            let server = EmbeddedServer::start(settings).await?;
            let report = loadtest::run(args, &server.base.clone()).await?;
            server.stop().await?;
            report
        }
        (None, Some(carrier)) => {
            use outbound::carrier_sim::{CarrierSim, SimConfig};
            let mut settings = load_test_settings(config)?;
            settings.log.level = "warn".into();
            let _telemetry = outbound::telemetry::init(&settings)?;
            let sim_config = SimConfig {
                cps: carrier.cps,
                // Creates arrive with network jitter; the engine paces at `cps` without a burst.
                burst: ((carrier.cps / 10.0).ceil() as u32).max(2),
                duplicate_rate: carrier.chaos,
                reorder_rate: carrier.chaos,
                ..SimConfig::default()
            };
            let sim = CarrierSim::start(
                sim_config.clone(),
                std::net::TcpListener::bind("127.0.0.1:0")?,
            )
            .await?;
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            settings.telephony.provider = outbound::settings::ProviderName::Twilio;
            let twilio = &mut settings.telephony.twilio;
            twilio.api_base = sim.url();
            twilio.account_sid = sim_config.account_sid.clone();
            twilio.auth_token = outbound::settings::Secret::new(sim_config.auth_token.clone());
            twilio.from = "+15555550100".into();
            twilio.public_url = format!("http://127.0.0.1:{port}");
            twilio.cps = carrier.cps;
            let server = EmbeddedServer::start_on(settings, &format!("127.0.0.1:{port}")).await?;
            let mut report = loadtest::run(args, &server.base.clone()).await?;
            server.stop().await?;
            let peaks = report
                .peaks
                .iter()
                .map(|peak| (peak.id.clone(), sim.peak_live(&peak.id)))
                .collect();
            report.replace_peaks(&peaks);
            let summary = sim.summary();
            sim.shutdown().await;
            carrier_summary = Some((carrier.cps, summary));
            report
        }
    };
    loadtest::print_report(&report);
    if let Some((cps, summary)) = carrier_summary {
        println!(
            "  carrier            {} calls created, most in any second {} (cps {cps}), {} throttled, {} numbers live twice",
            summary.created,
            summary.max_creates_in_any_second,
            summary.throttled,
            summary.numbers_live_twice.len()
        );
        println!(
            "  callbacks          {} delivered, {} duplicated, {} failed",
            summary.callbacks.delivered, summary.callbacks.duplicated, summary.callbacks.failed
        );
        if !summary.numbers_live_twice.is_empty() {
            anyhow::bail!("load test failed: a number was live twice at the carrier");
        }
    }
    if let Some(path) = &args.json {
        loadtest::write_json(&report, path)?;
    }
    if report.failed() {
        anyhow::bail!(
            "load test failed: completed={} limit_exceeded={} invariant_violations={}",
            report.completed,
            report.limit_exceeded,
            report.invariant_violations
        );
    }
    Ok(())
}

/// Runs the named benchmark scenarios (every one when none is named), a JSON line each.
async fn bench(
    scenarios: Vec<String>,
    config: Option<&std::path::Path>,
    distributed: bool,
    store_limit: Option<f64>,
) -> anyhow::Result<()> {
    let settings = load_test_settings(config)?;
    let scenarios: Vec<String> = if scenarios.is_empty() {
        SCENARIOS.iter().map(|s| s.to_string()).collect()
    } else {
        scenarios
    };
    let mut quiet = settings.clone();
    quiet.log.level = "warn".into();
    let _telemetry = outbound::telemetry::init(&quiet)?;
    let bench = Bench::new(settings, distributed)?.with_store_limit(store_limit);
    for name in scenarios {
        println!("{}", bench.run(&name).await?);
    }
    Ok(())
}

/// Settings for an embedded load-test server: the configured layers, with short mock calls
/// unless the environment sets them.
fn load_test_settings(config: Option<&std::path::Path>) -> anyhow::Result<Settings> {
    let mut settings: Settings = Settings::figment(config)
        .extract()
        .map_err(|err| anyhow::anyhow!("invalid configuration: {err}"))?;
    if std::env::var_os("OUTBOUND__TELEPHONY__MOCK__MIN_DURATION").is_none() {
        settings.telephony.mock.min_duration = std::time::Duration::ZERO.into();
    }
    if std::env::var_os("OUTBOUND__TELEPHONY__MOCK__MAX_DURATION").is_none() {
        settings.telephony.mock.max_duration = std::time::Duration::from_millis(50).into();
    }
    Ok(settings)
}

/// SIGTERM or SIGINT starts an orderly shutdown; a second SIGINT exits at once.
async fn listen_for_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("sigterm received, shutting down"),
        _ = int.recv() => tracing::info!("sigint received, shutting down"),
    }
    shutdown.cancel();
    if int.recv().await.is_some() {
        eprintln!("outbound: second interrupt, exiting now");
        std::process::exit(1);
    }
}

/// Serves the carrier simulator until SIGTERM or SIGINT: its URL on the first line of stdout,
/// its summary as JSON at exit; logs go to stderr (`RUST_LOG`, default `warn`).
async fn carrier_sim(args: outbound::carrier_sim::SimArgs) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    // Fails only when a subscriber is installed already, which is fine.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let config = args.config()?;
    let listener = std::net::TcpListener::bind((args.bind, args.port))
        .with_context(|| format!("cannot listen on {}:{}", args.bind, args.port))?;
    let sim = outbound::carrier_sim::CarrierSim::start(config, listener).await?;
    println!("{}", sim.url());
    let shutdown = CancellationToken::new();
    tokio::spawn(listen_for_signals(shutdown.clone()));
    shutdown.cancelled().await;
    sim.shutdown().await;
    println!("{}", serde_json::to_string_pretty(&sim.summary())?);
    Ok(())
}
