//! The audit entry of a store write, inserted by that write's transaction. The other methods on
//! keys and the audit log are one statement each, in `sql::single`.

use diesel::sqlite::{Sqlite, SqliteConnection};
use diesel::RunQueryDsl;

use crate::adapters::sql::bound::keys as bound;
use crate::adapters::sql::Failure;
use crate::domain::access::AuditEntry;

/// Inserts `entry`, if any, on the caller's connection (inside its transaction).
pub(super) fn record(
    conn: &mut SqliteConnection,
    entry: Option<&AuditEntry>,
) -> Result<(), Failure> {
    if let Some(entry) = entry {
        bound::insert_audit::<Sqlite>(entry).execute(conn)?;
    }
    Ok(())
}
