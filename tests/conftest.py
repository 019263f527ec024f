"""Shared fixtures: the repo's paths, generated image trees, running Snakemake."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageStat

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
SNAKEFILE = REPO / "Snakefile"
CONFIG = REPO / "config" / "config.yaml"

sys.path.insert(0, str(SCRIPTS))

from make_eurosat_like import generate  # noqa: E402


def snakemake(workdir, *args, config=(), check=True, timeout=600, env=None):
    """Run `python -m snakemake` on the repo's Snakefile in ``workdir``.

    ``config`` items are passed with --config (e.g. "input_dir=/data").
    Returns the CompletedProcess, with ``output`` = stdout + stderr (Snakemake
    prints some messages to one or the other depending on --dry-run); with
    check, a failure shows Snakemake's output.
    """
    cmd = [
        sys.executable, "-m", "snakemake",
        "-s", str(SNAKEFILE), "-d", str(workdir),
        "--configfile", str(CONFIG),
    ]  # fmt: skip
    cmd += list(args)
    if config:
        cmd += ["--config", *config]
    return run_command(cmd, check=check, timeout=timeout, env=env)


def run_command(cmd, cwd=None, check=True, timeout=600, env=None):
    """Run ``cmd``; the result's ``output`` is stdout + stderr (what the user
    sees, in order or not); with check, a failure shows both."""
    result = subprocess.run(
        [str(part) for part in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    result.output = result.stdout + result.stderr
    if check and result.returncode != 0:
        pytest.fail(
            f"snakemake failed ({result.returncode}) in {cwd or os.getcwd()}: "
            f"{' '.join(map(str, cmd))}\n"
            f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-6000:]}"
        )
    return result


def reference(file):
    """What the cluster guide computes for one image: the oracle for every number."""
    with Image.open(file) as image:
        stat = ImageStat.Stat(image.convert("L"))
    ((low, high),) = stat.extrema
    return low, high, stat.mean[0], stat.median[0]


def as_numbers(row):
    """A stats.csv row's numbers parsed the way a user would, for exact comparison."""
    return (int(row["min"]), int(row["max"]), float(row["mean"]), int(row["median"]))


def check_png(file):
    """A complete PNG of about the figures' size (16 x 9 in at 100 dpi)."""
    with Image.open(file) as im:
        assert im.format == "PNG"
        im.verify()
    with Image.open(file) as im:
        width, height = im.size
    assert 1200 <= width <= 2400 and 700 <= height <= 1400, (file, im.size)
    assert 10_000 < file.stat().st_size < 3_000_000


def read_stats(workdir):
    """results/stats.csv as a list of dicts, read the way a user's script would."""
    with open(
        Path(workdir) / "results" / "stats.csv", newline="", encoding="utf-8",
        errors="surrogateescape",
    ) as f:  # fmt: skip
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def small_tree(tmp_path_factory):
    """A EuroSAT-like tree of 10 classes x 4 images (40 JPEGs), shared read-only."""
    root = tmp_path_factory.mktemp("small") / "EuroSAT_RGB"
    generate(str(root), per_class=4, workers=2)
    return root


@pytest.fixture
def tree(tmp_path):
    """A fresh EuroSAT-like tree of 10 classes x 3 images a test may change."""
    root = tmp_path / "EuroSAT_RGB"
    generate(str(root), per_class=3, workers=2)
    return root
