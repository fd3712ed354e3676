//! Errors of talking to pharox's database. Every message passes through the
//! redactor before it is stored here, so an `Error` can be logged as is.

use crate::secret::{redact_credentials, Userinfo};

/// Everything that can go wrong talking to pharox's database. Messages are
/// free of credentials.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid (missing or conflicting URL sources, bad values).
    #[error("postgres config: {0}")]
    Config(String),
    /// The connection URL could not be parsed.
    #[error("postgres url: {0}")]
    Url(String),
    /// Connecting (TCP, TLS or authentication) failed.
    #[error("postgres connect: {0}")]
    Connect(String),
    /// A query failed.
    #[error("postgres query: {0}")]
    Query(String),
    /// The spill directory could not be used.
    #[error("postgres spill: {0}")]
    Spill(String),
    /// A deadline was hit: the client-side `operation_timeout`, or the
    /// server's `statement_timeout` / `lock_timeout` (SQLSTATE 57014, 55P03).
    #[error("postgres timeout: {0}")]
    Timeout(String),
}

impl Error {
    /// A failed query, with the server's message and SQLSTATE, redacted.
    pub(crate) fn query(e: &tokio_postgres::Error) -> Self {
        if is_server_timeout(e) {
            return Error::Timeout(redact(&pg_error_text(e)));
        }
        Error::Query(redact(&pg_error_text(e)))
    }

    /// True when a deadline ended the operation (client or server side).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout(_))
    }

    /// A failed connect to `server` (host:port, database, user: never the
    /// password), with the server's message and SQLSTATE, redacted.
    pub(crate) fn connect_to(server: &str, e: &tokio_postgres::Error) -> Self {
        Error::Connect(redact(&format!("{server}: {}", pg_error_text(e))))
    }
}

/// The server cancelled a statement at `statement_timeout` (57014,
/// query_canceled) or gave up waiting for a lock at `lock_timeout` (55P03,
/// lock_not_available).
pub(crate) fn is_server_timeout(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code()
        .is_some_and(|c| *c == SqlState::QUERY_CANCELED || *c == SqlState::LOCK_NOT_AVAILABLE)
}

/// What every database message goes through: the whole `user:password@` goes.
pub(crate) fn redact(s: &str) -> String {
    redact_credentials(s, Userinfo::Drop)
}

/// The full text of a driver error, including the server's message and
/// SQLSTATE when there is one (the driver's `Display` alone says only "db error").
pub(crate) fn pg_error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        }
    }
}
