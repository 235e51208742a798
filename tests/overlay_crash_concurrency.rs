//! The overlay under stress: a daemon killed with SIGKILL mid-storm loses no acknowledged
//! change, a torn tail is cut at remount, and xtime marks are never older than the changelog;
//! parallel writers, renames and unlinks lose or duplicate no record.

mod common;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use georep::changelog::{ChangelogFile, Op, codec, codec::Tail, history};

#[test]
fn kill9_during_write_storm_loses_no_acknowledged_change() {
    let m = Mount::new("rollover-time=0.2,fsync-interval=0.1");
    fs::create_dir(m.p("storm")).unwrap();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|t| {
            let (acked, stop, dir) = (acked.clone(), stop.clone(), m.p("storm"));
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("w{t}-{i}");
                    let ok = fs::File::create(dir.join(&name)).and_then(|mut f| f.write_all(&[1u8; 4096])).is_ok();
                    if !ok {
                        break;
                    }
                    acked.lock().unwrap().push(name);
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    m.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 100, "the storm made only {} files", acked.len());

    // What was published before the kill, for the xtime check.
    let dir = m.layout().changelog_dir();
    let published = history::read_index(&dir.join("history.idx")).unwrap().entries;
    // A torn record at the end of the active file, as a crash in the middle of a write leaves.
    // The newest active file with a header (a kill during a rollover can leave a newer one
    // that has none yet, which recovery removes).
    let mut actives: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("current."))
        .filter(|p| fs::metadata(p).unwrap().len() >= codec::HEADER_LEN as u64)
        .collect();
    actives.sort();
    let active = actives.pop().expect("an active changelog after SIGKILL");
    // The records end where the space allocated ahead (zeros) begins.
    let bytes = fs::read(&active).unwrap();
    let first_seq = codec::Header::decode(&bytes).unwrap().first_seq;
    let good_len = match codec::decode_records(&bytes[codec::HEADER_LEN..], |_| {}) {
        Tail::Clean => bytes.len(),
        Tail::Truncated { offset } => codec::HEADER_LEN + offset,
        t => panic!("active changelog after SIGKILL: {t:?}"),
    } as u64;
    assert!(bytes[good_len as usize..].iter().all(|&b| b == 0));
    use std::os::unix::fs::FileExt;
    fs::OpenOptions::new()
        .write(true)
        .open(&active)
        .unwrap()
        .write_all_at(&[0x40, 0, 0, 0, 1, 2, 3, 4, b'E', 23], good_len)
        .unwrap();

    m.mount();
    assert!(!active.exists(), "recovery publishes the active file");
    let after = history::read_index(&dir.join("history.idx")).unwrap().entries;
    let recovered = &after[published.len()..];
    assert!(!recovered.is_empty());
    assert!(recovered[0].is_unclean(), "the first file after a crash is flagged unclean");
    let torn = recovered.iter().find(|e| e.first_seq == first_seq).expect("the torn file is published");
    let recovered_path = history::changelog_path(&dir, torn.end_ms);
    assert_eq!(fs::metadata(&recovered_path).unwrap().len(), good_len, "the torn tail is cut");
    for e in &after {
        let f = ChangelogFile::open(&history::changelog_path(&dir, e.end_ms)).unwrap();
        assert_eq!(f.for_each(|_| {}), Tail::Clean);
    }

    let recs = m.records();
    let seqs: Vec<u64> = recs.iter().map(|r| r.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "sequence numbers strictly increase");
    let created: HashSet<String> = recs
        .iter()
        .filter(|r| r.op == Op::Create)
        .map(|r| r.entry.as_ref().unwrap().entry.name.to_string_lossy().into_owned())
        .collect();
    let missing: Vec<_> = acked.iter().filter(|n| !created.contains(*n)).collect();
    assert!(missing.is_empty(), "acknowledged creates missing from the changelog: {missing:?}");
    for n in &acked {
        assert!(m.p(&format!("storm/{n}")).exists());
    }

    // xtime: every directory with an entry in a changelog published before the kill has a mark
    // at least as new as that changelog's start.
    let (marks, _, _) = georep::fs::xtime::load(&m.layout().xtime_file()).unwrap();
    let storm = m.gfid("storm");
    for e in &published {
        let f = ChangelogFile::open(&history::changelog_path(&dir, e.end_ms)).unwrap();
        let mut parents = HashSet::new();
        f.for_each(|r| {
            if let Some(d) = &r.entry {
                parents.insert(d.entry.pgfid);
            }
        });
        for p in parents {
            let mark = marks.get(&p).copied().unwrap_or(0);
            assert!(mark >= e.start_ms * 1000, "xtime of {p} ({mark} us) older than changelog start {} ms", e.start_ms);
        }
    }
    assert!(marks.get(&georep::types::Gfid::ROOT).copied().unwrap_or(0) >= marks[&storm], "ancestors are marked too");
}

