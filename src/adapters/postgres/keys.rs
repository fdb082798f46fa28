//! The audit entry of a store write, inserted by that write's transaction. The other methods on
//! keys and the audit log are one statement each, in `sql::single`.

use diesel::pg::Pg;
use diesel_async::RunQueryDsl;

use super::Conn;
use crate::adapters::sql::bound::keys as bound;
use crate::adapters::sql::Failure;
use crate::domain::access::AuditEntry;

/// Inserts `entry`, if any, on the caller's connection (inside its transaction).
pub(super) async fn record(conn: &mut Conn, entry: Option<&AuditEntry>) -> Result<(), Failure> {
    if let Some(entry) = entry {
        bound::insert_audit::<Pg>(entry).execute(conn).await?;
    }
    Ok(())
}
