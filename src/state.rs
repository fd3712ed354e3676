//! What the exporter currently knows about each proxy: its reported status
//! (after hysteresis), its last check, and when it is next due (back-off).
//!
//! Why sharded mutexes: results arrive from every worker at thousands per
//! second while scrapes and the status page read everything. Each update
//! holds one shard for a few hundred nanoseconds and no lock is ever held
//! across a check or an `.await`, so a scrape never waits on a sweep.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use crate::model::{CheckResult, Phase, Proxy, ProxyProtocol, ProxyStatus, Reason};

const SHARDS: usize = 32;

/// Hysteresis: how many consecutive results flip a proxy's reported state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hysteresis {
    /// Consecutive failed checks before an up proxy is reported INACTIVE.
    pub fail_threshold: u32,
    /// Consecutive successful checks before an INACTIVE proxy is reported up.
    pub success_threshold: u32,
}

impl Default for Hysteresis {
    /// One result flips the state, as pharox.
    fn default() -> Self {
        Hysteresis {
            fail_threshold: 1,
            success_threshold: 1,
        }
    }
}

/// Check proxies that stay INACTIVE less often: each further failure
/// doubles the gap between checks, up to `max_interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecheckBackoff {
    /// Off by default: every proxy every sweep, as pharox.
    pub enabled: bool,
    /// Longest gap between checks of a dead proxy.
    pub max_interval: Duration,
}

impl Default for RecheckBackoff {
    fn default() -> Self {
        RecheckBackoff {
            enabled: false,
            max_interval: Duration::from_secs(600),
        }
    }
}

/// How results become reported states and due times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Hysteresis on the reported status.
    pub hysteresis: Hysteresis,
    /// Back-off for proxies that stay INACTIVE.
    pub backoff: RecheckBackoff,
    /// The sweep interval: the unit the back-off multiplies.
    pub interval: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            hysteresis: Hysteresis::default(),
            backoff: RecheckBackoff::default(),
            interval: Duration::from_secs(60),
        }
    }
}

/// The last check of a proxy, kept small: 1M of these must fit in memory.
#[derive(Debug, Clone)]
pub(crate) struct LastCheck {
    /// Latency, ms (for INACTIVE, the timeout, as pharox reports it).
    pub latency_ms: u64,
    /// How long the check really took, ms.
    pub elapsed_ms: u64,
    /// Unix time of the check, seconds.
    pub checked_at: f64,
    /// Failure reason.
    pub reason: Option<Reason>,
    /// Failure phase.
    pub phase: Option<Phase>,
    /// Human error (failures only).
    pub error: Option<Box<str>>,
}

/// Everything known about one proxy.
#[derive(Debug, Clone)]
pub(crate) struct ProxyState {
    /// The proxy as last read from the inventory.
    pub proxy: Arc<Proxy>,
    /// Status reported to users (after hysteresis); `None` until first checked.
    pub reported: Option<ProxyStatus>,
    /// Consecutive failed checks.
    pub fails: u32,
    /// Consecutive successful checks.
    pub oks: u32,
    /// The last check.
    pub last: Option<LastCheck>,
    /// Not checked again before this instant (back-off); `None` = every sweep.
    next_due: Option<Instant>,
    generation: u64,
    /// Index of this proxy's (pool, provider, protocol) in [`Tally`].
    label_set: usize,
}

/// A change of reported status caused by one result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transition {
    /// Reported status before the result (`None`: never checked).
    pub before: Option<ProxyStatus>,
    /// Reported status after it.
    pub after: ProxyStatus,
}

/// Counts of proxies per label set, for gauges and the status page.
pub(crate) type StatusCounts = BTreeMap<(String, String, ProxyProtocol), [u64; 5]>;

/// Index into a [`StatusCounts`] row: the four statuses, then "unchecked".
pub(crate) fn status_index(s: Option<ProxyStatus>) -> usize {
    match s {
        Some(ProxyStatus::Active) => 0,
        Some(ProxyStatus::Slow) => 1,
        Some(ProxyStatus::Inactive) => 2,
        Some(ProxyStatus::Banned) => 3,
        None => 4,
    }
}

/// The per-proxy state of the whole inventory.
/// Proxies per label set and reported status, kept up to date as states
/// change, so a scrape costs O(label sets) instead of a walk over every proxy
/// (400 ms at a million proxies).
#[derive(Default)]
struct Tally {
    index: HashMap<(String, String, ProxyProtocol), usize>,
    labels: Vec<(String, String, ProxyProtocol)>,
    rows: Vec<[u64; 5]>,
}

