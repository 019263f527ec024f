"""The benchmark's bands and command phases on tiny trees: what each side
writes, and that the checks between them hold. Counts and equality only,
never timings (this machine's times mean nothing in a test)."""

import csv
import filecmp
import os

import pytest
from PIL import Image

from bench import trees
from bench.cli import parse_args
from bench.context import Context
from bench.local import BANDS, BANDS_POOL, COMMAND, XARGS, measure_full_runs
from bench.stall import SlurmWatch

BANDS_HEADER = ["path", "class"]
BANDS_HEADER += [f"{band}_{stat}" for band in "RGB" for stat in ("min", "max", "mean", "median")]
BANDS_HEADER += ["error", "note"]


def _context(tmp_path, *options):
    """A benchmark Context as the command line makes it, its work folder in tmp_path."""
    return Context(parse_args(["--work", str(tmp_path / "work"), *options], None), SlurmWatch())


def _images(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


def _rows(csv_file):
    with open(csv_file, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


@pytest.fixture
def bands_tree(tree):
    """The 30 RGB JPEGs plus a greyscale PNG and an RGBA PNG: bands of their own."""
    Image.new("L", (8, 8), 77).save(tree / "Forest" / "grey.png")
    Image.new("RGBA", (8, 8), (10, 20, 30, 40)).save(tree / "River" / "alpha.png")
    return tree


def test_bands_pool_writes_the_workflows_csv_and_files(tmp_path, bands_tree):
    ctx = _context(tmp_path)
    images = len(_images(bands_tree))
    full = measure_full_runs(ctx, trees.Tree(str(bands_tree), images), 1, [BANDS], BANDS_POOL)
    (wf,) = full.workflows
    pool = tmp_path / "work" / "runs" / f"baseline-bands-eurosat-{images}-1"
    workflow = tmp_path / "work" / "runs" / f"workflow-bands-eurosat-{images}-1"
    assert wf.folder == str(workflow)
    # The benchmark's own check, then the same by hand: byte for byte.
    assert wf.identical, wf.verification
    assert filecmp.cmp(pool / "stats.csv", workflow / "results" / "stats.csv", shallow=False)
    rows = _rows(pool / "stats.csv")
    # Columns of the first image (by path) measured: an RGB JPEG; the others' sorted after them.
    assert rows[0] == BANDS_HEADER[:-2] + ["A_max", "A_mean", "A_median", "A_min"] + [
        "L_max", "L_mean", "L_median", "L_min", "error", "note"]  # fmt: skip
    assert len(rows) == 1 + images
    grey = next(row for row in rows if row[0] == "Forest/grey.png")
    assert grey[rows[0].index("L_mean")] == "77.0" and grey[rows[0].index("R_mean")] == ""
    json_files = sorted(p.relative_to(pool / "images") for p in (pool / "images").rglob("*.json"))
    wf_images = workflow / "results" / "images"
    assert json_files == sorted(p.relative_to(wf_images) for p in wf_images.rglob("*.json"))
    assert len(json_files) == images
    for rel in json_files:
        assert (pool / "images" / rel).read_bytes() == (workflow / "results" / "images" / rel).read_bytes()


def test_bands_pool_without_per_image_files(tmp_path, tree):
    """--config per_image_files=false: the pool writes no per-image file either."""
    ctx = _context(tmp_path, "--config", "per_image_files=false")
    assert "--no-per-image-files" in BANDS_POOL.command(ctx, trees.Tree(str(tree), 30), str(tmp_path))
    full = measure_full_runs(ctx, trees.Tree(str(tree), 30), 1, [BANDS], BANDS_POOL)
    assert full.workflows[0].identical, full.workflows[0].verification
    pool = tmp_path / "work" / "runs" / "baseline-bands-eurosat-30-1"
    assert not (pool / "images").exists()
    assert len(_rows(pool / "stats.csv")) == 31


def test_xargs_runs_the_guides_script_once_per_image(tmp_path, tree):
    ctx = _context(tmp_path)
    images = _images(tree)
    full = measure_full_runs(ctx, trees.Tree(str(tree), len(images)), 1, [COMMAND], XARGS)
    (wf,) = full.workflows
    assert wf.identical, wf.verification
    runs = tmp_path / "work" / "runs"
    xargs_out = runs / f"xargs-eurosat-{len(images)}-1" / "out"
    workflow_out = runs / f"workflow-command-eurosat-{len(images)}-1" / "results" / "command_output"
    # One .txt per image on each side, named as the guide names them, the same lines.
    names = sorted(p.name + ".txt" for p in images)
    assert sorted(os.listdir(xargs_out)) == names
    assert sorted(os.listdir(workflow_out)) == names
    for image in images:
        line = (xargs_out / (image.name + ".txt")).read_text()
        assert line.startswith(f"filename:{image} min:")
        assert (workflow_out / (image.name + ".txt")).read_text() == line
    # Both ran the same interpreter: the one running the benchmark.
    cmd = XARGS.command(ctx, full.tree, str(runs))
    assert cmd[cmd.index("-I{}") + 1] == COMMAND.config[0].split("=", 1)[1].split()[0]


def test_a_missing_txt_file_is_reported(tmp_path, tree):
    ctx = _context(tmp_path)
    images = _images(tree)
    full = measure_full_runs(ctx, trees.Tree(str(tree), len(images)), 1, [COMMAND], XARGS)
    runs = tmp_path / "work" / "runs"
    (runs / f"xargs-eurosat-{len(images)}-1" / "out" / (images[0].name + ".txt")).unlink()
    identical, said = XARGS.compare(full.workflows[0].folder, str(runs / f"xargs-eurosat-{len(images)}-1"),
                                    len(images))  # fmt: skip
    assert not identical
    assert "xargs wrote 29 .txt files for 30 images" in said and "1 extra" in said
