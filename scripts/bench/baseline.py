#!/usr/bin/env python3
"""The floor: a bare multiprocessing.Pool writing what the workflow writes.

    python3 scripts/bench/baseline.py TREE OUT [--workers 2] [--analysis bands]
                                      [--no-per-image-files]

Computes, for every image under TREE, the same numbers as the workflow
(those of ImageStat.Stat of convert("L")) the fastest simple way: one
greyscale histogram, then running sums with C builtins (accumulate, sum,
bisect) instead of ImageStat's Python loops over the 256 bins, so that every
ratio against it is the workflow's own overhead. It writes the same
outputs: OUT/images/<path>.json per image and OUT/stats.csv sorted by path.
Nothing else: no plan, no shards, no summary, no plots. The benchmark runs
it as its own process, measured like Snakemake is.

With --analysis bands each worker calls the workflow's own bundled function,
``bands`` of scripts/imagestats/analyses/bands.py, imported once before the
workers fork (as a shard job does), on the opened image, and writes the row
the workflow writes with ``--config analysis=bands``: path, class, the
function's columns in its order, error, note; the CSV with Python's csv
writer, each cell str(value), None empty. --no-per-image-files writes only
stats.csv, as the workflow with per_image_files=false.

The row format is restated here, not imported from the workflow, so that
comparing the two outputs actually checks the workflow; only the analysis
function is the workflow's, since the benchmark measures the workflow
calling the same function. This file imports nothing from the benchmark
either: its start-up is part of what is measured.
"""

import argparse
import csv
import json
import os
import sys
from bisect import bisect_left, bisect_right
from itertools import accumulate
from multiprocessing import Pool

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The CSV's columns (brightness); the per-image files add the image file's size and mtime.
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
_function = None  # --analysis bands: the workflow's bands(), imported before the workers fork


def _init_worker(root, images_dir):
    global _root, _images_dir
    _root, _images_dir = root, images_dir


def write_json(path, row):
    """<path>.json under the images folder (None: per-image files are off)."""
    if _images_dir is None:
        return
    with open(
        os.path.join(_images_dir, path + ".json"), "w", encoding="utf-8", errors="surrogateescape"
    ) as f:
        f.write(encode(row) + "\n")


def greyscale_stats(histogram):
    """min, max, mean, median of a 256-bin histogram, the numbers ImageStat
    gives (the same integers, the same one division): on the running sums,
    the first bin above 0 is the minimum, the first reaching the count the
    maximum, the first above count // 2 the median; the sum of the pixel
    values is 256 * count - sum(running sums)."""
    running = list(accumulate(histogram))
    count = running[-1]
    low = min(bisect_right(running, 0), 255)
    high = bisect_left(running, count)
    mean = (256 * count - sum(running)) / count if count else 0
    median = min(bisect_right(running, count // 2), 255)
    return low, high, mean, median


def measure_one(path):
    """One image: the row (a tuple in COLUMNS order), also written as <path>.json."""
    from PIL import Image

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
            histogram = image.convert("L").histogram()
            row["note"] = "; ".join(notes)
        row["min"], row["max"], row["mean"], row["median"] = greyscale_stats(histogram)
    except Exception as e:  # generated trees have no bad images; keep the row anyway
        row["error"] = f"{type(e).__name__}: {e}"
    write_json(path, row)
    return tuple(row[c] for c in COLUMNS)


# ------------------------------------------------------------ --analysis bands

FIXED = ("path", "class", "error", "note")


def load_bands():
    """The workflow's bundled ``bands`` function itself (not a copy)."""
    if SCRIPTS not in sys.path:
        sys.path.insert(0, SCRIPTS)
    from imagestats.analyses.bands import bands

    return bands


def measure_with_function(path):
    """One image through ``_function``: the row as a dict (path, class, the
    function's columns in its order, error, note), also written as <path>.json
    with the image file's size and mtime_ns."""
    from PIL import Image

    file = os.path.join(_root, path)
    row = {"path": path, "class": os.path.basename(os.path.dirname(os.path.abspath(file)))}
    found = {"size": None, "mtime_ns": None}
    error = ""
    try:
        st = os.stat(file)
        found = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        with Image.open(file) as image:
            row.update(_function(image))
    except Exception as e:  # generated trees have no bad images; keep the row anyway
        error = f"{type(e).__name__}: {e}"
    row["error"], row["note"] = error, ""
    write_json(path, {**row, **found})
    return row


def header_of(rows):
    """path, class, the columns of the first row without an error (rows in
    path order) in the function's order, any other columns sorted, error, note."""
    first = next((row for row in rows if not row["error"]), {})
    columns = [key for key in first if key not in FIXED]
    columns += sorted({key for row in rows for key in row}.difference(columns, FIXED))
    return ["path", "class", *columns, "error", "note"]


def cell(value):
    """A value as stats.csv holds it: str(); None and NaN empty."""
    if value is None or (type(value) is float and value != value):
        return ""
    return str(value)


def write_rows_csv(out, rows):
    """stats.csv of row dicts (already in path order)."""
    header = header_of(rows)
    with open(out, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
        writer = csv.writer(f, lineterminator=os.linesep)
        writer.writerow(header)
        writer.writerows([cell(row.get(key)) for key in header] for row in rows)


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


def run(root, out, workers, analysis="brightness", per_image_files=True):
    global _function

    paths = list_images(root)
    images_dir = os.path.join(out, "images") if per_image_files else None
    if images_dir:
        for folder in {os.path.dirname(p) for p in paths}:  # once per folder, not per image
            os.makedirs(os.path.join(images_dir, folder), exist_ok=True)
    os.makedirs(out, exist_ok=True)
    if analysis == "bands":
        _function = load_bands()
        with Pool(workers, _init_worker, (root, images_dir)) as pool:
            rows = list(pool.imap(measure_with_function, paths, chunksize=chunk_size(paths, workers)))
        rows.sort(key=lambda row: row["path"])
        write_rows_csv(os.path.join(out, "stats.csv"), rows)
        return
    import pandas as pd

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
    parser.add_argument("--analysis", choices=("brightness", "bands"), default="brightness",
                        help="brightness (restated here) or bands (the workflow's own function)")  # fmt: skip
    parser.add_argument("--no-per-image-files", dest="per_image_files", action="store_false",
                        help="write only stats.csv (the workflow's per_image_files=false)")  # fmt: skip
    args = parser.parse_args(argv)
    run(args.tree, args.out, args.workers, args.analysis, args.per_image_files)


if __name__ == "__main__":
    main()
