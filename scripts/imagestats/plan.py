"""Which images to measure, and how they are cut into shards.

Finding the images (a folder, a manifest or a numbered pattern) and cutting
them into shards happens every time the Snakefile is parsed by the main
Snakemake process, so it is one directory walk (or one stat per listed
file), a hash per path, and array arithmetic (numpy, which Snakemake's Slurm
plugin has imported already; imported only where planning needs it, so a
shard job reading its list does not pay for it): no Python object per image
beyond its path.

Shards are the leaves of a binary trie over a hash of each image's path: a
leaf splits in two while it holds more than ``images_per_job`` images or
more than ``mb_per_job`` megabytes of image files (a single larger image is
a shard of its own). The split depends only on the paths and sizes, so every
process that plans the same images gets the same shards, and adding,
removing or changing an image changes only the leaf it hashes into (which
may split in two, or merge with its sibling): every other shard keeps its
exact membership and is not rerun. Leaves of a trie with smaller limits are
descendants of the leaves with larger limits, which lets a shard reuse the
results of its ancestors or descendants (imagestats.journal).

Each shard's list is a file named by a hash of its content,
``<plan_dir>/<shard>.<fingerprint>.jsonl``: a list is never rewritten, only
a new one written, so planning (a dry run too) never changes a file that a
running job reads. The paths in a list are relative to the plan's ``root``
(kept in the index, not in the lists), so moving the images together with
the results reruns nothing.
"""

import hashlib
import json
import os
from array import array
from dataclasses import dataclass, field
from functools import partial
from itertools import islice

from . import statwalk
from .atomic import replaced
from .defaults import with_defaults
from .names import escape

MB = 1_000_000  # mb_per_job counts megabytes of 10^6 bytes

INDEX = "index.json"


class ConfigError(Exception):
    """The configuration cannot work; the message says what to change."""


@dataclass
class Images:
    """The selected images as parallel arrays, in the order found (the
    shards do not need them sorted: a list is in hash order, the CSV is
    sorted when the tables are joined).

    ``paths`` are as the user sees them (relative to ``root`` for a folder,
    the line as written for a manifest, the filled-in pattern for numbered
    files); the file to open is ``os.path.join(root, path)``.
    """

    source: str  # one line saying where the images come from
    root: str  # absolute folder the paths are relative to
    paths: list
    sizes: object  # numpy int64 array, bytes
    mtimes: object  # numpy int64 array, ns
    warnings: list = field(default_factory=list)
    folders: int = None  # folders holding images (None: count them from the paths)
    hashes: object = field(default=None, repr=False)  # path_hashes(paths) if the walk made them

    def __len__(self):
        return len(self.paths)

    def folder_count(self):
        if self.folders is None:
            self.folders = len({os.path.dirname(p) for p in self.paths})
        return self.folders


@dataclass
class Shard:
    name: str  # shard-<bits of the trie path>, or shard-all
    list_name: str  # file name of its list in the plan folder
    images: int
    bytes: int
    largest: int  # bytes of its largest image


@dataclass
class Plan:
    source: str
    root: str
    images: int
    images_per_job: int
    mb_per_job: int
    shards: dict  # name -> Shard, sorted by name
    selection: Images = None  # only in the process that planned (not read from an index)
    # Only in the process that planned: the images in hash order (indices
    # into ``selection``) and each shard's slice of it.
    _order: object = field(default=None, repr=False)
    _ranges: dict = field(default_factory=dict, repr=False)  # name -> (lo, hi) into _order
    _paths_in_order: object = field(default=None, repr=False)  # selection.paths[_order], numpy objects

    def index(self):
        """What every process needs, as plan.INDEX holds it."""
        return {
            "source": self.source,
            "root": self.root,
            "images": self.images,
            "images_per_job": self.images_per_job,
            "mb_per_job": self.mb_per_job,
            "shards": {n: s.images for n, s in self.shards.items()},
            "lists": {n: s.list_name for n, s in self.shards.items()},
            "bytes": {n: s.bytes for n, s in self.shards.items()},
            "largest": {n: s.largest for n, s in self.shards.items()},
        }

    @classmethod
    def from_index(cls, index):
        shards = {
            name: Shard(name, index["lists"][name], count, index["bytes"][name], index["largest"][name])
            for name, count in index["shards"].items()
        }
        return cls(
            index["source"], index["root"], index["images"], index["images_per_job"],
            index["mb_per_job"], shards,
        )  # fmt: skip

    def members(self, name):
        """Indices into ``selection`` of a shard's images, in the list's order."""
        lo, hi = self._ranges[name]
        return self._order[lo:hi]


