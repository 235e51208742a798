//! The on-disk codec of changelog files (see `docs/changelog-format.md`). Pure: bytes in, bytes
//! out. Little-endian throughout; every record carries its length and a CRC-32.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use super::record::{EntryDetail, EntryName, Kind, Op, RECORD_EXCHANGE, RECORD_FROM, RECORD_RECEIVED, Record};
use crate::types::{Gfid, VolumeId};

pub const MAGIC: &[u8; 8] = b"GEOREPCL";
/// The version written. 2 added `RECORD_RECEIVED` (a change a receiver applied), 3 added
/// `RECORD_FROM` (the volume it was first made on); older files, which never have them, are
/// read as they are.
pub const VERSION: u16 = 3;
/// The oldest version read.
pub const MIN_VERSION: u16 = 1;
pub const HEADER_LEN: usize = 64;
/// Bytes before each record body: length (u32) and CRC-32 of the body (u32).
pub const FRAME_LEN: usize = 8;
/// Upper bound of a record body (two names of 255 bytes, a 4 KiB symlink target, xattr name).
pub const MAX_BODY: usize = 16 * 1024;

/// The fixed header at the start of every changelog file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Header {
    pub volume: VolumeId,
    /// When the file was opened (ms since the epoch).
    pub start_ms: u64,
    /// Sequence number of the first record the file may hold.
    pub first_seq: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("not a georep changelog (bad magic)")]
    BadMagic,
    #[error("unsupported changelog version {0}")]
    Version(u16),
    #[error("changelog header is truncated")]
    HeaderTruncated,
    #[error("changelog header checksum mismatch")]
    HeaderChecksum,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(MAGIC);
        b[8..10].copy_from_slice(&VERSION.to_le_bytes());
        b[10..12].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        b[16..32].copy_from_slice(&self.volume.0);
        b[32..40].copy_from_slice(&self.start_ms.to_le_bytes());
        b[40..48].copy_from_slice(&self.first_seq.to_le_bytes());
        let crc = crc32fast::hash(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Header, DecodeError> {
        if b.len() < 10 {
            return Err(DecodeError::HeaderTruncated);
        }
        if &b[0..8] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if !(MIN_VERSION..=VERSION).contains(&version) {
            return Err(DecodeError::Version(version));
        }
        if b.len() < HEADER_LEN {
            return Err(DecodeError::HeaderTruncated);
        }
        if crc32fast::hash(&b[0..60]).to_le_bytes() != b[60..64] {
            return Err(DecodeError::HeaderChecksum);
        }
        Ok(Header {
            volume: VolumeId(b[16..32].try_into().unwrap()),
            start_ms: u64::from_le_bytes(b[32..40].try_into().unwrap()),
            first_seq: u64::from_le_bytes(b[40..48].try_into().unwrap()),
        })
    }
}

const F_ENTRY: u8 = 1;
const F_NEW_ENTRY: u8 = 2;
const F_TARGET: u8 = 4;
const F_XATTR: u8 = 8;

fn put_bytes16(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_entry_name(out: &mut Vec<u8>, e: &EntryName) {
    out.extend_from_slice(&e.pgfid.0);
    put_bytes16(out, e.name.as_bytes());
}

/// Appends the framed encoding of `r` to `out`.
pub fn encode_record(r: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_LEN]);
    let body = out.len();
    let mut flags = 0u8;
    if r.entry.is_some() {
        flags |= F_ENTRY;
    }
    if let Some(e) = &r.entry {
        if e.new_entry.is_some() {
            flags |= F_NEW_ENTRY;
        }
        if e.target.is_some() {
            flags |= F_TARGET;
        }
    }
    if r.xattr.is_some() {
        flags |= F_XATTR;
    }
    out.push(r.kind().letter());
    out.push(r.op as u8);
    out.push(flags);
    out.push(r.flags);
    out.extend_from_slice(&r.seq.to_le_bytes());
    out.extend_from_slice(&r.gfid.0);
    if let Some(e) = &r.entry {
        out.extend_from_slice(&e.mode.to_le_bytes());
        out.extend_from_slice(&e.uid.to_le_bytes());
        out.extend_from_slice(&e.gid.to_le_bytes());
        out.extend_from_slice(&e.rdev.to_le_bytes());
        put_entry_name(out, &e.entry);
        if let Some(n) = &e.new_entry {
            put_entry_name(out, n);
        }
        if let Some(t) = &e.target {
            put_bytes16(out, t.as_bytes());
        }
    }
    if let Some(x) = &r.xattr {
        put_bytes16(out, x.as_bytes());
    }
    if r.flags & RECORD_FROM != 0 {
        out.extend_from_slice(&r.from.0);
    }
    let len = (out.len() - body) as u32;
    let crc = crc32fast::hash(&out[body..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What stopped decoding before the end of the buffer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tail {
    /// Every byte belonged to a whole, valid record.
    Clean,
    /// A partial record at `offset` (a torn write): cut the file there.
    Truncated { offset: usize },
    /// Bytes at `offset` do not form a valid record (checksum or structure).
    Corrupt { offset: usize },
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_le_bytes(s.try_into().unwrap()))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|s| u32::from_le_bytes(s.try_into().unwrap()))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|s| u64::from_le_bytes(s.try_into().unwrap()))
    }
    fn gfid(&mut self) -> Option<Gfid> {
        self.take(16).and_then(Gfid::from_slice)
    }
    fn bytes16(&mut self) -> Option<OsString> {
        let n = self.u16()? as usize;
        self.take(n).map(|s| OsString::from_vec(s.to_vec()))
    }
    fn entry_name(&mut self) -> Option<EntryName> {
        Some(EntryName { pgfid: self.gfid()?, name: self.bytes16()? })
    }
}

