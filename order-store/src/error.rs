//! The store's errors, and the mapping from PostgreSQL's SQLSTATEs to them.

use uuid::Uuid;

use crate::append::ExpectedVersion;

/// SQLSTATE codes the store reacts to, by name.
pub mod sqlstate {
    /// A unique constraint refused a row.
    pub const UNIQUE_VIOLATION: &str = "23505";
    /// A check constraint refused a row.
    pub const CHECK_VIOLATION: &str = "23514";
    /// A NOT NULL column got null.
    pub const NOT_NULL_VIOLATION: &str = "23502";
    /// The statement was cancelled (statement_timeout).
    pub const QUERY_CANCELED: &str = "57014";
    /// The server is shutting down.
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    /// The server crashed.
    pub const CRASH_SHUTDOWN: &str = "57P02";
    /// The server is starting or in recovery.
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    /// Too many connections.
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    /// The session idled in a transaction too long.
    pub const IDLE_IN_TRANSACTION_TIMEOUT: &str = "25P03";
    /// A serializable transaction conflicted.
    pub const SERIALIZATION_FAILURE: &str = "40001";
    /// A deadlock was detected (this transaction was chosen).
    pub const DEADLOCK_DETECTED: &str = "40P01";
    /// A lock could not be taken in time (lock_timeout).
    pub const LOCK_NOT_AVAILABLE: &str = "55P03";
    /// The role lacks a privilege.
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    /// A write on a read-only server (a replica, a failover in progress).
    pub const READ_ONLY_TRANSACTION: &str = "25006";
    /// The server refused the connection's credentials (class 28: a wrong password, an
    /// unknown role, no `pg_hba.conf` entry).
    pub const INVALID_AUTHORIZATION_CLASS: &str = "28";
    /// The database named in the URL does not exist on that server.
    pub const INVALID_CATALOG_NAME: &str = "3D000";
    /// Raised by the append-only triggers on `orders.events`.
    pub const APPEND_ONLY: &str = "OL001";
    /// Class 08: connection exceptions.
    pub const CONNECTION_EXCEPTION_CLASS: &str = "08";
    /// Class 22: data exceptions (a value out of range, text a type refuses).
    pub const DATA_EXCEPTION_CLASS: &str = "22";
    /// Class 53: insufficient resources (disk full, out of memory, too many connections).
    pub const INSUFFICIENT_RESOURCES_CLASS: &str = "53";
    /// Class 58: system errors beneath the server (an I/O error, a missing file).
    pub const SYSTEM_ERROR_CLASS: &str = "58";
    /// A statement names a table or view the database does not have.
    pub const UNDEFINED_TABLE: &str = "42P01";
    /// A statement names a column the table does not have.
    pub const UNDEFINED_COLUMN: &str = "42703";
    /// A statement names a schema the database does not have.
    pub const INVALID_SCHEMA_NAME: &str = "3F000";
}

/// Unique constraints whose violation means something specific.
pub(crate) mod constraint {
    pub const STREAM_VERSION: &str = "events_stream_version_key";
    pub const EVENT_ID: &str = "events_event_id_key";
    pub const COMMAND_ID: &str = "commands_pkey";
}

