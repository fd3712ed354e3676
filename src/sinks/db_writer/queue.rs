//! The bounded in-memory queue between the sweep and the writer, and what
//! happens when it is full: spill to disk if a spill directory is set;
//! otherwise keep only the newest result per proxy as a status-only update
//! and count every history row that could not be kept.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;

use uuid::Uuid;

use super::batch::Pending;
use super::spill::Spill;
use crate::pharox_db::Stats;

/// Results waiting for the writer.
pub(super) struct Queue {
    /// In arrival order, at most `queue_capacity`.
    pub(super) items: VecDeque<Pending>,
    /// Status-only updates kept when the queue was full: newest per proxy.
    pub(super) overflow: HashMap<Uuid, Pending>,
    /// Where results go when `items` is full, if configured.
    pub(super) spill: Option<Spill>,
}

/// Where [`Queue::push`] put a result.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Pushed {
    /// In memory: the writer should be woken.
    Queued,
    /// In a spill file, or reduced to a status update (or dropped, counted).
    Elsewhere,
}

impl Queue {
    pub(super) fn new(spill: Option<Spill>) -> Queue {
        Queue {
            items: VecDeque::new(),
            overflow: HashMap::new(),
            spill,
        }
    }

    /// Queue one result. Never fails: a result that does not fit is spilled,
    /// or reduced to a status update with its history row counted as dropped.
    pub(super) fn push(&mut self, p: Pending, capacity: usize, stats: &Stats) -> Pushed {
        if self.items.len() < capacity {
            self.items.push_back(p);
            stats.pending.fetch_add(1, Ordering::Relaxed);
            return Pushed::Queued;
        }
        if let Some(spill) = self.spill.as_mut() {
            let mut line = serde_json::to_vec(&p).unwrap_or_default();
            line.push(b'\n');
            match spill.append(&line) {
                Ok(()) => {
                    stats.pending.fetch_add(1, Ordering::Relaxed);
                    return Pushed::Elsewhere;
                }
                Err(e) => tracing::warn!(error = %e, "postgres sink: spill write failed"),
            }
        }
        // Full and nowhere to spill: the history row is lost (counted), the
        // status survives if it is the newest we have for this proxy.
        stats.dropped_history.fetch_add(1, Ordering::Relaxed);
        let mut p = p;
        p.history = false;
        match self.overflow.get_mut(&p.proxy_id) {
            Some(old) => {
                stats.dropped_status.fetch_add(1, Ordering::Relaxed);
                if p.checked_at >= old.checked_at {
                    *old = p;
                }
            }
            None => {
                self.overflow.insert(p.proxy_id, p);
                stats.pending.fetch_add(1, Ordering::Relaxed);
            }
        }
        Pushed::Elsewhere
    }

    /// Up to `max` results from memory: queued ones first, then overflow.
    /// Empty when memory is empty (the caller then reads back a spill file).
    pub(super) fn take(&mut self, max: usize) -> Vec<Pending> {
        let n = self.items.len().min(max);
        let mut batch: Vec<Pending> = self.items.drain(..n).collect();
        if batch.len() < max && !self.overflow.is_empty() {
            let keys: Vec<Uuid> = self
                .overflow
                .keys()
                .take(max - batch.len())
                .copied()
                .collect();
            for k in keys {
                if let Some(p) = self.overflow.remove(&k) {
                    batch.push(p);
                }
            }
        }
        batch
    }

    /// Put `rows` back at the head of the queue, in their order.
    pub(super) fn requeue_front(&mut self, rows: Vec<Pending>) {
        for p in rows.into_iter().rev() {
            self.items.push_front(p);
        }
    }

    /// Everything in memory, for spilling at shutdown.
    pub(super) fn drain_all(&mut self) -> Vec<Pending> {
        let mut out: Vec<Pending> = self.items.drain(..).collect();
        out.extend(self.overflow.drain().map(|(_, p)| p));
        out
    }
}

/// Give up on `batch` (a row the server rejects): counted as dropped.
pub(super) fn drop_batch(stats: &Stats, batch: &mut Vec<Pending>) {
    for p in batch.drain(..) {
        if p.history {
            stats.dropped_history.fetch_add(1, Ordering::Relaxed);
        }
        stats.dropped_status.fetch_add(1, Ordering::Relaxed);
        stats.pending.fetch_sub(
            1.min(stats.pending.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CheckResult, Proxy, ProxyProtocol, ProxyStatus};
    use chrono::Utc;

    fn pending(id: u128, at: chrono::DateTime<Utc>, status: ProxyStatus) -> Pending {
        let proxy = Proxy::new(ProxyProtocol::Http, "127.0.0.1", 1);
        let r = CheckResult {
            proxy_id: id.to_string(),
            status,
            latency_ms: 5,
            elapsed_ms: 5,
            attempts: 1,
            status_code: None,
            reason: None,
            phase: None,
            error: None,
            checked_at: at,
            phases: Default::default(),
            exit: None,
        };
        Pending::new(Uuid::from_u128(id), &proxy, &r)
    }

    #[test]
    fn full_without_spill_keeps_the_newest_status_per_proxy() {
        let stats = Stats::default();
        let mut q = Queue::new(None);
        let t0 = Utc::now();
        assert_eq!(
            q.push(pending(1, t0, ProxyStatus::Active), 1, &stats),
            Pushed::Queued
        );
        let later = t0 + chrono::Duration::seconds(1);
        q.push(pending(2, later, ProxyStatus::Inactive), 1, &stats);
        q.push(pending(2, t0, ProxyStatus::Slow), 1, &stats);
        let s = stats.snapshot();
        assert_eq!((s.pending, s.dropped_history, s.dropped_status), (2, 2, 1));
        let batch = q.take(10);
        assert_eq!(batch.len(), 2);
        let kept = &batch[1];
        assert_eq!((kept.status, kept.history), (ProxyStatus::Inactive, false));
        assert!(q.take(10).is_empty());
    }
}
