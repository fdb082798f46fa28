//! Which SQLite errors the caller may retry and which are the store's own fault.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::adapters::sql::Failure;
use crate::ports::StoreError;

/// A busy or locked database (another process holding the file past `busy_timeout`) is
/// `Unavailable`; the only unique index a caller can violate is the campaign name's.
pub fn classify(err: DieselError) -> StoreError {
    match &err {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            StoreError::DuplicateName
        }
        DieselError::DatabaseError(_, info) if info.message().contains("locked") => {
            StoreError::Unavailable(err.to_string())
        }
        _ => StoreError::Internal(err.to_string()),
    }
}

pub fn store_error(failure: Failure) -> StoreError {
    failure.into_store_error(classify)
}
