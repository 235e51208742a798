//! The store's contract (`daemon::store::Store`), one suite run against both backends: the
//! embedded store (redb) and etcd (a real etcd 3.4, Debian's, started by the test). Then what
//! only etcd does: several clients, one view; prefixes that keep clusters apart; an etcd that
//! goes away (an error within the deadline, never a hang) and comes back; georepd on it.

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::cluster::{Cluster, Node};
use common::etcd::Etcd;
use common::netns::Host;
use georep::daemon::store::{EtcdStore, LocalStore, Spec, Store};

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
    let dir = common::Scratch::new();
    let s = LocalStore::open(&dir.path().join("store.redb")).unwrap();
    contract(&s);
    creates_race(Arc::new(s));
}

#[test]
fn the_etcd_store_keeps_the_contract() {
    common::require_root();
    let dir = common::Scratch::new();
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

/// etcd's users: with authentication on, the store logs in with `--store-user` and the
/// password file; a wrong password is refused at once, in words.
#[test]
fn etcd_with_a_user_and_password() {
    common::require_root();
    let dir = common::Scratch::new();
    let mut etcd = Etcd::start(dir.path(), 1);
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["user", "add", "georep:s3cret"],
        &["role", "add", "georep"],
        &["role", "grant-permission", "georep", "--prefix=true", "readwrite", "auth/"],
        &["user", "grant-role", "georep", "georep"],
        &["auth", "enable"],
    ] {
        let o = etcd.ctl(args);
        assert!(o.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    etcd.auth = Some("root:rootpw".into());
    let url = format!("etcd://{}/auth", etcd.endpoints());
    let Spec::Etcd(mut o) = Spec::parse(&url).unwrap() else { unreachable!() };
    o.user = Some(("georep".into(), "s3cret".into()));
    let s = EtcdStore::open(&o).unwrap();
    s.put("test/v", b"1").unwrap();
    assert_eq!(etcd.get("auth/test/v").as_deref(), Some("1"));
    // Outside its role's prefix: refused by etcd, and said so.
    let Spec::Etcd(mut other) = Spec::parse(&format!("etcd://{}/other", etcd.endpoints())).unwrap() else {
        unreachable!()
    };
    other.user = o.user.clone();
    let e = EtcdStore::open(&other).err().expect("no permission outside auth/").to_string();
    assert!(e.contains("permission denied"), "{e}");
    // A wrong password.
    o.user = Some(("georep".into(), "wrong".into()));
    let e = EtcdStore::open(&o).err().expect("a wrong password is refused").to_string();
    assert!(e.starts_with(&format!("{url}: ")) && e.contains("authentication failed"), "{e}");

    // georepd with the flags: the password from its file.
    let pw = dir.path().join("password");
    std::fs::write(&pw, "s3cret\n").unwrap();
    let mut n = Node::new(dir.path(), "a");
    n.extra = vec![
        "--store".into(),
        url,
        "--store-user".into(),
        "georep".into(),
        "--store-password-file".into(),
        pw.display().to_string(),
    ];
    n.start();
    n.cli(&format!("volume create v2 a:{}", dir.path().join("b").display())).ok();
    assert!(etcd.get("auth/volumes/v2").is_some());
    drop(n);
    etcd.members[0].kill();
}

/// etcd over TLS with client certificates: the store connects with `--store-cacert`,
/// `--store-cert` and `--store-key`; without a client certificate, or trusting another CA, it
/// is refused in words.
#[test]
fn etcd_over_tls() {
    common::require_root();
    let dir = common::Scratch::new();
    let etcd = Etcd::start_tls(dir.path(), 1);
    let t = etcd.tls.clone().unwrap();
    let url = format!("etcd://{}/tls", etcd.endpoints());
    let Spec::Etcd(mut o) = Spec::parse(&url).unwrap() else { unreachable!() };
    o.ca = Some(t.ca.clone());
    o.cert = Some(t.client_cert.clone());
    o.key = Some(t.client_key.clone());
    let s = EtcdStore::open(&o).unwrap();
    s.put("test/v", b"over tls").unwrap();
    assert_eq!(etcd.get("tls/test/v").as_deref(), Some("over tls"));
    // No client certificate: the members refuse the connection.
    let mut bare = o.clone();
    (bare.cert, bare.key) = (None, None);
    let e = EtcdStore::open(&bare).err().expect("a client certificate is required").to_string();
    eprintln!("without a client certificate: {e}");
    assert!(e.starts_with(&format!("{url}: ")), "{e}");
    // The CA of the client certificate is not the members' CA.
    let mut wrong = o.clone();
    wrong.ca = Some(t.client_cert.clone());
    assert!(EtcdStore::open(&wrong).is_err());

    // georepd with the flags.
    let mut n = Node::new(dir.path(), "a");
    n.extra = vec![
        "--store".into(),
        url,
        "--store-cacert".into(),
        t.ca.display().to_string(),
        "--store-cert".into(),
        t.client_cert.display().to_string(),
        "--store-key".into(),
        t.client_key.display().to_string(),
    ];
    n.start();
    assert!(n.cli("pool list").ok().contains("localhost\tConnected"));
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
}

/// georepd on etcd: two nodes of one cluster see one volume list; a georepd whose etcd does
/// not answer says so in one line and exits.
#[test]
fn georepd_on_etcd() {
    common::require_root();
    let dir = common::Scratch::new();
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

/// A lease keeps its keys while renewed (well past its TTL), says when it may have lapsed (etcd
/// gone longer than the TTL), puts its keys again under a new lease when etcd dropped the old
/// one, and takes them away at once when dropped.
#[test]
fn a_lease_holds_its_keys_while_renewed() {
    common::require_root();
    let dir = common::Scratch::new();
    let mut etcd = Etcd::start(dir.path(), 1);
    let s = etcd_store(&etcd, "lease");
    let l = s.lease(Duration::from_secs(2)).unwrap();
    l.put("nodes/n1", b"alive").unwrap();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(s.get("nodes/n1").unwrap().as_deref(), Some(&b"alive"[..]), "renewed past its TTL");
    assert!(l.valid_for().is_some_and(|v| v <= Duration::from_secs(2)), "{:?}", l.valid_for());

    // The lease revoked behind its back (as etcd does to an expired one): its key goes, and
    // comes back under a new lease at the next renewal.
    let o = etcd.ctl(&["lease", "list"]);
    let ids: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().skip(1).map(|l| l.trim().to_string()).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(etcd.ctl(&["lease", "revoke", &ids[0]]).status.success());
    assert_eq!(s.get("nodes/n1").unwrap(), None);
    assert!(
        common::wait_until(Duration::from_secs(5), || s.get("nodes/n1").unwrap().is_some()),
        "put again under a new lease"
    );

    // etcd gone longer than the TTL: the lease knows it may have lapsed. Back: valid again,
    // its key there.
    etcd.members[0].kill();
    assert!(common::wait_until(Duration::from_secs(4), || l.valid_for().is_none()), "{:?}", l.valid_for());
    etcd.members[0].restart();
    assert!(
        common::wait_until(Duration::from_secs(30), || l.valid_for().is_some()
            && s.get("nodes/n1").ok().flatten().is_some()),
        "valid again once etcd is back"
    );
    // Dropped: revoked, the key gone now.
    drop(l);
    assert_eq!(s.get("nodes/n1").unwrap(), None);
}

/// An election on etcd: one lease wins a free key, the other does not; the winner keeps its
/// token; a write conditioned on its term passes while the term lasts and is refused after;
/// the next term's token is larger; a lease that lapses loses its term for good (its key is
/// not put back under the new lease, unlike a plain leased key).
#[test]
fn elections_and_fenced_writes_on_etcd() {
    common::require_root();
    let dir = common::Scratch::new();
    let etcd = Etcd::start(dir.path(), 1);
    let s = etcd_store(&etcd, "elect");
    let (a, b) = (s.lease(Duration::from_secs(2)).unwrap(), s.lease(Duration::from_secs(2)).unwrap());
    let t1 = a.campaign("elections/v", b"a").unwrap().expect("a free term is won");
    assert_eq!(b.campaign("elections/v", b"b").unwrap(), None, "held by a");
    assert_eq!(a.campaign("elections/v", b"a").unwrap(), Some(t1), "still a's, same token");
    assert_eq!(s.get("elections/v").unwrap().as_deref(), Some(&b"a"[..]));
    assert!(a.put_if_held("elections/v", t1, "stimes/s", b"1").unwrap());
    assert!(!b.put_if_held("elections/v", t1 + 1, "stimes/s", b"x").unwrap(), "no such term");
    // a resigns: b's term, with a larger token; a's writes are refused from now on.
    a.resign("elections/v", t1).unwrap();
    let t2 = b.campaign("elections/v", b"b").unwrap().expect("b wins the free term");
    assert!(t2 > t1, "{t2} > {t1}");
    assert!(!a.put_if_held("elections/v", t1, "stimes/s", b"stale").unwrap(), "a's term is over");
    assert_eq!(s.get("stimes/s").unwrap().as_deref(), Some(&b"1"[..]), "the stale write left nothing");
    // Resigning an old term does not end the new one.
    a.resign("elections/v", t1).unwrap();
    assert_eq!(b.campaign("elections/v", b"b").unwrap(), Some(t2));
    // b dropped (revoked): the term is free at once.
    drop(b);
    assert_eq!(s.get("elections/v").unwrap(), None);
    let t3 = a.campaign("elections/v", b"a").unwrap().expect("a wins again");
    assert!(t3 > t2);
    // a's lease revoked behind its back (as when it lapses): its plain keys come back under a
    // new lease, its term does not.
    a.put("nodes/a", b"alive").unwrap();
    let o = etcd.ctl(&["lease", "list"]);
    let ids: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().skip(1).map(|l| l.trim().to_string()).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(etcd.ctl(&["lease", "revoke", &ids[0]]).status.success());
    assert!(common::wait_until(Duration::from_secs(5), || s.get("nodes/a").unwrap().is_some()), "put again");
    assert_eq!(s.get("elections/v").unwrap(), None, "the term is not");
    assert!(!a.put_if_held("elections/v", t3, "stimes/s", b"late").unwrap());
    let t4 = a.campaign("elections/v", b"a").unwrap().expect("a new term");
    assert!(t4 > t3);
}

/// `pool list` and `peer status` on three nodes (network namespaces) of one etcd: every node,
/// Connected; one halted (every process SIGKILLed) turns Disconnected within the
/// registration's TTL (10 s), one stopped at once, and each is Connected again when it starts.
/// On the embedded store: this node alone.
#[test]
fn nodes_of_one_cluster() {
    common::require_root();
    let dir = common::Scratch::new();
    let etcd = Etcd::start(dir.path(), 1);
    // Each node a machine of its own (a network namespace), reaching etcd over its link.
    let hosts: Vec<Host> = (83..86).map(|net| Host::bare(dir.path(), &format!("s{net}"), net)).collect();
    let mut nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .zip(&hosts)
        .map(|(n, h)| {
            let mut node = Node::new(dir.path(), n);
            node.on(h);
            node.extra = vec!["--store".into(), format!("etcd://{}/pool", etcd.endpoints_via(&h.gateway()))];
            node.start();
            node
        })
        .collect();
    let state = |at: &Node, name: &str| -> Option<String> {
        let out = at.cli("pool list").ok().to_string();
        out.lines()
            .find(|l| l.split('\t').nth(1).is_some_and(|h| h.trim() == name))
            .map(|l| l.rsplit('\t').next().unwrap().trim().to_string())
    };
    let pool = nodes[0].cli("pool list").ok().to_string();
    assert!(pool.starts_with("UUID\t"), "{pool}");
    assert_eq!(pool.lines().count(), 4, "{pool}");
    assert_eq!(state(&nodes[0], "localhost").as_deref(), Some("Connected"), "{pool}");
    assert_eq!(state(&nodes[0], "n2").as_deref(), Some("Connected"), "{pool}");
    let peers = nodes[1].cli("peer status").ok().to_string();
    assert!(peers.starts_with("Number of Peers: 2\n"), "{peers}");
    assert!(peers.contains("Hostname: n1\n") && peers.contains("Hostname: n3\n"), "{peers}");
    assert_eq!(peers.matches("State: Peer in Cluster (Connected)").count(), 2, "{peers}");
    let json: serde_json::Value = serde_json::from_str(nodes[2].cli("pool list --json").ok()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);
    assert_eq!(json[0]["name"], "n3");
    assert_eq!(json[0]["this_node"], true);
    assert_eq!(json[0]["version"], georep::VERSION);

    // n3 halted (every process of its machine SIGKILLed): Disconnected within the TTL (and
    // a renewal's margin).
    let t = Instant::now();
    for p in hosts[2].pids() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
    }
    nodes[2].kill9();
    assert!(common::wait_until(Duration::from_secs(16), || state(&nodes[0], "n3").as_deref() == Some("Disconnected")));
    eprintln!("n3 SIGKILLed: Disconnected after {:?}", t.elapsed());
    assert!(t.elapsed() > Duration::from_secs(5), "not before its lease could lapse: {:?}", t.elapsed());
    // n2 stopped: at once (its lease revoked).
    nodes[1].terminate(Duration::from_secs(10)).expect("n2 stops");
    assert_eq!(state(&nodes[0], "n2").as_deref(), Some("Disconnected"));
    let peers = nodes[0].cli("peer status").ok().to_string();
    assert_eq!(peers.matches("(Disconnected)").count(), 2, "{peers}");
    nodes[2].start();
    assert_eq!(state(&nodes[0], "n3").as_deref(), Some("Connected"));

    // The embedded store: this node alone.
    let mut alone = Node::new(dir.path(), "alone");
    alone.start();
    let pool = alone.cli("pool list").ok().to_string();
    assert_eq!(pool.lines().count(), 2, "{pool}");
    assert!(pool.lines().nth(1).unwrap().ends_with("localhost\tConnected"), "{pool}");
    assert_eq!(alone.cli("peer status").ok(), "Number of Peers: 0\n");
}

/// One view: a session's brick row, published by the node that runs its worker, is what
/// `status` shows on every node of the cluster; when that node dies, its row turns Faulty
/// with the reason, on the others, within the registration's TTL.
#[test]
fn status_on_any_node() {
    common::require_root();
    let etcd_dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(etcd_dir.path(), 1);
    let url = format!("etcd://{}/view", etcd.endpoints());
    let mut c = Cluster::with_extra(|_, _| vec!["--store".into(), url.clone()]);
    c.geo("create push-pem").ok();
    c.geo("start").ok();
    std::fs::write(c.p("f"), "x").unwrap();
    let mut other = Node::new(c.dir.path(), "n2");
    other.extra = vec!["--store".into(), url.clone()];
    other.start();
    let rows = |n: &Node| -> Vec<serde_json::Value> {
        let o = n.cli("volume geo-replication status --json");
        serde_json::from_str::<serde_json::Value>(&o.stdout)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    };
    assert!(
        common::wait_until(Duration::from_secs(30), || {
            let r = rows(&other);
            r.len() == 1 && r[0]["worker_status"] == "Active" && r[0]["primary_node"] == "pri"
        }),
        "n2 shows pri's row: {:?}",
        rows(&other)
    );
    let r = rows(&other);
    assert_eq!(r[0]["primary_brick"], c.pbrick.display().to_string());
    assert_eq!(r[0]["primary_node_uuid"], rows(&c.pri)[0]["primary_node_uuid"]);

    let t = Instant::now();
    c.pri.kill9();
    assert!(
        common::wait_until(Duration::from_secs(16), || rows(&other)
            .first()
            .is_some_and(|r| r["worker_status"] == "Faulty")),
        "{:?}",
        rows(&other)
    );
    eprintln!("pri killed: its row Faulty on n2 after {:?}", t.elapsed());
    assert_eq!(rows(&other)[0]["last_error"], "node pri is not connected");
}

/// Commands given to one node act on the node that hosts the brick: a session of n2's volume
/// created, started, configured, paused, resumed and stopped from n1 (its CLI and its API)
/// runs, changes, pauses and stops its worker on n2; n2, down while the config changed, runs
/// the new one when it is back. n1 and n2 are network namespaces.
#[test]
fn commands_on_one_node_act_on_another() {
    common::require_root();
    let dir = common::Scratch::new();
    let etcd = Etcd::start(dir.path(), 1);
    let mut sec = Node::new(dir.path(), "sec");
    sec.start();
    let sbrick = dir.path().join("sbrick");
    sec.cli(&format!("volume create svol sec:{}", sbrick.display())).ok();
    sec.cli("volume start svol").ok();
    // n1 and n2 machines of their own (network namespaces), reaching etcd over their links.
    let hosts = [Host::bare(dir.path(), "s81", 81), Host::bare(dir.path(), "s82", 82)];
    let mut nodes: Vec<Node> = ["n1", "n2"]
        .iter()
        .zip(&hosts)
        .map(|(n, h)| {
            let mut node = Node::new(dir.path(), n);
            node.on(h);
            node.extra = vec!["--store".into(), format!("etcd://{}/act", etcd.endpoints_via(&h.gateway()))];
            node.peers.push(("sec".into(), sec.run_dir()));
            node.start();
            node
        })
        .collect();
    let brick = dir.path().join("pbrick");
    nodes[1].cli(&format!("volume create pvol n2:{}", brick.display())).ok();
    nodes[1].cli("volume start pvol").ok();
    let [n1, n2] = &mut nodes[..] else { unreachable!() };
    let n1 = &*n1;
    let geo = |rest: &str| n1.cli(&format!("volume geo-replication pvol sec::svol {rest}"));
    geo("create push-pem").ok();
    geo("start").ok();
    let status = |n: &Node| -> String {
        let o = n.cli("volume geo-replication status --json");
        serde_json::from_str::<serde_json::Value>(&o.stdout)
            .ok()
            .and_then(|v| v[0]["worker_status"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    assert!(common::wait_until(Duration::from_secs(30), || status(n1) == "Active"), "n2's worker runs: {}", status(n1));
    let spec = n2.root.join("state/geo-replication/pvol_sec_svol/worker.json");
    assert!(spec.exists(), "the worker runs on n2");
    assert!(!n1.root.join("state/geo-replication/pvol_sec_svol/worker.json").exists(), "not on n1");
    // Replicates: a file on n2's brick (written as its mount would; the changelog is the
    // brick server's) reaches the secondary.
    let mnt = dir.path().join("pmnt");
    std::fs::create_dir(&mnt).unwrap();
    let o = std::process::Command::new(n2.exe("mount_georep")).arg("pvol").arg(&mnt).envs(n2.envs()).output().unwrap();
    assert!(o.status.success(), "mount pvol on n2: {}", String::from_utf8_lossy(&o.stderr));
    let _unmount = Unmount(mnt.clone());
    std::fs::write(mnt.join("hello"), "from n2").unwrap();
    assert!(common::wait_until(Duration::from_secs(30), || std::fs::read_to_string(sbrick.join("hello"))
        .is_ok_and(|s| s == "from n2")));

    // n1's API shows n2's row, and its changes act there: a config set through it restarts
    // n2's worker with it.
    let (code, body) = n1.api("GET", "/api/v1/volumes/pvol/geo-replication-sessions", None);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["id"], "sec::svol", "{body}");
    assert_eq!(v[0]["bricks"][0]["primary_node"], "n2", "{body}");
    let s = "/api/v1/volumes/pvol/geo-replication-sessions/sec::svol";
    let (code, body) = n1.api("PUT", &format!("{s}/options/sync-jobs"), Some(r#"{"value":"2"}"#));
    assert_eq!(code, 200, "{body}");
    assert!(
        common::wait_until(Duration::from_secs(10), || std::fs::read_to_string(&spec)
            .is_ok_and(|s| s.contains("\"sync-jobs\": \"2\""))),
        "{}",
        std::fs::read_to_string(&spec).unwrap_or_default()
    );
    // Paused (through n1's API) and resumed (its CLI) from n1.
    let (code, body) = n1.api("POST", &format!("{s}/pause"), None);
    assert_eq!(code, 200, "{body}");
    assert!(common::wait_until(Duration::from_secs(10), || status(n1) == "Paused"), "{}", status(n1));
    geo("resume").ok();
    assert!(common::wait_until(Duration::from_secs(20), || status(n1) == "Active"), "{}", status(n1));
    // n2 down while the config changes on n1: back, its worker runs with the new config.
    n2.terminate(Duration::from_secs(10)).expect("n2 stops");
    geo("config sync-jobs 3").ok();
    n2.start();
    assert!(
        common::wait_until(Duration::from_secs(20), || std::fs::read_to_string(&spec)
            .is_ok_and(|s| s.contains("\"sync-jobs\": \"3\""))),
        "{}",
        std::fs::read_to_string(&spec).unwrap_or_default()
    );
    assert!(common::wait_until(Duration::from_secs(30), || status(n1) == "Active"), "{}", status(n1));
    // Stopped from n1: n2's worker goes.
    geo("stop").ok();
    assert!(common::wait_until(Duration::from_secs(10), || status(n1) == "Stopped"), "{}", status(n1));
    assert!(common::wait_until(Duration::from_secs(10), || {
        let out =
            std::process::Command::new("pgrep").args(["-f", &format!("worker {}", spec.display())]).output().unwrap();
        out.stdout.is_empty()
    }));
}

/// Unmounts (lazily) whatever happens to the test.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).output();
    }
}
