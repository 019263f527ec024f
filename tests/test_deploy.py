"""Deployment, as a user checks it: running from any folder, moving things,
per_image_files, and the storage plan that stops a run with no room.

Every Snakemake run here is `python -m snakemake` called directly, without
--configfile (conftest.snakemake passes one): which config a run picks is
part of what is tested. Runs use a copy of the checkout (tracked files, and
untracked ones not ignored, so a module another engineer is adding comes
along), never the repo itself, so no test can write next to the real
Snakefile or change its code.
"""

import getpass
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, as_numbers, generate, read_stats, reference, run_command
from imagestats import defaults, storage

SAMPLE = Path("config") / "sample" / "EuroSAT_RGB"  # relative to a checkout
EXTENSIONS = tuple(e.lower() for e in defaults.defaults()["extensions"])
STATS_ONLY = "results/stats.csv"  # the target when plots and summary add nothing to a test


# ------------------------------------------------------------- helpers


def snakemake(*args, cwd, python=None, check=True, env=None, timeout=600):
    """`<python> -m snakemake ARGS` in ``cwd``, as a user types it; output = stdout + stderr."""
    cmd = [python or sys.executable, "-m", "snakemake", *args]
    return run_command(cmd, cwd=cwd, check=check, timeout=timeout, env=env)


def copy_checkout(dest):
    """The files of the checkout (as `git ls-files` lists them, plus untracked
    files that are not ignored) copied to ``dest``, mtimes kept."""
    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.split(b"\0")  # fmt: skip
    for name in filter(None, names):
        rel = os.fsdecode(name)
        src = REPO / rel
        if not src.is_file():  # deleted in the work tree
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    assert (dest / "Snakefile").is_file()
    return dest


@pytest.fixture
def checkout(tmp_path):
    """A copy of the checkout this test may change: tmp_path/imagestats."""
    return copy_checkout(tmp_path / "imagestats")


def images_under(root):
    """Paths (relative, as stats.csv shows them) of the images a folder run finds."""
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(EXTENSIONS)
    )


def check_stats(workdir, root):
    """stats.csv has one row per image under ``root``, with the guide's numbers."""
    rows = read_stats(workdir)
    assert [r["path"] for r in rows] == images_under(root)
    for row in rows:
        assert row["error"] == "", row
        assert as_numbers(row) == reference(root / row["path"]), row["path"]
    return rows


PLAN_LINE = re.compile(
    r"^Plan: ([\d,]+) images from (.+?); ([\d,]+) shard\(s\) of ([\d,]+) to ([\d,]+) images "
    r"\((?:slurm_)?images_per_job, (?:slurm_)?mb_per_job: ([\d,]+), ([\d,]+) MB\)",
    re.MULTILINE,
)


def number(text):
    return int(text.replace(",", ""))


def plan_line(output):
    found = PLAN_LINE.search(output)
    if not found:
        pytest.fail(f"no 'Plan:' line in the output:\n{output[-3000:]}")
    images, source, shards, smallest, largest, per_job, _ = found.groups()
    return {
        "images": number(images), "source": source, "shards": number(shards),
        "smallest": number(smallest), "largest": number(largest), "images_per_job": number(per_job),
    }  # fmt: skip


STORAGE_BLOCK = re.compile(
    r"^Storage plan\n  creates +([\d,]+) files, (.+?) under results/ and logs/\n((?:  (?:free|note) .*\n?)*)",
    re.MULTILINE,
)
FREE_LINE = re.compile(r"^  free +([\d,]+|unlimited) inodes, (.+?) \((.+)\)$", re.MULTILINE)
UNITS = {"bytes": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}


def size(text):
    value, unit = text.split()
    return float(value.replace(",", "")) * UNITS[unit]


def storage_block(output):
    """The storage plan a run printed: files, bytes and [(inodes, bytes, what)]."""
    found = STORAGE_BLOCK.search(output)
    if not found:
        pytest.fail(f"no 'Storage plan' block in the output:\n{output[-3000:]}")
    rooms = [
        (None if f == "unlimited" else number(f), None if b == "unlimited" else size(b), what)
        for f, b, what in FREE_LINE.findall(found.group(3))
    ]
    unit = found.group(2).split()[1]
    return {
        "files": number(found.group(1)), "bytes": size(found.group(2)), "rooms": rooms,
        "rounding": 0.05 * UNITS[unit],  # sizes are printed with one decimal
    }  # fmt: skip


def jobs_planned(output, rule):
    found = re.search(rf"^{rule}\s+(\d+)$", output, re.MULTILINE)
    if not found:
        pytest.fail(f"no '{rule}' line in Snakemake's job table:\n{output[-3000:]}")
    return int(found.group(1))


