//! Sinks consume check results as each check completes: [`metrics`] keeps
//! the Prometheus registry. Sinks know nothing of sockets or scheduling.

pub mod metrics;
pub mod postgres;
