//! pharox-exporter: a Prometheus exporter sidecar that keeps proxy pools honest.
//!
//! Data flows one way:
//!
//! 1. [`config`] turns a YAML file and flags into one validated `Config`;
//! 2. [`inventory::Source::read`] yields this shard's [`model::Proxy`] values
//!    from a file or pharox's PostgreSQL database;
//! 3. [`sweep`] schedules checks with bounded concurrency;
//! 4. [`probe`] dials each proxy, speaks its protocol, times every phase and
//!    classifies the outcome into a [`model::CheckResult`];
//! 5. [`sinks::Sinks`] records each result as its check completes (state,
//!    metrics, database), and [`server`] serves what they hold over HTTP;
//! 6. [`app`] builds all of the above, runs the sweep loop and stops in
//!    order: scheduling, in-flight checks, sinks, server ([`shutdown`]).
//!
//! Start reading at [`model`], then [`probe::check`].

pub mod app;
pub mod config;
pub mod inventory;
pub mod model;
pub mod pharox_db;
pub mod probe;
pub mod secret;
pub mod server;
pub mod shutdown;
pub mod sinks;
pub mod state;
pub mod sweep;
pub mod tls_roots;
