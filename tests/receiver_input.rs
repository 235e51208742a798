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
                token: 0,
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
                "the worker speaks wire protocol {version}, this receiver (georep {}) speaks {} to {}: upgrade the {}'s node",
                georep::VERSION,
                georep::proto::MIN_PROTOCOL_VERSION,
                georep::proto::PROTOCOL_VERSION,
                if version > georep::proto::PROTOCOL_VERSION { "receiver" } else { "worker" }
            )
        );
    }
    assert_eq!(describe_tree(&s.mnt), before);
}

/// Fencing: the volume keeps the highest token each primary's workers gave, durably; a worker
/// of an older term is refused at its `Hello`, and one that connected first is refused at its
/// next batch once a newer term's worker has spoken. A worker without a token (0) may read but
/// not change a volume whose primary has terms.
#[test]
fn a_worker_of_an_older_term_is_refused() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let s = Mount::new("aux-gfid-mount,rollover-time=600");
    let primary = georep::types::VolumeId([7; 16]);
    let hello = |token: u64| Msg::Hello {
        version: georep::proto::PROTOCOL_VERSION,
        secondary_volume: String::new(),
        join: None,
        primary,
        primary_name: "pvol@n1".into(),
        token,
    };
    let spawn = || {
        Command::new(georep_bin())
            .arg("receiver")
            .arg("--mount")
            .arg(&s.mnt)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let read_answer = |out: &mut std::process::ChildStdout| -> Msg {
        let mut len = [0u8; 4];
        out.read_exact(&mut len).unwrap();
        let mut frame = vec![0u8; u32::from_le_bytes(len) as usize];
        out.read_exact(&mut frame).unwrap();
        georep::proto::decode_frame(&frame).unwrap()
    };
    let greet = |token: u64| {
        let mut rx = spawn();
        let mut input = rx.stdin.take().unwrap();
        let mut out = rx.stdout.take().unwrap();
        input.write_all(georep::proto::FRAME_MAGIC).unwrap();
        input.write_all(&georep::proto::encode_frame(&hello(token), 0)).unwrap();
        input.flush().unwrap();
        let mut magic = [0u8; 8];
        out.read_exact(&mut magic).unwrap();
        let answer = read_answer(&mut out);
        (rx, input, out, answer)
    };
    let refused = |m: &Msg| match m {
        Msg::Error { message } => message.clone(),
        other => panic!("want a refusal, got {other:?}"),
    };
    // Term 5 speaks first and keeps its connection.
    let (mut old, mut old_in, mut old_out, a) = greet(5);
    assert!(matches!(a, Msg::Welcome { .. }), "{a:?}");
    // Term 7 records its token: term 5's receiver sees the newer token and ends (its worker
    // may be stopped: nobody waits for it).
    let (mut new, new_in, _new_out, b) = greet(7);
    let status = old.wait().unwrap();
    assert!(!status.success(), "the older term's receiver ended: {status:?}");
    let mut err = String::new();
    old.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("fenced: the primary volume") && err.contains("term 7 > 5"), "{err}");
    assert!(matches!(b, Msg::Welcome { .. }), "{b:?}");
    // What the older one sends now goes nowhere.
    let _ = old_in.write_all(&georep::proto::encode_frame(&Msg::Commit { batch: 1 }, 0));
    let mut rest = Vec::new();
    let _ = old_out.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no answer to the older term");
    drop(new_in);
    new.wait().unwrap();
    // Term 5 again, and term 6: refused at once, for good (the token is durable).
    for t in [5, 6, 0] {
        let (mut rx, mut input, mut out, m) = greet(t);
        if t == 0 {
            // No token: welcomed (it may read), refused at its first change.
            assert!(matches!(m, Msg::Welcome { .. }), "{m:?}");
            let ops = vec![georep::proto::EntryOp::Create {
                gfid: georep::types::Gfid([9; 16]),
                pgfid: georep::types::Gfid::ROOT,
                name: "nope".into(),
                mode: libc::S_IFREG | 0o644,
                uid: 0,
                gid: 0,
                rdev: 0,
                target: None,
                inline: None,
            }];
            input.write_all(&georep::proto::encode_frame(&Msg::Entries { batch: 1, ops }, 0)).unwrap();
            drop(input);
            let mut rest = Vec::new();
            let _ = out.read_to_end(&mut rest);
            assert!(!rx.wait().unwrap().success());
            let mut err = String::new();
            rx.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            assert!(err.contains("fenced: the worker's term (0) is over"), "{err}");
            assert!(!s.mnt.join("nope").exists(), "nothing changed");
            continue;
        }
        let why = refused(&m);
        assert!(
            why.starts_with(&format!("fenced: the worker's term ({t}) is over")) && why.contains("(term 7)"),
            "{why}"
        );
        drop(input);
        assert!(!rx.wait().unwrap().success());
    }
    // Kept in the brick (durable), one line per primary.
    let fences = std::fs::read_to_string(s.b(".georep/fences")).unwrap();
    assert_eq!(fences.trim(), format!("{primary} 7"));
}