def mtimes(folder, pattern="*"):
    return {p.name: p.stat().st_mtime_ns for p in Path(folder).glob(pattern)}


SHARD_LOG_END = re.compile(r"^image_stats: (\d+) images \((\d+) measured, (\d+) kept\), ")


def shard_log_counts(workdir):
    """{shard: (images, measured, kept)} from the last line of each shard log."""
    counts = {}
    for log in sorted((workdir / "logs" / "image_stats").glob("*.log")):
        lines = [line for line in log.read_text().splitlines() if line.strip()]
        found = SHARD_LOG_END.match(lines[-1]) if lines else None
        assert found, f"{log.name} does not end with the counts line: {lines[-3:]}"
        counts[log.stem] = tuple(int(g) for g in found.groups())
    return counts


def measure(checkout, run, tree, *config, target=STATS_ONLY, **kw):
    """The runs of the moves tests: a tree in shards of at most 7 images."""
    return snakemake(
        "-s", checkout / "Snakefile", "-d", run, "--cores", "2", target,
        "--config", f"input_dir={tree}", "images_per_job=7", *config, cwd=run.parent, **kw,
    )  # fmt: skip


# ------------------------------------------- 0. the README's first command

# The README's first command, as a newcomer types it in a fresh checkout.
# tests/test_docs.py checks that the README shows exactly this; the test below
# runs its snakemake part as typed, and .ci/run runs its pip part on CI.
QUICK_START = "python3 -m pip install -r requirements.txt && snakemake --cores 2"


def test_the_readme_s_first_command(checkout):
    """`snakemake --cores 2` in the checkout, nothing else: the bundled
    sample measured, with the summary, the plots and results/ in the checkout."""
    install, run = QUICK_START.split(" && ")
    assert install == "python3 -m pip install -r requirements.txt"
    args = shlex.split(run)
    assert args[0] == "snakemake"
    result = snakemake(*args[1:], cwd=checkout)
    assert plan_line(result.output)["images"] == len(images_under(checkout / SAMPLE))
    check_stats(checkout, checkout / SAMPLE)
    for png in ("brightness_by_class", "min_max", "outliers"):
        assert (checkout / "results" / "plots" / f"{png}.png").is_file()
    for table in ("summary.csv", "errors.csv"):
        assert (checkout / "results" / table).is_file()


# ------------------------------------------- 1. runs from any folder


@pytest.mark.parametrize(
    "how",
    [
        "snakemake -s /abs/imagestats/Snakefile -d /abs/run",
        "cd imagestats && snakemake --directory /abs/run",
        "cd run && snakemake -s ../imagestats/Snakefile",
        "snakemake -s imagestats/Snakefile -d run",
    ],
)
def test_bundled_config_and_sample_from_any_folder(checkout, tmp_path, how):
    """The issue: `snakemake -s ~/imagestats/Snakefile -d /scratch/run` failed
    unless the user copied the config. In a folder without config/config.yaml
    the bundled config, schema and sample (next to the Snakefile) are used."""
    run = tmp_path / "run"
    snakefile = checkout / "Snakefile"
    if how.startswith("snakemake -s /abs"):
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        # The whole default target: summary, plots and report captions too.
        result = snakemake("-s", snakefile, "-d", run, "--cores", "2", cwd=elsewhere)
        for png in ("brightness_by_class", "min_max", "outliers"):
            assert (run / "results" / "plots" / f"{png}.png").is_file()
        assert (run / "results" / "summary.csv").is_file()
    elif how.startswith("cd imagestats"):
        result = snakemake("--directory", run, "--cores", "2", STATS_ONLY, cwd=checkout)
    elif how.startswith("cd run"):
        run.mkdir()
        result = snakemake("-s", os.path.relpath(snakefile, run), "--cores", "2", STATS_ONLY, cwd=run)
    else:
        result = snakemake("-s", snakefile.relative_to(tmp_path), "-d", "run", "--cores", "2", STATS_ONLY, cwd=tmp_path)
    sample = checkout / SAMPLE
    plan = plan_line(result.output)
    assert plan["source"].startswith(f"input_dir {sample} "), plan
    assert plan["images"] == len(images_under(sample))
    check_stats(run, sample)
    # Nothing was written next to the Snakefile, no config copied into the run folder.
    for name in ("results", "logs", ".snakemake", "benchmarks"):
        assert not (checkout / name).exists(), name
    assert not (run / "config").exists()


