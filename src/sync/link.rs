//! The worker's end of a connection to a receiver: frames over any byte stream. Here the
//! stream is a local child process (`georep receiver`) on stdin/stdout; SSH carries the same
//! bytes later.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::proto::{self, Failure, Join, Msg, PROTOCOL_VERSION};
use crate::types::VolumeId;

/// How a worker reaches the receiver of a secondary host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Transport {
    /// A node on this machine: `georep receiver` run here against that node's daemon (its
    /// run directory), which mounts the secondary volume for it.
    Local { exe: PathBuf, run_dir: PathBuf },
    /// SSH to the secondary's sshd, running `command` there (the receiver; on a set-up
    /// secondary the session key's forced command runs it whatever is asked).
    Ssh { target: super::ssh::SshTarget, command: String },
}

/// The two ends of a session, as the worker greets the receiver: the secondary volume it
/// wants, and the primary volume it speaks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ends {
    pub secondary_volume: String,
    pub primary: VolumeId,
    /// `volume@node`, for the secondary's messages.
    pub primary_name: String,
    /// Only ask the receiver what it is and holds (`Link::probe`), instead of greeting it.
    pub probe: bool,
    /// The worker's fencing token (`Msg::Hello`); 0: none.
    pub token: u64,
}

/// What the receiver said of its volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    pub volume: VolumeId,
    pub empty: bool,
    pub total_bytes: u64,
    pub avail_bytes: u64,
    /// The receiver's process, which data streams join.
    pub pid: u32,
    /// The secondary's other nodes that can serve its volume (`Msg::Welcome`).
    pub nodes: Vec<String>,
}

/// What a receiver answered a probe (`Link::probe`).
#[derive(Clone, Debug)]
pub struct Inventory {
    pub version: u16,
    pub software: String,
    pub volumes: Vec<crate::proto::RemoteVolume>,
}

pub struct Link {
    child: Option<Child>,
    /// The SSH bridge's socket, shut down for writing at close.
    sock: Option<std::os::unix::net::UnixStream>,
    /// What the remote receiver says on stderr, over SSH.
    remote: Option<super::ssh::Remote>,
    w: BufWriter<Box<dyn Write + Send>>,
    r: BufReader<Box<dyn Read + Send>>,
    level: i32,
    next_batch: u64,
    /// Bytes sent on the wire (after compression).
    pub wire_bytes: u64,
    /// How many of them `take_wire_bytes` counted already.
    wire_taken: u64,
    pub welcome: Welcome,
    /// Entry messages (with inline file content) are compressed while that pays; when it
    /// does not, they go plain and compression is tried again every 16th message.
    entries_plain: u32,
    /// `secondary-timeout`, when the transport can wait no longer than that for an answer.
    answer_timeout: Option<std::time::Duration>,
    /// More streams to the same secondary mount (`sync-jobs`), each with its own receiver:
    /// the data of a batch is shared out among them and this one.
    pub jobs: Vec<Link>,
    /// Failures the data streams reported for the batch: part of this link's next commit.
    pub(crate) failures_elsewhere: Vec<Failure>,
    /// `bandwidth-limit`, shared with the data streams.
    limit: Option<std::sync::Arc<RateLimit>>,
    /// Where the changes sent next were first made, as the receiver was last told.
    origin: VolumeId,
    /// A probe's answer.
    inventory: Option<Inventory>,
}

/// A rate limit on bytes sent, shared by all the streams of a worker: a token bucket that
/// holds at most a quarter second's worth, so that a burst is short and the average is the
/// limit.
pub struct RateLimit {
    bytes_per_sec: u64,
    state: parking_lot::Mutex<(f64, std::time::Instant)>,
}

impl RateLimit {
    pub fn new(bytes_per_sec: u64) -> RateLimit {
        RateLimit { bytes_per_sec, state: parking_lot::Mutex::new((0.0, std::time::Instant::now())) }
    }