# ---------------------------------------------------------------- inputs


def find_images(config, workdir="."):
    """The images the config selects (Images).

    Raises ConfigError with an actionable message when the selection cannot
    work: a missing folder or manifest, missing numbered files, no images.
    """
    if config.get("manifest") and config.get("numbered"):
        raise ConfigError(
            "config sets both 'manifest' and 'numbered': keep one of them "
            "(set the other to null)"
        )
    if config.get("manifest"):
        images = _from_manifest(config["manifest"], workdir)
    elif config.get("numbered"):
        images = _from_numbered(config["numbered"], workdir)
    elif config.get("input_dir"):
        images = _from_folder(config["input_dir"], config["extensions"], workdir)
    else:
        raise ConfigError(
            "no images selected: set 'input_dir', 'manifest' or 'numbered' in the config"
        )
    if not images.paths:
        raise ConfigError(f"{images.source} selects no images: check the path and 'extensions'")
    return images


def _arrays(sizes, mtimes):
    """int64 numpy views of two array('q') (no copy)."""
    import numpy as np

    return np.frombuffer(sizes, dtype=np.int64), np.frombuffer(mtimes, dtype=np.int64)


def _scan(folder, rel, wanted):
    """One folder: its images' paths, its real subfolders
    [(path, rel, (dev, inode))] and its folder links [(path, rel)]; the
    images are stat'ed after the listing (_stat_local, _stat_names), in
    listing order.

    scandir on an open descriptor: each stat then resolves only the file's
    name within the folder, not its whole path (a sixth of a walk's time).
    The listing says which entries are folders (d_type): no stat for that."""
    paths, subfolders, links = [], [], []
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with os.scandir(fd) as it:
            for d in it:
                name = d.name
                if d.is_dir():
                    if d.is_symlink():
                        links.append((os.path.join(folder, name), rel + name + os.sep))
                    else:
                        st = d.stat(follow_symlinks=False)
                        subfolders.append((os.path.join(folder, name), rel + name + os.sep, (st.st_dev, st.st_ino)))
                elif name.lower().endswith(wanted):
                    paths.append(rel + name)
    finally:
        os.close(fd)
    return paths, subfolders, links


def _stat_names(folder, rel, paths):
    """Sizes and mtimes of images ``paths`` (rel + name) of ``folder``, in
    that order: one stat each, a broken link's own."""
    sizes, mtimes = array("q"), array("q")
    skip = len(rel)
    for path in paths:
        file = os.path.join(folder, path[skip:])
        try:
            st = os.stat(file)
        except OSError:  # a broken link: measured, it becomes an error row
            st = os.lstat(file)
        sizes.append(st.st_size)
        mtimes.append(st.st_mtime_ns)
    return sizes, mtimes


# On a local disk the walk is CPU-bound, nearly all of it the stats (a
# million here: the listing 0.45 s, the stats 3.2 s, 3 us each): from this
# many images on, with two CPUs, a helper process stats (and hashes) the
# second half of them on the other CPU while the walk does the first (the
# helper costs ~30 ms to start and ~0.1 s per million names to hand over).
STAT_HELPER_MIN = 100_000
# The helper's script (see statwalk's doc).
STAT_HELPER = statwalk.__file__


