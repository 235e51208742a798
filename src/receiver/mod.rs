//! The receiver: applies a worker's batches to the secondary volume, by GFID, through an
//! aux-gfid mount. Every change is idempotent (replaying a batch changes nothing), and every
//! path it touches is `<mount>/.gfid/<gfid>` or `<mount>/.gfid/<pgfid>/<name>` with a
//! validated single-component name: whatever it is sent, it cannot write outside its volume.
//! It never follows a symlink.
//!
//! Conflicts are settled with the primary as the truth: a name the primary says belongs to
//! GFID X but that holds another GFID on the secondary is removed first.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::fs::newentry::{
    Content, MAX_REQUEST, NewEntry, XATTR_LINK, XATTR_NEWFILE, XATTR_ORIGIN, XATTR_SET_XATTRS, encode_link_request,
    encode_xattrs_request,
};
use crate::proto::{self, EntryOp, Failure, MetaOp, Msg, PROTOCOL_VERSION};
use crate::types::{Gfid, VolumeId};

/// Block checksums one file's answer carries at most (16 MiB).
const MAX_SUMS: usize = 1 << 20;

fn einval(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what.to_string())
}

fn check_name(name: &OsStr) -> io::Result<()> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 255 || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(einval("invalid name"));
    }
    Ok(())
}

/// The highest fencing token `primary`'s workers gave the volume mounted at `root`.
fn highest_fence(root: &Path, primary: VolumeId) -> anyhow::Result<u64> {
    let name = format!("{}.{primary}", crate::fs::newentry::XATTR_FENCE);
    let v = xattr::get(root, name).context("read the fencing token")?.unwrap_or_default();
    Ok(v.get(..8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap())))
}

fn check_gfid(g: &Gfid) -> io::Result<()> {
    if g.is_null() { Err(einval("null gfid")) } else { Ok(()) }
}

/// A receiver's claim on its volume (`fs::claims`).
#[derive(Clone, Copy, Debug)]
enum Claim {
    /// None made: a receiver on its own (tests, `replicate`) or a probe.
    None,
    Registered(VolumeId),
    Taken,
}

pub struct Receiver {
    root: PathBuf,
    /// Its claim on the volume (`fs::claims`): registered at open, taken before its first
    /// change, so that a receiver it replaced never applies anything after it.
    claim: Claim,
    failures: Vec<Failure>,
    /// The file receiving data chunks, kept open between chunks of one file.
    data: Option<(Gfid, File)>,
    /// Entries this batch created (empty files, no xattrs yet): their data needs no truncate
    /// and their xattrs no listing.
    created: std::collections::HashSet<Gfid>,
    /// The primary volume and fencing token of the worker served (`fence`).
    fence: Option<(VolumeId, u64)>,
    /// The other nodes that can serve the volume, as its georepd named them (`Msg::Welcome`).
    nodes: Vec<String>,
    /// What the batch changed, for its commit.
    dirty: Dirty,
}

/// Most inodes a commit syncs one by one; beyond, it syncs the filesystem. Measured on ext4
/// (`docs/performance.md`): a file and its directory cost 1.3 ms fsynced, 2.2 ms by `syncfs`;
/// ten files 14.8 ms against 2.4 ms. (`syncfs` also pays for whatever else is unsynced.)
const COMMIT_INODES_MAX: usize = 2;

/// The inodes a batch changed while they are few; else `all`.
#[derive(Default)]
struct Dirty {
    inodes: std::collections::HashSet<Gfid>,
    all: bool,
}

impl Dirty {
    fn add(&mut self, gfids: &[Gfid]) {
        if self.all {
            return;
        }
        self.inodes.extend(gfids.iter().copied());
        if self.inodes.len() > COMMIT_INODES_MAX {
            self.everything();
        }
    }

    fn everything(&mut self) {
        self.all = true;
        self.inodes.clear();
    }

    fn entry(&mut self, op: &EntryOp) {
        match op {
            EntryOp::Create { gfid, pgfid, .. } | EntryOp::Link { gfid, pgfid, .. } => self.add(&[*gfid, *pgfid]),
            EntryOp::Rename { gfid, from_pgfid, to_pgfid, .. } => self.add(&[*gfid, *from_pgfid, *to_pgfid]),
            EntryOp::Remove { pgfid, .. } => self.add(&[*pgfid]),
        }
    }
}

impl Receiver {
    pub fn new(mount: &Path) -> anyhow::Result<Receiver> {
        let gfid_dir = mount.join(crate::fs::GFID_DIR);
        fs::symlink_metadata(&gfid_dir)
            .with_context(|| format!("{} is not a georep aux-gfid mount", mount.display()))?;
        Ok(Receiver {
            root: mount.to_path_buf(),
            claim: Claim::None,
            failures: Vec::new(),
            data: None,
            created: Default::default(),
            fence: None,
            nodes: Vec::new(),
            dirty: Dirty::default(),
        })
    }

    /// The worker speaks for `primary` with fencing token `token` (its term as the Active of
    /// its replica set; 0: no election). The volume keeps the highest token of each primary
    /// (`fs::role::note_fence`); a worker whose token is lower is of a term that is over, and
    /// is refused now and at every change (`check_fence`).
    pub fn fence(&mut self, primary: VolumeId, token: u64) -> anyhow::Result<()> {
        if token > 0 {
            let mut v = primary.0.to_vec();
            v.extend_from_slice(&token.to_le_bytes());
            xattr::set(&self.root, crate::fs::newentry::XATTR_FENCE, &v).context("record the fencing token")?;
        }
        self.fence = Some((primary, token));
        // Without a token (session create's checks, verify) it may read; its changes are
        // checked as they come.
        if token > 0 { self.check_fence() } else { Ok(()) }
    }

    /// Refuses the worker if a newer term's worker has spoken since.
    pub fn check_fence(&self) -> anyhow::Result<()> {
        let Some((primary, token)) = self.fence else { return Ok(()) };
        let highest = highest_fence(&self.root, primary)?;
        if highest > token {
            bail!(
                "fenced: the worker's term ({token}) is over: the primary volume {primary} has a newer Active worker (term {highest}); its changes are refused"
            );
        }
        Ok(())
    }

