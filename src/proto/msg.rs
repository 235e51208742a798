//! The messages.

use std::ffi::OsString;

use crate::types::{Gfid, VolumeId};

/// 4 added the primary volume to `Hello`, and the `Origin`, `TailRequest`/`Tail` and
/// `Restore`/`Restored` messages; 5 the fencing token to `Hello`; 6 the secondary volume's
/// nodes to `Welcome`.
///
/// In every version a `Hello` begins with the version (u16): a receiver reads that first and
/// decodes the rest only for a version it speaks, so that it refuses any other by name
/// (`Hello` of that version, the rest empty) rather than failing on a layout it cannot know.
pub const PROTOCOL_VERSION: u16 = 6;
/// The oldest version a receiver of this one still serves.
pub const MIN_PROTOCOL_VERSION: u16 = 4;

/// A namespace operation, applied by GFID on the secondary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryOp {
    /// A file, directory, special file or symlink (with its target).
    Create {
        gfid: Gfid,
        pgfid: Gfid,
        name: OsString,
        mode: u32,
        uid: u32,
        gid: u32,
        rdev: u64,
        target: Option<OsString>,
        /// A small regular file's content and metadata, so that one request on the secondary
        /// makes it whole (its data and meta then need no messages of their own).
        inline: Option<Box<Inline>>,
    },
    Link {
        gfid: Gfid,
        pgfid: Gfid,
        name: OsString,
    },
    /// With `exchange`, the two names swap atomically (`RENAME_EXCHANGE`).
    Rename {
        gfid: Gfid,
        from_pgfid: Gfid,
        from_name: OsString,
        to_pgfid: Gfid,
        to_name: OsString,
        exchange: bool,
    },
    /// Unlink (or rmdir, for a directory) `name` if it still names `gfid`.
    Remove {
        gfid: Gfid,
        pgfid: Gfid,
        name: OsString,
        dir: bool,
    },
}

/// Lines a `Tail` carries at most (the counts are whole).
pub const MAX_TAIL_LINES: usize = 1000;

/// Files up to this size may go by a rolling delta (`SignatureRequest`, `Patch`): both ends
/// hold one whole in memory for it.
pub const ROLLING_MAX: u64 = 64 << 20;

/// A data stream's receiver works on the volume of the session's first receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Join {
    /// The first receiver's pid: receivers before the brick server entered its mount through
    /// `/proc/<pid>/cwd`; kept on the wire for them, unused since.
    pub pid: u32,
    pub volume: VolumeId,
}

/// A volume a receiver could apply changes to, as a `Probe` is answered.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct RemoteVolume {
    pub name: String,
    pub started: bool,
    /// It holds nothing yet (a session to it needs no `force`).
    #[serde(default)]
    pub empty: bool,
    pub total_bytes: u64,
    pub avail_bytes: u64,
}

/// Which block checksums of a file the worker asks for: blocks of `1 << block_log2` bytes
/// from `offset` on, covering `len` bytes (or to the end of the file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SumsAsk {
    pub gfid: Gfid,
    pub block_log2: u8,
    pub offset: u64,
    pub len: u64,
}

/// A secondary file's block checksums (of the blocks asked for); `size` is the whole file's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSums {
    pub gfid: Gfid,
    pub size: u64,
    pub sums: Vec<u128>,
}

/// What makes a new small file whole: its content and its metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inline {
    pub content: Vec<u8>,
    pub meta: MetaOp,
}

/// The xattrs an inode must have on the secondary: exactly these, in the namespaces georep
/// replicates (`user.`, `trusted.` but georep's own, `security.`, `system.posix_acl_*`).
pub type XattrSet = Vec<(OsString, Vec<u8>)>;

/// Metadata of an inode, applied by GFID after entries and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaOp {
    pub gfid: Gfid,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Nanoseconds since the epoch.
    pub atime_ns: i64,
    pub mtime_ns: i64,
    /// `None`: leave xattrs alone (`sync-xattrs` off).
    pub xattrs: Option<XattrSet>,
}

/// One entry of a directory as `verify` compares it (`fs::listing`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEntry {
    pub name: OsString,
    /// `Gfid::NULL` if it has none.
    pub gfid: Gfid,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub target: Option<OsString>,
    /// The replicated xattrs, sorted by name.
    pub xattrs: XattrSet,
    /// XXH3-128 of a regular file's content (`verify --checksum`).
    pub hash: Option<u128>,
}

/// A directory's entries from a position on (`cookie`: 0 from the start, else where the
/// last listing stopped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirListing {
    pub gfid: Gfid,
    /// `None`: no such directory.
    pub entries: Option<Vec<ListEntry>>,
    /// Where to go on from (0: the directory is listed to its end).
    pub next: u64,
}

