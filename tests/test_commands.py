"""The commands the rules run after the shards, used on their own."""

import json
import subprocess
import sys

from conftest import SCRIPTS, read_stats
from imagestats.plan import make_plan, write_plan
from imagestats.shard import run_shard


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
    assert [r["path"] for r in read_stats(tmp_path)] == sorted(e.path for e in plan.entries)
    assert done.stderr.startswith(f"{len(plan.entries)} images, 0 with errors")


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
    index = json.loads((tmp_path / "results" / "plan" / "index.json").read_text())
    assert done.stderr.startswith(f"{index['images']} images")
    for png in figures.values():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