def test_config_in_the_run_folder_wins(checkout, small_tree, tmp_path):
    """Snakemake's deployment convention: DIR/config/config.yaml is used
    instead of the bundled one; its relative input_dir starts at DIR and its
    other settings take effect (keys it leaves out get the schema's defaults)."""
    run = tmp_path / "run"
    shutil.copytree(small_tree, run / "images")
    (run / "config").mkdir()
    per_job = 9
    (run / "config" / "config.yaml").write_text(f"input_dir: images\nimages_per_job: {per_job}\n")
    result = snakemake("-s", checkout / "Snakefile", "-d", run, "--cores", "2", STATS_ONLY, cwd=tmp_path)
    plan = plan_line(result.output)
    assert plan["source"].startswith("input_dir images "), plan
    assert plan["images_per_job"] == per_job
    assert plan["largest"] <= per_job
    assert plan["shards"] >= math.ceil(len(images_under(small_tree)) / per_job)
    assert plan["shards"] == len(list((run / "results" / "shards").glob("*.jsonl")))
    check_stats(run, run / "images")


# ----------------------------------------------------- 2. moves rerun nothing


def test_moved_checkout_run_folder_and_images_rerun_nothing(checkout, tree, tmp_path):
    run = tmp_path / "run"
    measure(checkout, run, tree)
    tables = mtimes(run / "results" / "shards")
    csv = (run / "results" / "stats.csv").read_bytes()
    moved = tmp_path / "moved"
    moved.mkdir()
    # mtimes kept (shutil.copy2), then the originals removed: a real move.
    shutil.copytree(checkout, moved / "imagestats")
    shutil.copytree(run, moved / "run", symlinks=True)
    shutil.copytree(tree, moved / "EuroSAT_RGB")
    for old in (checkout, run, tree):
        shutil.rmtree(old)
    result = measure(moved / "imagestats", moved / "run", moved / "EuroSAT_RGB")
    assert "Nothing to be done" in result.output, result.output[-3000:]
    assert mtimes(moved / "run" / "results" / "shards") == tables
    assert (moved / "run" / "results" / "stats.csv").read_bytes() == csv


def other_interpreter_path(tmp_path):
    """Another path to this Python: a symlink to sys.executable in a tmp
    folder. In a venv such a link loses the venv (Python looks for pyvenv.cfg
    beside the path it was started by), so there the link is to the venv's
    folder and the path runs through it."""
    link = tmp_path / "other-python" / "bin" / "python3"
    link.parent.mkdir(parents=True)
    link.symlink_to(sys.executable)
    if subprocess.run([link, "-c", "import snakemake"], capture_output=True).returncode == 0:
        return link
    assert sys.prefix != sys.base_prefix, "a link to sys.executable cannot import snakemake"
    (tmp_path / "other-venv").symlink_to(sys.prefix, target_is_directory=True)
    return tmp_path / "other-venv" / os.path.relpath(sys.executable, sys.prefix)


def test_another_interpreter_path_reruns_nothing(checkout, tree, tmp_path):
    """Another path to the same Python (a venv, a module, a symlink) changes
    the rules' commands but no number: rerun-triggers leave out the software
    environment and the interpreter is no rule param."""
    run = tmp_path / "run"
    measure(checkout, run, tree)
    tables = mtimes(run / "results" / "shards")
    link = other_interpreter_path(tmp_path)
    shown = subprocess.run([link, "-c", "import sys; print(sys.executable)"], capture_output=True, text=True)
    assert shown.stdout.strip() == str(link)  # the commands would name the link
    result = measure(checkout, run, tree, python=link)
    assert "Nothing to be done" in result.output, result.output[-3000:]
    assert mtimes(run / "results" / "shards") == tables


@pytest.mark.parametrize("change", ["measuring code", "max_image_pixels"])
def test_what_decides_the_numbers_remeasures_every_image(checkout, tree, tmp_path, change):
    run = tmp_path / "run"
    measure(checkout, run, tree)
    tables = mtimes(run / "results" / "shards", "*.jsonl")
    csv = (run / "results" / "stats.csv").read_bytes()
    config = ()
    if change == "measuring code":
        repo_code = (REPO / "scripts" / "imagestats" / "measure.py").read_bytes()
        code = checkout / "scripts" / "imagestats" / "measure.py"
        with open(code, "a") as f:
            f.write("\n# a changed line: the measuring code is not what measured the tables\n")
        assert (REPO / "scripts" / "imagestats" / "measure.py").read_bytes() == repo_code
    else:
        config = (f"max_image_pixels={defaults.defaults()['max_image_pixels'] + 1}",)
    result = measure(checkout, run, tree, *config)
    assert jobs_planned(result.output, "image_stats") == len(tables)
    after = mtimes(run / "results" / "shards", "*.jsonl")
    assert after.keys() == tables.keys() and all(after[n] != tables[n] for n in tables)
    counts = shard_log_counts(run)
    assert sorted(f"{n}.jsonl" for n in counts) == sorted(tables)
    for shard, (images, measured, kept) in counts.items():
        assert (measured, kept) == (images, 0), f"{shard}: {images} images, {measured} measured, {kept} kept"
    assert sum(c[0] for c in counts.values()) == len(images_under(tree))
    # The numbers themselves did not change (a comment, a limit no image reaches).
    assert (run / "results" / "stats.csv").read_bytes() == csv


