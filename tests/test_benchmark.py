"""The benchmark's bands and command phases on tiny trees: what each side
writes, and that the checks between them hold. Counts and equality only,
never timings (this machine's times mean nothing in a test)."""

import csv
import filecmp
import os
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from bench import trees
from bench.cli import parse_args
from bench.context import Context
from bench.baseline import greyscale_stats
from bench.local import BANDS, BANDS_POOL, COMMAND, LIKE_FOR_LIKE, POOL, XARGS, measure_full_runs
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


def test_brightness_pool_restates_imagestats_numbers(tmp_path, tree):
    """The pool's own histogram arithmetic gives ImageStat's numbers: its CSV
    and per-image files equal the workflow's, on images of several modes."""
    Image.new("L", (8, 8), 77).save(tree / "Forest" / "grey.png")
    Image.new("RGBA", (5, 3), (10, 200, 30, 40)).save(tree / "River" / "alpha.png")
    Image.new("P", (4, 4), 3).save(tree / "SeaLake" / "palette.png")
    Image.new("I;16", (6, 2), 300).save(tree / "SeaLake" / "wide.png")
    ctx = _context(tmp_path)
    images = len(_images(tree))
    full = measure_full_runs(ctx, trees.Tree(str(tree), images), 1, [LIKE_FOR_LIKE], POOL)
    (wf,) = full.workflows
    assert wf.identical, wf.verification
    pool = tmp_path / "work" / "runs" / f"baseline-eurosat-{images}-1"
    assert filecmp.cmp(pool / "stats.csv", Path(wf.folder) / "results" / "stats.csv", shallow=False)
    for file in _images(tree):
        with Image.open(file) as image:
            stat = ImageStat.Stat(image.convert("L"))
            histogram = image.convert("L").histogram()
        (low, high), (mean,), (median,) = stat.extrema[0], stat.mean, stat.median
        assert greyscale_stats(histogram) == (low, high, mean, median), file


def test_greyscale_stats_of_uneven_histograms():
    """Histograms no generated image has: one bin, the two ends, an even split."""
    for histogram in ([0] * 255 + [9], [5] + [0] * 255, [1] * 256, [2] + [0] * 254 + [2], [0, 3, 0, 1] * 64):
        stat = ImageStat.Stat(histogram)
        expected = (stat.extrema[0][0], stat.extrema[0][1], stat.mean[0], stat.median[0])
        assert greyscale_stats(histogram) == expected, histogram


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
