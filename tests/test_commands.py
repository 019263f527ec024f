"""The commands the rules run after the shards, used on their own."""

import csv
import json
import random
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import SCRIPTS, as_numbers, check_png, read_stats, reference
from imagestats import aggregate, plots, statscsv
from imagestats.aggregate import AggregateError
from imagestats.figures import BRIGHTNESS, FIGURES
from imagestats.stats import Stats, read_stats_csv
from imagestats.plan import make_plan, write_plan
from imagestats.shard import run_shard
from imagestats.table import encode_row

HEADER = ["path", "class", "width", "height", "mode", "min", "max", "mean", "median", "error", "note"]
COLUMNS = tuple(HEADER)  # brightness's


def _measured(tmp_path, tree):
    """A plan and its shard tables for ``tree``, as a run leaves them."""
    plan = make_plan({"input_dir": str(tree), "extensions": [".jpg"], "images_per_job": 8})
    index = write_plan(plan, tmp_path / "results" / "plan")
    (tmp_path / "results" / "shards").mkdir(parents=True)
    for name in plan.shards:
        with open(tmp_path / "logs.txt", "a") as log:
            run_shard(
                tmp_path / "results" / "plan" / index.get("lists", {}).get(name, f"{name}.jsonl"),
                tmp_path / "results" / "shards" / f"{name}.jsonl",
                tmp_path / "results" / "images", "record", 89478485, log,
                csv_file=tmp_path / "results" / "shards" / f"{name}.csv",
            )  # fmt: skip
    return plan


def _aggregated(tmp_path, tree):
    """A plan, its shard tables and results/stats.csv for ``tree``."""
    plan = _measured(tmp_path, tree)
    aggregate.write_stats_csv(tmp_path / "results" / "plan", tmp_path / "results" / "shards",
                              tmp_path / "results" / "stats.csv")  # fmt: skip
    return plan


