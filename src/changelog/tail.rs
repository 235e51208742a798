//! The tail of the active changelog, shared between the recorder and its tailing readers:
//! how far the active file holds whole records, and a wake-up when that moves.
//!
//! `<brick>/.georep/changelogs/tail` is one page, mapped shared by the recorder (which writes
//! it) and by every consumer that tails (which reads it, and says when it has taken records).
//! The recorder publishes the end after copying each record in: two atomic stores and an
//! atomic add, and a `futex` wake only when a reader is asleep on it. So an idle reader is
//! woken by the first change, and a busy one costs the recorder no system call at all.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `GEOREPTL` |
//! | 8 | 4 | version `1` |
//! | 12 | 4 | `event`: bumped at every change below (the futex word readers sleep on) |
//! | 16 | 4 | `waiters`: readers asleep on `event` |
//! | 20 | 4 | `gen`: a sequence lock, odd while the recorder updates the three fields below |
//! | 24 | 8 | `first_seq` of the active file (its name is `current.<first_seq:020>`) |
//! | 32 | 8 | `end`: bytes of whole records in it, from the start of the file |
//! | 40 | 8 | `next_seq`: the sequence number the next record will have |
//! | 48 | 8 | `reads`: bumped by a reader each time it takes records from the active file |
//!
//! The file is made once (beside, then renamed in) and then only rewritten in place, so a
//! reader's mapping stays the recorder's across remounts. Nothing in it is trusted for more
//! than a hint: readers decode and check every record they take, and a recorder that stopped
//! leaves fields a reader finds stale (its file published or gone), never wrong records.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

pub const TAIL_FILE: &str = "tail";
const MAGIC: &[u8; 8] = b"GEOREPTL";
const VERSION: u32 = 1;
const LEN: usize = 4096;

const EVENT: usize = 12;
const WAITERS: usize = 16;
const GEN: usize = 20;
const FIRST_SEQ: usize = 24;
const END: usize = 32;
const NEXT_SEQ: usize = 40;
const READS: usize = 48;

/// The active file as the recorder last published it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TailState {
    pub first_seq: u64,
    pub end: u64,
    pub next_seq: u64,
}

/// The shared page, mapped.
pub struct Tail {
    map: memmap2::MmapMut,
}

impl Tail {
    fn u32(&self, off: usize) -> &AtomicU32 {
        // SAFETY: `off` is a 4-aligned offset inside the page-aligned, LEN-byte mapping, which
        // lives as long as `self`; the word is only ever accessed atomically.
        unsafe { &*(self.map.as_ptr().add(off) as *const AtomicU32) }
    }

    fn u64(&self, off: usize) -> &AtomicU64 {
        // SAFETY: as `u32`, 8-aligned.
        unsafe { &*(self.map.as_ptr().add(off) as *const AtomicU64) }
    }

    fn map(file: &File) -> io::Result<Tail> {
        // SAFETY: the file is LEN bytes and never shortened (it is only rewritten in place);
        // every access to it goes through atomics.
        let map = unsafe { memmap2::MmapOptions::new().len(LEN).map_mut(file) }?;
        Ok(Tail { map })
    }

