//! The command line: `serve`, `migrate`, `config`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::runtime::role::RoleName;

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
        /// Roles to run in this process, comma-separated.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
        roles: Vec<RoleName>,
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
    /// Print the effective configuration as TOML (passwords masked).
    Config {
        #[arg(long, env = "OUTBOUND_CONFIG")]
        config: Option<PathBuf>,
    },
}
