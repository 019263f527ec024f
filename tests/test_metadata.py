"""Metadata operations per image stay within issue 23's budgets.

A small tree runs through the workflow (`snakemake -n`, then a full run)
behind the counting shim (scripts/bench/metacount.c, built here with the C
compiler), as `scripts/benchmark.py --metadata` runs it. Counts only, never
times: counting is deterministic where times on this machine are not.
Without a C compiler the tests skip, except in CI (CI=true), where they fail.
"""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap

import pytest

from bench import metacount, trees
from bench.cli import parse_args
from bench.context import Context
from bench.metadata import measure_metadata
from bench.stall import SlurmWatch
from make_eurosat_like import generate


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    if metacount.compiler() is None:
        message = "no C compiler (cc) to build the metadata-counting shim: apt-get install gcc libc6-dev"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return metacount.build(str(tmp_path_factory.mktemp("metacount-lib")))


def _counted(shim, tmp_path, code):
    """Run ``code`` in a Python behind the shim, counting under tmp_path/pre:
    {kind: n} of that process (the forked ones apart)."""
    pre = tmp_path / "pre"
    (pre / "sub").mkdir(parents=True, exist_ok=True)
    out = tmp_path / "counts"
    env = {**os.environ, **metacount.environment(shim, str(pre), str(out))}
    # -I: the working folder is not on sys.path, so imports look nothing up in it
    subprocess.run([sys.executable, "-I", "-c", textwrap.dedent(code)], cwd=pre, env=env, check=True)
    processes = metacount.read(str(out))
    return {p.pid: metacount.by_kind(metacount.attribute({p.pid: p})) for p in processes.values()}


def test_the_shim_counts_each_kind_once_under_its_folder_only(shim, tmp_path):
    counts = _counted(shim, tmp_path, """
        import ctypes, os
        os.stat("sub"); os.lstat("sub"); os.path.exists(os.path.abspath("sub/../sub"))  # 3 stats
        os.stat("/etc/hostname"); os.stat("..")  # outside: not counted
        fd = os.open("sub", os.O_RDONLY | os.O_DIRECTORY)  # 1 open
        with open("sub/a.txt", "w") as f:  # 1 create, 1 fstat (open() checks the file)
            f.write("x")
        os.stat("a.txt", dir_fd=fd)  # fstatat relative to a folder under the prefix: 1 stat
        with os.scandir(fd) as it:  # fdopendir: 1 readdir
            [e.name for e in it]
        os.close(fd)
        os.listdir(".")  # opendir: 1 readdir
        os.rename("sub/a.txt", "sub/b.txt")  # 1 rename
        os.link("sub/b.txt", "sub/c.txt")  # 1 link
        os.unlink("sub/b.txt"); os.unlink("sub/c.txt")  # 2 unlinks
        os.mkdir("sub/d"); os.rmdir("sub/d")  # 1 mkdir, 1 unlink
        libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(512)
        libc.statx(-100, b"sub", 0, 0xFFF, buf)  # statx (AT_FDCWD): 1 stat
        libc.fstatat(-100, b"sub", buf, 0)  # the unsuffixed names too: 1 stat
        libc.stat(b"sub", buf)  # 1 stat
        libc.access(b"sub", 0)  # 1 stat (a lookup)
        if os.fork() == 0:  # a child counts its own and writes them at os._exit
            os.stat("sub"); os.stat("sub")
            os._exit(0)
        os.wait()
    """)
    (parent,) = [c for c in counts.values() if c["stat"] != 2]
    (child,) = [c for c in counts.values() if c["stat"] == 2]
    assert dict(child) == {"stat": 2}
    assert dict(parent) == {"stat": 8, "fstat": 1, "open": 1, "create": 1, "readdir": 2, "rename": 1,
                            "link": 1, "unlink": 3, "mkdir": 1}  # fmt: skip


