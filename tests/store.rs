//! The store's contract (`daemon::store::Store`), one suite run against both backends: the
//! embedded store (redb) and etcd (a real etcd 3.4, Debian's, started by the test). Then what
//! only etcd does: several clients, one view; prefixes that keep clusters apart; an etcd that
//! goes away (an error within the deadline, never a hang) and comes back; georepd on it.

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::cluster::Node;
use common::etcd::Etcd;
use georep::daemon::store::{EtcdOptions, EtcdStore, LocalStore, Spec, Store};

/// What every backend must do.
fn contract(s: &dyn Store) {
    // get, put, overwrite.
    assert_eq!(s.get("volumes/a").unwrap(), None);
    s.put("volumes/a", b"1").unwrap();
    assert_eq!(s.get("volumes/a").unwrap().as_deref(), Some(&b"1"[..]));
    s.put("volumes/a", b"one").unwrap();
    assert_eq!(s.get("volumes/a").unwrap().as_deref(), Some(&b"one"[..]));
    // create: only when absent, and then the old value stays.
    assert!(s.create("volumes/b", b"2").unwrap());
    assert!(!s.create("volumes/b", b"two").unwrap());
    assert!(!s.create("volumes/a", b"x").unwrap());
    assert_eq!(s.get("volumes/b").unwrap().as_deref(), Some(&b"2"[..]));
    // Any bytes, empty ones too; keys in any script.
    let bytes: Vec<u8> = (0..=255).collect();
    s.put("blobs/bytes", &bytes).unwrap();
    s.put("blobs/empty", b"").unwrap();
    s.put("blobs/ünï/✓", b"u").unwrap();
    assert_eq!(s.get("blobs/bytes").unwrap(), Some(bytes));
    assert_eq!(s.get("blobs/empty").unwrap(), Some(Vec::new()));
    assert_eq!(s.get("blobs/ünï/✓").unwrap().as_deref(), Some(&b"u"[..]));
    // list: the keys under the prefix, in order, and no others ("volumes/" is not "volumesX").
    s.put("volumesX", b"not a volume").unwrap();
    s.put("volume", b"nor this").unwrap();
    s.put("volumes/0", b"0").unwrap();
    let keys = |p: &str| s.list(p).unwrap().into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(keys("volumes/"), ["volumes/0", "volumes/a", "volumes/b"]);
    assert_eq!(s.list("volumes/").unwrap()[1], ("volumes/a".to_string(), b"one".to_vec()));
    assert_eq!(keys("nothing/"), Vec::<String>::new());
    assert!(keys("").len() >= 8, "every key: {:?}", keys(""));
    // delete: says whether it was there.
    assert!(s.delete("volumes/0").unwrap());
    assert!(!s.delete("volumes/0").unwrap());
    assert_eq!(s.get("volumes/0").unwrap(), None);
    assert_eq!(keys("volumes/"), ["volumes/a", "volumes/b"]);
    // A listing longer than etcd's page (1,000 keys): all of it, in order.
    for i in 0..1234 {
        s.put(&format!("many/{i:05}"), i.to_string().as_bytes()).unwrap();
    }
    let many = s.list("many/").unwrap();
    assert_eq!(many.len(), 1234);
    assert!(many.iter().enumerate().all(|(i, (k, v))| *k == format!("many/{i:05}") && *v == i.to_string().as_bytes()));
}

/// Many threads create the same keys at once: one winner per key, and its value stays.
fn creates_race(s: Arc<dyn Store>) {
    const THREADS: usize = 6;
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (s, barrier) = (s.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                (0..20)
                    .filter(|k| s.create(&format!("race/{k}"), format!("{t}").as_bytes()).unwrap())
                    .map(|k| (k, t))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut won: Vec<(usize, usize)> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    won.sort();
    assert_eq!(
        won.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        (0..20).collect::<Vec<_>>(),
        "one winner per key: {won:?}"
    );
    for (k, t) in won {
        assert_eq!(s.get(&format!("race/{k}")).unwrap(), Some(t.to_string().into_bytes()));
    }
}

fn etcd_store(etcd: &Etcd, prefix: &str) -> EtcdStore {
    let Spec::Etcd(o) = Spec::parse(&format!("etcd://{}/{prefix}", etcd.endpoints())).unwrap() else { unreachable!() };
    EtcdStore::open(&o).unwrap()
}

#[test]
fn the_embedded_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let s = LocalStore::open(&dir.path().join("store.redb")).unwrap();
    contract(&s);
    creates_race(Arc::new(s));
}

