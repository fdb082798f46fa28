//! Schema migrations and test databases. `migrate` holds a session advisory lock, so processes
//! starting together migrate one after another.

use diesel::sql_types::BigInt;
use diesel_async::{AsyncMigrationHarness, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::error::classify;
use crate::adapters::sql::prepared::KeepPrepared;
use crate::ports::StoreError;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Serialises `migrate` across processes starting at once (`pg_advisory_lock` key).
const MIGRATION_LOCK_KEY: i64 = 0x6f75_7462_6f75_6e64; // "outbound"

/// Applies pending migrations to the database at `url`; returns the versions applied. Holds a
/// session advisory lock meanwhile, so processes starting together migrate one after another.
pub async fn migrate(url: &str) -> Result<Vec<String>, StoreError> {
    let mut conn = super::tls::establish(url)
        .await
        .map_err(|err| StoreError::Unavailable(format!("cannot connect to postgres: {err}")))?;
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK_KEY)
        .prepared()
        .execute(&mut conn)
        .await
        .map_err(classify)?;
    // The harness blocks on the runtime (`block_in_place`); a blocking thread works under
    // either runtime flavour.
    let (conn, applied) = tokio::task::spawn_blocking(move || {
        let mut harness = AsyncMigrationHarness::new(conn);
        let applied = harness
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| {
                versions
                    .iter()
                    .map(|version| version.to_string())
                    .collect::<Vec<_>>()
            })
            .map_err(|err| StoreError::Internal(format!("migration failed: {err}")));
        (harness.into_inner(), applied)
    })
    .await
    .map_err(|err| StoreError::Internal(format!("migration task failed: {err}")))?;
    let mut conn = conn;
    // Closing the connection would release the lock too; unlocking keeps it explicit.
    diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK_KEY)
        .prepared()
        .execute(&mut conn)
        .await
        .map_err(classify)?;
    applied
}

/// Creates database `name` through the server at `server_url` (any database the user may
/// connect to, usually `postgres`) and returns the URL of the new one. For tests and
/// `init`-style scripts.
pub async fn create_database(server_url: &str, name: &str) -> Result<String, StoreError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::Internal(format!(
            "database name {name:?} must be letters, digits and underscores"
        )));
    }
    let mut conn = super::tls::establish(server_url)
        .await
        .map_err(|err| StoreError::Unavailable(format!("cannot connect to postgres: {err}")))?;
    diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .map_err(classify)?;
    Ok(with_database(server_url, name))
}

/// `url` with its database (the path) replaced by `name`, query string kept.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |at| at + 3);
    let root = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{root}/{name}?{query}"),
        None => format!("{root}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_swap_only_the_path() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432/postgres", "t_1"),
            "postgres://u@127.0.0.1:5432/t_1"
        );
        assert_eq!(
            with_database("postgresql://u:p@h/postgres?sslmode=disable", "t_1"),
            "postgresql://u:p@h/t_1?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "t_1"), "postgres://h:1/t_1");
    }
}
