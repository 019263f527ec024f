"""Resilience, end to end as a user meets it: shards killed on an image,
folder link loops, file names that are not UTF-8, on_error: fail on the
terminal, a dry run beside a running run, a full or read-only results
folder, and images removed between runs.

Kills are injected with a ``sitecustomize.py`` first on PYTHONPATH (passed
to Snakemake, inherited by its shell jobs): when IMAGESTATS_TEST_KILL_ON
names a file name, ``PIL.Image.open`` of that file SIGKILLs the calling
process, as a decoder crash or the OOM killer does.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from conftest import REPO, SNAKEFILE, as_numbers, generate, read_stats, reference, snakemake
from imagestats.names import escape, unescape

DIED = "the measuring process died on this image in 2 attempts"
SUMMARY = re.compile(r"^image_stats: (\d+) images \((\d+) measured, (\d+) kept\)", re.MULTILINE)

KILLER = '''\
import os

_target = os.environ.get("IMAGESTATS_TEST_KILL_ON")
if _target:
    import signal

    import PIL.Image

    _open = PIL.Image.open

    def _open_or_die(fp, *args, **kwargs):
        path = fp if isinstance(fp, (str, bytes, os.PathLike)) else getattr(fp, "name", None)  # a path or a file
        if path is not None and os.path.basename(os.fsdecode(path)) == _target:
            record = os.environ.get("IMAGESTATS_TEST_KILL_LOG")
            if record:
                with open(record, "a") as f:
                    f.write(f"{os.getpid()} {_target}\\n")
            os.kill(os.getpid(), signal.SIGKILL)
        return _open(fp, *args, **kwargs)

    PIL.Image.open = _open_or_die
'''


# ---------------------------------------------------------------- helpers


def run(work, root, *args, per_job=100, cores=2, config=(), env=None, check=True):
    return snakemake(
        work, "--cores", str(cores), *args,
        config=(f"input_dir={root}", f"images_per_job={per_job}", *config), env=env, check=check,
    )  # fmt: skip


@pytest.fixture
def killer(tmp_path):
    """env(name) -> the environment that SIGKILLs whoever opens ``name``;
    kills() -> the kills done so far (one line each)."""
    folder = tmp_path / "killer"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(KILLER)
    record = tmp_path / "kills.txt"

    def env(name):
        path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)
        return {"PYTHONPATH": path, "IMAGESTATS_TEST_KILL_ON": name, "IMAGESTATS_TEST_KILL_LOG": str(record)}

    def kills():
        return record.read_text().splitlines() if record.exists() else []

    env.kills = kills
    return env


def image_files(root):
    """Relative paths (str) of the images under root."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix == ".jpg")


def per_image_files(work):
    """{path under results/images: (st_ino, st_mtime_ns)} of every file there."""
    folder = work / "results" / "images"
    out = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            st = os.stat(os.path.join(dirpath, name))
            out[os.path.relpath(os.path.join(dirpath, name), folder)] = (st.st_ino, st.st_mtime_ns)
    return out


def check_complete_json(work, torn_ok=0):
    """Every file under results/images is a complete JSON row; returns them by
    file. ``torn_ok``: but for up to that many files cut short, which the other
    processes of a pool leave when they are stopped (SIGTERM) while writing
    the file of an image they have not journaled yet."""
    rows, torn = {}, []
    for name in per_image_files(work):
        text = (work / "results" / "images" / name).read_text()
        try:
            rows[name] = json.loads(text)
        except ValueError:
            torn.append(f"results/images/{name} is not complete JSON: {text!r}")
    if len(torn) > torn_ok:
        pytest.fail("\n".join(torn))
    return rows


def shard_lists(work):
    """{shard: its list ({"paths", "sizes", "mtimes_ns"})} from results/plan."""
    lists = {}
    for p in (work / "results" / "plan").glob("*.jsonl"):
        lists[p.name.split(".")[0]] = json.loads(p.read_text())
    return lists


def summaries(work, since=None):
    """{log name: (images, measured, kept)} from the last line of each shard
    log (only the logs written after ``since``: {name: mtime_ns})."""
    out = {}
    for log in (work / "logs" / "image_stats").glob("*.log"):
        if since is not None and since.get(log.name) == log.stat().st_mtime_ns:
            continue
        found = SUMMARY.findall(log.read_text())
        assert found, f"{log} has no 'image_stats: N images (M measured, K kept)' line:\n{log.read_text()}"
        out[log.name] = tuple(int(x) for x in found[-1])
    return out


def log_times(work):
    return {p.name: p.stat().st_mtime_ns for p in (work / "logs" / "image_stats").glob("*.log")}


