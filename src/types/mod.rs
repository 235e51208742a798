//! Identifiers and names shared by every stage: GFIDs, timestamps, xattr names, brick layout.
//!
//! No I/O happens here. Everything that crosses a module boundary as an id is a newtype.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The 16-byte identity of an inode in a brick, kept in `trusted.gfid`, stable across renames.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Gfid(pub [u8; 16]);

impl Gfid {
    /// The root directory's GFID, `00000000-0000-0000-0000-000000000001`, as in GlusterFS.
    pub const ROOT: Gfid = Gfid([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    /// The all-zero GFID, never given to an inode.
    pub const NULL: Gfid = Gfid([0; 16]);

    /// A fresh random GFID (UUID v4).
    pub fn generate() -> Gfid {
        Gfid(*uuid::Uuid::new_v4().as_bytes())
    }

    pub fn from_slice(b: &[u8]) -> Option<Gfid> {
        <[u8; 16]>::try_from(b).ok().map(Gfid)
    }

    pub fn is_null(&self) -> bool {
        *self == Gfid::NULL
    }
}

impl fmt::Display for Gfid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&uuid::Uuid::from_bytes(self.0).hyphenated(), f)
    }
}

impl fmt::Debug for Gfid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gfid({self})")
    }
}

/// Error for a string that is not a canonical GFID.
#[derive(Debug, thiserror::Error)]
#[error("invalid gfid {0:?}: expected 8-4-4-4-12 hex digits")]
pub struct ParseGfidError(pub String);

impl FromStr for Gfid {
    type Err = ParseGfidError;
    /// Accepts only the canonical 36-character hyphenated form.
    fn from_str(s: &str) -> Result<Gfid, ParseGfidError> {
        if s.len() != 36 {
            return Err(ParseGfidError(s.to_string()));
        }
        uuid::Uuid::try_parse(s).map(|u| Gfid(*u.as_bytes())).map_err(|_| ParseGfidError(s.to_string()))
    }
}

/// Milliseconds since the Unix epoch: the unit of changelog and history timestamps.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct EpochMs(pub u64);

impl EpochMs {
    pub fn now() -> EpochMs {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        EpochMs(d.as_millis() as u64)
    }
}

/// xattr holding an inode's GFID on the brick (16 raw bytes).
pub const XATTR_GFID: &str = "trusted.gfid";

/// Prefix of every xattr georep keeps for itself; such names are hidden from and refused to
/// users of the mount.
pub const XATTR_PRIVATE_PREFIX: &str = "trusted.georep.";

/// The name of the xtime mark of volume `vol`: `trusted.georep.<VOL_UUID>.xtime`.
pub fn xtime_xattr(vol: &VolumeId) -> String {
    format!("{XATTR_PRIVATE_PREFIX}{vol}.xtime")
}

/// A volume's UUID (for a standalone brick, the brick's own id).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct VolumeId(pub [u8; 16]);

impl VolumeId {
    /// No volume (all zeros).
    pub const NIL: VolumeId = VolumeId([0; 16]);
}

impl Default for VolumeId {
    fn default() -> VolumeId {
        VolumeId::NIL
    }
}

impl fmt::Display for VolumeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&uuid::Uuid::from_bytes(self.0).hyphenated(), f)
    }
}

impl FromStr for VolumeId {
    type Err = ParseGfidError;
    fn from_str(s: &str) -> Result<VolumeId, ParseGfidError> {
        Gfid::from_str(s).map(|g| VolumeId(g.0))
    }
}

/// The name of the brick's private directory, invisible through the mount.
pub const PRIVATE_DIR: &str = ".georep";

/// Where things live inside a brick. Paths only; nothing here touches the disk.
#[derive(Clone, Debug)]
pub struct BrickLayout {
    pub root: PathBuf,
}

impl BrickLayout {
    pub fn new(root: impl AsRef<Path>) -> BrickLayout {
        BrickLayout { root: root.as_ref().to_path_buf() }
    }
    pub fn private(&self) -> PathBuf {
        self.root.join(PRIVATE_DIR)
    }
    /// `brick.id`: format version and volume id, written once at brick initialisation.
    pub fn id_file(&self) -> PathBuf {
        self.private().join("brick.id")
    }
    pub fn changelog_dir(&self) -> PathBuf {
        self.private().join("changelogs")
    }
    pub fn gfid_index(&self) -> PathBuf {
        self.private().join("gfid.idx")
    }
    /// xtime marks (see `fs::xtime`).
    /// The volume's role as a secondary (`fs::role`): written by georepd, read by the brick
    /// server.
    pub fn role_file(&self) -> PathBuf {
        self.private().join("role")
    }
    /// How far this volume applied each primary's changes (`fs::role::note_applied`).
    pub fn applied_file(&self) -> PathBuf {
        self.private().join("applied")
    }
    /// The fencing tokens seen (`fs::role::note_fence`).
    pub fn fences_file(&self) -> PathBuf {
        self.private().join("fences")
    }
    pub fn xtime_file(&self) -> PathBuf {
        self.private().join("xtime.log")
    }
    pub fn consumers_dir(&self) -> PathBuf {
        self.private().join("consumers")
    }
    /// The lock file held (flock) by the mount daemon that owns the brick.
    pub fn lock_file(&self) -> PathBuf {
        self.private().join("lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gfid_text_round_trip() {
        let g = Gfid::generate();
        assert_eq!(g.to_string().parse::<Gfid>().unwrap(), g);
        assert_eq!(Gfid::ROOT.to_string(), "00000000-0000-0000-0000-000000000001");
        assert!("0000000000000000000000000000000001".parse::<Gfid>().is_err());
        assert!("zz000000-0000-0000-0000-000000000001".parse::<Gfid>().is_err());
    }
}
