//! The control socket between `georepd` and its clients (the CLI, `mount.georep`, the
//! receiver): one JSON request line, one JSON response line, over a Unix socket in the run
//! directory. The socket is open to every local user (0666); `georepd` knows each caller by
//! its peer credentials and serves users other than root only the mountbroker's requests
//! (`AuxMount`, `Mount`, `Umount`) and `Ping`.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::unixmsg;

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
    /// `pool list`, `peer status`: the cluster's nodes.
    Nodes,
    /// From a worker, before it moves its stime on: record it in the store if the term
    /// `token` of the volume's election still holds (`election::commit_stime`).
    Stime {
        volume: String,
        session: String,
        token: u64,
        stime_ms: u64,
    },
    /// For `mount -t georep VOL`: the volume's local brick.
    ResolveVolume {
        name: String,
    },
    /// For a receiver: mount `volume` with `aux-gfid-mount`, detached at once; the answer
    /// carries a descriptor of the mount's root (SCM_RIGHTS), the only way into it.
    AuxMount {
        volume: String,
        /// The primary volume whose changes the receiver applies (UUID), and its name
        /// (`volume@node`): what the volume accepts or refuses (`daemon::roles`).
        #[serde(default)]
        primary: String,
        #[serde(default)]
        primary_name: String,
    },
    /// For a receiver at a failback: what `volume` changed and never shipped to the volume
    /// (UUID) `toward` (`daemon::roles::tail`).
    Tail {
        volume: String,
        toward: String,
        /// What `toward` had applied of `volume`'s changes (ms, this node's clock; 0: not
        /// known): the tail starts after it if that is later than the session's stime.
        #[serde(default)]
        after_ms: u64,
        /// Copy what the tail changed aside first (`failback keep-conflicts`).
        #[serde(default)]
        keep: bool,
    },
    /// For a receiver at the end of a failback: `volume` is a primary again
    /// (`daemon::roles::restore`).
    Restore {
        volume: String,
        from: String,
    },
    /// `georep system mount <LABEL> <ARG>...`: a mountbroker mount left in place; the answer is
    /// its cookie (`<mount-root>/mb_hive/mntXXXXXX`).
    Mount {
        label: String,
        args: Vec<String>,
    },
    /// `georep system umount <COOKIE> [lazy]`.
    Umount {
        path: String,
        lazy: bool,
    },
    /// For a receiver answering a probe: the volumes its user may receive for.
    Inventory,
    /// `georep destination add|list|test|re-establish|remove`.
    Destination(super::destinations::DestinationCmd),
    /// The mountbroker's set-up on this node (`gluster-mountbroker status`).
    MountbrokerStatus,
    /// `georep webhook add|list|del|test`.
    Webhook(super::webhooks::WebhookCmd),
    /// `georep system execute gsec_create` / `georep sshkey generate`.
    GsecCreate,
    Ping,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Response {
    /// Success, with text for the user (possibly empty).
    Ok(String),
    /// Failure: one line for the user, and its kind (`refusal`).
    Err(super::refusal::Refusal),
    Status(Vec<StatusRow>),
    Volumes(Vec<VolumeInfo>),
    Config(Vec<(String, String)>),
    /// One config value, printed alone (even when empty).
    Value(String),
    Brick {
        path: PathBuf,
        volume_id: String,
        started: bool,
    },
    /// The aux mount's root comes with it as a descriptor.
    Mount,
    /// As `Mount`, with the other nodes of the volume's cluster that can serve it, in brick
    /// order (what the receiver tells the worker: `Msg::Welcome`).
    Mounted {
        nodes: Vec<String>,
    },
    Tail(super::roles::Tail),
    /// Every option of a session, described (`config --describe`).
    Options(Vec<crate::session::config::OptionInfo>),
    Webhooks(Vec<super::webhooks::Webhook>),
    Inventory(Vec<crate::proto::RemoteVolume>),
    Mountbroker(crate::mountbroker::Status),
    Destinations(Vec<super::destinations::DestinationView>),
    /// A destination's test, stage by stage; the command fails unless it passed.
    DestinationTest(super::destinations::TestReport),
    /// The changes a session lists as failed (`failures`).
    Failures(Vec<crate::sync::failures::FailedChange>),
    /// A report printed whole on stdout; the command fails if `differences` is not 0.
    Report {
        text: String,
        differences: u64,
    },
    Nodes(Vec<super::nodes::NodeView>),
}

/// A volume as `volume info` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
    call_with_fd(dirs, req).map(|(r, _)| r)
}

/// Like `call`, and returns the descriptor the answer carries, if any.
pub fn call_with_fd(dirs: &Dirs, req: &Request) -> anyhow::Result<(Response, Option<OwnedFd>)> {
    let sock = dirs.socket();
    let s = UnixStream::connect(&sock)
        .with_context(|| format!("cannot reach georepd at {} (is it running?)", sock.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    unixmsg::send(&s, req, None)?;
    match unixmsg::recv(&s).context("georepd did not answer")? {
        Some(answer) => Ok(answer),
        None => anyhow::bail!("georepd closed the connection without an answer"),
    }
}

/// Reads one request from a client (bounded: 1 MiB).
pub fn read_request(s: &UnixStream) -> anyhow::Result<Option<Request>> {
    Ok(unixmsg::recv(s)?.map(|(r, _)| r))
}

pub fn write_response(s: &UnixStream, r: &Response, fd: Option<BorrowedFd<'_>>) -> anyhow::Result<()> {
    unixmsg::send(s, r, fd)
}