def check_rows(work, root, errors=()):
    """stats.csv has each image under root once; every row not in ``errors``
    has the reference numbers and no error. Returns the rows by path."""
    rows = read_stats(work)
    assert sorted(r["path"] for r in rows) == image_files(root)
    by_path = {r["path"]: r for r in rows}
    for path, row in by_path.items():
        if path in errors:
            continue
        assert row["error"] == "", (path, row["error"])
        assert as_numbers(row) == reference(root / path), path
    return by_path


def assert_same_csv(work, reference_run):
    """stats.csv byte for byte as the reference run's; the differing rows if not."""
    got = (work / "results" / "stats.csv").read_bytes()
    want = (reference_run / "results" / "stats.csv").read_bytes()
    if got != want:
        new = set(got.decode("utf-8", "backslashreplace").splitlines())
        old = set(want.decode("utf-8", "backslashreplace").splitlines())
        pytest.fail(
            "stats.csv differs from the reference run's:\n- "
            + "\n- ".join(sorted(old - new)) + "\n+ " + "\n+ ".join(sorted(new - old))
        )


# ---------------------------------------------------- killed shards keep work


@pytest.fixture(scope="module")
def sixty(tmp_path_factory):
    """60 images (10 classes x 6): one shard with images_per_job 100. Read-only."""
    root = tmp_path_factory.mktemp("sixty") / "EuroSAT_RGB"
    generate(str(root), per_class=6, workers=2)
    return root


def measuring_order(work, root, cores):
    """The plan's one shard and its paths in the order a shard measures them:
    the list's order with one process, biggest first with a pool."""
    run(work, root, "-n", cores=cores)
    lists = shard_lists(work)
    assert len(lists) == 1, f"expected one shard of {len(image_files(root))} images: {sorted(lists)}"
    ((shard, listed),) = lists.items()
    paths = listed["paths"]
    if cores > 1:
        order = sorted(range(len(paths)), key=lambda i: -listed["sizes"][i])
        paths = [paths[i] for i in order]
    return shard, paths


