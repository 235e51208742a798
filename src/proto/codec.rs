//! Encoding and framing. Little-endian; a frame is `len: u32` (bytes after it), `kind: u8`,
//! `flags: u8` (bit 0: the payload is zstd-compressed), then the payload.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use super::msg::{
    DirListing, EntryOp, Failure, FileSums, Inline, Join, ListEntry, MIN_PROTOCOL_VERSION, MetaOp, Msg,
    PROTOCOL_VERSION, RemoteVolume, SumsAsk,
};
use crate::types::{Gfid, VolumeId};

/// Sent once by each side before its first frame.
pub const FRAME_MAGIC: &[u8; 8] = b"GEOREPW1";
/// Largest frame accepted (a 4 MiB data chunk plus headroom).
pub const MAX_FRAME: usize = 8 << 20;
const FLAG_ZSTD: u8 = 1;
/// Payloads smaller than this are sent as they are.
const COMPRESS_MIN: usize = 512;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("frame too large ({0} bytes)")]
    TooLarge(usize),
    #[error("truncated frame")]
    Truncated,
    #[error("unknown message kind {0}")]
    Kind(u8),
    #[error("malformed {0} message")]
    Malformed(&'static str),
    #[error("bad compressed payload")]
    Compression,
}

struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn gfid(&mut self, g: &Gfid) {
        self.0.extend_from_slice(&g.0);
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn name(&mut self, n: &OsString) {
        self.bytes(n.as_bytes());
    }
    fn opt_name(&mut self, n: &Option<OsString>) {
        match n {
            Some(n) => {
                self.u8(1);
                self.name(n);
            }
            None => self.u8(0),
        }
    }
}

struct R<'a> {
    b: &'a [u8],
    what: &'static str,
}

impl<'a> R<'a> {
    fn err(&self) -> DecodeError {
        DecodeError::Malformed(self.what)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return Err(self.err());
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn gfid(&mut self) -> Result<Gfid, DecodeError> {
        Ok(Gfid::from_slice(self.take(16)?).unwrap())
    }
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn name(&mut self) -> Result<OsString, DecodeError> {
        Ok(OsString::from_vec(self.bytes()?.to_vec()))
    }
    fn opt_name(&mut self) -> Result<Option<OsString>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.name()?)),
            _ => Err(self.err()),
        }
    }
    /// A count of items of at least `min` bytes each: never more than the bytes left allow.
    fn count(&mut self, min: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min) > self.b.len() {
            return Err(self.err());
        }
        Ok(n)
    }
    fn end(&self) -> Result<(), DecodeError> {
        if self.b.is_empty() { Ok(()) } else { Err(self.err()) }
    }
}

const K_HELLO: u8 = 1;
const K_WELCOME: u8 = 2;
const K_ERROR: u8 = 3;
const K_ENTRIES: u8 = 4;
const K_DATA: u8 = 5;
const K_META: u8 = 6;
const K_COMMIT: u8 = 7;
const K_COMMITTED: u8 = 8;
const K_PRUNE: u8 = 9;
const K_SUMS_REQUEST: u8 = 10;
const K_SUMS: u8 = 11;
const K_SIGNATURE_REQUEST: u8 = 12;
const K_SIGNATURE: u8 = 13;
const K_PATCH: u8 = 14;
const K_ORIGIN: u8 = 15;
const K_TAIL_REQUEST: u8 = 16;
const K_TAIL: u8 = 17;
const K_RESTORE: u8 = 18;
const K_RESTORED: u8 = 19;
const K_SYNCED: u8 = 20;
const K_LIST_REQUEST: u8 = 21;
const K_LISTING: u8 = 22;
const K_PROBE: u8 = 23;
const K_INVENTORY: u8 = 24;

fn write_meta(w: &mut W, m: &MetaOp) {
    w.gfid(&m.gfid);
    w.u32(m.mode);
    w.u32(m.uid);
    w.u32(m.gid);
    w.i64(m.atime_ns);
    w.i64(m.mtime_ns);
    match &m.xattrs {
        None => w.u8(0),
        Some(xs) => {
            w.u8(1);
            w.u32(xs.len() as u32);
            for (k, v) in xs {
                w.name(k);
                w.bytes(v);
            }
        }
    }
}

