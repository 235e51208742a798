//! FUSE over io_uring (Linux 6.14+), added to this copy of fuser by georep.
//!
//! Instead of a `read(2)` and a `writev(2)` on `/dev/fuse` per request, the daemon gives the
//! kernel, for every CPU, a queue of *ring entries* (a header buffer and a payload buffer each)
//! as `IORING_OP_URING_CMD` commands. A request made on CPU n is copied into a free entry of
//! queue n and completes that entry's command; the daemon's thread for queue n, bound to CPU n,
//! serves it and hands the reply back in the same entry with the next command
//! (`COMMIT_AND_FETCH`), which also makes the entry free again. Request and reply stay on the
//! CPU that asked, with no cross-CPU wake-up.
//!
//! The layout of an entry's header buffer (`struct fuse_uring_req_header`, uapi `fuse.h`):
//! 128 bytes for `fuse_in_header` (request) or `fuse_out_header` (reply), 128 bytes for the
//! operation's own header (`fuse_mkdir_in`, ...), then `fuse_uring_ent_in_out` (flags,
//! commit id, payload size). Everything after the operation header (names, data; the whole
//! reply body) is in the payload buffer. Requests are put back together here in the layout a
//! `/dev/fuse` read gives, so that parsing and dispatch are fuser's own.
//!
//! The kernel still sends FORGET and INTERRUPT through `/dev/fuse`, and uses the rings only once
//! every CPU's queue has an entry, so the session keeps its `/dev/fuse` threads as well.

use std::alloc::Layout;
use std::fmt;
use std::io;
use std::io::IoSlice;
use std::os::fd::AsRawFd;
use std::os::fd::FromRawFd;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::thread;
use std::thread::JoinHandle;
use std::thread::ThreadId;

use io_uring::IoUring;
use io_uring::cqueue;
use io_uring::opcode;
use io_uring::squeue;
use io_uring::types;
use log::debug;
use log::error;
use parking_lot::Mutex;

use crate::Filesystem;
use crate::dev_fuse::DevFuse;
use crate::ll;
use crate::request::RequestWithSender;
use crate::session::SessionEventLoop;

/// `fuse_uring_req_header.in_out`: the in header of a request, the out header of a reply.
const IN_OUT: usize = 0;
/// `fuse_uring_req_header.op_in`: the operation's header.
const OP_IN: usize = 128;
const OP_IN_LEN: usize = 128;
/// `fuse_uring_req_header.ring_ent_in_out`: `flags: u64, commit_id: u64, payload_sz: u32`.
const ENT_COMMIT_ID: usize = 256 + 8;
const ENT_PAYLOAD_SZ: usize = 256 + 16;
/// The header buffer: one page (the kernel pins the pages of both buffers).
const HEADER_LEN: usize = 4096;

const IN_HEADER_LEN: usize = size_of::<ll::fuse_abi::fuse_in_header>();
const OUT_HEADER_LEN: usize = size_of::<ll::fuse_abi::fuse_out_header>();

/// `enum fuse_uring_cmd`.
const CMD_REGISTER: u32 = 1;
const CMD_COMMIT_AND_FETCH: u32 = 2;

/// `user_data` of the poll on the queue's eventfd, which ends its thread.
const STOP: u64 = u64::MAX;

/// A page-aligned buffer that the kernel writes into and reads from.
struct Buffer {
    ptr: *mut u8,
    layout: Layout,
}

impl Buffer {
    fn new(len: usize) -> io::Result<Buffer> {
        let layout = Layout::from_size_align(len, 4096).map_err(io::Error::other)?;
        // SAFETY: the layout's size is not zero (callers ask for at least a page).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        Ok(Buffer { ptr, layout })
    }

