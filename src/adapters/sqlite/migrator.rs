//! Schema migrations of the SQLite file.

use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::pool::{ensure_parent, establish};
use crate::ports::StoreError;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Applies pending migrations to the SQLite file at `path`, creating it (and its folder).
pub fn migrate(path: &str) -> Result<Vec<String>, StoreError> {
    ensure_parent(path)?;
    let mut conn = establish(path)?;
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map_err(|err| StoreError::Internal(format!("migration failed: {err}")))?;
    Ok(applied.iter().map(|version| version.to_string()).collect())
}