def test_switching_on_error_to_fail_reruns_nothing(checkout, tree, tmp_path):
    run = tmp_path / "run"
    measure(checkout, run, tree)  # on_error: record, the default
    tables = mtimes(run / "results" / "shards")
    result = measure(checkout, run, tree, "on_error=fail")
    assert "Nothing to be done" in result.output, result.output[-3000:]
    assert mtimes(run / "results" / "shards") == tables


def test_on_error_fail_with_recorded_errors_stops_before_any_job(checkout, tree, tmp_path):
    (tree / "Bad").mkdir()
    (tree / "Bad" / "x.jpg").write_text("this is text, not a JPEG\n")
    run = tmp_path / "run"
    measure(checkout, run, tree)
    row = next(r for r in read_stats(run) if r["path"] == "Bad/x.jpg")
    assert row["error"]
    tables = mtimes(run / "results" / "shards")
    logs = mtimes(run / "logs" / "image_stats")
    result = measure(checkout, run, tree, "on_error=fail", check=False)
    assert result.returncode != 0
    assert f"already measured have errors: 'Bad/x.jpg': {row['error']}" in result.output, result.output[-3000:]
    assert "Nothing to be done" not in result.output
    assert mtimes(run / "results" / "shards") == tables
    assert mtimes(run / "logs" / "image_stats") == logs


# --------------------------------------------------- 3. per_image_files: false


def test_without_per_image_files_the_same_csv_and_one_file_per_image_less(checkout, small_tree, tmp_path):
    with_files, without = tmp_path / "with", tmp_path / "without"
    a = snakemake(
        "-s", checkout / "Snakefile", "-d", with_files, "--cores", "2", STATS_ONLY,
        "--config", f"input_dir={small_tree}", "images_per_job=7", cwd=tmp_path,
    )  # fmt: skip
    (without / "config").mkdir(parents=True)
    (without / "config" / "config.yaml").write_text(
        f"input_dir: {json.dumps(str(small_tree))}\nimages_per_job: 7\nper_image_files: false\n"
    )
    b = snakemake("-s", checkout / "Snakefile", "-d", without, "--cores", "2", STATS_ONLY, cwd=tmp_path)
    images = images_under(small_tree)
    per_image = sorted(
        str(p.relative_to(with_files / "results" / "images"))
        for p in (with_files / "results" / "images").rglob("*.json")
    )
    assert per_image == [f"{p}.json" for p in images]
    assert not (without / "results" / "images").exists()
    assert (without / "results" / "stats.csv").read_bytes() == (with_files / "results" / "stats.csv").read_bytes()
    check_stats(without, small_tree)
    plan_a, plan_b = storage_block(a.output), storage_block(b.output)
    folders = len({os.path.dirname(p) for p in images})
    # About one file per image less (the per-image folders may be counted too).
    assert len(images) <= plan_a["files"] - plan_b["files"] <= len(images) + folders + 1, (plan_a, plan_b)
    assert plan_a["bytes"] > plan_b["bytes"]