@pytest.mark.parametrize("cores", [1, 2])
def test_killed_shard_keeps_its_work_and_records_the_killer(sixty, tmp_path, killer, cores):
    work = tmp_path / "work"
    shard, order = measuring_order(work, sixty, cores)
    victim = order[len(order) // 2]
    env = killer(os.path.basename(victim))

    first = run(work, sixty, "--retries", "0", cores=cores, env=env, check=False)
    assert first.returncode != 0, first.output[-3000:]
    assert len(killer.kills()) == 1
    assert not (work / "results" / "shards" / f"{shard}.jsonl").exists()
    rows = check_complete_json(work, torn_ok=cores - 1)  # a pool's other process is stopped too
    written = {row["path"] for row in rows.values()}
    assert written and victim not in written
    if cores == 1:  # one process: exactly the images before the killer
        assert written == set(order[: order.index(victim)])
    for row in rows.values():
        assert (row["min"], row["max"], row["mean"], row["median"]) == reference(sixty / row["path"])
    after_kill = per_image_files(work)

    run(work, sixty, "--retries", "0", cores=cores, env=env)
    assert len(killer.kills()) == 2  # the killer was tried once more, alone
    ((images, measured, kept),) = summaries(work).values()
    assert images == 60 and measured + kept == 60
    assert kept > 0
    if cores == 1:
        assert kept == len(written) and measured == 60 - len(written)
    else:  # at most the image each of the other processes was on is lost:
        # its file may be written, but not yet its row in the journal
        assert len(written) - (cores - 1) <= kept <= len(written)
    by_path = check_rows(work, sixty, errors={victim})
    assert DIED in by_path[victim]["error"]
    assert by_path[victim]["min"] == "" and by_path[victim]["mean"] == ""
    now = per_image_files(work)
    untouched = {f for f, st in after_kill.items() if now.get(f) == st}
    # The journal records a row after its file: every kept row has its file.
    assert len(untouched) == kept, "the kept per-image files must not be rewritten, and only they"
    check_complete_json(work)
    # Last, so that the rest is checked too: the killer's row has its
    # per-image file like every other row.
    assert (work / "results" / "images" / (victim + ".json")).exists(), f"no per-image file for {victim}"
    assert DIED in json.loads((work / "results" / "images" / (victim + ".json")).read_text())["error"]
    assert len(now) == 60


def test_default_profile_retries_a_killed_shard_to_completion(sixty, tmp_path, killer):
    work = tmp_path / "work"
    _, order = measuring_order(work, sixty, cores=2)
    victim = order[len(order) // 2]
    result = run(work, sixty, env=killer(os.path.basename(victim)))  # retries: 1 from the profile
    assert len(killer.kills()) == 2
    by_path = check_rows(work, sixty, errors={victim})
    assert DIED in by_path[victim]["error"]
    ((images, measured, kept),) = summaries(work).values()
    assert images == 60 and kept > 0 and measured == 60 - kept, result.output[-2000:]


def test_on_error_fail_stops_at_the_killer_and_says_so(sixty, tmp_path, killer):
    work = tmp_path / "work"
    _, order = measuring_order(work, sixty, cores=2)
    victim = order[len(order) // 2]
    result = run(work, sixty, config=("on_error=fail",), env=killer(os.path.basename(victim)), check=False)
    assert result.returncode != 0
    assert not (work / "results" / "stats.csv").exists()
    lines = [line for line in result.output.splitlines() if f"cannot measure '{victim}'" in line]
    assert lines, f"the terminal does not name {victim}:\n{result.output[-4000:]}"
    assert DIED in lines[0] and "set on_error: record" in lines[0]
    assert str(sixty / victim) in lines[0]


def test_added_image_measures_only_the_new_one(tree, tmp_path):
    work = tmp_path / "work"
    run(work, tree, per_job=7)
    files = per_image_files(work)
    logs = log_times(work)
    time.sleep(0.01)
    shutil.copy(tree / "River" / "River_1.jpg", tree / "River" / "River_99.jpg")
    run(work, tree, per_job=7)
    rerun = summaries(work, since=logs)
    assert rerun, "no shard was rerun"
    assert sum(measured for _, measured, _ in rerun.values()) == 1, rerun
    assert sum(images for images, _, _ in rerun.values()) == 1 + sum(kept for _, _, kept in rerun.values())
    now = per_image_files(work)
    assert {f: now.get(f) for f in files} == files, "per-image files of unchanged images were rewritten"
    assert set(now) == set(files) | {"River/River_99.jpg.json"}
    check_rows(work, tree)


# ------------------------------------------------------------ folder links


def test_folder_link_loop_and_second_link_are_walked_once(small_tree, tmp_path):
    root = tmp_path / "images"
    for name in ("Forest", "River", "SeaLake"):
        shutil.copytree(small_tree / name, root / name)
    os.symlink("..", root / "Forest" / "up")  # a loop
    os.symlink("River", root / "again")  # a second way to a folder walked anyway
    work = tmp_path / "work"
    result = run(work, root, per_job=5)
    check_rows(work, root)  # each image once, under its real folder
    warnings = [line for line in result.output.splitlines() if line.startswith("warning: folder link")]
    assert len([w for w in warnings if w.startswith("warning: folder link 'Forest/up' leads to '.'")]) == 1, warnings
    assert len([w for w in warnings if w.startswith("warning: folder link 'again' leads to 'River'")]) == 1, warnings
    assert len(warnings) == 2, warnings


# ------------------------------------------------------ names not UTF-8


def test_names_that_are_not_utf8_give_valid_utf8_outputs(small_tree, tmp_path):
    import pandas

    donor = (small_tree / "Forest" / "Forest_1.jpg").read_bytes()
    other = (small_tree / "River" / "River_2.jpg").read_bytes()
    root = os.fsencode(tmp_path / "images")
    latin = os.path.join(root, b"Cl\xe9")
    good = os.path.join(root, b"Good")
    os.makedirs(latin)
    os.makedirs(good)
    files = {
        b"Cl\xe9/caf\xe9.jpg": donor,
        b"Cl\xe9/na\xefve \xff.jpg": other,
        b"Cl\xe9/back\\slash \xe9.jpg": other,  # not UTF-8 and a backslash
        b"Cl\xe9/bad\xe9.jpg": b"not an image",
        "Good/back\\slash.jpg".encode(): donor,  # valid UTF-8 with a backslash
        "Good/ünï ✓.jpg".encode(): other,
        b"Good/plain.jpg": donor,
    }
    for rel, data in files.items():
        with open(os.path.join(root, rel), "wb") as f:
            f.write(data)
    work = tmp_path / "work"
    run(work, os.fsdecode(root), per_job=3)

    results = work / "results"
    raw = (results / "stats.csv").read_bytes()
    raw.decode("utf-8")  # strict: raises if not valid UTF-8
    table = pandas.read_csv(results / "stats.csv")
    assert len(table) == len(files)
    shown = list(table["path"])
    assert sorted(unescape(p) for p in shown) == sorted(files)  # back to the exact bytes
    for path in shown:
        assert os.path.isfile(os.path.join(root, unescape(path)))
    assert {"Cl\\xe9/caf\\xe9.jpg", "Cl\\xe9/na\\xefve \\xff.jpg", "Cl\\xe9/back\\\\slash \\xe9.jpg",
            "Cl\\xe9/bad\\xe9.jpg", "Good/back\\\\slash.jpg", "Good/ünï ✓.jpg", "Good/plain.jpg"} == set(shown)  # fmt: skip
    assert set(table["class"]) == {"Cl\\xe9", "Good"}
    rows = {r["path"]: r for r in read_stats(work)}
    for path, row in rows.items():
        file = os.fsdecode(os.path.join(root, unescape(path)))
        if path == "Cl\\xe9/bad\\xe9.jpg":
            assert "not an image" in row["error"]
            continue
        assert row["error"] == "", (path, row["error"])
        assert as_numbers(row) == reference(file), path
        per_image = results / "images" / (path + ".json")  # the escaped name
        assert per_image.is_file(), per_image
        assert json.loads(per_image.read_bytes().decode("utf-8"))["path"] == path
    for dirpath, _, names in os.walk(os.fsencode(results / "images")):
        for name in names:
            os.path.join(dirpath, name).decode("utf-8")  # every per-image file name is UTF-8
    for name in ("summary.csv", "errors.csv", "summary.html", "errors.html"):
        (results / name).read_bytes().decode("utf-8")
    errors = pandas.read_csv(results / "errors.csv")
    assert list(errors["path"]) == ["Cl\\xe9/bad\\xe9.jpg"]
    assert "Cl\\xe9" in set(pandas.read_csv(results / "summary.csv").iloc[:, 0])


# ----------------------------------------------------- on_error: fail


def test_on_error_fail_names_the_file_on_the_terminal(small_tree, tmp_path):
    root = tmp_path / "images"
    shutil.copytree(small_tree / "Forest", root / "Forest")
    (root / "Forest" / "Forest_3.jpg").write_text("garbage")
    result = run(tmp_path / "work", root, per_job=10, config=("on_error=fail",), check=False)
    assert result.returncode != 0
    lines = [line for line in result.output.splitlines() if "cannot measure 'Forest/Forest_3.jpg'" in line]
    assert lines, f"the terminal does not name the file:\n{result.output[-4000:]}"
    line = lines[0]
    assert str(root / "Forest" / "Forest_3.jpg") in line  # the file to look at
    assert "not an image Pillow can read" in line  # what is wrong
    assert "set on_error: record" in line  # the fix
    assert not (tmp_path / "work" / "results" / "stats.csv").exists()


# ------------------------------------------- a dry run beside a running run


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("big") / "EuroSAT_RGB"
    generate(str(root), per_class=200, workers=2)  # 2000 images
    return root


def plan_snapshot(work):
    out = {}
    for p in (work / "results" / "plan").iterdir():
        st = p.stat()
        out[p.name] = (p.read_bytes(), st.st_mtime_ns, st.st_ino)
    return out


def test_dry_run_never_breaks_a_running_run(big_tree, tmp_path):
    per_job = 100
    reference_run = tmp_path / "reference"
    run(reference_run, big_tree, per_job=per_job)
    work = tmp_path / "work"
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(work),
        "--configfile", str(REPO / "config" / "config.yaml"), "--cores", "1",
        "--config", f"input_dir={big_tree}", f"images_per_job={per_job}",
    ]  # fmt: skip
    with open(tmp_path / "run.out", "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        tables = work / "results" / "shards"
        while not (tables.exists() and any(tables.glob("*.jsonl"))):
            assert proc.poll() is None, (tmp_path / "run.out").read_text()[-3000:]
            assert time.monotonic() < deadline, "the run started no shard in 120 s"
            time.sleep(0.05)
        for config in ((), ("images_per_job=77",)):
            before = plan_snapshot(work)
            assert "index.json" in before
            dry = run(work, big_tree, "-n", per_job=per_job, config=config, check=False)
            assert proc.poll() is None, "the run ended before the dry run did: use a bigger tree"
            assert dry.returncode == 0, dry.output[-3000:]
            after = plan_snapshot(work)
            for name, (data, mtime, ino) in before.items():
                assert name in after, f"the dry run ({config}) deleted results/plan/{name}"
                assert after[name] == (data, mtime, ino), f"the dry run ({config}) rewrote results/plan/{name}"
            if config:
                assert len(after) > len(before)  # it planned other shards, beside the run's
        assert proc.wait(timeout=300) == 0, (tmp_path / "run.out").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_same_csv(work, reference_run)


# ------------------------------------- a full or read-only results folder


def mount_tmpfs(where, size):
    """Mount a tmpfs of ``size`` at ``where``, or skip (fail under CI) where
    that is not possible."""
    if os.geteuid() != 0:
        reason = "mounting a tmpfs needs root: run this test as root (sudo python3 -m pytest ...)"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set, so this may not skip)")
        pytest.skip(reason)
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs at {where}: {done.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def unmount(where):
    if os.path.ismount(where):
        if subprocess.run(["umount", str(where)]).returncode != 0:
            subprocess.run(["umount", "-l", str(where)])


def test_full_disk_stops_with_one_line_and_the_rerun_completes(tree, tmp_path):
    reference_run = tmp_path / "reference"
    run(reference_run, tree)
    work = tmp_path / "work"
    images = work / "results" / "images"
    mount_tmpfs(images, "24k")  # a few per-image files of the 30
    try:
        result = run(work, tree, check=False)
        assert result.returncode != 0
        stopped = [line for line in result.output.splitlines() if line.startswith("image_stats: stopped: ")]
        assert len(stopped) == 1, result.output[-4000:]
        assert re.match(r"image_stats: stopped: cannot write '[^']+': No space left on device\. Free space",
                        stopped[0]), stopped[0]  # fmt: skip
        named = re.match(r"image_stats: stopped: cannot write '([^']+)'", stopped[0]).group(1)
        assert not list((work / "results" / "shards").glob("*.jsonl"))
        check_complete_json(work)
    finally:
        unmount(images)
    run(work, tree)
    assert_same_csv(work, reference_run)
    assert len(check_complete_json(work)) == 30
    # Last, so that the rest is checked too: the line must name what is full
    # (df on another folder shows room and sends the user the wrong way).
    assert named.startswith(str(images)), f"the line names {named}, but {images} is what is full"


def test_read_only_results_stop_before_any_job(tree, tmp_path):
    work = tmp_path / "work"
    results = work / "results"
    mount_tmpfs(results, "1m")
    try:
        subprocess.run(["mount", "-o", "remount,ro", str(results)], check=True)
        result = run(work, tree, check=False)
        assert result.returncode != 0
        want = f"cannot write the shard lists to {results / 'plan'} (Read-only file system)"
        lines = [line for line in result.output.splitlines() if want in line]
        assert len(lines) == 1, result.output[-4000:]
        assert not (work / "logs").exists()
    finally:
        unmount(results)


# --------------------------------------------------------- removed images


def shard_of(lists, path):
    return next(name for name, listed in lists.items() if path in listed["paths"])


def subtree_images(lists, prefix):
    return sum(len(listed["paths"]) for name, listed in lists.items() if name.startswith(prefix))


def expected_images_files(root):
    return {escape(p) + ".json" for p in image_files(root)}


def test_removed_image_leaves_no_per_image_file(tree, tmp_path):
    per_job = 4
    work = tmp_path / "work"
    run(work, tree, per_job=per_job)
    lists = shard_lists(work)
    # a shard that stays after losing one image: it and its sibling's subtree still hold too many
    for name, listed in lists.items():
        sibling = name[:-1] + ("1" if name.endswith("0") else "0")
        if len(listed["paths"]) >= 2 and subtree_images(lists, sibling) + len(listed["paths"]) - 1 > per_job:
            break
    else:
        pytest.fail(f"no shard that would stay: {sorted(lists)}")
    gone = listed["paths"][0]
    os.remove(tree / gone)
    run(work, tree, per_job=per_job)
    assert name in shard_lists(work), "the shard was meant to stay"
    assert set(per_image_files(work)) == expected_images_files(tree)
    check_rows(work, tree)


def test_merged_shards_leave_no_per_image_files_of_removed_images(tree, tmp_path):
    per_job = 4
    work = tmp_path / "work"
    run(work, tree, per_job=per_job)
    lists = shard_lists(work)
    pairs = [n[:-1] for n in lists if n.endswith("0") and n[:-1] + "1" in lists]
    assert pairs, f"no two sibling shards: {sorted(lists)}"
    prefix = pairs[0]
    a, b = lists[prefix + "0"]["paths"], lists[prefix + "1"]["paths"]
    removed = []
    while len(a) + len(b) > per_job:  # keep at least one image in each
        removed.append((a if len(a) >= len(b) else b).pop())
    for path in removed:
        os.remove(tree / path)
    run(work, tree, per_job=per_job)
    now = shard_lists(work)
    assert prefix + "0" not in now and prefix + "1" not in now, sorted(now)
    assert shard_of(now, a[0]) == shard_of(now, b[0])  # merged
    assert set(per_image_files(work)) == expected_images_files(tree)
    check_rows(work, tree)
