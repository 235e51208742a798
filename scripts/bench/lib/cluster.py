"""Several nodes on etcd, measured (scripts/bench/cluster). Every node is a georepd on this
machine with its own directories, the secondaries local peers; etcd 3.4 (Debian's) with its
default timings. Three parts, each printed as a Markdown table:

1. failover: three primary nodes share a replica 3 volume; in each round the Active node's
   georepd and brick server are SIGKILLed while a copy of FILES files runs through it; timed:
   to another node's row Active, and to identical trees once the rest of the copy went through
   the new Active. Bound: the lease's TTL (10 s) and a pass (1 s).
2. status: three primary nodes, ten volumes spread over them, ten secondary volumes: 100
   started sessions; `status` of all of them timed on each node (target: under 100 ms).
3. the store's cost: the same bulk sync (FILES files of SIZE bytes written while the session
   is stopped, then started and timed to the last file on the secondary) on one node on the
   embedded store, and on a replica 2 volume of two nodes on etcd (fenced: every batch's
   stime is committed through georepd in an etcd transaction); runs alternate.

    cluster.py --base B --rounds N --files F --size S [--parts failover,status,store]
"""
import argparse, json, os, shutil, signal, socket, statistics, subprocess, sys, time

from poll import wait_for_files

BASE = None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait(what, pred, within=60.0, every=0.05):
    end = time.monotonic() + within
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(every)
    sys.exit(f"cluster bench: timed out waiting for {what}")