#[test]
fn parallel_writers_renames_unlinks_lose_and_duplicate_nothing() {
    let m = Mount::new("rollover-time=0.05");
    let threads = 4;
    let per = 300;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let root = m.mnt.clone();
            std::thread::spawn(move || {
                let d = root.join(format!("t{t}"));
                fs::create_dir(&d).unwrap();
                for i in 0..per {
                    let a = d.join(format!("f{i}"));
                    fs::write(&a, b"data").unwrap();
                    let b = d.join(format!("g{i}"));
                    fs::rename(&a, &b).unwrap();
                    if i % 3 == 0 {
                        fs::remove_file(&b).unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let recs = m.records();
    let seqs: Vec<u64> = recs.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..recs.len() as u64).collect::<Vec<_>>(), "no sequence number lost or repeated");
    let count = |op| recs.iter().filter(|r| r.op == op).count();
    assert_eq!(count(Op::Mkdir), threads);
    assert_eq!(count(Op::Create), threads * per);
    assert_eq!(count(Op::Rename), threads * per);
    assert_eq!(count(Op::Unlink), threads * per.div_ceil(3));
    // Per file, in order: CREATE, RENAME, then UNLINK if any; and at least one DATA.
    let mut by_gfid: HashMap<_, Vec<Op>> = HashMap::new();
    for r in &recs {
        by_gfid.entry(r.gfid).or_default().push(r.op);
    }
    let mut files = 0;
    for ops in by_gfid.values() {
        if ops[0] != Op::Create {
            continue;
        }
        files += 1;
        let entries: Vec<Op> =
            ops.iter().copied().filter(|o| matches!(o, Op::Create | Op::Rename | Op::Unlink)).collect();
        assert!(entries == [Op::Create, Op::Rename] || entries == [Op::Create, Op::Rename, Op::Unlink], "{ops:?}");
        assert!(ops.contains(&Op::Write) || ops.contains(&Op::Open), "{ops:?}");
    }
    assert_eq!(files, threads * per);
}

/// A reader of the active changelog while its writer publishes file after file (each cut to
/// its records' end): the reader sees whole records and never faults (before, a mapping of the
/// active file met its cut tail with SIGBUS).
#[test]
fn reading_the_active_changelog_while_it_is_published_never_faults() {
    let m = Mount::new("rollover-time=0.05");
    let dir = m.layout().changelog_dir();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                fs::write(m.p(&format!("f{}", i % 500)), vec![b'x'; (i % 7000) as usize]).unwrap();
                i += 1;
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        let mut read = 0;
        while std::time::Instant::now() < deadline {
            for e in fs::read_dir(&dir).unwrap().flatten() {
                if e.file_name().to_string_lossy().starts_with("current.")
                    && let Ok(f) = ChangelogFile::open(&e.path())
                {
                    read += f.records().0.len();
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        assert!(read > 0, "the active changelog was read");
    });
}