    /// Accounts for `n` bytes sent, sleeping as long as the limit asks.
    pub fn take(&self, n: u64) {
        let rate = self.bytes_per_sec as f64;
        let wait = {
            let mut st = self.state.lock();
            let now = std::time::Instant::now();
            let (tokens, at) = *st;
            let tokens = (tokens + now.duration_since(at).as_secs_f64() * rate).min(rate / 4.0) - n as f64;
            *st = (tokens, now);
            if tokens < 0.0 { -tokens / rate } else { 0.0 }
        };
        if wait > 0.0 {
            std::thread::sleep(std::time::Duration::from_secs_f64(wait));
        }
    }
}

impl Link {
    /// Starts `georep receiver --mount <mount>` (this very binary) and greets it; with
    /// `join`, as a data stream of that receiver.
    pub fn spawn_local(exe: &Path, mount: &Path, ends: &Ends, level: i32, join: Option<Join>) -> anyhow::Result<Link> {
        let mut c = Command::new(exe);
        c.arg("receiver").arg("--mount").arg(mount);
        Link::spawn(c, ends, level, join)
    }

    /// Limits what this link and its data streams send, together, to `bytes_per_sec`.
    pub fn limit_bandwidth(&mut self, bytes_per_sec: u64) {
        let l = std::sync::Arc::new(RateLimit::new(bytes_per_sec));
        self.limit = Some(l.clone());
        for j in &mut self.jobs {
            j.limit = Some(l.clone());
        }
    }

    /// Opens up to `n` data streams joined to this link's receiver (`sync-jobs`) with `open`;
    /// one that cannot be opened is logged, and the session goes on with fewer.
    pub fn open_jobs(&mut self, n: usize, open: impl Fn(Join) -> anyhow::Result<Link>) {
        let join = Join { pid: self.welcome.pid, volume: self.welcome.volume };
        for _ in 0..n {
            match open(join) {
                Ok(l) => self.jobs.push(l),
                Err(e) => {
                    log::warn!(
                        "sync-jobs: a data stream could not be opened ({e:#}); going on with {}",
                        self.jobs.len() + 1
                    );
                    break;
                }
            }
        }
    }

    /// Asks the receiver at the end of `t` what it is and which volumes it could receive for
    /// (`georep destination test`). The session key's authentication and the receiver's
    /// start are what it tests; nothing is mounted.
    pub fn probe(t: &Transport) -> anyhow::Result<Inventory> {
        let ends = Ends { probe: true, ..Ends::default() };
        let mut link = Link::connect(t, &ends, 0)?;
        let inventory = link.inventory.take().context("the receiver did not answer the probe");
        let _ = link.close();
        inventory
    }

    /// Records the SSH host key of the node at the end of `t` if it is new (a probe, nothing
    /// mounted): a secondary cluster's other nodes at `create`.
    pub fn learn_host(t: &Transport) -> anyhow::Result<()> {
        let ends = Ends { probe: true, ..Ends::default() };
        Link::connect_learning(t, &ends, 0, true, None)?.close()
    }

    /// Reaches the receiver of `ends.secondary_volume` over `t` and greets it.
    pub fn connect(t: &Transport, ends: &Ends, level: i32) -> anyhow::Result<Link> {
        Link::connect_learning(t, ends, level, false, None)
    }

    /// A data stream joined to the receiver `join` (`sync-jobs`): a connection of its own.
    pub fn connect_join(t: &Transport, ends: &Ends, level: i32, join: Join) -> anyhow::Result<Link> {
        Link::connect_learning(t, ends, level, false, Some(join))
    }

