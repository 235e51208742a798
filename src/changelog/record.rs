//! The record model: what one change looks like, independent of its encoding.

use std::ffi::OsString;

use crate::types::{Gfid, VolumeId};

/// Operation codes. The numbers are GlusterFS's fop numbers (so that tools that know those read
/// ours), extended where GlusterFS records nothing (fallocate, copy_file_range, open-for-write).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(u8)]
pub enum Op {
    Mknod = 3,
    Mkdir = 4,
    Unlink = 5,
    Rmdir = 6,
    Symlink = 7,
    Rename = 8,
    Link = 9,
    Truncate = 10,
    Open = 11,
    Write = 13,
    Setxattr = 17,
    Removexattr = 19,
    Create = 23,
    Setattr = 38,
    Fallocate = 46,
    CopyFileRange = 58,
}

impl Op {
    pub fn from_u8(v: u8) -> Option<Op> {
        use Op::*;
        Some(match v {
            3 => Mknod,
            4 => Mkdir,
            5 => Unlink,
            6 => Rmdir,
            7 => Symlink,
            8 => Rename,
            9 => Link,
            10 => Truncate,
            11 => Open,
            13 => Write,
            17 => Setxattr,
            19 => Removexattr,
            23 => Create,
            38 => Setattr,
            46 => Fallocate,
            58 => CopyFileRange,
            _ => return None,
        })
    }

    /// Upper-case name as GlusterFS's changelog consumer prints it.
    pub fn name(self) -> &'static str {
        use Op::*;
        match self {
            Mknod => "MKNOD",
            Mkdir => "MKDIR",
            Unlink => "UNLINK",
            Rmdir => "RMDIR",
            Symlink => "SYMLINK",
            Rename => "RENAME",
            Link => "LINK",
            Truncate => "TRUNCATE",
            Open => "OPEN",
            Write => "WRITE",
            Setxattr => "SETXATTR",
            Removexattr => "REMOVEXATTR",
            Create => "CREATE",
            Setattr => "SETATTR",
            Fallocate => "FALLOCATE",
            CopyFileRange => "COPY_FILE_RANGE",
        }
    }

    pub fn kind(self) -> Kind {
        use Op::*;
        match self {
            Mknod | Mkdir | Unlink | Rmdir | Symlink | Rename | Link | Create => Kind::Entry,
            Truncate | Open | Write | Fallocate | CopyFileRange => Kind::Data,
            Setxattr | Removexattr | Setattr => Kind::Meta,
        }
    }
}

/// The three record families of a GlusterFS changelog.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Kind {
    Entry,
    Data,
    Meta,
}

impl Kind {
    pub fn letter(self) -> u8 {
        match self {
            Kind::Entry => b'E',
            Kind::Data => b'D',
            Kind::Meta => b'M',
        }
    }
}

/// A name inside a directory given by GFID: `<pgfid>/<name>`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct EntryName {
    pub pgfid: Gfid,
    pub name: OsString,
}

/// Operation-specific detail of an ENTRY record.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct EntryDetail {
    /// Full st_mode (type bits and permissions, after umask) for create, mkdir, mknod, symlink.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    /// The name created, linked, removed, or the rename's source.
    pub entry: EntryName,
    /// The rename's destination.
    pub new_entry: Option<EntryName>,
    /// The symlink's target, recorded at creation (GlusterFS re-reads it later and may lose it).
    pub target: Option<OsString>,
}

/// One change.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Record {
    /// Brick-wide sequence number, strictly increasing in recording order.
    pub seq: u64,
    pub op: Op,
    pub gfid: Gfid,
    /// Present exactly for ENTRY records.
    pub entry: Option<EntryDetail>,
    /// For SETXATTR / REMOVEXATTR: the attribute's name.
    pub xattr: Option<OsString>,
    /// `RECORD_EXCHANGE` on both RENAME records of a `RENAME_EXCHANGE`; `RECORD_RECEIVED`
    /// on a change a receiver applied (`Origin`), with `RECORD_FROM` when `from` is known.
    pub flags: u8,
    /// With `RECORD_FROM`: the volume where the change was first made (`VolumeId::NIL`
    /// otherwise).
    pub from: VolumeId,
}

/// The record is one half of an atomic exchange of two names (`renameat2(RENAME_EXCHANGE)`):
/// the two RENAME records that follow each other must be applied together.
pub const RECORD_EXCHANGE: u8 = 1;

/// The change came through a receiver's aux-gfid mount (it was replicated here from elsewhere),
/// not through a user's mount. Since changelog version 2.
pub const RECORD_RECEIVED: u8 = 2;

/// The record says which volume the change was first made on (`Record::from`); only with
/// `RECORD_RECEIVED`. Since changelog version 3: a version 2 record received from elsewhere
/// does not say from where.
pub const RECORD_FROM: u8 = 4;

/// Where a change comes from.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, Default)]
pub enum Origin {
    /// A user's mount: a change made on this site.
    #[default]
    User,
    /// A receiver's aux-gfid mount: a change replicated here, first made on that volume
    /// (`VolumeId::NIL`: not known, as from a worker older than changelog version 3).
    Received(VolumeId),
}

impl Origin {
    /// The record flag bits that say this origin.
    pub fn flags(self) -> u8 {
        match self {
            Origin::User => 0,
            Origin::Received(v) if v == VolumeId::NIL => RECORD_RECEIVED,
            Origin::Received(_) => RECORD_RECEIVED | RECORD_FROM,
        }
    }

    /// The volume a record says (`Record::from`).
    pub fn volume(self) -> VolumeId {
        match self {
            Origin::User => VolumeId::NIL,
            Origin::Received(v) => v,
        }
    }

    /// The volume where the change was first made, `here` being this volume; `None` if not
    /// known.
    pub fn first_made_on(self, here: VolumeId) -> Option<VolumeId> {
        match self {
            Origin::User => Some(here),
            Origin::Received(v) if v == VolumeId::NIL => None,
            Origin::Received(v) => Some(v),
        }
    }
}

impl Record {
    pub fn kind(&self) -> Kind {
        self.op.kind()
    }

    /// Where the change comes from.
    pub fn origin(&self) -> Origin {
        if self.flags & RECORD_RECEIVED != 0 { Origin::Received(self.from) } else { Origin::User }
    }
}
