//! pharox-exporter's integration tests: one binary, one module per area.
//!
//! In-process fakes (proxies, targets, the test PKI, free and refused ports)
//! come from the `pharox-testkit` crate; what only these tests need (the
//! exporter as a process, real proxies, PostgreSQL and pharox, the
//! exposition parser, the monitoring bundle's files) is in [`support`].
//!
//! Tests run in parallel threads of this one process: each starts its own
//! servers on free loopback ports in its own temp dirs, and changes no
//! process-wide state (environment, working directory, signal handlers
//! beyond what an in-process exporter installs).

// The crate denies unsafe code; these tests signal and kill the process
// groups of the servers they start, and read their own uid (libc calls).
#![allow(unsafe_code)]

mod support;

mod anonymity;
mod bundle;
mod cli;
mod deadlines;
mod demo;
mod deploy_k8s;
mod e2e;
mod fd_exhaustion;
mod geo;
mod layering;
mod postgres;
mod readme;
mod real_proxies;
mod secrets;
mod sharding;
