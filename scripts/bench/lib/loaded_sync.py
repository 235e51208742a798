"""A bulk sync, timed with and without a load beside it (scripts/bench/api, scripts/bench/ui).

Each run writes a new directory of FILES files of SIZE bytes on the primary mount while the
session is stopped, starts it, and times the sync until the secondary holds all of it (then
removes it, untimed, so that every run starts from the same volumes). Runs go in pairs, one
of each pair with the load (LOAD... , a command started before the sync: it says READY on a
line once its load is on, and when its standard input closes it stops and prints one JSON
line, its report). Prints the sync times (median and mean of RUNS each) and the CPU of
georepd, of the load (with every process it started) and of this script; writes the loads'
reports to --reports as a JSON list.

    loaded_sync.py --base B --runs N --files F --size S --label "..." --reports R -- LOAD...
"""
import argparse, json, os, statistics, subprocess, sys, time

from poll import wait_for_files

def cpu(p):
    f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def api_requests():
    """georepd's count of API requests so far (its /metrics), if API and TOKEN are set."""
    api, token = os.environ.get("API"), os.environ.get("TOKEN")
    if not api or not token:
        return None
    import urllib.request
    req = urllib.request.Request(f"http://{api}/metrics", headers={"Authorization": f"Bearer {token}"})
    try:
        text = urllib.request.urlopen(req, timeout=5).read().decode()
    except OSError:
        return None
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith("georep_api_requests_total"))


def tree_cpu(root):
    """CPU seconds of `root` and every process under it, now."""
    parent, spent = {}, {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                f = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parent[int(d)] = int(f[1])
            spent[int(d)] = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in spent:
        q = p
        while q and q != root:
            q = parent.get(q, 0)
        if q == root:
            total += spent[p]
    return total


def main():
    a = argparse.ArgumentParser()
    for k in ("base", "label", "reports"):
        a.add_argument(f"--{k}", required=True)
    for k in ("runs", "files", "size"):
        a.add_argument(f"--{k}", type=int, required=True)
    a.add_argument("load", nargs="+")
    args = a.parse_args()
    base, files, size = args.base, args.files, args.size
    env = dict(os.environ, GEOREP_STATE_DIR=f"{base}/p/state", GEOREP_CONFIG_DIR=f"{base}/p/etc",
               GEOREP_LOG_DIR=f"{base}/p/log", GEOREP_RUN_DIR=f"{base}/p/run")
    tag = os.environ["TAG"]

    def geo(*w):
        subprocess.run(["georep", "volume", "geo-replication", "pvol", f"{tag}-s::svol", *w], env=env, check=True,
                       stdout=subprocess.DEVNULL)

    pid = subprocess.run(["pgrep", "-f", f"georepd --node-name {tag}-p"], capture_output=True, text=True).stdout.split()[0]
    reports = []
    took_by = {False: [], True: []}
    daemon_by = {False: [], True: []}
    load_by = {False: [], True: []}
    own_by = {False: [], True: []}
    asked_by = {False: [], True: []}

    def one_run(n, loaded):
        geo("stop")
        d = f"{base}/fs/pm/run{n}"
        os.mkdir(d)
        body = os.urandom(size)
        for j in range(files):
            with open(f"{d}/f{j}", "wb") as f:
                f.write(body)
        os.sync()
        load = None
        if loaded:
            load = subprocess.Popen(args.load, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            line = load.stdout.readline()
            if line.strip() != "READY":
                sys.exit(f"the load did not start: {line!r}")
        # The load's CPU counts from READY (not its start-up) to the sync's end.
        k0 = tree_cpu(load.pid) if load else 0.0
        r0 = api_requests()
        t, c0, m0 = time.perf_counter(), cpu(pid), sum(os.times()[:2])
        geo("start")
        dst = f"{base}/fs/sb/run{n}"
        wait_for_files(dst, files, size, 0.1)
        took = time.perf_counter() - t
        daemon_by[loaded].append((cpu(pid) - c0) / took)
        load_by[loaded].append(((tree_cpu(load.pid) - k0) if load else 0.0) / took)
        own_by[loaded].append((sum(os.times()[:2]) - m0) / took)
        r1 = api_requests()
        if r0 is not None and r1 is not None:
            asked_by[loaded].append((r1 - r0) / took)
        if load:
            out, _ = load.communicate(input="")
            reports.append(json.loads(out.strip().splitlines()[-1]))
        took_by[loaded].append(took)
        print(f"run {n}: {'with' if loaded else 'without'} the load: {took:.2f} s", file=sys.stderr)
        # The run's files go again (untimed), so that every run starts from the same volumes.
        subprocess.run(["rm", "-rf", d], check=True)
        while os.path.exists(dst):
            time.sleep(0.1)


    for n in range(2 * args.runs):
        # Pairs, the loaded run first in every other pair: neither kind always follows the other.
        one_run(n, (n % 2 == 1) != (n // 2 % 2 == 1))
    json.dump(reports, open(args.reports, "w"))
    plain, loaded = took_by[False], took_by[True]
    p, l = statistics.median(plain), statistics.median(loaded)
    mp, ml = statistics.mean(plain), statistics.mean(loaded)
    pct = lambda v: f"{statistics.median(v) * 100:.1f}%"
    runs = lambda v: ", ".join(f"{x:.2f}" for x in v)
    print(f"| sync of {files} files of {size} B, {args.runs} runs each | median | mean | runs (s) |")
    print("|---|---|---|---|")
    print(f"| without the load | {p:.2f} s | {mp:.2f} s | {runs(plain)} |")
    print(f"| with {args.label} | {l:.2f} s ({(l / p - 1) * 100:+.1f}%) | {ml:.2f} s ({(ml / mp - 1) * 100:+.1f}%) | {runs(loaded)} |")
    print()
    print("| CPU during the sync (median, of one core) | without the load | with it |")
    print("|---|---|---|")
    print(f"| georepd (primary) | {pct(daemon_by[False])} | {pct(daemon_by[True])} |")
    print(f"| the load, with every process it started | {pct(load_by[False])} | {pct(load_by[True])} |")
    print(f"| this script (the poll) | {pct(own_by[False])} | {pct(own_by[True])} |")
    if asked_by[False] and asked_by[True]:
        rate = lambda v: f"{statistics.median(v):.1f}/s"
        print(f"| API requests georepd answered (median) | {rate(asked_by[False])} | {rate(asked_by[True])} |")


if __name__ == "__main__":
    main()