class Etcd:
    def __init__(self, name):
        self.client, peer = free_port(), free_port()
        d = f"{BASE}/{name}"
        self.log = open(f"{d}.log", "w")
        self.proc = subprocess.Popen(
            ["etcd", "--name", "m0", "--data-dir", d,
             "--listen-client-urls", f"http://127.0.0.1:{self.client}",
             "--advertise-client-urls", f"http://127.0.0.1:{self.client}",
             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-cluster", f"m0=http://127.0.0.1:{peer}"],
            stdout=subprocess.DEVNULL, stderr=self.log)
        wait("etcd", lambda: subprocess.run(
            ["etcdctl", f"--endpoints=127.0.0.1:{self.client}", "endpoint", "health"],
            capture_output=True, env=dict(os.environ, ETCDCTL_API="3")).returncode == 0, 30, 0.2)

    def url(self, prefix):
        return f"etcd://127.0.0.1:{self.client}/{prefix}"


class Node:
    def __init__(self, name, extra=()):
        self.name, self.root, self.extra, self.proc = name, f"{BASE}/{name}", list(extra), None
        self.env = dict(os.environ, GEOREP_STATE_DIR=f"{self.root}/state", GEOREP_CONFIG_DIR=f"{self.root}/etc",
                        GEOREP_LOG_DIR=f"{self.root}/log", GEOREP_RUN_DIR=f"{self.root}/run")
        os.makedirs(self.root, exist_ok=True)

    def start(self):
        log = open(f"{self.root}/georepd.log", "a")
        self.proc = subprocess.Popen(["georepd", "--node-name", self.name, "--listen", "none", *self.extra],
                                     env=self.env, stdout=log, stderr=log)
        sock = f"{self.root}/run/georepd.sock"
        wait(f"georepd {self.name}", lambda: os.path.exists(sock) and self.cli("volume", "list", check=False)
             .returncode == 0, 20, 0.1)

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def cli(self, *words, check=True):
        r = subprocess.run(["georep", *words], env=self.env, capture_output=True, text=True)
        if check and r.returncode != 0:
            sys.exit(f"{self.name}: georep {' '.join(words)}: {r.stderr.strip()}")
        return r

    def rows(self, pvol, url):
        r = self.cli("volume", "geo-replication", pvol, url, "status", "--json", check=False)
        try:
            return json.loads(r.stdout) if r.returncode == 0 else []
        except ValueError:
            return []

    def mount(self, vol, mnt):
        os.makedirs(mnt, exist_ok=True)
        return subprocess.run(["mount", "-t", "georep", vol, mnt], env=self.env, capture_output=True).returncode == 0


def umount(mnt):
    subprocess.run(["umount", "-l", mnt], capture_output=True)


def tree(root):
    """(path, size) of every entry under `root`, georep's own directories left out."""
    out = set()
    for d, dirs, files in os.walk(root):
        if d == root:
            dirs[:] = [x for x in dirs if x not in (".georep", ".gfid")]
        for f in files:
            p = os.path.join(d, f)
            try:
                out.add((os.path.relpath(p, root), os.lstat(p).st_size))
            except OSError:
                pass
        out.update((os.path.relpath(os.path.join(d, x), root), -1) for x in dirs)
    return out


def write_files(mnt, start, end, body):
    """Files f{i} for i in [start, end) under d{i // 1000}; stops at the first error."""
    n = 0
    for i in range(start, end):
        try:
            os.makedirs(f"{mnt}/d{i // 1000}", exist_ok=True)
            with open(f"{mnt}/d{i // 1000}/f{i}", "wb") as f:
                f.write(body)
        except OSError:
            break
        n += 1
    return n


def q(v, f):
    v = sorted(v)
    return v[min(len(v) - 1, int(f * len(v)))]


def failover(etcd, rounds, files, size):
    sec = Node("fo-sec")
    sec.start()
    sec.cli("volume", "create", "svol", f"fo-sec:{BASE}/fs/fo-sb")
    sec.cli("volume", "start", "svol")
    names = ["fo-n1", "fo-n2", "fo-n3"]
    nodes = {n: Node(n, ["--store", etcd.url("fo"), "--replica-hold-time", "3600",
                         "--local-peer", f"fo-sec={sec.root}/run"]) for n in names}
    for n in nodes.values():
        n.start()
    brick = f"{BASE}/fs/fo-shared"
    nodes["fo-n1"].cli("volume", "create", "rvol", "replica", "3", *[f"{n}:{brick}" for n in names])
    nodes["fo-n1"].cli("volume", "start", "rvol")
    nodes["fo-n1"].cli("volume", "geo-replication", "rvol", "fo-sec::svol", "create", "push-pem")
    nodes["fo-n1"].cli("volume", "geo-replication", "rvol", "fo-sec::svol", "start")

    def active(asker):
        r = asker.rows("rvol", "fo-sec::svol")
        a = [x["primary_node"] for x in r if x["worker_status"] == "Active"]
        return a[0] if len(a) == 1 else None

    body = os.urandom(size)
    results = []
    mnt = f"{BASE}/fo-mnt"
    for k in range(rounds):
        wait("an Active node", lambda: active(nodes["fo-n1"] if nodes["fo-n1"].proc.poll() is None
                                              else nodes["fo-n2"]) is not None, 60)
        alive = [n for n in nodes.values() if n.proc.poll() is None]
        act = nodes[active(alive[0])]
        other = next(n for n in alive if n is not act)
        assert act.mount("rvol", mnt), "mount through the Active"
        base = k * files
        # The copy runs in a child process; the kill comes once 300 files are on the brick.
        writer = subprocess.Popen([sys.executable, "-c", f"""
import os, sys
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
from cluster import write_files
print(write_files({mnt!r}, {base}, {base + files}, os.urandom({size})))
"""], stdout=subprocess.PIPE, text=True)
        first = f"{brick}/d{(base + 300) // 1000}/f{base + 300}"
        wait("the copy under way", lambda: os.path.exists(first), 60, 0.002)
        subprocess.run(["pkill", "-9", "-f", "--", f"--serve {brick}"])
        act.kill9()
        t0 = time.monotonic()
        copied = int(writer.communicate()[0].strip() or 0)
        umount(mnt)
        wait("another node Active", lambda: active(other) not in (None, act.name), 60, 0.05)
        t_active = time.monotonic() - t0
        new = nodes[active(other)]
        wait("a mount through the new Active", lambda: new.mount("rvol", mnt), 30, 0.2)
        write_files(mnt, base, base + files, body)
        umount(mnt)
        wait("identical trees", lambda: tree(brick) == tree(f"{BASE}/fs/fo-sb"), 180, 0.2)
        t_conv = time.monotonic() - t0
        results.append((t_active, t_conv, copied))
        print(f"  round {k + 1}: {act.name} killed after {copied} files; {new.name} Active in {t_active:.2f} s,"
              f" trees identical in {t_conv:.2f} s", file=sys.stderr)
        act.start()
    print("\n| failover (3 nodes, replica 3, SIGKILL during a copy of %d files) | bound | min | median | max |" % files)
    print("|---|---|---|---|---|")
    for label, i, bound in [("kill to another node's row Active", 0, "11 s"), ("kill to identical trees", 1, "")]:
        v = [r[i] for r in results]
        print(f"| {label} | {bound} | {min(v):.2f} s | {statistics.median(v):.2f} s | {max(v):.2f} s |")
    for n in list(nodes.values()) + [sec]:
        if n.proc.poll() is None:
            n.kill9()


def status(etcd, reps):
    sec = Node("st-sec")
    sec.start()
    for j in range(10):
        sec.cli("volume", "create", f"s{j}", f"st-sec:{BASE}/fs/st-sb{j}")
        sec.cli("volume", "start", f"s{j}")
    nodes = [Node(f"st-n{i}", ["--store", etcd.url("st"), "--local-peer", f"st-sec={sec.root}/run"]) for i in range(3)]
    for n in nodes:
        n.start()
    for i in range(10):
        n = nodes[i % 3]
        n.cli("volume", "create", f"v{i}", f"{n.name}:{BASE}/fs/st-b{i}")
        n.cli("volume", "start", f"v{i}")
    for i in range(10):
        n = nodes[i % 3]
        for j in range(10):
            n.cli("volume", "geo-replication", f"v{i}", f"st-sec::s{j}", "create", "push-pem", "force")
            n.cli("volume", "geo-replication", f"v{i}", f"st-sec::s{j}", "start")

    def all_rows(n):
        r = n.cli("volume", "geo-replication", "status", "--json", check=False)
        try:
            return json.loads(r.stdout)
        except ValueError:
            return []

    wait("100 Active rows", lambda: sum(x["worker_status"] == "Active" for x in all_rows(nodes[0])) == 100, 300, 1)
    print("\n| `status` of 100 sessions (3 nodes, etcd), %d runs per node | rows | p50 | p99 | max |" % reps)
    print("|---|---|---|---|---|")
    for n in nodes:
        took = []
        for _ in range(reps):
            t = time.perf_counter()
            rows = all_rows(n)
            took.append(time.perf_counter() - t)
        print(f"| on {n.name} | {len(rows)} | {q(took, 0.5) * 1000:.1f} ms | {q(took, 0.99) * 1000:.1f} ms"
              f" | {max(took) * 1000:.1f} ms |")
    # The API's own view of the same (no process start): timed in georepd's handler.
    for n in nodes + [sec]:
        n.kill9()


def store_cost(etcd, rounds, files, size):
    setups = {}
    for kind in ("embedded", "etcd"):
        sec = Node(f"sc-{kind}-sec")
        sec.start()
        sec.cli("volume", "create", "svol", f"sc-{kind}-sec:{BASE}/fs/sc-{kind}-sb")
        sec.cli("volume", "start", "svol")
        peer = ["--local-peer", f"sc-{kind}-sec={sec.root}/run"]
        brick = f"{BASE}/fs/sc-{kind}-pb"
        if kind == "embedded":
            nodes = [Node("sc-embedded-p", peer)]
            nodes[0].start()
            nodes[0].cli("volume", "create", "pvol", f"sc-embedded-p:{brick}")
        else:
            nodes = [Node(f"sc-etcd-p{i}", ["--store", etcd.url("sc")] + peer) for i in (1, 2)]
            for n in nodes:
                n.start()
            nodes[0].cli("volume", "create", "pvol", "replica", "2", *[f"{n.name}:{brick}" for n in nodes])
        nodes[0].cli("volume", "start", "pvol")
        url = f"sc-{kind}-sec::svol"
        nodes[0].cli("volume", "geo-replication", "pvol", url, "create", "push-pem")
        nodes[0].cli("volume", "geo-replication", "pvol", url, "start")
        wait(f"{kind}: Active", lambda: any(r["worker_status"] == "Active" for r in nodes[0].rows("pvol", url)), 60)
        act = next(n for n in nodes for r in nodes[0].rows("pvol", url)
                   if r["worker_status"] == "Active" and r["primary_node"] == n.name)
        mnt = f"{BASE}/sc-{kind}-mnt"
        wait(f"{kind}: mount", lambda: act.mount("pvol", mnt), 30, 0.2)
        setups[kind] = (act, url, mnt, f"{BASE}/fs/sc-{kind}-sb", nodes + [sec])
    body = os.urandom(size)
    took = {"embedded": [], "etcd": []}
    for k in range(rounds):
        for kind in (("embedded", "etcd") if k % 2 == 0 else ("etcd", "embedded")):
            act, url, mnt, sb, _ = setups[kind]
            act.cli("volume", "geo-replication", "pvol", url, "stop")
            d = f"{mnt}/run{k}"
            os.mkdir(d)
            for j in range(files):
                with open(f"{d}/f{j}", "wb") as f:
                    f.write(body)
            os.sync()
            t = time.perf_counter()
            act.cli("volume", "geo-replication", "pvol", url, "start")
            dst = f"{sb}/run{k}"
            wait_for_files(dst, files, size, 0.05)
            took[kind].append(time.perf_counter() - t)
            print(f"  round {k + 1} {kind}: {took[kind][-1]:.2f} s", file=sys.stderr)
            # Untimed: every run starts from the same volumes.
            shutil.rmtree(d)
            wait(f"{kind}: the run removed on the secondary", lambda: not os.path.exists(dst), 120, 0.2)
    e, c = statistics.median(took["embedded"]), statistics.median(took["etcd"])
    print(f"\n| the same sync of {files} x {size} B files | runs | median | mean | vs embedded |")
    print("|---|---|---|---|---|")
    print(f"| one node, embedded store | {rounds} | {e:.2f} s | {statistics.mean(took['embedded']):.2f} s | |")
    print(f"| replica 2 on etcd (fenced: an etcd transaction per batch) | {rounds} | {c:.2f} s"
          f" | {statistics.mean(took['etcd']):.2f} s | {(c / e - 1) * 100:+.1f}% |")
    for kind in setups:
        umount(setups[kind][2])
        for n in setups[kind][4]:
            n.kill9()


def main():
    global BASE
    a = argparse.ArgumentParser()
    a.add_argument("--base", required=True)
    for k in ("rounds", "files", "size"):
        a.add_argument(f"--{k}", type=int, required=True)
    a.add_argument("--parts", default="failover,status,store")
    args = a.parse_args()
    BASE = args.base
    etcd = Etcd("etcd")
    try:
        parts = args.parts.split(",")
        if "failover" in parts:
            failover(etcd, args.rounds, args.files, args.size)
        if "status" in parts:
            status(etcd, 20)
        if "store" in parts:
            store_cost(etcd, args.rounds * 2, args.files, args.size)
    finally:
        etcd.proc.send_signal(signal.SIGKILL)


if __name__ == "__main__":
    main()
