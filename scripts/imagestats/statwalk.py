"""The stats of a local walk, by folder: each folder opened once, each image
stat'ed by its name within it (plan._stat_local).

Also the plan's helper process, run as ``python -S statwalk.py 0|1`` (so it
imports nothing but the standard library): it reads folders (absolute, so
starting with '/') each followed by its rel, and names, each item ended by a
NUL, on stdin, and writes the sizes, the mtimes and, with argument 1, the
paths' hashes (plan.path_hashes's) as native int64 on stdout. It dies on a
file it cannot stat: the walk then stats that part itself, to say which file
and why.
"""

import os
import sys
from array import array
from hashlib import blake2b


def stat_listed(items, hashed=False):
    sizes, mtimes, digests, fd, rel = array("q"), array("q"), bytearray(), None, None
    stat, lstat = os.stat, os.lstat
    try:
        for item in items:
            if item[:1] in ("/", b"/"):
                if fd is not None:
                    os.close(fd)
                    fd = None
                fd = os.open(item, os.O_RDONLY | os.O_DIRECTORY)
                rel = None
                continue
            if rel is None:  # a folder's path is followed by its rel
                rel = item
                continue
            try:
                st = stat(item, dir_fd=fd)
            except OSError:  # a broken link: measured, it becomes an error row
                st = lstat(item, dir_fd=fd)
            sizes.append(st.st_size)
            mtimes.append(st.st_mtime_ns)
            if hashed:  # path_hashes's, of the path as bytes
                digests += blake2b(rel + item, digest_size=8).digest()
    finally:
        if fd is not None:
            os.close(fd)
    return sizes, mtimes, digests


def _items(data, step=1 << 20):
    """The NUL-ended items of ``data``, split a megabyte at a time (the
    helper reads all of stdin at once, so the walk's write returns at once;
    its peak: ~40 MB for half a million names)."""
    start = 0
    while start < len(data):
        end = data.find(b"\0", start + step) + 1 or len(data)
        yield from data[start:end].split(b"\0")[:-1]
        start = end


if __name__ == "__main__":
    for part in stat_listed(_items(sys.stdin.buffer.read()), sys.argv[1:] == ["1"]):
        sys.stdout.buffer.write(part)