fn read_meta(r: &mut R<'_>) -> Result<MetaOp, DecodeError> {
    let (gfid, mode, uid, gid, atime_ns, mtime_ns) = (r.gfid()?, r.u32()?, r.u32()?, r.u32()?, r.i64()?, r.i64()?);
    let xattrs = match r.u8()? {
        0 => None,
        1 => {
            let k = r.count(8)?;
            let mut xs = Vec::with_capacity(k);
            for _ in 0..k {
                xs.push((r.name()?, r.bytes()?.to_vec()));
            }
            Some(xs)
        }
        _ => return Err(r.err()),
    };
    Ok(MetaOp { gfid, mode, uid, gid, atime_ns, mtime_ns, xattrs })
}

fn write_list_entry(w: &mut W, e: &ListEntry) {
    w.name(&e.name);
    w.gfid(&e.gfid);
    w.u32(e.mode);
    w.u32(e.uid);
    w.u32(e.gid);
    w.u32(e.nlink);
    w.u64(e.size);
    w.i64(e.mtime_ns);
    w.i64(e.ctime_ns);
    w.opt_name(&e.target);
    w.u32(e.xattrs.len() as u32);
    for (k, v) in &e.xattrs {
        w.name(k);
        w.bytes(v);
    }
    match e.hash {
        None => w.u8(0),
        Some(h) => {
            w.u8(1);
            w.0.extend_from_slice(&h.to_le_bytes());
        }
    }
}

fn read_list_entry(r: &mut R<'_>) -> Result<ListEntry, DecodeError> {
    let (name, gfid) = (r.name()?, r.gfid()?);
    let (mode, uid, gid, nlink) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
    let (size, mtime_ns, ctime_ns) = (r.u64()?, r.i64()?, r.i64()?);
    let target = r.opt_name()?;
    let k = r.count(8)?;
    let mut xattrs = Vec::with_capacity(k);
    for _ in 0..k {
        xattrs.push((r.name()?, r.bytes()?.to_vec()));
    }
    let hash = match r.u8()? {
        0 => None,
        1 => Some(u128::from_le_bytes(r.take(16)?.try_into().unwrap())),
        _ => return Err(r.err()),
    };
    Ok(ListEntry { name, gfid, mode, uid, gid, nlink, size, mtime_ns, ctime_ns, target, xattrs, hash })
}

/// A directory's entries and where to go on from, as one value (the aux-gfid mount's
/// listing request, `fs::listing`).
pub fn encode_entries(entries: &[ListEntry], next: u64) -> Vec<u8> {
    let mut w = W(Vec::new());
    w.u64(next);
    w.u32(entries.len() as u32);
    for e in entries {
        write_list_entry(&mut w, e);
    }
    w.0
}

/// The encoded size of one entry (for budgets).
pub fn entry_len(e: &ListEntry) -> usize {
    let mut w = W(Vec::new());
    write_list_entry(&mut w, e);
    w.0.len()
}

pub fn decode_entries(b: &[u8]) -> Result<(Vec<ListEntry>, u64), DecodeError> {
    let mut r = R { b, what: "listing" };
    let next = r.u64()?;
    let n = r.count(60)?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        entries.push(read_list_entry(&mut r)?);
    }
    r.end()?;
    Ok((entries, next))
}