    fn len(&self) -> usize {
        self.layout.size()
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

/// One ring entry: its buffers, the iovecs that name them to the kernel, and the command it
/// last gave the kernel (to give it again if the kernel asks for a retry).
struct Entry {
    header: Buffer,
    payload: Buffer,
    iov: Box<[libc::iovec; 2]>,
    last_cmd: AtomicU32,
    last_commit_id: AtomicU64,
}

/// One CPU's queue: an io_uring with SQE128 entries, and its ring entries.
///
/// Ownership of an entry's buffers passes from the kernel (between a command and its
/// completion) to the thread serving the request in it (until its reply is written and the
/// next command submitted); never to two at once.
pub(crate) struct Queue {
    // Dropped first: closing the ring cancels the commands before the buffers are freed.
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
    entries: Vec<Entry>,
    /// Pushes to the submission queue, from the queue's thread or one a reply was sent from.
    sq: Mutex<()>,
    qid: u16,
    dev: Arc<DevFuse>,
    stop: OwnedFd,
    owner: OnceLock<ThreadId>,
}

// SAFETY: the raw buffer pointers are only used as described on `Queue`.
unsafe impl Send for Queue {}
// SAFETY: as above; the submission queue is behind `sq`, the completion queue has one reader.
unsafe impl Sync for Queue {}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("qid", &self.qid)
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl Queue {
    fn new(dev: Arc<DevFuse>, qid: u16, depth: usize, payload_len: usize) -> io::Result<Queue> {
        let slots = u32::try_from(depth + 1).map_err(io::Error::other)?;
        let ring = IoUring::<squeue::Entry128, cqueue::Entry>::builder()
            .setup_cqsize(slots * 2)
            .setup_submit_all()
            .build(slots)?;
        // Commands name /dev/fuse as fixed file 0: no descriptor lookup and no reference count
        // on the shared file (a cache line every CPU's queue would bounce) per command.
        ring.submitter().register_files(&[dev.as_raw_fd()])?;
        let mut entries = Vec::with_capacity(depth);
        for _ in 0..depth {
            let header = Buffer::new(HEADER_LEN)?;
            let payload = Buffer::new(payload_len)?;
            let iov = Box::new([
                libc::iovec {
                    iov_base: header.ptr.cast(),
                    iov_len: header.len(),
                },
                libc::iovec {
                    iov_base: payload.ptr.cast(),
                    iov_len: payload.len(),
                },
            ]);
            entries.push(Entry {
                header,
                payload,
                iov,
                last_cmd: AtomicU32::new(CMD_REGISTER),
                last_commit_id: AtomicU64::new(0),
            });
        }
        // SAFETY: plain eventfd(2); the descriptor is checked and then owned.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a new descriptor that nothing else owns.
        let stop = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Queue {
            ring,
            entries,
            sq: Mutex::new(()),
            qid,
            dev,
            stop,
            owner: OnceLock::new(),
        })
    }

    /// The command that gives entry `ent` (back) to the kernel.
    fn command(&self, ent: usize, cmd: u32, commit_id: u64) -> squeue::Entry128 {
        // struct fuse_uring_cmd_req { flags: u64, commit_id: u64, qid: u16, padding: [u8; 6] }
        let mut req = [0u8; 80];
        req[8..16].copy_from_slice(&commit_id.to_ne_bytes());
        req[16..18].copy_from_slice(&self.qid.to_ne_bytes());
        let mut op = opcode::UringCmd80::new(types::Fixed(0), cmd).cmd(req);
        if cmd == CMD_REGISTER {
            op = op.addr(Some(self.entries[ent].iov.as_ptr() as u64));
        }
        let sqe = op.build().user_data(ent as u64);
        if cmd == CMD_REGISTER {
            with_len(sqe, 2)
        } else {
            sqe
        }
    }

    fn push(&self, sqe: &squeue::Entry128) -> io::Result<()> {
        let _guard = self.sq.lock();
        // SAFETY: every push goes through this lock; what the entry points to (the iovecs) lives
        // as long as the queue.
        unsafe { self.ring.submission_shared().push(sqe) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))
    }

    /// Gives entry `ent` to the kernel with `cmd`, remembering it for a retry.
    fn give(&self, ent: usize, cmd: u32, commit_id: u64) -> io::Result<()> {
        let entry = &self.entries[ent];
        entry.last_cmd.store(cmd, Ordering::Relaxed);
        entry.last_commit_id.store(commit_id, Ordering::Relaxed);
        self.push(&self.command(ent, cmd, commit_id))?;
        // The queue's own thread submits on its next wait, with every other reply of the batch.
        if self.owner.get() != Some(&thread::current().id()) {
            self.ring.submit()?;
        }
        Ok(())
    }

