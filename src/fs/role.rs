//! A volume's role as seen by its brick server: whether users may change it. A secondary
//! volume (one that receives a session's changes, not promoted by a failover) is read-only to
//! its users' mounts: only receivers (aux-gfid mounts) change it, so that it stays what its
//! primary has (SPEC 11). georepd decides (`daemon::roles`) and writes the brick's role file
//! (`.georep/role`, `key=value` lines); the server reads it when it opens the brick and when
//! georepd says it changed.

use std::path::Path;

/// What the brick server needs of the role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Role {
    /// Users' mounts may not change the volume; why (for the log and `volume status`).
    pub read_only: Option<String>,
}

/// The role file's format version (its `version=` line).
pub const VERSION: u16 = 1;

impl Role {
    /// The role file's text.
    pub fn encode(&self) -> String {
        match &self.read_only {
            None => format!("version={VERSION}\nusers-read-only=0\n"),
            Some(why) => format!("version={VERSION}\nusers-read-only=1\nreason={}\n", why.replace('\n', " ")),
        }
    }

    /// Reads the role file; a brick without one has no role (writable).
    pub fn load(path: &Path) -> std::io::Result<Role> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Role::default()),
            Err(e) => return Err(e),
        };
        let (mut ro, mut why) = (false, String::new());
        for line in text.lines() {
            match line.split_once('=') {
                // A newer layout could say "read-only" in a way this cannot see: refused.
                Some(("version", v)) if v.trim().parse::<u16>().map_or(true, |v| v > VERSION) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{}: role file version {} is newer than this georep reads ({VERSION})",
                            path.display(),
                            v.trim()
                        ),
                    ));
                }
                Some(("users-read-only", v)) => ro = v.trim() == "1",
                Some(("reason", v)) => why = v.to_string(),
                _ => {}
            }
        }
        Ok(Role { read_only: ro.then_some(why) })
    }

    /// Writes the role file atomically (durable before it replaces the old one).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        crate::durable::replace(path, self.encode().as_bytes())
    }
}

/// How far a secondary volume has applied each primary's changes: per primary volume, the
/// stime (the primary's clock) its worker said is applied and durable here (`.georep/applied`,
/// one `<volume id> <ms>` line each). A lower bound: written without a sync, a crash may keep
/// an older value, never a newer one.
pub fn load_applied(path: &Path) -> std::collections::BTreeMap<crate::types::VolumeId, u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (v, ms) = l.split_once(' ')?;
            Some((v.parse().ok()?, ms.trim().parse().ok()?))
        })
        .collect()
}

/// Records that `primary`'s changes up to `stime_ms` are applied (never moving back).
pub fn note_applied(path: &Path, primary: crate::types::VolumeId, stime_ms: u64) -> std::io::Result<()> {
    let mut all = load_applied(path);
    let e = all.entry(primary).or_insert(0);
    if *e >= stime_ms {
        return Ok(());
    }
    *e = stime_ms;
    let text: String = all.iter().map(|(v, ms)| format!("{v} {ms}\n")).collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// The fencing tokens a secondary volume has seen (`.georep/fences`, one `<volume id> <token>`
/// line per primary volume): the highest token of each primary's Active worker. Written
/// durably and only upward, under one lock (the brick server is the brick's one writer), so
/// that a worker of an older term is refused for good once a newer one has spoken.
pub fn load_fences(path: &Path) -> std::collections::BTreeMap<crate::types::VolumeId, u64> {
    load_applied(path)
}

/// Records `token` for `primary` if it is the highest yet; returns the highest.
pub fn note_fence(path: &Path, primary: crate::types::VolumeId, token: u64) -> std::io::Result<u64> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut all = load_fences(path);
    let e = all.entry(primary).or_insert(0);
    if *e >= token {
        return Ok(*e);
    }
    *e = token;
    let text: String = all.iter().map(|(v, t)| format!("{v} {t}\n")).collect();
    crate::durable::replace(path, text.as_bytes())?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_defaults_to_writable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("role");
        assert_eq!(Role::load(&p).unwrap(), Role::default());
        let r = Role { read_only: Some("secondary of avol@a".into()) };
        r.save(&p).unwrap();
        assert_eq!(Role::load(&p).unwrap(), r);
        Role::default().save(&p).unwrap();
        assert_eq!(Role::load(&p).unwrap().read_only, None);
    }

    #[test]
    fn a_newer_role_file_is_refused_not_read_as_writable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("role");
        std::fs::write(&p, "version=2\nread-only=yes\n").unwrap();
        let e = Role::load(&p).unwrap_err().to_string();
        assert!(e.contains("role file version 2 is newer than this georep reads (1)"), "{e}");
    }

    #[test]
    fn fences_only_move_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fences");
        let (a, b) = (crate::types::VolumeId([1; 16]), crate::types::VolumeId([2; 16]));
        assert_eq!(note_fence(&p, a, 7).unwrap(), 7);
        assert_eq!(note_fence(&p, a, 5).unwrap(), 7, "a lower token leaves the highest");
        assert_eq!(note_fence(&p, b, 3).unwrap(), 3, "each primary its own");
        assert_eq!(note_fence(&p, a, 9).unwrap(), 9);
        assert_eq!(load_fences(&p).get(&a), Some(&9));
        assert_eq!(load_fences(&p).get(&b), Some(&3));
    }

    #[test]
    fn applied_points_only_move_forward() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("applied");
        let (a, b) = (crate::types::VolumeId([1; 16]), crate::types::VolumeId([2; 16]));
        assert!(load_applied(&p).is_empty());
        note_applied(&p, a, 100).unwrap();
        note_applied(&p, b, 50).unwrap();
        note_applied(&p, a, 90).unwrap();
        assert_eq!(load_applied(&p).get(&a), Some(&100));
        assert_eq!(load_applied(&p).get(&b), Some(&50));
    }
}
