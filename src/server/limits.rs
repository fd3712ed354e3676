//! What one client can make the server do at once.
//!
//! - [`Connections`]: open connections are capped. Past the cap, a new
//!   connection takes the slot of the connection that has been idle longest
//!   (one that has not sent a whole request head: a slowloris, an idle
//!   keep-alive, a TLS handshake never finished); when every connection is
//!   busy with a request, the new one is closed at once. So idle sockets
//!   can neither exhaust the process's file descriptors (the probes' budget)
//!   nor lock a scraper out.
//! - [`Requests`]: `/metrics` and `/api/status` render the whole state and
//!   cost memory in proportion to it, so at most `--web.max-requests` run at
//!   once (503 past it); `/probe` dials a proxy, so at most
//!   [`PROBES_AT_ONCE`] run at once (503 past it) and at most one per proxy
//!   (429 for a second one).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// `/probe` requests running at once at most.
pub(crate) const PROBES_AT_ONCE: usize = 10;

#[derive(Default)]
struct Slots {
    next: u64,
    /// Open connections: when each became idle (`None`: serving a request),
    /// and how to tell it to close.
    open: HashMap<u64, (Option<Instant>, Arc<Notify>)>,
}

/// The connection cap; see the module docs.
pub(crate) struct Connections {
    cap: usize,
    slots: Mutex<Slots>,
}

/// One admitted connection; dropping it frees the slot.
pub(crate) struct Ticket {
    id: u64,
    conns: Arc<Connections>,
    /// Notified when a newer connection took this one's slot.
    pub(crate) evicted: Arc<Notify>,
}

/// Whether a new connection got a slot.
pub(crate) enum Admission {
    /// A free slot.
    Admitted(Ticket),
    /// The slot of the longest-idle connection (now told to close).
    Evicted(Ticket),
    /// Every connection is busy: close the new one.
    Full,
}

impl Connections {
    /// A cap of `cap` open connections (at least 1).
    pub(crate) fn new(cap: usize) -> Arc<Connections> {
        Arc::new(Connections {
            cap: cap.max(1),
            slots: Mutex::new(Slots::default()),
        })
    }

    /// Admit a new connection, idle until it sends a request.
    pub(crate) fn admit(self: &Arc<Self>) -> Admission {
        let mut s = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mut evicted = false;
        if s.open.len() >= self.cap {
            let oldest = s
                .open
                .iter()
                .filter_map(|(id, (idle, _))| idle.map(|at| (at, *id)))
                .min();
            let Some((_, id)) = oldest else {
                return Admission::Full;
            };
            if let Some((_, notify)) = s.open.remove(&id) {
                notify.notify_one();
            }
            evicted = true;
        }
        s.next += 1;
        let id = s.next;
        let notify = Arc::new(Notify::new());
        s.open.insert(id, (Some(Instant::now()), notify.clone()));
        let t = Ticket {
            id,
            conns: self.clone(),
            evicted: notify,
        };
        if evicted {
            Admission::Evicted(t)
        } else {
            Admission::Admitted(t)
        }
    }

    /// Connections holding a slot.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .open
            .len()
    }

    fn set(&self, id: u64, idle: Option<Instant>) {
        let mut s = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = s.open.get_mut(&id) {
            slot.0 = idle;
        }
    }
}

impl Ticket {
    /// A request head arrived: not evictable until it is answered.
    pub(crate) fn busy(&self) {
        self.conns.set(self.id, None);
    }

    /// The request was answered: evictable again.
    pub(crate) fn idle(&self) {
        self.conns.set(self.id, Some(Instant::now()));
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut s = self.conns.slots.lock().unwrap_or_else(|e| e.into_inner());
        s.open.remove(&self.id);
    }
}

/// Caps on concurrent requests; see the module docs.
pub(crate) struct Requests {
    /// `/metrics` and `/api/status`; `None`: no cap.
    render: Option<Arc<Semaphore>>,
    probes: Arc<Semaphore>,
    probing: Arc<Mutex<HashSet<String>>>,
}