def test_per_image_files_false_on_the_command_line(checkout, small_tree, tmp_path):
    """`--config per_image_files=false`, as the storage verdict and YAML spell
    it (Snakemake's --config reads only True/False as booleans)."""
    runs = {}
    for value in ("false", "true"):
        result = snakemake(
            "-s", checkout / "Snakefile", "-d", tmp_path / value, "-n",
            "--config", f"input_dir={small_tree}", f"per_image_files={value}", cwd=tmp_path, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.output[-3000:]
        runs[value] = storage_block(result.output)
    assert runs["true"]["files"] - runs["false"]["files"] >= len(images_under(small_tree))


# --------------------------------------------------------- 4. the storage plan


def test_every_run_prints_the_storage_plan(checkout, small_tree, tmp_path):
    """A dry run and a real run print what the due jobs create and the room
    there is; the counts are storage.estimate's for the jobs due."""
    run = tmp_path / "run"
    args = (
        "-s", checkout / "Snakefile", "-d", run, "--cores", "2", STATS_ONLY,
        "--config", f"input_dir={small_tree}", "images_per_job=7",
    )  # fmt: skip
    for dry in (True, False):
        result = snakemake(*args, *(["-n"] if dry else []), cwd=tmp_path)
        plan = plan_line(result.output)
        block = storage_block(result.output)
        folders = len({p.parent for p in small_tree.rglob("*.jpg")})
        files, size_ = storage.estimate(str(run), plan["images"], plan["shards"], True, image_folders=folders)
        assert block["files"] == files
        assert abs(block["bytes"] - size_) <= block["rounding"]
        what = [r[2] for r in block["rooms"]]
        assert f"filesystem of {run}" in what, block
        inodes = next(r[0] for r in block["rooms"] if r[2] == f"filesystem of {run}")
        now = os.statvfs(run).f_favail
        assert inodes is not None and abs(inodes - now) <= max(1000, now // 100), (inodes, now)


def test_estimate_arithmetic():
    for block in (4096, 1024, 256, 65536):
        images, shards = 1000, 3
        files, size_ = storage.estimate("/", images, shards, True, block=block)
        files_no, size_no = storage.estimate("/", images, shards, False, block=block)
        # One file per image, taking whole blocks (a row of BYTES_PER_ROW bytes).
        assert files - files_no == images
        assert size_ - size_no == images * math.ceil(storage.BYTES_PER_ROW / block) * block
        # Each shard adds its files, a block each; the rows are in the tables, their CSV lines and stats.csv.
        more_files, more_size = storage.estimate("/", images, shards + 1, False, block=block)
        assert more_files - files_no == storage.FILES_PER_SHARD
        assert more_size - size_no == storage.FILES_PER_SHARD * block
        assert files_no == shards * storage.FILES_PER_SHARD + storage.FINAL_FILES
        assert size_no == (images * storage.BYTES_PER_ROW * 3 + shards * storage.FILES_PER_SHARD * block
                           + storage.FINAL_BYTES)  # fmt: skip
        assert storage.estimate("/", 0, 0, True, block=block) == (storage.FINAL_FILES, storage.FINAL_BYTES)
        # each folder under results/images/ is one more file and block
        with_folders = storage.estimate("/", images, shards, True, block=block, image_folders=10)
        assert with_folders == (files + 10, size_ + 10 * block)


def test_estimate_of_a_folder_not_made_yet_uses_its_filesystem(tmp_path):
    """`-d DIR` with DIR not there yet: the block size of the folder it will be in."""
    block = os.statvfs(tmp_path).f_frsize
    assert storage.estimate(str(tmp_path / "a" / "b"), 10, 1, True) == storage.estimate(
        str(tmp_path), 10, 1, True, block=block
    )


def test_a_row_fits_the_bytes_the_estimate_gives_it(small_tree, tmp_path):
    """BYTES_PER_ROW against a real row: the table line of a EuroSAT image."""
    from imagestats.shard import run_shard
    from imagestats.plan import make_plan, write_plan

    plan = make_plan({"input_dir": str(small_tree)}, workdir=str(tmp_path))
    write_plan(plan, str(tmp_path / "plan"))
    (shard,) = plan.shards.values()
    with open(os.devnull, "w") as log:
        run_shard(str(tmp_path / "plan" / shard.list_name), str(tmp_path / "t.jsonl"), str(tmp_path / "images"),
                  "record", defaults.defaults()["max_image_pixels"], log, journal_dir=str(tmp_path / "j"))  # fmt: skip
    lines = (tmp_path / "t.jsonl").read_bytes().splitlines()
    assert len(lines) == len(images_under(small_tree))
    assert max(len(line) + 1 for line in lines) <= storage.BYTES_PER_ROW


# fake `lfs` and `quota`, first on PATH: they print what the real tools print


def fake_tool(folder, name, stdout, code=0, stderr=""):
    """An executable ``name`` in ``folder`` that records its arguments in
    name.calls, prints ``stdout`` (and ``stderr``) and exits with ``code``."""
    folder.mkdir(exist_ok=True)
    script = folder / name
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"with open({str(folder / (name + '.calls'))!r}, 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"sys.stdout.write({stdout!r})\n"
        f"sys.stderr.write({stderr!r})\n"
        f"sys.exit({code})\n"
    )
    script.chmod(0o755)
    return script


def calls(folder, name):
    file = folder / (name + ".calls")
    return [json.loads(line) for line in file.read_text().splitlines()] if file.exists() else []


@pytest.fixture
def fakebin(tmp_path, monkeypatch):
    folder = tmp_path / "fakebin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder


def lfs_line(mount, kb, bsoft, bhard, files, isoft, ihard, bover=0, iover=0, bgrace="", igrace=""):
    """One line of `lfs quota -q -u USER MOUNT` as lustre/utils/lfs.c print_quota
    writes it: "%15s" (a longer mount on a line of its own, the numbers on the
    next after 15 spaces), then per block and inode part " %7s%c %6s %7s %7s"
    with '*' after a value over quota and the grace left ('-' unless in grace)."""
    head = f"{mount}\n{'':15}" if len(mount) > 15 else f"{mount:>15}"
    block = f" {kb:>7}{'*' if bover else ' '} {bsoft:>6} {bhard:>7} {bgrace if bover > 1 else '-':>7}"
    inode = f" {files:>7}{'*' if iover else ' '} {isoft:>6} {ihard:>7} {igrace if iover > 1 else '-':>7}"
    return head + block + inode + "\n"


LFS_CASES = {
    # name: (mount, line numbers, expected free inodes, expected free kbytes)
    "within limits": (
        "/mnt/lustre", dict(kb=2048000, bsoft=0, bhard=10240000, files=1200, isoft=0, ihard=5000),
        3800, 10240000 - 2048000,
    ),
    "over the block soft limit, in grace": (
        "/lustre", dict(kb=5200000, bsoft=5000000, bhard=6000000, bover=2, bgrace="6d23h59m50s",
                        files=1200, isoft=0, ihard=0),
        None, 0,
    ),
    "inode hard limit reached": (
        "/mnt/lustre", dict(kb=100, bsoft=0, bhard=0, files=100000, isoft=0, ihard=100000, iover=1),
        0, None,
    ),
    "soft and hard inode limits": (
        "/mnt/lustre", dict(kb=100, bsoft=0, bhard=0, files=900, isoft=1000, ihard=1200),
        100, None,
    ),
    "no limits (0)": (
        "/mnt/lustre", dict(kb=100, bsoft=0, bhard=0, files=9, isoft=0, ihard=0),
        None, None,
    ),
    "a mount name longer than 15 characters": (
        "/mnt/lustre/scratch", dict(kb=2048000, bsoft=0, bhard=10240000, files=1200, isoft=0, ihard=5000),
        3800, 10240000 - 2048000,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(LFS_CASES))
def test_lfs_quota_parsing(fakebin, monkeypatch, tmp_path, case):
    mount, numbers, free_files, free_kb = LFS_CASES[case]
    monkeypatch.setattr(storage, "_mount_point", lambda path: mount)  # a Lustre mount, here
    fake_tool(fakebin, "lfs", lfs_line(mount, **numbers))
    room = storage.lfs_quota(str(tmp_path), "bob")
    assert calls(fakebin, "lfs") == [["quota", "-q", "-u", "bob", mount]]
    assert room is not None, f"no room read from:\n{lfs_line(mount, **numbers)}"
    assert (room.files, room.bytes) == (free_files, None if free_kb is None else free_kb * 1024)
    assert room.what == f"Lustre quota of bob on {mount}"


def test_lfs_quota_on_a_filesystem_that_is_not_lustre(fakebin, tmp_path):
    fake_tool(fakebin, "lfs", "", code=1, stderr=f"lfs quota: {tmp_path}: not a Lustre filesystem\n")
    assert storage.lfs_quota(str(tmp_path), "bob") is None


def df(path, field):
    """The mount's device (source) or mount point (target), from df."""
    out = subprocess.run(["df", f"--output={field}", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[-1].strip()


def quota_line(device, blocks, bsoft, bhard, files, isoft, ihard, bover=False, iover=False, bgrace="", igrace=""):
    """One filesystem line of `quota -w -u USER` as quota-tools' quota.c
    showquotas writes it: "%15s" device (-w: never wrapped), then per part
    " %7s%c %6s %7s %7s" with '*' after a value over quota and the grace left
    (empty unless over)."""
    return (
        f"{device:>15} {blocks:>7}{'*' if bover else ' '} {bsoft:>6} {bhard:>7} {bgrace:>7}"
        f" {files:>7}{'*' if iover else ' '} {isoft:>6} {ihard:>7} {igrace:>7}\n"
    )


HEADING = (
    "Disk quotas for user bob (uid 1000): \n"
    "     Filesystem  blocks   quota   limit   grace   files   quota   limit   grace\n"
)

QUOTA_CASES = {
    # name: (lines of (device, None for ours; numbers), exit code, free inodes, free kbytes)
    "within limits": (
        [(None, dict(blocks=123456, bsoft=200000, bhard=250000, files=1234, isoft=5000, ihard=6000))],
        0, 3766, 200000 - 123456,
    ),
    "another filesystem listed first": (
        [("nfs01:/export/home", dict(blocks=10, bsoft=20, bhard=30, files=1, isoft=2, ihard=3)),
         (None, dict(blocks=1000, bsoft=0, bhard=50000, files=10, isoft=0, ihard=700))],
        0, 690, 49000,
    ),
    # quota(1) exits 1 when a filesystem is over quota (quota.c: showquotas
    # returns over > 0), and that is when its numbers matter most.
    "over the block soft limit, in grace (exit 1)": (
        [(None, dict(blocks=260000, bover=True, bgrace="6days", bsoft=250000, bhard=300000,
                     files=10, isoft=0, ihard=700))],
        1, 690, 0,
    ),
    "inode hard limit reached (exit 1)": (
        [(None, dict(blocks=1000, bsoft=0, bhard=50000,
                     files=6000, iover=True, igrace="none", isoft=5000, ihard=6000))],
        1, 0, 49000,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(QUOTA_CASES))
def test_disk_quota_parsing(fakebin, tmp_path, case):
    lines, code, free_files, free_kb = QUOTA_CASES[case]
    device, mount = df(tmp_path, "source"), df(tmp_path, "target")
    text = HEADING + "".join(quota_line(d or device, **n) for d, n in lines)
    fake_tool(fakebin, "quota", text, code=code)
    room = storage.disk_quota(str(tmp_path), "bob")
    assert calls(fakebin, "quota") == [["-w", "-u", "bob"]]
    assert room is not None, f"no room read from (exit {code}):\n{text}"
    assert (room.files, room.bytes) == (free_files, free_kb * 1024)
    assert room.what == f"quota of bob on {mount}"


def test_disk_quota_none(fakebin, tmp_path):
    fake_tool(fakebin, "quota", "Disk quotas for user bob (uid 1000): none\n")
    assert storage.disk_quota(str(tmp_path), "bob") is None


def test_verdict_text():
    fs = storage.Room(1_000, 10**9, "filesystem of /scratch/run")
    assert storage.StoragePlan("/scratch/run", 1_000, 10**6, [fs]).verdict() is None  # exactly enough
    unlimited = storage.Room(None, None, "Lustre quota of bob on /lustre")
    assert storage.StoragePlan("/scratch/run", 10**9, 10**15, [unlimited]).verdict() is None

    inodes = storage.StoragePlan("/scratch/run", 1_001, 10**6, [fs]).verdict()
    assert inodes.startswith(
        "not enough inodes for this run: it creates 1,001 files under results/ and logs/, "
        "the filesystem of /scratch/run has 1,000 free inodes. Set per_image_files: false"
    ), inodes
    assert inodes.endswith("Nothing was run.")

    space = storage.StoragePlan("/scratch/run", 10, 2 * 10**9, [fs]).verdict()
    assert space.startswith(
        "not enough space for this run: it creates 2.0 GB under results/ and logs/, "
        "the filesystem of /scratch/run has 1.0 GB free."
    ), space

    # A quota tighter than the filesystem: the verdict names the quota.
    quota = storage.Room(50, None, "quota of bob on /home")
    both = storage.StoragePlan("/home/bob/run", 100, 10, [fs, quota])
    assert "the quota of bob on /home has 50 free inodes" in both.verdict()
    described = both.describe()
    assert "  free               1,000 inodes, 1.0 GB (filesystem of /scratch/run)" in described
    assert "  free               50 inodes, unlimited (quota of bob on /home)" in described


def test_a_quota_lfs_reports_stops_the_run(checkout, small_tree, tmp_path, fakebin):
    run = tmp_path / "run"
    run.mkdir()
    mount, user = df(run, "target"), getpass.getuser()
    fake_tool(fakebin, "lfs", lfs_line(mount, kb=100, bsoft=0, bhard=0, files=1000, isoft=0, ihard=1010))
    result = snakemake(
        "-s", checkout / "Snakefile", "-d", run, "-n", "--config", f"input_dir={small_tree}", cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode != 0, result.output[-3000:]
    assert f"the Lustre quota of {user} on {mount} has 10 free inodes" in result.output, result.output[-3000:]
    assert (10, None, f"Lustre quota of {user} on {mount}") in storage_block(result.output)["rooms"]


def test_being_over_a_disk_quota_stops_the_run(checkout, small_tree, tmp_path, fakebin):
    """Over quota, quota(1) exits 1: the plan must still read it and stop."""
    run = tmp_path / "run"
    run.mkdir()
    device, mount, user = df(run, "source"), df(run, "target"), getpass.getuser()
    fake_tool(fakebin, "lfs", "", code=1, stderr="lfs quota: not a Lustre filesystem\n")
    line = quota_line(
        device, blocks=1000, bsoft=0, bhard=50000, files=6000, iover=True, igrace="none", isoft=5000, ihard=6000
    )
    fake_tool(fakebin, "quota", HEADING + line, code=1)
    result = snakemake(
        "-s", checkout / "Snakefile", "-d", run, "-n", "--config", f"input_dir={small_tree}", cwd=tmp_path, check=False,
    )  # fmt: skip
    assert calls(fakebin, "quota"), "the plan did not ask quota"
    plan = STORAGE_BLOCK.search(result.output)
    assert result.returncode != 0, f"the run went on, quota printing\n{line}with:\n{plan and plan.group(0)}"
    assert "not enough inodes for this run" in result.output
    assert f"the quota of {user} on {mount} has 0 free inodes" in result.output, result.output[-3000:]


# -------------------------------------------------- end to end on a small tmpfs


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size, inodes) -> a tmpfs mounted under tmp_path, unmounted after."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the tmpfs tests need root, and CI runs as root: run them as root")
        pytest.skip("mounting a tmpfs needs root (run as root, as CI does)")
    mounted = []

    def mount(size, inodes):
        folder = tmp_path / f"tmpfs{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},nr_inodes={inodes}", "tmpfs", str(folder)],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.fail(f"mount -t tmpfs failed as root: {done.stderr}")
        mounted.append(folder)
        return folder

    try:
        yield mount
    finally:
        for folder in reversed(mounted):
            subprocess.run(["umount", str(folder)], capture_output=True)
            if os.path.ismount(folder):
                subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture(scope="module")
def tree_400(tmp_path_factory):
    """~400 images (10 classes x 40), outside any tmpfs."""
    root = tmp_path_factory.mktemp("four_hundred") / "EuroSAT_RGB"
    generate(str(root), per_class=40, workers=2)
    return root


VERDICT = re.compile(
    r"not enough inodes for this run: it creates ([\d,]+) files under results/ and logs/, "
    r"the filesystem of (\S+) has ([\d,]+) free inodes\. Set per_image_files: false"
)


@pytest.mark.parametrize("spelling", ["false", "False"])
def test_too_few_inodes_stop_the_run_and_per_image_files_false_fits(checkout, tree_400, tmp_path, tmpfs, spelling):
    inodes = 300
    run = tmpfs("20m", inodes) / "run"
    images = len(images_under(tree_400))
    assert images > inodes
    result = snakemake(
        "-s", checkout / "Snakefile", "-d", run, "--cores", "2", "--config", f"input_dir={tree_400}",
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode != 0, result.output[-3000:]
    found = VERDICT.search(result.output)
    assert found, result.output[-3000:]
    need, where, free = number(found.group(1)), found.group(2), number(found.group(3))
    assert where == str(run)
    assert need >= images and 0 < free < inodes
    block = storage_block(result.output)
    assert block["files"] == need
    assert (free, f"filesystem of {run}") in [(r[0], r[2]) for r in block["rooms"]]
    assert not (run / "results" / "shards").exists()
    assert not (run / "results" / "images").exists()
    assert not (run / "results" / "stats.csv").exists()

    # The fix the verdict names: the same run completes.
    result = snakemake(
        "-s", checkout / "Snakefile", "-d", run, "--cores", "2",
        "--config", f"input_dir={tree_400}", f"per_image_files={spelling}", cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.output[-3000:]
    assert not (run / "results" / "images").exists()
    check_stats(run, tree_400)
    assert (run / "results" / "plots" / "outliers.png").is_file()


def disk_usage(folder, *names):
    """Bytes the files and folders take on disk (du), summed."""
    du = subprocess.run(["du", "-s", "--block-size=1", *names], cwd=folder, capture_output=True, text=True, check=True)
    return sum(int(line.split()[0]) for line in du.stdout.splitlines())


def test_the_storage_plan_counts_what_the_run_creates(checkout, tree, tmp_path, tmpfs):
    """A run the plan lets through must have the inodes and space it uses:
    what the run takes from its filesystem after the check is at most what
    the plan says it creates. (On a filesystem with exactly that many free
    inodes, the plan lets the run start, and it would die half-way.)"""
    folder = tmpfs("50m", 5000)
    run = folder / "run"
    result = snakemake(
        "-s", checkout / "Snakefile", "-d", run, "--cores", "2",
        "--config", f"input_dir={tree}", "images_per_job=7", cwd=tmp_path,
    )  # fmt: skip
    block = storage_block(result.output)
    free_at_check = next(r[0] for r in block["rooms"] if r[2] == f"filesystem of {run}")
    used_inodes = free_at_check - os.statvfs(folder).f_favail

    def inodes(path):
        return sum(1 for _ in Path(path).rglob("*")) + 1 if Path(path).exists() else 0

    made = {name: inodes(run / name) for name in ("results", "logs", "benchmarks", ".snakemake")}
    made["results/plan, made before the check"] = inodes(run / "results" / "plan")
    used_bytes = disk_usage(run, "results", "logs") - disk_usage(run, "results/plan")
    problems = []
    if used_inodes > block["files"]:
        problems.append(f"the run took {used_inodes} inodes after the check, the plan said {block['files']} ({made})")
    if used_bytes > block["bytes"] + block["rounding"]:
        problems.append(
            f"results/ and logs/ take {used_bytes:,} bytes (plan lists aside), the plan said {block['bytes']:,.0f}"
        )
    assert not problems, "\n".join(problems)