    /// The recorder's side: opens the brick's tail page, making it if needed, and publishes
    /// `state` (a new active file).
    pub fn create(dir: &Path, state: TailState) -> io::Result<Tail> {
        let path = dir.join(TAIL_FILE);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) if f.metadata()?.len() == LEN as u64 => f,
            _ => {
                let tmp = dir.join(format!("{TAIL_FILE}.tmp"));
                let f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&tmp)?;
                let mut page = vec![0u8; LEN];
                page[..8].copy_from_slice(MAGIC);
                page[8..12].copy_from_slice(&VERSION.to_le_bytes());
                f.write_all_at(&page, 0)?;
                std::fs::rename(&tmp, &path)?;
                f
            }
        };
        let t = Tail::map(&file)?;
        t.publish(state);
        Ok(t)
    }

    /// A reader's side: the brick's tail page, if a recorder has made one.
    pub fn open(dir: &Path) -> Option<Tail> {
        let file = OpenOptions::new().read(true).write(true).open(dir.join(TAIL_FILE)).ok()?;
        if file.metadata().ok()?.len() != LEN as u64 {
            return None;
        }
        let t = Tail::map(&file).ok()?;
        (&t.map[..8] == MAGIC && t.map[8..12] == VERSION.to_le_bytes()).then_some(t)
    }

    /// Publishes the active file's state and wakes any reader asleep on it.
    pub fn publish(&self, s: TailState) {
        let g = self.u32(GEN);
        g.fetch_add(1, Ordering::AcqRel);
        self.u64(FIRST_SEQ).store(s.first_seq, Ordering::Relaxed);
        self.u64(END).store(s.end, Ordering::Relaxed);
        self.u64(NEXT_SEQ).store(s.next_seq, Ordering::Relaxed);
        g.fetch_add(1, Ordering::Release);
        self.notify();
    }

    /// Something changed (a record, a file published): wakes the readers asleep.
    pub fn notify(&self) {
        self.u32(EVENT).fetch_add(1, Ordering::SeqCst);
        if self.u32(WAITERS).load(Ordering::SeqCst) > 0 {
            futex_wake(self.u32(EVENT));
        }
    }

    /// The last published state, consistent (the sequence lock retried).
    pub fn state(&self) -> TailState {
        let g = self.u32(GEN);
        loop {
            let g1 = g.load(Ordering::Acquire);
            if g1.is_multiple_of(2) {
                let s = TailState {
                    first_seq: self.u64(FIRST_SEQ).load(Ordering::Relaxed),
                    end: self.u64(END).load(Ordering::Relaxed),
                    next_seq: self.u64(NEXT_SEQ).load(Ordering::Relaxed),
                };
                std::sync::atomic::fence(Ordering::Acquire);
                if g.load(Ordering::Relaxed) == g1 {
                    return s;
                }
            }
            std::hint::spin_loop();
        }
    }

    /// The event count, to wait on: `wait(event)` returns as soon as anything happens after
    /// it was read.
    pub fn event(&self) -> u32 {
        self.u32(EVENT).load(Ordering::SeqCst)
    }

    /// Sleeps until the event count moves from `seen`, or `timeout` passes.
    pub fn wait(&self, seen: u32, timeout: Duration) {
        let w = self.u32(WAITERS);
        w.fetch_add(1, Ordering::SeqCst);
        if self.u32(EVENT).load(Ordering::SeqCst) == seen {
            futex_wait(self.u32(EVENT), seen, timeout);
        }
        w.fetch_sub(1, Ordering::SeqCst);
    }

    /// A reader took records from the active file: a change made from now on must be
    /// recorded again even if the file already names it (the recorder's once-per-file
    /// deduplication starts over).
    pub fn mark_read(&self) {
        self.u64(READS).fetch_add(1, Ordering::SeqCst);
    }

    /// How many times readers took records (the recorder compares it with what it saw).
    pub fn reads(&self) -> u64 {
        self.u64(READS).load(Ordering::SeqCst)
    }
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT (shared: the word is in a file mapping other processes map) on a
    // valid, aligned u32 with a relative timeout; it only reads the word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0,
        );
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE of every waiter on a valid, aligned u32.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX, std::ptr::null::<u32>(), 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_sleeping_reader_is_woken_by_a_publish_and_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let w = Tail::create(dir.path(), TailState { first_seq: 5, end: 64, next_seq: 5 }).unwrap();
        let r = Tail::open(dir.path()).unwrap();
        assert_eq!(r.state(), TailState { first_seq: 5, end: 64, next_seq: 5 });
        // Nothing happens: the wait lasts its timeout.
        let t = Instant::now();
        r.wait(r.event(), Duration::from_millis(50));
        assert!(t.elapsed() >= Duration::from_millis(45));
        // A publish from another thread ends the wait long before its timeout.
        let seen = r.event();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            w.publish(TailState { first_seq: 5, end: 100, next_seq: 6 });
            w
        });
        let t = Instant::now();
        r.wait(seen, Duration::from_secs(10));
        assert!(t.elapsed() < Duration::from_secs(5), "woken late: {:?}", t.elapsed());
        assert_eq!(r.state().end, 100);
        let w = h.join().unwrap();
        // An event before the wait: no sleep at all.
        let seen = r.event();
        w.notify();
        let t = Instant::now();
        r.wait(seen, Duration::from_secs(10));
        assert!(t.elapsed() < Duration::from_secs(1));
        // Reads are counted for the recorder; a re-created page keeps its inode and counts.
        r.mark_read();
        assert_eq!(w.reads(), 1);
        drop(w);
        let w2 = Tail::create(dir.path(), TailState { first_seq: 6, end: 64, next_seq: 6 }).unwrap();
        assert_eq!(r.state().first_seq, 6, "the reader's mapping sees the new recorder");
        assert_eq!(w2.reads(), 1);
    }
}
