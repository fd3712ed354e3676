//! What the exporter currently knows about each proxy: its reported status
//! (after hysteresis), its last check, and when it is next due (back-off).
//!
//! Why sharded mutexes: results arrive from every worker at thousands per
//! second while scrapes and the status page read everything. Each update
//! holds one shard for a few hundred nanoseconds and no lock is ever held
//! across a check or an `.await`, so a scrape never waits on a sweep.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use hashbrown::HashTable;

use crate::model::{
    Anonymity, CheckResult, Exit, Phase, Proxy, ProxyProtocol, ProxyStatus, Reason,
};
use crate::text::Text;

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
    /// What the check saw of the exit (judge targets only). Boxed: a
    /// pool without a judge pays one pointer per proxy, not the summary.
    pub exit: Option<Box<ExitSeen>>,
}

/// Default of `metrics.exit_country_limit`: exit countries per pool with
/// a series of their own. A pool that spans more is rare (a global
/// residential pool), and its long tail reads as well summed as `other`.
pub(crate) const DEFAULT_EXIT_COUNTRY_LIMIT: usize = 50;

/// An ISO 3166-1 alpha-2 country code: two upper-case ASCII letters, so
/// at most 676 values whatever a geolocation database says (a bounded
/// label value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Country([u8; 2]);

impl Country {
    /// The code, upper-cased; `None` unless two ASCII letters.
    pub(crate) fn parse(s: &str) -> Option<Country> {
        match s.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some(Country([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => None,
        }
    }

    /// The two letters.
    pub(crate) fn as_str(&self) -> &str {
        // Two ASCII letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

/// The part of an [`Exit`] the exporter keeps per proxy: enough to count
/// proxies by level and country now, and to show them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ExitSeen {
    /// The exit IP the judge saw.
    pub ip: Option<IpAddr>,
    /// Anonymity level.
    pub anonymity: Option<Anonymity>,
    /// The exit's country (geolocation), when it is a valid code.
    pub country: Option<Country>,
    /// The exit's country differs from the declared one.
    pub geo_mismatch: bool,
}

impl ExitSeen {
    /// The summary of a result's exit.
    pub(crate) fn of(e: &Exit) -> ExitSeen {
        ExitSeen {
            ip: e.ip,
            anonymity: e.anonymity,
            country: e
                .geo
                .as_ref()
                .and_then(|g| g.country.as_deref())
                .and_then(Country::parse),
            geo_mismatch: e.geo_mismatch,
        }
    }
}

/// Proxies per anonymity level and exit country, from their last checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ExitCounts {
    /// Proxies per level, in [`Anonymity::ALL`] order.
    pub levels: [u64; 3],
    /// Proxies per exit country (no zero entries).
    pub countries: BTreeMap<Country, u64>,
    /// Proxies whose exit country differs from the declared one.
    pub mismatched: u64,
}

impl ExitCounts {
    fn add(&mut self, e: &ExitSeen) {
        if let Some(a) = e.anonymity {
            self.levels[anonymity_index(a)] += 1;
        }
        if let Some(c) = e.country {
            *self.countries.entry(c).or_default() += 1;
        }
        self.mismatched += u64::from(e.geo_mismatch);
    }

    fn remove(&mut self, e: &ExitSeen) {
        if let Some(a) = e.anonymity {
            let n = &mut self.levels[anonymity_index(a)];
            *n = n.saturating_sub(1);
        }
        if let Some(c) = e.country {
            if let Some(n) = self.countries.get_mut(&c) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.countries.remove(&c);
                }
            }
        }
        self.mismatched = self.mismatched.saturating_sub(u64::from(e.geo_mismatch));
    }

    /// Add another row's counts (merging label sets into a pool).
    pub(crate) fn merge(&mut self, o: &ExitCounts) {
        for (a, b) in self.levels.iter_mut().zip(o.levels) {
            *a += b;
        }
        for (c, n) in &o.countries {
            *self.countries.entry(*c).or_default() += n;
        }
        self.mismatched += o.mismatched;
    }
}

/// Index of a level in [`ExitCounts::levels`].
pub(crate) fn anonymity_index(a: Anonymity) -> usize {
    match a {
        Anonymity::Transparent => 0,
        Anonymity::Anonymous => 1,
        Anonymity::Elite => 2,
    }
}

