//! Property tests of the changelog codec: every record round-trips, and every prefix of an
//! encoded file decodes to exactly its whole records, then reports the cut (never garbage).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use georep::changelog::codec::{self, Tail};
use georep::changelog::record::{EntryDetail, EntryName, Op, Origin, Record};
use georep::types::{Gfid, VolumeId};
use proptest::prelude::*;

fn gfid() -> impl Strategy<Value = Gfid> {
    any::<[u8; 16]>().prop_map(Gfid)
}

fn name() -> impl Strategy<Value = OsString> {
    proptest::collection::vec(any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0), 1..255)
        .prop_map(OsString::from_vec)
}

fn entry_name() -> impl Strategy<Value = EntryName> {
    (gfid(), name()).prop_map(|(pgfid, name)| EntryName { pgfid, name })
}

/// Where a change comes from: a user, a receiver that does not say from where, or one that
/// does.
fn origin() -> impl Strategy<Value = Origin> {
    prop_oneof![
        Just(Origin::User),
        Just(Origin::Received(VolumeId::NIL)),
        any::<[u8; 16]>().prop_filter("not nil", |v| *v != [0; 16]).prop_map(|v| Origin::Received(VolumeId(v))),
    ]
}

fn record() -> impl Strategy<Value = Record> {
    let entry_ops = prop_oneof![
        Just(Op::Create),
        Just(Op::Mknod),
        Just(Op::Mkdir),
        Just(Op::Symlink),
        Just(Op::Link),
        Just(Op::Rename),
        Just(Op::Unlink),
        Just(Op::Rmdir)
    ];
    let other_ops = prop_oneof![
        Just(Op::Write),
        Just(Op::Truncate),
        Just(Op::Open),
        Just(Op::Fallocate),
        Just(Op::CopyFileRange),
        Just(Op::Setattr),
        Just(Op::Setxattr),
        Just(Op::Removexattr)
    ];
    let entry = (
        any::<u64>(),
        entry_ops,
        gfid(),
        any::<(u32, u32, u32, u64)>(),
        entry_name(),
        proptest::option::of(entry_name()),
        proptest::option::of(proptest::collection::vec(1u8..=255, 1..4096).prop_map(OsString::from_vec)),
        (0u8..2, origin()),
    )
        .prop_map(|(seq, op, gfid, (mode, uid, gid, rdev), entry, new_entry, target, (flags, origin))| Record {
            seq,
            op,
            gfid,
            entry: Some(EntryDetail { mode, uid, gid, rdev, entry, new_entry, target }),
            xattr: None,
            // The exchange flag belongs to RENAME only.
            flags: if op == Op::Rename { flags } else { 0 } | origin.flags(),
            from: origin.volume(),
        });
    let other = (any::<u64>(), other_ops, gfid(), proptest::option::of(name()), origin()).prop_map(
        |(seq, op, gfid, xattr, origin)| Record {
            seq,
            op,
            gfid,
            entry: None,
            xattr,
            flags: origin.flags(),
            from: origin.volume(),
        },
    );
    prop_oneof![entry, other]
}

proptest! {
    #[test]
    fn records_round_trip(recs in proptest::collection::vec(record(), 0..40)) {
        let mut buf = Vec::new();
        for r in &recs {
            codec::encode_record(r, &mut buf);
        }
        let mut out = Vec::new();
        let tail = codec::decode_records(&buf, |r| out.push(r));
        prop_assert_eq!(tail, Tail::Clean);
        prop_assert_eq!(out, recs);
    }

    #[test]
    fn every_prefix_decodes_to_whole_records_or_reports_truncation(recs in proptest::collection::vec(record(), 1..12), cut_seed in any::<usize>()) {
        let mut buf = Vec::new();
        let mut ends = Vec::new();
        for r in &recs {
            codec::encode_record(r, &mut buf);
            ends.push(buf.len());
        }
        let cut = cut_seed % (buf.len() + 1);
        let mut out = Vec::new();
        let tail = codec::decode_records(&buf[..cut], |r| out.push(r));
        let whole = ends.iter().filter(|&&e| e <= cut).count();
        prop_assert_eq!(&out[..], &recs[..whole]);
        let last_end = if whole == 0 { 0 } else { ends[whole - 1] };
        if cut == last_end {
            prop_assert_eq!(tail, Tail::Clean);
        } else {
            prop_assert_eq!(tail, Tail::Truncated { offset: last_end });
        }
    }

    #[test]
    fn flipped_bytes_never_yield_a_wrong_record(recs in proptest::collection::vec(record(), 1..8), pos_seed in any::<usize>(), bit in 0u8..8) {
        let mut buf = Vec::new();
        for r in &recs {
            codec::encode_record(r, &mut buf);
        }
        let pos = pos_seed % buf.len();
        buf[pos] ^= 1 << bit;
        let mut out = Vec::new();
        let tail = codec::decode_records(&buf, |r| out.push(r));
        // Every record decoded is one of the originals, in order; the damage is reported.
        prop_assert_eq!(&out[..], &recs[..out.len()]);
        prop_assert_ne!(tail, Tail::Clean);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = codec::decode_records(&bytes, |_| {});
        let _ = codec::Header::decode(&bytes);
    }
}

#[test]
fn header_round_trip_and_rejections() {
    let h = codec::Header { volume: georep::types::VolumeId([9; 16]), start_ms: 123, first_seq: 77 };
    let b = h.encode();
    assert_eq!(codec::Header::decode(&b).unwrap(), h);
    let mut bad = b;
    bad[0] = b'X';
    assert_eq!(codec::Header::decode(&bad), Err(codec::DecodeError::BadMagic));
    let mut bad = b;
    bad[8] = 9;
    assert_eq!(codec::Header::decode(&bad), Err(codec::DecodeError::Version(9)));
    let mut bad = b;
    bad[40] ^= 1;
    assert_eq!(codec::Header::decode(&bad), Err(codec::DecodeError::HeaderChecksum));
    assert_eq!(codec::Header::decode(&b[..20]), Err(codec::DecodeError::HeaderTruncated));
}

/// Found by the fuzzer: unknown field-flag bits were ignored, so the record did not re-encode
/// to its bytes. They are corruption now.
#[test]
fn unknown_flag_bits_are_corruption() {
    let mut body = vec![b'D', 13, 0xfb, 0];
    body.extend_from_slice(&[0u8; 8 + 16]);
    let mut framed = (body.len() as u32).to_le_bytes().to_vec();
    framed.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    framed.extend_from_slice(&body);
    assert_eq!(codec::decode_records(&framed, |_| panic!("accepted")), Tail::Corrupt { offset: 0 });
    // The same record with clean flags decodes.
    let mut ok = body.clone();
    ok[2] = 0;
    let mut framed = (ok.len() as u32).to_le_bytes().to_vec();
    framed.extend_from_slice(&crc32fast::hash(&ok).to_le_bytes());
    framed.extend_from_slice(&ok);
    let mut n = 0;
    assert_eq!(codec::decode_records(&framed, |_| n += 1), Tail::Clean);
    assert_eq!(n, 1);
}
