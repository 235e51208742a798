//! One JSON message per line over a Unix stream socket, optionally with a descriptor passed
//! along (SCM_RIGHTS): the framing of georepd's control socket and of the brick servers'.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use anyhow::Context;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The longest message read (a request or an answer line).
pub const MAX_LINE: u64 = 1 << 20;

/// Writes `msg` as one line, with `fd` attached to its first bytes.
pub fn send<T: Serialize>(s: &UnixStream, msg: &T, fd: Option<BorrowedFd<'_>>) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(msg)?;
    line.push(b'\n');
    let mut off = 0;
    if let Some(fd) = fd {
        let fds = [fd.as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        off = loop {
            match sendmsg::<()>(s.as_raw_fd(), &[std::io::IoSlice::new(&line)], &cmsg, MsgFlags::empty(), None) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => break r?,
            }
        };
    }
    let mut w = s;
    w.write_all(&line[off..])?;
    Ok(())
}

/// Reads one line and the descriptor sent with it, if any; `None` if the peer closed the
/// connection before saying anything.
pub fn recv<T: DeserializeOwned>(s: &UnixStream) -> anyhow::Result<Option<(T, Option<OwnedFd>)>> {
    // The first bytes are read with recvmsg so that a descriptor sent with them is received;
    // the rest of the line follows with plain reads.
    let mut buf = vec![0u8; 64 << 10];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    // A signal (a paused worker's SIGCONT, say) may interrupt the wait: then wait again.
    let (n, fd) = loop {
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = match recvmsg::<()>(s.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => r?,
        };
        let mut fd = None;
        for c in msg.cmsgs().context("unreadable control data")? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for f in fds {
                    // SAFETY: the kernel just gave us this descriptor; nobody else owns it.
                    let owned = unsafe { OwnedFd::from_raw_fd(f) };
                    fd.get_or_insert(owned);
                }
            }
        }
        break (msg.bytes, fd);
    };
    if n == 0 {
        return Ok(None);
    }
    let mut line = buf[..n].to_vec();
    if !line.ends_with(b"\n") {
        BufReader::new(s).take(MAX_LINE).read_until(b'\n', &mut line).context("the message was cut short")?;
    }
    Ok(Some((serde_json::from_slice(&line).context("malformed message")?, fd)))
}
