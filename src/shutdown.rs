//! Stopping in order: the stop token every long-running task listens to, and
//! a tracker that lets an owner wait (with a bound) for the tasks it spawned.
//!
//! Why two small types rather than one channel: the exporter stops in stages
//! (scheduling, then in-flight checks, then sinks, then the HTTP server), so
//! each stage gets its own [`Shutdown`], and whoever must drain a stage waits
//! on a [`Tracker`] of that stage's tasks.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// A stop signal shared by whoever holds a clone. Cloning shares the signal.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<(AtomicBool, Notify)>,
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("triggered", &self.is_triggered())
            .finish()
    }
}

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask everything holding this signal to stop starting work.
    pub fn trigger(&self) {
        self.inner.0.store(true, Ordering::SeqCst);
        self.inner.1.notify_waiters();
    }

    /// True once triggered.
    pub fn is_triggered(&self) -> bool {
        self.inner.0.load(Ordering::SeqCst)
    }

    /// Resolves when triggered (at once if already).
    pub async fn wait(&self) {
        loop {
            // Created before the check: a trigger in between still wakes it.
            let notified = self.inner.1.notified();
            if self.is_triggered() {
                return;
            }
            notified.await;
        }
    }
}

/// Counts live tasks so their owner can wait until all have finished.
/// Each task holds a [`TrackGuard`] for as long as it runs.
#[derive(Clone, Default)]
pub(crate) struct Tracker {
    inner: Arc<TrackerInner>,
}

#[derive(Default)]
struct TrackerInner {
    live: AtomicUsize,
    idle: Notify,
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("live", &self.live())
            .finish()
    }
}

/// Held by one tracked task; dropping it marks the task finished.
#[must_use = "the task counts as finished when the guard is dropped"]
pub(crate) struct TrackGuard {
    inner: Arc<TrackerInner>,
}

impl Drop for TrackGuard {
    fn drop(&mut self) {
        if self.inner.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}

impl Tracker {
    /// An empty tracker.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Count one more live task until the guard is dropped.
    pub(crate) fn track(&self) -> TrackGuard {
        self.inner.live.fetch_add(1, Ordering::SeqCst);
        TrackGuard {
            inner: self.inner.clone(),
        }
    }

    /// Tasks live now.
    pub(crate) fn live(&self) -> usize {
        self.inner.live.load(Ordering::SeqCst)
    }

    /// Resolves once no tracked task is live (at once if none is).
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            if self.live() == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wait_returns_after_a_trigger_and_at_once_when_triggered() {
        let s = Shutdown::new();
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.wait().await }
        });
        s.trigger();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken")
            .expect("joined");
        tokio::time::timeout(Duration::from_millis(10), s.wait())
            .await
            .expect("already triggered");
    }

    #[tokio::test]
    async fn tracker_is_idle_once_every_guard_is_dropped() {
        let t = Tracker::new();
        tokio::time::timeout(Duration::from_millis(10), t.idle())
            .await
            .expect("idle when empty");
        let (a, b) = (t.track(), t.track());
        assert_eq!(t.live(), 2);
        drop(a);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), t.idle())
                .await
                .is_err(),
            "one task still live"
        );
        let waiter = tokio::spawn({
            let t = t.clone();
            async move { t.idle().await }
        });
        drop(b);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken")
            .expect("joined");
    }
}