fn encode_payload(m: &Msg) -> (u8, Vec<u8>) {
    let mut w = W(Vec::new());
    let kind = match m {
        Msg::Hello { version, secondary_volume, join, primary, primary_name, token } => {
            w.u16(*version);
            w.bytes(secondary_volume.as_bytes());
            match join {
                None => w.u8(0),
                Some(j) => {
                    w.u8(1);
                    w.u32(j.pid);
                    w.0.extend_from_slice(&j.volume.0);
                }
            }
            w.0.extend_from_slice(&primary.0);
            w.bytes(primary_name.as_bytes());
            if *version >= 5 {
                w.u64(*token);
            }
            K_HELLO
        }
        Msg::Origin { volume } => {
            w.0.extend_from_slice(&volume.0);
            K_ORIGIN
        }
        Msg::TailRequest { applied_ms, keep } => {
            w.u64(*applied_ms);
            w.u8(*keep as u8);
            K_TAIL_REQUEST
        }
        Msg::Synced { stime_ms } => {
            w.u64(*stime_ms);
            K_SYNCED
        }
        Msg::ListRequest { dirs, checksum } => {
            w.u32(dirs.len() as u32);
            for (g, cookie) in dirs {
                w.gfid(g);
                w.u64(*cookie);
            }
            w.u8(*checksum as u8);
            K_LIST_REQUEST
        }
        Msg::Listing { dirs } => {
            w.u32(dirs.len() as u32);
            for d in dirs {
                w.gfid(&d.gfid);
                w.u64(d.next);
                match &d.entries {
                    None => w.u8(0),
                    Some(es) => {
                        w.u8(1);
                        w.u32(es.len() as u32);
                        for e in es {
                            write_list_entry(&mut w, e);
                        }
                    }
                }
            }
            K_LISTING
        }
        Msg::Tail { since_ms, inodes, dirs, lines } => {
            w.u64(*since_ms);
            for set in [inodes, dirs] {
                w.u32(set.len() as u32);
                for g in set {
                    w.gfid(g);
                }
            }
            w.u32(lines.len() as u32);
            for l in lines {
                w.bytes(l.as_bytes());
            }
            K_TAIL
        }
        Msg::Restore => K_RESTORE,
        Msg::Probe => K_PROBE,
        Msg::Inventory { version, software, volumes } => {
            w.u16(*version);
            w.bytes(software.as_bytes());
            w.u32(volumes.len() as u32);
            for v in volumes {
                w.bytes(v.name.as_bytes());
                w.u8(v.started as u8 | (v.empty as u8) << 1);
                w.u64(v.total_bytes);
                w.u64(v.avail_bytes);
            }
            K_INVENTORY
        }
        Msg::Restored { message } => {
            w.bytes(message.as_bytes());
            K_RESTORED
        }
        Msg::Welcome { version, volume, empty, total_bytes, avail_bytes, pid, nodes } => {
            w.u16(*version);
            w.0.extend_from_slice(&volume.0);
            w.u8(*empty as u8);
            w.u64(*total_bytes);
            w.u64(*avail_bytes);
            w.u32(*pid);
            if *version >= 6 {
                w.u32(nodes.len() as u32);
                for n in nodes {
                    w.bytes(n.as_bytes());
                }
            }
            K_WELCOME
        }
        Msg::Error { message } => {
            w.bytes(message.as_bytes());
            K_ERROR
        }
        Msg::Entries { batch, ops } => {
            w.u64(*batch);
            w.u32(ops.len() as u32);
            for op in ops {
                match op {
                    EntryOp::Create { gfid, pgfid, name, mode, uid, gid, rdev, target, inline } => {
                        w.u8(1);
                        w.gfid(gfid);
                        w.gfid(pgfid);
                        w.name(name);
                        w.u32(*mode);
                        w.u32(*uid);
                        w.u32(*gid);
                        w.u64(*rdev);
                        w.opt_name(target);
                        match inline {
                            None => w.u8(0),
                            Some(i) => {
                                w.u8(1);
                                w.bytes(&i.content);
                                write_meta(&mut w, &i.meta);
                            }
                        }
                    }
                    EntryOp::Link { gfid, pgfid, name } => {
                        w.u8(2);
                        w.gfid(gfid);
                        w.gfid(pgfid);
                        w.name(name);
                    }
                    EntryOp::Rename { gfid, from_pgfid, from_name, to_pgfid, to_name, exchange } => {
                        w.u8(3);
                        w.gfid(gfid);
                        w.gfid(from_pgfid);
                        w.name(from_name);
                        w.gfid(to_pgfid);
                        w.name(to_name);
                        w.u8(*exchange as u8);
                    }
                    EntryOp::Remove { gfid, pgfid, name, dir } => {
                        w.u8(4);
                        w.gfid(gfid);
                        w.gfid(pgfid);
                        w.name(name);
                        w.u8(*dir as u8);
                    }
                }
            }
            K_ENTRIES
        }
        Msg::Data { batch, gfid, size, offset, bytes } => {
            w.u64(*batch);
            w.gfid(gfid);
            w.u64(*size);
            w.u64(*offset);
            w.bytes(bytes);
            K_DATA
        }
        Msg::Meta { batch, ops } => {
            w.u64(*batch);
            w.u32(ops.len() as u32);
            for m in ops {
                write_meta(&mut w, m);
            }
            K_META
        }
        Msg::Prune { batch, pgfid, keep } => {
            w.u64(*batch);
            w.gfid(pgfid);
            w.u32(keep.len() as u32);
            for n in keep {
                w.name(n);
            }
            K_PRUNE
        }
        Msg::SumsRequest { batch, files } => {
            w.u64(*batch);
            w.u32(files.len() as u32);
            for a in files {
                w.gfid(&a.gfid);
                w.u8(a.block_log2);
                w.u64(a.offset);
                w.u64(a.len);
            }
            K_SUMS_REQUEST
        }
        Msg::Sums { batch, files } => {
            w.u64(*batch);
            w.u32(files.len() as u32);
            for f in files {
                w.gfid(&f.gfid);
                w.u64(f.size);
                w.u32(f.sums.len() as u32);
                for s in &f.sums {
                    w.0.extend_from_slice(&s.to_le_bytes());
                }
            }
            K_SUMS
        }
        Msg::SignatureRequest { batch, gfid, block_size } => {
            w.u64(*batch);
            w.gfid(gfid);
            w.u32(*block_size);
            K_SIGNATURE_REQUEST
        }
        Msg::Signature { batch, gfid, size, signature } => {
            w.u64(*batch);
            w.gfid(gfid);
            w.u64(*size);
            w.bytes(signature);
            K_SIGNATURE
        }
        Msg::Patch { batch, gfid, size, hash, delta } => {
            w.u64(*batch);
            w.gfid(gfid);
            w.u64(*size);
            w.0.extend_from_slice(&hash.to_le_bytes());
            w.bytes(delta);
            K_PATCH
        }
        Msg::Commit { batch } => {
            w.u64(*batch);
            K_COMMIT
        }
        Msg::Committed { batch, failures } => {
            w.u64(*batch);
            w.u32(failures.len() as u32);
            for f in failures {
                w.gfid(&f.gfid);
                w.u32(f.errno as u32);
                w.bytes(f.message.as_bytes());
            }
            K_COMMITTED
        }
    };
    (kind, w.0)
}

