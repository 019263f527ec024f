"""Results people look at: summary.csv, errors.csv, the plots, the report,
and the progress line (issue 4).

One module-scoped workflow run on a small generated tree with broken files
feeds the end-to-end tests; summary, plots and progress also have unit
tests that need no Snakemake.
"""

import base64
import io
import os
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import REPO, check_png, generate, snakemake
from imagestats import plots, summary
from imagestats.stats import Stats
from imagestats.progress import ProgressMonitor, format_duration
from imagestats.version import VERSION

PLOTS = ("brightness_by_class", "min_max", "outliers")

# Broken files the run must list in errors.csv, and nothing else.
BROKEN = {
    "Forest/empty.jpg": "empty file",
    "River/truncated.jpg": None,  # Pillow's wording varies; any error will do
    "SeaLake/notes.jpg": "not an image",
    "Unreadable/only.jpg": "not an image",  # a class with no measured image
}

# A sentence from each caption, which the report must show.
CAPTIONS = {
    "workflow.rst": "Brightness statistics per image, per class and overall.",
    "summary.rst": "the darkest and brightest pixel of any",
    "errors.rst": "An empty table (header only) means every image was measured.",
    "brightness_by_class.rst": "so classes brighter or darker than",
    "min_max.rst": "clipped images along the edges",
    "outliers.rst": "errors are files",
}


