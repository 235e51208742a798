//! Property tests of the wire protocol: every message round-trips, compressed or not; no input
//! makes the decoder panic or allocate beyond the frame.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use georep::proto::{self, EntryOp, Failure, FileSums, Inline, MetaOp, Msg};
use georep::types::{Gfid, VolumeId};
use proptest::prelude::*;

fn gfid() -> impl Strategy<Value = Gfid> {
    any::<[u8; 16]>().prop_map(Gfid)
}
fn name() -> impl Strategy<Value = OsString> {
    proptest::collection::vec(any::<u8>(), 0..64).prop_map(OsString::from_vec)
}

fn entry_op() -> impl Strategy<Value = EntryOp> {
    prop_oneof![
        (
            gfid(),
            gfid(),
            name(),
            any::<(u32, u32, u32, u64)>(),
            proptest::option::of(name()),
            proptest::option::of((proptest::collection::vec(any::<u8>(), 0..256), meta_op()))
        )
            .prop_map(|(gfid, pgfid, name, (mode, uid, gid, rdev), target, inline)| EntryOp::Create {
                gfid,
                pgfid,
                name,
                mode,
                uid,
                gid,
                rdev,
                target,
                inline: inline.map(|(content, meta)| Box::new(Inline { content, meta })),
            }),
        (gfid(), gfid(), name()).prop_map(|(gfid, pgfid, name)| EntryOp::Link { gfid, pgfid, name }),
        (gfid(), gfid(), name(), gfid(), name(), any::<bool>()).prop_map(
            |(gfid, from_pgfid, from_name, to_pgfid, to_name, exchange)| EntryOp::Rename {
                gfid,
                from_pgfid,
                from_name,
                to_pgfid,
                to_name,
                exchange
            }
        ),
        (gfid(), gfid(), name(), any::<bool>()).prop_map(|(gfid, pgfid, name, dir)| EntryOp::Remove {
            gfid,
            pgfid,
            name,
            dir
        }),
    ]
}

fn meta_op() -> impl Strategy<Value = MetaOp> {
    (
        gfid(),
        any::<(u32, u32, u32, i64, i64)>(),
        proptest::option::of(proptest::collection::vec((name(), proptest::collection::vec(any::<u8>(), 0..64)), 0..4)),
    )
        .prop_map(|(gfid, (mode, uid, gid, atime_ns, mtime_ns), xattrs)| MetaOp {
            gfid,
            mode,
            uid,
            gid,
            atime_ns,
            mtime_ns,
            xattrs,
        })
}