/// Decodes one record body (without its frame). `None` if it is malformed.
fn decode_body(body: &[u8]) -> Option<Record> {
    let mut c = Cursor { b: body, pos: 0 };
    let letter = c.u8()?;
    let op = Op::from_u8(c.u8()?)?;
    if op.kind().letter() != letter {
        return None;
    }
    let flags = c.u8()?;
    let rflags = c.u8()?;
    // Unknown bits, or detail flags without an entry, are corruption: decoding must be exact.
    if flags & !(F_ENTRY | F_NEW_ENTRY | F_TARGET | F_XATTR) != 0
        || (flags & F_ENTRY == 0 && flags & (F_NEW_ENTRY | F_TARGET) != 0)
        || rflags & !(RECORD_EXCHANGE | RECORD_RECEIVED | RECORD_FROM) != 0
        || (rflags & RECORD_EXCHANGE != 0 && op != Op::Rename)
        || (rflags & RECORD_FROM != 0 && rflags & RECORD_RECEIVED == 0)
    {
        return None;
    }
    let seq = c.u64()?;
    let gfid = c.gfid()?;
    let entry = if flags & F_ENTRY != 0 {
        let mode = c.u32()?;
        let uid = c.u32()?;
        let gid = c.u32()?;
        let rdev = c.u64()?;
        let entry = c.entry_name()?;
        let new_entry = if flags & F_NEW_ENTRY != 0 { Some(c.entry_name()?) } else { None };
        let target = if flags & F_TARGET != 0 { Some(c.bytes16()?) } else { None };
        Some(EntryDetail { mode, uid, gid, rdev, entry, new_entry, target })
    } else {
        None
    };
    if entry.is_some() != (op.kind() == Kind::Entry) {
        return None;
    }
    let xattr = if flags & F_XATTR != 0 { Some(c.bytes16()?) } else { None };
    let from = if rflags & RECORD_FROM != 0 { VolumeId(c.take(16)?.try_into().ok()?) } else { VolumeId::NIL };
    if c.pos != body.len() {
        return None;
    }
    Some(Record { seq, op, gfid, entry, xattr, flags: rflags, from })
}

/// Decodes the framed records in `b` (the bytes after the header) in order, calling `f` for each,
/// and says how decoding ended. Never panics, whatever the bytes.
pub fn decode_records(b: &[u8], mut f: impl FnMut(Record)) -> Tail {
    decode_records_until(b, |r, _| {
        f(r);
        true
    })
}

/// As `decode_records`, telling `f` where each record ends in `b`; decoding stops (with
/// `Tail::Clean`) after a record for which `f` returns false.
pub fn decode_records_until(b: &[u8], mut f: impl FnMut(Record, usize) -> bool) -> Tail {
    let mut pos = 0usize;
    while pos < b.len() {
        if b.len() - pos < FRAME_LEN {
            return Tail::Truncated { offset: pos };
        }
        let len = u32::from_le_bytes(b[pos..pos + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(b[pos + 4..pos + 8].try_into().unwrap());
        if len == 0 && crc == 0 && b[pos..].iter().all(|&x| x == 0) {
            // Zero-filled space after the last record (preallocation, or a torn extent).
            return Tail::Truncated { offset: pos };
        }
        if len > MAX_BODY {
            return Tail::Corrupt { offset: pos };
        }
        let Some(body) = b.get(pos + FRAME_LEN..pos + FRAME_LEN + len) else {
            return Tail::Truncated { offset: pos };
        };
        if crc32fast::hash(body) != crc {
            return Tail::Corrupt { offset: pos };
        }
        let Some(r) = decode_body(body) else {
            return Tail::Corrupt { offset: pos };
        };
        pos += FRAME_LEN + len;
        if !f(r, pos) {
            break;
        }
    }
    Tail::Clean
}