fn bool8(r: &mut R<'_>) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(r.err()),
    }
}

fn string(r: &mut R<'_>) -> Result<String, DecodeError> {
    String::from_utf8(r.bytes()?.to_vec()).map_err(|_| r.err())
}

fn decode_payload(kind: u8, b: &[u8]) -> Result<Msg, DecodeError> {
    let what = match kind {
        K_HELLO => "hello",
        K_WELCOME => "welcome",
        K_ERROR => "error",
        K_ENTRIES => "entries",
        K_DATA => "data",
        K_META => "meta",
        K_COMMIT => "commit",
        K_COMMITTED => "committed",
        K_PRUNE => "prune",
        K_SUMS_REQUEST => "sums request",
        K_SUMS => "sums",
        K_SIGNATURE_REQUEST => "signature request",
        K_SIGNATURE => "signature",
        K_PATCH => "patch",
        K_ORIGIN => "origin",
        K_TAIL_REQUEST => "tail request",
        K_TAIL => "tail",
        K_RESTORE => "restore",
        K_PROBE => "probe",
        K_INVENTORY => "inventory",
        K_RESTORED => "restored",
        K_SYNCED => "synced",
        K_LIST_REQUEST => "list request",
        K_LISTING => "listing",
        k => return Err(DecodeError::Kind(k)),
    };
    let mut r = R { b, what };
    let m = match kind {
        K_HELLO => {
            let version = r.u16()?;
            if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
                // Another version's layout: only its number is read (see PROTOCOL_VERSION).
                return Ok(Msg::Hello {
                    version,
                    secondary_volume: String::new(),
                    join: None,
                    primary: VolumeId::NIL,
                    primary_name: String::new(),
                    token: 0,
                });
            }
            let secondary_volume = string(&mut r)?;
            let join = match r.u8()? {
                0 => None,
                1 => Some(Join { pid: r.u32()?, volume: VolumeId(r.take(16)?.try_into().unwrap()) }),
                _ => return Err(r.err()),
            };
            let primary = VolumeId(r.take(16)?.try_into().unwrap());
            let primary_name = string(&mut r)?;
            let token = if version >= 5 { r.u64()? } else { 0 };
            Msg::Hello { version, secondary_volume, join, primary, primary_name, token }
        }
        K_ORIGIN => Msg::Origin { volume: VolumeId(r.take(16)?.try_into().unwrap()) },
        K_TAIL_REQUEST => Msg::TailRequest { applied_ms: r.u64()?, keep: bool8(&mut r)? },
        K_SYNCED => Msg::Synced { stime_ms: r.u64()? },
        K_LIST_REQUEST => {
            let n = r.count(24)?;
            let mut dirs = Vec::with_capacity(n);
            for _ in 0..n {
                dirs.push((r.gfid()?, r.u64()?));
            }
            Msg::ListRequest { dirs, checksum: bool8(&mut r)? }
        }
        K_LISTING => {
            let n = r.count(25)?;
            let mut dirs = Vec::with_capacity(n);
            for _ in 0..n {
                let (gfid, next) = (r.gfid()?, r.u64()?);
                let entries = match r.u8()? {
                    0 => None,
                    1 => {
                        let k = r.count(60)?;
                        let mut es = Vec::with_capacity(k);
                        for _ in 0..k {
                            es.push(read_list_entry(&mut r)?);
                        }
                        Some(es)
                    }
                    _ => return Err(r.err()),
                };
                dirs.push(DirListing { gfid, entries, next });
            }
            Msg::Listing { dirs }
        }
        K_TAIL => {
            let since_ms = r.u64()?;
            let mut sets = [Vec::new(), Vec::new()];
            for set in &mut sets {
                let n = r.count(16)?;
                for _ in 0..n {
                    set.push(r.gfid()?);
                }
            }
            let n = r.count(4)?;
            if n > crate::proto::MAX_TAIL_LINES {
                return Err(r.err());
            }
            let mut lines = Vec::with_capacity(n);
            for _ in 0..n {
                lines.push(string(&mut r)?);
            }
            let [inodes, dirs] = sets;
            Msg::Tail { since_ms, inodes, dirs, lines }
        }
        K_RESTORE => Msg::Restore,
        K_PROBE => Msg::Probe,
        K_INVENTORY => {
            let version = r.u16()?;
            let software = string(&mut r)?;
            let n = r.count(21)?;
            let mut volumes = Vec::with_capacity(n);
            for _ in 0..n {
                let name = string(&mut r)?;
                let flags = r.u8()?;
                volumes.push(RemoteVolume {
                    name,
                    started: flags & 1 != 0,
                    empty: flags & 2 != 0,
                    total_bytes: r.u64()?,
                    avail_bytes: r.u64()?,
                });
            }
            Msg::Inventory { version, software, volumes }
        }
        K_RESTORED => Msg::Restored { message: string(&mut r)? },
        K_WELCOME => {
            let version = r.u16()?;
            let volume = VolumeId(r.take(16)?.try_into().unwrap());
            let (empty, total_bytes, avail_bytes, pid) = (r.u8()? != 0, r.u64()?, r.u64()?, r.u32()?);
            let mut nodes = Vec::new();
            if version >= 6 {
                let n = r.count(4)?;
                nodes.reserve(n);
                for _ in 0..n {
                    nodes.push(string(&mut r)?);
                }
            }
            Msg::Welcome { version, volume, empty, total_bytes, avail_bytes, pid, nodes }
        }
        K_ERROR => Msg::Error { message: string(&mut r)? },
        K_ENTRIES => {
            let batch = r.u64()?;
            let n = r.count(37)?;
            let mut ops = Vec::with_capacity(n);
            for _ in 0..n {
                ops.push(match r.u8()? {
                    1 => EntryOp::Create {
                        gfid: r.gfid()?,
                        pgfid: r.gfid()?,
                        name: r.name()?,
                        mode: r.u32()?,
                        uid: r.u32()?,
                        gid: r.u32()?,
                        rdev: r.u64()?,
                        target: r.opt_name()?,
                        inline: match r.u8()? {
                            0 => None,
                            1 => Some(Box::new(Inline { content: r.bytes()?.to_vec(), meta: read_meta(&mut r)? })),
                            _ => return Err(r.err()),
                        },
                    },
                    2 => EntryOp::Link { gfid: r.gfid()?, pgfid: r.gfid()?, name: r.name()? },
                    3 => EntryOp::Rename {
                        gfid: r.gfid()?,
                        from_pgfid: r.gfid()?,
                        from_name: r.name()?,
                        to_pgfid: r.gfid()?,
                        to_name: r.name()?,
                        exchange: bool8(&mut r)?,
                    },
                    4 => EntryOp::Remove { gfid: r.gfid()?, pgfid: r.gfid()?, name: r.name()?, dir: bool8(&mut r)? },
                    _ => return Err(r.err()),
                });
            }
            Msg::Entries { batch, ops }
        }
        K_DATA => {
            Msg::Data { batch: r.u64()?, gfid: r.gfid()?, size: r.u64()?, offset: r.u64()?, bytes: r.bytes()?.to_vec() }
        }
        K_META => {
            let batch = r.u64()?;
            let n = r.count(45)?;
            let mut ops = Vec::with_capacity(n);
            for _ in 0..n {
                ops.push(read_meta(&mut r)?);
            }
            Msg::Meta { batch, ops }
        }
        K_PRUNE => {
            let (batch, pgfid) = (r.u64()?, r.gfid()?);
            let n = r.count(4)?;
            let mut keep = Vec::with_capacity(n);
            for _ in 0..n {
                keep.push(r.name()?);
            }
            Msg::Prune { batch, pgfid, keep }
        }
        K_SUMS_REQUEST => {
            let batch = r.u64()?;
            let n = r.count(33)?;
            let mut files = Vec::with_capacity(n);
            for _ in 0..n {
                let gfid = r.gfid()?;
                let block_log2 = r.u8()?;
                if !(12..=40).contains(&block_log2) {
                    return Err(r.err());
                }
                files.push(SumsAsk { gfid, block_log2, offset: r.u64()?, len: r.u64()? });
            }
            Msg::SumsRequest { batch, files }
        }
        K_SUMS => {
            let batch = r.u64()?;
            let n = r.count(28)?;
            let mut files = Vec::with_capacity(n);
            for _ in 0..n {
                let (gfid, size) = (r.gfid()?, r.u64()?);
                let k = r.count(16)?;
                let mut sums = Vec::with_capacity(k);
                for _ in 0..k {
                    sums.push(u128::from_le_bytes(r.take(16)?.try_into().unwrap()));
                }
                files.push(FileSums { gfid, size, sums });
            }
            Msg::Sums { batch, files }
        }
        K_SIGNATURE_REQUEST => Msg::SignatureRequest { batch: r.u64()?, gfid: r.gfid()?, block_size: r.u32()? },
        K_SIGNATURE => {
            Msg::Signature { batch: r.u64()?, gfid: r.gfid()?, size: r.u64()?, signature: r.bytes()?.to_vec() }
        }
        K_PATCH => Msg::Patch {
            batch: r.u64()?,
            gfid: r.gfid()?,
            size: r.u64()?,
            hash: u128::from_le_bytes(r.take(16)?.try_into().unwrap()),
            delta: r.bytes()?.to_vec(),
        },
        K_COMMIT => Msg::Commit { batch: r.u64()? },
        K_COMMITTED => {
            let batch = r.u64()?;
            let n = r.count(24)?;
            let mut failures = Vec::with_capacity(n);
            for _ in 0..n {
                failures.push(Failure { gfid: r.gfid()?, errno: r.u32()? as i32, message: string(&mut r)? });
            }
            Msg::Committed { batch, failures }
        }
        _ => unreachable!(),
    };
    r.end()?;
    Ok(m)
}