    /// Ends this process as soon as a newer term's worker records its token, even while its
    /// own worker is stopped (SIGSTOP, a frozen node) with the connection open.
    pub fn watch_fence(&self) {
        let Some((primary, token)) = self.fence else { return };
        if token == 0 {
            return;
        }
        let root = self.root.clone();
        let _ = std::thread::Builder::new().name("fence".into()).spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_millis(250));
                if let Ok(highest) = highest_fence(&root, primary)
                    && highest > token
                {
                    log::error!(
                        "fenced: the primary volume {primary} has a newer Active worker (term {highest} > {token}): this receiver stops"
                    );
                    std::process::exit(3);
                }
            }
        });
    }

    /// Registers this receiver as the newest of `primary`'s (`fs::claims`); it takes the
    /// volume before its first change (`may_change`).
    pub fn register(&mut self, primary: VolumeId) -> anyhow::Result<()> {
        self.claim_op(primary, &[crate::fs::newentry::CLAIM_REGISTER])?;
        self.claim = Claim::Registered(primary);
        Ok(())
    }

    /// A data stream of the receiver `leader` (its pid): takes the volume for it now.
    pub fn join(&mut self, primary: VolumeId, leader: u32) -> anyhow::Result<()> {
        let mut op = vec![crate::fs::newentry::CLAIM_JOIN];
        op.extend_from_slice(&leader.to_le_bytes());
        self.claim_op(primary, &op)?;
        self.claim = Claim::Taken;
        Ok(())
    }

    /// Before a change: the worker's term is not over (`check_fence`), and the volume is this
    /// receiver's (taken on the first change; a receiver it replaced is gone by then).
    pub fn may_change(&mut self) -> anyhow::Result<()> {
        self.check_fence()?;
        if let Claim::Registered(primary) = self.claim {
            self.claim_op(primary, &[crate::fs::newentry::CLAIM_TAKE])?;
            self.claim = Claim::Taken;
        }
        Ok(())
    }

    fn claim_op(&self, primary: VolumeId, op: &[u8]) -> anyhow::Result<()> {
        let mut v = primary.0.to_vec();
        v.extend_from_slice(op);
        match xattr::set(&self.root, crate::fs::newentry::XATTR_CLAIM, &v) {
            Ok(()) => Ok(()),
            Err(e) => Err(match e.raw_os_error() {
                Some(libc::ESTALE) => anyhow::anyhow!(
                    "replaced: a newer receiver of the primary volume {primary} has taken this volume over; this one stops"
                ),
                Some(libc::EBUSY) => anyhow::anyhow!(
                    "the receiver of the primary volume {primary} that this one replaces did not end in time"
                ),
                Some(libc::ENOENT) => {
                    anyhow::anyhow!("the receiver this data stream joins is not registered for {primary}")
                }
                _ => anyhow::Error::from(e).context("claim the secondary volume"),
            }),
        }
    }

    /// The changes applied from now on were first made on `volume`: the mount records them
    /// so (`glusterfs.georep.origin`).
    pub fn set_origin(&mut self, volume: VolumeId) -> anyhow::Result<()> {
        // A file kept open for data was opened under the origin before.
        self.data = None;
        xattr::set(&self.root, XATTR_ORIGIN, &volume.0).context("set the origin of the changes on the mount")
    }

    /// The directories asked for (`verify`), each from its cookie on, as many as fit one
    /// answer (4 MiB of entries); a directory that is not here has no entries.
    pub fn listing(&mut self, dirs: &[(Gfid, u64)], checksum: bool) -> Vec<crate::proto::DirListing> {
        use crate::fs::listing::XATTR_LIST;
        const BUDGET: usize = 4 << 20;
        let mut out = Vec::new();
        let mut used = 0usize;
        let mut buf = vec![0u8; 64 << 10];
        'dirs: for &(gfid, mut cookie) in dirs {
            let Ok(dir) = File::open(self.by_gfid(&gfid)).and_then(|d| {
                if d.metadata()?.is_dir() { Ok(d) } else { Err(io::Error::from_raw_os_error(libc::ENOTDIR)) }
            }) else {
                out.push(crate::proto::DirListing { gfid, entries: None, next: 0 });
                continue;
            };
            let mut entries = Vec::new();
            loop {
                let name =
                    std::ffi::OsString::from(format!("{XATTR_LIST}{cookie}{}", if checksum { ".sum" } else { "" }));
                let got = crate::fs::sys::getxattr_fd(dir.as_fd(), &name, &mut buf)
                    .and_then(|n| crate::proto::decode_entries(&buf[..n]).map_err(|e| einval(&e.to_string())));
                let (mut part, next) = match got {
                    Ok(p) => p,
                    Err(e) => {
                        log::warn!("verify: cannot list {gfid}: {e}");
                        out.push(crate::proto::DirListing { gfid, entries: None, next: 0 });
                        continue 'dirs;
                    }
                };
                if checksum {
                    // What the mount did not hash (big files) is read through it.
                    let unhashed = |e: &&mut crate::proto::ListEntry| {
                        e.mode & libc::S_IFMT == libc::S_IFREG && !e.gfid.is_null() && e.hash.is_none()
                    };
                    for e in part.iter_mut().filter(unhashed) {
                        e.hash = File::open(self.by_gfid(&e.gfid)).and_then(|f| crate::fs::listing::hash_open(&f)).ok();
                    }
                }
                used += part.iter().map(crate::proto::entry_len).sum::<usize>();
                entries.append(&mut part);
                cookie = next;
                if next == 0 || used >= BUDGET {
                    break;
                }
            }
            out.push(crate::proto::DirListing { gfid, entries: Some(entries), next: cookie });
            if used >= BUDGET {
                break;
            }
        }
        out
    }

    /// `primary`'s changes up to `stime_ms` are applied here (and durable: the worker says so
    /// after a commit).
    pub fn applied(&mut self, primary: VolumeId, stime_ms: u64) -> anyhow::Result<()> {
        let mut v = primary.0.to_vec();
        v.extend_from_slice(&stime_ms.to_le_bytes());
        xattr::set(&self.root, crate::fs::newentry::XATTR_APPLIED, &v).context("record how far the volume is applied")
    }

    /// The secondary volume's id, from the mount.
    pub fn volume(&self) -> anyhow::Result<VolumeId> {
        let v = xattr::get(&self.root, "georep.volume-id")
            .context("read the mount's volume id")?
            .context("the mount does not give its volume id")?;
        std::str::from_utf8(&v)?.parse().map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// The block checksums of a file's range (delta transfer); size `u64::MAX` if there is no
    /// such regular file here.
    pub fn sums(&mut self, ask: &crate::proto::SumsAsk) -> crate::proto::FileSums {
        let gfid = ask.gfid;
        let missing = crate::proto::FileSums { gfid, size: u64::MAX, sums: Vec::new() };
        if check_gfid(&gfid).is_err() {
            return missing;
        }
        // Data written before in this batch must be what is summed.
        self.data = None;
        let Ok(f) = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(self.by_gfid(&gfid)) else {
            return missing;
        };
        let size = match f.metadata() {
            Ok(md) if md.is_file() => md.len(),
            _ => return missing,
        };
        let block = 1usize << ask.block_log2;
        let end = size.min(ask.offset.saturating_add(ask.len));
        let mut buf = vec![0u8; block];
        let mut sums = Vec::with_capacity(end.saturating_sub(ask.offset).div_ceil(block as u64).min(1 << 20) as usize);
        let mut off = ask.offset;
        while off < end {
            if sums.len() >= MAX_SUMS {
                // Enough for one answer: the rest counts as absent, and is sent whole.
                return crate::proto::FileSums { gfid, size: off, sums };
            }
            let want = (end - off).min(block as u64) as usize;
            match f.read_exact_at(&mut buf[..want], off) {
                Ok(()) => sums.push(xxhash_rust::xxh3::xxh3_128(&buf[..want])),
                // Changed under us: what was read is what we can vouch for.
                Err(_) => return crate::proto::FileSums { gfid, size: off, sums },
            }
            off += want as u64;
        }
        crate::proto::FileSums { gfid, size, sums }
    }

    /// A file's content, for a rolling delta: only a regular file of at most `ROLLING_MAX`.
    fn content_for_rolling(&mut self, gfid: &Gfid) -> io::Result<Vec<u8>> {
        check_gfid(gfid)?;
        // Data written before in this batch must be what is read.
        self.data = None;
        let f = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(self.by_gfid(gfid))?;
        let md = f.metadata()?;
        if !md.is_file() || md.len() > crate::proto::ROLLING_MAX {
            return Err(einval("not a regular file small enough for a rolling delta"));
        }
        let mut v = Vec::with_capacity(md.len() as usize);
        (&f).take(crate::proto::ROLLING_MAX).read_to_end(&mut v)?;
        Ok(v)
    }

    /// The rsync signature of a file (a rolling delta's first step); size `u64::MAX` if there
    /// is no such file here, or it is too big.
    pub fn signature(&mut self, gfid: Gfid, block_size: u32) -> (u64, Vec<u8>) {
        if !(512..=(1 << 20)).contains(&block_size) {
            return (u64::MAX, Vec::new());
        }
        match self.content_for_rolling(&gfid) {
            Ok(data) => {
                let opts = fast_rsync::SignatureOptions { block_size, crypto_hash_size: 8 };
                (data.len() as u64, fast_rsync::Signature::calculate(&data, opts).into_serialized())
            }
            Err(_) => (u64::MAX, Vec::new()),
        }
    }

    /// Makes a file what `delta` makes of its content, if the result is `size` bytes with
    /// XXH3-128 `hash`; else it stays as it was and is reported failed.
    pub fn apply_patch(&mut self, gfid: Gfid, size: u64, hash: u128, delta: &[u8]) {
        self.dirty.add(&[gfid]);
        if let Err(e) = self.patch(&gfid, size, hash, delta) {
            self.fail(gfid, &e, "patch");
        }
    }

    fn patch(&mut self, gfid: &Gfid, size: u64, hash: u128, delta: &[u8]) -> io::Result<()> {
        if size > crate::proto::ROLLING_MAX {
            return Err(einval("patch too big"));
        }
        let base = self.content_for_rolling(gfid)?;
        let mut out = Vec::with_capacity(size as usize);
        fast_rsync::apply_limited(&base, delta, &mut out, size as usize).map_err(|e| einval(&e.to_string()))?;
        if out.len() as u64 != size || xxhash_rust::xxh3::xxh3_128(&out) != hash {
            return Err(einval("the patched content is not what the primary has"));
        }
        let f = OpenOptions::new().write(true).custom_flags(libc::O_NOFOLLOW).open(self.by_gfid(gfid))?;
        f.write_all_at(&out, 0)?;
        f.set_len(size)
    }

    /// The greeting, in wire protocol `version`: the volume's id, whether it holds anything,
    /// its size, its nodes.
    fn welcome(&self, version: u16) -> anyhow::Result<Msg> {
        let mut empty = true;
        for e in fs::read_dir(&self.root).context("list the volume's root")? {
            if e?.file_name() != crate::fs::GFID_DIR {
                empty = false;
                break;
            }
        }
        let st = nix::sys::statvfs::statvfs(&self.root).context("statfs of the volume")?;
        let f = st.fragment_size();
        Ok(Msg::Welcome {
            version,
            volume: self.volume()?,
            empty,
            total_bytes: st.blocks() * f,
            avail_bytes: st.blocks_available() * f,
            pid: std::process::id(),
            nodes: self.nodes.clone(),
        })
    }

    fn by_gfid(&self, g: &Gfid) -> PathBuf {
        self.root.join(crate::fs::GFID_DIR).join(g.to_string())
    }

    fn entry(&self, pgfid: &Gfid, name: &OsStr) -> io::Result<PathBuf> {
        check_gfid(pgfid)?;
        check_name(name)?;
        Ok(self.by_gfid(pgfid).join(name))
    }

    /// The GFID of the inode at `p` (not following a symlink), if it exists.
    fn gfid_at(&self, p: &Path) -> io::Result<Option<Gfid>> {
        match fs::symlink_metadata(p) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
        let v = xattr::get(p, "glusterfs.gfid.string")?;
        Ok(v.and_then(|v| std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok())))
    }

    fn exists(&self, g: &Gfid) -> bool {
        fs::symlink_metadata(self.by_gfid(g)).is_ok()
    }

    /// Removes whatever is at `p` (a whole tree for a directory).
    fn remove_any(p: &Path) -> io::Result<()> {
        let md = fs::symlink_metadata(p)?;
        if md.is_dir() { fs::remove_dir_all(p) } else { fs::remove_file(p) }
    }

    fn fail(&mut self, gfid: Gfid, e: &io::Error, what: &str) {
        self.failures.push(Failure {
            gfid,
            errno: e.raw_os_error().unwrap_or(libc::EINVAL),
            message: format!("{what}: {e}"),
        });
    }

    /// Applies a message's entry operations in order, except that runs of new whole files
    /// (creates with their content, which depend on nothing but their parent) are made by
    /// several threads at once: the secondary's mount serves requests in parallel, and one
    /// round trip at a time would leave it idle. A create the fast path cannot make (its name
    /// or GFID taken, its parent missing) goes through the full, serial path after.
    pub fn apply_entries(&mut self, ops: &[EntryOp]) {
        ops.iter().for_each(|op| self.dirty.entry(op));
        let mut run: Vec<&EntryOp> = Vec::new();
        let mut keys = std::collections::HashSet::new();
        for op in ops {
            let parallel =
                matches!(op, EntryOp::Create { mode, inline: Some(_), .. } if mode & libc::S_IFMT == libc::S_IFREG);
            if parallel && let EntryOp::Create { gfid, pgfid, name, .. } = op {
                let k1 = (*gfid, None);
                let k2 = (*pgfid, Some(name.clone()));
                if !keys.contains(&k1) && !keys.contains(&k2) {
                    keys.insert(k1);
                    keys.insert(k2);
                    run.push(op);
                    continue;
                }
            }
            self.apply_run(std::mem::take(&mut run));
            keys.clear();
            if parallel {
                self.apply_run(vec![op]);
            } else {
                self.apply_entry(op);
            }
        }
        self.apply_run(run);
    }

    fn apply_run(&mut self, run: Vec<&EntryOp>) {
        const THREADS: usize = 4;
        if run.len() < 2 * THREADS {
            run.into_iter().for_each(|op| self.apply_entry(op));
            return;
        }
        // Each parent directory opened once, so that a create costs its request alone.
        let mut parents: std::collections::HashMap<Gfid, File> = Default::default();
        for op in &run {
            if let EntryOp::Create { pgfid, .. } = op
                && check_gfid(pgfid).is_ok()
                && !parents.contains_key(pgfid)
                && let Ok(d) = File::open(self.by_gfid(pgfid))
            {
                parents.insert(*pgfid, d);
            }
        }
        // Requests packed per parent into batches of up to one setxattr value: (parent,
        // indexes into `run`, the batch request). What cannot go this way goes serially after.
        let mut batches: Vec<(Gfid, Vec<usize>, Vec<Vec<u8>>)> = Vec::new();
        let mut open: std::collections::HashMap<Gfid, usize> = Default::default();
        for (i, op) in run.iter().enumerate() {
            let EntryOp::Create { gfid, pgfid, .. } = op else { continue };
            let Some(req) = Self::request(op) else { continue };
            if check_gfid(gfid).is_err()
                || !parents.contains_key(pgfid)
                || req.content.is_none()
                || check_name(&req.name).is_err()
            {
                continue;
            }
            let enc = req.encode();
            let slot = match open.get(pgfid) {
                Some(&b) if batches[b].2.iter().map(|r| r.len() + 4).sum::<usize>() + enc.len() + 6 <= MAX_REQUEST => b,
                _ => {
                    batches.push((*pgfid, Vec::new(), Vec::new()));
                    open.insert(*pgfid, batches.len() - 1);
                    batches.len() - 1
                }
            };
            batches[slot].1.push(i);
            batches[slot].2.push(enc);
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let made: Vec<std::sync::atomic::AtomicBool> = run.iter().map(|_| Default::default()).collect();
        std::thread::scope(|sc| {
            for _ in 0..THREADS {
                sc.spawn(|| {
                    loop {
                        let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((pgfid, members, reqs)) = batches.get(b) else { break };
                        let value = crate::fs::newentry::encode_batch(reqs.iter().map(|r| r.as_slice()));
                        if xattr::FileExt::set_xattr(&parents[pgfid], XATTR_NEWFILE, &value).is_ok() {
                            for &i in members {
                                made[i].store(true, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                    }
                });
            }
        });
        for (op, made) in run.into_iter().zip(made) {
            match (op, made.into_inner()) {
                (EntryOp::Create { gfid, .. }, true) => {
                    self.created.insert(*gfid);
                }
                _ => self.apply_entry(op),
            }
        }
    }

    pub fn apply_entry(&mut self, op: &EntryOp) {
        let (gfid, r, what) = match op {
            EntryOp::Create { gfid, .. } => (*gfid, self.create(op), "create"),
            EntryOp::Link { gfid, pgfid, name } => (*gfid, self.link(gfid, pgfid, name), "link"),
            EntryOp::Rename { gfid, from_pgfid, from_name, to_pgfid, to_name, exchange } => {
                (*gfid, self.rename(gfid, (from_pgfid, from_name), (to_pgfid, to_name), *exchange), "rename")
            }
            EntryOp::Remove { gfid, pgfid, name, dir: _ } => (*gfid, self.remove(gfid, pgfid, name), "remove"),
        };
        if let Err(e) = r {
            self.fail(gfid, &e, what);
        }
    }

    /// The newfile request of a create: with the file whole when it came inline and fits.
    fn request(op: &EntryOp) -> Option<NewEntry> {
        let EntryOp::Create { gfid, name, mode, uid, gid, rdev, target, inline, .. } = op else { return None };
        let mut req = NewEntry {
            gfid: *gfid,
            mode: *mode,
            uid: *uid,
            gid: *gid,
            rdev: *rdev,
            name: name.clone(),
            target: target.clone(),
            content: None,
        };
        if let Some(i) = inline
            && *mode & libc::S_IFMT == libc::S_IFREG
        {
            // The file as it is now (the create's owner and mode are those of its birth).
            if i.meta.mode & libc::S_IFMT == libc::S_IFREG {
                (req.mode, req.uid, req.gid) = (i.meta.mode, i.meta.uid, i.meta.gid);
            }
            req.content = Some(Content {
                atime_ns: i.meta.atime_ns,
                mtime_ns: i.meta.mtime_ns,
                data: i.content.clone(),
                xattrs: i.meta.xattrs.clone().unwrap_or_default(),
            });
            if req.encoded_len() > MAX_REQUEST {
                req.content = None;
            }
        }
        Some(req)
    }

    fn create(&mut self, op: &EntryOp) -> io::Result<()> {
        let EntryOp::Create { gfid, pgfid, name, mode, inline, .. } = op else { unreachable!() };
        check_gfid(gfid)?;
        let at = self.entry(pgfid, name)?;
        let mut req = Self::request(op).unwrap();
        let whole = req.content.is_some();
        let newfile = |req: &NewEntry| xattr::set(self.by_gfid(pgfid), XATTR_NEWFILE, &req.encode());
        // The common case first: a new name and a new GFID, one request.
        match newfile(&req) {
            Ok(()) => {
                self.created.insert(*gfid);
                if let (false, Some(i)) = (whole, inline) {
                    self.finish_inline(gfid, i)?;
                }
                return Ok(());
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
        req.content = None;
        // The name or the GFID is taken: settle it, the primary being the truth.
        let placed = match self.gfid_at(&at)? {
            Some(g) if g == *gfid => Ok(()),
            other => {
                if other.is_some() {
                    Self::remove_any(&at)?;
                }
                if self.exists(gfid) {
                    // The inode is already here under another name: a hard link (files) or a
                    // move (directories, which have one name: the primary says it is this one now).
                    if mode & libc::S_IFMT == libc::S_IFDIR {
                        let old = self.dir_location(gfid)?;
                        fs::rename(old, &at)
                    } else {
                        self.hard_link(gfid, pgfid, name)
                    }
                } else {
                    match newfile(&req) {
                        // Made meanwhile by someone else: fine if it is what we wanted.
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) && self.gfid_at(&at)? == Some(*gfid) => Ok(()),
                        r => r,
                    }
                }
            }
        };
        placed?;
        match inline {
            Some(i) => self.finish_inline(gfid, i),
            None => Ok(()),
        }
    }

    /// The content and metadata of a file created without them.
    fn finish_inline(&mut self, gfid: &Gfid, i: &crate::proto::Inline) -> io::Result<()> {
        self.data(*gfid, i.content.len() as u64, 0, &i.content)?;
        self.data = None;
        self.meta(&i.meta)
    }

    /// Where the directory `gfid` is now, as `.gfid/<pgfid>/<name>`.
    fn dir_location(&self, gfid: &Gfid) -> io::Result<PathBuf> {
        let v = xattr::get(self.by_gfid(gfid), "georep.entry")?
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        let (p, n) = v.split_at(v.iter().position(|&b| b == b'/').ok_or_else(|| einval("bad entry xattr"))?);
        let pgfid: Gfid =
            std::str::from_utf8(p).ok().and_then(|s| s.parse().ok()).ok_or_else(|| einval("bad entry xattr"))?;
        self.entry(&pgfid, OsStr::from_bytes(&n[1..]))
    }

    fn link(&mut self, gfid: &Gfid, pgfid: &Gfid, name: &OsString) -> io::Result<()> {
        check_gfid(gfid)?;
        let at = self.entry(pgfid, name)?;
        match self.gfid_at(&at)? {
            Some(g) if g == *gfid => return Ok(()),
            Some(_) => Self::remove_any(&at)?,
            None => {}
        }
        self.hard_link(gfid, pgfid, name)
    }

    /// A new name for an existing inode, made by the mount as root (even for a file this user
    /// does not own).
    fn hard_link(&self, gfid: &Gfid, pgfid: &Gfid, name: &OsStr) -> io::Result<()> {
        xattr::set(self.by_gfid(pgfid), XATTR_LINK, &encode_link_request(gfid, name))
    }

    fn rename(
        &mut self,
        gfid: &Gfid,
        from: (&Gfid, &OsString),
        to: (&Gfid, &OsString),
        exchange: bool,
    ) -> io::Result<()> {
        check_gfid(gfid)?;
        let src = self.entry(from.0, from.1)?;
        let dst = self.entry(to.0, to.1)?;
        if self.gfid_at(&src)? != Some(*gfid) {
            // Done already (a replay), or the source is gone: nothing to move.
            return if self.gfid_at(&dst)? == Some(*gfid) {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(libc::ENOENT))
            };
        }
        if !exchange && src != dst && self.gfid_at(&dst)? == Some(*gfid) {
            // Both names are links to the inode (a replayed create made one): rename(2) would
            // do nothing and leave both; the source name is what must go.
            return fs::remove_file(&src);
        }
        let flags = if exchange { libc::RENAME_EXCHANGE } else { 0 };
        let (a, b) = (cstr(&src)?, cstr(&dst)?);
        // SAFETY: valid C strings.
        if unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), flags) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if !exchange
            && matches!(
                e.raw_os_error(),
                Some(libc::ENOTEMPTY) | Some(libc::EEXIST) | Some(libc::EISDIR) | Some(libc::ENOTDIR)
            )
        {
            // The destination is in the way (a non-empty directory, or another type): the
            // primary says the name is the source's now.
            Self::remove_any(&dst)?;
            return fs::rename(&src, &dst);
        }
        Err(e)
    }

    fn remove(&mut self, gfid: &Gfid, pgfid: &Gfid, name: &OsString) -> io::Result<()> {
        let at = self.entry(pgfid, name)?;
        if self.gfid_at(&at)? == Some(*gfid) { Self::remove_any(&at) } else { Ok(()) }
    }

    /// Removes every entry of directory `pgfid` whose name is not in `keep`.
    pub fn apply_prune(&mut self, pgfid: Gfid, keep: &[OsString]) {
        self.dirty.everything();
        if let Err(e) = self.prune(&pgfid, keep) {
            self.fail(pgfid, &e, "prune");
        }
    }

    fn prune(&mut self, pgfid: &Gfid, keep: &[OsString]) -> io::Result<()> {
        check_gfid(pgfid)?;
        let keep: std::collections::HashSet<&OsStr> = keep.iter().map(|n| n.as_os_str()).collect();
        for e in fs::read_dir(self.by_gfid(pgfid))? {
            let name = e?.file_name();
            if !keep.contains(name.as_os_str()) {
                Self::remove_any(&self.entry(pgfid, &name)?)?;
            }
        }
        Ok(())
    }

    pub fn apply_data(&mut self, gfid: Gfid, size: u64, offset: u64, bytes: &[u8]) {
        self.dirty.add(&[gfid]);
        if let Err(e) = self.data(gfid, size, offset, bytes) {
            if matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
                && let Some((_, f)) = &self.data
            {
                // A file that does not fit keeps none of the space others need; it comes
                // again whole once there is room.
                let _ = f.set_len(0);
            }
            self.data = None;
            self.fail(gfid, &e, "data");
        }
    }

    fn data(&mut self, gfid: Gfid, size: u64, offset: u64, bytes: &[u8]) -> io::Result<()> {
        check_gfid(&gfid)?;
        if offset.checked_add(bytes.len() as u64).is_none_or(|end| end > size) {
            return Err(einval("data beyond the file's size"));
        }
        if self.data.as_ref().map(|d| d.0) != Some(gfid) {
            let f = OpenOptions::new().write(true).custom_flags(libc::O_NOFOLLOW).open(self.by_gfid(&gfid))?;
            let md = f.metadata()?;
            if !md.is_file() {
                return Err(io::Error::from_raw_os_error(libc::EISDIR));
            }
            // Whole or delta, the file takes the primary's size first.
            if md.len() != size {
                f.set_len(size)?;
            }
            self.data = Some((gfid, f));
        }
        let f = &self.data.as_ref().unwrap().1;
        f.write_all_at(bytes, offset)
    }

    pub fn apply_meta(&mut self, m: &MetaOp) {
        self.dirty.add(&[m.gfid]);
        if let Err(e) = self.meta(m) {
            self.fail(m.gfid, &e, "meta");
        }
    }

    fn meta(&mut self, m: &MetaOp) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        use xattr::FileExt;
        check_gfid(&m.gfid)?;
        let p = self.by_gfid(&m.gfid);
        let ifmt = m.mode & libc::S_IFMT;
        if ifmt != libc::S_IFREG && ifmt != libc::S_IFDIR {
            return self.meta_by_path(&p, m);
        }
        // One lookup, then calls on a descriptor: no path lookup per attribute. The type is
        // checked before the inode is opened for real (never a FIFO or a device).
        let opath = OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_NOFOLLOW).open(&p)?;
        if opath.metadata()?.mode() & libc::S_IFMT != ifmt {
            return Err(io::Error::from_raw_os_error(libc::ESTALE));
        }
        let f = File::from(crate::fs::sys::reopen(opath.as_fd(), libc::O_RDONLY)?);
        let st = f.metadata()?;
        if (st.uid(), st.gid()) != (m.uid, m.gid) {
            std::os::unix::fs::fchown(&f, Some(m.uid), Some(m.gid))?;
        }
        if st.mode() & 0o7777 != m.mode & 0o7777 || (st.uid(), st.gid()) != (m.uid, m.gid) {
            // (A chown clears set-id bits: set the mode again after one.)
            f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(m.mode & 0o7777))?;
        }
        if let Some(xs) = &m.xattrs
            && !(xs.is_empty() && self.created.contains(&m.gfid))
        {
            f.set_xattr(XATTR_SET_XATTRS, &encode_xattrs_request(xs))?;
        }
        // Times last: everything above may change them.
        let times = timespecs(m);
        // SAFETY: a valid descriptor and two timespecs.
        if unsafe { libc::futimens(std::os::fd::AsRawFd::as_raw_fd(&f), times.as_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Metadata of symlinks and special files (never opened), by path.
    fn meta_by_path(&self, p: &Path, m: &MetaOp) -> io::Result<()> {
        let md = fs::symlink_metadata(p)?;
        std::os::unix::fs::lchown(p, Some(m.uid), Some(m.gid))?;
        let link = md.file_type().is_symlink();
        if !link {
            fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(m.mode & 0o7777))?;
            if let Some(xs) = &m.xattrs {
                xattr::set(p, XATTR_SET_XATTRS, &encode_xattrs_request(xs))?;
            }
        }
        let times = timespecs(m);
        let c = cstr(p)?;
        // SAFETY: valid C string and two timespecs.
        if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Makes everything applied durable; returns the failures since the last commit. FUSE
    /// passes no `syncfs` to its server: the mount is asked to sync the brick (the few inodes
    /// the batch changed, or its whole filesystem).
    pub fn commit(&mut self) -> Vec<Failure> {
        self.data = None;
        self.created.clear();
        let dirty = std::mem::take(&mut self.dirty);
        if dirty.all || !dirty.inodes.is_empty() {
            let gfids: Vec<u8> = dirty.inodes.iter().flat_map(|g| g.0).collect();
            if let Err(e) = xattr::set(&self.root, crate::fs::newentry::XATTR_SYNC, &gfids) {
                self.failures.push(Failure {
                    gfid: Gfid::NULL,
                    errno: e.raw_os_error().unwrap_or(0),
                    message: format!("sync: {e}"),
                });
            }
        }
        std::mem::take(&mut self.failures)
    }
}

fn timespecs(m: &MetaOp) -> [libc::timespec; 2] {
    let ts = |ns: i64| libc::timespec { tv_sec: ns.div_euclid(1_000_000_000), tv_nsec: ns.rem_euclid(1_000_000_000) };
    [ts(m.atime_ns), ts(m.mtime_ns)]
}

fn cstr(p: &Path) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| einval("path with NUL"))
}