    fn register(&self) -> io::Result<()> {
        for ent in 0..self.entries.len() {
            self.give(ent, CMD_REGISTER, 0)?;
        }
        let poll = opcode::PollAdd::new(types::Fd(self.stop.as_raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(STOP);
        self.push(&squeue::Entry128::from(poll))
    }

    /// Writes a reply (a `fuse_out_header` and its body, as fuser builds it for `/dev/fuse`)
    /// into entry `ent` and gives the entry back to the kernel. A reply that does not fit is
    /// answered with EIO instead.
    fn commit(&self, ent: usize, commit_id: u64, reply: &[IoSlice<'_>]) -> io::Result<()> {
        let entry = &self.entries[ent];
        // SAFETY: this thread owns the entry's buffers until `give` below (see `Queue`).
        let header = unsafe { std::slice::from_raw_parts_mut(entry.header.ptr, HEADER_LEN) };
        let payload =
            unsafe { std::slice::from_raw_parts_mut(entry.payload.ptr, entry.payload.len()) };
        let total: usize = reply.iter().map(|s| s.len()).sum();
        if total < OUT_HEADER_LEN || total - OUT_HEADER_LEN > payload.len() {
            error!(
                "FUSE reply of {total} bytes does not fit a ring entry of {}",
                payload.len()
            );
            // The out header's unique id sits where the request's was.
            let unique = u64::from_ne_bytes(header[IN_OUT + 8..IN_OUT + 16].try_into().unwrap());
            self.commit(ent, commit_id, &[IoSlice::new(&eio_reply(unique))])?;
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut at = 0; // bytes of the reply placed so far
        for slice in reply {
            let mut rest: &[u8] = slice;
            if at < OUT_HEADER_LEN {
                let n = (OUT_HEADER_LEN - at).min(rest.len());
                header[IN_OUT + at..IN_OUT + at + n].copy_from_slice(&rest[..n]);
                at += n;
                rest = &rest[n..];
            }
            let dst = at.saturating_sub(OUT_HEADER_LEN);
            payload[dst..dst + rest.len()].copy_from_slice(rest);
            at += rest.len();
        }
        let body = (total - OUT_HEADER_LEN) as u32;
        header[ENT_PAYLOAD_SZ..ENT_PAYLOAD_SZ + 4].copy_from_slice(&body.to_ne_bytes());
        self.give(ent, CMD_COMMIT_AND_FETCH, commit_id)
    }

    /// Puts entry `ent`'s request back into `/dev/fuse` layout in `buf`: its unique id, commit
    /// id and length.
    fn request(&self, ent: usize, buf: &mut AlignedBuf) -> Result<(u64, u64, usize), (u64, u64)> {
        let entry = &self.entries[ent];
        // SAFETY: the kernel completed this entry's command: its buffers are this thread's.
        let header = unsafe { std::slice::from_raw_parts(entry.header.ptr, HEADER_LEN) };
        let payload = unsafe { std::slice::from_raw_parts(entry.payload.ptr, entry.payload.len()) };
        let u32_at =
            |at: usize| u32::from_ne_bytes(header[at..at + 4].try_into().unwrap()) as usize;
        let u64_at = |at: usize| u64::from_ne_bytes(header[at..at + 8].try_into().unwrap());
        let len = u32_at(IN_OUT);
        let unique = u64_at(IN_OUT + 8);
        let commit_id = u64_at(ENT_COMMIT_ID);
        let payload_sz = u32_at(ENT_PAYLOAD_SZ);
        let op_len = len.checked_sub(IN_HEADER_LEN + payload_sz);
        let Some(op_len) = op_len.filter(|&n| n <= OP_IN_LEN && payload_sz <= payload.len()) else {
            error!("ring entry with a request of {len} bytes, {payload_sz} of payload: refused");
            return Err((unique, commit_id));
        };
        let out = buf.take(len);
        out[..IN_HEADER_LEN].copy_from_slice(&header[IN_OUT..IN_OUT + IN_HEADER_LEN]);
        out[IN_HEADER_LEN..IN_HEADER_LEN + op_len].copy_from_slice(&header[OP_IN..OP_IN + op_len]);
        out[IN_HEADER_LEN + op_len..].copy_from_slice(&payload[..payload_sz]);
        Ok((unique, commit_id, len))
    }
}

/// Sets an SQE's `len` (the iovec count of a REGISTER), which `UringCmd80` has no setter for.
fn with_len(sqe: squeue::Entry128, len: u32) -> squeue::Entry128 {
    // SAFETY: `Entry128` is `repr(C)`: the 64-byte `io_uring_sqe` (whose `len: u32` is at byte
    // 24) followed by 64 bytes of command; every bit pattern is a valid value.
    let mut raw: [u8; 128] = unsafe { std::mem::transmute(sqe) };
    raw[24..28].copy_from_slice(&len.to_ne_bytes());
    unsafe { std::mem::transmute(raw) }
}

/// A request buffer aligned for `fuse_in_header`, reused from request to request.
struct AlignedBuf(Vec<u64>);

impl AlignedBuf {
    fn take(&mut self, len: usize) -> &mut [u8] {
        let words = len.div_ceil(8);
        if self.0.len() < words {
            self.0.resize(words, 0);
        }
        // SAFETY: u64 storage of at least `len` bytes, viewed as bytes.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<u8>(), len) }
    }
}

/// Where a reply to a request that came through a ring goes.
#[derive(Clone, Debug)]
pub(crate) struct UringReply {
    queue: Arc<Queue>,
    ent: usize,
    commit_id: u64,
}

impl UringReply {
    pub(crate) fn send(&self, data: &[IoSlice<'_>]) -> io::Result<()> {
        self.queue.commit(self.ent, self.commit_id, data)
    }

    pub(crate) fn dev(&self) -> &Arc<DevFuse> {
        &self.queue.dev
    }
}

/// The rings of a session and their threads.
pub(crate) struct Rings {
    queues: Vec<Arc<Queue>>,
    threads: Vec<JoinHandle<()>>,
}

impl Rings {
    /// One queue of `depth` entries per possible CPU, each served by a thread bound to it.
    pub(crate) fn start<FS: Filesystem>(
        event_loops: impl Fn(usize) -> SessionEventLoop<FS>,
        dev: Arc<DevFuse>,
        depth: usize,
        payload_len: usize,
    ) -> io::Result<Rings> {
        // SAFETY: sysconf has no preconditions.
        let cpus = usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) })
            .unwrap_or(1)
            .max(1);
        let mut rings = Rings {
            queues: Vec::new(),
            threads: Vec::new(),
        };
        let (report, reports) = std::sync::mpsc::channel::<io::Result<()>>();
        for qid in 0..cpus {
            let qid16 = u16::try_from(qid).map_err(io::Error::other)?;
            let queue = Arc::new(Queue::new(dev.clone(), qid16, depth, payload_len)?);
            let event_loop = event_loops(qid);
            let q = queue.clone();
            let report = report.clone();
            let thread = thread::Builder::new()
                .name(format!("fuser-ring-{qid}"))
                .spawn(move || {
                    if let Err(e) = serve(&q, &event_loop, report) {
                        error!("FUSE ring {qid}: {e}");
                    }
                });
            match thread {
                Ok(t) => {
                    rings.queues.push(queue);
                    rings.threads.push(t);
                }
                Err(e) => {
                    rings.stop();
                    return Err(e);
                }
            }
        }
        // Once FUSE over io_uring is agreed, the kernel holds every request until each CPU's
        // queue has its entries: a queue that cannot register must end the session, or every
        // caller would wait forever.
        drop(report);
        for _ in 0..cpus {
            let r = reports.recv().unwrap_or_else(|_| {
                Err(io::Error::other("a ring thread ended before registering"))
            });
            if let Err(e) = r {
                rings.stop();
                return Err(e);
            }
        }
        debug!(
            "FUSE over io_uring: {cpus} queues of {depth} entries, {payload_len} bytes of payload"
        );
        Ok(rings)
    }

    /// Ends the queue threads (once the connection is gone, their commands have ended anyway).
    pub(crate) fn stop(self) {
        for queue in &self.queues {
            let one = 1u64.to_ne_bytes();
            // SAFETY: an 8-byte write to the queue's eventfd.
            unsafe { libc::write(queue.stop.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Probes whether this process may use io_uring at all (`kernel.io_uring_disabled`, seccomp).
pub(crate) fn probe() -> io::Result<()> {
    IoUring::<squeue::Entry128, cqueue::Entry>::builder()
        .build(2)
        .map(drop)
}

fn serve<FS: Filesystem>(
    queue: &Arc<Queue>,
    se: &SessionEventLoop<FS>,
    report: std::sync::mpsc::Sender<io::Result<()>>,
) -> io::Result<()> {
    let _ = queue.owner.set(thread::current().id());
    let mut cpu = nix::sched::CpuSet::new();
    if cpu.set(usize::from(queue.qid)).is_ok() {
        if let Err(e) = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpu) {
            debug!("FUSE ring {}: not bound to its CPU: {e}", queue.qid);
        }
    }
    let mut done: Vec<(u64, i32)> = Vec::with_capacity(queue.entries.len() + 1);
    // The kernel refuses a registration at once (a completion with an error right after the
    // submission); a good one completes only when a request comes.
    let registered = queue
        .register()
        .and_then(|()| queue.ring.submit())
        .and_then(|_| {
            reap(queue, &mut done);
            match done.iter().find(|&&(ud, res)| ud != STOP && res < 0) {
                Some(&(_, res)) => Err(io::Error::from_raw_os_error(-res)),
                None => Ok(()),
            }
        });
    if let Err(e) = &registered {
        let _ = report.send(Err(io::Error::new(e.kind(), e.to_string())));
        return registered;
    }
    let _ = report.send(Ok(()));
    let mut buf = AlignedBuf(Vec::new());
    loop {
        for &(ud, res) in &done {
            if ud == STOP {
                return Ok(());
            }
            let ent = ud as usize;
            if res < 0 {
                match -res {
                    libc::EINTR | libc::EAGAIN => {
                        let entry = &queue.entries[ent];
                        let (cmd, id) = (
                            entry.last_cmd.load(Ordering::Relaxed),
                            entry.last_commit_id.load(Ordering::Relaxed),
                        );
                        queue.give(ent, cmd, id)?;
                        continue;
                    }
                    // The connection is gone (unmounted or aborted).
                    libc::ENOTCONN | libc::ENODEV | libc::ECANCELED => return Ok(()),
                    e => return Err(io::Error::from_raw_os_error(e)),
                }
            }
            serve_one(queue, se, ent, &mut buf)?;
        }
        loop {
            match queue.ring.submit_and_wait(1) {
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
        reap(queue, &mut done);
    }
}

/// Takes the completions the kernel has posted (the queue's thread only).
fn reap(queue: &Queue, done: &mut Vec<(u64, i32)>) {
    done.clear();
    // SAFETY: this thread is the completion queue's only reader.
    done.extend(unsafe { queue.ring.completion_shared() }.map(|c| (c.user_data(), c.result())));
}

fn serve_one<FS: Filesystem>(
    queue: &Arc<Queue>,
    se: &SessionEventLoop<FS>,
    ent: usize,
    buf: &mut AlignedBuf,
) -> io::Result<()> {
    let (unique, commit_id, len) = match queue.request(ent, buf) {
        Ok(ids) => ids,
        Err((unique, commit_id)) => return fail(queue, ent, unique, commit_id),
    };
    let reply = UringReply {
        queue: queue.clone(),
        ent,
        commit_id,
    };
    let data: &[u8] = buf.take(len);
    match RequestWithSender::with_uring(se.ch.sender(), reply, data) {
        Some(req) => {
            if let Ok(ll::Operation::Destroy(_)) = req.request.operation() {
                req.reply::<crate::ReplyEmpty>().ok();
            } else {
                req.dispatch(se);
            }
            Ok(())
        }
        None => fail(queue, ent, unique, commit_id),
    }
}

/// A reply with no body: EIO, for request `unique`.
fn eio_reply(unique: u64) -> [u8; OUT_HEADER_LEN] {
    let mut out = [0u8; OUT_HEADER_LEN];
    out[0..4].copy_from_slice(&(OUT_HEADER_LEN as u32).to_ne_bytes());
    out[4..8].copy_from_slice(&(-libc::EIO).to_ne_bytes());
    out[8..16].copy_from_slice(&unique.to_ne_bytes());
    out
}

/// Answers a request that could not be read with EIO, so that its entry comes back.
fn fail(queue: &Queue, ent: usize, unique: u64, commit_id: u64) -> io::Result<()> {
    let _ = queue.commit(ent, commit_id, &[IoSlice::new(&eio_reply(unique))]);
    Ok(())
}
