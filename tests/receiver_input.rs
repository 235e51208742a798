//! Hostile input to a receiver: names with `/` or `..`, unknown GFIDs, data aimed at a
//! directory or beyond a file's size. Each is refused and reported; nothing is written outside
//! the volume, nothing changes inside it.

mod common;

use std::ffi::OsString;
use std::fs;
use std::path::Path;

use common::*;
use georep::proto::{EntryOp, Msg};
use georep::sync::link::{Ends, Link};
use georep::types::Gfid;

/// The create of an empty regular file owned by root.
fn new_file(gfid: Gfid, pgfid: Gfid, name: &str) -> EntryOp {
    EntryOp::Create {
        gfid,
        pgfid,
        name: OsString::from(name),
        mode: libc::S_IFREG | 0o644,
        uid: 0,
        gid: 0,
        rdev: 0,
        target: None,
        inline: None,
    }
}

#[test]
fn hostile_batches_are_refused_and_reported() {
    let s = Mount::new("aux-gfid-mount,rollover-time=600");
    fs::create_dir(s.p("dir")).unwrap();
    fs::write(s.p("file"), b"keep").unwrap();
    let (dir, file) = (s.gfid("dir"), s.gfid("file"));
    let before = describe_tree(&s.mnt);
    let mut link = Link::spawn_local(Path::new(georep_bin()), &s.mnt, &Ends::default(), 3, None).unwrap();
    let batch = link.batch_id();
    let create = |pgfid: Gfid, name: &str| new_file(Gfid::generate(), pgfid, name);
    let ops = vec![
        create(Gfid::ROOT, "../escape"),
        create(Gfid::ROOT, "a/b"),
        create(Gfid::ROOT, ".."),
        create(Gfid::generate(), "orphan"),
        create(Gfid::NULL, "null-parent"),
        EntryOp::Remove { gfid: dir, pgfid: Gfid::ROOT, name: "..".into(), dir: true },
        EntryOp::Link { gfid: file, pgfid: Gfid::ROOT, name: "x/../../escape".into() },
        EntryOp::Rename {
            gfid: file,
            from_pgfid: Gfid::ROOT,
            from_name: "file".into(),
            to_pgfid: Gfid::ROOT,
            to_name: "../escape".into(),
            exchange: false,
        },
    ];
    let n_ops = ops.len();
    link.send(&Msg::Entries { batch, ops }).unwrap();
    link.send(&Msg::Data { batch, gfid: dir, size: 4, offset: 0, bytes: b"evil".to_vec() }).unwrap();
    link.send(&Msg::Data { batch, gfid: file, size: 4, offset: 1 << 40, bytes: b"evil".to_vec() }).unwrap();
    link.send(&Msg::Data { batch, gfid: Gfid::generate(), size: 4, offset: 0, bytes: b"evil".to_vec() }).unwrap();
    // A patch whose result is not what it claims (garbage, then a valid delta with the wrong
    // hash), and one aimed at a directory: refused, the file as it was.
    let patch = |gfid: Gfid, hash: u128, delta: Vec<u8>| Msg::Patch { batch, gfid, size: 4, hash, delta };
    link.send(&patch(file, 0, b"garbage".to_vec())).unwrap();
    let (size, sig) = link.signature(batch, file, 1024).unwrap();
    assert_eq!(size, 4);
    let sig = fast_rsync::Signature::deserialize(sig).unwrap();
    let mut delta = Vec::new();
    fast_rsync::diff(&sig.index(), b"evil", &mut delta).unwrap();
    link.send(&patch(file, 7, delta.clone())).unwrap();
    link.send(&patch(dir, xxhash_rust::xxh3::xxh3_128(b"evil"), delta)).unwrap();
    assert_eq!(link.signature(batch, dir, 1024).unwrap().0, u64::MAX, "no signature of a directory");
    let failures = link.commit(batch).unwrap();
    assert_eq!(failures.len(), n_ops + 6, "{failures:#?}");
    link.close().unwrap();
    // Nothing outside the volume, nothing changed inside.
    let outside: Vec<_> = fs::read_dir(s.dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!outside.iter().any(|n| n.to_string_lossy().contains("escape")), "{outside:?}");
    assert!(!s.brick.parent().unwrap().join("escape").exists());
    assert_eq!(describe_tree(&s.mnt), before);
    assert_eq!(fs::read(s.p("file")).unwrap(), b"keep");
}

