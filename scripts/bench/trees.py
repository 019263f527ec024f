"""The image trees the benchmark measures, generated once and cached.

* EuroSAT-like: 27,000 64x64 JPEGs (scripts/make_eurosat_like.py), or a
  fraction of it with --quick.
* Large: that tree's files hard-linked N times under new numbers (270,000 and
  999,000 images). Links cost no disk and seconds to make, where generating
  or copying 999,000 files costs minutes; each link is a file of its own to
  the workflow (its own path, its own row), with the same content.
* Heavy: a few hundred camera-sized JPEGs, PNG scans and big TIFFs
  (scripts/make_heavy_tree.py).

A tree is complete when its stamp (complete.json, written last) matches what
is wanted, including a hash of the generator's source: a tree from an older
generator, or one interrupted half-way, is made again.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from .common import SCRIPTS, say

EUROSAT_GENERATOR = os.path.join(SCRIPTS, "make_eurosat_like.py")
HEAVY_GENERATOR = os.path.join(SCRIPTS, "make_heavy_tree.py")


@dataclass(frozen=True)
class Tree:
    root: str  # the folder given as input_dir
    images: int
    bytes: int = 0
    kind: str = "eurosat"  # "eurosat" or "heavy": which targets apply

    @property
    def label(self):
        if self.kind == "heavy":
            return f"heavy tree ({self.images:,} images, {self.bytes / 1e9:.2f} GB)"
        return f"{self.images:,} images"


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _cached(base, want, make):
    """``make()`` into ``base`` unless base's stamp equals ``want``."""
    stamp = os.path.join(base, "complete.json")
    try:
        with open(stamp) as f:
            if json.load(f) == want:
                return False
    except (OSError, ValueError):
        pass
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    start = time.perf_counter()
    make()
    with open(stamp, "w") as f:
        json.dump(want, f)
    say(f"  done in {time.perf_counter() - start:.0f} s")
    return True


def _generators():
    sys.path.insert(0, SCRIPTS)
    import make_eurosat_like
    import make_heavy_tree

    return make_eurosat_like, make_heavy_tree


def eurosat(work, scale):
    """The EuroSAT-like tree at ``scale`` of the real counts."""
    gen, _ = _generators()
    images = sum(gen.class_counts(scale).values())
    # Named and stamped as the single-file benchmark did, so its cached trees still count.
    base = os.path.join(work, "trees", f"eurosat-scale{scale:g}-copies1")
    root = os.path.join(base, "EuroSAT_RGB")
    want = {"images": images, "scale": scale, "copies": 1,
            "generator_sha256": _sha256(EUROSAT_GENERATOR)}  # fmt: skip

    def make():
        say(f"generating {images:,} images under {root} (cached for later runs) ...")
        written = gen.generate(root, scale=scale)
        if written != images:
            raise RuntimeError(f"generator wrote {written} images, expected {images}")

    _cached(base, want, make)
    return Tree(root, images)


def linked(work, small, copies):
    """``small``'s files hard-linked ``copies`` times: Forest_1.jpg of a class of
    3,000 also appears as Forest_3001.jpg, Forest_6001.jpg ... as the
    generator's --copies names them."""
    images = small.images * copies
    name = os.path.basename(os.path.dirname(small.root)).removesuffix("-copies1")
    base = os.path.join(work, "trees", f"{name}-links{copies}")
    root = os.path.join(base, os.path.basename(small.root))
    with open(os.path.join(os.path.dirname(small.root), "complete.json")) as f:
        want = {"images": images, "copies": copies, "source": json.load(f)}

    def make():
        say(f"linking {images:,} images under {root} (cached for later runs) ...")
        for name in sorted(os.listdir(small.root)):
            source = os.path.join(small.root, name)
            files = os.listdir(source)
            target = os.path.join(root, name)
            os.makedirs(target)
            for file in files:
                stem, ext = os.path.splitext(file)
                cls, number = stem.rsplit("_", 1)
                for copy in range(copies):
                    new = f"{cls}_{int(number) + copy * len(files)}{ext}"
                    os.link(os.path.join(source, file), os.path.join(target, new))

    _cached(base, want, make)
    return Tree(root, images)


def heavy(work, scale):
    """The camera-sized tree at ``scale`` of its counts."""
    _, gen = _generators()
    images = len(gen.plan(scale))
    base = os.path.join(work, "trees", f"heavy-scale{scale:g}")
    root = os.path.join(base, "images")
    want = {"images": images, "scale": scale, "generator_sha256": _sha256(HEAVY_GENERATOR)}

    def make():
        say(f"generating {images:,} camera-sized images under {root} (cached for later runs) ...")
        gen.generate(root, scale=scale)

    _cached(base, want, make)
    found, size = tree_size(root)
    if found != images:
        raise RuntimeError(f"{root} holds {found} images, expected {images}")
    return Tree(root, images, size, kind="heavy")


def tree_size(root):
    """(files, bytes) under root."""
    files = size = 0
    for folder, _, names in os.walk(root):
        for name in names:
            files += 1
            size += os.stat(os.path.join(folder, name)).st_size
    return files, size


def describe_heavy(tree):
    """What the heavy tree holds, per file type, for the benchmark's output."""
    kinds = {}
    for folder, _, names in os.walk(tree.root):
        for name in names:
            ext = os.path.splitext(name)[1].lstrip(".").upper()
            count, size = kinds.get(ext, (0, 0))
            kinds[ext] = (count + 1, size + os.stat(os.path.join(folder, name)).st_size)
    parts = ", ".join(
        f"{count} {ext} ({size / count / 1e6:.1f} MB each)" for ext, (count, size) in sorted(kinds.items())
    )
    return f"{tree.images:,} images, {tree.bytes / 1e9:.2f} GB: {parts}"


def warm_up(tree):
    """Files untouched for about a minute leave the page cache here: read the images
    and import the libraries once so that no measured run pays for disk reads."""
    for folder, _, files in os.walk(tree.root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                while f.read(1 << 24):
                    pass
    subprocess.run(
        [sys.executable, "-c", "import snakemake.cli, PIL.Image, PIL.ImageStat, pandas, numpy"],
        check=True,
    )