/// Where a receiver applies changes.
pub enum Target<'a> {
    /// An aux-gfid mount made beforehand.
    Mount(&'a Path),
    /// The volume the worker names, mounted for this connection by the node's `georepd`
    /// (in the run directory given) and detached at once: the mount lives as long as this
    /// process is inside it, and nobody else can reach it.
    Daemon(&'a crate::daemon::dirs::Dirs),
}

/// Who a receiver works for: the primary volume (UUID and `volume@node`) its worker names.
struct For<'a> {
    primary: VolumeId,
    name: &'a str,
}

fn open_target(target: &Target<'_>, volume: &str, sender: &For<'_>) -> anyhow::Result<Receiver> {
    use crate::daemon::control::{self, Request, Response};
    match target {
        Target::Mount(p) => {
            // Inside the mount, as with a daemon's mount: data streams join it there.
            std::env::set_current_dir(p).with_context(|| format!("enter {}", p.display()))?;
            Receiver::new(Path::new("."))
        }
        Target::Daemon(dirs) => {
            if volume.is_empty() {
                bail!("the worker named no secondary volume");
            }
            let req = Request::AuxMount {
                volume: volume.to_string(),
                primary: sender.primary.to_string(),
                primary_name: sender.name.to_string(),
            };
            let (resp, fd) = control::call_with_fd(dirs, &req)?;
            match (resp, fd) {
                (m @ (Response::Mount | Response::Mounted { .. }), Some(fd)) => {
                    nix::unistd::fchdir(&fd).context("enter the secondary volume's mount")?;
                    let mut rx = Receiver::new(Path::new("."))?;
                    if let Response::Mounted { nodes } = m {
                        rx.nodes = nodes;
                    }
                    Ok(rx)
                }
                (Response::Err(e), _) => bail!("{e}"),
                (other, _) => bail!("georepd: unexpected answer {other:?}"),
            }
        }
    }
}