/// Why the store could not do what was asked. [`Error::Database`] is for logs, not for
/// callers. Some other variants ([`Error::Unavailable`], [`Error::Forbidden`],
/// [`Error::InvalidInput`]) carry the server's own message (a constraint's name, a refused
/// password, a missing grant); order-grpc answers [`Error::InvalidInput`] as INVALID_ARGUMENT
/// with that message, and logs the others without passing their text on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The stream is not at the version the caller expected: nothing was written.
    #[error("stream {stream_id} is at version {actual}, not at the expected {expected}")]
    WrongExpectedVersion {
        /// The stream.
        stream_id: Uuid,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// Where the stream is.
        actual: u64,
    },
    /// Another append to the stream won the race: decide again.
    #[error("a concurrent append to stream {stream_id} got there first")]
    Conflict {
        /// The stream.
        stream_id: Uuid,
    },
    /// The command id was recorded for another request: nothing was written.
    #[error("command id {command_id} was already used for a different request")]
    CommandIdReused {
        /// The command id.
        command_id: Uuid,
    },
    /// An event id is in the log already: nothing was written.
    #[error("event id {event_id} is already in the log")]
    DuplicateEventId {
        /// The event id.
        event_id: Uuid,
    },
    /// The request or a setting breaks a bound (names which): nothing was sent.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A stored event does not decode: it is never skipped.
    #[error("stored event at position {global_position} cannot be decoded: {source}")]
    Decode {
        /// Its global position.
        global_position: u64,
        /// Why.
        #[source]
        source: order_domain::upcast::DecodeError,
    },
    /// A domain event could not be encoded.
    #[error(transparent)]
    Encode(#[from] order_domain::upcast::EncodeError),
    /// The database cannot be reached or the pool is exhausted; retry later.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database did not answer within the call timeout.
    #[error("the database did not answer in time")]
    Timeout,
    /// The database refused for lack of a privilege or a constraint.
    #[error("the database refused the change: {0}")]
    Forbidden(String),
    /// A statement names a table, column or schema the database does not have: its schema is not
    /// the one the statement was written for (the store's own migrations not applied yet, or a
    /// projection's tables gone). It does not pass by itself; order-grpc answers it as UNAVAILABLE
    /// (the service is not ready, its readiness says so), a projector stops on it.
    #[error("the database's schema lacks what a statement names (not migrated?): {0}")]
    SchemaMissing(String),
    /// A fenced checkpoint write found another lease token: the transaction rolls back.
    #[error("the lease of subscription {subscription} was lost to another instance")]
    LeaseLost {
        /// The subscription.
        subscription: String,
    },
    /// A checkpoint write found the subscription's checkpoint somewhere else than where its
    /// writer last left it, and not at an event of the log either: the database lost writes
    /// (a failover to an asynchronous standby, a restore). Nothing was written; the caller
    /// rolls back and reads its checkpoint again from the database, which is the truth.
    #[error(
        "the checkpoint of subscription {subscription} is not where its writer left it ({expected}): the database lost writes (failover or restore); reload it"
    )]
    CheckpointMoved {
        /// The subscription.
        subscription: String,
        /// Where the writer believed it was.
        expected: String,
    },
    /// Anything else the database reported (for logs, not for callers).
    #[error("database error: {0}")]
    Database(String),
}

impl Error {
    /// True for failures that may pass by themselves (retry later, report UNAVAILABLE).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::Timeout | Self::Conflict { .. }
        )
    }

    /// True when the store cannot serve the call for now, through no fault of the caller's:
    /// out of reach, too slow, or not migrated yet ([`Error::SchemaMissing`]). A service
    /// answers these "unavailable, retry later" (gRPC UNAVAILABLE), and a read from a replica
    /// that fails so may be answered by the primary. A [`Error::Conflict`] may pass too
    /// ([`Error::is_transient`]) but is the caller's to decide again, not "retry later".
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::Timeout | Self::SchemaMissing(_)
        )
    }

    /// An error opening a connection. A server that refuses a login (no CONNECT privilege,
    /// say) answers with an error that on a statement would be the caller's or ours; at login
    /// it means the store is out of reach, as a wrong password does.
    pub(crate) fn at_login(error: tokio_postgres::Error) -> Self {
        match Self::from(error) {
            Self::Forbidden(why)
            | Self::Database(why)
            | Self::InvalidInput(why)
            | Self::SchemaMissing(why) => {
                Self::Unavailable(format!("the database server refused the connection: {why}"))
            }
            other => other,
        }
    }

    /// The constraint a unique violation names, when this is one.
    pub(crate) fn unique_violation(error: &tokio_postgres::Error) -> Option<&str> {
        let db = error.as_db_error()?;
        (db.code().code() == sqlstate::UNIQUE_VIOLATION)
            .then(|| db.constraint())
            .flatten()
    }
}