    /// As `connect`; with `learn`, an unknown SSH host key is recorded (session create). A
    /// changed one is always refused.
    pub fn connect_learning(
        t: &Transport,
        ends: &Ends,
        level: i32,
        learn: bool,
        join: Option<Join>,
    ) -> anyhow::Result<Link> {
        match t {
            Transport::Local { exe, run_dir } => {
                let mut c = Command::new(exe);
                c.arg("receiver").env("GEOREP_RUN_DIR", run_dir);
                Link::spawn(c, ends, level, join)
            }
            Transport::Ssh { target, command } => {
                let (sock, remote) = super::ssh::connect(target, command, learn)?;
                sock.set_read_timeout(target.answer_timeout)?;
                sock.set_write_timeout(target.answer_timeout)?;
                let r: Box<dyn Read + Send> = Box::new(sock.try_clone()?);
                let w: Box<dyn Write + Send> = Box::new(sock.try_clone()?);
                let mut link = Link::new(None, Some(sock), r, w, level);
                link.answer_timeout = target.answer_timeout;
                link.remote = Some(remote);
                link.handshake(ends, join)?;
                Ok(link)
            }
        }
    }

    fn spawn(mut cmd: Command, ends: &Ends, level: i32, join: Option<Join>) -> anyhow::Result<Link> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("start the receiver {:?}", cmd.get_program()))?;
        let w: Box<dyn Write + Send> = Box::new(child.stdin.take().unwrap());
        let r: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let mut link = Link::new(Some(child), None, r, w, level);
        link.handshake(ends, join)?;
        Ok(link)
    }

    fn new(
        child: Option<Child>,
        sock: Option<std::os::unix::net::UnixStream>,
        r: Box<dyn Read + Send>,
        w: Box<dyn Write + Send>,
        level: i32,
    ) -> Link {
        let welcome = Welcome {
            volume: VolumeId([0; 16]),
            empty: false,
            total_bytes: 0,
            avail_bytes: 0,
            pid: 0,
            nodes: Vec::new(),
        };
        Link {
            child,
            sock,
            remote: None,
            w: BufWriter::with_capacity(1 << 20, w),
            r: BufReader::with_capacity(1 << 16, r),
            level,
            next_batch: 1,
            wire_bytes: 0,
            wire_taken: 0,
            welcome,
            entries_plain: 0,
            answer_timeout: None,
            jobs: Vec::new(),
            failures_elsewhere: Vec::new(),
            limit: None,
            origin: VolumeId::NIL,
            inventory: None,
        }
    }

    /// The receiver's next message; an answer that does not come within the transport's
    /// `secondary-timeout` ends the connection.
    /// A connection that ends is said in words: what went away is the receiver, its sshd or
    /// the network between.
    fn answer(&mut self) -> anyhow::Result<Msg> {
        match proto::read_frame(&mut self.r) {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(self.closed()),
            Err(e) => Err(match self.answer_timeout {
                Some(t) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    anyhow::anyhow!("the secondary did not answer within {} s (secondary-timeout)", t.as_secs())
                }
                _ => e.into(),
            }),
        }
    }

    /// The connection ended under us, in words.
    fn closed(&self) -> anyhow::Error {
        match self.last_words() {
            Some(words) => anyhow::anyhow!("the secondary closed the connection: {words}"),
            None => anyhow::anyhow!(
                "the secondary closed the connection (its receiver or sshd stopped, or the network between went down)"
            ),
        }
    }

    /// A write that failed, in words: the connection ended, or the secondary took nothing for
    /// `secondary-timeout` (the transport's write timeout).
    fn unsent(&self, e: std::io::Error) -> anyhow::Error {
        use std::io::ErrorKind::*;
        match (e.kind(), self.answer_timeout) {
            (BrokenPipe | ConnectionReset | NotConnected, _) => self.closed(),
            (WouldBlock | TimedOut, Some(t)) => {
                anyhow::anyhow!("the secondary took nothing sent for {} s (secondary-timeout)", t.as_secs())
            }
            _ => anyhow::Error::from(e).context("send to the receiver"),
        }
    }

    /// Sends what is buffered now.
    fn flush(&mut self) -> anyhow::Result<()> {
        self.w.flush().map_err(|e| self.unsent(e))
    }

    /// What the remote receiver said on stderr and how it ended, if the transport knows.
    fn last_words(&self) -> Option<String> {
        self.remote.as_ref().and_then(|r| r.last_words())
    }

    fn handshake(&mut self, ends: &Ends, join: Option<Join>) -> anyhow::Result<()> {
        self.origin = ends.primary;
        let probe = ends.probe;
        let hello = if probe {
            Msg::Probe
        } else {
            Msg::Hello {
                version: PROTOCOL_VERSION,
                secondary_volume: ends.secondary_volume.clone(),
                join,
                primary: ends.primary,
                primary_name: ends.primary_name.clone(),
                token: ends.token,
            }
        };
        let mut magic = [0u8; 8];
        let greeted: anyhow::Result<()> = (|| {
            self.w.write_all(proto::FRAME_MAGIC)?;
            self.send(&hello)?;
            self.w.flush()?;
            self.r.read_exact(&mut magic).context("the receiver closed the connection")?;
            Ok(())
        })();
        // A receiver that never started (not found, not allowed, refused by its forced command)
        // is told by what the remote said, not by the broken stream.
        if let Err(e) = greeted {
            return Err(match self.last_words() {
                Some(words) => anyhow::anyhow!("the receiver did not start: {words}"),
                None => e,
            });
        }
        if &magic != proto::FRAME_MAGIC {
            bail!("the peer is not a georep receiver");
        }
        match self.answer()? {
            Msg::Welcome { volume, empty, total_bytes, avail_bytes, pid, nodes, .. } if !probe => {
                self.welcome = Welcome { volume, empty, total_bytes, avail_bytes, pid, nodes };
                Ok(())
            }
            Msg::Inventory { version, software, volumes } if probe => {
                self.inventory = Some(Inventory { version, software, volumes });
                Ok(())
            }
            // A refusal of the version names the receiver's side; this adds the worker's.
            Msg::Error { message } if message.contains("protocol") => {
                bail!("{message} (this worker: georep {}, wire protocol {PROTOCOL_VERSION})", crate::VERSION)
            }
            Msg::Error { message } => bail!("{message}"),
            other => bail!("receiver: unexpected {other:?}"),
        }
    }

    /// Where the changes sent next were first made, as the receiver knows it.
    pub fn origin(&self) -> VolumeId {
        self.origin
    }

    /// The changes sent next were first made on `volume` (an `Origin` message if that is news
    /// to the receiver).
    pub fn set_origin(&mut self, volume: VolumeId) -> anyhow::Result<()> {
        if volume != self.origin {
            self.send(&Msg::Origin { volume })?;
            self.origin = volume;
        }
        Ok(())
    }

    /// Sends `m` now (not left in the buffer until the next message): something the receiver
    /// should know at once, such as how far it is synced.
    pub fn tell(&mut self, m: &Msg) -> anyhow::Result<()> {
        self.send(m)?;
        self.flush()?;
        Ok(())
    }

    /// Sends `m` and returns the receiver's answer (an `Error` answer is an error).
    pub fn ask(&mut self, m: &Msg) -> anyhow::Result<Msg> {
        self.send(m)?;
        self.flush()?;
        match self.answer()? {
            Msg::Error { message } => bail!("{message}"),
            a => Ok(a),
        }
    }

    /// The bytes sent on the wire (after compression) by this link and its data streams since
    /// the last call.
    pub fn take_wire_bytes(&mut self) -> u64 {
        let mine = self.wire_bytes - std::mem::replace(&mut self.wire_taken, self.wire_bytes);
        mine + self.jobs.iter_mut().map(Link::take_wire_bytes).sum::<u64>()
    }

    pub fn send(&mut self, m: &Msg) -> anyhow::Result<()> {
        self.send_at(m, self.level).map(drop)
    }

    /// Sends at a given zstd level; returns the frame's size.
    fn send_at(&mut self, m: &Msg, level: i32) -> anyhow::Result<usize> {
        let n = proto::write_frame(&mut self.w, m, level).map_err(|e| self.unsent(e))?;
        self.wire_bytes += n as u64;
        if let Some(limit) = &self.limit {
            limit.take(n as u64);
        }
        Ok(n)
    }

    /// Sends a data chunk, compressed while compression pays: `*compress` turns false (for the
    /// rest of the file) once a chunk does not shrink by a tenth, so incompressible files cost
    /// no compression time after their first chunk.
    pub fn send_data(&mut self, m: &Msg, raw_len: usize, compress: &mut bool) -> anyhow::Result<()> {
        let level = if *compress { self.level } else { 0 };
        let n = self.send_at(m, level)?;
        if level > 0 && raw_len >= 4096 && n * 10 > raw_len * 9 {
            *compress = false;
        }
        Ok(())
    }

    /// Sends an `Entries` message of about `raw_len` bytes.
    pub fn send_entries(&mut self, m: &Msg, raw_len: usize) -> anyhow::Result<()> {
        if self.entries_plain > 0 {
            self.entries_plain -= 1;
            return self.send_at(m, 0).map(drop);
        }
        let mut compress = true;
        self.send_data(m, raw_len, &mut compress)?;
        if !compress {
            self.entries_plain = 15;
        }
        Ok(())
    }

    pub fn batch_id(&mut self) -> u64 {
        let b = self.next_batch;
        self.next_batch += 1;
        b
    }

    /// The receiver's block checksums of these files (delta transfer).
    pub fn sums(&mut self, batch: u64, files: Vec<proto::SumsAsk>) -> anyhow::Result<Vec<proto::FileSums>> {
        let asked: Vec<_> = files.iter().map(|f| f.gfid).collect();
        self.send(&Msg::SumsRequest { batch, files })?;
        self.flush()?;
        match self.answer()? {
            Msg::Sums { batch: b, files } if b == batch && files.iter().map(|f| f.gfid).eq(asked) => Ok(files),
            Msg::Error { message } => bail!("receiver: {message}"),
            other => bail!("receiver: unexpected answer to a sums request: {other:?}"),
        }
    }

    /// The receiver's rsync signature of a file: its size (`u64::MAX` if it has none it can
    /// sign) and the signature.
    pub fn signature(
        &mut self,
        batch: u64,
        gfid: crate::types::Gfid,
        block_size: u32,
    ) -> anyhow::Result<(u64, Vec<u8>)> {
        self.send(&Msg::SignatureRequest { batch, gfid, block_size })?;
        self.flush()?;
        match self.answer()? {
            Msg::Signature { batch: b, gfid: g, size, signature } if b == batch && g == gfid => Ok((size, signature)),
            Msg::Error { message } => bail!("receiver: {message}"),
            other => bail!("receiver: unexpected answer to a signature request: {other:?}"),
        }
    }

    /// Asks the receiver to make batch `batch` durable; returns what it could not apply.
    pub fn commit(&mut self, batch: u64) -> anyhow::Result<Vec<Failure>> {
        self.send(&Msg::Commit { batch })?;
        self.flush()?;
        match self.answer()? {
            Msg::Committed { batch: b, mut failures } if b == batch => {
                failures.append(&mut self.failures_elsewhere);
                Ok(failures)
            }
            Msg::Error { message } => bail!("receiver: {message}"),
            other => bail!("receiver: unexpected {other:?}"),
        }
    }

    /// Ends the connection (and its data streams') and waits for the receiver.
    pub fn close(mut self) -> anyhow::Result<()> {
        for j in std::mem::take(&mut self.jobs) {
            j.close()?;
        }
        self.w.flush()?;
        let Link { child, w, sock, .. } = self;
        drop(w);
        if let Some(s) = sock {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        if let Some(mut c) = child {
            let st = c.wait()?;
            if !st.success() {
                bail!("the receiver exited with {st}");
            }
        }
        Ok(())
    }
}