# The libc calls that name a path (or end a process, or replace its program:
# the shim writes its counts then), as the programs of a run import them.
PATH_CALLS = re.compile(
    r"^(__)?(x|lx|fx)?(stat|lstat|fstat|statx|open|creat|fopen|rename|unlink|rmdir|mkdir|link|symlink|"
    r"access|eaccess|faccessat|opendir|fdopendir|utime|readlink|chmod|chown|lchown|truncate|mknod|mkfifo|"
    r"exec|_exit|_Exit)"
)
# Matched by the pattern but naming no file's metadata: a filesystem's totals, a terminal, a log, memory.
NOT_PATH_CALLS = {"openpty", "openlog", "statvfs", "statvfs64", "fstatvfs", "fstatvfs64", "statfs", "statfs64",
                  "fstatfs", "fstatfs64", "open_memstream", "open_wmemstream", "fopencookie"}  # fmt: skip


def _symbols(binary, which):
    done = subprocess.run(["nm", "-D", which, binary], capture_output=True, text=True, check=True)
    return {line.split()[-1].split("@")[0] for line in done.stdout.splitlines() if line.strip()}


def test_the_shim_wraps_every_path_call_python_and_the_shell_make(shim):
    """Which symbols a program calls depends on its glibc and how it was
    built (stat64 and fstatat64 for Python on glibc 2.33+, __xstat64 before,
    statx in newer tools): every one that Python, its library and bash
    import must be the shim's, or their calls go uncounted."""
    if shutil.which("nm") is None:
        message = "no nm (binutils) to list the symbols"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    binaries = [sys.executable, shutil.which("bash") or "/bin/bash"]
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        binaries.append(os.path.join(sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")))
    wrapped = _symbols(shim, "--defined-only")
    for binary in binaries:
        called = {name for name in _symbols(binary, "--undefined-only") if PATH_CALLS.match(name)}
        missing = sorted(called - wrapped - NOT_PATH_CALLS)
        assert not missing, f"{binary} calls {missing}, which scripts/bench/metacount.c does not wrap"


def test_marks_tell_the_workflows_operations_from_the_rest(shim, tmp_path):
    scripts = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")
    counts = _counted(shim, tmp_path, f"""
        import os, sys, threading
        sys.path.insert(0, {scripts!r})
        from imagestats.metamarks import own_code, own_process, running
        os.stat("sub")  # unmarked: Snakemake's, planning
        with own_code():
            os.stat("sub"); os.stat("sub")  # the workflow's, planning
            t = threading.Thread(target=os.stat, args=("sub",)); t.start(); t.join()  # another thread: unmarked
        running()
        os.stat("sub")  # Snakemake's, running
        own_process()
        os.stat("sub")  # the workflow's, running
    """)
    (pid,) = counts
    out = tmp_path / "counts"
    process = metacount.read(str(out))[pid]
    assert dict(process.counts) == {(0, 0, "stat"): 2, (0, 1, "stat"): 2, (1, 0, "stat"): 1, (1, 1, "stat"): 1}


@pytest.mark.parametrize("per_image_files", [True, False])
def test_metadata_budgets_per_phase(shim, tmp_path, per_image_files):
    """A few hundred images in several shards: the plan makes at most one
    stat per image, a shard job one open, one stat and (with per-image
    files) one create per image (no rename, nothing else per image),
    Snakemake a number per shard and nothing on any image or per-image file."""
    root = tmp_path / "tree" / "EuroSAT_RGB"
    generate(str(root), per_class=30, workers=2)  # 300 images
    options = ["--work", str(tmp_path / "work"), "--images-per-job", "60"]
    if not per_image_files:
        options += ["--config", "per_image_files=false"]
    args = parse_args(options, None)
    ctx = Context(args, SlurmWatch())
    runs = measure_metadata(ctx, trees.Tree(str(root), 300))
    assert runs.shards >= 4
    failed = [b for b in runs.budgets() if not b.ok]
    assert not failed, failed
    assert not runs.snakemake_on_images()
    # Per image exactly: one open, one fstat, one create per image in the shard jobs
    # (the rest is per shard), one stat per image in each plan.
    jobs = runs.counts("run", "shards", "workflow")
    per_shard = 20 * runs.shards
    for kind in ("open", "fstat"):
        assert 300 <= jobs[kind] <= 300 + per_shard, (kind, jobs)
    if per_image_files:
        assert 300 <= jobs["create"] <= 300 + per_shard, jobs
    else:
        assert jobs["create"] + jobs["mkdir"] <= per_shard, jobs
    assert jobs["stat"] <= per_shard and jobs["rename"] <= 3 * runs.shards, jobs
    for which in ("dry", "run"):
        plan = runs.counts(which, "plan", "workflow")
        assert 300 <= plan["stat"] + plan["fstat"] <= 300 + 100 + per_shard, plan
        assert plan["open"] + plan["create"] <= 100 + 3 * runs.shards, plan  # the lists, the probe's image
    # The workflow's own operations happened where the workflow says they did:
    # the first image's probe and the walk are in the plan, not in Snakemake's share.
    assert runs.counts("dry", "plan", "snakemake")["stat"] < 300


def _mounts(tmp_path, kind):
    from imagestats import storage

    table = tmp_path / f"mounts-{kind}"
    table.write_text(f"server:/export {storage._mount_point(str(tmp_path))} {kind} rw 0 0\n")
    return str(table)


def test_the_storage_plan_prices_per_image_files_on_a_network_filesystem(tmp_path):
    from imagestats import storage

    lustre = _mounts(tmp_path, "lustre")
    plan = storage.storage_plan(str(tmp_path), 1_000_000, 500, True, images_root=str(tmp_path),
                                measuring_seconds=250.0, mounts=lustre)  # fmt: skip
    text = plan.describe()
    # 10^6 creates at 1.5 ms: 25 minutes of metadata-server time, beside ~4 minutes of measuring.
    assert "the 1,000,000 per-image files cost ~25 min of metadata-server time" in text, text
    assert "beside ~4 min of measuring" in text
    assert "set per_image_files: false" in text
    # The images' own round trips: a stat each to plan (4 threads), an open and a stat each to measure.
    assert "planning stats each (~2 min with 4 threads" in text and "(~17 min of round trips" in text
    # Without per-image files there is nothing to advise; on a local disk nothing to say.
    without = storage.storage_plan(str(tmp_path), 1_000_000, 500, False, images_root=str(tmp_path),
                                   measuring_seconds=250.0, mounts=lustre).describe()  # fmt: skip
    assert "per_image_files: false" not in without and "per-image files cost" not in without
    local = storage.storage_plan(str(tmp_path), 1_000_000, 500, True, images_root=str(tmp_path),
                                 measuring_seconds=250.0, mounts=_mounts(tmp_path, "ext4")).describe()  # fmt: skip
    assert "metadata:" not in local
    # Files that cost less than the measuring (heavy images) are priced but not advised against.
    heavy = storage.storage_plan(str(tmp_path), 1000, 2, True, images_root=str(tmp_path),
                                 measuring_seconds=30.0, mounts=lustre).describe()  # fmt: skip
    assert "per-image files cost ~2 s" in heavy and "set per_image_files" not in heavy


def test_a_threaded_walk_stats_in_chunks_and_finds_what_one_thread_finds(tmp_path, monkeypatch):
    """IMAGESTATS_WALK_THREADS forces threads (as a network filesystem
    does): the images' stats go out in chunks, and the plan sees the same
    paths, sizes and mtimes, a broken link's own included."""
    from imagestats import plan

    root = tmp_path / "images"
    for i in range(3):
        folder = root / f"c{i}"
        folder.mkdir(parents=True)
        for j in range(7):
            (folder / f"x{j}.jpg").write_bytes(b"x" * (i * 10 + j + 1))
    os.symlink("missing.jpg", root / "c1" / "broken.jpg")

    def walk():
        images = plan.find_images({"input_dir": str(root), "extensions": [".jpg"]})
        return sorted(zip(images.paths, images.sizes.tolist(), images.mtimes.tolist()))

    monkeypatch.setenv("IMAGESTATS_WALK_THREADS", "1")
    alone = walk()
    assert len(alone) == 22
    monkeypatch.setenv("IMAGESTATS_WALK_THREADS", "3")
    monkeypatch.setattr(plan, "STAT_CHUNK", 2)
    assert plan.walk_threads(str(root)) == 3
    assert walk() == alone
