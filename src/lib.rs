//! pharox-exporter: a Prometheus exporter sidecar that keeps proxy pools honest.
//!
//! Data flows one way:
//!
//! 1. `config` turns a YAML file and flags into one validated `Config`;
//! 2. [`Source::read`] yields this shard's [`Proxy`] values
//!    from a file or pharox's PostgreSQL database;
//! 3. `sweep` schedules checks with bounded concurrency;
//! 4. `probe` dials each proxy, speaks its protocol, times every phase and
//!    classifies the outcome into a [`CheckResult`];
//! 5. `sinks::Sinks` records each result as its check completes (state,
//!    metrics, database), and `server` serves what they hold over HTTP;
//! 6. [`App`] builds all of the above, runs the sweep loop and stops in
//!    order: scheduling, in-flight checks, sinks, server ([`Shutdown`]).
//!
//! Start reading at `src/model.rs`, then [`check`] (`src/probe/mod.rs`).

// Every module is private: the API is what is re-exported below, so the
// compiler reports dead code and `unreachable_pub` keeps `pub` honest.
// Layers, lowest first; a module imports only from layers below it (the
// test `tests/it/layering.rs` enforces this; README "Layout" draws it).
//
// L0 vocabulary and primitives
mod model; //      Proxy, ProxyProtocol, ProxyStatus, Phase, Reason, CheckResult (imports secret, text)
mod secret; //     Secret (prints ***) and the credential redactors
mod shutdown; //   the stop token and a tracker for graceful drains
mod text; //       Text (compact shared strings), Labels, the inventory's interner
mod tls_roots; //  webpki + system roots + an optional CA file

// L1 leaf capabilities
mod geo; //        exit geolocation: MaxMind-format databases, hot re-read; geo_mismatch
mod pharox_db; //  pharox's PostgreSQL schema: config, connect, errors, stats, leases
mod probe; //      one check of one proxy: dial, handshake, request, classify
mod state; //      per-proxy state: hysteresis, recheck back-off, status counts

// L2 pipeline stages
mod inventory; //  where proxies come from: file formats, pharox's database, shards
mod sweep; //      one sweep: bounded workers, pacing, grace

// L3 settings, and consumers of results
mod config; //     file + flags -> one validated, typed Config
mod sinks; //      results -> state, metrics, database writer

// L4 HTTP
mod server; //     /metrics, /probe, /-/*, status page

// L5 composition root
mod app; //        App::build (all that can fail at start), App::run

// The API used by the binary (`src/bin/pharox-exporter`) and tests/.
pub use app::{ensure_fd_limit, open_geo, source_spec, App, StartError};
pub use config::{
    parse_duration, Attempts, Config, ConfigError, Overrides, StatusCodes, TargetUrl, Timeout,
};
pub use geo::{GeoDb, GeoError, GeoStats, GeoStatsSnapshot};
pub use inventory::pharox_db::PharoxDbSource;
pub use inventory::{
    parse_proxy_url, Duplicate, Format, InventoryRead, ReadMode, RowError, Shard, Source,
    SourceError, SourceSpec,
};
pub use model::{
    parse_country, Anonymity, CheckResult, Exit, Geo, GeoPolicy, Phase, Phases, Proxy,
    ProxyProtocol, ProxyStatus, Reason,
};
pub use pharox_db::{
    Config as DbConfig, Error as DbError, LeaseBurst, PgTls as DbTls, Stats as DbStats,
};
pub use probe::{
    check, check_with, client_config, learn_own_ips, CheckOptions, OwnIps, TlsConfigError,
    PHAROX_DEFAULT_TARGET, USER_AGENT,
};
pub use secret::{redact_credentials, redact_entry, Secret, Userinfo};
pub use server::{bind_judge, serve_judge, WebConfigError, JUDGE_MAX_CONNECTIONS};
pub use shutdown::Shutdown;
pub use sinks::db_writer::{CloseReport, ResultWriter};
pub use sweep::{run as run_sweep, SweepOutcome, SweepParams};
pub use text::{Labels, Text};