def _stat_items(listed, lo, hi):
    """The items statwalk.stat_listed takes for images lo..hi of ``listed``,
    [(folder, rel, paths)] in walk order: each folder, its rel, the names
    (made one by one: not half a million more strings at once)."""
    start = 0
    for folder, rel, found in listed:
        end = start + len(found)
        if end > lo and start < hi:
            skip = len(rel)
            yield folder
            yield rel
            for path in found[max(lo - start, 0) : hi - start]:
                yield path[skip:]
        start = end


def _stat_local(listed, paths):
    """Sizes and mtimes of ``paths``, the images of ``listed`` (see
    _stat_items) in order, and maybe their hashes (path_hashes's; None: not
    computed): a stat each, half of them in a helper process, which hashes
    its half too, when there are many and two CPUs to run on."""
    import sys

    count = len(paths)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    half = count // 2 if count >= STAT_HELPER_MIN and (cpus or 1) > 1 else count
    # Its bytes are the ones path_hashes hashes when file names are UTF-8.
    hashed = (sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()) == ("utf-8", "surrogateescape")
    helper = _start_helper(_stat_items(listed, half, count), hashed) if half < count else None
    try:
        sizes, mtimes, _ = _stat_part(listed, 0, half)
        front = path_hashes(paths[:half]) if helper is not None and hashed else None
    except BaseException:
        if helper is not None:
            helper.kill()
            helper.wait()
        raise
    hashes = None
    if half < count:
        more = _helper_output(helper, count - half, hashed)
        if more is None:
            more = _stat_part(listed, half, count)
        elif front is not None:
            import numpy as np

            hashes = np.concatenate((front, np.frombuffer(more[2], dtype=">u8").astype(np.uint64)))
        sizes += more[0]
        mtimes += more[1]
    return sizes, mtimes, hashes