fn msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        (
            proto::MIN_PROTOCOL_VERSION..=proto::PROTOCOL_VERSION,
            "[a-z0-9-]{0,20}",
            proptest::option::of((any::<u32>(), any::<[u8; 16]>())),
            any::<[u8; 16]>(),
            "[a-z0-9@-]{0,20}",
            any::<u64>()
        )
            .prop_map(|(version, secondary_volume, join, primary, primary_name, token)| Msg::Hello {
                version,
                secondary_volume,
                join: join.map(|(pid, v)| georep::proto::Join { pid, volume: VolumeId(v) }),
                primary: VolumeId(primary),
                primary_name,
                // Version 4 has no token: it reads as none.
                token: if version >= 5 { token } else { 0 },
            }),
        any::<[u8; 16]>().prop_map(|v| Msg::Origin { volume: VolumeId(v) }),
        (any::<u64>(), any::<bool>()).prop_map(|(applied_ms, keep)| Msg::TailRequest { applied_ms, keep }),
        any::<u64>().prop_map(|stime_ms| Msg::Synced { stime_ms }),
        (
            any::<u64>(),
            proptest::collection::vec(gfid(), 0..10),
            proptest::collection::vec(gfid(), 0..10),
            proptest::collection::vec(".{0,30}", 0..5)
        )
            .prop_map(|(since_ms, inodes, dirs, lines)| Msg::Tail { since_ms, inodes, dirs, lines }),
        Just(Msg::Restore),
        Just(Msg::Probe),
        (
            any::<u16>(),
            ".{0,20}",
            prop::collection::vec((".{0,12}", any::<bool>(), any::<bool>(), any::<u64>(), any::<u64>()), 0..4)
        )
            .prop_map(|(version, software, v)| Msg::Inventory {
                version,
                software,
                volumes: v
                    .into_iter()
                    .map(|(name, started, empty, total_bytes, avail_bytes)| georep::proto::RemoteVolume {
                        name,
                        started,
                        empty,
                        total_bytes,
                        avail_bytes
                    })
                    .collect(),
            }),
        ".{0,40}".prop_map(|message| Msg::Restored { message }),
        (
            any::<u16>(),
            any::<[u8; 16]>(),
            any::<bool>(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            proptest::collection::vec(".{0,20}", 0..4)
        )
            .prop_map(|(version, v, empty, total_bytes, avail_bytes, pid, nodes)| Msg::Welcome {
                version,
                volume: VolumeId(v),
                empty,
                total_bytes,
                avail_bytes,
                pid,
                // Only from version 6 on.
                nodes: if version >= 6 { nodes } else { Vec::new() },
            }),
        ".{0,40}".prop_map(|message| Msg::Error { message }),
        (any::<u64>(), proptest::collection::vec(entry_op(), 0..20))
            .prop_map(|(batch, ops)| Msg::Entries { batch, ops }),
        (any::<u64>(), gfid(), any::<u64>(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..3000))
            .prop_map(|(batch, gfid, size, offset, bytes)| Msg::Data { batch, gfid, size, offset, bytes }),
        (any::<u64>(), proptest::collection::vec(meta_op(), 0..10)).prop_map(|(batch, ops)| Msg::Meta { batch, ops }),
        any::<u64>().prop_map(|batch| Msg::Commit { batch }),
        (any::<u64>(), gfid(), any::<u32>()).prop_map(|(batch, gfid, block_size)| Msg::SignatureRequest {
            batch,
            gfid,
            block_size
        }),
        (any::<u64>(), gfid(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(batch, gfid, size, signature)| Msg::Signature { batch, gfid, size, signature }),
        (any::<u64>(), gfid(), any::<u64>(), any::<u128>(), proptest::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(batch, gfid, size, hash, delta)| Msg::Patch { batch, gfid, size, hash, delta }),
        (any::<u64>(), proptest::collection::vec((gfid(), 12u8..=40, any::<u64>(), any::<u64>()), 0..8)).prop_map(
            |(batch, files)| Msg::SumsRequest {
                batch,
                files: files
                    .into_iter()
                    .map(|(gfid, block_log2, offset, len)| georep::proto::SumsAsk { gfid, block_log2, offset, len })
                    .collect()
            }
        ),
        (
            any::<u64>(),
            proptest::collection::vec((gfid(), any::<u64>(), proptest::collection::vec(any::<u128>(), 0..8)), 0..4)
        )
            .prop_map(|(batch, files)| Msg::Sums {
                batch,
                files: files.into_iter().map(|(gfid, size, sums)| FileSums { gfid, size, sums }).collect()
            }),
        (any::<u64>(), gfid(), proptest::collection::vec(name(), 0..10)).prop_map(|(batch, pgfid, keep)| Msg::Prune {
            batch,
            pgfid,
            keep
        }),
        (any::<u64>(), proptest::collection::vec((gfid(), any::<i32>(), ".{0,30}"), 0..5)).prop_map(|(batch, fs)| {
            Msg::Committed {
                batch,
                failures: fs.into_iter().map(|(gfid, errno, message)| Failure { gfid, errno, message }).collect(),
            }
        }),
    ]
}

proptest! {
    #[test]
    fn messages_round_trip(m in msg(), level in prop_oneof![Just(0), Just(3)]) {
        let frame = proto::encode_frame(&m, level);
        let n = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
        prop_assert_eq!(n, frame.len() - 4);
        prop_assert_eq!(proto::decode_frame(&frame[4..]).unwrap(), m.clone());
        let mut cursor = std::io::Cursor::new(frame);
        prop_assert_eq!(proto::read_frame(&mut cursor).unwrap(), Some(m));
        prop_assert_eq!(proto::read_frame(&mut cursor).unwrap(), None);
    }

    #[test]
    fn a_hello_of_another_version_is_read_no_further_than_its_number(
        version in any::<u16>().prop_filter("another version", |v| !(proto::MIN_PROTOCOL_VERSION..=proto::PROTOCOL_VERSION).contains(v)),
        rest in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let mut body = vec![1u8, 0];
        body.extend_from_slice(&version.to_le_bytes());
        body.extend_from_slice(&rest);
        match proto::decode_frame(&body) {
            Ok(Msg::Hello { version: v, secondary_volume, .. }) => prop_assert!(v == version && secondary_volume.is_empty()),
            other => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn truncated_or_garbage_frames_are_errors(m in msg(), cut_seed in any::<usize>(), junk in proptest::collection::vec(any::<u8>(), 0..200)) {
        let frame = proto::encode_frame(&m, 0);
        let body = &frame[4..];
        let cut = cut_seed % body.len();
        prop_assert!(proto::decode_frame(&body[..cut]).is_err());
        let _ = proto::decode_frame(&junk);
    }
}

#[test]
fn huge_counts_and_lengths_are_refused_without_allocating() {
    // An Entries frame claiming 2^32-1 ops in 20 bytes.
    let mut body = vec![4u8, 0];
    body.extend_from_slice(&7u64.to_le_bytes());
    body.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(proto::decode_frame(&body).is_err());
    // A frame length over the limit.
    let mut r = std::io::Cursor::new((proto::MAX_FRAME as u32 + 1).to_le_bytes().to_vec());
    assert!(proto::read_frame(&mut r).is_err());
}
