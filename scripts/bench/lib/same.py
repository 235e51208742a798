"""Tree comparison for the benchmarks, outside the timed window where it can be:

    same.py snapshot DIR FILE       what DIR holds (names, sizes, mtimes, entries per directory)
    same.py wait DIR FILE TREE      waits until TREE holds what the snapshot says DIR held
                                    (names, sizes, mtimes; then contents); prints the time
                                    (time.time()) of the scan that found it so

Cheap checks first (entry counts, a sample of files), so that polling does not take the CPU
the tools being measured need.
"""
import hashlib, json, os, random, sys, time
def scan(root):
    out = {}
    for d, dirs, files in os.walk(root):
        if d == root and ".georep" in dirs:
            dirs.remove(".georep")
        for f in files:
            p = os.path.join(d, f)
            try:
                st = os.lstat(p)
                out[os.path.relpath(p, root)] = [st.st_size, st.st_mtime_ns]
            except OSError:
                pass
    return out
def digest(root, names):
    h = hashlib.blake2b()
    for n in sorted(names):
        with open(os.path.join(root, n), "rb") as f:
            h.update(f.read())
    return h.digest()
if sys.argv[1] == "snapshot":
    a = sys.argv[2]
    want = scan(a)
    counts = {}
    for n in want:
        d = os.path.dirname(n)
        if d not in counts:
            counts[d] = len([x for x in os.listdir(os.path.join(a, d)) if not (d == "" and x == ".georep")])
    json.dump({"want": want, "counts": counts}, open(sys.argv[3], "w"))
    sys.exit(0)
a, snap, b = sys.argv[2], json.load(open(sys.argv[3])), sys.argv[4]
want, counts = snap["want"], snap["counts"]
names = list(want)
def cheap():
    try:
        for d, k in counts.items():
            if len(os.listdir(os.path.join(b, d))) < k:
                return False
        for n in random.sample(names, min(64, len(names))):
            st = os.lstat(os.path.join(b, n))
            if [st.st_size, st.st_mtime_ns] != want[n]:
                return False
    except OSError:
        return False
    return True
deadline = time.monotonic() + 600
while time.monotonic() < deadline:
    seen = time.time()
    if cheap() and scan(b) == want and digest(a, want) == digest(b, want):
        print(f"{seen:.6f}")
        sys.exit(0)
    time.sleep(0.02)
sys.exit("not converged in 600 s")