/// A data stream's receiver (`sync-jobs`): a mount of its own of the volume (another session
/// of the volume's brick server, which serves the first receiver's too), which must be the
/// volume the first receiver has (`Join`; its pid is not needed).
fn open_joined(
    target: &Target<'_>,
    volume: &str,
    sender: &For<'_>,
    j: &crate::proto::Join,
) -> anyhow::Result<Receiver> {
    let rx = open_target(target, volume, sender)?;
    if rx.volume()? != j.volume {
        bail!("the secondary volume is not {} (the first receiver's)", j.volume);
    }
    Ok(rx)
}

/// What this node's volume changed and never shipped to the worker's volume `toward`, from
/// the node's georepd (a failback).
fn failback_tail(
    target: &Target<'_>,
    volume: &str,
    toward: VolumeId,
    applied_ms: u64,
    keep: bool,
) -> anyhow::Result<Msg> {
    use crate::daemon::control::{self, Request, Response};
    let Target::Daemon(dirs) = target else { bail!("a receiver on a given mount has no georepd to ask") };
    let req = Request::Tail { volume: volume.to_string(), toward: toward.to_string(), after_ms: applied_ms, keep };
    match control::call(dirs, &req)? {
        Response::Tail(t) => {
            let gfids = |v: &[String]| v.iter().filter_map(|g| g.parse().ok()).collect::<Vec<Gfid>>();
            Ok(Msg::Tail { since_ms: t.since_ms, inodes: gfids(&t.inodes), dirs: gfids(&t.dirs), lines: t.lines })
        }
        Response::Err(e) => bail!("{e}"),
        other => bail!("georepd: unexpected answer {other:?}"),
    }
}