def _start_helper(items, hashed):
    """A helper process stat'ing ``items`` (statwalk.stat_listed's), or None."""
    import subprocess
    import sys

    try:
        helper = subprocess.Popen(
            [sys.executable, "-S", STAT_HELPER, "1" if hashed else "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    except OSError:
        return None
    try:
        while block := list(islice(items, 65536)):
            helper.stdin.write(os.fsencode("\0".join(block) + "\0"))
        helper.stdin.close()
    except OSError:  # it died: stat those here
        helper.kill()
    return helper


def _helper_output(helper, count, hashed):
    """The helper's (sizes, mtimes, hashes as bytes) of its ``count``
    images, or None if it failed (no helper, a file it could not stat)."""
    if helper is None:
        return None
    with helper.stdout:
        out = helper.stdout.read()
    if helper.wait() != 0 or len(out) != (24 if hashed else 16) * count:
        return None
    sizes, mtimes = array("q"), array("q")
    sizes.frombytes(out[: 8 * count])
    mtimes.frombytes(out[8 * count : 16 * count])
    return sizes, mtimes, out[16 * count :]


def _stat_part(listed, lo, hi):
    try:
        return statwalk.stat_listed(_stat_items(listed, lo, hi))
    except OSError as e:
        raise ConfigError(
            f"cannot stat '{e.filename}' ({e.strerror}): fix its permissions or move it "
            "out of input_dir"
        ) from None


# Threads of the walk on a network filesystem. A stat runs without the
# GIL, so threads overlap the stats' waits: on Lustre or NFS each one waits
# on the network. On a local disk the walk is CPU-bound and threads only
# fight for the GIL, each stat's return waiting for it: 999,000 files here
# took 4.6 to 4.9 s with one thread, 5.7 s with 2 and 8.0 s with 4 (so a
# local walk uses a helper process for a second CPU, _stat_local). Eight:
# a Lustre client keeps 8 metadata requests in flight per server by
# default, so more gain little. Behind the benchmark's layer delaying each
# stat by 0.5 ms, 27,000 images took 16.5 s with one thread (13.5 s of
# it the stats), 4.3 s with 4 and 2.5 s with 8.
WALK_THREADS = 8
# With threads, a folder's images are stat'ed in chunks of this many, each
# by whichever thread is free, in listing order (Lustre prefetches the
# attributes of a folder's entries stat'ed in that order): a tree of a few
# big folders keeps every thread busy, not one per folder.
STAT_CHUNK = 512


def walk_threads(root):
    """Threads for the walk of ``root``: WALK_THREADS on a network
    filesystem, else 1; IMAGESTATS_WALK_THREADS (a number) overrides it,
    for a filesystem the mount table misjudges (and for the benchmark's
    delaying layer, which a local disk's mount table cannot show)."""
    forced = os.environ.get("IMAGESTATS_WALK_THREADS", "").strip()
    if forced.isdigit() and int(forced) > 0:
        return int(forced)
    from .storage import on_network_filesystem  # here, not above: every shard process imports this module

    return WALK_THREADS if on_network_filesystem(root) else 1


class _InThisThread:
    """ThreadPoolExecutor's submit for one thread: the call runs at once,
    without handing each folder to a thread and back."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args):
        from concurrent.futures import Future

        done = Future()
        try:
            done.set_result(fn(*args))
        except OSError as e:
            done.set_exception(e)
        return done


def _from_folder(input_dir, extensions, workdir):
    from concurrent.futures import ThreadPoolExecutor

    root = os.path.abspath(os.path.join(workdir, input_dir))
    if not os.path.isdir(root):
        raise ConfigError(
            f"input_dir '{input_dir}' is not a folder: set input_dir to the folder "
            "that holds your images (relative paths start at the working directory)"
        )
    wanted = tuple(ext.lower() for ext in extensions)
    # Sizes and mtimes as machine integers: a million Python ints would be
    # 60 MB more at the peak of planning.
    paths, sizes, mtimes, warnings, folders = [], array("q"), array("q"), [], 0
    # Folders by (device, inode): a folder reached twice (a link loop such as
    # `up -> ..`, or a second link to a folder) is walked once. Real folders
    # are walked before any folder link, so the warning names the link.
    st = os.stat(root)
    walked = {(st.st_dev, st.st_ino): "."}
    links = []
    threads = walk_threads(root)
    # The listing first, the stats after it: with threads, in chunks by
    # whichever thread is free; locally, _stat_local (on two cores).
    stats = []  # threads: (position in paths, future of (sizes, mtimes)); locally: _stat_local's
    hashes = None  # path_hashes(paths), if the helper made half of them
    with ThreadPoolExecutor(threads) if threads > 1 else _InThisThread() as pool:
        pending = [(root, "", pool.submit(_scan, root, "", wanted))]
        while pending or links:
            if not pending:
                link, rel = links.pop()
                name = rel.rstrip(os.sep)
                try:
                    st = os.stat(link)
                except OSError:
                    continue  # the link broke since it was listed
                key = (st.st_dev, st.st_ino)
                if key in walked:
                    warnings.append(
                        f"folder link '{name}' leads to '{walked[key]}', which is already "
                        "walked: its images are listed once, under that folder"
                    )
                    continue
                walked[key] = name
                pending.append((link, rel, pool.submit(_scan, link, rel, wanted)))
                continue
            folder, folder_rel, future = pending.pop()
            try:
                found, subfolders, found_links = future.result()
            except OSError as e:
                raise ConfigError(
                    f"cannot list folder '{folder}' ({e.strerror}): fix its permissions "
                    "or move it out of input_dir"
                ) from None
            folders += bool(found)
            if threads == 1:
                if found:
                    stats.append((folder, folder_rel, found))
            else:
                for start in range(0, len(found), STAT_CHUNK):
                    chunk = found[start : start + STAT_CHUNK]
                    stats.append((len(paths) + start, pool.submit(_stat_names, folder, folder_rel, chunk)))
            paths += found
            links += found_links
            for path, rel, key in subfolders:
                walked[key] = rel.rstrip(os.sep)
                pending.append((path, rel, pool.submit(_scan, path, rel, wanted)))
        if threads == 1:
            sizes, mtimes, hashes = _stat_local(stats, paths)
        else:
            sizes, mtimes = array("q", bytes(8 * len(paths))), array("q", bytes(8 * len(paths)))
            for start, future in stats:
                try:
                    found_sizes, found_mtimes = future.result()
                except OSError as e:
                    raise ConfigError(
                        f"cannot stat '{e.filename}' ({e.strerror}): fix its permissions or move it "
                        "out of input_dir"
                    ) from None
                sizes[start : start + len(found_sizes)] = found_sizes
                mtimes[start : start + len(found_mtimes)] = found_mtimes
    source = f"input_dir {input_dir} (searched recursively for {', '.join(extensions)})"
    return Images(source, root, paths, *_arrays(sizes, mtimes), warnings, folders, hashes)


def _from_manifest(manifest, workdir):
    file = os.path.join(workdir, manifest)
    try:
        with open(file, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ConfigError(
            f"manifest '{manifest}' cannot be read ({e.strerror}): set 'manifest' to a "
            "text file with one image path per line"
        ) from None
    # Relative lines are relative to the folder holding the manifest, so a
    # manifest made with `ls Dir/*.jpg > files.txt` works from anywhere.
    base = os.path.dirname(os.path.abspath(file))
    paths, sizes, mtimes, missing, seen = [], array("q"), array("q"), [], set()
    for line in lines:
        path = line.strip()
        if not path or path.startswith("#"):
            continue
        target = os.path.normpath(os.path.join(base, path))
        if target in seen:
            continue  # the same image listed twice is measured once
        seen.add(target)
        try:
            st = os.stat(target)
        except FileNotFoundError:
            missing.append(path)
            continue
        paths.append(path)
        sizes.append(st.st_size)
        mtimes.append(st.st_mtime_ns)
    if missing:
        raise ConfigError(
            f"manifest '{manifest}' lists {len(missing)} missing file(s): "
            f"{_shorten(missing)}; fix or remove those lines (relative lines are "
            f"relative to {base})"
        )
    _check_unique(paths)  # a folder walk or a pattern cannot repeat a path
    source = f"manifest {manifest} ({len(paths)} files listed)"
    return Images(source, base, paths, *_arrays(sizes, mtimes))


def _from_numbered(numbered, workdir):
    pattern, first, last = numbered["pattern"], int(numbered["first"]), int(numbered["last"])
    if first > last:
        raise ConfigError(f"numbered: first ({first}) is after last ({last}): swap them")
    try:
        pattern.format(n=first)
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(
            f"numbered pattern '{pattern}' must contain '{{n}}' (or e.g. '{{n:04d}}') "
            f"and no other braces ({e})"
        ) from None
    if pattern.format(n=first) == pattern.format(n=first + 1):
        raise ConfigError(f"numbered pattern '{pattern}' has no '{{n}}' placeholder: add one")
    root = os.path.abspath(workdir)
    paths, sizes, mtimes, missing = [], array("q"), array("q"), []
    for n in range(first, last + 1):
        path = pattern.format(n=n)
        try:
            st = os.stat(os.path.join(root, path))
        except FileNotFoundError:
            missing.append(n)
            continue
        paths.append(path)
        sizes.append(st.st_size)
        mtimes.append(st.st_mtime_ns)
    if missing:
        raise ConfigError(
            f"numbered pattern '{pattern}' is missing {len(missing)} of "
            f"{last - first + 1} files, numbers {_ranges(missing)}: add those files "
            "or change first/last"
        )
    return Images(f"numbered {pattern} for n = {first}..{last}", root, paths, *_arrays(sizes, mtimes))


def _check_unique(paths):
    keys = {}
    for path in paths:
        key = stats_file_key(escape(path))
        if key in keys:
            raise ConfigError(
                f"'{keys[key]}' and '{path}' would share one per-image stats file: "
                "list each image by one path only"
            )
        keys[key] = path


def _shorten(items, most=10):
    shown = ", ".join(repr(i) for i in items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


def _ranges(numbers):
    """[1, 2, 3, 7, 9, 10] -> '1-3, 7, 9-10' (numbers sorted)."""
    spans = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def stats_file_key(shown_path):
    """Where under results/images/ an image's stats file goes (without .json).

    ``shown_path`` is the path as the CSV shows it (names.escape), made
    relative: a leading '/' is dropped and '..' becomes '__' so no stats
    file can land outside results/images/.
    """
    parts = os.path.normpath(shown_path).split(os.sep)
    return os.sep.join("__" if p == ".." else p for p in parts if p not in ("", "."))


# ---------------------------------------------------------------- shards


def path_hashes(paths):
    """64-bit hash of each path (blake2b: the same in every process and
    Python version), as a uint64 array."""
    import numpy as np

    out = np.empty(len(paths), dtype=np.uint64)
    step = 65536  # digests joined a chunk at a time: no million bytes objects at once
    hash8, digest = partial(hashlib.blake2b, digest_size=8), hashlib.blake2b.digest
    for start in range(0, len(paths), step):
        chunk = paths[start : start + step]
        # Encoded in one call and hashed by map's C loop: a fifth less time
        # than a generator encoding and hashing path by path.
        encoded = "\0".join(chunk).encode("utf-8", "surrogateescape").split(b"\0")
        if len(encoded) != len(chunk):  # a NUL in a path (a manifest's line)
            encoded = [p.encode("utf-8", "surrogateescape") for p in chunk]
        out[start : start + step] = np.frombuffer(b"".join(map(digest, map(hash8, encoded))), dtype=">u8")
    return out


def cut(hashes, sizes, images_per_job, max_bytes):
    """The trie's leaves: [(name, lo, hi)] over the images sorted by hash
    (``hashes`` sorted, ``sizes`` in the same order), see the module doc."""
    import numpy as np

    if images_per_job < 1:
        raise ConfigError("images_per_job must be at least 1")
    total = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))
    leaves = []

    def split(prefix, depth, lo, hi):
        count = hi - lo
        too_big = count > images_per_job or total[hi] - total[lo] > max_bytes
        if not too_big or count == 1 or depth == 64:
            leaves.append(("shard-" + (format(prefix, f"0{depth}b") if depth else "all"), lo, hi))
            return
        middle = np.uint64((prefix * 2 + 1) << (63 - depth))  # first hash of the right half
        mid = lo + int(np.searchsorted(hashes[lo:hi], middle))
        for child, a, b in ((prefix * 2, lo, mid), (prefix * 2 + 1, mid, hi)):
            if b > a:
                split(child, depth + 1, a, b)

    if len(hashes):
        split(0, 0, 0, len(hashes))
    return leaves


def make_plan(config, workdir=".", slurm=False):
    """Find the images and cut them into shards; ``slurm`` uses the
    slurm_images_per_job / slurm_mb_per_job limits (bigger shards: a Slurm
    job costs seconds to start)."""
    import numpy as np

    config = with_defaults(config)
    prefix = "slurm_" if slurm else ""
    per_job = config[f"{prefix}images_per_job"]
    mb_per_job = config[f"{prefix}mb_per_job"]
    images = find_images(config, workdir)
    hashes = path_hashes(images.paths) if images.hashes is None else images.hashes
    order = np.argsort(hashes, kind="stable")
    hashes, sizes, mtimes = hashes[order], images.sizes[order], images.mtimes[order]
    plan = Plan(images.source, images.root, len(images), per_job, mb_per_job, {}, images)
    plan._order = order
    for name, lo, hi in cut(hashes, sizes, per_job, mb_per_job * MB):
        fingerprint = hashlib.blake2b(
            hashes[lo:hi].tobytes() + sizes[lo:hi].tobytes() + mtimes[lo:hi].tobytes(),
            digest_size=8,
        ).hexdigest()
        part = sizes[lo:hi]
        plan.shards[name] = Shard(name, f"{name}.{fingerprint}.jsonl", hi - lo, int(part.sum()), int(part.max()))
        plan._ranges[name] = (lo, hi)
    plan.shards = dict(sorted(plan.shards.items()))
    return plan


# ------------------------------------------------------ plan files on disk


# What json.dumps(ensure_ascii=False) escapes in a string: control
# characters, backslash (and quote). Paths without any are written as they are.
_JSON_ESCAPED = [chr(c) for c in range(32)] + ["\\"]


def shard_list_text(plan, name):
    """The text of a shard's list: one JSON object of parallel arrays,
    ``{"paths": [...], "sizes": [...], "mtimes_ns": [...]}``, in the trie's
    (hash) order: unambiguous for any file name, and written and read by
    json's C code in one call (a million images in a fraction of a second).

    The text is json.dumps's, byte for byte; the paths in the shards' order
    are taken from one numpy array, and when no path needs an escape (any
    usual tree) they are joined with '", "' instead of encoded one by one
    (a million paths: 0.1 s instead of 0.8)."""
    images = plan.selection
    members = plan.members(name)
    if plan._paths_in_order is None:
        import numpy as np

        everything = np.empty(len(images.paths), dtype=object)
        everything[:] = images.paths
        plan._paths_in_order = everything[plan._order]
    lo, hi = plan._ranges[name]
    paths = plan._paths_in_order[lo:hi].tolist()
    joined = '", "'.join(paths)
    if joined.count('"') == 2 * (len(paths) - 1) and not any(c in joined for c in _JSON_ESCAPED):
        paths_json = '["' + joined + '"]'  # only the separators' quotes: no path needs an escape
    else:
        paths_json = json.dumps(paths, ensure_ascii=False)
    sizes = json.dumps(images.sizes[members].tolist())
    mtimes = json.dumps(images.mtimes[members].tolist())
    return '{"paths": ' + paths_json + ', "sizes": ' + sizes + ', "mtimes_ns": ' + mtimes + "}\n"


@dataclass
class Entry:
    """One image of a shard list: ``path`` as the user sees it, ``file`` to open."""

    path: str
    file: str
    size: int
    mtime_ns: int


def read_shard_list(list_file, root):
    """The Entries of a shard list; files are ``root`` joined with each path."""
    with open(list_file, encoding="utf-8", errors="surrogateescape") as f:
        lists = json.load(f)
    join, norm = os.path.join, os.path.normpath
    return [
        Entry(path, norm(join(root, path)), size, mtime)
        for path, size, mtime in zip(lists["paths"], lists["sizes"], lists["mtimes_ns"])
    ]


def write_if_changed(file, text):
    """Write text atomically, but leave the file (and its mtime) alone when
    it already holds exactly that text."""
    data = text.encode("utf-8", "surrogateescape")
    try:
        with open(file, "rb") as f:
            if f.read() == data:
                return False
    except FileNotFoundError:
        pass
    with replaced(file) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return True


def write_lists(plan, plan_dir):
    """Write the lists that do not exist yet (a list's name says its
    content, so an existing one is right). Returns how many were written."""
    os.makedirs(plan_dir, exist_ok=True)
    present = set(os.listdir(plan_dir))
    written = 0
    for name, shard in plan.shards.items():
        if shard.list_name not in present:
            with replaced(os.path.join(plan_dir, shard.list_name)) as tmp:
                with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
                    f.write(shard_list_text(plan, name))
            written += 1
    return written


def write_index(plan, plan_dir):
    return write_if_changed(os.path.join(plan_dir, INDEX), json.dumps(plan.index(), indent=1) + "\n")


def remove_stale_lists(plan, plan_dir):
    """Delete the lists no shard of ``plan`` uses (only while holding
    Snakemake's lock: an earlier run's jobs might still read them)."""
    current = {shard.list_name for shard in plan.shards.values()}
    for old in os.listdir(plan_dir):
        if old.endswith(".jsonl") and old not in current:
            os.remove(os.path.join(plan_dir, old))


def write_plan(plan, plan_dir):
    """Lists and index, as a finished planning leaves them (for commands and
    tests that plan outside Snakemake). Returns the index."""
    write_lists(plan, plan_dir)
    write_index(plan, plan_dir)
    remove_stale_lists(plan, plan_dir)
    return plan.index()


def read_plan_index(plan_dir):
    with open(os.path.join(plan_dir, INDEX), encoding="utf-8") as f:
        return json.load(f)
