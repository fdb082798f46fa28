use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use outbound::cli::{Cli, Command};
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
            let settings = Settings::load_for_roles(config.as_deref(), roles)?;
            let telemetry = outbound::telemetry::init(&settings)?;
            let node = Node::build(settings, !no_migrate).await?;
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
        Command::Migrate { config } => {
            let settings = Settings::load(config.as_deref())?;
            let applied = outbound::context::migrate(&settings)
                .await
                .context("migration failed")?;
            println!("applied {} migration(s)", applied.len());
            for version in &applied {
                println!("  {version}");
            }
            Ok(())
        }
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
        } => {
            use outbound::loadtest::{self, EmbeddedServer, LoadTestArgs};
            let args = LoadTestArgs {
                campaigns,
                calls,
                concurrent,
                limit,
                url: url.clone(),
                json: json.clone(),
                timeout: std::time::Duration::from_secs(timeout_secs),
                journals,
            };
            let (report, server) = match url {
                Some(url) => (loadtest::run(&args, &url).await?, None),
                None => {
                    let mut settings = load_test_settings(config.as_deref())?;
                    settings.log.level = "warn".into();
                    let _telemetry = outbound::telemetry::init(&settings)?;
                    let server = EmbeddedServer::start(settings).await?;
                    (
                        loadtest::run(&args, &server.base.clone()).await?,
                        Some(server),
                    )
                }
            };
            if let Some(server) = server {
                server.stop().await?;
            }
            loadtest::print_report(&report);
            if let Some(path) = &json {
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
        Command::Bench {
            scenario,
            config,
            distributed,
        } => {
            let settings = load_test_settings(config.as_deref())?;
            let scenarios: Vec<String> = if scenario.is_empty() {
                outbound::loadtest::bench::SCENARIOS
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            } else {
                scenario
            };
            let mut quiet = settings.clone();
            quiet.log.level = "warn".into();
            let _telemetry = outbound::telemetry::init(&quiet)?;
            let bench = outbound::loadtest::bench::Bench::new(settings, distributed)?;
            for name in scenarios {
                let line = bench.run(&name).await?;
                println!("{line}");
            }
            Ok(())
        }
        Command::Config { config } => {
            let settings = Settings::load(config.as_deref())?;
            print!("{}", settings.dump()?);
            Ok(())
        }
    }
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