/// A receiver that its worker gave up on (stopped past `secondary-timeout`, here SIGSTOPped
/// with a batch waiting in its input) never applies that stale batch after the receiver that
/// replaced it: the newer one's first change ends it (`fs::claims`). One that registered
/// before the newer one took the volume, and had changed nothing, is refused at its first
/// change. A receiver that only reads displaces nobody.
#[test]
fn a_replaced_receiver_never_applies_after_its_successor() {
    let s = Mount::new("aux-gfid-mount,rollover-time=600");
    let spawn = || Link::spawn_local(Path::new(georep_bin()), &s.mnt, &Ends::default(), 0, None).unwrap();
    let create = |link: &mut Link, name: &str| {
        let batch = link.batch_id();
        link.send(&Msg::Entries { batch, ops: vec![new_file(Gfid::generate(), Gfid::ROOT, name)] }).unwrap();
        batch
    };
    let signal = |pid: u32, sig: i32| {
        // SAFETY: kill(2) of a child receiver.
        assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
    };
    let mut old = spawn();
    let b = create(&mut old, "first");
    assert_eq!(old.commit(b).unwrap(), vec![]);
    let mut idle = spawn();
    let mut reader = spawn();
    signal(old.welcome.pid, libc::SIGSTOP);
    create(&mut old, "stale");
    old.tell(&Msg::Commit { batch: 99 }).unwrap();
    let mut new = spawn();
    let b = create(&mut new, "new");
    assert_eq!(new.commit(b).unwrap(), vec![]);
    signal(old.welcome.pid, libc::SIGCONT);
    let err = old.close().unwrap_err().to_string();
    assert!(err.contains("signal: 9"), "the replaced receiver was killed: {err}");
    // The one that registered before `new` took the volume, and changed nothing yet.
    let b = create(&mut idle, "late");
    assert!(idle.commit(b).is_err(), "refused");
    let err = idle.close().unwrap_err().to_string();
    assert!(err.contains("exit status: 1"), "it ended by itself: {err}");
    // A reader that registered after `new`: reading displaces nobody.
    let listing = reader.ask(&Msg::ListRequest { dirs: vec![(Gfid::ROOT, 0)], checksum: false }).unwrap();
    assert!(matches!(listing, Msg::Listing { .. }), "{listing:?}");
    reader.close().unwrap();
    let b = create(&mut new, "after");
    assert_eq!(new.commit(b).unwrap(), vec![]);
    new.close().unwrap();
    let mut names: Vec<String> = fs::read_dir(&s.mnt).unwrap().map(|e| name(&e.unwrap().file_name())).collect();
    names.sort();
    assert_eq!(names, ["after", "first", "new"]);
}
