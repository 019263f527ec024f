"""Your own analysis: a function named in the config, the bundled ones, transformed images.

Every value in stats.csv must be what the function returns when called
directly on that file: the oracle is the function itself, imported here.
"""

import csv
import importlib.util
import json
import os
import re
import shutil

import pytest
from PIL import Image, ImageStat

from conftest import read_stats, reference, snakemake
from imagestats import analysis
from imagestats.analyses.bands import bands

# A user's analysis: numbers of several types, a bool, text, None, a key
# only some images have, and files that make it raise, hang or kill its process.
USER_ANALYSIS = '''\
import os
import signal
import time

from PIL import ImageStat


def describe(image):
    name = os.path.basename(image.filename)
    if "raise" in name:
        raise ValueError(f"refused {name}")
    if "hang" in name:
        time.sleep(3600)
    if "kill" in name:
        os.kill(os.getpid(), signal.SIGKILL)
    red = ImageStat.Stat(image.convert("RGB")).mean[0]
    row = {"red_mean": red, "bright": red > 100, "label": name.upper(), "pixels": image.width * image.height,
           "nothing": None}
    if name.endswith("_2.jpg"):
        row["extra"] = 2.5
    return row


not_a_function = 42
'''

ANALYSIS_COLUMNS = ["red_mean", "bright", "label", "pixels", "nothing", "extra"]