/// [`ExitCounts`] per (pool, protocol), summed over providers.
pub(crate) type ExitCountsByPool = BTreeMap<(String, ProxyProtocol), ExitCounts>;

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
    /// As [`StateStore::offset`] + 1 (so never 0): 8 bytes where an
    /// `Option<Instant>` takes 16, to the nanosecond all the same.
    next_due: Option<NonZeroU64>,
    /// The last [`StateStore::sync`] that found the proxy in the inventory.
    /// Only compared for equality with the current one, and every state
    /// is updated or dropped by each sync, so wrapping is harmless; 16
    /// bits make the state 96 bytes instead of 104.
    generation: u16,
    /// Index of this proxy's (pool, provider, protocol) in [`Tally`].
    label_set: u32,
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
    /// Keyed by the proxies' own [`Text`]s: looking up a label set
    /// allocates nothing.
    index: HashMap<(Text, Text, ProxyProtocol), u32>,
    labels: Vec<(String, String, ProxyProtocol)>,
    rows: Vec<[u64; 5]>,
    /// Exit counts per label set, beside `rows`.
    exits: Vec<ExitCounts>,
}

impl Tally {
    fn label_set(&mut self, p: &Proxy) -> u32 {
        let key = (p.pool.clone(), p.provider.clone(), p.protocol);
        if let Some(i) = self.index.get(&key) {
            return *i;
        }
        // Label sets are a handful per pool: u32 is far beyond any inventory.
        let i = self.rows.len() as u32;
        self.labels
            .push((p.pool.to_string(), p.provider.to_string(), p.protocol));
        self.rows.push([0; 5]);
        self.exits.push(ExitCounts::default());
        self.index.insert(key, i);
        i
    }

    fn add(&mut self, set: u32, status: Option<ProxyStatus>) {
        self.rows[set as usize][status_index(status)] += 1;
    }

    fn remove(&mut self, set: u32, status: Option<ProxyStatus>) {
        let n = &mut self.rows[set as usize][status_index(status)];
        *n = n.saturating_sub(1);
    }

    fn add_exit(&mut self, set: u32, e: Option<&ExitSeen>) {
        if let Some(e) = e {
            self.exits[set as usize].add(e);
        }
    }

    fn remove_exit(&mut self, set: u32, e: Option<&ExitSeen>) {
        if let Some(e) = e {
            self.exits[set as usize].remove(e);
        }
    }
}

/// The exit a state's last check saw.
fn exit_of(s: &ProxyState) -> Option<&ExitSeen> {
    s.last.as_ref().and_then(|l| l.exit.as_deref())
}

/// One shard of the store: the states in a `Vec`, and a table of their
/// positions found by the hash of the proxy's id. The id is held once, in
/// the proxy itself, where a `HashMap<String, ProxyState>` held it twice
/// (key and proxy) and sized its buckets for the whole state: at a million
/// proxies the table is 5 bytes a slot instead of ~140.
#[derive(Default)]
struct Shard {
    states: Vec<ProxyState>,
    /// Positions in `states`.
    index: HashTable<u32>,
}

impl Shard {
    /// The position of the state of proxy `id` (whose hash is `hash`).
    fn find(&self, hash: u64, id: &str) -> Option<usize> {
        let states = &self.states;
        self.index
            .find(hash, |&i| *states[i as usize].proxy.id == *id)
            .map(|&i| i as usize)
    }

    /// Add a state for a proxy not in the shard yet; returns its position.
    fn insert(&mut self, hash: u64, state: ProxyState, hasher: &RandomState) -> usize {
        let i = self.states.len();
        self.states.push(state);
        let states = &self.states;
        // Positions are below 2^32: a shard holds a 32nd of the inventory.
        self.index
            .insert_unique(hash, i as u32, |&j| id_hash(hasher, &states[j as usize]));
        i
    }

    /// Keep the states `keep` says to; positions are rebuilt if any left.
    fn retain(&mut self, hasher: &RandomState, keep: impl FnMut(&ProxyState) -> bool) {
        let before = self.states.len();
        self.states.retain(keep);
        if self.states.len() == before {
            return;
        }
        // Give back what a shrunken inventory no longer needs, so memory
        // follows the inventory down as well as up.
        if self.states.capacity() > 2 * self.states.len() {
            self.states.shrink_to_fit();
        }
        self.index.clear();
        self.index.shrink_to(self.states.len(), |&j| {
            id_hash(hasher, &self.states[j as usize])
        });
        for (i, s) in self.states.iter().enumerate() {
            let hash = hasher.hash_one(&*s.proxy.id);
            let states = &self.states;
            self.index
                .insert_unique(hash, i as u32, |&j| id_hash(hasher, &states[j as usize]));
        }
    }
}

/// The hash a state is found by: its proxy's id's.
fn id_hash(hasher: &RandomState, s: &ProxyState) -> u64 {
    hasher.hash_one(&*s.proxy.id)
}

pub(crate) struct StateStore {
    shards: Vec<Mutex<Shard>>,
    /// Hashes ids, for the shard (bits 32 and up) and the shard's table:
    /// one hash per lookup.
    hasher: RandomState,
    tally: Mutex<Tally>,
    /// Read on every result, written on a config reload: a read lock is an
    /// atomic operation, where a mutex taken by every worker would make
    /// them wait on each other.
    policy: RwLock<Policy>,
    generation: Mutex<u16>,
    /// Bumped whenever a proxy is added or removed or its labels change:
    /// what the per-proxy series cache their sorted order and rendered
    /// labels against.
    membership: AtomicU64,
    /// What due times are counted from.
    epoch: Instant,
}