#[test]
fn the_etcd_store_keeps_the_contract() {
    common::require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start(dir.path(), 1);
    let s = etcd_store(&etcd, "contract");
    contract(&s);
    creates_race(Arc::new(etcd_store(&etcd, "contract")));

    // Where the keys are (docs/cluster.md): under the prefix, as they are named.
    assert_eq!(etcd.get("contract/volumes/a").as_deref(), Some("one"));
    // One view: another client (another node) reads what this one wrote, at once.
    let other = etcd_store(&etcd, "contract");
    other.put("volumes/c", b"3").unwrap();
    assert_eq!(s.get("volumes/c").unwrap().as_deref(), Some(&b"3"[..]));
    // Another prefix, another cluster: nothing of this one.
    let apart = etcd_store(&etcd, "elsewhere/deeper");
    assert_eq!(apart.list("").unwrap(), Vec::new());
    apart.put("volumes/a", b"theirs").unwrap();
    assert_eq!(s.get("volumes/a").unwrap().as_deref(), Some(&b"one"[..]));

    // etcd gone: every call fails within the deadline (5 s, and 1 s of margin), naming the
    // store; none hangs. Back: the same store works again.
    etcd.members[0].kill();
    let t = Instant::now();
    let e = s.get("volumes/a").unwrap_err().to_string();
    assert!(t.elapsed() < Duration::from_secs(7), "{:?}: {e}", t.elapsed());
    assert!(e.starts_with(&format!("etcd://{}/contract: get volumes/a: ", etcd.endpoints())), "{e}");
    assert!(s.put("volumes/d", b"4").is_err());
    etcd.members[0].restart();
    assert!(
        common::wait_until(Duration::from_secs(30), || s.get("volumes/a").is_ok()),
        "the store came back with etcd"
    );
    assert_eq!(s.get("volumes/a").unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(s.get("volumes/d").unwrap(), None, "a failed put wrote nothing");
}

/// `--store` refuses what it cannot use, in one line, and starts nothing.
#[test]
fn bad_store_arguments_are_refused() {
    for (arg, says) in [
        ("redis://h:1", "not a store"),
        ("etcd://", "is not HOST:PORT"),
        ("etcd://h", "is not HOST:PORT"),
        ("etcd://h:0", "is not HOST:PORT"),
        ("etcd://h:2379,:2379", "is not HOST:PORT"),
        ("etcd://h:2379/a b", "key prefix"),
        ("etcd://h:2379/a//b", "key prefix"),
    ] {
        let e = Spec::parse(arg).unwrap_err().to_string();
        assert!(e.contains(says), "{arg}: {e}");
    }
    let Spec::Etcd(o) = Spec::parse("etcd://10.0.0.1:2379,[::1]:2380/c1/").unwrap() else { panic!() };
    assert_eq!(
        (o.endpoints, o.prefix),
        (vec!["10.0.0.1:2379".to_string(), "[::1]:2380".to_string()], "c1".to_string())
    );
    let Spec::Etcd(o) = Spec::parse("etcd://h:2379").unwrap() else { panic!() };
    assert_eq!(o.prefix, "georep");
    assert_eq!(Spec::parse("local").unwrap(), Spec::Local);
    let _ = EtcdOptions::default();
}

/// georepd on etcd: two nodes of one cluster see one volume list; a georepd whose etcd does
/// not answer says so in one line and exits.
#[test]
fn georepd_on_etcd() {
    common::require_root();
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path(), 1);
    let store = format!("etcd://{}/nodes", etcd.endpoints());
    let mut a = Node::new(dir.path(), "a");
    let mut b = Node::new(dir.path(), "b");
    for n in [&mut a, &mut b] {
        n.extra = vec!["--store".into(), store.clone()];
        n.start();
    }
    let brick = dir.path().join("brick");
    a.cli(&format!("volume create v1 a:{}", brick.display())).ok();
    assert!(etcd.get("nodes/volumes/v1").is_some_and(|v| v.contains("\"name\":\"v1\"")), "the volume is in etcd");
    assert!(b.cli("volume info v1").ok().contains("Volume Name: v1"), "b sees a's volume");
    assert!(b.cli("volume list").ok().contains("v1"));

    // No etcd there: georepd refuses to start, in one line, within its deadline.
    let t = Instant::now();
    let o = std::process::Command::new(a.exe("georepd"))
        .args(["--node-name", "c", "--listen", "none", "--store", "etcd://127.0.0.1:9/x"])
        .envs(Node::new(dir.path(), "c").envs())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("etcd://127.0.0.1:9/x"), "{err}");
}