/// A change the receiver could not apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub gfid: Gfid,
    pub errno: i32,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// Worker -> receiver, first: who is speaking, and to which secondary volume; with
    /// `join`, a data stream of a session whose receiver (that process, on that volume)
    /// already holds the volume's mount (`sync-jobs`).
    Hello {
        version: u16,
        secondary_volume: String,
        join: Option<Join>,
        /// The primary volume of the session (its id, and its name as `volume@node`): what
        /// the secondary accepts or refuses (after a failover, its old primary).
        primary: VolumeId,
        primary_name: String,
        /// The fencing token of the worker's term as the Active of its replica set (0: no
        /// election, one node): the receiver keeps the highest it has seen of each primary
        /// volume, durably, and refuses a lower one (`receiver::fence`). From version 5.
        token: u64,
    },
    /// Worker -> receiver, first, instead of `Hello`: who are you, and what could you apply
    /// changes to? Answered with `Inventory` (or `Error`), then the connection ends
    /// (`georep destination test`).
    Probe,
    /// Receiver -> worker: its protocol version and software, and the volumes the user it
    /// runs as may receive for, with their space.
    Inventory {
        version: u16,
        software: String,
        volumes: Vec<RemoteVolume>,
    },
    /// Receiver -> worker: accepted; the secondary volume, and what `create` checks of it.
    Welcome {
        version: u16,
        volume: VolumeId,
        /// The volume holds nothing (but what georep keeps for itself).
        empty: bool,
        total_bytes: u64,
        avail_bytes: u64,
        /// The receiver's process id: what a data stream of the same session joins.
        pid: u32,
        /// The other nodes of the secondary's cluster that can serve the volume (the one
        /// answering left out), by their names in that cluster, which the primary must reach
        /// (version 6 on; empty before): where a worker goes when this node fails.
        nodes: Vec<String>,
    },
    /// Worker -> receiver: the changes that follow on this connection were first made on
    /// `volume` (until the next `Origin`; before any, on the session's primary volume). The
    /// secondary records them so, and no session sends them back there.
    Origin {
        volume: VolumeId,
    },
    /// Worker -> receiver, after a batch: everything the primary recorded before `stime_ms`
    /// (the primary's clock) is applied here and durable. Not answered; recorded with the
    /// volume (a failover's promotion point).
    Synced {
        stime_ms: u64,
    },
    /// Worker -> receiver, at a failback (the worker's volume was promoted in place of the
    /// receiver's): what did the receiver's volume record and never ship to the worker's
    /// before it failed, after `applied_ms` (what the worker's volume had applied of it, by
    /// the receiver's clock; 0: not known)? Answered with `Tail`.
    TailRequest {
        applied_ms: u64,
        /// Keep what the tail changed as conflict copies (outside the volume) before it is
        /// discarded.
        keep: bool,
    },
    /// Receiver -> worker: the inodes the receiver's volume changed after its last sync to
    /// the worker's volume (`since_ms`, its session's stime), the directories whose names
    /// changed, and one line per change for the operator (at most `MAX_TAIL_LINES`).
    Tail {
        since_ms: u64,
        inodes: Vec<Gfid>,
        dirs: Vec<Gfid>,
        lines: Vec<String>,
    },
    /// Verify -> receiver: these directories' entries, each from its cookie on (0: from the
    /// start), with content hashes if `checksum`. Answered with `Listing`.
    ListRequest {
        dirs: Vec<(Gfid, u64)>,
        checksum: bool,
    },
    /// Receiver -> verify: the directories asked for, in order, as many as fit one answer
    /// (the rest are asked again; a directory may come in parts, `next`).
    Listing {
        dirs: Vec<DirListing>,
    },
    /// Worker side -> receiver, at the end of a failback: the receiver's volume is the primary
    /// again (writable; its session to the worker's volume resumes from now). Answered with
    /// `Restored`.
    Restore,
    Restored {
        message: String,
    },
    /// Either way: a fatal error; the connection ends.
    Error {
        message: String,
    },
    Entries {
        batch: u64,
        ops: Vec<EntryOp>,
    },
    /// A regular file's content, whole in chunks or (delta transfer) the blocks that differ;
    /// the file is made `size` bytes long first.
    Data {
        batch: u64,
        gfid: Gfid,
        size: u64,
        offset: u64,
        bytes: Vec<u8>,
    },
    Meta {
        batch: u64,
        ops: Vec<MetaOp>,
    },
    /// The directory `pgfid` holds exactly `keep` on the primary: remove anything else (the
    /// Hybrid crawl's reverse pass, which propagates deletes that no changelog holds).
    Prune {
        batch: u64,
        pgfid: Gfid,
        keep: Vec<OsString>,
    },
    /// Worker -> receiver: block checksums of these files' ranges (delta transfer: whole
    /// files in coarse blocks first, then the differing coarse blocks in fine ones). Answered
    /// at once with `Sums`.
    SumsRequest {
        batch: u64,
        files: Vec<SumsAsk>,
    },
    /// Receiver -> worker: per file asked for, in order, its size and the XXH3-128 of each
    /// block; `size` is `u64::MAX` when the secondary has no such regular file.
    Sums {
        batch: u64,
        files: Vec<FileSums>,
    },
    /// Worker -> receiver: the rsync signature of a file (rolling checksums and strong hashes
    /// of blocks of `block_size` bytes), for a delta that finds data wherever it moved (an
    /// insertion shifts all that follows it). Answered at once with `Signature`.
    SignatureRequest {
        batch: u64,
        gfid: Gfid,
        block_size: u32,
    },
    /// Receiver -> worker: the file's size (`u64::MAX`: no such regular file here) and its
    /// signature (librsync's format, as `fast_rsync` makes it).
    Signature {
        batch: u64,
        gfid: Gfid,
        size: u64,
        signature: Vec<u8>,
    },
    /// Worker -> receiver: the file becomes what `delta` (librsync's format) makes of its
    /// present content: `size` bytes whose XXH3-128 is `hash`, or nothing changes and the file
    /// is reported failed.
    Patch {
        batch: u64,
        gfid: Gfid,
        size: u64,
        hash: u128,
        delta: Vec<u8>,
    },
    /// Worker -> receiver: make everything of `batch` durable and report.
    Commit {
        batch: u64,
    },
    /// Receiver -> worker: `batch` is durable, except these failures.
    Committed {
        batch: u64,
        failures: Vec<Failure>,
    },
}