def _run(script, *args, cwd):
    return subprocess.run(
        [sys.executable, str(SCRIPTS / script), *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_aggregate_reads_every_table_the_plan_names(tmp_path, small_tree):
    plan = _measured(tmp_path, small_tree)
    assert len(plan.shards) > 1
    done = _run("aggregate_stats.py", "results/plan", "results/shards", "--csv",
                "results/stats.csv", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    files = sorted(small_tree.rglob("*.jpg"))
    rows = read_stats(tmp_path)
    assert list(rows[0]) == HEADER
    assert [r["path"] for r in rows] == sorted(str(f.relative_to(small_tree)) for f in files)
    for row in rows:
        assert as_numbers(row) == reference(small_tree / row["path"]), row["path"]
    assert done.stderr.startswith(f"{len(files)} images, 0 with errors")


SUMMARY_FILES = ("summary.csv", "errors.csv", "summary.html", "errors.html")
FIGURE_FILES = ("b.png", "m.png", "o.png")


def _summarize(folder, *extra, cwd):
    """summarize_stats.py on results/stats.csv under ``cwd``, writing
    every summary file and figure into ``folder``."""
    names = ("--summary", "--errors", "--summary-html", "--errors-html",
             "--brightness-by-class", "--min-max", "--outliers")  # fmt: skip
    files = [folder / name for name in SUMMARY_FILES + FIGURE_FILES]
    args = [arg for option, file in zip(names, files) for arg in (option, file)]
    return _run("summarize_stats.py", "results/stats.csv", *args, *extra, cwd=cwd)


def test_summary_and_figures_are_the_same_bytes_with_one_or_more_processes(tmp_path, small_tree):
    """With --jobs 2 or 3 a forked process reads stats.csv and writes the
    summary while the figures' library loads, and the figures are drawn
    side by side: every file is byte for byte what one process writes."""
    _aggregated(tmp_path, small_tree)
    for jobs in (1, 2, 3):
        out = tmp_path / f"jobs{jobs}"
        out.mkdir()
        done = _summarize(out, "--jobs", jobs, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "10 classes, 40 images, 0 with errors ->" in done.stderr
        assert done.stderr.rstrip().splitlines()[-1].startswith("40 images ->")
    for name in SUMMARY_FILES + FIGURE_FILES:
        serial = (tmp_path / "jobs1" / name).read_bytes()
        assert (tmp_path / "jobs2" / name).read_bytes() == serial, name
        assert (tmp_path / "jobs3" / name).read_bytes() == serial, name
    for name in FIGURE_FILES:
        check_png(tmp_path / "jobs1" / name)
    assert not list(tmp_path.rglob("*.tmp*"))  # no temporary file left behind
    with open(tmp_path / "jobs1" / "summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    assert [r["class"] for r in summary] == sorted(p.name for p in small_tree.iterdir()) + ["ALL"]
    assert summary[-1]["images"] == "40" and summary[-1]["errors"] == "0"


def test_summarize_needs_every_output_named(tmp_path, small_tree):
    _aggregated(tmp_path, small_tree)
    done = _run("summarize_stats.py", "results/stats.csv", "--summary", "s.csv", cwd=tmp_path)
    assert done.returncode == 2 and "the following arguments are required: --errors" in done.stderr
    assert not (tmp_path / "s.csv").exists()


def test_aggregate_writes_the_csv_alone_without_numpy(tmp_path, small_tree):
    """The like-for-like target (stats.csv alone) pays for no numpy import."""
    _measured(tmp_path, small_tree)
    script = SCRIPTS / "aggregate_stats.py"
    probe = (
        "import runpy, sys; sys.argv = [sys.argv[1], 'results/plan', 'results/shards', '--csv', 'x.csv']; "
        "runpy.run_path(sys.argv[0], run_name='__main__'); print(sorted(m for m in sys.modules if m == 'numpy'))"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(script)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert (tmp_path / "x.csv").read_bytes().startswith(b"path,class,width,height,mode,")


@pytest.mark.parametrize("fault", ["missing", "out of order"])
def test_aggregate_names_a_missing_or_damaged_shard_file_and_writes_nothing(tmp_path, small_tree, fault):
    plan = _measured(tmp_path, small_tree)
    shard = tmp_path / "results" / "shards" / f"{sorted(plan.shards)[-1]}.csv"
    if fault == "missing":
        shard.unlink()
        expected = "is missing: rerun the workflow, which writes that shard's files again"
    else:
        header, *rows = shard.read_text().splitlines(keepends=True)
        shard.write_text("".join([header, *reversed(rows)]))
        expected = "is damaged: delete it and rerun the workflow (a row out of order or without 11 cells)"
    done = _run("aggregate_stats.py", "results/plan", "results/shards", "--csv",
                "results/stats.csv", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == f"aggregate_stats: shard file results/shards/{shard.name} {expected}"
    assert not (tmp_path / "results" / "stats.csv").exists()


def test_summarize_keeps_a_class_named_na_and_warns_about_one_named_all(tmp_path):
    rows = [
        _row("ALL/a.jpg", min=10, max=20, mean=15.5, median=15),
        _row("Forest/bad.jpg", error="empty file"),
        _row("Forest/f.jpg", min=30, max=90, mean=60.25, median=61),
        _row("NA/NA.jpg", min=0, max=255, mean=100.0, median=99),  # a class named NA stays a class
    ]
    plan, shards = _write_tables(tmp_path / "results", [rows[:2], rows[2:]])
    aggregate.write_stats_csv(plan, shards, tmp_path / "results" / "stats.csv")
    done = _summarize(tmp_path, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "a class folder is named 'ALL'" in done.stderr
    with open(tmp_path / "summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    assert [r["class"] for r in summary] == ["ALL", "Forest", "NA", "ALL"]
    forest = summary[1]
    assert (forest["images"], forest["ok"], forest["errors"]) == ("2", "1", "1")
    assert (forest["min_of_min"], forest["max_of_max"], forest["mean_of_mean"]) == ("30", "90", "60.25")
    assert (summary[2]["images"], summary[2]["min_of_min"]) == ("1", "0")
    assert (summary[3]["images"], summary[3]["errors"]) == ("4", "1")
    with open(tmp_path / "errors.csv", newline="") as f:
        assert list(csv.reader(f)) == [["path", "class", "error"], ["Forest/bad.jpg", "Forest", "empty file"]]


@pytest.mark.parametrize("failing", FIGURES[BRIGHTNESS])
def test_a_figure_failing_in_any_process_is_named_and_the_others_drawn(tmp_path, monkeypatch, failing):
    stats = Stats.from_rows([_row("A/1.jpg", mean=10.0), _row("A/2.jpg", mean=20.0)], keep_paths=True)

    def broken(*args):
        raise RuntimeError("no ink")

    monkeypatch.setattr(plots, failing, broken)  # the forked processes inherit it
    outputs = {name: tmp_path / f"{name}.png" for name in FIGURES[BRIGHTNESS]}
    with pytest.raises(plots.FigureFailed, match=f"could not draw {failing} "):
        plots.draw_all(stats, outputs, jobs=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{name}.png" for name in FIGURES[BRIGHTNESS] if name != failing
    )


# ------------------------------------------- stats.csv as pandas wrote it


def _row(path, cls=None, *, mean=None, error="", note="", **numbers):
    """A table row as a shard writes it (size and mtime_ns too)."""
    row = dict.fromkeys(COLUMNS)
    row.update(path=path, error=error, note=note, size=2048, mtime_ns=1_700_000_000_123_456_789)
    row["class"] = path.split("/")[0] if cls is None else cls
    if not error:
        row.update(width=64, height=48, mode="RGB", min=3, max=250, median=100)
        row["mean"] = mean
    row.update(numbers)
    return row


# File names, classes, errors and numbers the CSV must write as pandas did:
# quoting, undecodable bytes, numbers of error rows left empty, NA kept.
NASTY = [
    _row("Forest/plain.jpg", mean=101.23456789012345),
    _row("Forest/a,comma.jpg", mean=0.0),
    _row('Forest/a "quote".jpg', mean=255.0),
    _row("Forest/new\nline.jpg", mean=1 / 3),
    _row("Forest/carriage\rreturn.jpg", mean=1e-05),
    _row("Forest/ tab\tand space .jpg", mean=12.5),
    _row("Forest/Caf\udce9.jpg", mean=99.99999999999999),  # a Latin-1 byte, as os functions give it
    _row("Forest/back\\slash.jpg", mean=42.0),
    _row("Forest/ünïcödé 🎉.jpg", mean=7.000000000000001),
    _row("NA/NA.jpg", mean=100.0),
    _row("Sea,Lake/x.jpg", mean=60.25),
    _row("Forest/empty.jpg", error="empty file (0 bytes): copy the image again from its source"),
    _row("River/cut.jpg", error='truncated or damaged image data (image file is truncated, "3 bytes"): copy it again',
         width=64, height=64, mode="RGB"),  # fmt: skip
    _row("River/anim.gif", mean=80.5, note="first of 3 frames measured"),
    _row("River/deep.tif", mean=3.0, mode="I;16", note="values 0..40000 clipped to 0..255 by convert('L')"),
    _row("River/nan.jpg", mean=float("nan")),  # NaN in a table: empty in the CSV
    _row("River/int.jpg", mean=15),  # an int where others are floats: 15, the value returned
]


def _pandas_csv(rows, out):
    """stats.csv as pandas writes the rows' values as they are (object
    columns: no int column turned float): each cell str(value), None and
    NaN empty."""
    frame = pd.DataFrame({c: pd.Series([row.get(c) for row in rows], dtype=object) for c in COLUMNS})
    frame = frame.sort_values("path", kind="stable", ignore_index=True)
    frame.to_csv(out, index=False, encoding="utf-8", errors="surrogateescape")


def _write_tables(folder, tables, extra_keys=True):
    """A plan index, shard tables holding ``tables`` (lists of rows, each
    table in the order given) and their CSV lines, as a shard writes them."""
    (folder / "plan").mkdir(parents=True, exist_ok=True)
    (folder / "shards").mkdir(exist_ok=True)
    names = [f"shard-{i:03b}" for i in range(len(tables))]
    index = {"images": sum(map(len, tables)), "shards": {n: len(t) for n, t in zip(names, tables)}}
    (folder / "plan" / "index.json").write_text(json.dumps(index))
    for name, rows in zip(names, tables):
        if not extra_keys:
            rows = [{k: v for k, v in row.items() if k in COLUMNS} for row in rows]
        lines = [encode_row(row) for row in rows]
        text = "".join(line + "\n" for line in lines)
        (folder / "shards" / f"{name}.jsonl").write_bytes(text.encode("utf-8", "surrogateescape"))
        csv_text = statscsv.shard_csv_text(lines)
        (folder / "shards" / f"{name}.csv").write_bytes(csv_text.encode("utf-8", "surrogateescape"))
    return folder / "plan", folder / "shards"


@pytest.mark.parametrize("order", ["by path", "shuffled"])
def test_stats_csv_is_byte_for_byte_what_pandas_wrote(tmp_path, monkeypatch, order):
    """Rows merged from several tables, in path order or not (a table in
    any order is sorted), in batches and blocks small enough to cross
    every boundary; the size and mtime_ns keys of a row are dropped."""
    monkeypatch.setattr(aggregate, "BATCH", 5)
    monkeypatch.setattr(statscsv, "BATCH", 5)
    monkeypatch.setattr("imagestats.stats.BATCH", 5)
    rng = random.Random(order)
    rows = NASTY + [_row(f"Gen{rng.randrange(4)}/{rng.random()}.jpg", mean=rng.uniform(0, 255))
                    for _ in range(200)]  # fmt: skip
    tables = [[], [], [], []]
    for row in rows:
        rng.choice(tables).append(row)
    for table in tables:
        table.sort(key=lambda r: r["path"]) if order == "by path" else rng.shuffle(table)
    plan, shards = _write_tables(tmp_path / "results", tables)
    _pandas_csv(rows, tmp_path / "pandas.csv")
    aggregate.write_stats_csv(plan, shards, tmp_path / "stats.csv")
    assert (tmp_path / "stats.csv").read_bytes() == (tmp_path / "pandas.csv").read_bytes()

    # What summarize_stats reads back from it: the rows' own numbers and
    # names, a bare carriage return in a file name included.
    stats = read_stats_csv(tmp_path / "stats.csv", keep_paths=True)
    ordered = sorted(rows, key=lambda r: r["path"])
    assert [stats.path(i) for i in range(len(stats))] == [r["path"] for r in ordered]
    assert [e[0] for e in stats.errors] == ["Forest/empty.jpg", "River/cut.jpg"]
    assert stats.classes == sorted({r["class"] for r in rows})
    expected = Stats.from_rows(ordered, keep_paths=True)
    for column in ("cls", "failed", "noted", "low", "high", "mean", "median"):
        np.testing.assert_array_equal(getattr(stats, column), getattr(expected, column), strict=True)  # NaN == NaN
    assert stats.errors == expected.errors

    # The tables without the two file keys: the same CSV.
    plan, shards = _write_tables(tmp_path / "without", tables, extra_keys=False)
    aggregate.write_stats_csv(plan, shards, tmp_path / "without.csv")
    assert (tmp_path / "without.csv").read_bytes() == (tmp_path / "pandas.csv").read_bytes()


def test_an_image_in_two_tables_or_a_missing_row_writes_nothing(tmp_path):
    rows = [_row(f"A/{i}.jpg", mean=float(i)) for i in range(6)]
    plan, shards = _write_tables(tmp_path / "twice", [rows[:4], rows[2:]])
    index = json.loads((plan / "index.json").read_text())
    index["images"] = 6
    (plan / "index.json").write_text(json.dumps(index))
    with pytest.raises(AggregateError, match=r"2 image\(s\) appear in two shards, e.g. \['A/2.jpg', 'A/3.jpg'\]"):
        aggregate.write_stats_csv(plan, shards, tmp_path / "stats.csv")
    index["images"] = 9
    (plan / "index.json").write_text(json.dumps(index))
    plan, shards = _write_tables(tmp_path / "short", [rows[:3], rows[3:]])
    (plan / "index.json").write_text(json.dumps({**index, "shards": {"shard-000": 3, "shard-001": 3}}))
    with pytest.raises(AggregateError, match="the shard tables hold 6 rows, the plan has 9 images"):
        aggregate.write_stats_csv(plan, shards, tmp_path / "stats.csv")
    assert not list(tmp_path.glob("stats.csv*"))


@pytest.mark.parametrize("jobs", [1, 2])
def test_summarize_names_a_damaged_stats_csv_and_writes_nothing(tmp_path, small_tree, jobs):
    """With --jobs 2 a forked process reads the CSV: its error is the same."""
    _aggregated(tmp_path, small_tree)
    csv_file = tmp_path / "results" / "stats.csv"
    text = csv_file.read_text()
    csv_file.write_text(text[: text.index("\n", len(text) // 2)] + "\nForest/cut.jpg,Forest,64\n")
    done = _summarize(tmp_path, "--jobs", jobs, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "summarize_stats: results/stats.csv is damaged: delete it and rerun the workflow, "
        "which writes it again (a row has not 11 cells)"
    )
    assert not list(tmp_path.glob("*.png*")) and not list(tmp_path.glob("*.csv*"))