def user_module(path):
    """The user's file imported as a test would: the oracle."""
    spec = importlib.util.spec_from_file_location("oracle_" + path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def as_written(value):
    """A value as stats.csv holds it (what a user reads back as text)."""
    if value is None:
        return ""
    return str(value)


def run(workdir, tree, *args, config=(), check=True, per_job=7, env=None):
    return snakemake(
        workdir, "--cores", "2", *args,
        config=(f"input_dir={tree}", f"images_per_job={per_job}", *config), check=check, env=env,
    )  # fmt: skip


@pytest.fixture
def user_file(tmp_path):
    file = tmp_path / "code" / "my_analysis.py"
    file.parent.mkdir()
    file.write_text(USER_ANALYSIS)
    return file


# ------------------------------------------------------- the config value


@pytest.mark.parametrize(
    "value, message",
    [
        ("nonsense", "is not a bundled analysis (brightness, bands, greyscale), FILE.py:FUNCTION"),
        ("missing.py:f", "no file"),
        ("{file}:nope", "has no function nope (it defines describe)"),
        ("{file}:not_a_function", "not_a_function is not a function but a int"),
        ("no_such_package.module:f", "no module no_such_package.module"),
        ("{file}:1bad", "is not a bundled analysis"),
    ],
)
def test_a_bad_analysis_stops_before_any_job_with_one_line(small_tree, user_file, tmp_path, value, message):
    work = tmp_path / "work"
    result = run(work, small_tree, "results/stats.csv", config=(f"analysis={value.format(file=user_file)}",),
                 check=False)  # fmt: skip
    assert result.returncode != 0
    lines = [line for line in result.output.splitlines() if message in line]
    assert lines, result.output[-3000:]
    assert "'analysis'" in lines[0]  # says which key to change
    assert not (work / "results" / "shards").exists(), "no job may start"


def test_a_module_that_fails_to_import_is_named(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("import numpy\nraise RuntimeError('no licence server')\n")
    with pytest.raises(analysis.AnalysisError, match=r"importing it failed: RuntimeError: no licence server \(broken.py, line 2"):
        analysis.load(f"{bad}:f")


def test_a_function_is_found_by_package_module_name(tmp_path, monkeypatch):
    package = tmp_path / "mylab"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "scores.py").write_text("def width(image):\n    return {'w': image.width}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = analysis.load("mylab.scores:width")
    assert loaded.function(Image.new("L", (5, 3))) == {"w": 5}
    assert analysis.source_files("mylab.scores:width") == [str(package / "scores.py")]


# ------------------------------------------------------ rows equal the function


def test_rows_equal_direct_calls_with_broken_raising_and_hanging_files(tree, user_file, tmp_path):
    """Every good image's values are the function's own; a broken file, a
    raising function and a hanging one each give an error row, and the run
    completes."""
    shutil.copy(tree / "Forest" / "Forest_1.jpg", tree / "Forest" / "raise_me.jpg")
    shutil.copy(tree / "Forest" / "Forest_1.jpg", tree / "River" / "hang_here.jpg")
    (tree / "River" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    work = tmp_path / "work"
    result = run(work, tree, "results/stats.csv",
                 config=(f"analysis={user_file}:describe", "image_timeout=2"))  # fmt: skip
    assert "Analysis: " in result.output
    with open(work / "results" / "stats.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header == ["path", "class", *ANALYSIS_COLUMNS, "error", "note"]
    oracle = user_module(user_file).describe
    rows = read_stats(work)
    assert len(rows) == 30 + 3
    by_path = {row["path"]: row for row in rows}
    assert by_path["Forest/raise_me.jpg"]["error"].startswith("ValueError: refused raise_me.jpg (my_analysis.py, line")
    assert "took longer than image_timeout (2 s)" in by_path["River/hang_here.jpg"]["error"]
    assert "not an image Pillow can read" in by_path["River/broken.jpg"]["error"]
    for path, row in by_path.items():
        if row["error"]:
            assert all(row[c] == "" for c in ANALYSIS_COLUMNS), row
            continue
        with Image.open(tree / path) as image:
            expected = oracle(image)
        assert {c: row[c] for c in ANALYSIS_COLUMNS} == {c: as_written(expected.get(c)) for c in ANALYSIS_COLUMNS}
        assert float(row["red_mean"]) == expected["red_mean"]  # the same float, read back
    # the per-image files hold the same rows
    file = json.loads((work / "results" / "images" / "Forest" / "Forest_2.jpg.json").read_text())
    assert file["extra"] == 2.5 and file["bright"] in (True, False) and file["nothing"] is None


def test_on_error_fail_stops_at_a_raising_function_naming_the_file(tree, user_file, tmp_path):
    shutil.copy(tree / "Forest" / "Forest_1.jpg", tree / "Forest" / "raise_me.jpg")
    work = tmp_path / "work"
    result = run(work, tree, "results/stats.csv", check=False,
                 config=(f"analysis={user_file}:describe", "on_error=fail"))  # fmt: skip
    assert result.returncode != 0
    lines = [line for line in result.output.splitlines() if "cannot measure 'Forest/raise_me.jpg'" in line]
    assert lines and "ValueError: refused raise_me.jpg" in lines[0], result.output[-3000:]
    assert not (work / "results" / "stats.csv").exists()


def test_an_image_that_kills_its_process_keeps_the_other_rows(tree, user_file, tmp_path):
    """The function SIGKILLs its process on one image: the first attempt
    stops, keeping what it measured; the retry measures only the rest, the
    killer alone, twice dead: an error row, and the run completes."""
    shutil.copy(tree / "Forest" / "Forest_1.jpg", tree / "Forest" / "kill_me.jpg")
    work = tmp_path / "work"
    config = (f"analysis={user_file}:describe",)
    first = run(work, tree, "results/stats.csv", "--retries", "0", config=config, per_job=100, check=False)
    assert first.returncode != 0
    run(work, tree, "results/stats.csv", "--retries", "0", config=config, per_job=100)
    log = (work / "logs" / "image_stats" / "shard-all.log").read_text()
    measured, kept = map(int, re.search(r"\((\d+) measured, (\d+) kept\)", log).groups())
    assert measured + kept == 31 and kept > 0
    rows = {row["path"]: row for row in read_stats(work)}
    assert "died on this image in 2 attempts" in rows["Forest/kill_me.jpg"]["error"]
    assert sum(1 for row in rows.values() if row["error"]) == 1


# ------------------------------------------------------------ bundled ones


def test_bands_are_imagestat_of_each_band(small_tree, tmp_path):
    work = tmp_path / "work"
    run(work, small_tree, "results/stats.csv", config=("analysis=bands",))
    rows = read_stats(work)
    assert len(rows) == 40
    for row in rows:
        with Image.open(small_tree / row["path"]) as image:
            stat = ImageStat.Stat(image)
            assert image.getbands() == ("R", "G", "B")
        for k, band in enumerate("RGB"):
            assert (int(row[f"{band}_min"]), int(row[f"{band}_max"])) == stat.extrema[k]
            assert float(row[f"{band}_mean"]) == stat.mean[k]
            assert int(row[f"{band}_median"]) == stat.median[k]


def test_bands_follows_the_image_s_own_bands():
    assert list(bands(Image.new("L", (4, 4), 9))) == ["L_min", "L_max", "L_mean", "L_median"]
    assert len(bands(Image.new("RGBA", (4, 4)))) == 16


def test_greyscale_copies_equal_convert_l_and_go_with_their_image(tree, tmp_path):
    work = tmp_path / "work"
    result = run(work, tree, "results/stats.csv", config=("analysis=greyscale",))
    assert "PNG images of column greyscale" in result.output  # counted in the storage plan
    rows = read_stats(work)
    for row in rows:
        assert (int(row["min"]), int(row["max"]), float(row["mean"]), int(row["median"])) == reference(
            tree / row["path"]
        )
        copy = work / row["greyscale"]
        assert row["greyscale"] == f"results/transformed/greyscale/{row['path']}.png"
        with Image.open(copy) as grey, Image.open(tree / row["path"]) as original:
            assert grey.format == "PNG" and grey.mode == "L"
            assert grey.tobytes() == original.convert("L").tobytes()
    # an image removed from the tree takes its copy with it; a deleted copy comes back
    os.remove(tree / "Forest" / "Forest_1.jpg")
    os.remove(work / "results" / "transformed" / "greyscale" / "River" / "River_1.jpg.png")
    run(work, tree, "results/stats.csv", config=("analysis=greyscale",))
    assert not (work / "results" / "transformed" / "greyscale" / "Forest" / "Forest_1.jpg.png").exists()
    assert (work / "results" / "transformed" / "greyscale" / "River" / "River_1.jpg.png").exists()
    assert len(list((work / "results" / "transformed" / "greyscale").rglob("*.png"))) == 29


def test_brightness_is_the_default_and_unchanged(small_tree, tmp_path):
    work = tmp_path / "work"
    run(work, small_tree, "results/stats.csv")
    with open(work / "results" / "stats.csv", newline="") as f:
        assert next(csv.reader(f)) == [
            "path", "class", "width", "height", "mode", "min", "max", "mean", "median", "error", "note",
        ]  # fmt: skip
    for row in read_stats(work):
        assert (int(row["min"]), int(row["max"]), float(row["mean"]), int(row["median"])) == reference(
            small_tree / row["path"]
        )


# --------------------------------------------------------- rerun triggers


def test_editing_the_function_reruns_and_moving_it_does_not(tree, user_file, tmp_path):
    work = tmp_path / "work"
    run(work, tree, "results/stats.csv", config=(f"analysis={user_file}:describe",))
    tables = {p.name: p.stat().st_mtime_ns for p in (work / "results" / "shards").glob("*.jsonl")}

    moved = tmp_path / "elsewhere" / "renamed.py"
    moved.parent.mkdir()
    shutil.move(user_file, moved)
    result = run(work, tree, "results/stats.csv", config=(f"analysis={moved}:describe",))
    assert "Nothing to be done" in result.output, result.output[-3000:]

    with open(moved, "a") as f:
        f.write("\n# an edit: the rows may differ now\n")
    result = run(work, tree, "-n", "results/stats.csv", config=(f"analysis={moved}:describe",))
    assert re.search(r"^image_stats\s+(\d+)$", result.output, re.MULTILINE).group(1) == str(len(tables))
    result = run(work, tree, "results/stats.csv", config=(f"analysis={moved}:describe",))
    assert "(0 measured" not in "".join(
        p.read_text() for p in (work / "logs" / "image_stats").glob("*.log")
    ), "an edited analysis re-measures, it does not reuse the journal's rows"


def test_a_relative_file_is_relative_to_the_working_directory(small_tree, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "scores.py").write_text("def size(image):\n    return {'w': image.width, 'h': image.height}\n")
    run(work, small_tree, "results/stats.csv", config=("analysis=scores.py:size",))
    rows = read_stats(work)
    assert {(row["w"], row["h"]) for row in rows} == {("64", "64")}


# ------------------------------------------------------------ the contract


@pytest.mark.parametrize(
    "returned, message",
    [
        ([1, 2], "returned a list, not a dict"),
        ({"path": 1}, "returned the column(s) path, which the workflow fills"),
        ({"x": [1]}, "returned a list for 'x'"),
        ({"note": 3}, "for 'note', which must be text"),
        ({1: 2}, "returned the column name 1"),
        ({"a b/c": Image.new("L", (1, 1))}, "image columns need a name"),
    ],
)
def test_what_is_not_a_row_is_the_image_s_error(tmp_path, returned, message):
    file = tmp_path / "x.png"
    Image.new("RGB", (3, 3)).save(file)
    loaded = analysis.Analysis("mine.py:f", lambda image: returned)
    row = loaded.row("x.png", str(file), save_image=lambda column, image: "saved")
    assert message in row["error"] and "fix the analysis 'mine.py:f'" in row["error"]
    assert set(row) == {"path", "class", "error", "note"}


def test_numpy_numbers_and_a_note_are_taken(tmp_path):
    import numpy as np

    file = tmp_path / "x.png"
    Image.new("RGB", (3, 3)).save(file)
    loaded = analysis.Analysis("f", lambda image: {"n": np.int64(7), "m": np.float32(0.5), "note": "odd"})
    row = loaded.row("x.png", str(file))
    assert row == {"path": "x.png", "class": tmp_path.name, "n": 7, "m": 0.5, "error": "", "note": "odd"}
    assert type(row["n"]) is int


def test_the_version_follows_content_not_place(tmp_path):
    a = tmp_path / "a" / "f.py"
    b = tmp_path / "b" / "g.py"
    for file in (a, b):
        file.parent.mkdir()
        file.write_text("def f(image):\n    return {}\n")
    assert analysis.version(f"{a}:f") == analysis.version(f"{b}:f")
    assert analysis.version(f"{a}:f") != analysis.version("brightness") != analysis.version("bands")
    b.write_text("def f(image):\n    return {'x': 1}\n")
    assert analysis.version(f"{a}:f") != analysis.version(f"{b}:f")
