//! pharox-exporter: a Prometheus exporter sidecar that keeps proxy pools honest.
//!
//! Data flows one way:
//!
//! 1. [`config`] turns a YAML file and flags into one validated `Config`;
//! 2. [`inventory`] sources (files, later PostgreSQL) yield [`model::Proxy`] values;
//! 3. [`sweep`] schedules checks with bounded concurrency;
//! 4. [`probe`] dials each proxy, speaks its protocol, times every phase and
//!    classifies the outcome into a [`model::CheckResult`];
//! 5. sinks (metrics, storage) consume results as each check completes, and
//!    `server` serves what they hold over HTTP.
//!
//! Start reading at [`model`], then [`probe::check`].

pub mod config;
pub mod exporter;
pub mod inventory;
pub mod model;
pub mod pharox_db;
pub mod probe;
pub mod report;
pub mod secret;
pub mod server;
pub mod sinks;
pub mod state;
pub mod sweep;
pub mod tls_roots;