def make_tree(root):
    generate(str(root), per_class=4, workers=2)
    (root / "Forest" / "empty.jpg").write_bytes(b"")
    whole = (root / "River" / "River_1.jpg").read_bytes()
    (root / "River" / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    (root / "SeaLake" / "notes.jpg").write_text("field notes, not a picture\n")
    (root / "Unreadable").mkdir()
    (root / "Unreadable" / "only.jpg").write_text("nope\n")
    # A flat white image: far brighter than the rest of its class.
    Image.new("RGB", (64, 64), (255, 255, 255)).save(root / "Forest" / "white.jpg")
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(workdir, tree, stderr of the run): the whole workflow, then the report."""
    base = tmp_path_factory.mktemp("report")
    tree = make_tree(base / "EuroSAT_RGB")
    workdir = base / "work"
    workdir.mkdir()
    config = (f"input_dir={tree}", "images_per_job=20")
    result = snakemake(workdir, "--cores", "2", config=config)
    # The same config: another one would plan other shards than were run.
    snakemake(workdir, "--report", "report.html", config=config)
    return workdir, tree, result.stderr


def read_csv(file):
    return pd.read_csv(file, keep_default_na=False, na_values=[""])


# ------------------------------------------------------------ summary.csv


def expected_summary(stats):
    """The summary redone from stats.csv with plain pandas: a check of the
    plumbing, since it shares pandas' definitions with summary.py (the
    numbers have their own oracle below)."""
    rows = []
    groups = [(name, g) for name, g in stats.groupby("class", sort=True)]
    for name, g in groups + [("ALL", stats)]:
        ok = g[g["error"] == ""]
        m = ok["mean"]
        q1, q3 = m.quantile(0.25), m.quantile(0.75)
        rows.append({
            "class": name,
            "images": len(g),
            "ok": len(ok),
            "errors": int((g["error"] != "").sum()),
            "error_share": (g["error"] != "").mean(),
            "notes": int((g["note"] != "").sum()),
            "min_of_min": ok["min"].min(),
            "max_of_max": ok["max"].max(),
            "mean_of_mean": m.mean(),
            "median_of_mean": m.median(),
            "sd_of_mean": m.std(),
            "p05_of_mean": m.quantile(0.05),
            "p25_of_mean": q1,
            "p75_of_mean": q3,
            "p95_of_mean": m.quantile(0.95),
            "mean_of_median": ok["median"].mean(),
            "outliers": int(((m < q1 - 1.5 * (q3 - q1)) | (m > q3 + 1.5 * (q3 - q1))).sum()),
        })  # fmt: skip
    return pd.DataFrame(rows)


def _stats(**columns):
    """Stats of rows given as columns (lists), in path order."""
    names = list(columns)
    return Stats.from_rows(dict(zip(names, values)) for values in zip(*columns.values()))


def test_summary_numbers_against_the_statistics_module():
    """An oracle that shares no code or library with summary.py: Python's
    statistics module on a hand-made class (the test above checks the
    plumbing: grouping, columns, the ALL row, the CSV round trip)."""
    means = [12.5, 20.0, 31.0, 40.0, 41.5, 200.0]
    stats = _stats(
        path=[f"A/{i}.jpg" for i in range(7)],
        **{"class": ["A"] * 7},
        min=[1, 2, 3, 4, 5, 150, None],
        max=[50, 60, 70, 80, 90, 250, None],
        mean=means + [None],
        median=[12, 20, 31, 40, 41, 201, None],
        error=[""] * 6 + ["empty file"],
        note=[""] * 5 + ["first of 2 frames measured", ""],
    )  # fmt: skip
    row = summary.summary_rows(stats)[0]
    assert row["class"] == "A"
    q = statistics.quantiles(means, n=20, method="inclusive")  # q[i]: the (i+1)*5th percentile
    q1, q3 = q[4], q[14]
    fence_low, fence_high = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
    assert (row["images"], row["ok"], row["errors"], row["notes"]) == (7, 6, 1, 1)
    assert row["error_share"] == pytest.approx(1 / 7)
    assert (row["min_of_min"], row["max_of_max"]) == (1, 250)
    assert row["mean_of_mean"] == pytest.approx(statistics.fmean(means))
    assert row["median_of_mean"] == pytest.approx(statistics.median(means))
    assert row["sd_of_mean"] == pytest.approx(statistics.stdev(means))
    assert [row[f"p{p:02d}_of_mean"] for p in (5, 25, 75, 95)] == pytest.approx(
        [q[0], q1, q3, q[18]]
    )
    assert row["mean_of_median"] == pytest.approx(statistics.fmean([12, 20, 31, 40, 41, 201]))
    assert row["outliers"] == sum(not fence_low <= m <= fence_high for m in means) == 1


@pytest.mark.parametrize("seed", range(4))
def test_summary_numbers_are_pandas_numbers_bit_for_bit(seed):
    """summary.py computes without pandas what pandas computed before
    (summary.csv compared byte for byte in the benchmark): every number
    equal, not approximately, on classes of every size from 0 measured
    images to thousands, with errors and ties."""
    rng = np.random.default_rng(seed)
    sizes = [1, 2, 3, 5, 17, 600, 4001] + list(rng.integers(1, 300, 5))
    rows = []
    for c, size in enumerate(sizes):
        for i in range(size):
            failed = rng.random() < 0.05 or (c == 0)  # class 0: every image failed
            mean = None if failed else float(rng.choice([rng.uniform(0, 255), rng.normal(90, 40), 255.0]))
            rows.append({
                "path": f"C{c:02d}/{i}.jpg", "class": f"C{c:02d}",
                "min": None if failed else int(rng.integers(0, 128)),
                "max": None if failed else int(rng.integers(128, 256)),
                "mean": None if failed or mean is None else min(255.0, max(0.0, mean)),
                "median": None if failed else int(rng.integers(0, 256)),
                "error": "broken" if failed else "", "note": "n" if rng.random() < 0.01 else "",
            })  # fmt: skip
    rows.sort(key=lambda r: r["path"])
    frame = pd.DataFrame(rows).astype({"min": "Int64", "max": "Int64", "median": "Int64", "mean": "float64"})
    want = expected_summary(frame)
    got = pd.DataFrame(summary.summary_rows(Stats.from_rows(rows)))
    assert list(got.columns) == list(summary.SUMMARY_COLUMNS) == list(want.columns)
    for column in want.columns:
        for a, b in zip(got[column], want[column]):
            missing = pd.isna(a), pd.isna(b)
            assert missing[0] == missing[1] and (missing[0] or a == b), (column, a, b)


def test_plots_name_the_farthest_outliers_and_equally_far_ones_in_path_order():
    # Median 52: 104 and 0 are equally far from it, and so are the two 300s.
    means = np.array([50.0, 51.0, 52.0, 53.0, 54.0] * 4 + [104.0, 0.0, 300.0, 300.0])
    bad = summary.outlier_mask(means)
    assert np.flatnonzero(bad).tolist() == [20, 21, 22, 23]
    assert plots._most_extreme(means, bad, 3).tolist() == [22, 23, 20]
    assert plots._most_extreme(means, bad, 9).tolist() == [22, 23, 20, 21]


def test_summary_matches_pandas_on_stats_csv(run):
    workdir, tree, _ = run
    stats = pd.read_csv(workdir / "results" / "stats.csv", keep_default_na=False,
                        na_values={c: [""] for c in ("min", "max", "mean", "median")})  # fmt: skip
    got = read_csv(workdir / "results" / "summary.csv")
    want = expected_summary(stats)
    assert list(got.columns) == list(want.columns)
    assert list(got["class"]) == sorted(p.name for p in tree.iterdir()) + ["ALL"]
    pd.testing.assert_frame_equal(got, want, check_dtype=False, check_exact=True)

    by_class = got.set_index("class")
    assert by_class.loc["ALL", "images"] == 40 + len(BROKEN) + 1
    assert by_class.loc["ALL", "errors"] == len(BROKEN)
    assert by_class.loc["Forest", ["images", "ok", "errors"]].tolist() == [6, 5, 1]
    assert by_class.loc["Forest", "max_of_max"] == 255
    assert by_class.loc["Forest", "outliers"] == 1  # the white image
    # A class whose only image is broken has counts but no statistics.
    unreadable = by_class.loc["Unreadable"]
    assert unreadable[["images", "ok", "errors", "error_share"]].tolist() == [1, 0, 1, 1.0]
    assert unreadable[["min_of_min", "mean_of_mean", "sd_of_mean"]].isna().all()


def test_errors_csv_lists_exactly_the_broken_files(run):
    workdir, _, _ = run
    errors = read_csv(workdir / "results" / "errors.csv")
    assert list(errors.columns) == ["path", "class", "error"]
    assert sorted(errors["path"]) == sorted(BROKEN)
    for row in errors.itertuples(index=False):
        assert row[1] == row[0].split("/")[0]
        assert row[2] and (BROKEN[row[0]] is None or BROKEN[row[0]] in row[2])
    page = (workdir / "results" / "errors.html").read_text()
    assert all(path in page for path in BROKEN)


# ------------------------------------------------------------------ plots


def test_plots_are_valid_pngs_of_sensible_size(run):
    workdir, _, _ = run
    for name in PLOTS:
        check_png(workdir / "results" / "plots" / f"{name}.png")


def test_plots_survive_a_run_where_every_image_failed(tmp_path):
    stats = _stats(
        path=["A/1.jpg", "B/2.jpg"], **{"class": ["A", "B"]}, min=[None] * 2, max=[None] * 2,
        mean=[None] * 2, median=[None] * 2, error=["broken", "broken"], note=["", ""],
    )  # fmt: skip
    outputs = {name: tmp_path / f"{name}.png" for name in PLOTS}
    plots.draw_all(stats, outputs)
    for file in outputs.values():
        check_png(file)
    assert [row["errors"] for row in summary.summary_rows(stats)] == [1, 1, 2]
    assert stats.errors == [("A/1.jpg", "A", "broken"), ("B/2.jpg", "B", "broken")]
    assert "No errors" in summary.errors_html([], 0)


# ----------------------------------------------------------------- report


def test_report_embeds_plots_tables_and_captions(run):
    workdir, _, _ = run
    page = (workdir / "report.html").read_text(encoding="utf-8")
    embedded = {
        m.group(1): base64.b64decode(m.group(2))
        for m in re.finditer(r"filename=([^;]+);base64,([A-Za-z0-9+/=]+)", page)
    }
    for name in PLOTS:
        png = workdir / "results" / "plots" / f"{name}.png"
        assert embedded[png.name] == png.read_bytes()
    for name in ("summary.csv", "errors.csv", "summary.html", "errors.html"):
        assert embedded[name] == (workdir / "results" / name).read_bytes()
    for caption, sentence in CAPTIONS.items():
        source = " ".join((REPO / "report" / caption).read_text().split())
        assert sentence in source, f"update CAPTIONS: {caption} changed"
        assert sentence in " ".join(page.replace("\\n", " ").split()), caption
    # Self-contained: nothing is loaded from elsewhere when it opens.
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=[\"']?(https?:)?//", page)


def test_run_and_report_show_the_version(run):
    """The terminal starts with the version, once (no job prints it again),
    and the report says which version made it."""
    workdir, _, stderr = run
    lines = [line for line in stderr.splitlines() if not line.startswith("Using workflow specific profile")]
    assert lines[0] == f"imagestats {VERSION}"
    assert stderr.count(f"imagestats {VERSION}") == 1
    page = (workdir / "report.html").read_text(encoding="utf-8")
    assert f"Made with imagestats {VERSION}" in page


def test_a_cluster_job_does_not_print_the_version():
    """A Slurm job parses the Snakefile again: its log must not start with
    the banner (only the main process prints it)."""
    from types import SimpleNamespace

    from imagestats.workflow import start_banner

    for main, printed in ((True, f"imagestats {VERSION}\n"), (False, "")):
        out = io.StringIO()
        start_banner(SimpleNamespace(is_main_process=main), out)
        assert out.getvalue() == printed


# --------------------------------------------------------------- progress


def test_run_prints_images_and_errors_at_the_end(run):
    _, _, stderr = run
    n, errors = 40 + len(BROKEN) + 1, len(BROKEN)
    assert f"Progress: {n} of {n} images (100.0%), {errors} errors; run ended after" in stderr


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def fake_plan(tmp_path, sizes):
    plan, tables = tmp_path / "plan", tmp_path / "shards"
    plan.mkdir()
    tables.mkdir()
    for name in sizes:
        (plan / f"{name}.jsonl").write_text("[]\n")
        os.utime(plan / f"{name}.jsonl", ns=(10**18, 10**18))  # well in the past
    return plan, tables


def write_table(tables, name, errors, ok, mtime_ns=2 * 10**18):
    rows = ['{"path": "x", "error": "bad"}\n'] * errors + ['{"path": "y", "error": ""}\n'] * ok
    (tables / f"{name}.jsonl").write_text("".join(rows))
    os.utime(tables / f"{name}.jsonl", ns=(mtime_ns, mtime_ns))


def test_progress_counts_done_tables_and_their_errors(tmp_path, monkeypatch):
    plan, tables = fake_plan(tmp_path, {"a": 2, "b": 3, "c": 5})
    out, clock = io.StringIO(), Clock()
    monitor = ProgressMonitor({"a": 2, "b": 3, "c": 5}, plan, tables, out=out, clock=clock)
    reads = []
    real = sys.modules["imagestats.progress"].count_errors
    monkeypatch.setattr("imagestats.progress.count_errors", lambda f: reads.append(f) or real(f))

    assert monitor.update() == "Progress: 0 of 10 images (0.0%), 0 errors"
    assert monitor.update() is None  # nothing changed: nothing printed

    write_table(tables, "a", errors=1, ok=1)
    (tables / "b.jsonl.tmp123").write_text("half a table")  # a job still writing
    clock.now = 10.0
    assert monitor.update() == "Progress: 2 of 10 images (20.0%), 1 error, ~40 s left"

    # A table older than its list is from an earlier plan: not done.
    write_table(tables, "b", errors=2, ok=1, mtime_ns=10**17)
    clock.now = 20.0
    assert monitor.update() is None
    write_table(tables, "b", errors=2, ok=1)
    assert monitor.update() == "Progress: 5 of 10 images (50.0%), 3 errors, ~20 s left"

    # Finished tables are read once, not on every poll.
    for _ in range(3):
        monitor.poll()
    assert sorted(Path(f).name for f in reads) == ["a.jsonl", "b.jsonl"]
    write_table(tables, "a", errors=0, ok=2, mtime_ns=3 * 10**18)  # rewritten: read again
    assert monitor.poll() == (5, 2, 2)
    assert len(reads) == 3

    write_table(tables, "c", errors=0, ok=5)
    clock.now = 25.0
    assert monitor.stop() == "Progress: 10 of 10 images (100.0%), 2 errors; run ended after 25 s"
    assert out.getvalue().count("\n") == 4


def test_progress_thread_prints_when_started_and_at_the_end(tmp_path):
    plan, tables = fake_plan(tmp_path, {"a": 4})
    out = io.StringIO()
    monitor = ProgressMonitor({"a": 4}, plan, tables, out=out, interval=0.02).start()
    deadline = time.monotonic() + 5
    while "0 of 4" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    write_table(tables, "a", errors=4, ok=0)
    while "4 of 4" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    monitor.stop()
    lines = out.getvalue().splitlines()
    assert lines[0] == "Progress: 0 of 4 images (0.0%), 0 errors"
    assert lines[1] == "Progress: 4 of 4 images (100.0%), 4 errors"
    assert lines[2].startswith("Progress: 4 of 4 images (100.0%), 4 errors; run ended after")
    assert len(lines) == 3


def test_progress_without_tables_folder_and_rounding(tmp_path):
    shards = {"a": 26_990, "b": 10}
    monitor = ProgressMonitor(shards, tmp_path, tmp_path / "missing", out=io.StringIO())
    assert monitor.poll() == (0, 0, 0)
    assert monitor.line(26_990, 0) == "Progress: 26,990 of 27,000 images (99.9%), 0 errors"
    assert [format_duration(s) for s in (12, 600, 7200)] == ["12 s", "10 min", "2.0 h"]


def test_error_count_of_real_shard_tables(tmp_path):
    """The count skips parsing rows it can tell are fine; a file whose very
    name is that text, or holds quotes, must still count as an error."""
    from imagestats.plan import make_plan, write_plan
    from imagestats.table import count_errors
    from imagestats.shard import run_shard

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (4, 4), (9, 9, 9)).save(images / "good.jpg")
    (images / 'x "error": "" y.jpg').write_bytes(b"not an image")
    (images / '"error": "".jpg').write_bytes(b"")
    Image.new("L", (4, 4), 7).save(images / '"error": "" fine.jpg')
    plan = make_plan({"input_dir": str(images), "extensions": [".jpg"], "images_per_job": 10})
    index = write_plan(plan, tmp_path / "plan")
    (name,) = plan.shards
    table = tmp_path / "table.jsonl"
    run_shard(tmp_path / "plan" / index.get("lists", {}).get(name, f"{name}.jsonl"), table,
              tmp_path / "out", "record", 89478485, io.StringIO())  # fmt: skip
    assert count_errors(table) == 2
