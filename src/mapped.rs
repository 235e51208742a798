//! An append-only file written through a shared mapping over space allocated ahead.
//!
//! Appending is a memory copy: no syscall, and no journaled update of the file's size or
//! times per record, as a `pwrite` past the end costs. The pages are the file's page cache,
//! so what was copied survives the process being killed, as written data would; durability
//! is the owner's `fsync`, as before. The allocated space beyond the records reads as zeros:
//! readers stop at the first invalid record, and the owner cuts the file to its records
//! (`unmap`, then `set_len`) before it is published or when it is reopened.
//!
//! Space is allocated, not just sized: a store into a mapped hole of a full filesystem would be
//! a SIGBUS, where a failed allocation is an error.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

pub struct MappedAppend {
    file: Arc<File>,
    /// The whole file, `cap` bytes, mapped shared.
    map: memmap2::MmapMut,
    cap: u64,
    len: u64,
    chunk: u64,
}

/// Allocates the file's bytes from `from` to `to` (its new size) and maps the whole of it.
fn grow(file: &File, from: u64, to: u64) -> io::Result<memmap2::MmapMut> {
    // SAFETY: plain fallocate(2) on an open descriptor.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, from as libc::off_t, (to - from) as libc::off_t) };
    if r != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(e);
        }
        // A filesystem without fallocate: sized only.
        file.set_len(to)?;
    }
    // SAFETY: the file is its owner's alone; nothing else writes or truncates it while mapped
    // (readers only read, and only up to the records).
    unsafe { memmap2::MmapMut::map_mut(file) }
}

impl MappedAppend {
    /// Appends to `file` after its first `len` bytes (its records; the file must be no longer),
    /// allocating at least `chunk` bytes at a time.
    pub fn new(file: Arc<File>, len: u64, chunk: u64) -> io::Result<MappedAppend> {
        let cap = (len + 1).next_multiple_of(chunk);
        let map = grow(&file, len, cap)?;
        Ok(MappedAppend { file, map, cap, len, chunk })
    }

    /// Copies `bytes` after the records, allocating more space first if needed (twice the
    /// size, so that a growing file is remapped only a logarithmic number of times).
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let end = self.len + bytes.len() as u64;
        self.room_to(end)?;
        self.map[self.len as usize..end as usize].copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// Makes sure that `n` more bytes can be appended without allocating: an owner that must
    /// not fail in the middle of something (a change made and not recorded) asks before it.
    pub fn reserve(&mut self, n: u64) -> io::Result<()> {
        self.room_to(self.len + n)
    }

    fn room_to(&mut self, end: u64) -> io::Result<()> {
        if end > self.cap {
            let cap = (self.cap * 2).max(end.next_multiple_of(self.chunk));
            self.map = grow(&self.file, self.cap, cap)?;
            self.cap = cap;
        }
        Ok(())
    }

    /// Bytes of records (the header included, if the owner wrote one).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// Drops the mapping; gives back the file and the length to cut it to.
    pub fn unmap(self) -> (Arc<File>, u64) {
        (self.file, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn appends_land_in_the_file_and_the_tail_reads_as_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = Arc::new(File::options().read(true).write(true).create(true).truncate(true).open(&path).unwrap());
        file.write_all_at(b"HEAD", 0).unwrap();
        let mut m = MappedAppend::new(file.clone(), 4, 16).unwrap();
        // Past the first chunk and past a doubling.
        let recs: Vec<[u8; 7]> = (0..10u8).map(|i| [i + 1; 7]).collect();
        for r in &recs {
            m.append(r).unwrap();
        }
        assert_eq!(m.len(), 4 + 70);
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size >= 74 && size.is_multiple_of(16), "file size {size}");
        // Read through the file, not the mapping.
        let b = std::fs::read(&path).unwrap();
        assert_eq!(&b[..4], b"HEAD");
        assert_eq!(b[4..74], recs.concat()[..]);
        assert!(b[74..].iter().all(|&x| x == 0));
        let (f, len) = m.unmap();
        f.set_len(len).unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), 74);
    }
}
