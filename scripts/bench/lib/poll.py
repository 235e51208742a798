"""Polling a secondary's tree from the benchmarks, cheaply enough not to take the CPU the sync
being measured needs."""
import os, time


def wait_for_files(dst, files, size, every):
    """Returns once `dst` holds f0 .. f{files-1}, each of `size` bytes: a pointer over the names
    (one stat per file, once), the sizes checked only when every name is there."""
    j = 0
    while True:
        while j < files and os.path.exists(f"{dst}/f{j}"):
            j += 1
        if j == files and all(os.stat(f"{dst}/f{k}").st_size == size for k in range(files)):
            return
        time.sleep(every)