/// A server error is turned into the store's error here, and one that reveals a changed
/// server (read-only now, or shutting down) also marks every pooled connection opened before it
/// for replacement (`crate::recycle`): a write must never be sent again to a server that
/// refused one.
impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        use crate::recycle::{Reason, discard_connections_opened_before_now};
        let Some(db) = error.as_db_error() else {
            // No server error: the connection broke, could not be made (refused, no server of
            // the URL takes writes), or timed out. The cause says which.
            let mut message = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            return Self::Unavailable(message);
        };
        let code = db.code().code();
        match code {
            sqlstate::QUERY_CANCELED | sqlstate::LOCK_NOT_AVAILABLE => Self::Timeout,
            sqlstate::READ_ONLY_TRANSACTION => {
                discard_connections_opened_before_now(Reason::ReadOnly);
                Self::Unavailable(format!(
                    "the server does not take writes now: {}",
                    db.message()
                ))
            }
            sqlstate::ADMIN_SHUTDOWN | sqlstate::CRASH_SHUTDOWN | sqlstate::CANNOT_CONNECT_NOW => {
                discard_connections_opened_before_now(Reason::ShuttingDown);
                Self::Unavailable(db.message().to_owned())
            }
            sqlstate::TOO_MANY_CONNECTIONS | sqlstate::IDLE_IN_TRANSACTION_TIMEOUT => {
                Self::Unavailable(db.message().to_owned())
            }
            sqlstate::SERIALIZATION_FAILURE | sqlstate::DEADLOCK_DETECTED => {
                Self::Unavailable(format!("transient conflict: {}", db.message()))
            }
            sqlstate::APPEND_ONLY | sqlstate::INSUFFICIENT_PRIVILEGE => {
                Self::Forbidden(db.message().to_owned())
            }
            sqlstate::CHECK_VIOLATION | sqlstate::NOT_NULL_VIOLATION => {
                Self::InvalidInput(db.message().to_owned())
            }
            // A value the server cannot take (a data exception: a number out of range, text
            // a type refuses): the input's fault, not the database's.
            _ if code.starts_with(sqlstate::DATA_EXCEPTION_CLASS) => {
                Self::InvalidInput(format!("{} (SQLSTATE {code})", db.message()))
            }
            _ if code.starts_with(sqlstate::CONNECTION_EXCEPTION_CLASS) => {
                Self::Unavailable(db.message().to_owned())
            }
            // The server is out of disk or memory, or its storage fails: down for now, not a
            // defect of the caller or of the data; a retry later may go through.
            _ if code.starts_with(sqlstate::INSUFFICIENT_RESOURCES_CLASS)
                || code.starts_with(sqlstate::SYSTEM_ERROR_CLASS) =>
            {
                Self::Unavailable(format!(
                    "the database server cannot do it now: {} (SQLSTATE {code})",
                    db.message()
                ))
            }
            // Misconfigured credentials or database: for a caller the store is out of reach
            // (readiness fails too); the operator reads why in the log.
            _ if code.starts_with(sqlstate::INVALID_AUTHORIZATION_CLASS)
                || code == sqlstate::INVALID_CATALOG_NAME =>
            {
                Self::Unavailable(format!(
                    "the database server refused the connection: {} (SQLSTATE {code})",
                    db.message()
                ))
            }
            // Not 42883 or 42704: a function called with the wrong argument types, an
            // unknown setting, are defects, not a schema that is behind.
            sqlstate::UNDEFINED_TABLE
            | sqlstate::UNDEFINED_COLUMN
            | sqlstate::INVALID_SCHEMA_NAME => {
                Self::SchemaMissing(format!("{} (SQLSTATE {code})", db.message()))
            }
            _ => Self::Database(format!("{} (SQLSTATE {code})", db.message())),
        }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError;
        match error {
            PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => {
                Self::Unavailable("no database connection free in time (pool exhausted)".into())
            }
            PoolError::Timeout(deadpool_postgres::TimeoutType::Create) => {
                Self::Unavailable("opening a database connection took too long".into())
            }
            PoolError::Timeout(deadpool_postgres::TimeoutType::Recycle) => {
                Self::Unavailable("checking a pooled database connection took too long".into())
            }
            // Opening a connection failed. A server that refuses a login (no CONNECT privilege,
            // say) answers with an error that on a statement would be the caller's or ours; at
            // login it means the store is out of reach, as a wrong password does.
            PoolError::Backend(e) => Self::at_login(e),
            PoolError::Closed => Self::Unavailable("the connection pool is closed".into()),
            other => Self::Unavailable(other.to_string()),
        }
    }
}
