//! The failures ledger of a session (`<session dir>/failures.json`): each change the secondary
//! could not apply after the worker's retries, with its path, GFID, operation, error, attempts,
//! first and last seen. The worker writes it after each batch: a failure is added (or its
//! attempts counted again), and a listed GFID that a later batch applied leaves it. `georep ...
//! failures retry` has the brick record the listed changes again (`fs::server::resend`), so
//! that the next batch sends them as the primary has them now. The FAILURES column counts it.
//!
//! Both the worker and georepd change it: each under an exclusive lock of `<ledger>.lock`,
//! read, changed, replaced whole.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::types::Gfid;

/// One change the secondary could not apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FailedChange {
    pub gfid: String,
    /// Where it is on the primary (relative to the volume's root) when it last failed;
    /// empty if it no longer was.
    pub path: String,
    /// `CREATE`, `MKDIR`, `RENAME`, ... for an entry; `DATA` or `META`.
    pub op: String,
    pub errno: i32,
    /// The secondary's reason.
    pub error: String,
    /// How many batches tried it and failed (each after the worker's own retries).
    pub attempts: u32,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    /// When `failures retry` had it recorded again (0: never).
    #[serde(default)]
    pub retry_ms: u64,
}

pub struct Ledger {
    path: PathBuf,
}

impl Ledger {
    pub fn new(path: &Path) -> Ledger {
        Ledger { path: path.to_path_buf() }
    }

    /// What it lists (nothing if there is no ledger).
    pub fn read(&self) -> Vec<FailedChange> {
        std::fs::read(&self.path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    /// Changes the list under the lock; writes it if `f` changed it.
    pub fn update<R>(&self, f: impl FnOnce(&mut Vec<FailedChange>) -> R) -> io::Result<R> {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.path.with_extension("lock"))?;
        lock.lock()?;
        let before = self.read();
        let mut list = before.clone();
        let r = f(&mut list);
        if list != before {
            crate::durable::replace(&self.path, &serde_json::to_vec_pretty(&list).map_err(io::Error::other)?)?;
        }
        Ok(r)
    }

    /// After a committed batch: `failed` (GFID, path, op, errno, error) are added or counted
    /// again; the listed GFIDs in `applied` that did not fail leave the list. Returns how many
    /// it lists.
    pub fn settle(
        &self,
        failed: &[(Gfid, String, String, i32, String)],
        applied: &dyn Fn(&Gfid) -> bool,
    ) -> io::Result<usize> {
        let now = crate::types::EpochMs::now().0;
        self.update(|list| {
            let failing: HashSet<String> = failed.iter().map(|f| f.0.to_string()).collect();
            list.retain(|c| failing.contains(&c.gfid) || !c.gfid.parse().is_ok_and(|g: Gfid| applied(&g)));
            for (gfid, path, op, errno, error) in failed {
                let g = gfid.to_string();
                match list.iter_mut().find(|c| c.gfid == g) {
                    Some(c) => {
                        c.attempts += 1;
                        c.last_seen_ms = now;
                        (c.path, c.op, c.errno, c.error) = (path.clone(), op.clone(), *errno, error.clone());
                    }
                    None => list.push(FailedChange {
                        gfid: g,
                        path: path.clone(),
                        op: op.clone(),
                        errno: *errno,
                        error: error.clone(),
                        attempts: 1,
                        first_seen_ms: now,
                        last_seen_ms: now,
                        retry_ms: 0,
                    }),
                }
            }
            list.len()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_again_and_leave_once_applied() {
        let d = tempfile::tempdir().unwrap();
        let l = Ledger::new(&d.path().join("failures.json"));
        let (a, b) = (Gfid::generate(), Gfid::generate());
        let fail =
            |g: Gfid| (g, "d/f".to_string(), "DATA".to_string(), libc::EPERM, "Operation not permitted".to_string());
        assert_eq!(l.settle(&[fail(a), fail(b)], &|_| true).unwrap(), 2);
        assert_eq!(l.settle(&[fail(a)], &|g| *g == b).unwrap(), 1);
        let list = l.read();
        assert_eq!((list[0].gfid.clone(), list[0].attempts), (a.to_string(), 2));
        // A batch that did not carry it leaves it listed.
        assert_eq!(l.settle(&[], &|g| *g == b).unwrap(), 1);
        assert_eq!(l.settle(&[], &|g| *g == a).unwrap(), 0);
        assert!(l.read().is_empty());
    }
}
