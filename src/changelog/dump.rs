//! Printing records in GlusterFS's parsed changelog form, as `libgfchangelog` hands them to
//! geo-replication: `E <gfid> CREATE <mode> <uid> <gid> <pgfid>/<name>`, `D <gfid>`,
//! `M <gfid> SETATTR`.

use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;

use super::record::{EntryName, Kind, Op, Record};

/// GlusterFS's escaping of entry names: space, newline and `%` only.
pub fn escape_name(name: &[u8], out: &mut Vec<u8>) {
    for &b in name {
        match b {
            b' ' => out.extend_from_slice(b"%20"),
            b'\n' => out.extend_from_slice(b"%0A"),
            b'%' => out.extend_from_slice(b"%25"),
            _ => out.push(b),
        }
    }
}

fn entry_name(e: &EntryName, out: &mut Vec<u8>) {
    out.extend_from_slice(e.pgfid.to_string().as_bytes());
    out.push(b'/');
    escape_name(e.name.as_bytes(), out);
}

/// One record as one line (without the newline).
pub fn format_record(r: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.push(r.kind().letter());
    out.push(b' ');
    out.extend_from_slice(r.gfid.to_string().as_bytes());
    match r.kind() {
        Kind::Data => {}
        Kind::Meta => {
            out.push(b' ');
            out.extend_from_slice(r.op.name().as_bytes());
        }
        Kind::Entry => {
            out.push(b' ');
            out.extend_from_slice(r.op.name().as_bytes());
            let e = r.entry.as_ref().expect("entry record has entry detail");
            if matches!(r.op, Op::Create | Op::Mknod | Op::Mkdir) {
                out.extend_from_slice(format!(" {} {} {}", e.mode, e.uid, e.gid).as_bytes());
            }
            out.push(b' ');
            entry_name(&e.entry, &mut out);
            if let Some(n) = &e.new_entry {
                out.push(b' ');
                entry_name(n, &mut out);
            }
        }
    }
    out
}

/// Writes records one per line.
pub fn write_records<'a>(w: &mut impl Write, records: impl IntoIterator<Item = &'a Record>) -> io::Result<()> {
    for r in records {
        w.write_all(&format_record(r))?;
        w.write_all(b"\n")?;
    }
    Ok(())
}