/// A Hybrid crawl sees a file under its final name; the changelogs that follow replay its
/// create under the old name (a second link to the same inode) and then the rename. rename(2)
/// between two links of one inode does nothing, so the receiver must drop the old name itself.
#[test]
fn replayed_create_then_rename_leaves_one_name() {
    let s = Mount::new("aux-gfid-mount,rollover-time=600");
    let mut link = Link::spawn_local(Path::new(georep_bin()), &s.mnt, &Ends::default(), 0, None).unwrap();
    let batch = link.batch_id();
    let f = Gfid::generate();
    let create = |name: &str| new_file(f, Gfid::ROOT, name);
    let ops = vec![
        create("started.txt"),
        create("start.txt"),
        EntryOp::Rename {
            gfid: f,
            from_pgfid: Gfid::ROOT,
            from_name: "start.txt".into(),
            to_pgfid: Gfid::ROOT,
            to_name: "started.txt".into(),
            exchange: false,
        },
    ];
    link.send(&Msg::Entries { batch, ops }).unwrap();
    assert_eq!(link.commit(batch).unwrap(), vec![]);
    link.close().unwrap();
    let names: Vec<String> = fs::read_dir(&s.mnt).unwrap().map(|e| name(&e.unwrap().file_name())).collect();
    assert_eq!(names, ["started.txt"]);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(s.p("started.txt")).unwrap().nlink(), 1);
}

/// A run of new small files is made in batches from several threads; one whose name is taken
/// (by another GFID) fails its batch, and the serial path settles every file of it.
#[test]
fn parallel_whole_file_creates_fall_back_on_conflicts() {
    let s = Mount::new("aux-gfid-mount,rollover-time=600");
    fs::write(s.p("f7"), b"old").unwrap();
    let mut link = Link::spawn_local(Path::new(georep_bin()), &s.mnt, &Ends::default(), 0, None).unwrap();
    let batch = link.batch_id();
    let ops: Vec<EntryOp> = (0..40)
        .map(|i| {
            let gfid = Gfid::generate();
            EntryOp::Create {
                gfid,
                pgfid: Gfid::ROOT,
                name: OsString::from(format!("f{i}")),
                mode: libc::S_IFREG | 0o640,
                uid: 1000,
                gid: 1000,
                rdev: 0,
                target: None,
                inline: Some(Box::new(georep::proto::Inline {
                    content: format!("content {i}").into_bytes(),
                    meta: georep::proto::MetaOp {
                        gfid,
                        mode: libc::S_IFREG | 0o640,
                        uid: 1000,
                        gid: 1000,
                        atime_ns: 1_000_000_000,
                        mtime_ns: 2_000_000_000,
                        xattrs: Some(vec![("user.i".into(), i.to_string().into_bytes())]),
                    },
                })),
            }
        })
        .collect();
    link.send(&Msg::Entries { batch, ops }).unwrap();
    assert_eq!(link.commit(batch).unwrap(), vec![]);
    link.close().unwrap();
    use std::os::unix::fs::MetadataExt;
    for i in 0..40 {
        // On the brick: the mount's own dentry of the old f7 is not what the receiver used.
        let p = s.b(&format!("f{i}"));
        assert_eq!(fs::read_to_string(&p).unwrap(), format!("content {i}"));
        let md = fs::metadata(&p).unwrap();
        assert_eq!((md.uid(), md.mode() & 0o7777, md.mtime()), (1000, 0o640, 2), "f{i}");
        assert_eq!(xattr::get(&p, "user.i").unwrap().unwrap(), i.to_string().into_bytes());
    }
}

/// A worker of another wire protocol version is refused in one line naming both sides'
/// versions, whatever its `Hello` holds after the version; the receiver changes nothing.
#[test]
fn a_worker_of_another_protocol_version_is_refused_by_name() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let s = Mount::new("aux-gfid-mount,rollover-time=600");
    let before = describe_tree(&s.mnt);
    for version in [georep::proto::PROTOCOL_VERSION + 1, 3, 900] {
        // The Hello of a future version: a layout this receiver cannot know after the number.
        let mut hello = georep::proto::encode_frame(
            &Msg::Hello {
                version,
                secondary_volume: String::new(),
                join: None,
                primary: georep::types::VolumeId::NIL,
                primary_name: String::new(),
            },
            0,
        );
        hello.truncate(4 + 2 + 2);
        hello.extend_from_slice(b"\xffsomething else entirely");
        let len = (hello.len() - 4) as u32;
        hello[..4].copy_from_slice(&len.to_le_bytes());
        let mut rx = Command::new(georep_bin())
            .arg("receiver")
            .arg("--mount")
            .arg(&s.mnt)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = rx.stdin.take().unwrap();
        input.write_all(georep::proto::FRAME_MAGIC).unwrap();
        input.write_all(&hello).unwrap();
        drop(input);
        let mut out = Vec::new();
        rx.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        let status = rx.wait().unwrap();
        assert!(!status.success());
        assert_eq!(&out[..8], georep::proto::FRAME_MAGIC);
        let refusal = georep::proto::decode_frame(&out[12..]).unwrap();
        let Msg::Error { message } = refusal else { panic!("{refusal:?}") };
        assert_eq!(
            message,
            format!(
                "the worker speaks wire protocol {version}, this receiver (georep {}) speaks {}: upgrade the {}'s node",
                georep::VERSION,
                georep::proto::PROTOCOL_VERSION,
                if version > georep::proto::PROTOCOL_VERSION { "receiver" } else { "worker" }
            )
        );
    }
    assert_eq!(describe_tree(&s.mnt), before);
}
