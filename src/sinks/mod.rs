//! Sinks consume check results as each check completes: [`metrics`] keeps
//! the Prometheus registry, [`db_writer`] writes results back to pharox's
//! database. Sinks know nothing of sockets or scheduling.

pub mod db_writer;
pub mod metrics;
