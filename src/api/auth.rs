//! The API's bearer token: made at the daemon's first start (`<state>/api-token`, 0600, 32
//! random bytes as hex), printed by `georep api-token`, replaced by `georep api-token
//! --rotate`. The daemon reads the file again when it changes, so a rotation takes effect at
//! once without a restart.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use parking_lot::Mutex;

pub const TOKEN_FILE: &str = "api-token";

fn random_token() -> anyhow::Result<String> {
    let mut b = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Writes a new token (0600) in place of the old one.
fn write(path: &Path) -> anyhow::Result<String> {
    let t = random_token()?;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(format!("{t}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(t)
}

/// The node's token, made if there is none yet.
pub fn ensure_token(state: &Path) -> anyhow::Result<String> {
    let path = state.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        Ok(_) => write(&path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => write(&path),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// A new token in place of the old one.
pub fn rotate_token(state: &Path) -> anyhow::Result<String> {
    write(&state.join(TOKEN_FILE))
}

/// The token as the daemon checks it: read again when the file changes.
#[derive(Clone)]
pub struct Token {
    path: PathBuf,
    cached: Arc<Mutex<(i64, i64, String)>>,
}

impl Token {
    pub fn load(state: &Path) -> anyhow::Result<Token> {
        ensure_token(state)?;
        Ok(Token { path: state.join(TOKEN_FILE), cached: Arc::new(Mutex::new((0, 0, String::new()))) })
    }

    fn current(&self) -> Option<String> {
        let md = std::fs::metadata(&self.path).ok()?;
        let mut c = self.cached.lock();
        if (c.0, c.1) != (md.mtime(), md.mtime_nsec()) || c.2.is_empty() {
            *c = (md.mtime(), md.mtime_nsec(), std::fs::read_to_string(&self.path).ok()?.trim().to_string());
        }
        Some(c.2.clone())
    }

    /// Whether `given` (the Authorization header's bearer value) is the token; compared in
    /// constant time.
    pub fn accepts(&self, given: &str) -> bool {
        let Some(want) = self.current() else { return false };
        if want.is_empty() || want.len() != given.len() {
            return false;
        }
        want.bytes().zip(given.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_private_and_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let t = ensure_token(dir.path()).unwrap();
        assert_eq!(t.len(), 64);
        assert_eq!(ensure_token(dir.path()).unwrap(), t, "kept");
        let mode = std::fs::metadata(dir.path().join(TOKEN_FILE)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let tok = Token::load(dir.path()).unwrap();
        assert!(tok.accepts(&t) && !tok.accepts("x") && !tok.accepts(""));
        std::thread::sleep(std::time::Duration::from_millis(10));
        let n = rotate_token(dir.path()).unwrap();
        assert!(tok.accepts(&n) && !tok.accepts(&t));
    }
}
