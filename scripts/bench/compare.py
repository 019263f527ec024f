"""Whether two runs wrote the same outputs.

A speed figure means nothing if the faster run wrote something else, so every
full run's outputs are checked against the baseline's (or a Slurm run's
against a local run's): stats.csv byte for byte, and every per-image JSON file
as parsed JSON (key order and spacing may differ, values may not). A run
of the guide's script as the workflow's command is checked against xargs
running it: the same .txt files with the same contents.
"""

import csv
import filecmp
import json
import os
import re

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


# ------------------------------------------------------------ the command against xargs

# What the guide's image_processor.py writes per image: filename:F min:A max:B mean:C
_GUIDE_LINE = re.compile(r"^filename:(?P<filename>.*) min:(?P<min>\S+) max:(?P<max>\S+) mean:(?P<mean>\S+)\n?$", re.S)


def txt_files(folder):
    """{name: bytes} of the .txt files directly in ``folder`` (none when it is missing)."""
    if not os.path.isdir(folder):
        return {}
    found = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.endswith(".txt") and entry.is_file():
                with open(entry.path, "rb") as f:
                    found[entry.name] = f.read()
    return found


def guide_numbers(data):
    """(min, max, mean) of one image_processor.py output, or None if it is not one."""
    found = _GUIDE_LINE.match(data.decode("utf-8", "surrogateescape"))
    return None if found is None else (found["min"], found["max"], found["mean"])


def command_rows(stats_csv):
    """(rows, rows that failed) of a command run's stats.csv: failed is a
    non-zero exit_status or an error."""
    with open(stats_csv, newline="", encoding="utf-8", errors="surrogateescape") as f:
        rows = list(csv.DictReader(f))
    failed = [row for row in rows if row.get("exit_status") != "0" or row.get("error")]
    return rows, failed


def compare_command_outputs(wf_folder, wf_out, ref_out, images):
    """Whether a workflow run of the guide's script (its working folder
    ``wf_folder``, the script's output folder ``wf_out``) wrote what xargs
    running the same script wrote into ``ref_out``: one .txt per image on
    both sides, the same names, and the same contents (byte for byte, or at
    least the same min, max and mean where the filename field differs);
    and the workflow's stats.csv has a row per image, each exit status 0.
    Returns (identical, a sentence)."""
    wf, ref = txt_files(wf_out), txt_files(ref_out)
    problems = []
    if len(ref) != images:
        problems.append(f"xargs wrote {len(ref):,} .txt files for {images:,} images")
    if len(wf) != images:
        problems.append(f"the workflow wrote {len(wf):,} .txt files for {images:,} images")
    missing, extra = sorted(ref.keys() - wf.keys()), sorted(wf.keys() - ref.keys())
    if missing or extra:
        problems.append(f"names differ: {len(missing):,} missing (e.g. {(missing or ['-'])[0]}), "
                        f"{len(extra):,} extra (e.g. {(extra or ['-'])[0]})")  # fmt: skip
    common = sorted(wf.keys() & ref.keys())
    unequal = [name for name in common if wf[name] != ref[name]]
    numbers_differ = [
        name for name in unequal
        if guide_numbers(wf[name]) is None or guide_numbers(wf[name]) != guide_numbers(ref[name])
    ]  # fmt: skip
    if numbers_differ:
        name = numbers_differ[0]
        problems.append(f"{len(numbers_differ):,} files DIFFER in min/max/mean (e.g. {name}: "
                        f"{wf[name]!r} vs xargs {ref[name]!r})")  # fmt: skip
    try:
        rows, failed = command_rows(os.path.join(wf_folder, "results", "stats.csv"))
    except OSError as e:
        problems.append(f"no stats.csv ({e})")
    else:
        if len(rows) != images:
            problems.append(f"stats.csv has {len(rows):,} rows for {images:,} images")
        if failed:
            problems.append(f"stats.csv: {len(failed):,} rows with a failed command (e.g. {failed[0]})")
    if problems:
        return False, "command outputs DIFFER: " + "; ".join(problems)
    how = ("byte for byte" if not unequal else
           f"the same min, max and mean ({len(unequal):,} differ in the filename field only)")  # fmt: skip
    seconds = sorted(float(row["seconds"]) for row in rows if row.get("seconds"))
    own = (f", the command's own time (its 'seconds'): {sum(seconds):.1f} s in all, median "
           f"{1000 * seconds[len(seconds) // 2]:.0f} ms per image" if seconds else "")  # fmt: skip
    return True, (f"{len(ref):,} .txt files on each side, the same names, contents {how}; "
                  f"stats.csv: {len(rows):,} rows, every exit_status 0{own}")  # fmt: skip
