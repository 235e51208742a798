"""Replication lag, measured from outside: small files written one at a time on the primary,
each timed until it is whole on the secondary; optionally under a background load of new files.

    lag.py stream SRC DST COUNT INTERVAL_MS [LOAD_PER_S LOAD_DIR]   prints p50 p90 p99 max (s)
"""
import os, sys, threading, time


def quantiles(lags):
    lags = sorted(lags)
    q = lambda p: lags[min(len(lags) - 1, int(p * len(lags)))]
    return q(0.5), q(0.9), q(0.99), lags[-1]


def load(dir, per_s, stop):
    """Creates `per_s` files of 100 bytes a second in `dir` (in bursts of 10) until `stop`."""
    os.makedirs(dir, exist_ok=True)
    body, i, t = b"b" * 100, 0, time.monotonic()
    while not stop.is_set():
        for _ in range(10):
            with open(os.path.join(dir, f"b{i}"), "wb") as f:
                f.write(body)
            i += 1
        t += 10 / per_s
        time.sleep(max(0.0, t - time.monotonic()))
    return i


def stream(src, dst, count, interval, load_per_s=0, load_dir=None):
    body = b"x" * 100
    wrote, arrived = {}, {}

    def watch():
        i = 0
        deadline = time.monotonic() + count * interval + 120
        while i < count and time.monotonic() < deadline:
            try:
                if os.path.getsize(os.path.join(dst, f"f{i}")) == len(body):
                    arrived[i] = time.monotonic()
                    i += 1
                    continue
            except OSError:
                pass
            time.sleep(0.0005)

    stop = threading.Event()
    bg = None
    if load_per_s:
        bg = threading.Thread(target=load, args=(load_dir, load_per_s, stop))
        bg.start()
        time.sleep(1)
    t = threading.Thread(target=watch)
    t.start()
    for i in range(count):
        wrote[i] = time.monotonic()
        with open(os.path.join(src, f"f{i}"), "wb") as f:
            f.write(body)
        time.sleep(interval)
    t.join()
    stop.set()
    if bg:
        bg.join()
    lags = [arrived[i] - wrote[i] for i in range(count) if i in arrived]
    if len(lags) < count:
        sys.exit(f"only {len(lags)} of {count} files arrived")
    return quantiles(lags)


if __name__ == "__main__" and sys.argv[1] == "stream":
    a = sys.argv[2:]
    extra = (int(a[4]), a[5]) if len(a) > 4 else ()
    q = stream(a[0], a[1], int(a[2]), int(a[3]) / 1000, *extra)
    print(" ".join(f"{x:.4f}" for x in q))
