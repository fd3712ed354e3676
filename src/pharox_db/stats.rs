//! Counters of the database work (writer and lease cleanup), read by the
//! storage collector at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Counters of the result writer (and of the source's lease cleanup when the
/// two share one `Arc<Stats>`).
#[derive(Debug, Default)]
pub struct Stats {
    /// Results accepted and not yet written (memory, spill files, in flight).
    pub pending: AtomicU64,
    /// Batch transactions committed.
    pub writes_success: AtomicU64,
    /// Batch attempts that failed (including failed connects).
    pub writes_error: AtomicU64,
    /// Results persisted (status update and history row).
    pub results_written: AtomicU64,
    /// History rows lost because the queue was full and no spill was possible.
    pub dropped_history: AtomicU64,
    /// Status updates lost (superseded by a newer result while the queue was full).
    pub dropped_status: AtomicU64,
    /// Leases released by the pre-sweep `cleanup_expired_leases`.
    pub expired_leases_released: AtomicU64,
    /// Results for proxies no longer in the database (deleted since the sweep loaded them).
    pub unknown_proxy: AtomicU64,
    /// Health changes of leased proxies (events logged).
    pub leased_events: AtomicU64,
    /// Webhook deliveries that failed, timed out, or were dropped because the event queue was full.
    pub webhook_errors: AtomicU64,
    /// Connects (TCP, TLS, startup, authentication) that hit `operation_timeout`.
    pub timeouts_connect: AtomicU64,
    /// Inventory and lease queries ended by a deadline (client or server side).
    pub timeouts_read: AtomicU64,
    /// Batch writes ended by a deadline (client or server side).
    pub timeouts_write: AtomicU64,
    /// `proxy` rows whose geography was rewritten (`write_geo`; only rows
    /// where it changed).
    pub geo_updated: AtomicU64,
}

/// A point-in-time copy of [`Stats`] for the metrics module.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// See [`Stats::pending`].
    pub pending: u64,
    /// See [`Stats::writes_success`].
    pub writes_success: u64,
    /// See [`Stats::writes_error`].
    pub writes_error: u64,
    /// See [`Stats::results_written`].
    pub results_written: u64,
    /// See [`Stats::dropped_history`].
    pub dropped_history: u64,
    /// See [`Stats::dropped_status`].
    pub dropped_status: u64,
    /// See [`Stats::expired_leases_released`].
    pub expired_leases_released: u64,
    /// See [`Stats::unknown_proxy`].
    pub unknown_proxy: u64,
    /// See [`Stats::leased_events`].
    pub leased_events: u64,
    /// See [`Stats::webhook_errors`].
    pub webhook_errors: u64,
    /// See [`Stats::timeouts_connect`].
    pub timeouts_connect: u64,
    /// See [`Stats::timeouts_read`].
    pub timeouts_read: u64,
    /// See [`Stats::timeouts_write`].
    pub timeouts_write: u64,
    /// See [`Stats::geo_updated`].
    pub geo_updated: u64,
}

impl Stats {
    /// Read every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            pending: g(&self.pending),
            writes_success: g(&self.writes_success),
            writes_error: g(&self.writes_error),
            results_written: g(&self.results_written),
            dropped_history: g(&self.dropped_history),
            dropped_status: g(&self.dropped_status),
            expired_leases_released: g(&self.expired_leases_released),
            unknown_proxy: g(&self.unknown_proxy),
            leased_events: g(&self.leased_events),
            webhook_errors: g(&self.webhook_errors),
            timeouts_connect: g(&self.timeouts_connect),
            timeouts_read: g(&self.timeouts_read),
            timeouts_write: g(&self.timeouts_write),
            geo_updated: g(&self.geo_updated),
        }
    }

    /// Count one deadline hit by `operation` (`connect`, `read`, `write`).
    pub(crate) fn timeout(&self, operation: Operation) {
        let c = match operation {
            Operation::Connect => &self.timeouts_connect,
            Operation::Read => &self.timeouts_read,
            Operation::Write => &self.timeouts_write,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// What was being done when a deadline was hit (the `operation` label of
/// `pharox_exporter_storage_timeouts_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    /// TCP connect, TLS, startup and authentication.
    Connect,
    /// The inventory query and the lease bookkeeping before a sweep.
    Read,
    /// A batch of results written back.
    Write,
}

impl Operation {
    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Operation::Connect => "connect",
            Operation::Read => "read",
            Operation::Write => "write",
        }
    }
}
