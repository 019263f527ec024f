"""Which images to measure, and how they are split into shards.

Finding the images (a folder, a manifest or a numbered pattern) and cutting
them into shards happens every time the Snakefile is parsed, so it is kept
to one directory walk (or one stat per listed file) and a hash per path.

Shards are the leaves of a binary trie over a hash of each image's path: a
leaf splits in two while it holds more than ``images_per_job`` images. The
split depends only on the set of paths, so every process that plans the
same images gets the same shards, and adding an image changes only the leaf
it hashes into (which may split): every other shard keeps its exact
membership and is not rerun. Shards hold between about half and all of
``images_per_job`` images.
"""

import bisect
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import NamedTuple

from .atomic import replaced


class ConfigError(Exception):
    """The configuration cannot work; the message says what to change."""


class Entry(NamedTuple):
    """One input image: ``path`` as the user sees it, ``file`` to open.

    A NamedTuple, not a dataclass: the plan makes one per image at every
    Snakemake start, and a frozen dataclass costs three times as much to build.
    """

    path: str
    file: str
    size: int
    mtime_ns: int


@dataclass
class Plan:
    source: str  # one line saying where the images come from
    entries: list
    images_per_job: int
    shards: dict = field(default_factory=dict)  # name -> [Entry], sorted by path


# ---------------------------------------------------------------- inputs


def find_images(config, workdir="."):
    """Entries for the images the config selects, sorted by path.

    Raises ConfigError with an actionable message when the selection cannot
    work: a missing folder or manifest, missing numbered files, no images.
    """
    if config.get("manifest") and config.get("numbered"):
        raise ConfigError(
            "config sets both 'manifest' and 'numbered': keep one of them "
            "(set the other to null)"
        )
    if config.get("manifest"):
        source, entries = _from_manifest(config["manifest"], workdir)
    elif config.get("numbered"):
        source, entries = _from_numbered(config["numbered"], workdir)
    elif config.get("input_dir"):
        source, entries = _from_folder(config["input_dir"], config["extensions"], workdir)
    else:
        raise ConfigError(
            "no images selected: set 'input_dir', 'manifest' or 'numbered' in the config"
        )
    if not entries:
        raise ConfigError(f"{source} selects no images: check the path and 'extensions'")
    entries.sort(key=lambda e: e.path)
    return source, entries


def _from_folder(input_dir, extensions, workdir):
    root = os.path.join(workdir, input_dir)
    if not os.path.isdir(root):
        raise ConfigError(
            f"input_dir '{input_dir}' is not a folder: set input_dir to the folder "
            "that holds your images (relative paths start at the working directory)"
        )
    wanted = tuple(ext.lower() for ext in extensions)
    entries = []
    # (absolute folder, its path relative to root): carrying the relative
    # prefix along is much cheaper than os.path.relpath per file.
    stack = [(os.path.abspath(root), "")]
    while stack:
        folder, rel = stack.pop()
        try:
            it = os.scandir(folder)
        except OSError as e:
            raise ConfigError(
                f"cannot list folder '{folder}' ({e.strerror}): fix its permissions "
                "or move it out of input_dir"
            ) from None
        with it:
            for d in it:
                if d.is_dir():
                    stack.append((d.path, rel + d.name + os.sep))
                elif d.name.lower().endswith(wanted):
                    try:
                        st = d.stat()
                    except OSError:  # a broken link: measured, it becomes an error row
                        st = d.stat(follow_symlinks=False)
                    entries.append(Entry(rel + d.name, d.path, st.st_size, st.st_mtime_ns))
    return f"input_dir {input_dir} (searched recursively for {', '.join(extensions)})", entries


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
    entries, missing, seen = [], [], set()
    for line in lines:
        path = line.strip()
        if not path or path.startswith("#"):
            continue
        target = os.path.normpath(os.path.join(base, path))
        if target in seen:
            continue  # the same image listed twice is measured once
        seen.add(target)
        try:
            entries.append(_entry(path, target))
        except FileNotFoundError:
            missing.append(path)
    if missing:
        raise ConfigError(
            f"manifest '{manifest}' lists {len(missing)} missing file(s): "
            f"{_shorten(missing)}; fix or remove those lines (relative lines are "
            f"relative to {base})"
        )
    _check_unique(entries)  # a folder walk or a pattern cannot repeat a path
    return f"manifest {manifest} ({len(entries)} files listed)", entries


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
    entries, missing = [], []
    for n in range(first, last + 1):
        path = pattern.format(n=n)
        try:
            entries.append(_entry(path, os.path.join(workdir, path)))
        except FileNotFoundError:
            missing.append(n)
    if missing:
        raise ConfigError(
            f"numbered pattern '{pattern}' is missing {len(missing)} of "
            f"{last - first + 1} files, numbers {_ranges(missing)}: add those files "
            "or change first/last"
        )
    return f"numbered {pattern} for n = {first}..{last}", entries


