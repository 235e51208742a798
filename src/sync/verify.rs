//! `verify` (SPEC 11): the primary's brick and the secondary volume compared end to end over
//! the session's connection, directory by directory from the root: names, types, GFIDs,
//! modes, owners, link counts (hard-link groups), sizes and modification times of files,
//! symlink targets, replicated xattrs and ACLs, and with `checksum` the content (XXH3-128).
//!
//! What changed on the primary after the session's stime is set aside, not reported: an
//! entry whose ctime is later, and the names of a directory whose ctime is later (they may be
//! on their way). With `incremental`, a directory whose xtime (the latest change in its
//! subtree) is not later than the last verify that found nothing is not walked again.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use super::Source;
use super::link::Link;
use crate::proto::{ListEntry, Msg};
use crate::types::Gfid;

/// Differences printed at most (all are counted).
pub const MAX_SHOWN: usize = 1000;
/// Directories asked for at once.
const DIRS_PER_REQUEST: usize = 256;
/// A change is recorded just after it is made: one recorded just after a rollover carries a
/// ctime just before the stime.
const STIME_MARGIN_NS: i64 = 50_000_000;

#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    pub checksum: bool,
    /// The session's stime (ms): what changed on the primary after it is set aside.
    pub stime_ms: u64,
    /// Skip the subtrees unchanged since this stime (ms), that of the last verify that
    /// found nothing (`None`: walk everything).
    pub unchanged_since_ms: Option<u64>,
    pub xattrs: bool,
    pub acls: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Entries compared on both sides.
    pub compared: u64,
    /// Entries set aside as changed after the stime.
    pub set_aside: u64,
    /// Directories not walked (unchanged since the last verify).
    pub skipped_dirs: u64,
    pub differences: u64,
    /// The first `MAX_SHOWN` differences, one line each.
    pub lines: Vec<String>,
}

impl Report {
    fn differ(&mut self, line: String) {
        self.differences += 1;
        if self.lines.len() < MAX_SHOWN {
            self.lines.push(line);
        }
    }

    /// An entry of the directory `dir` that one side has and the other not: set aside if it
    /// may be on its way, else a difference (`what`: which side lacks it).
    fn only_on_one_side(&mut self, aside: bool, what: &str, dir: &Path, e: &ListEntry) {
        if aside {
            self.set_aside += 1;
        } else {
            self.differ(format!("{what}: {} ({})", shown(&dir.join(&e.name)), kind(e.mode)));
        }
    }
}

fn kind(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => "directory",
        libc::S_IFREG => "file",
        libc::S_IFLNK => "symlink",
        _ => "special file",
    }
}

fn shown(p: &Path) -> String {
    if p.as_os_str().is_empty() { "/".into() } else { p.display().to_string() }
}

/// This side's entries of the directory `gfid` (sorted by name), with hashes if asked;
/// `None` if the primary no longer has it.
fn ours(src: &mut Source, gfid: &Gfid, checksum: bool) -> anyhow::Result<Option<Vec<ListEntry>>> {
    let Some(fd) = src.open_gfid(gfid)? else { return Ok(None) };
    let dir = crate::fs::sys::reopen(fd.as_fd(), libc::O_RDONLY | libc::O_DIRECTORY)?;
    let want = crate::fs::listing::Want {
        count: usize::MAX,
        root: *gfid == Gfid::ROOT,
        hash_max: if checksum { u64::MAX } else { 0 },
        hash_budget: u64::MAX,
    };
    let (entries, _) = crate::fs::listing::list(dir.as_fd(), 0, want)?;
    Ok(Some(entries))
}

