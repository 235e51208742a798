//! Files replaced whole and durably: written beside, synced, renamed over the old one, the
//! directory synced. A reader sees the old content or the new, never half; after a crash, one
//! of the two.

use std::io::{self, Write};
use std::path::Path;

/// Replaces `path` with `bytes` (through `<path>.tmp`), durably.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    swap(path, bytes)?;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

/// Replaces `path` with `bytes` for readers (never half of it), without waiting for the
/// rename to be durable: for reports written often, where a crash may keep the older one.
pub fn swap(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_whole() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.json");
        super::replace(&p, b"one").unwrap();
        super::replace(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert!(!p.with_extension("tmp").exists());
    }
}
