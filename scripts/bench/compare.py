"""Whether two runs wrote the same outputs.

A speed figure means nothing if the faster run wrote something else, so every
full run's outputs are checked against the baseline's (or a Slurm run's
against a local run's): stats.csv byte for byte, and every per-image JSON file
as parsed JSON (key order and spacing may differ, values may not).
"""

import filecmp
import json
import os

NUMERIC_COLUMNS = ("width", "height", "min", "max", "median", "mean")


def same_bytes(a, b):
    return filecmp.cmp(a, b, shallow=False)


def compare_outputs(results, baseline, images):
    """Whether ``results`` (a workflow's results/) holds what ``baseline`` holds:
    stats.csv and every images/<path>.json. Returns (identical, a sentence)."""
    wf_csv, bl_csv = os.path.join(results, "stats.csv"), os.path.join(baseline, "stats.csv")
    if same_bytes(wf_csv, bl_csv):
        same = True
        csv_said = f"stats.csv identical to the baseline CSV ({images:,} rows, byte for byte)"
    else:
        same = False
        csv_said = csv_difference(wf_csv, bl_csv)
    json_same, json_said = compare_json_files(
        os.path.join(results, "images"), os.path.join(baseline, "images")
    )
    return same and json_same, f"{csv_said}; {json_said}"


def csv_difference(wf_csv, bl_csv):
    """Say how two CSVs that differ in bytes differ: shape, or values, or only formatting."""
    import pandas as pd

    read = dict(dtype=str, keep_default_na=False, encoding="utf-8", encoding_errors="surrogateescape")
    wf, bl = pd.read_csv(wf_csv, **read), pd.read_csv(bl_csv, **read)
    if list(wf.columns) != list(bl.columns) or len(wf) != len(bl):
        return (
            f"stats.csv DIFFERS: {len(wf):,} rows x {list(wf.columns)} vs baseline "
            f"{len(bl):,} x {list(bl.columns)}"
        )
    # Equal text may still be written differently (e.g. 77 vs 77.0): compare numbers as numbers.
    numeric = [c for c in NUMERIC_COLUMNS if c in wf.columns]
    wf[numeric] = wf[numeric].apply(pd.to_numeric, errors="coerce")
    bl[numeric] = bl[numeric].apply(pd.to_numeric, errors="coerce")
    bad = ~((wf == bl) | (wf.isna() & bl.isna())).all(axis=1)
    if bad.any():
        first = int(bad.idxmax())
        return (
            f"stats.csv DIFFERS in {int(bad.sum()):,} rows, first: {wf.iloc[first].to_dict()} "
            f"vs baseline {bl.iloc[first].to_dict()}"
        )
    return "stats.csv DIFFERS in bytes (same rows and values, formatting differs)"


def json_files(folder):
    return {
        os.path.relpath(os.path.join(d, f), folder)
        for d, _, files in os.walk(folder)
        for f in files
        if f.endswith(".json")
    }


def compare_json_files(wf_dir, bl_dir):
    """(all equal, a sentence): every per-image file parsed and compared."""
    wf_files, bl_files = json_files(wf_dir), json_files(bl_dir)
    differ, keys = [], set()
    for rel in sorted(wf_files & bl_files):
        with open(os.path.join(wf_dir, rel), "rb") as a, open(os.path.join(bl_dir, rel), "rb") as b:
            x, y = a.read(), b.read()
        if x == y:
            continue
        x, y = json.loads(x), json.loads(y)
        if x != y:
            differ.append(rel)
            keys |= {k for k in x.keys() | y.keys() if x.get(k, ...) != y.get(k, ...)}
    missing, extra = bl_files - wf_files, wf_files - bl_files
    if not (differ or missing or extra):
        return True, f"all {len(bl_files):,} per-image JSON files equal"
    example = (differ or sorted(missing) or sorted(extra))[0]
    which = f", in keys {', '.join(sorted(keys))}" if keys else ""
    return False, (
        f"per-image JSON files: {len(differ):,} DIFFER{which}, {len(missing):,} missing, "
        f"{len(extra):,} extra (e.g. {example})"
    )
