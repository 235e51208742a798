//! Where the changes a worker ships were first made, so that none travels back there (no
//! echo, in any topology): a record made through a user's mount was made on this volume; one
//! a receiver applied says the volume it was first made on (changelog `RECORD_FROM`). A
//! session skips the records first made on its secondary's volume, and labels what it sends
//! with `Origin` messages, so that the secondary records the first volume in turn.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::changelog::Record;
use crate::types::{Gfid, VolumeId};

/// The label of each inode's changes in a batch: the volume they were first made on. An
/// inode changed here and elsewhere in one batch is labelled here (its state is this site's).
#[derive(Clone, Debug)]
pub struct Labels {
    /// This volume.
    pub here: VolumeId,
    /// The secondary's volume: its changes are not sent back.
    pub target: VolumeId,
    of: HashMap<Gfid, VolumeId>,
    /// Records skipped as first made on the target.
    pub skipped: u64,
}

impl Labels {
    pub fn new(here: VolumeId, target: VolumeId) -> Labels {
        Labels { here, target, of: HashMap::new(), skipped: 0 }
    }

    /// Where `r` was first made, or `None` if that is the target (the record is skipped).
    /// `VolumeId::NIL` when a record received here does not say (an older changelog).
    pub fn admit(&mut self, r: &Record) -> Option<VolumeId> {
        let from = r.origin().first_made_on(self.here).unwrap_or(VolumeId::NIL);
        if from == self.target && from != VolumeId::NIL {
            self.skipped += 1;
            return None;
        }
        for g in [
            Some(r.gfid),
            r.entry.as_ref().map(|e| e.entry.pgfid),
            r.entry.as_ref().and_then(|e| e.new_entry.as_ref().map(|n| n.pgfid)),
        ]
        .into_iter()
        .flatten()
        {
            self.note(g, from);
        }
        Some(from)
    }

    fn note(&mut self, g: Gfid, from: VolumeId) {
        match self.of.entry(g) {
            Entry::Vacant(v) => {
                v.insert(from);
            }
            Entry::Occupied(mut o) if from == self.here => {
                o.insert(from);
            }
            Entry::Occupied(_) => {}
        }
    }

    /// The label of `g`'s data and metadata.
    pub fn of(&self, g: &Gfid) -> VolumeId {
        self.of.get(g).copied().unwrap_or(self.here)
    }

    /// Forgets the batch's labels (the counts stay).
    pub fn clear(&mut self) {
        self.of.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changelog::{Op, Origin};

    fn record(gfid: u8, op: Op, origin: Origin) -> Record {
        Record {
            seq: 0,
            op,
            gfid: Gfid([gfid; 16]),
            entry: None,
            xattr: None,
            flags: origin.flags(),
            from: origin.volume(),
        }
    }

    #[test]
    fn changes_from_the_target_stay_and_labels_prefer_here() {
        let (here, target, third) = (VolumeId([1; 16]), VolumeId([2; 16]), VolumeId([3; 16]));
        let mut l = Labels::new(here, target);
        // Made on the target: not sent back.
        assert_eq!(l.admit(&record(9, Op::Write, Origin::Received(target))), None);
        assert_eq!(l.skipped, 1);
        // Made here, or first elsewhere: sent, labelled so.
        assert_eq!(l.admit(&record(7, Op::Write, Origin::User)), Some(here));
        assert_eq!(l.admit(&record(8, Op::Write, Origin::Received(third))), Some(third));
        assert_eq!(l.of(&Gfid([8; 16])), third);
        // An inode changed here too is this volume's.
        l.admit(&record(8, Op::Setattr, Origin::User));
        assert_eq!(l.of(&Gfid([8; 16])), here);
        l.admit(&record(8, Op::Write, Origin::Received(third)));
        assert_eq!(l.of(&Gfid([8; 16])), here);
        // Not known where (an older changelog): sent, and said unknown.
        assert_eq!(l.admit(&record(6, Op::Write, Origin::Received(VolumeId::NIL))), Some(VolumeId::NIL));
    }
}
