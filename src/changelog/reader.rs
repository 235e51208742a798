//! Reading changelog files through `memmap2`.

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

/// A changelog file, mapped.
pub struct ChangelogFile {
    pub path: PathBuf,
    pub header: Header,
    map: Option<memmap2::Mmap>,
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
        // SAFETY: published changelogs are never modified again; an active file is only
        // appended to, and every byte read is bounds- and checksum-checked.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let header = Header::decode(&map).map_err(|source| ReadError::Decode { path: path.to_path_buf(), source })?;
        Ok(ChangelogFile { path: path.to_path_buf(), header, map: Some(map) })
    }

    fn body(&self) -> &[u8] {
        self.map.as_ref().map(|m| &m[codec::HEADER_LEN..]).unwrap_or(&[])
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