def _entry(path, file):
    st = os.stat(file)
    return Entry(path, os.path.abspath(file), st.st_size, st.st_mtime_ns)


def _check_unique(entries):
    keys = {}
    for e in entries:
        key = stats_file_key(e.path)
        if key in keys:
            raise ConfigError(
                f"'{keys[key]}' and '{e.path}' would share one per-image stats file: "
                "list each image by one path only"
            )
        keys[key] = e.path


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


def stats_file_key(path):
    """Where under results/images/ an image's stats file goes (without .json).

    The image's own path, made relative: a leading '/' is dropped and '..'
    becomes '__' so no stats file can land outside results/images/.
    """
    parts = os.path.normpath(path).split(os.sep)
    return os.sep.join("__" if p == ".." else p for p in parts if p not in ("", "."))


# ---------------------------------------------------------------- shards


def _path_hash(path):
    digest = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8)
    return int.from_bytes(digest.digest(), "big")


def make_shards(entries, images_per_job):
    """Split entries into shards: {name: [Entry, ...]}, see the module doc."""
    if images_per_job < 1:
        raise ConfigError("images_per_job must be at least 1")
    ordered = sorted(entries, key=lambda e: e.path)
    keys = [_path_hash(e.path) for e in ordered]
    hashes = sorted(keys)
    leaves = []  # (first hash of the leaf's range, name), in hash order

    def split(prefix, depth, lo, hi):
        if hi - lo <= images_per_job or depth == 64:
            name = "shard-" + (format(prefix, f"0{depth}b") if depth else "all")
            leaves.append((prefix << (64 - depth) if depth else 0, name))
            return
        middle = (prefix * 2 + 1) << (63 - depth)  # first hash of the right half
        mid = bisect.bisect_left(hashes, middle, lo, hi)
        for child, a, b in ((prefix * 2, lo, mid), (prefix * 2 + 1, mid, hi)):
            if b > a:
                split(child, depth + 1, a, b)

    if hashes:
        split(0, 0, 0, len(hashes))
    # The leaves cover every hash that occurs, so each image belongs to the
    # last leaf starting at or below its hash. Walking the images in path
    # order leaves every shard sorted by path without sorting it again.
    starts = [start for start, _ in leaves]
    members = [[] for _ in leaves]
    for e, key in zip(ordered, keys):
        members[bisect.bisect_right(starts, key) - 1].append(e)
    return dict(sorted((name, m) for (_, name), m in zip(leaves, members)))


def make_plan(config, workdir="."):
    source, entries = find_images(config, workdir)
    plan = Plan(source, entries, config["images_per_job"])
    plan.shards = make_shards(entries, plan.images_per_job)
    return plan


# ------------------------------------------------------ plan files on disk


# JSON string quoting as json.dumps(..., ensure_ascii=False) does it, without
# building an encoder for every line (a third of the planning time).
_quote = json.encoder.encode_basestring


def shard_list_text(entries):
    """The text of a shard list: one JSON array per image (unambiguous for
    any file name); it holds size and mtime so a changed image reruns its shard."""
    return "".join(
        f"[{_quote(e.path)}, {_quote(e.file)}, {e.size}, {e.mtime_ns}]\n" for e in entries
    )


def read_shard_list(file):
    with open(file, encoding="utf-8", errors="surrogateescape") as f:
        return [Entry(*json.loads(line)) for line in f]


def write_if_changed(file, text):
    """Write text atomically, but leave the file (and its mtime) alone when
    it already holds exactly that text: an unchanged shard stays done."""
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


def write_plan(plan, plan_dir):
    """Write one list per shard and an index; drop lists of vanished
    shards. Returns the index (a dict, as read_plan_index gives it)."""
    os.makedirs(plan_dir, exist_ok=True)
    for name, entries in plan.shards.items():
        write_if_changed(os.path.join(plan_dir, f"{name}.jsonl"), shard_list_text(entries))
    index = {
        "source": plan.source,
        "images": len(plan.entries),
        "images_per_job": plan.images_per_job,
        "shards": {name: len(v) for name, v in plan.shards.items()},
    }
    write_if_changed(os.path.join(plan_dir, "index.json"), json.dumps(index, indent=1) + "\n")
    current = {f"{name}.jsonl" for name in plan.shards}
    for old in os.listdir(plan_dir):
        if old.endswith(".jsonl") and old not in current:
            os.remove(os.path.join(plan_dir, old))
    return index


def read_plan_index(plan_dir):
    with open(os.path.join(plan_dir, "index.json"), encoding="utf-8") as f:
        return json.load(f)
