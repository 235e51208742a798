//! The FUSE sessions (mounts) a brick server serves, and how a change made through one of them
//! reaches the kernel caches of the others.
//!
//! Every session's kernel caches entries and attributes for a long time (the overlay's speed
//! rests on it), so a change made through one mount must invalidate what the others may hold:
//! the entry's name in its directory (a negative entry included) and the attributes of the
//! inodes it changed, through FUSE notifications (`inval_entry`, `inval_inode`). Only the
//! sessions that were handed an inode can cache it (`Inode::known`); with one session there is
//! nothing to do, which costs one atomic load per change.
//!
//! A notification may wait for a kernel lock that a request of the target session holds (the
//! directory's, while its lookup is served): it is written by a thread of the target session's
//! own, never by a thread that serves requests, which waits for it only for a bounded time.
//! In the ordinary case the notifications are delivered before the change is acknowledged
//! (a change is seen through every mount once the call that made it returns). When two mounts
//! change one directory at once, each notification waits for the other mount's request: after
//! one such wait times out, requests stop waiting for a second (`CONTENDED`), and the other
//! mounts see changes a moment after they are acknowledged.
//!
//! A brick server killed while a notification waits is stuck in that kernel lock for good (its
//! requests will never be answered): whoever finds it dead aborts its FUSE connections
//! (`server::abort_dead`).

use std::ffi::OsString;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::time::{Duration, Instant};

use fuser::{INodeNo, Notifier};
use parking_lot::{Condvar, Mutex, RwLock};

/// At most this many sessions per brick server (one bit each in `Inode::known`).
pub const MAX_SESSIONS: usize = 64;

/// How long a request waits for its notifications to be delivered before it replies anyway:
/// delivery takes microseconds, unless two mounts change one directory at once and each
/// notification waits for the other's request (which this bound then ends).
const DELIVERY_WAIT: Duration = Duration::from_millis(10);

/// After a delivery took too long, how long requests do not wait for theirs: while two
/// mounts change one directory at once, each would otherwise wait for the other every time.
const CONTENDED: Duration = Duration::from_secs(1);

/// A session's number in its brick server, from 0; reused after the session ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionId(u8);

impl SessionId {
    pub fn index(self) -> u8 {
        self.0
    }

    /// Its bit in `Inode::known`.
    pub fn bit(self) -> u64 {
        1 << self.0
    }
}

/// What a kernel may hold that a change made stale.
#[derive(Clone, Debug)]
pub enum Inval {
    /// The name in the directory (positive or negative entry).
    Entry { parent: u64, name: OsString },
    /// The inode's attributes.
    Attr(u64),
    /// The inode's attributes and cached data.
    Data(u64),
}

/// A set of notifications for one session, and who waits for them.
struct Batch {
    invals: Vec<Inval>,
    done: Arc<Done>,
}

#[derive(Default)]
struct Done {
    left: Mutex<usize>,
    cv: Condvar,
}

impl Done {
    fn finish(&self) {
        let mut n = self.left.lock();
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.cv.notify_all();
        }
    }
}

struct Slot {
    id: SessionId,
    /// Set once the session's handshake is done: where its notifications go.
    queue: Option<Sender<Batch>>,
}

pub struct Sessions {
    slots: RwLock<Vec<Slot>>,
    count: AtomicUsize,
    /// Until when requests do not wait for their notifications (ms since `epoch`).
    contended_until: AtomicU64,
    epoch: Instant,
    /// No new session once the server is going away.
    closed: Mutex<bool>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            slots: Default::default(),
            count: Default::default(),
            contended_until: Default::default(),
            epoch: Instant::now(),
            closed: Default::default(),
        }
    }
}

impl Sessions {
    /// Takes a session number; `None` when all are taken or the server is closing.
    pub fn attach(&self) -> Option<SessionId> {
        let closed = self.closed.lock();
        if *closed {
            return None;
        }
        let mut slots = self.slots.write();
        let id = (0..MAX_SESSIONS as u8).find(|i| slots.iter().all(|s| s.id.0 != *i))?;
        slots.push(Slot { id: SessionId(id), queue: None });
        self.count.fetch_add(1, Ordering::Relaxed);
        Some(SessionId(id))
    }

    /// The session's kernel is ready: notifications for it are written by a thread of its own
    /// through `notifier`.
    pub fn ready(&self, id: SessionId, notifier: Notifier) {
        let (tx, rx) = channel::<Batch>();
        let spawned = std::thread::Builder::new().name(format!("fs-notify-{}", id.0)).spawn(move || {
            for batch in rx {
                deliver(&notifier, &batch.invals);
                batch.done.finish();
            }
        });
        if let Err(e) = spawned {
            log::error!("session {}: no notification thread ({e}): other mounts' changes reach it late", id.0);
            return;
        }
        if let Some(s) = self.slots.write().iter_mut().find(|s| s.id == id) {
            s.queue = Some(tx);
        }
    }

