//! Reading changelog files: a published one through `memmap2` (it never changes again), the
//! active one (`current.<seq>`) read into memory, since its writer cuts its allocated tail
//! when it publishes it, and a mapping of the cut pages would fault (SIGBUS) on the next read.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use super::codec::{self, DecodeError, Header, Tail};
use super::record::Record;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Decode { path: PathBuf, source: DecodeError },
}

/// A changelog file, mapped or read.
pub struct ChangelogFile {
    pub path: PathBuf,
    pub header: Header,
    bytes: Bytes,
}

enum Bytes {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Read(v) => v,
        }
    }
}

impl ChangelogFile {
    pub fn open(path: &Path) -> Result<ChangelogFile, ReadError> {
        let io = |source| ReadError::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < codec::HEADER_LEN as u64 {
            let b = std::fs::read(path).map_err(io)?;
            let source = Header::decode(&b).err().unwrap_or(DecodeError::HeaderTruncated);
            return Err(ReadError::Decode { path: path.to_path_buf(), source });
        }
        let active =
            path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(super::writer::ACTIVE_PREFIX));
        let bytes = if active {
            // What the writer had appended by now; the allocated zeros after it end the read.
            let mut v = Vec::with_capacity(len as usize);
            std::io::Read::read_to_end(&mut &file, &mut v).map_err(io)?;
            Bytes::Read(v)
        } else {
            // SAFETY: a published changelog is never modified again (retention removes it
            // whole, which leaves a mapping valid), and every byte read is bounds- and
            // checksum-checked.
            Bytes::Mapped(unsafe { memmap2::Mmap::map(&file) }.map_err(io)?)
        };
        let header = Header::decode(&bytes).map_err(|source| ReadError::Decode { path: path.to_path_buf(), source })?;
        Ok(ChangelogFile { path: path.to_path_buf(), header, bytes })
    }

    fn body(&self) -> &[u8] {
        self.bytes.get(codec::HEADER_LEN..).unwrap_or(&[])
    }

    /// Calls `f` for each whole record; returns how the file ended.
    pub fn for_each(&self, f: impl FnMut(Record)) -> Tail {
        codec::decode_records(self.body(), f)
    }

    /// All whole records, and how the file ended.
    pub fn records(&self) -> (Vec<Record>, Tail) {
        let mut v = Vec::new();
        let t = self.for_each(|r| v.push(r));
        (v, t)
    }
}