/// Encodes `m` as one frame, compressing the payload with zstd at `level` (0: never).
pub fn encode_frame(m: &Msg, level: i32) -> Vec<u8> {
    let (kind, payload) = encode_payload(m);
    let (flags, payload) = if level > 0 && payload.len() >= COMPRESS_MIN {
        match zstd::bulk::compress(&payload, level) {
            Ok(c) if c.len() < payload.len() => (FLAG_ZSTD, c),
            _ => (0, payload),
        }
    } else {
        (0, payload)
    };
    let mut out = Vec::with_capacity(6 + payload.len());
    out.extend_from_slice(&((payload.len() + 2) as u32).to_le_bytes());
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&payload);
    out
}

/// Decodes one frame body (the bytes after the length).
pub fn decode_frame(body: &[u8]) -> Result<Msg, DecodeError> {
    if body.len() < 2 {
        return Err(DecodeError::Truncated);
    }
    let (kind, flags, payload) = (body[0], body[1], &body[2..]);
    match flags {
        0 => decode_payload(kind, payload),
        FLAG_ZSTD => {
            let raw = zstd::bulk::decompress(payload, MAX_FRAME).map_err(|_| DecodeError::Compression)?;
            decode_payload(kind, &raw)
        }
        _ => Err(DecodeError::Malformed("frame flags")),
    }
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, m: &Msg, level: i32) -> io::Result<usize> {
    let f = encode_frame(m, level);
    w.write_all(&f)?;
    Ok(f.len())
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Msg>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = u32::from_le_bytes(len) as usize;
    if n > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, DecodeError::TooLarge(n)));
    }
    let mut body = vec![0u8; n];
    r.read_exact(&mut body)?;
    decode_frame(&body).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