    /// The session ended.
    pub fn detach(&self, id: SessionId) {
        let mut slots = self.slots.write();
        let before = slots.len();
        slots.retain(|s| s.id != id);
        if slots.len() < before {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Refuses new sessions if none is attached; true if so (the server may then stop).
    pub fn close_if_idle(&self) -> bool {
        let mut closed = self.closed.lock();
        if self.count() == 0 {
            *closed = true;
        }
        *closed
    }

    /// Whether new sessions are refused (the server is going away).
    pub fn is_closed(&self) -> bool {
        *self.closed.lock()
    }

    /// Refuses new sessions from now on.
    pub fn close(&self) {
        *self.closed.lock() = true;
    }

    /// True when a change through `me` may be cached by another session: the one check on the
    /// path of every change.
    #[inline]
    pub fn shared(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 1
    }

    /// Tells session `me` itself of `invals`: what it knows under another name than the one
    /// the change used (an aux mount's root is also `.gfid/<root GFID>`; a removed inode is
    /// also `.gfid/<gfid>`). Written by its notification thread, as for the other sessions:
    /// another request of its own may hold the directory concerned.
    pub fn invalidate_own(&self, me: SessionId, invals: Vec<Inval>) {
        self.deliver(|s| (s.id == me).then(|| invals.clone()));
    }

    /// Tells every other session whose kernel may hold what `changes` made stale (each with
    /// the sessions that know the inode concerned), and waits for the deliveries, within
    /// `DELIVERY_WAIT`.
    pub fn invalidate(&self, me: SessionId, changes: &[(u64, Inval)]) {
        self.deliver(|s| {
            let invals: Vec<Inval> = changes
                .iter()
                .filter(|(known, _)| s.id != me && known & s.id.bit() != 0)
                .map(|(_, i)| i.clone())
                .collect();
            (!invals.is_empty()).then_some(invals)
        });
    }

    /// Queues what `for_session` gives each ready session to its notification thread, and
    /// waits for the deliveries.
    fn deliver(&self, for_session: impl Fn(&Slot) -> Option<Vec<Inval>>) {
        let done = Arc::new(Done::default());
        let mut sent = 0;
        {
            let slots = self.slots.read();
            for s in slots.iter() {
                let (Some(q), Some(invals)) = (&s.queue, for_session(s)) else { continue };
                *done.left.lock() += 1;
                if q.send(Batch { invals, done: done.clone() }).is_ok() {
                    sent += 1;
                } else {
                    done.finish();
                }
            }
        }
        if sent > 0 {
            self.wait(&done);
        }
    }

    /// Waits for the deliveries of `done`, within `DELIVERY_WAIT`, unless that was too short
    /// a moment ago (`CONTENDED`).
    fn wait(&self, done: &Done) {
        let now = self.epoch.elapsed().as_millis() as u64;
        if now < self.contended_until.load(Ordering::Relaxed) {
            return;
        }
        let mut left = done.left.lock();
        if *left == 0 {
            return;
        }
        let timed_out = done.cv.wait_for(&mut left, DELIVERY_WAIT).timed_out();
        if timed_out && *left > 0 {
            let until = now + CONTENDED.as_millis() as u64;
            if self.contended_until.swap(until, Ordering::Relaxed) < now {
                log::info!(
                    "mounts change the same directories at once: other mounts see changes a moment after they are acknowledged, for {CONTENDED:?}"
                );
            }
        }
    }
}

fn deliver(n: &Notifier, invals: &[Inval]) {
    for i in invals {
        let r = match i {
            Inval::Entry { parent, name } => n.inval_entry(INodeNo(*parent), name),
            // A negative offset: the attributes only.
            Inval::Attr(ino) => n.inval_inode(INodeNo(*ino), -1, 0),
            Inval::Data(ino) => n.inval_inode(INodeNo(*ino), 0, 0),
        };
        // ENOENT (not cached) is already taken as success; ENODEV: the session is ending.
        if let Err(e) = r
            && e.raw_os_error() != Some(libc::ENODEV)
        {
            log::debug!("invalidate {i:?}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_reused_and_bounded() {
        let s = Sessions::default();
        let ids: Vec<_> = (0..MAX_SESSIONS).map(|_| s.attach().unwrap()).collect();
        assert!(s.attach().is_none(), "at most {MAX_SESSIONS}");
        assert!(s.shared());
        s.detach(ids[5]);
        assert_eq!(s.attach(), Some(SessionId(5)));
        for id in ids {
            s.detach(id);
        }
        assert_eq!(s.count(), 0);
        assert!(s.close_if_idle());
        assert!(s.attach().is_none(), "closed");
    }
}