impl Default for StateStore {
    fn default() -> Self {
        StateStore {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            tally: Mutex::new(Tally::default()),
            policy: RwLock::new(Policy::default()),
            generation: Mutex::new(0),
            membership: AtomicU64::new(0),
            epoch: Instant::now(),
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

    /// The hash of `id` and its shard. The shard is chosen by high bits:
    /// the table inside uses the low ones, which would otherwise be the
    /// same for every id of a shard.
    fn shard(&self, id: &str) -> (u64, &Mutex<Shard>) {
        let hash = self.hasher.hash_one(id);
        (hash, &self.shards[((hash >> 32) as usize) % SHARDS])
    }

    /// Changes whenever a proxy is added or removed, or its labels (pool,
    /// provider, protocol) change: equal values mean the same ids with the
    /// same labels, visited by [`StateStore::for_each`] in the same order.
    /// A record replaced by an equal-labelled copy (every inventory read)
    /// does not change it.
    pub(crate) fn membership_version(&self) -> u64 {
        self.membership.load(Ordering::Acquire)
    }

    fn membership_changed(&self) {
        self.membership.fetch_add(1, Ordering::AcqRel);
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
            // Never 0, the generation of a state `record` created: such a
            // state stays only if the inventory has its proxy.
            *g = g.wrapping_add(1).max(1);
            *g
        };
        for p in proxies {
            let (hash, shard) = self.shard(&p.id);
            let mut shard = lock(shard);
            match shard.find(hash, &p.id) {
                Some(i) => {
                    let s = &mut shard.states[i];
                    let same_labels = s.proxy.pool == p.pool
                        && s.proxy.provider == p.provider
                        && s.proxy.protocol == p.protocol;
                    if !same_labels {
                        let mut t = lock(&self.tally);
                        t.remove(s.label_set, s.reported);
                        t.remove_exit(s.label_set, exit_of(s));
                        s.label_set = t.label_set(p);
                        t.add(s.label_set, s.reported);
                        t.add_exit(s.label_set, exit_of(s));
                        self.membership_changed();
                    }
                    // The list's copy, even when its values are the same:
                    // holding the previous read's would keep both reads'
                    // proxies in memory. Not a membership change: the id
                    // and labels are the same (what per-proxy series show).
                    if !Arc::ptr_eq(&s.proxy, p) {
                        s.proxy = p.clone();
                    }
                    s.generation = gen;
                }
                None => {
                    let state = self.new_state(p, gen);
                    shard.insert(hash, state, &self.hasher);
                    self.membership_changed();
                }
            }
        }
        let mut removed = false;
        for shard in &self.shards {
            lock(shard).retain(&self.hasher, |s| {
                let keep = s.generation == gen;
                if !keep {
                    let mut t = lock(&self.tally);
                    t.remove(s.label_set, s.reported);
                    t.remove_exit(s.label_set, exit_of(s));
                    removed = true;
                }
                keep
            });
        }
        if removed {
            self.membership_changed();
        }
    }

    /// A proxy's first state (unchecked), counted in the tally.
    fn new_state(&self, p: &Arc<Proxy>, generation: u16) -> ProxyState {
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
    #[cfg(test)]
    pub(crate) fn due(&self, proxies: &[Arc<Proxy>], now: Instant) -> Vec<Arc<Proxy>> {
        proxies
            .iter()
            .filter(|p| self.is_due(p, now))
            .cloned()
            .collect()
    }

    /// [`StateStore::due`] as the list a sweep takes: `proxies` itself
    /// (shared, not copied) when every proxy is due, as every one is
    /// without back-off.
    pub(crate) fn due_list(&self, proxies: &Arc<[Arc<Proxy>]>, now: Instant) -> Arc<[Arc<Proxy>]> {
        match proxies.iter().position(|p| !self.is_due(p, now)) {
            None => proxies.clone(),
            Some(first) => proxies[..first]
                .iter()
                .chain(proxies[first + 1..].iter().filter(|p| self.is_due(p, now)))
                .cloned()
                .collect(),
        }
    }

    /// True unless back-off holds the proxy until after `now`.
    fn is_due(&self, p: &Proxy, now: Instant) -> bool {
        let (hash, shard) = self.shard(&p.id);
        let shard = lock(shard);
        shard
            .find(hash, &p.id)
            .and_then(|i| shard.states[i].next_due)
            .is_none_or(|d| d.get() <= self.offset(now) + 1)
    }

    /// Nanoseconds from the store's creation to `t` (0 for any earlier
    /// instant): how due times are kept.
    fn offset(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// Apply one result: hysteresis on the reported status, back-off on the
    /// next due time. Returns the reported transition.
    pub(crate) fn record(&self, proxy: &Arc<Proxy>, r: &CheckResult, now: Instant) -> Transition {
        let Policy {
            hysteresis: hyst,
            backoff,
            interval,
        } = *self.policy.read().unwrap_or_else(|e| e.into_inner());
        let (hash, shard) = self.shard(&proxy.id);
        let mut shard = lock(shard);
        let i = match shard.find(hash, &proxy.id) {
            Some(i) => i,
            None => {
                let state = self.new_state(proxy, 0);
                let i = shard.insert(hash, state, &self.hasher);
                self.membership_changed();
                i
            }
        };
        let s = &mut shard.states[i];
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
            NonZeroU64::new(self.offset(now + gap.saturating_sub(interval / 10)) + 1)
        } else {
            None
        };
        // Counted from the last check only: a check that saw no exit (the
        // proxy failed before the judge answered) takes the proxy out of
        // the level and country counts, as its old exit is no longer known.
        let exit = r.exit.as_ref().map(|e| Box::new(ExitSeen::of(e)));
        if exit.as_deref() != exit_of(s) {
            let mut t = lock(&self.tally);
            t.remove_exit(s.label_set, exit_of(s));
            t.add_exit(s.label_set, exit.as_deref());
        }
        s.last = Some(LastCheck {
            latency_ms: r.latency_ms,
            elapsed_ms: r.elapsed_ms,
            checked_at: crate::model::unix_seconds(r.checked_at),
            reason: r.reason,
            phase: r.phase,
            error: r.error.as_deref().map(Box::from),
            exit,
        });
        Transition { before, after }
    }

    /// Number of proxies held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).states.len()).sum()
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

    /// Proxies per anonymity level and exit country, per (pool, protocol)
    /// of the inventory (every one, empty when no exit is known).
    pub(crate) fn exit_counts(&self) -> ExitCountsByPool {
        let t = lock(&self.tally);
        let mut out = ExitCountsByPool::new();
        for (((pool, _, protocol), row), exits) in t.labels.iter().zip(&t.rows).zip(&t.exits) {
            if row.iter().any(|n| *n > 0) {
                out.entry((pool.clone(), *protocol))
                    .or_default()
                    .merge(exits);
            }
        }
        out
    }

    /// [`StateStore::exit_counts`] recomputed by walking every proxy.
    #[cfg(test)]
    fn exit_recount(&self) -> ExitCountsByPool {
        let mut out = ExitCountsByPool::new();
        self.for_each(|s| {
            let row = out
                .entry((s.proxy.pool.to_string(), s.proxy.protocol))
                .or_default();
            if let Some(e) = exit_of(s) {
                row.add(e);
            }
        });
        out
    }

    /// [`StateStore::counts`] recomputed by walking every proxy (the
    /// reference the tally is tested against).
    #[cfg(test)]
    fn recount(&self) -> StatusCounts {
        let mut out = StatusCounts::new();
        self.for_each(|s| {
            let key = (
                s.proxy.pool.to_string(),
                s.proxy.provider.to_string(),
                s.proxy.protocol,
            );
            out.entry(key).or_insert([0; 5])[status_index(s.reported)] += 1;
        });
        out
    }

    /// Visit every proxy's state (one shard locked at a time, briefly).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&ProxyState)) {
        for shard in &self.shards {
            for s in &lock(shard).states {
                f(s);
            }
        }
    }

    /// The state of one proxy.
    pub(crate) fn get(&self, id: &str) -> Option<ProxyState> {
        let (hash, shard) = self.shard(id);
        let shard = lock(shard);
        shard.find(hash, id).map(|i| shard.states[i].clone())
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

    /// A varied exit (or none) for the `k`-th result: every level, three
    /// countries, a mismatch now and then, and an invalid country code.
    fn exit_for(k: usize) -> Option<crate::model::Exit> {
        if k % 4 == 3 {
            return None;
        }
        let country = ["DE", "us", "FR", "Germany"][k % 4 % 3 + usize::from(k % 11 == 0)];
        Some(crate::model::Exit {
            ip: Some(IpAddr::from([10, 0, 0, (k % 7) as u8])),
            anonymity: (k % 5 != 4).then(|| Anonymity::ALL[k % 3]),
            anonymity_header: None,
            geo: Some(crate::model::Geo {
                country: Some(country.to_string()),
                ..Default::default()
            }),
            geo_mismatch: k % 2 == 0,
        })
    }

    #[test]
    fn exit_summary_keeps_valid_country_codes_only() {
        let e = exit_for(1).expect("an exit");
        let seen = ExitSeen::of(&e);
        assert_eq!(
            seen.country.map(|c| c.as_str().to_string()),
            Some("US".into())
        );
        assert_eq!(seen.anonymity, Some(Anonymity::Anonymous));
        assert_eq!(Country::parse("Germany"), None);
        assert_eq!(Country::parse("d1"), None);
        assert_eq!(
            Country::parse("de").map(|c| c.as_str().to_string()),
            Some("DE".into())
        );
    }

    #[test]
    fn exit_counts_follow_the_last_check() {
        let st = StateStore::new();
        let mut p = Proxy::new(ProxyProtocol::Http, "127.0.0.1", 1);
        p.pool = "eu".into();
        let p = Arc::new(p);
        st.sync(std::slice::from_ref(&p));
        let mut r = result(ProxyStatus::Active);
        r.exit = exit_for(2);
        st.record(&p, &r, Instant::now());
        let key = ("eu".to_string(), ProxyProtocol::Http);
        let c = st.exit_counts()[&key].clone();
        assert_eq!(c.levels, [0, 0, 1], "elite");
        assert_eq!(c.mismatched, 1);
        let fr = Country::parse("FR").expect("valid");
        assert_eq!(c.countries, BTreeMap::from([(fr, 1)]));
        // A failed check without an exit: the old exit is no longer counted.
        st.record(&p, &result(ProxyStatus::Inactive), Instant::now());
        assert_eq!(st.exit_counts()[&key], ExitCounts::default());
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
            p.id = format!("p{i}").into();
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
            assert_eq!(
                st.exit_counts(),
                st.exit_recount(),
                "exits after sync, round {round}"
            );
            for (i, p) in inventory.iter().enumerate() {
                if (i + round) % 3 != 0 {
                    let mut r = result(statuses[(i * 7 + round) % 4]);
                    r.exit = exit_for(i * 5 + round);
                    st.record(p, &r, Instant::now());
                }
            }
            assert_eq!(st.counts(), st.recount(), "after results, round {round}");
            assert_eq!(
                st.exit_counts(),
                st.exit_recount(),
                "exits after results, round {round}"
            );
            // Next inventory: drop some, add some, move some to another pool.
            inventory.retain(|p| p.port % 5 != round as u16);
            inventory.push(mk(100 + round as u16, "c", "x", ProxyProtocol::Socks5));
            let moved = Arc::make_mut(&mut inventory[0]);
            moved.pool = format!("moved{round}").into();
        }
        assert!(
            st.exit_counts().values().any(|c| c.mismatched > 0),
            "the fixture exercises mismatches"
        );
        st.sync(&[]);
        assert!(st.exit_counts().is_empty(), "no pool left");
        assert!(
            st.counts().is_empty(),
            "an empty inventory leaves no label set"
        );
    }

    /// A proxy that keeps its id across inventory reads but changes
    /// anything else is the new proxy from then on: its labels in the
    /// counts, its address and credentials for the next check; its history
    /// (reported status) stays.
    #[test]
    fn sync_takes_the_new_values_of_a_proxy_that_keeps_its_id() {
        let st = StateStore::new();
        let mut p = Proxy::new(ProxyProtocol::Http, "127.0.0.1", 1);
        p.id = "kept-id".into();
        p.pool = "a".into();
        p.provider = "x".into();
        let first = Arc::new(p.clone());
        st.sync(std::slice::from_ref(&first));
        st.record(&first, &result(ProxyStatus::Active), Instant::now());
        type Change = (&'static str, fn(&mut Proxy));
        let changes: [Change; 6] = [
            ("pool", |p| p.pool = "b".into()),
            ("provider", |p| p.provider = "y".into()),
            ("protocol", |p| p.protocol = ProxyProtocol::Socks5),
            ("username", |p| p.username = Some("alice".into())),
            ("password", |p| p.password = Some("n3w-pass".into())),
            ("port", |p| p.port = 2),
        ];
        for (what, change) in changes {
            change(&mut p);
            let next = Arc::new(p.clone());
            st.sync(std::slice::from_ref(&next));
            let s = st.get("kept-id").expect("still known");
            assert!(*s.proxy == p, "{what}: the new values are used");
            assert_eq!(s.reported, Some(ProxyStatus::Active), "{what}: state kept");
            assert_eq!(
                st.counts(),
                StatusCounts::from([(
                    (p.pool.to_string(), p.provider.to_string(), p.protocol),
                    [1, 0, 0, 0, 0]
                )]),
                "{what}: counted under the current labels only"
            );
        }
        assert_eq!(st.len(), 1);
    }

    /// Each reported status is counted in its own column, unchecked last.
    #[test]
    fn counts_put_each_status_in_its_column() {
        let st = StateStore::new();
        let proxies: Vec<Arc<Proxy>> = (1..=5)
            .map(|port| Arc::new(Proxy::new(ProxyProtocol::Socks5, "127.0.0.1", port)))
            .collect();
        st.sync(&proxies);
        use ProxyStatus::*;
        for (p, s) in proxies.iter().zip([Active, Slow, Inactive, Banned]) {
            st.record(p, &result(s), Instant::now());
        }
        let key = (
            "default".to_string(),
            "unknown".to_string(),
            ProxyProtocol::Socks5,
        );
        assert_eq!(
            st.counts(),
            StatusCounts::from([(key.clone(), [1, 1, 1, 1, 1])])
        );
        st.record(&proxies[4], &result(Inactive), Instant::now());
        assert_eq!(st.counts(), StatusCounts::from([(key, [1, 1, 2, 1, 0])]));
    }

    /// The last check's time is kept in Unix seconds (not ms), to the ms.
    #[test]
    fn last_check_time_is_unix_seconds() {
        let st = StateStore::new();
        let p = Arc::new(Proxy::new(ProxyProtocol::Http, "127.0.0.1", 1));
        let mut r = result(ProxyStatus::Inactive);
        r.checked_at = chrono::DateTime::from_timestamp_millis(1_700_000_000_250).expect("valid");
        r.latency_ms = 5000;
        r.elapsed_ms = 4321;
        r.phase = Some(Phase::Handshake);
        r.error = Some("timed out".into());
        st.record(&p, &r, Instant::now());
        let last = st.get(&p.id).and_then(|s| s.last).expect("recorded");
        assert_eq!(last.checked_at, 1_700_000_000.25);
        assert_eq!((last.latency_ms, last.elapsed_ms), (5000, 4321));
        assert_eq!(
            (last.reason, last.phase),
            (Some(Reason::Timeout), Some(Phase::Handshake))
        );
        assert_eq!(last.error.as_deref(), Some("timed out"));
    }

    /// Back-off off (the default policy): a proxy that keeps failing is due
    /// at every sweep, however many failures it has.
    #[test]
    fn without_backoff_a_dead_proxy_is_due_every_sweep() {
        let st = StateStore::new();
        let p = Arc::new(Proxy::new(ProxyProtocol::Http, "127.0.0.1", 1));
        let list = vec![p.clone()];
        st.sync(&list);
        let t0 = Instant::now();
        for _ in 0..5 {
            st.record(&p, &result(ProxyStatus::Inactive), t0);
            assert_eq!(st.due(&list, t0).len(), 1);
        }
        assert_eq!(st.get(&p.id).map(|s| s.fails), Some(5));
    }

    /// With back-off on, the gaps double from the second failure: due a
    /// tenth of an interval early, and not a moment before that.
    #[test]
    fn backoff_gaps_double_and_are_due_a_tenth_early() {
        let st = StateStore::new();
        st.set_policy(Policy {
            hysteresis: Hysteresis::default(),
            backoff: RecheckBackoff {
                enabled: true,
                max_interval: Duration::from_secs(600),
            },
            interval: Duration::from_secs(60),
        });
        let p = Arc::new(Proxy::new(ProxyProtocol::Http, "127.0.0.1", 1));
        let list = vec![p.clone()];
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // (failures, gap in seconds): 1 → none, 2 → 120, 3 → 240, 4 → 480, 5+ → 600.
        for (fails, gap) in [
            (1u64, 0u64),
            (2, 120),
            (3, 240),
            (4, 480),
            (5, 600),
            (6, 600),
        ] {
            st.record(&p, &result(ProxyStatus::Inactive), t0);
            if gap == 0 {
                assert_eq!(
                    st.due(&list, t0).len(),
                    1,
                    "{fails} failure(s): due at once"
                );
                continue;
            }
            let due_at = t0 + s(gap) - s(6);
            assert_eq!(
                st.due(&list, due_at - Duration::from_millis(1)).len(),
                0,
                "{fails}"
            );
            assert_eq!(st.due(&list, due_at).len(), 1, "{fails}");
        }
        // A slow result is up: back to every sweep.
        st.record(&p, &result(ProxyStatus::Slow), t0);
        assert_eq!(st.due(&list, t0).len(), 1);
    }

    /// States live in a `Vec` found through a table of positions: after
    /// proxies leave (positions move) and others arrive, every lookup still
    /// finds its own proxy's state, and a departed proxy is not found.
    #[test]
    fn states_are_found_by_id_after_removals_and_additions() {
        let st = StateStore::new();
        let mk = |i: u32| {
            let mut p = Proxy::new(ProxyProtocol::Http, "127.0.0.1", 1);
            p.id = format!("p{i}").into();
            Arc::new(p)
        };
        let all: Vec<Arc<Proxy>> = (0..3000).map(mk).collect();
        st.sync(&all);
        let now = Instant::now();
        for (i, p) in all.iter().enumerate() {
            let mut r = result(ProxyStatus::Active);
            r.latency_ms = i as u64;
            st.record(p, &r, now);
        }
        let kept: Vec<Arc<Proxy>> = all
            .iter()
            .filter(|p| p.id.len() % 2 == 0 || p.id.ends_with('7'))
            .cloned()
            .chain((3000..3500).map(mk))
            .collect();
        st.sync(&kept);
        assert_eq!(st.len(), kept.len());
        for (i, p) in all.iter().enumerate() {
            let s = st.get(&p.id);
            if kept.iter().any(|k| k.id == p.id) {
                let s = s.expect("kept");
                assert_eq!(s.proxy.id, p.id);
                assert_eq!(s.last.map(|l| l.latency_ms), Some(i as u64), "{}", p.id);
            } else {
                assert!(s.is_none(), "{} left", p.id);
            }
        }
        for p in &kept[kept.len() - 500..] {
            let s = st.get(&p.id).expect("added");
            assert_eq!((s.proxy.id.as_str(), s.reported), (p.id.as_str(), None));
        }
        let mut seen = 0;
        st.for_each(|_| seen += 1);
        assert_eq!(seen, kept.len());
        assert_eq!(st.counts(), st.recount());
    }

    /// Due times are kept as nanoseconds from the store's creation: a
    /// proxy held back is due exactly at its time, not a nanosecond before.
    #[test]
    fn due_times_are_kept_to_the_nanosecond() {
        let st = StateStore::new();
        st.set_policy(Policy {
            backoff: RecheckBackoff {
                enabled: true,
                max_interval: Duration::from_secs(600),
            },
            ..Policy::default()
        });
        let p = Arc::new(Proxy::new(ProxyProtocol::Http, "127.0.0.1", 1));
        let list = vec![p.clone()];
        let t0 = Instant::now() + Duration::from_nanos(123_456_789);
        st.record(&p, &result(ProxyStatus::Inactive), t0);
        st.record(&p, &result(ProxyStatus::Inactive), t0);
        // Two failures: 120 s, due a tenth of the 60 s interval early.
        let due_at = t0 + Duration::from_secs(114);
        assert_eq!(st.due(&list, due_at - Duration::from_nanos(1)).len(), 0);
        assert_eq!(st.due(&list, due_at).len(), 1);
        assert_eq!(st.due(&list, due_at + Duration::from_nanos(1)).len(), 1);
    }

    /// The sync generation is 16 bits: past its wrap, a proxy still in
    /// the inventory stays and one that left goes, and a state that
    /// `record` made for a proxy outside the inventory (generation 0) goes
    /// at the next sync, whatever the count.
    #[test]
    fn syncs_past_the_generation_wrap_keep_exactly_the_inventory() {
        let st = StateStore::new();
        let a = Arc::new(Proxy::new(ProxyProtocol::Http, "127.0.0.1", 1));
        let b = Arc::new(Proxy::new(ProxyProtocol::Http, "127.0.0.1", 2));
        let stray = Arc::new(Proxy::new(ProxyProtocol::Http, "127.0.0.1", 3));
        for n in 0..(u16::MAX as usize + 10) {
            st.sync(&[a.clone(), b.clone()]);
            if n % 4096 == 0 || n > u16::MAX as usize - 3 {
                st.record(&stray, &result(ProxyStatus::Active), Instant::now());
                st.sync(&[a.clone(), b.clone()]);
                assert!(st.get(&stray.id).is_none(), "after {n} syncs");
            }
        }
        st.sync(std::slice::from_ref(&a));
        assert!(st.get(&a.id).is_some() && st.get(&b.id).is_none());
        assert_eq!(st.len(), 1);
    }

    /// Proxies spread over the shards (one lock would serialise every
    /// result), and a shard's memory follows the inventory down: given
    /// back when it holds more than twice what is left, kept (no
    /// reallocation) on a small drop.
    #[test]
    fn shards_spread_the_proxies_and_shrink_only_on_a_large_drop() {
        let list: Vec<Arc<Proxy>> = (0..2000u16)
            .map(|port| Arc::new(Proxy::new(ProxyProtocol::Http, "127.0.0.1", port + 1)))
            .collect();
        let shape = |st: &StateStore| -> Vec<(usize, usize)> {
            st.shards
                .iter()
                .map(|s| {
                    let s = lock(s);
                    (s.states.len(), s.states.capacity())
                })
                .collect()
        };
        for keep in [20, 1900] {
            let st = StateStore::new();
            st.sync(&list);
            let before = shape(&st);
            let used = before.iter().filter(|(len, _)| *len > 0).count();
            assert!(used >= SHARDS / 2, "{used} of {SHARDS} shards hold proxies");
            st.sync(&list[..keep]);
            let after = shape(&st);
            for ((len0, cap0), (len, cap)) in before.iter().zip(&after) {
                if len == len0 {
                    assert_eq!(cap, cap0, "nothing left this shard: untouched");
                } else if *cap0 > 2 * len {
                    assert!(*cap <= 2 * len, "{len0}/{cap0} -> {len}/{cap}: given back");
                } else {
                    assert_eq!(cap, cap0, "{len0}/{cap0} -> {len}: small drop, kept");
                }
            }
            let mut seen = 0;
            st.for_each(|_| seen += 1);
            assert_eq!(seen, keep);
            assert!(list[..keep].iter().all(|p| st.get(&p.id).is_some()));
        }
    }

    /// An instant centuries away saturates one below the top, so the
    /// `+ 1` of `is_due` cannot overflow.
    #[test]
    fn an_offset_centuries_away_saturates_below_the_top() {
        let st = StateStore::new();
        let far = st
            .epoch
            .checked_add(Duration::from_secs(600 * 365 * 86_400))
            .expect("representable");
        assert_eq!(st.offset(far), u64::MAX - 1);
        assert_eq!(st.offset(st.epoch), 0);
    }

    /// A million states are held at once.
    #[test]
    fn a_state_stays_small() {
        assert!(std::mem::size_of::<ProxyState>() <= 88);
    }

    /// Without back-off the sweep gets the inventory list itself, not a
    /// copy; with proxies held back, the others in their order.
    #[test]
    fn the_due_list_is_the_inventory_unless_some_are_held_back() {
        let st = StateStore::new();
        st.set_policy(Policy {
            backoff: RecheckBackoff {
                enabled: true,
                max_interval: Duration::from_secs(600),
            },
            ..Policy::default()
        });
        let list: Arc<[Arc<Proxy>]> = (1..=5)
            .map(|port| Arc::new(Proxy::new(ProxyProtocol::Http, "127.0.0.1", port)))
            .collect();
        st.sync(&list);
        let t0 = Instant::now();
        assert!(Arc::ptr_eq(&st.due_list(&list, t0), &list), "shared");
        for p in [&list[0], &list[3]] {
            st.record(p, &result(ProxyStatus::Inactive), t0);
            st.record(p, &result(ProxyStatus::Inactive), t0);
        }
        let due = st.due_list(&list, t0);
        let ports: Vec<u16> = due.iter().map(|p| p.port).collect();
        assert_eq!(ports, [2, 3, 5]);
        assert_eq!(st.due(&list, t0).len(), 3);
        let later = t0 + Duration::from_secs(3600);
        assert!(
            Arc::ptr_eq(&st.due_list(&list, later), &list),
            "all due again"
        );
    }

    /// A re-read with the same values: the store holds the new read's
    /// proxy, so the old read's can be freed (not both kept).
    #[test]
    fn sync_holds_the_latest_reads_copy() {
        let st = StateStore::new();
        let first = Arc::new(Proxy::new(ProxyProtocol::Http, "127.0.0.1", 1));
        st.sync(std::slice::from_ref(&first));
        st.record(&first, &result(ProxyStatus::Active), Instant::now());
        let again = Arc::new((*first).clone());
        st.sync(std::slice::from_ref(&again));
        let s = st.get(&first.id).expect("kept");
        assert!(Arc::ptr_eq(&s.proxy, &again));
        assert_eq!(s.reported, Some(ProxyStatus::Active), "state kept");
        drop(s);
        assert_eq!(Arc::strong_count(&first), 1, "the old copy is only ours");
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

    #[test]
    fn membership_version_moves_with_the_set_of_records_only() {
        let st = StateStore::new();
        let a = Arc::new(Proxy::new(ProxyProtocol::Http, "127.0.0.1", 1));
        let b = Arc::new(Proxy::new(ProxyProtocol::Socks5, "127.0.0.1", 2));
        let v0 = st.membership_version();
        st.sync(&[a.clone(), b.clone()]);
        let v1 = st.membership_version();
        assert_ne!(v1, v0, "added");
        // Results and an identical re-read change nothing in the set.
        st.record(&a, &result(ProxyStatus::Active), Instant::now());
        st.sync(&[Arc::new((*a).clone()), b.clone()]);
        assert_eq!(st.membership_version(), v1, "same records");
        // New labels: a new record.
        let mut a2 = (*a).clone();
        a2.pool = "other".into();
        let a2 = Arc::new(a2);
        st.sync(&[a2.clone(), b.clone()]);
        let v2 = st.membership_version();
        assert_ne!(v2, v1, "relabelled");
        st.sync(std::slice::from_ref(&a2));
        let v3 = st.membership_version();
        assert_ne!(v3, v2, "removed");
        // A result for a proxy the store did not hold adds it.
        st.record(&b, &result(ProxyStatus::Active), Instant::now());
        assert_ne!(st.membership_version(), v3, "added by a result");
    }
}