impl Tally {
    fn label_set(&mut self, p: &Proxy) -> usize {
        let key = (p.pool.clone(), p.provider.clone(), p.protocol);
        if let Some(i) = self.index.get(&key) {
            return *i;
        }
        self.labels.push(key.clone());
        self.rows.push([0; 5]);
        self.index.insert(key, self.rows.len() - 1);
        self.rows.len() - 1
    }

    fn add(&mut self, set: usize, status: Option<ProxyStatus>) {
        self.rows[set][status_index(status)] += 1;
    }

    fn remove(&mut self, set: usize, status: Option<ProxyStatus>) {
        let n = &mut self.rows[set][status_index(status)];
        *n = n.saturating_sub(1);
    }
}

pub(crate) struct StateStore {
    shards: Vec<Mutex<HashMap<String, ProxyState>>>,
    tally: Mutex<Tally>,
    /// Read on every result, written on a config reload: a read lock is an
    /// atomic operation, where a mutex taken by every worker would make
    /// them wait on each other.
    policy: RwLock<Policy>,
    generation: Mutex<u64>,
}

impl Default for StateStore {
    fn default() -> Self {
        StateStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            tally: Mutex::new(Tally::default()),
            policy: RwLock::new(Policy::default()),
            generation: Mutex::new(0),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a shard can only have interrupted a plain field
    // update; the map is still consistent, so keep serving it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StateStore {
    /// An empty store.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn shard(&self, id: &str) -> &Mutex<HashMap<String, ProxyState>> {
        let mut h = DefaultHasher::new();
        id.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    /// Set hysteresis and back-off (from the current config).
    pub(crate) fn set_policy(&self, policy: Policy) {
        // A poisoned lock only means a panic mid-copy of plain data.
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = policy;
    }

    /// Make the store hold exactly these proxies: new ones are added
    /// unchecked, known ones keep their state, missing ones are forgotten so
    /// they disappear from gauges and per-proxy series.
    pub(crate) fn sync(&self, proxies: &[Arc<Proxy>]) {
        let gen = {
            let mut g = lock(&self.generation);
            *g += 1;
            *g
        };
        for p in proxies {
            let mut shard = lock(self.shard(&p.id));
            match shard.get_mut(&p.id) {
                Some(s) => {
                    if *s.proxy != **p {
                        let same_labels = s.proxy.pool == p.pool
                            && s.proxy.provider == p.provider
                            && s.proxy.protocol == p.protocol;
                        if !same_labels {
                            let mut t = lock(&self.tally);
                            t.remove(s.label_set, s.reported);
                            s.label_set = t.label_set(p);
                            t.add(s.label_set, s.reported);
                        }
                        s.proxy = p.clone();
                    }
                    s.generation = gen;
                }
                None => {
                    let state = self.new_state(p, gen);
                    shard.insert(p.id.clone(), state);
                }
            }
        }
        for shard in &self.shards {
            lock(shard).retain(|_, s| {
                let keep = s.generation == gen;
                if !keep {
                    lock(&self.tally).remove(s.label_set, s.reported);
                }
                keep
            });
        }
    }

    /// A proxy's first state (unchecked), counted in the tally.
    fn new_state(&self, p: &Arc<Proxy>, generation: u64) -> ProxyState {
        let mut t = lock(&self.tally);
        let label_set = t.label_set(p);
        t.add(label_set, None);
        ProxyState {
            proxy: p.clone(),
            reported: None,
            fails: 0,
            oks: 0,
            last: None,
            next_due: None,
            generation,
            label_set,
        }
    }

    /// Proxies due for a check at `now`, in the order given.
    pub(crate) fn due(&self, proxies: &[Arc<Proxy>], now: Instant) -> Vec<Arc<Proxy>> {
        proxies
            .iter()
            .filter(|p| {
                let shard = lock(self.shard(&p.id));
                shard
                    .get(&p.id)
                    .and_then(|s| s.next_due)
                    .map(|d| d <= now)
                    .unwrap_or(true)
            })
            .cloned()
            .collect()
    }

    /// Apply one result: hysteresis on the reported status, back-off on the
    /// next due time. Returns the reported transition.
    pub(crate) fn record(&self, proxy: &Arc<Proxy>, r: &CheckResult, now: Instant) -> Transition {
        let Policy {
            hysteresis: hyst,
            backoff,
            interval,
        } = *self.policy.read().unwrap_or_else(|e| e.into_inner());
        let mut shard = lock(self.shard(&proxy.id));
        // Look up before inserting: `entry` would allocate the id on every result.
        if !shard.contains_key(&proxy.id) {
            let state = self.new_state(proxy, 0);
            shard.insert(proxy.id.clone(), state);
        }
        let Some(s) = shard.get_mut(&proxy.id) else {
            unreachable!("inserted above under the same lock")
        };
        let before = s.reported;
        if r.status.is_up() {
            s.oks = s.oks.saturating_add(1);
            s.fails = 0;
        } else {
            s.fails = s.fails.saturating_add(1);
            s.oks = 0;
        }
        let after = match before {
            None => r.status,
            Some(b) if b.is_up() => {
                if r.status.is_up() || s.fails >= hyst.fail_threshold {
                    r.status
                } else {
                    b
                }
            }
            Some(b) => {
                if r.status.is_up() && s.oks >= hyst.success_threshold {
                    r.status
                } else {
                    b
                }
            }
        };
        s.reported = Some(after);
        if before != Some(after) {
            let mut t = lock(&self.tally);
            t.remove(s.label_set, before);
            t.add(s.label_set, Some(after));
        }
        s.next_due = if backoff.enabled && after == ProxyStatus::Inactive && s.fails > 1 {
            // Each further failure doubles the gap, up to the ceiling. The
            // first failure keeps the normal interval, so a blip costs nothing.
            let factor = 1u32 << (s.fails - 1).min(16);
            let gap = interval
                .saturating_mul(factor)
                .min(backoff.max_interval.max(interval));
            // Due slightly early, so the sweep that starts on time still picks it up.
            Some(now + gap.saturating_sub(interval / 10))
        } else {
            None
        };
        s.last = Some(LastCheck {
            latency_ms: r.latency_ms,
            elapsed_ms: r.elapsed_ms,
            checked_at: crate::model::unix_seconds(r.checked_at),
            reason: r.reason,
            phase: r.phase,
            error: r.error.as_deref().map(Box::from),
        });
        Transition { before, after }
    }

    /// Number of proxies held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Proxies per (pool, provider, protocol) and reported status.
    pub(crate) fn counts(&self) -> StatusCounts {
        let t = lock(&self.tally);
        t.labels
            .iter()
            .zip(&t.rows)
            // A label set whose last proxy left the inventory disappears.
            .filter(|(_, row)| row.iter().any(|n| *n > 0))
            .map(|(k, row)| (k.clone(), *row))
            .collect()
    }

    /// [`StateStore::counts`] recomputed by walking every proxy (the
    /// reference the tally is tested against).
    #[cfg(test)]
    fn recount(&self) -> StatusCounts {
        let mut out = StatusCounts::new();
        self.for_each(|s| {
            let key = (
                s.proxy.pool.clone(),
                s.proxy.provider.clone(),
                s.proxy.protocol,
            );
            out.entry(key).or_insert([0; 5])[status_index(s.reported)] += 1;
        });
        out
    }

    /// Visit every proxy's state (one shard locked at a time, briefly).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&ProxyState)) {
        for shard in &self.shards {
            for s in lock(shard).values() {
                f(s);
            }
        }
    }

