//! The control socket between `georepd` and its clients (the CLI, `mount.georep`, the
//! receiver): one JSON request line, one JSON response line, over a Unix socket in the run
//! directory (mode 0600: root only).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::dirs::Dirs;
use crate::session::grammar::{SecondaryUrl, SessionCmd, VolumeCmd};
use crate::session::status::StatusRow;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    Volume(VolumeCmd),
    Session {
        primary: String,
        secondary: SecondaryUrl,
        cmd: SessionCmd,
    },
    Status {
        primary: Option<String>,
        secondary: Option<SecondaryUrl>,
    },
    /// For `mount -t georep VOL`: the volume's local brick.
    ResolveVolume {
        name: String,
    },
    /// For a receiver: mount `volume` with `aux-gfid-mount` at a fresh directory.
    AuxMount {
        volume: String,
    },
    /// Detach (lazily unmount) an aux mount made by `AuxMount`, once the receiver is inside.
    AuxDetach {
        path: PathBuf,
    },
    Ping,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Response {
    /// Success, with text for the user (possibly empty).
    Ok(String),
    /// Failure: one line for the user.
    Err(String),
    Status(Vec<StatusRow>),
    Volumes(Vec<VolumeInfo>),
    Config(Vec<(String, String)>),
    Brick {
        path: PathBuf,
        volume_id: String,
        started: bool,
    },
    Mount {
        path: PathBuf,
    },
}

/// A volume as `volume info` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub name: String,
    pub id: String,
    pub status: String,
    pub replica: u32,
    /// `NODE:PATH`, one per node hosting the brick.
    pub bricks: Vec<String>,
    pub sessions: Vec<String>,
}

/// Sends one request to the local `georepd` and returns its answer.
pub fn call(dirs: &Dirs, req: &Request) -> anyhow::Result<Response> {
    let sock = dirs.socket();
    let s = UnixStream::connect(&sock)
        .with_context(|| format!("cannot reach georepd at {} (is it running?)", sock.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    let mut w = &s;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    w.write_all(&line)?;
    let mut r = BufReader::new(&s);
    let mut answer = String::new();
    r.read_line(&mut answer).context("georepd did not answer")?;
    if answer.is_empty() {
        anyhow::bail!("georepd closed the connection without an answer");
    }
    serde_json::from_str(&answer).context("georepd sent an unreadable answer")
}

/// Reads one request from a client (bounded: 1 MiB).
pub fn read_request(s: &UnixStream) -> anyhow::Result<Option<Request>> {
    let mut line = Vec::new();
    let mut r = BufReader::new(s).take(1 << 20);
    use std::io::Read;
    r.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Ok(None);
    }
    Ok(Some(serde_json::from_slice(&line).context("malformed request")?))
}

pub fn write_response(mut s: &UnixStream, r: &Response) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(r)?;
    line.push(b'\n');
    s.write_all(&line)?;
    Ok(())
}