/// A `/probe` slot for one proxy; dropping it frees both.
pub(crate) struct ProbeSlot {
    _permit: OwnedSemaphorePermit,
    id: String,
    probing: Arc<Mutex<HashSet<String>>>,
}

impl Drop for ProbeSlot {
    fn drop(&mut self) {
        let mut p = self.probing.lock().unwrap_or_else(|e| e.into_inner());
        p.remove(&self.id);
    }
}

/// Why a `/probe` could not start.
pub(crate) enum ProbeBusy {
    /// [`PROBES_AT_ONCE`] probes are running.
    Full,
    /// This proxy is being probed already.
    SameProxy,
}

impl Requests {
    /// `max_requests` concurrent renders (0: no cap).
    pub(crate) fn new(max_requests: usize) -> Requests {
        Requests {
            render: (max_requests > 0).then(|| Arc::new(Semaphore::new(max_requests))),
            probes: Arc::new(Semaphore::new(PROBES_AT_ONCE)),
            probing: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// A slot for one `/metrics` or `/api/status` request; `Err` past the
    /// cap. `Ok(None)`: no cap configured.
    pub(crate) fn render(&self) -> Result<Option<OwnedSemaphorePermit>, ()> {
        match &self.render {
            None => Ok(None),
            Some(s) => s.clone().try_acquire_owned().map(Some).map_err(|_| ()),
        }
    }

    /// A slot to probe the proxy `id`.
    pub(crate) fn probe(&self, id: &str) -> Result<ProbeSlot, ProbeBusy> {
        let mut p = self.probing.lock().unwrap_or_else(|e| e.into_inner());
        if p.contains(id) {
            return Err(ProbeBusy::SameProxy);
        }
        let permit = self
            .probes
            .clone()
            .try_acquire_owned()
            .map_err(|_| ProbeBusy::Full)?;
        p.insert(id.to_string());
        Ok(ProbeSlot {
            _permit: permit,
            id: id.to_string(),
            probing: self.probing.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_idle_connection_makes_room_and_busy_ones_are_kept() {
        let c = Connections::new(2);
        let Admission::Admitted(a) = c.admit() else {
            panic!("free slot")
        };
        let Admission::Admitted(b) = c.admit() else {
            panic!("free slot")
        };
        b.busy();
        // Full: `a` is idle, so it makes room.
        let Admission::Evicted(n) = c.admit() else {
            panic!("a is idle")
        };
        assert!(
            futures_util::FutureExt::now_or_never(a.evicted.notified()).is_some(),
            "a was told to close"
        );
        assert_eq!(c.open(), 2);
        n.busy();
        assert!(matches!(c.admit(), Admission::Full), "both busy");
        drop(a); // its slot was already taken: nothing changes
        assert_eq!(c.open(), 2);
        drop(b);
        assert_eq!(c.open(), 1);
        n.idle();
        assert!(matches!(c.admit(), Admission::Admitted(_)));
    }

    #[test]
    fn probes_are_capped_overall_and_per_proxy() {
        let r = Requests::new(1);
        let one = r.render().expect("first");
        assert!(r.render().is_err(), "second past the cap");
        drop(one);
        assert!(r.render().is_ok());
        assert!(Requests::new(0).render().expect("no cap").is_none());

        let a = r.probe("p1").ok().expect("first probe of p1");
        assert!(matches!(r.probe("p1"), Err(ProbeBusy::SameProxy)));
        let mut held = vec![a];
        for i in 1..PROBES_AT_ONCE {
            held.push(r.probe(&format!("q{i}")).ok().expect("below the cap"));
        }
        assert!(matches!(r.probe("z"), Err(ProbeBusy::Full)));
        held.clear();
        assert!(r.probe("p1").is_ok(), "freed on drop");
    }
}
