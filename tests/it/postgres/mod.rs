//! pharox's PostgreSQL database as inventory and result store, against a
//! throwaway PostgreSQL server per test, seeded and read back by pharox
//! itself (see `support::pg`).

mod cli;
mod compat;
mod deadlines;
mod exporter;
mod geo;
mod leases;
mod sink;
mod tls;
