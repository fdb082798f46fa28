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
            let figment = Settings::figment(config.as_deref());
            let mut settings: Settings = figment
                .extract()
                .map_err(|err| anyhow::anyhow!("invalid configuration: {err}"))?;
            settings.runtime.roles = roles;
            settings.validate()?;
            let telemetry = outbound::telemetry::init(&settings)?;
            let node = Node::build(settings, !no_migrate).await?;
            if let Some(addr) = node.api_addr() {
                tracing::info!(%addr, "api listening");
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
            Ok(())
        }
        Command::Config { config } => {
            let settings = Settings::load(config.as_deref())?;
            print!("{}", settings.dump()?);
            Ok(())
        }
    }
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
