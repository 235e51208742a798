//! How long the processes that write for a node may go on: its georepd holds the volume's
//! term as Active (`daemon::election`) only while the node's lease in the store lives, and
//! tells its worker and brick server so through a small file (`<run>/fence/<volume>`: the
//! term's token and a deadline on the system's monotonic clock). The deadline is the lease's
//! own, less a margin, and georepd moves it on at every pass; a georepd that stops (killed,
//! SIGSTOPped, cut off from the store) stops moving it, so its processes stop writing before
//! another node can have taken the volume over. One clock for all (CLOCK_MONOTONIC), so no
//! wall-clock step can stretch a deadline.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A term, and until when it may be acted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The term's fencing token (the election key's create revision in the store).
    pub token: u64,
    /// CLOCK_MONOTONIC, in ms.
    pub until_ms: u64,
}

/// The system's monotonic clock, in ms (the same for every process on the machine).
pub fn now_ms() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000
}

/// The fence file of `volume` under a node's run directory.
pub fn path(run: &Path, volume: &str) -> PathBuf {
    run.join("fence").join(volume)
}

impl Fence {
    /// A term valid for `left` from now.
    pub fn new(token: u64, left: Duration) -> Fence {
        Fence { token, until_ms: now_ms() + left.as_millis() as u64 }
    }

    /// Writes the file (atomically: a reader sees the old deadline or the new one).
    pub fn save(&self, file: &Path) -> std::io::Result<()> {
        if let Some(d) = file.parent() {
            std::fs::create_dir_all(d)?;
        }
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, format!("{} {}\n", self.token, self.until_ms))?;
        std::fs::rename(&tmp, file)
    }

    /// Reads the file; `None` if it is missing or unreadable (no term: write nothing).
    pub fn load(file: &Path) -> Option<Fence> {
        let text = std::fs::read_to_string(file).ok()?;
        let (t, u) = text.trim().split_once(' ')?;
        Some(Fence { token: t.parse().ok()?, until_ms: u.parse().ok()? })
    }

    /// Why term `token` may not be acted on now (`None`: it may).
    pub fn refusal(file: &Path, token: u64) -> Option<String> {
        match Fence::load(file) {
            None => Some(format!("no term: {} is gone (this node is not the volume's Active)", file.display())),
            Some(f) if f.token != token => {
                Some(format!("the term {token} is over (this node's is now {}): not shipping", f.token))
            }
            Some(f) if now_ms() >= f.until_ms => Some(format!(
                "this node's lease in the store may lapse (georepd has not renewed the term {token} for {} ms): not shipping",
                now_ms() - f.until_ms
            )),
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_term_is_good_until_its_deadline_and_for_its_token_only() {
        let dir = tempfile::tempdir().unwrap();
        let f = path(dir.path(), "vol");
        assert!(Fence::refusal(&f, 7).unwrap().contains("no term"));
        Fence::new(7, Duration::from_secs(60)).save(&f).unwrap();
        assert_eq!(Fence::refusal(&f, 7), None);
        assert!(Fence::refusal(&f, 6).unwrap().contains("the term 6 is over"));
        Fence { token: 7, until_ms: now_ms() - 5 }.save(&f).unwrap();
        assert!(Fence::refusal(&f, 7).unwrap().contains("may lapse"));
    }
}
