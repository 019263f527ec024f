"""End to end: `snakemake --cores 2` on generated trees, as a user runs it."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from conftest import REPO, SNAKEFILE, as_numbers, generate, read_stats, reference, snakemake
from imagestats.version import VERSION

NUMBERS = ("min", "max", "mean", "median")


def shard_tables(workdir):
    folder = workdir / "results" / "shards"
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.jsonl")}


def shard_lists(workdir):
    """{shard table name: its list's text}: a list is <shard>.<fingerprint>.jsonl."""
    lists = {}
    for p in (workdir / "results" / "plan").glob("*.jsonl"):
        lists[p.name.split(".")[0] + ".jsonl"] = p.read_text()
    return lists


def jobs_planned(output, rule="image_stats"):
    """How many jobs of a rule Snakemake's job table says it runs. A run
    without the rule in its table fails the test: every caller expects jobs,
    and a changed table format must not read as zero."""
    found = re.search(rf"^{rule}\s+(\d+)$", output, re.MULTILINE)
    if not found:
        pytest.fail(f"no '{rule}' line in Snakemake's job table:\n{output[-3000:]}")
    return int(found.group(1))


def run(workdir, tree, *args, per_job=7, check=True, config=()):
    return snakemake(
        workdir, "--cores", "2", *args,
        config=(f"input_dir={tree}", f"images_per_job={per_job}", *config), check=check,
    )  # fmt: skip


# ------------------------------------------------------------- the plan


def test_dry_run_shows_the_plan_and_runs_nothing(small_tree, tmp_path):
    result = run(tmp_path, small_tree, "-n")
    shards = len(list((tmp_path / "results" / "plan").glob("*.jsonl")))
    assert shards >= 40 / 7
    assert f"Plan: 40 images from input_dir {small_tree}" in result.output
    assert f"imagestats {VERSION}\nPlan: 40 images" in result.stderr  # the version first
    assert f"{shards} shard(s) of" in result.output
    assert jobs_planned(result.output) == shards
    assert not (tmp_path / "results" / "shards").exists()
    assert not (tmp_path / "results" / "stats.csv").exists()


# ----------------------------------------------------------- a full run


def test_full_run_gives_exact_numbers_for_every_image(small_tree, tmp_path):
    run(tmp_path, small_tree)
    rows = read_stats(tmp_path)
    files = sorted(small_tree.rglob("*.jpg"))
    assert [r["path"] for r in rows] == sorted(str(f.relative_to(small_tree)) for f in files)
    by_path = {r["path"]: r for r in rows}
    for file in files:
        row = by_path[str(file.relative_to(small_tree))]
        assert as_numbers(row) == reference(file)
        with Image.open(file) as im:
            assert (int(row["width"]), int(row["height"]), row["mode"]) == (*im.size, im.mode)
        assert row["class"] == file.parent.name
        assert row["error"] == "" and row["note"] == ""
        # the per-image file says the same
        per_image = json.loads((tmp_path / "results/images" / (row["path"] + ".json")).read_text())
        assert (per_image["min"], per_image["max"], per_image["mean"], per_image["median"]) == reference(file)
    assert list(rows[0]) == ["path", "class", "width", "height", "mode", *NUMBERS, "error", "note"]
    # every rule logged
    assert (tmp_path / "logs" / "aggregate_stats.log").read_text().startswith("40 images, 0 with errors")
    assert len(list((tmp_path / "logs" / "image_stats").glob("*.log"))) == len(shard_tables(tmp_path))


def test_rerun_with_nothing_to_do(small_tree, tmp_path):
    run(tmp_path, small_tree)
    before = shard_tables(tmp_path)
    csv_before = (tmp_path / "results" / "stats.csv").read_bytes()
    result = run(tmp_path, small_tree)
    assert "Nothing to be done" in result.output
    assert shard_tables(tmp_path) == before
    assert (tmp_path / "results" / "stats.csv").read_bytes() == csv_before


def test_added_image_reruns_only_its_shard(tree, tmp_path):
    work = tmp_path / "work"
    run(work, tree, per_job=5)
    before = shard_tables(work)
    plan_before = shard_lists(work)
    time.sleep(0.01)
    shutil.copy(tree / "River" / "River_1.jpg", tree / "River" / "River_99.jpg")
    result = run(work, tree, per_job=5)
    after = shard_tables(work)
    plan_after = shard_lists(work)
    changed = {n for n in plan_after if plan_before.get(n) != plan_after[n]}
    assert 1 <= len(changed) <= 2  # the shard the image lands in (or its halves)
    assert any("River_99.jpg" in plan_after[n] for n in changed)
    rerun = {n for n in after if before.get(n) != after[n]}
    assert rerun == changed
    assert jobs_planned(result.output) == len(changed)
    rows = read_stats(work)
    assert len(rows) == 31 and "River/River_99.jpg" in [r["path"] for r in rows]


@pytest.mark.parametrize("lost", ["table", "CSV lines"])
def test_a_lost_shard_file_comes_back_without_measuring_again(small_tree, tmp_path, lost):
    """Either file of a shard deleted, then an image of another shard
    changed: the next run writes the lost file again (Snakemake reruns a
    job for a missing file only when a job that reads it runs) from the
    rows the shard keeps, measuring nothing, and the CSV is the same."""
    run(tmp_path, small_tree)
    csv_before = (tmp_path / "results" / "stats.csv").read_bytes()
    shards = tmp_path / "results" / "shards"
    victim = sorted(shards.glob("*.jsonl" if lost == "table" else "*.csv"))[0]
    victim_before = victim.read_bytes()
    victim.unlink()
    other = next(t for t in sorted(shards.glob("*.jsonl")) if t.stem != victim.stem)
    image = small_tree / json.loads(other.read_text().splitlines()[0])["path"]
    image.write_bytes(image.read_bytes())  # the same bytes, a newer file
    result = run(tmp_path, small_tree)
    assert jobs_planned(result.output) == 2
    assert victim.read_bytes() == victim_before
    log = (tmp_path / "logs" / "image_stats" / f"{victim.stem}.log").read_text()
    assert re.search(r"image_stats: (\d+) images \(0 measured, \1 kept\)", log), log
    assert (tmp_path / "results" / "stats.csv").read_bytes() == csv_before


def test_changed_image_reruns_its_shard_with_new_numbers(tree, tmp_path):
    work = tmp_path / "work"
    run(work, tree, per_job=5)
    target = tree / "Forest" / "Forest_2.jpg"
    time.sleep(0.01)
    Image.new("RGB", (64, 64), (200, 10, 10)).save(target)  # replaced by the instrument
    run(work, tree, per_job=5)
    row = next(r for r in read_stats(work) if r["path"] == "Forest/Forest_2.jpg")
    assert as_numbers(row) == reference(target)


def test_images_per_job_one_still_works(tree, tmp_path):
    run(tmp_path, tree, per_job=1)
    assert len(shard_tables(tmp_path)) == 30
    assert len(read_stats(tmp_path)) == 30


# ------------------------------------------------------------ bad input


def make_awkward_tree(root, donor):
    """Good images with awkward names, odd modes and broken files."""
    rgb = Image.open(donor).convert("RGB")
    good = root / "Good"
    good.mkdir(parents=True)
    for name in ["with space.jpg", "ünïcødé ✓.jpg", "com,ma.jpg", "q'uote\".jpg"]:
        shutil.copy(donor, good / name)
    odd = root / "Odd"
    odd.mkdir()
    rgb.convert("CMYK").save(odd / "cmyk.jpg")
    rgb.convert("RGBA").save(odd / "alpha.png")
    rgb.convert("L").save(odd / "grey.png")
    rgb.quantize(16).save(odd / "palette.png")
    Image.new("I;16", (8, 8), 40000).save(odd / "sixteen.png")
    rgb.quantize(8).save(odd / "anim.gif", save_all=True, append_images=[rgb.quantize(4)])
    bad = root / "Bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    data = donor.read_bytes()
    (bad / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (bad / "text.jpg").write_text("not an image")
    Image.new("1", (30000, 30000)).save(bad / "bomb.png")
    os.symlink(root / "nowhere.jpg", bad / "broken link.jpg")
    return {
        "Bad/empty.jpg": "empty file",
        "Bad/truncated.jpg": "truncated",
        "Bad/text.jpg": "not an image",
        "Bad/bomb.png": "decompression bomb",
        "Bad/broken link.jpg": "not found",
    }


def test_bad_and_odd_inputs_each_get_their_row(small_tree, tmp_path):
    root = tmp_path / "images"
    expected_errors = make_awkward_tree(root, small_tree / "Forest" / "Forest_1.jpg")
    work = tmp_path / "work"
    run(work, root, per_job=4)
    rows = {r["path"]: r for r in read_stats(work)}
    on_disk = sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.suffix in (".jpg", ".png", ".gif")
    )
    assert sorted(rows) == on_disk  # no row lost, none twice, names unchanged
    for path, error in expected_errors.items():
        assert error in rows[path]["error"], path
        assert rows[path]["min"] == "" and rows[path]["mean"] == ""
    for path, row in rows.items():
        if path not in expected_errors:
            assert row["error"] == "", path
            assert as_numbers(row) == reference(root / path), path
    assert rows["Odd/cmyk.jpg"]["mode"] == "CMYK"
    assert rows["Odd/anim.gif"]["note"] == "first of 2 frames measured"
    assert "clipped" in rows["Odd/sixteen.png"]["note"]
    log = "".join(p.read_text() for p in (work / "logs" / "image_stats").glob("*.log"))
    assert "Bad/truncated.jpg: truncated" in log


def test_on_error_fail_stops_and_names_the_file(small_tree, tmp_path):
    root = tmp_path / "images"
    shutil.copytree(small_tree / "Forest", root / "Forest")
    (root / "Forest" / "Forest_3.jpg").write_text("garbage")
    result = run(tmp_path / "work", root, check=False, config=("on_error=fail",))
    assert result.returncode != 0
    logs = "".join(p.read_text() for p in (tmp_path / "work/logs/image_stats").glob("*.log"))
    assert "cannot measure 'Forest/Forest_3.jpg'" in logs
    assert "set on_error: record" in logs
    assert not (tmp_path / "work" / "results" / "stats.csv").exists()


# ----------------------------------------------------------- bad config


@pytest.mark.parametrize(
    "config, message",
    [
        (("input_dir=/no/such/folder",), "input_dir '/no/such/folder' is not a folder"),
        (("input_dir=",), "no images selected: set 'input_dir', 'manifest' or 'numbered'"),
        (("imges_per_job=5",), "'imges_per_job' was unexpected"),
        (("images_per_job=lots",), "config key 'images_per_job': 'lots' is not of type 'integer'"),
        (("on_error=ignore",), "config key 'on_error': 'ignore' is not one of"),
        (("numbered={pattern: 'a_{n}.jpg', first: 1}",), "'last' is a required property"),
    ],
)
def test_bad_config_fails_before_any_job(tmp_path, config, message):
    result = snakemake(tmp_path, "--cores", "2", config=config, check=False)
    assert result.returncode != 0
    assert message in result.output
    assert not (tmp_path / "results" / "shards").exists()
    assert not (tmp_path / "logs").exists()


def test_empty_folder_fails_before_any_job(tmp_path):
    (tmp_path / "empty").mkdir()
    result = snakemake(tmp_path, "-n", config=(f"input_dir={tmp_path / 'empty'}",), check=False)
    assert result.returncode != 0
    assert "selects no images: check the path and 'extensions'" in result.output


# ------------------------------------------------- manifest and numbered


def test_manifest_run(small_tree, tmp_path):
    listed = sorted(f"EuroSAT_RGB/Residential/{p.name}" for p in (small_tree / "Residential").iterdir())
    manifest = small_tree.parent / "residential_files.txt"
    manifest.write_text("\n".join(listed) + "\n")
    snakemake(tmp_path, "--cores", "2", config=(f"manifest={manifest}",))
    rows = read_stats(tmp_path)
    assert [r["path"] for r in rows] == listed
    for row in rows:
        assert as_numbers(row) == reference(small_tree.parent / row["path"])
        assert row["class"] == "Residential"


def test_numbered_run_and_missing_numbers(small_tree, tmp_path):
    pattern = str(small_tree / "Residential" / "Residential_{n}.jpg")
    numbered = f"numbered={{pattern: '{pattern}', first: 1, last: 4}}"
    snakemake(tmp_path, "--cores", "2", config=(numbered,))
    assert [r["path"] for r in read_stats(tmp_path)] == sorted(pattern.format(n=n) for n in range(1, 5))
    too_many = f"numbered={{pattern: '{pattern}', first: 1, last: 6}}"
    result = snakemake(tmp_path / "again", "-n", config=(too_many,), check=False)
    assert result.returncode != 0
    assert "missing 2 of 6 files, numbers 5-6" in result.output


# --------------------------------------------------------------- resume


@pytest.fixture(scope="module")
def medium_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("medium") / "EuroSAT_RGB"
    generate(str(root), per_class=60, workers=2)  # 600 images
    return root


def start(workdir, tree, per_job):
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir),
        "--configfile", str(REPO / "config" / "config.yaml"), "--cores", "1",
        "--config", f"input_dir={tree}", f"images_per_job={per_job}",
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for_tables(workdir, count, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if (workdir / "results" / "shards").exists() and len(shard_tables(workdir)) >= count:
            return
        time.sleep(0.05)
    pytest.fail("the run ended or stalled before it could be interrupted")


def kill_a_job(workdir, proc, timeout=60):
    """SIGKILL the Python process of one running image_stats job of the run
    in ``workdir``, as the OOM killer or a lost node would.

    Not the `bash -c` around it, whose command line names the script too:
    killed alone, bash leaves Python running on as an orphan that may write
    its table after Snakemake has given the job up, even after Snakemake exits.
    """
    python = os.path.realpath(sys.executable)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        found = subprocess.run(["pgrep", "-f", "scripts/image_stats.py"], capture_output=True, text=True)
        for pid in found.stdout.split():
            try:
                ours = os.readlink(f"/proc/{pid}/cwd") == str(workdir)
                if ours and os.path.realpath(f"/proc/{pid}/exe") == python:
                    os.kill(int(pid), signal.SIGKILL)
                    return
            except OSError:
                pass  # it ended meanwhile
        time.sleep(0.005)
    pytest.fail("no running image_stats job found to kill")


@pytest.mark.parametrize("how", ["ctrl-c", "kill -9 snakemake"])
def test_interrupted_run_resumes_to_the_same_csv(medium_tree, tmp_path, how):
    reference_run = tmp_path / "reference"
    run(reference_run, medium_tree, per_job=20)
    work = tmp_path / "work"
    proc = start(work, medium_tree, per_job=20)
    wait_for_tables(work, 5, proc)
    if how == "ctrl-c":
        proc.send_signal(signal.SIGINT)
    else:
        proc.kill()
    proc.wait(timeout=120)
    done = shard_tables(work)
    assert len(done) < len(list((work / "results/plan").glob("*.jsonl")))
    assert not (work / "results" / "stats.csv").exists()
    # no half-written table is left under its real name
    for table in (work / "results" / "shards").glob("*.jsonl"):
        lines = table.read_text().splitlines()
        assert all(json.loads(line)["path"] for line in lines)
    if how == "kill -9 snakemake":  # docs/reliability.md's recovery: the lock outlives the process
        snakemake(work, "--unlock", config=(f"input_dir={medium_tree}", "images_per_job=20"))
    result = run(work, medium_tree, per_job=20)
    missing = len(list((work / "results/plan").glob("*.jsonl"))) - len(done)
    # the missing shards, and at most one more: a job killed after its table
    # was renamed into place is rerun because Snakemake marked it incomplete
    assert missing <= jobs_planned(result.output) <= missing + 1
    assert (work / "results" / "stats.csv").read_bytes() == (
        reference_run / "results" / "stats.csv"
    ).read_bytes()


def test_a_killed_job_is_retried_and_the_run_completes(medium_tree, tmp_path):
    """kill -9 of a shard's process (a lost node, the OOM killer): the
    default profile's one retry redoes it, and the run ends as if nothing
    happened."""
    reference_run = tmp_path / "reference"
    run(reference_run, medium_tree, per_job=20)
    work = tmp_path / "work"
    proc = start(work, medium_tree, per_job=20)
    wait_for_tables(work, 3, proc)
    kill_a_job(work, proc)
    assert proc.wait(timeout=300) == 0
    assert (work / "results" / "stats.csv").read_bytes() == (
        reference_run / "results" / "stats.csv"
    ).read_bytes()


# ---------------------------------------------------------------- style


def test_lint_is_clean(small_tree, tmp_path):
    result = snakemake(tmp_path, "--lint", config=(f"input_dir={small_tree}",), check=False)
    assert result.returncode == 0, result.output
    assert "Congratulations, your workflow is in a good condition!" in result.output


def test_snakefmt_check():
    result = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", str(SNAKEFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