/// The secondary's entries of `dirs` (each sorted by name; `None`: not there).
fn theirs(link: &mut Link, dirs: &[Gfid], checksum: bool) -> anyhow::Result<HashMap<Gfid, Option<Vec<ListEntry>>>> {
    let mut got: HashMap<Gfid, Option<Vec<ListEntry>>> = HashMap::new();
    let mut pending: Vec<(Gfid, u64)> = dirs.iter().map(|g| (*g, 0)).collect();
    while !pending.is_empty() {
        let answer = match link.ask(&Msg::ListRequest { dirs: pending.clone(), checksum })? {
            Msg::Listing { dirs } => dirs,
            other => anyhow::bail!("the receiver answered {other:?}"),
        };
        if answer.is_empty() {
            anyhow::bail!("the receiver listed nothing of {} directories", pending.len());
        }
        for d in answer {
            let at = pending.iter().position(|(g, _)| *g == d.gfid);
            let Some(at) = at else { anyhow::bail!("the receiver listed a directory not asked for ({})", d.gfid) };
            match d.entries {
                None => {
                    got.insert(d.gfid, None);
                    pending.remove(at);
                }
                Some(mut es) => {
                    if let Some(Some(have)) = got.get_mut(&d.gfid) {
                        have.append(&mut es);
                    } else {
                        got.insert(d.gfid, Some(es));
                    }
                    if d.next == 0 {
                        pending.remove(at);
                    } else {
                        pending[at].1 = d.next;
                    }
                }
            }
        }
    }
    for es in got.values_mut().flatten() {
        es.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(got)
}

/// The replicated xattrs the session keeps in step.
fn kept(x: &[(OsString, Vec<u8>)], o: &VerifyOptions) -> Vec<(OsString, Vec<u8>)> {
    use std::os::unix::ffi::OsStrExt;
    x.iter()
        .filter(|(k, _)| if k.as_bytes().starts_with(b"system.posix_acl_") { o.acls } else { o.xattrs })
        .cloned()
        .collect()
}

/// How two entries of the same name differ (empty: they do not).
fn differences(a: &ListEntry, b: &ListEntry, o: &VerifyOptions) -> Vec<String> {
    let mut d = Vec::new();
    if a.gfid != b.gfid {
        d.push(format!("GFID {} here, {} there", a.gfid, b.gfid));
    }
    if a.mode & libc::S_IFMT != b.mode & libc::S_IFMT {
        d.push(format!("a {} here, a {} there", kind(a.mode), kind(b.mode)));
        return d;
    }
    if a.mode & 0o7777 != b.mode & 0o7777 {
        d.push(format!("mode {:o} here, {:o} there", a.mode & 0o7777, b.mode & 0o7777));
    }
    if (a.uid, a.gid) != (b.uid, b.gid) {
        d.push(format!("owner {}:{} here, {}:{} there", a.uid, a.gid, b.uid, b.gid));
    }
    let is_dir = a.mode & libc::S_IFMT == libc::S_IFDIR;
    if !is_dir && a.nlink != b.nlink {
        d.push(format!("{} links here, {} there", a.nlink, b.nlink));
    }
    if a.mode & libc::S_IFMT == libc::S_IFREG {
        if a.size != b.size {
            d.push(format!("size {} here, {} there", a.size, b.size));
        }
        if a.mtime_ns != b.mtime_ns {
            d.push("modification time differs".into());
        }
        if a.hash.is_some() && a.hash != b.hash {
            d.push("content differs".into());
        }
    }
    if a.target != b.target {
        d.push(format!(
            "target {:?} here, {:?} there",
            a.target.clone().unwrap_or_default(),
            b.target.clone().unwrap_or_default()
        ));
    }
    let (xa, xb) = (kept(&a.xattrs, o), kept(&b.xattrs, o));
    if xa != xb {
        let names = |x: &[(OsString, Vec<u8>)], y: &[(OsString, Vec<u8>)]| -> Vec<String> {
            x.iter().filter(|e| !y.contains(e)).map(|(k, _)| k.to_string_lossy().into_owned()).collect()
        };
        let mut which = names(&xa, &xb);
        which.extend(names(&xb, &xa));
        which.sort();
        which.dedup();
        d.push(format!("xattrs differ ({})", which.join(", ")));
    }
    d
}

/// Compares the primary brick behind `src` with the secondary behind `link`.
pub fn verify(src: &mut Source, link: &mut Link, o: &VerifyOptions) -> anyhow::Result<Report> {
    let mut r = Report::default();
    let stime_ns = (o.stime_ms as i64) * 1_000_000 - STIME_MARGIN_NS;
    let xtimes = match o.unchanged_since_ms {
        Some(_) => crate::fs::xtime::load(&src.layout.xtime_file()).map(|x| x.0).unwrap_or_default(),
        None => HashMap::new(),
    };
    let root_ctime = {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(&src.layout.root)?;
        md.ctime() * 1_000_000_000 + md.ctime_nsec()
    };
    // (directory, its path, its ctime here)
    let mut queue: VecDeque<(Gfid, PathBuf, i64)> = VecDeque::from([(Gfid::ROOT, PathBuf::new(), root_ctime)]);
    while !queue.is_empty() {
        let group: Vec<(Gfid, PathBuf, i64)> = queue.drain(..queue.len().min(DIRS_PER_REQUEST)).collect();
        let gfids: Vec<Gfid> = group.iter().map(|g| g.0).collect();
        // This side's listings (and hashes) are read while the secondary makes its own.
        let (here_all, there) = std::thread::scope(|sc| {
            let mine = sc.spawn(|| gfids.iter().map(|g| ours(src, g, o.checksum)).collect::<anyhow::Result<Vec<_>>>());
            let there = theirs(link, &gfids, o.checksum);
            (mine.join(), there)
        });
        let here_all = here_all.map_err(|_| anyhow::anyhow!("the listing thread panicked"))??;
        let mut there = there?;
        for ((gfid, path, ctime), here) in group.into_iter().zip(here_all) {
            let changed = ctime > stime_ns;
            let Some(here) = here else { continue };
            let Some(Some(there)) = there.remove(&gfid) else {
                if changed {
                    r.set_aside += 1;
                } else {
                    r.differ(format!("missing on the secondary: {} (directory)", shown(&path)));
                }
                continue;
            };
            let (mut i, mut j) = (0, 0);
            while i < here.len() || j < there.len() {
                let ord = match (here.get(i), there.get(j)) {
                    (Some(a), Some(b)) => a.name.cmp(&b.name),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    _ => std::cmp::Ordering::Greater,
                };
                match ord {
                    std::cmp::Ordering::Less => {
                        let a = &here[i];
                        r.only_on_one_side(changed || a.ctime_ns > stime_ns, "missing on the secondary", &path, a);
                        i += 1;
                    }
                    std::cmp::Ordering::Greater => {
                        r.only_on_one_side(changed, "extra on the secondary", &path, &there[j]);
                        j += 1;
                    }
                    std::cmp::Ordering::Equal => {
                        let (a, b) = (&here[i], &there[j]);
                        let p = path.join(&a.name);
                        if a.ctime_ns > stime_ns {
                            r.set_aside += 1;
                        } else {
                            r.compared += 1;
                            let d = differences(a, b, o);
                            if !d.is_empty() {
                                r.differ(format!("{}: {}", shown(&p), d.join("; ")));
                            }
                        }
                        let both_dirs =
                            a.mode & libc::S_IFMT == libc::S_IFDIR && b.mode & libc::S_IFMT == libc::S_IFDIR;
                        if both_dirs && a.gfid == b.gfid && !a.gfid.is_null() {
                            let unchanged = o
                                .unchanged_since_ms
                                .is_some_and(|t| xtimes.get(&a.gfid).copied().unwrap_or(0) <= t * 1000);
                            if unchanged {
                                r.skipped_dirs += 1;
                            } else {
                                queue.push_back((a.gfid, p, a.ctime_ns));
                            }
                        }
                        i += 1;
                        j += 1;
                    }
                }
            }
        }
    }
    Ok(r)
}
