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
}

impl Error {
    /// A failed query, with the server's message and SQLSTATE, redacted.
    pub(crate) fn query(e: &tokio_postgres::Error) -> Self {
        Error::Query(redact(&pg_error_text(e)))
    }

    /// A failed connect to `server` (host:port, database, user: never the
    /// password), with the server's message and SQLSTATE, redacted.
    pub(crate) fn connect_to(server: &str, e: &tokio_postgres::Error) -> Self {
        Error::Connect(redact(&format!("{server}: {}", pg_error_text(e))))
    }
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