/// The volumes this receiver's user may receive for, as its georepd knows them.
fn inventory(target: &Target<'_>) -> anyhow::Result<Vec<proto::RemoteVolume>> {
    use crate::daemon::control::{self, Request, Response};
    let Target::Daemon(dirs) = target else { return Ok(Vec::new()) };
    match control::call(dirs, &Request::Inventory)? {
        Response::Inventory(v) => Ok(v),
        Response::Err(e) => bail!("{e}"),
        other => bail!("georepd: unexpected answer {other:?}"),
    }
}

/// The end of a failback: this node's volume is the primary again (its georepd).
fn failback_restore(target: &Target<'_>, volume: &str, from: VolumeId) -> anyhow::Result<String> {
    use crate::daemon::control::{self, Request, Response};
    let Target::Daemon(dirs) = target else { bail!("a receiver on a given mount has no georepd to ask") };
    match control::call(dirs, &Request::Restore { volume: volume.to_string(), from: from.to_string() })? {
        Response::Ok(m) => Ok(m),
        Response::Err(e) => bail!("{e}"),
        other => bail!("georepd: unexpected answer {other:?}"),
    }
}

/// Why a worker speaking wire protocol `version` is not served, naming both sides.
fn version_refusal(version: u16) -> String {
    let spoken = if proto::MIN_PROTOCOL_VERSION == PROTOCOL_VERSION {
        format!("{PROTOCOL_VERSION}")
    } else {
        format!("{} to {PROTOCOL_VERSION}", proto::MIN_PROTOCOL_VERSION)
    };
    let older = if version > PROTOCOL_VERSION { "the receiver" } else { "the worker" };
    format!(
        "the worker speaks wire protocol {version}, this receiver (georep {}) speaks {spoken}: upgrade {older}'s node",
        crate::VERSION
    )
}