    /// The state of one proxy.
    pub(crate) fn get(&self, id: &str) -> Option<ProxyState> {
        lock(self.shard(id)).get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Phases;

    fn result(status: ProxyStatus) -> CheckResult {
        CheckResult {
            proxy_id: "p".into(),
            status,
            latency_ms: 10,
            elapsed_ms: 10,
            attempts: 1,
            status_code: None,
            reason: (!status.is_up()).then_some(Reason::Timeout),
            phase: None,
            error: None,
            checked_at: chrono::Utc::now(),
            phases: Phases::default(),
            exit: None,
        }
    }

    #[test]
    fn hysteresis_needs_n_failures_and_m_successes() {
        let st = StateStore::new();
        st.set_policy(Policy {
            hysteresis: Hysteresis {
                fail_threshold: 3,
                success_threshold: 2,
            },
            ..Policy::default()
        });
        let p = Arc::new(Proxy::new(ProxyProtocol::Http, "127.0.0.1", 1));
        st.sync(std::slice::from_ref(&p));
        let now = Instant::now();
        use ProxyStatus::*;
        let seq = [Active, Inactive, Inactive, Inactive, Active, Slow, Inactive];
        let want = [Active, Active, Active, Inactive, Inactive, Slow, Slow];
        for (s, w) in seq.iter().zip(want) {
            assert_eq!(st.record(&p, &result(*s), now).after, w, "after {s:?}");
        }
    }

    #[test]
    fn backoff_skips_dead_proxies_up_to_the_ceiling() {
        let st = StateStore::new();
        let backoff = RecheckBackoff {
            enabled: true,
            max_interval: Duration::from_secs(240),
        };
        st.set_policy(Policy {
            hysteresis: Hysteresis::default(),
            backoff,
            interval: Duration::from_secs(60),
        });
        let p = Arc::new(Proxy::new(ProxyProtocol::Http, "127.0.0.1", 1));
        let list = vec![p.clone()];
        st.sync(&list);
        let t0 = Instant::now();
        st.record(&p, &result(ProxyStatus::Inactive), t0);
        assert_eq!(
            st.due(&list, t0 + Duration::from_secs(60)).len(),
            1,
            "first failure: normal interval"
        );
        st.record(&p, &result(ProxyStatus::Inactive), t0);
        assert_eq!(st.due(&list, t0 + Duration::from_secs(60)).len(), 0);
        assert_eq!(st.due(&list, t0 + Duration::from_secs(120)).len(), 1);
        for _ in 0..10 {
            st.record(&p, &result(ProxyStatus::Inactive), t0);
        }
        assert_eq!(
            st.due(&list, t0 + Duration::from_secs(239)).len(),
            1,
            "capped at max_interval"
        );
        st.record(&p, &result(ProxyStatus::Active), t0);
        assert_eq!(
            st.due(&list, t0).len(),
            1,
            "a live proxy is due every sweep"
        );
    }

    #[test]
    fn tally_matches_a_full_recount_through_every_kind_of_change() {
        let st = StateStore::new();
        st.set_policy(Policy {
            hysteresis: Hysteresis {
                fail_threshold: 2,
                success_threshold: 1,
            },
            ..Policy::default()
        });
        let mk = |i: u16, pool: &str, provider: &str, protocol: ProxyProtocol| {
            let mut p = Proxy::new(protocol, "127.0.0.1", 1000 + i);
            p.id = format!("p{i}");
            p.pool = pool.into();
            p.provider = provider.into();
            Arc::new(p)
        };
        let statuses = [
            ProxyStatus::Active,
            ProxyStatus::Inactive,
            ProxyStatus::Slow,
            ProxyStatus::Inactive,
        ];
        let mut inventory: Vec<Arc<Proxy>> = (0..40)
            .map(|i| {
                mk(
                    i,
                    ["a", "b"][i as usize % 2],
                    ["x", "y", "z"][i as usize % 3],
                    ProxyProtocol::ALL[i as usize % 6],
                )
            })
            .collect();
        for round in 0..6usize {
            st.sync(&inventory);
            assert_eq!(st.counts(), st.recount(), "after sync, round {round}");
            for (i, p) in inventory.iter().enumerate() {
                if (i + round) % 3 != 0 {
                    st.record(p, &result(statuses[(i * 7 + round) % 4]), Instant::now());
                }
            }
            assert_eq!(st.counts(), st.recount(), "after results, round {round}");
            // Next inventory: drop some, add some, move some to another pool.
            inventory.retain(|p| p.port % 5 != round as u16);
            inventory.push(mk(100 + round as u16, "c", "x", ProxyProtocol::Socks5));
            let moved = Arc::make_mut(&mut inventory[0]);
            moved.pool = format!("moved{round}");
        }
        st.sync(&[]);
        assert!(
            st.counts().is_empty(),
            "an empty inventory leaves no label set"
        );
    }

    #[test]
    fn sync_forgets_proxies_that_left_the_inventory() {
        let st = StateStore::new();
        let a = Arc::new(Proxy::new(ProxyProtocol::Http, "127.0.0.1", 1));
        let b = Arc::new(Proxy::new(ProxyProtocol::Socks5, "127.0.0.1", 2));
        st.sync(&[a.clone(), b.clone()]);
        st.record(&a, &result(ProxyStatus::Active), Instant::now());
        assert_eq!(st.len(), 2);
        st.sync(std::slice::from_ref(&a));
        assert_eq!(st.len(), 1);
        assert_eq!(
            st.get(&a.id).and_then(|s| s.reported),
            Some(ProxyStatus::Active),
            "kept state"
        );
        let counts = st.counts();
        assert_eq!(counts.len(), 1);
    }
}
