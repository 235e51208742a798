//! Which receiver may change a secondary volume for a primary volume: the newest one, and once
//! it has begun to change it, no older one ever again.
//!
//! A worker that gives up on its receiver (an answer that did not come within
//! `secondary-timeout`, a connection cut) starts over with a new one, from the last place the
//! secondary acknowledged. The old receiver may still be alive: stopped (SIGSTOP, a frozen
//! node) with a batch read and not yet applied. Were it to go on after the new one has applied
//! newer changes, it would apply its stale batch over them, and the session's position would
//! already be past it. A lock does not keep it out: each receiver of a mountbroker set-up has
//! a mount of its own, and kernel locks are per mount. The brick server serves them all, so it
//! keeps the order here, by process:
//!
//! - **register**, when a receiver opens the volume: it gets the next ticket of that primary;
//! - **take**, before its first change: refused if a receiver with a later ticket has taken the
//!   volume already; otherwise the receiver that held it (and its data streams) is killed, and
//!   the take returns only once they are gone, so nothing of theirs is applied after it;
//! - **join**, a data stream (`sync-jobs`) of a receiver: takes for that receiver, and is
//!   killed with it.
//!
//! A receiver that only reads (`create`'s checks, `verify`) registers and never takes, so it
//! displaces nobody. Processes are held by pidfd: a pid reused by another process is never
//! signalled.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::types::VolumeId;

/// How long a take waits for the receivers it displaced to be gone.
const GONE_WAIT: Duration = Duration::from_secs(10);

/// Why a claim was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// A receiver that registered later has taken the volume: this one is stale.
    Superseded,
    /// The process never registered (or its leader did not).
    Unknown,
    /// The displaced receivers did not end in time.
    Stuck,
    /// The process is gone or cannot be held.
    Gone,
}

struct Candidate {
    pid: i32,
    ticket: u64,
    fd: OwnedFd,
}

struct Holder {
    ticket: u64,
    pid: i32,
    /// The receiver and its data streams.
    fds: Vec<OwnedFd>,
}

#[derive(Default)]
struct Volume {
    next: u64,
    candidates: Vec<Candidate>,
    holder: Option<Holder>,
}

/// The claims on one brick, by primary volume.
#[derive(Default)]
pub struct Claims(Mutex<HashMap<VolumeId, Volume>>);

impl Claims {
    /// `pid` opened the volume to receive `primary`'s changes.
    pub fn register(&self, primary: VolumeId, pid: i32) -> Result<(), Refused> {
        let fd = pidfd(pid).ok_or(Refused::Gone)?;
        let mut all = self.0.lock();
        let v = all.entry(primary).or_default();
        v.candidates.retain(|c| c.pid != pid && !exited(&c.fd));
        v.next += 1;
        v.candidates.push(Candidate { pid, ticket: v.next, fd });
        Ok(())
    }

    /// `pid` is about to change the volume for `primary`.
    pub fn take(&self, primary: VolumeId, pid: i32) -> Result<(), Refused> {
        self.take_with(primary, pid, None)
    }

    /// `pid`, a data stream of the receiver `leader`, is about to change the volume.
    pub fn join(&self, primary: VolumeId, pid: i32, leader: i32) -> Result<(), Refused> {
        let fd = pidfd(pid).ok_or(Refused::Gone)?;
        self.take_with(primary, leader, Some(fd))
    }

    fn take_with(&self, primary: VolumeId, pid: i32, member: Option<OwnedFd>) -> Result<(), Refused> {
        let displaced = {
            let mut all = self.0.lock();
            let v = all.get_mut(&primary).ok_or(Refused::Unknown)?;
            if let Some(h) = v.holder.as_mut().filter(|h| h.pid == pid) {
                h.fds.extend(member);
                return Ok(());
            }
            let c = v.candidates.iter().find(|c| c.pid == pid).ok_or(Refused::Unknown)?;
            if v.holder.as_ref().is_some_and(|h| h.ticket > c.ticket) {
                return Err(Refused::Superseded);
            }
            let fd = c.fd.try_clone().map_err(|_| Refused::Gone)?;
            let mut fds = vec![fd];
            fds.extend(member);
            let new = Holder { ticket: c.ticket, pid, fds };
            v.holder.replace(new).map(|h| h.fds).unwrap_or_default()
        };
        // Outside the lock: a displaced receiver may be in a request of its own here, which
        // must be answered before it can end.
        for fd in &displaced {
            kill(fd);
        }
        let deadline = Instant::now() + GONE_WAIT;
        for fd in &displaced {
            if !wait_gone(fd, deadline) {
                return Err(Refused::Stuck);
            }
        }
        if !displaced.is_empty() {
            log::warn!(
                "a newer receiver ({pid}) of the primary volume {primary} took over: the one it replaced was ended"
            );
        }
        Ok(())
    }
}

fn pidfd(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a descriptor just returned, owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn kill(fd: &OwnedFd) {
    // SAFETY: pidfd_send_signal(2) on a pidfd; a process already gone is ESRCH, ignored.
    unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), libc::SIGKILL, 0usize, 0u32) };
}

/// Whether the process has ended (its pidfd is readable).
fn exited(fd: &OwnedFd) -> bool {
    wait_gone(fd, Instant::now())
}

fn wait_gone(fd: &OwnedFd, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if n > 0 {
            return true;
        }
        if n == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};

    fn sleeper() -> Child {
        Command::new("sleep").arg("60").spawn().unwrap()
    }

    fn ended(c: &mut Child) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if c.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn the_newest_receiver_ends_the_one_it_replaces_and_an_older_one_never_takes_again() {
        let claims = Claims::default();
        let v = VolumeId([7; 16]);
        let (mut old, mut stale, mut new) = (sleeper(), sleeper(), sleeper());
        let pid = |c: &Child| c.id() as i32;
        claims.register(v, pid(&old)).unwrap();
        claims.register(v, pid(&stale)).unwrap();
        claims.take(v, pid(&old)).unwrap();
        claims.take(v, pid(&old)).unwrap();
        let mut stream = sleeper();
        claims.join(v, pid(&stream), pid(&old)).unwrap();
        claims.register(v, pid(&new)).unwrap();
        claims.take(v, pid(&new)).unwrap();
        assert!(ended(&mut old), "the displaced receiver is killed");
        assert!(ended(&mut stream), "and its data stream with it");
        assert_eq!(claims.take(v, pid(&stale)), Err(Refused::Superseded), "registered before the holder");
        assert!(stale.try_wait().unwrap().is_none(), "a refused one is not killed");
        let mut orphan = sleeper();
        assert_eq!(claims.join(v, pid(&orphan), pid(&stale)), Err(Refused::Superseded));
        assert_eq!(claims.take(VolumeId([8; 16]), pid(&new)), Err(Refused::Unknown), "another primary");
        for c in [&mut stale, &mut new, &mut orphan] {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    #[test]
    fn a_reader_that_registers_later_displaces_nobody() {
        let claims = Claims::default();
        let v = VolumeId([9; 16]);
        let (mut worker, mut reader) = (sleeper(), sleeper());
        claims.register(v, worker.id() as i32).unwrap();
        claims.take(v, worker.id() as i32).unwrap();
        claims.register(v, reader.id() as i32).unwrap();
        claims.take(v, worker.id() as i32).unwrap();
        assert!(worker.try_wait().unwrap().is_none());
        for c in [&mut worker, &mut reader] {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}