/// Sends one answer to the worker, now.
fn answer(w: &mut impl Write, m: &Msg, level: i32) -> anyhow::Result<()> {
    proto::write_frame(w, m, level).context("answer the worker")?;
    w.flush().context("answer the worker")
}

/// Serves one worker connection on `input`/`output` until it ends.
pub fn serve(target: Target<'_>, input: impl Read, output: impl Write, level: i32) -> anyhow::Result<()> {
    let mut r = BufReader::with_capacity(1 << 20, input);
    let mut w = BufWriter::new(output);
    let mut magic = [0u8; 8];
    match r.read_exact(&mut magic) {
        Ok(()) => {}
        // The worker went away before it spoke: nothing to do.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
        Err(e) => return Err(e).context("reading the protocol magic"),
    }
    if &magic != proto::FRAME_MAGIC {
        bail!("not a georep worker (bad protocol magic)");
    }
    w.write_all(proto::FRAME_MAGIC)?;
    let refuse = |w: &mut BufWriter<_>, message: String| -> anyhow::Result<()> {
        proto::write_frame(w, &Msg::Error { message: message.clone() }, 0)?;
        w.flush()?;
        bail!("{message}")
    };
    let (version, volume, join, primary, primary_name, token) = match proto::read_frame(&mut r)? {
        Some(Msg::Hello { version, secondary_volume, join, primary, primary_name, token })
            if (proto::MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) =>
        {
            (version, secondary_volume, join, primary, primary_name, token)
        }
        Some(Msg::Hello { version, .. }) => return refuse(&mut w, version_refusal(version)),
        Some(Msg::Probe) => {
            let m = match inventory(&target) {
                Ok(volumes) => Msg::Inventory {
                    version: PROTOCOL_VERSION,
                    software: format!("georep {}", crate::VERSION),
                    volumes,
                },
                Err(e) => Msg::Error { message: format!("{e:#}") },
            };
            return answer(&mut w, &m, 0);
        }
        other => bail!("expected hello, got {other:?}"),
    };
    let sender = For { primary, name: &primary_name };
    // The token is recorded before the lock is waited for: a receiver of an older term that
    // holds the lock sees it and ends (`watch_fence`).
    let opened = match join {
        None => open_target(&target, &volume, &sender).and_then(|mut rx| {
            rx.fence(primary, token)?;
            rx.register(primary)?;
            rx.watch_fence();
            Ok(rx)
        }),
        Some(j) => open_joined(&target, &volume, &sender, &j).and_then(|mut rx| {
            rx.fence(primary, token)?;
            rx.join(primary, j.pid)?;
            rx.watch_fence();
            Ok(rx)
        }),
    };
    let mut rx = match opened {
        Ok(rx) => rx,
        Err(e) => return refuse(&mut w, format!("{e:#}")),
    };
    // What arrives was first made on the primary, unless the worker says otherwise.
    // In the worker's version: an older worker reads the greeting of its own.
    let welcome = match rx.set_origin(primary).and_then(|()| rx.welcome(version)) {
        Ok(m) => m,
        Err(e) => return refuse(&mut w, format!("{e:#}")),
    };
    proto::write_frame(&mut w, &welcome, 0)?;
    w.flush()?;
    loop {
        let m = match proto::read_frame(&mut r) {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                bail!("the worker went away in the middle of a message")
            }
            Err(e) => return Err(anyhow::Error::from(e).context("read from the worker")),
        };
        match m {
            Msg::Entries { ops, .. } => {
                rx.may_change()?;
                rx.apply_entries(&ops)
            }
            Msg::Data { gfid, size, offset, bytes, .. } => {
                // Each file's first chunk.
                if offset == 0 {
                    rx.may_change()?;
                }
                rx.apply_data(gfid, size, offset, &bytes)
            }
            Msg::Meta { ops, .. } => {
                rx.may_change()?;
                ops.iter().for_each(|m| rx.apply_meta(m))
            }
            Msg::Prune { pgfid, keep, .. } => {
                rx.may_change()?;
                rx.apply_prune(pgfid, &keep)
            }
            Msg::Origin { volume } => rx.set_origin(volume)?,
            Msg::Synced { stime_ms } => {
                rx.may_change()?;
                rx.applied(primary, stime_ms)?
            }
            Msg::ListRequest { dirs, checksum } => {
                let dirs = rx.listing(&dirs, checksum);
                answer(&mut w, &Msg::Listing { dirs }, level)?;
            }
            Msg::TailRequest { applied_ms, keep } => {
                let m = match failback_tail(&target, &volume, primary, applied_ms, keep) {
                    Ok(m) => m,
                    Err(e) => Msg::Error { message: format!("{e:#}") },
                };
                answer(&mut w, &m, level)?;
            }
            Msg::Restore => {
                let m = match failback_restore(&target, &volume, primary) {
                    Ok(message) => Msg::Restored { message },
                    Err(e) => Msg::Error { message: format!("{e:#}") },
                };
                answer(&mut w, &m, level)?;
            }
            Msg::SumsRequest { batch, files } => {
                let files = files.iter().map(|a| rx.sums(a)).collect();
                answer(&mut w, &Msg::Sums { batch, files }, level)?;
            }
            Msg::SignatureRequest { batch, gfid, block_size } => {
                let (size, signature) = rx.signature(gfid, block_size);
                answer(&mut w, &Msg::Signature { batch, gfid, size, signature }, level)?;
            }
            Msg::Patch { gfid, size, hash, delta, .. } => {
                rx.may_change()?;
                rx.apply_patch(gfid, size, hash, &delta)
            }
            Msg::Commit { batch } => {
                rx.check_fence()?;
                let failures = rx.commit();
                answer(&mut w, &Msg::Committed { batch, failures }, level)?;
            }
            Msg::Error { message } => bail!("worker: {message}"),
            other => bail!("unexpected message {other:?}"),
        }
    }
    Ok(())
}
