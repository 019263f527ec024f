"""The commands the rules run after the shards, used on their own."""

import csv
import subprocess
import sys

from conftest import SCRIPTS, as_numbers, check_png, read_stats, reference
from imagestats.plan import make_plan, write_plan
from imagestats.shard import run_shard

HEADER = ["path", "class", "width", "height", "mode", "min", "max", "mean", "median", "error", "note"]


def _measured(tmp_path, tree):
    """A plan and its shard tables for ``tree``, as a run leaves them."""
    plan = make_plan({"input_dir": str(tree), "extensions": [".jpg"], "images_per_job": 8})
    write_plan(plan, tmp_path / "results" / "plan")
    (tmp_path / "results" / "shards").mkdir(parents=True)
    for name in plan.shards:
        with open(tmp_path / "logs.txt", "a") as log:
            run_shard(
                tmp_path / "results" / "plan" / f"{name}.jsonl",
                tmp_path / "results" / "shards" / f"{name}.jsonl",
                tmp_path / "results" / "images", "record", 89478485, log,
            )  # fmt: skip
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


def test_aggregate_names_a_missing_table_and_writes_nothing(tmp_path, small_tree):
    plan = _measured(tmp_path, small_tree)
    lost = sorted(plan.shards)[0]
    (tmp_path / "results" / "shards" / f"{lost}.jsonl").unlink()
    done = _run("aggregate_stats.py", "results/plan", "results/shards", "--csv",
                "results/stats.csv", cwd=tmp_path)  # fmt: skip
    assert done.returncode != 0
    assert f"aggregate_stats: shard table results/shards/{lost}.jsonl is missing: rerun" in done.stderr
    assert not (tmp_path / "results" / "stats.csv").exists()


def test_plots_are_drawn_from_the_shard_tables(tmp_path, small_tree):
    _measured(tmp_path, small_tree)
    figures = {name: tmp_path / f"{name}.png" for name in ("brightness", "min_max", "outliers")}
    done = _run(
        "plot_stats.py", "results/plan", "results/shards",
        "--brightness-by-class", figures["brightness"], "--min-max", figures["min_max"],
        "--outliers", figures["outliers"], cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "results" / "stats.csv").exists()  # no CSV was needed
    assert done.stderr.startswith(f"{len(list(small_tree.rglob('*.jpg')))} images")
    for png in figures.values():
        check_png(png)


def test_summarize_keeps_a_class_named_na_and_warns_about_one_named_all(tmp_path):
    stats = tmp_path / "stats.csv"
    with open(stats, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerow(["ALL/a.jpg", "ALL", 64, 64, "RGB", 10, 20, 15.5, 15, "", ""])
        writer.writerow(["Forest/f.jpg", "Forest", 64, 64, "RGB", 30, 90, 60.25, 61, "", ""])
        writer.writerow(["Forest/bad.jpg", "Forest", "", "", "", "", "", "", "", "empty file", ""])
        # pandas reads a bare NA as missing unless told otherwise
        writer.writerow(["NA/NA.jpg", "NA", 64, 64, "RGB", 0, 255, 100.0, 99, "", ""])
    out = {name: tmp_path / name for name in ("summary.csv", "errors.csv", "s.html", "e.html")}
    done = _run(
        "summarize_stats.py", stats, "--summary", out["summary.csv"], "--errors",
        out["errors.csv"], "--summary-html", out["s.html"], "--errors-html", out["e.html"],
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "a class folder is named 'ALL'" in done.stderr
    with open(out["summary.csv"], newline="") as f:
        summary = list(csv.DictReader(f))
    assert [r["class"] for r in summary] == ["ALL", "Forest", "NA", "ALL"]
    forest = summary[1]
    assert (forest["images"], forest["ok"], forest["errors"]) == ("2", "1", "1")
    assert (forest["min_of_min"], forest["max_of_max"], forest["mean_of_mean"]) == ("30", "90", "60.25")
    assert (summary[2]["images"], summary[2]["min_of_min"]) == ("1", "0")
    assert (summary[3]["images"], summary[3]["errors"]) == ("4", "1")
    with open(out["errors.csv"], newline="") as f:
        assert list(csv.reader(f)) == [["path", "class", "error"], ["Forest/bad.jpg", "Forest", "empty file"]]
