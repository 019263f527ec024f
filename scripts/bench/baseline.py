#!/usr/bin/env python3
"""The floor: a bare multiprocessing.Pool writing what the workflow writes.

    python3 scripts/bench/baseline.py TREE OUT [--workers 2]

Computes, for every image under TREE, the same numbers as the workflow
(ImageStat.Stat of convert("L")) and writes the same outputs: OUT/images/
<path>.json per image and OUT/stats.csv sorted by path. Nothing else: no
plan, no shards, no summary, no plots. The benchmark runs it as its own
process, measured like Snakemake is.

The row format is restated here, not imported from the workflow, so that
comparing the two outputs actually checks the workflow. This file imports
nothing from the benchmark either: its start-up is part of what is measured.
"""

import argparse
import json
import os
from multiprocessing import Pool

# The CSV's columns; the per-image files add the image file's size and mtime.
COLUMNS = ("path", "class", "width", "height", "mode", "min", "max", "mean", "median", "error", "note")
FILE_KEYS = COLUMNS + ("size", "mtime_ns")
INT_COLUMNS = ("width", "height", "min", "max", "median")
EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp")
# Modes whose values can exceed 0..255, which convert("L") clips: the
# workflow notes that, and so must we to write the same rows.
WIDE_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}

encode = json.JSONEncoder(ensure_ascii=False).encode


def list_images(root):
    """Paths relative to root of every image file, sorted."""
    paths = []
    for folder, _, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        prefix = "" if rel == "." else rel + os.sep
        paths.extend(prefix + name for name in files if name.lower().endswith(EXTENSIONS))
    paths.sort()
    return paths


_root = _images_dir = None


def _init_worker(root, images_dir):
    global _root, _images_dir
    _root, _images_dir = root, images_dir


def measure_one(path):
    """One image: the row (a tuple in COLUMNS order), also written as <path>.json."""
    from PIL import Image, ImageStat

    file = os.path.join(_root, path)
    row = dict.fromkeys(FILE_KEYS)
    row.update(path=path, error="", note="")
    row["class"] = os.path.basename(os.path.dirname(file))
    try:
        st = os.stat(file)
        row["size"], row["mtime_ns"] = st.st_size, st.st_mtime_ns
        with Image.open(file) as image:
            row["width"], row["height"] = image.size
            row["mode"] = image.mode
            notes = []
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                notes.append(f"first of {frames} frames measured")
            if image.mode in WIDE_MODES:
                low, high = image.getextrema()
                if low < 0 or high > 255:
                    notes.append(f"values {low}..{high} clipped to 0..255 by convert('L')")
            stats = ImageStat.Stat(image.convert("L"))
            row["note"] = "; ".join(notes)
        ((row["min"], row["max"]),) = stats.extrema
        (row["mean"],) = stats.mean
        (row["median"],) = stats.median
    except Exception as e:  # generated trees have no bad images; keep the row anyway
        row["error"] = f"{type(e).__name__}: {e}"
    with open(
        os.path.join(_images_dir, path + ".json"), "w", encoding="utf-8", errors="surrogateescape"
    ) as f:
        f.write(encode(row) + "\n")
    return tuple(row[c] for c in COLUMNS)


def chunk_size(paths, workers):
    """Images per task sent to a worker.

    Big enough that the pickling round trip per chunk is noise against ~0.3 ms
    per small image, small enough that the last chunks leave no core idle for
    long. The benchmark's trees of under a thousand images are of heavy ones
    (tens of ms each, uneven): one at a time balances best there.
    """
    if len(paths) < 1000:
        return 1
    return max(1, min(256, len(paths) // (workers * 32)))


def run(root, out, workers):
    import pandas as pd

    paths = list_images(root)
    images_dir = os.path.join(out, "images")
    for folder in {os.path.dirname(p) for p in paths}:  # once per folder, not per image
        os.makedirs(os.path.join(images_dir, folder), exist_ok=True)
    with Pool(workers, _init_worker, (root, images_dir)) as pool:
        rows = list(pool.imap(measure_one, paths, chunksize=chunk_size(paths, workers)))
    frame = pd.DataFrame.from_records(rows, columns=list(COLUMNS))
    # Nullable ints, as the workflow writes them (an error row has no numbers).
    frame = frame.astype({c: "Int64" for c in INT_COLUMNS}).astype({"mean": "float64"})
    frame = frame.sort_values("path", kind="stable", ignore_index=True)
    frame.to_csv(
        os.path.join(out, "stats.csv"), index=False, encoding="utf-8", errors="surrogateescape"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", help="folder of images (the workflow's input_dir)")
    parser.add_argument("out", help="folder to write images/ and stats.csv into")
    parser.add_argument("--workers", type=int, default=2, help="pool size (default 2)")
    args = parser.parse_args(argv)
    run(args.tree, args.out, args.workers)


if __name__ == "__main__":
    main()
