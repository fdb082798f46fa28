//! Which PostgreSQL errors the caller may retry and which are the store's own fault.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::adapters::sql::Failure;
use crate::ports::StoreError;

/// Messages of server errors that go away by themselves (SQLSTATE classes 40, 53, 57 and
/// 08), for the kinds diesel does not name.
const TRANSIENT_MESSAGES: [&str; 7] = [
    "deadlock detected",
    "canceling statement",
    "terminating connection",
    "the database system is",
    "too many clients",
    "remaining connection slots",
    "could not serialize",
];

/// Connection trouble and transient server states are `Unavailable` (the caller may retry);
/// everything else is `Internal`. Unique violations are not special here: only the name
/// statements map them, through `name_taken`.
pub fn classify(err: DieselError) -> StoreError {
    let transient = match &err {
        DieselError::DatabaseError(kind, info) => {
            matches!(
                kind,
                DatabaseErrorKind::ClosedConnection
                    | DatabaseErrorKind::UnableToSendCommand
                    | DatabaseErrorKind::SerializationFailure
            ) || TRANSIENT_MESSAGES
                .iter()
                .any(|needle| info.message().contains(needle))
        }
        DieselError::BrokenTransactionManager => true,
        _ => false,
    };
    if transient {
        StoreError::Unavailable(err.to_string())
    } else {
        StoreError::Internal(err.to_string())
    }
}

pub fn store_error(failure: Failure) -> StoreError {
    failure.into_store_error(classify)
}

/// For the statements that write `campaign_names`: a unique violation is a taken name.
pub fn name_taken(err: DieselError) -> Failure {
    match err {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            Failure::Store(StoreError::DuplicateName)
        }
        other => Failure::Db(other),
    }
}

pub fn bad_id(err: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("bad id in store: {err}"))
}
