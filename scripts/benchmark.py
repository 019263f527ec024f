#!/usr/bin/env python3
"""Benchmark the image statistics workflow against a bare multiprocessing pool.

    python scripts/benchmark.py                # 27,000 and 270,000 images, 3 repetitions
    python scripts/benchmark.py --skip-large   # 27,000 images only (270,000 takes minutes)
    python scripts/benchmark.py --quick        # smoke test: 2,700 (and 27,000) images, 1 repetition

Options: --repeat N, --large-repeat N, --images-per-job N, --cores N (default 2),
--targets FILE... (default: rule all), --work DIR (default /var/tmp/imagestats-bench:
generated trees, run folders, logs).

What it measures, on a generated EuroSAT-like tree (scripts/make_eurosat_like.py,
cached under --work):
  * baseline: a bare multiprocessing.Pool computing the same numbers and writing the
    same outputs (one JSON file per image, one CSV sorted by path);
  * the workflow's full run from nothing, interleaved with the baseline, median and best
    of --repeat; the two outputs are compared (CSV and every per-image JSON file);
  * a dry run (-n) planning from scratch, and a nothing-to-do rerun (warm, best of 3);
  * 270,000 images (--skip-large to skip): dry run time and memory, and full runs of both
    to see whether time per image stays the same (linearity).
Earlier runs' folders are moved aside and deleted only after the last measurement
(see Context.fresh). Each command runs as a child process, so wall time, CPU and peak
RSS (of the largest process in the command's tree) are measured the same way for both. It prints figures and a
Markdown table with a verdict per target; it never fails on a missed target.
"""

import argparse
import csv
import filecmp
import glob
import hashlib
import json
import os
import re
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(SCRIPTS)
SNAKEFILE = os.path.join(REPO, "Snakefile")
CONFIGFILE = os.path.join(REPO, "config", "config.yaml")
GENERATOR = os.path.join(SCRIPTS, "make_eurosat_like.py")

# GNU time reports the peak RSS of the largest process in the command's tree, as
# os.wait4 does; without it (Debian package `time` missing) we use os.wait4 directly.
TIME_BIN = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None

# The targets the table checks.
FULL_RUN_MAX_RATIO = 1.5  # workflow / baseline, medians of the same benchmark run
DRY_RUN_MAX_S = 2.5
RERUN_MAX_S = 2.5
LARGE_DRY_RUN_MAX_S = 10.0
LARGE_DRY_RUN_MAX_MB = 500.0
LINEARITY_MAX_RATIO = 1.2  # seconds per image at 270k / at 27k

# What the workflow measures and writes, restated here (not imported from the workflow's
# code) so that comparing the two outputs actually checks the workflow.
COLUMNS = (
    "path",
    "class",
    "width",
    "height",
    "mode",
    "min",
    "max",
    "mean",
    "median",
    "error",
    "note",
)
INT_COLUMNS = ("width", "height", "min", "max", "median")
EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp")


def say(*parts):
    print(*parts, flush=True)


def mb(kib):
    """ru_maxrss and GNU time's %M are in KiB; targets are in MB."""
    return kib * 1024 / 1e6


# ------------------------------------------------------------------ results


@dataclass
class Run:
    wall: float  # seconds
    rss_kb: int  # peak RSS of the largest process in the command's tree
    started: float = 0.0  # time.time() at the start, to place the jobs' files in the run
    # CPU seconds of the whole process tree: system time that jumps while wall
    # time does shows the slow file creation described at QUIET_AFTER_DELETE_S.
    user: float = 0.0
    system: float = 0.0

    def describe(self):
        return (
            f"{self.wall:.2f} s (CPU: user {self.user:.2f} s, system {self.system:.2f} s), "
            f"{mb(self.rss_kb):.0f} MB"
        )


@dataclass
class Series:
    """Repeated measurements of one command on one tree."""

    label: str
    images: int
    runs: list = field(default_factory=list)

    @property
    def median(self):
        return statistics.median(r.wall for r in self.runs)

    @property
    def best(self):
        return min(r.wall for r in self.runs)

    @property
    def peak_mb(self):
        return mb(max(r.rss_kb for r in self.runs))

    @property
    def s_per_1000(self):
        return 1000 * self.median / self.images

    def describe(self):
        walls = ", ".join(f"{r.wall:.2f}" for r in self.runs)
        return (
            f"{self.label}: median {self.median:.2f} s, best {self.best:.2f} s "
            f"(runs: {walls}), peak RSS {self.peak_mb:.0f} MB"
        )


@dataclass
class FullRuns:
    baseline: Series
    workflow: Series
    identical: bool
    workflow_dir: str  # the last workflow run's folder: a complete run to rerun

    @property
    def ratio(self):
        return self.workflow.median / self.baseline.median

    @property
    def baseline_system_ms(self):
        """The baseline's system CPU per image (median run), mostly creating its file."""
        system = statistics.median(r.system for r in self.baseline.runs)
        return 1000 * system / self.baseline.images

    @property
    def slow_disk(self):
        # With fewer images the process starts' own system time (~0.3 s) dominates.
        many = self.baseline.images >= 27_000
        return many and self.baseline_system_ms > SLOW_SYSTEM_MS_PER_IMAGE


@dataclass
class Row:
    """One line of the final table; ok is None for reference figures."""

    measurement: str
    value: str
    target: str
    ratio: str
    ok: bool = None


class CommandFailed(Exception):
    pass


# --------------------------------------------------------------- environment


def machine_lines():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    usable = len(os.sched_getaffinity(0))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"date: {datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"machine: nproc {usable} (cpu_count {os.cpu_count()}), CPU {model}, load average {load}",
    ]


def version_lines():
    def version(dist):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    dists = ("snakemake", "pillow", "pandas", "numpy", "snakemake-executor-plugin-slurm")
    found = ", ".join(f"{d} {version(d)}" for d in dists)
    lines = [f"versions: python {platform.python_version()} ({sys.executable}), {found}"]
    # Other people edit the workflow while we measure: say what was measured.
    git = ["git", "-C", REPO]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "Snakefile", "scripts", "config", "envs"],
        capture_output=True, text=True,
    ).stdout.split("\n")  # fmt: skip
    dirty = [
        line[3:] for line in dirty if line.strip() and not line.endswith("scripts/benchmark.py")
    ]
    lines.append(
        f"workflow: {REPO} at {head.stdout.strip() or '?'}"
        + (f", with local changes to {', '.join(dirty)}" if dirty else "")
    )
    lines.append(
        "peak RSS from "
        + ("/usr/bin/time %M" if TIME_BIN else "os.wait4")
        + " (largest single process of each command, not a sum)"
    )
    return lines


def slurm_stall():
    """Why every Snakemake start would wait here, or None.

    The Slurm executor plugin runs `scontrol show config` (10 s timeout) whenever
    Snakemake starts, local runs too. With /etc/slurm/slurm.conf present but no
    controller answering, that call waits for its timeout on every start.
    """
    conf = os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")
    scontrol = shutil.which("scontrol")
    if not scontrol or not os.path.exists(conf):
        return None  # scontrol fails at once: no wait
    try:
        ping = subprocess.run([scontrol, "ping"], capture_output=True, text=True, timeout=15)
        up = ping.returncode == 0 and "DOWN" not in ping.stdout
    except subprocess.TimeoutExpired:
        up = False
    if not up:
        return f"{conf} exists but `scontrol ping` finds no Slurm controller"
    start = time.perf_counter()
    try:
        subprocess.run([scontrol, "show", "config"], capture_output=True, timeout=12)
    except subprocess.TimeoutExpired:
        pass
    took = time.perf_counter() - start
    if took > 0.5:  # a controller coming up or going down answers slowly
        return f"`scontrol show config` took {took:.1f} s (Slurm controller slow or in transition)"
    return None


class SlurmWatch:
    """Checks for the Slurm stall between phases: a test cluster on this machine may
    be started or stopped while we measure, and any phase that saw it is invalid."""

    def __init__(self):
        self.problems = []  # (phase, why)

    def check(self, phase):
        why = slurm_stall()
        if why:
            self.problems.append((phase, why))
            say(
                banner(
                    f"SLURM STALL ({phase}): {why}.",
                    "Every Snakemake start waits ~10 s: TIMINGS ARE INVALID.",
                )
            )
        return why

    @property
    def invalid(self):
        return bool(self.problems)


def banner(*lines):
    bar = "!" * 78
    return "\n".join([bar, *(f"!!! {line}" for line in lines), bar])


# ------------------------------------------------------------------- running


def run_measured(cmd, cwd, log_path):
    """Run cmd in cwd, output to log_path; its wall time and peak RSS.

    Wall time comes from our own clock (finer than GNU time's 10 ms); peak RSS from
    /usr/bin/time, or os.wait4's rusage of the child when time is missing.
    """
    os.makedirs(cwd, exist_ok=True)
    stats_path = log_path + ".time"
    if TIME_BIN:
        cmd = [TIME_BIN, "-f", "%e,%M", "-o", stats_path, *cmd]
    # Write back what earlier runs left dirty, so that writeback does not land
    # in this measurement.
    os.sync()
    with open(log_path, "wb") as log:
        started, start = time.time(), time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = code = os.waitstatus_to_exitcode(status)  # Popen must not wait again
    if code != 0:
        with open(log_path, errors="replace") as f:
            tail = "".join(f.readlines()[-25:])
        raise CommandFailed(f"exit {code}: {' '.join(cmd)}\n(log {log_path})\n{tail}")
    rss_kb = usage.ru_maxrss
    if TIME_BIN:
        with open(stats_path) as f:
            rss_kb = int(f.read().strip().splitlines()[-1].split(",")[1])
    return Run(wall, rss_kb, started, usage.ru_utime, usage.ru_stime)


# Deleting tens of thousands of files makes creating files slow on these
# machines (ext4 mounted with discard): 0.4-1 ms of system CPU per small file
# instead of 0.04-0.07 ms, for a minute or more. Deleting the previous runs'
# outputs before the full runs put the first runs in that window (workflow
# runs there took up to 1.7x the later ones). So old run folders are moved
# aside (a rename), the trash is emptied after the last measurement, and a
# benchmark started soon after such a delete waits before it measures.
QUIET_AFTER_DELETE_S = 120
# The baseline pays 0.06-0.09 ms of system CPU per image in quiet runs and
# 0.17-0.27 ms in that slow window, which can outlast the wait: it depends on
# the block group a new folder lands in. Above this the summary says so.
SLOW_SYSTEM_MS_PER_IMAGE = 0.15


@dataclass
class Context:
    args: argparse.Namespace
    slurm: SlurmWatch

    def fresh(self, path):
        """An empty folder at ``path``; what was there goes to the trash."""
        if os.path.lexists(path):
            trash = self.folder("trash")
            os.makedirs(trash, exist_ok=True)
            os.rename(path, tempfile.mkdtemp(dir=trash))  # replaces the empty temp folder
        os.makedirs(path)

    def empty_trash(self):
        """Delete the trash and note when (see wait_after_delete)."""
        trash = self.folder("trash")
        if os.path.isdir(trash):
            shutil.rmtree(trash, ignore_errors=True)
            with open(self.folder("last-delete"), "w") as f:
                f.write(str(time.time()))

    def wait_after_delete(self):
        """Sleep until QUIET_AFTER_DELETE_S have passed since the last big delete."""
        try:
            with open(self.folder("last-delete")) as f:
                left = float(f.read()) + QUIET_AFTER_DELETE_S - time.time()
        except (OSError, ValueError):
            return
        if left > 0:
            say(f"  waiting {left:.0f} s: files were deleted {QUIET_AFTER_DELETE_S - left:.0f} s "
                "ago, and creating files is slow for a while after that")  # fmt: skip
            time.sleep(left)

    def folder(self, *parts):
        path = os.path.join(self.args.work, *parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def log(self, name):
        return self.folder("logs", name + ".log")

    def snakemake(self, tree, *extra):
        config = [f"input_dir={tree.root}"]
        if self.args.images_per_job:
            config.append(f"images_per_job={self.args.images_per_job}")
        return [
            sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "--configfile", CONFIGFILE,
            "--cores", str(self.args.cores), *extra, *self.args.targets, "--config", *config,
        ]  # fmt: skip


# --------------------------------------------------------------------- trees


@dataclass(frozen=True)
class Tree:
    root: str  # the folder given as input_dir
    images: int


def ensure_tree(work, scale, copies):
    """The generated tree for (scale, copies), generating it unless cached.

    A stamp written after generation (with a hash of the generator) marks a complete
    tree of the current generator; anything else is generated again.
    """
    sys.path.insert(0, SCRIPTS)
    from make_eurosat_like import class_counts, generate

    images = sum(class_counts(scale).values()) * copies
    base = os.path.join(work, "trees", f"eurosat-scale{scale:g}-copies{copies}")
    root = os.path.join(base, "EuroSAT_RGB")
    stamp = os.path.join(base, "complete.json")
    with open(GENERATOR, "rb") as f:
        want = {"images": images, "scale": scale, "copies": copies,
                "generator_sha256": hashlib.sha256(f.read()).hexdigest()}  # fmt: skip
    try:
        with open(stamp) as f:
            if json.load(f) == want:
                return Tree(root, images)
    except (OSError, ValueError):
        pass
    say(f"generating {images:,} images under {root} (cached for later runs) ...")
    start = time.perf_counter()
    shutil.rmtree(base, ignore_errors=True)
    written = generate(root, scale=scale, copies=copies)
    if written != images:
        raise RuntimeError(f"generator wrote {written} images, expected {images}")
    with open(stamp, "w") as f:
        json.dump(want, f)
    say(f"  done in {time.perf_counter() - start:.0f} s")
    return Tree(root, images)


def warm_up(tree):
    """Files untouched for about a minute leave the page cache here: read the images
    and import the libraries once so that no measured run pays for disk reads."""
    for folder, _, files in os.walk(tree.root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                f.read()
    subprocess.run(
        [sys.executable, "-c", "import snakemake.cli, PIL.Image, PIL.ImageStat, pandas, numpy"],
        check=True,
    )


# ------------------------------------------------------------------ baseline


def list_images(root):
    """Paths relative to root of every image file, sorted."""
    paths = []
    for folder, dirs, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        prefix = "" if rel == "." else rel + os.sep
        paths.extend(prefix + name for name in files if name.lower().endswith(EXTENSIONS))
    paths.sort()
    return paths


_root = _images_dir = None


def _init_worker(root, images_dir):
    global _root, _images_dir
    _root, _images_dir = root, images_dir


def _measure_one(path):
    """One image: the row (a tuple in COLUMNS order), also written as <path>.json."""
    from PIL import Image, ImageStat

    file = os.path.join(_root, path)
    row = dict.fromkeys(COLUMNS)
    row.update(path=path, error="", note="")
    row["class"] = os.path.basename(os.path.dirname(file))
    try:
        with Image.open(file) as image:
            row["width"], row["height"] = image.size
            row["mode"] = image.mode
            stats = ImageStat.Stat(image.convert("L"))
        ((row["min"], row["max"]),) = stats.extrema
        (row["mean"],) = stats.mean
        (row["median"],) = stats.median
    except Exception as e:
        row["error"] = f"{type(e).__name__}: {e}"
    with open(os.path.join(_images_dir, path + ".json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return tuple(row.values())


def baseline_main(root, out, workers):
    """The floor: the same numbers and files from a bare Pool, no workflow at all."""
    from multiprocessing import Pool

    import pandas as pd

    paths = list_images(root)
    images_dir = os.path.join(out, "images")
    for folder in {os.path.dirname(p) for p in paths}:  # once per folder, not per image
        os.makedirs(os.path.join(images_dir, folder), exist_ok=True)
    # Chunks big enough that the pickling round trip per chunk is noise against
    # ~0.3 ms per image, small enough that the last chunks leave no core idle for long.
    chunksize = max(1, min(256, len(paths) // (workers * 32)))
    with Pool(workers, _init_worker, (root, images_dir)) as pool:
        rows = list(pool.imap(_measure_one, paths, chunksize=chunksize))
    frame = pd.DataFrame.from_records(rows, columns=list(COLUMNS))
    # Nullable ints, as the workflow writes them (an error row has no numbers).
    frame = frame.astype({c: "Int64" for c in INT_COLUMNS}).astype({"mean": "float64"})
    frame = frame.sort_values("path", kind="stable", ignore_index=True)
    frame.to_csv(
        os.path.join(out, "stats.csv"), index=False, encoding="utf-8", errors="surrogateescape"
    )


# -------------------------------------------------------------- measurements


def run_baseline(ctx, tree, folder, name):
    cmd = [sys.executable, os.path.abspath(__file__), "--baseline-child", tree.root, folder,
           "--cores", str(ctx.args.cores)]  # fmt: skip
    return run_measured(cmd, folder, ctx.log(name))


def run_workflow(ctx, tree, folder, name):
    # The caller hands an empty working folder: results/, logs/ and .snakemake/ from nothing.
    return run_measured(ctx.snakemake(tree), folder, ctx.log(name))


def measure_full_runs(ctx, tree, repeat):
    """Baseline and workflow full runs, interleaved so that noise on this shared
    machine hits both alike; the order alternates to cancel any order effect."""
    n = tree.images
    baseline = Series(f"baseline Pool({ctx.args.cores}), {n:,} images", n)
    workflow = Series(f"workflow full run, {n:,} images", n)
    # A folder per repetition, made empty (ctx.fresh) before the first timed run.
    folders = {
        (kind, i): ctx.folder("runs", f"{kind}-{n}-{i + 1}")
        for kind in ("baseline", "workflow") for i in range(repeat)
    }  # fmt: skip
    for folder in folders.values():
        ctx.fresh(folder)
    for i in range(repeat):
        bl_dir, wf_dir = folders["baseline", i], folders["workflow", i]
        steps = [(baseline, run_baseline, bl_dir), (workflow, run_workflow, wf_dir)]
        for series, runner, folder in steps if i % 2 == 0 else reversed(steps):
            run = runner(ctx, tree, folder, os.path.basename(folder))
            series.runs.append(run)
            say(f"  {series.label}, run {i + 1}/{repeat}: {run.describe()}")
    say("  " + baseline.describe())
    say("  " + workflow.describe())
    bl_dir, wf_dir = folders["baseline", repeat - 1], folders["workflow", repeat - 1]
    identical, verification = compare_outputs(os.path.join(wf_dir, "results"), bl_dir, n)
    say(f"  outputs: {verification}")
    say("  " + job_timeline(wf_dir, workflow.runs[-1], ctx.args.cores))
    full = FullRuns(baseline, workflow, identical, wf_dir)
    say(f"  baseline system CPU per image: {full.baseline_system_ms:.3f} ms"
        + (" (SLOW DISK: creating files was slow, times are inflated)" if full.slow_disk else ""))  # fmt: skip
    return full


def measure_dry_run(ctx, tree, tries):
    """`snakemake -n` planning from scratch: the folder is emptied before every call,
    since a dry run writes the plan files that a second call would find done."""
    series = Series(f"dry run, {tree.images:,} images", tree.images)
    folder = ctx.folder("runs", f"dryrun-{tree.images}")
    for attempt in range(tries + 1):  # the first call warms up and is not counted
        ctx.fresh(folder)
        run = run_measured(
            ctx.snakemake(tree, "-n"), folder, ctx.log(f"dryrun-{tree.images}-{attempt}")
        )
        if attempt:
            series.runs.append(run)
    say(f"  {series.describe()} (best of {tries} after a warm-up)")
    return series


def measure_rerun(ctx, tree, tries, folder):
    """`snakemake` again in ``folder``, a completed full run's: nothing to do."""
    n = tree.images
    series = Series(f"nothing-to-do rerun, {n:,} images", n)
    for attempt in range(tries + 1):
        log = ctx.log(f"rerun-{n}-{attempt}")
        run = run_measured(ctx.snakemake(tree), folder, log)
        with open(log, errors="replace") as f:
            if "Nothing to be done" not in f.read():
                say(f"  WARNING: the rerun ran jobs (see {log}): this is not a nothing-to-do time")
        if attempt:
            series.runs.append(run)
    say(f"  {series.describe()} (best of {tries} after a warm-up)")
    return series


def compare_outputs(results, baseline, images):
    """Whether the workflow wrote what the baseline wrote: stats.csv and every
    per-image JSON file. Returns (identical, a sentence saying what was found)."""
    wf_csv, bl_csv = os.path.join(results, "stats.csv"), os.path.join(baseline, "stats.csv")
    if filecmp.cmp(wf_csv, bl_csv, shallow=False):
        csv_said, same = (
            f"stats.csv identical to the baseline CSV ({images:,} rows, byte for byte)",
            True,
        )
    else:
        same, csv_said = _compare_csv_values(wf_csv, bl_csv)
    wf_files = _json_files(os.path.join(results, "images"))
    bl_files = _json_files(os.path.join(baseline, "images"))
    differ = [p for p in sorted(wf_files & bl_files) if not _same_json(results, baseline, p)]
    missing, extra = bl_files - wf_files, wf_files - bl_files
    if not (differ or missing or extra):
        json_said = f"all {len(bl_files):,} per-image JSON files identical"
    else:
        same = False
        example = (sorted(differ) or sorted(missing) or sorted(extra))[0]
        json_said = (
            f"per-image JSON files: {len(differ):,} differ, {len(missing):,} missing, "
            f"{len(extra):,} extra (e.g. {example})"
        )
    return same, f"{csv_said}; {json_said}"


def _compare_csv_values(wf_csv, bl_csv):
    import pandas as pd

    read = dict(
        dtype=str, keep_default_na=False, encoding="utf-8", encoding_errors="surrogateescape"
    )
    wf, bl = pd.read_csv(wf_csv, **read), pd.read_csv(bl_csv, **read)
    if list(wf.columns) != list(bl.columns) or len(wf) != len(bl):
        return False, (
            f"stats.csv DIFFERS: {len(wf):,} rows x {list(wf.columns)} vs baseline "
            f"{len(bl):,} x {list(bl.columns)}"
        )
    # Equal text may still be written differently (e.g. 77 vs 77.0): compare numbers as numbers.
    numeric = list(INT_COLUMNS) + ["mean"]
    wf[numeric] = wf[numeric].apply(pd.to_numeric, errors="coerce")
    bl[numeric] = bl[numeric].apply(pd.to_numeric, errors="coerce")
    bad = ~((wf == bl) | (wf.isna() & bl.isna())).all(axis=1)
    if bad.any():
        first = int(bad.idxmax())
        return False, (
            f"stats.csv DIFFERS in {int(bad.sum()):,} rows, first: {wf.iloc[first].to_dict()} "
            f"vs baseline {bl.iloc[first].to_dict()}"
        )
    return True, "stats.csv has the same rows and values as the baseline CSV (formatting differs)"


def _json_files(folder):
    return {
        os.path.relpath(os.path.join(d, f), folder)
        for d, _, files in os.walk(folder)
        for f in files
        if f.endswith(".json")
    }


def _same_json(results, baseline, rel):
    with open(os.path.join(results, "images", rel), "rb") as a, open(
        os.path.join(baseline, "images", rel), "rb"
    ) as b:
        x, y = a.read(), b.read()
    return x == y or json.loads(x) == json.loads(y)


SHARD_LOG_SECONDS = re.compile(r"^\d+ images, \d+ errors, ([0-9.]+) s ", re.MULTILINE)


def finished_jobs(folder):
    """(rule, seconds, end time) of every job of a run.

    Rules with `benchmark:` leave a file holding the job's duration, written
    as the job ends (its mtime). image_stats has none (its monitor costs too
    much per shard); its log ends with the shard's measuring time and is
    closed as the job ends. That misses the shard process's start (~0.1 s).
    """
    bench = os.path.join(folder, "benchmarks")
    for path in glob.glob(os.path.join(bench, "**", "*.tsv"), recursive=True):
        with open(path, newline="") as f:
            seconds = sum(float(row["s"]) for row in csv.DictReader(f, delimiter="\t"))
        rule = os.path.relpath(path, bench).split(os.sep)[0].removesuffix(".tsv")
        yield rule, seconds, os.stat(path).st_mtime
    for path in glob.glob(os.path.join(folder, "logs", "image_stats", "*.log")):
        with open(path, errors="replace") as f:
            found = SHARD_LOG_SECONDS.findall(f.read())
        if found:
            yield "image_stats", float(found[-1]), os.stat(path).st_mtime


def job_timeline(folder, run, cores):
    """Where a full run's time went: every job placed in the run by its end
    time and duration (finished_jobs). What is left when no job runs is
    Snakemake's own time."""
    jobs, per_rule = [], {}
    for rule, seconds, end in finished_jobs(folder):
        jobs.append((end - seconds, end))
        count, total = per_rule.get(rule, (0, 0.0))
        per_rule[rule] = (count + 1, total + seconds)
    if not jobs:
        return "no benchmark files: cannot say where the time went"
    begin, finish = run.started, run.started + run.wall
    # Sweep over job starts and ends: time with no job running, and with all cores busy.
    events = sorted([(max(a, begin), 1) for a, _ in jobs] + [(min(b, finish), -1) for _, b in jobs])
    idle = full = 0.0
    running, last = 0, begin
    for t, step in events:
        idle += (t - last) if running == 0 else 0.0
        full += (t - last) if running >= cores else 0.0
        running, last = running + step, t
    idle += finish - last
    first, after = min(a for a, _ in jobs) - begin, finish - max(b for _, b in jobs)
    rules = ", ".join(
        f"{rule} {count} job{'s' if count > 1 else ''} {total:.2f} s"
        for rule, (count, total) in sorted(per_rule.items(), key=lambda kv: -kv[1][1])
    )
    return (
        f"last run, {run.wall:.2f} s; job time: {rules}. No job running for {idle:.2f} s: "
        f"{first:.2f} s before the first job (start-up, parse, plan, DAG), "
        f"{after:.2f} s after the last (exit), {idle - first - after:.2f} s between jobs; "
        f"all {cores} cores busy for {full:.2f} s"
    )


# --------------------------------------------------------------------- table


def limit_row(measurement, value, measured, limit, unit):
    """A row for an absolute limit: the ratio says how much of the limit is used."""
    return Row(measurement, value, f"<= {limit:g} {unit}", f"{measured / limit:.2f}x limit",
               measured <= limit)  # fmt: skip


def timing(series):
    return f"{series.median:.2f} s (best {series.best:.2f} s, {series.peak_mb:.0f} MB)"


def full_run_rows(full):
    n = f"{full.workflow.images:,}"
    return [
        Row(f"full run, {n} images: workflow (median of {len(full.workflow.runs)})",
            timing(full.workflow), f"<= {FULL_RUN_MAX_RATIO}x baseline",
            f"{full.ratio:.2f}x baseline", full.ratio <= FULL_RUN_MAX_RATIO),
        Row(f"full run, {n} images: baseline Pool (median of {len(full.baseline.runs)})",
            timing(full.baseline), "reference", "", None),
        Row(f"full run, {n} images: outputs equal to the baseline's",
            "yes" if full.identical else "NO", "identical", "", full.identical),
    ]  # fmt: skip


def linearity_rows(large, small):
    """Seconds per image at the large size against the small one, for both."""
    rows = []
    for which in ("workflow", "baseline"):
        big, ref = getattr(large, which), getattr(small, which)
        linear = big.s_per_1000 / ref.s_per_1000
        checked = which == "workflow"  # the baseline is the reference
        rows.append(Row(
            f"full run, {big.images:,} images: {which} (median of {len(big.runs)})",
            f"{big.median:.1f} s = {big.s_per_1000:.3f} s/1k images "
            f"({ref.s_per_1000:.3f} at {ref.images:,})",
            f"<= {LINEARITY_MAX_RATIO}x s/image at {ref.images:,}" if checked else "reference",
            f"{linear:.2f}x per image",
            linear <= LINEARITY_MAX_RATIO if checked else None,
        ))  # fmt: skip
    n = f"{large.workflow.images:,}"
    rows.append(Row(f"full run, {n} images: workflow / baseline",
                    f"{large.workflow.median:.1f} s / {large.baseline.median:.1f} s",
                    "reference", f"{large.ratio:.2f}x baseline", None))  # fmt: skip
    rows.append(Row(f"full run, {n} images: outputs equal to the baseline's",
                    "yes" if large.identical else "NO", "identical", "",
                    large.identical))  # fmt: skip
    return rows


def build_rows(small, dry, rerun, large=None, large_dry=None):
    rows = full_run_rows(small)
    rows.append(limit_row(
        f"dry run -n from scratch, {dry.images:,} images (best of {len(dry.runs)})",
        f"{dry.best:.2f} s ({dry.peak_mb:.0f} MB)", dry.best, DRY_RUN_MAX_S, "s"))  # fmt: skip
    rows.append(limit_row(
        f"nothing-to-do rerun, {rerun.images:,} images (best of {len(rerun.runs)})",
        f"{rerun.best:.2f} s ({rerun.peak_mb:.0f} MB)", rerun.best, RERUN_MAX_S, "s"))  # fmt: skip
    if large_dry:
        n = f"{large_dry.images:,}"
        rows.append(limit_row(
            f"dry run -n from scratch, {n} images (best of {len(large_dry.runs)})",
            f"{large_dry.best:.2f} s", large_dry.best, LARGE_DRY_RUN_MAX_S, "s"))  # fmt: skip
        rows.append(limit_row(
            f"dry run -n peak memory, {n} images", f"{large_dry.peak_mb:.0f} MB",
            large_dry.peak_mb, LARGE_DRY_RUN_MAX_MB, "MB"))  # fmt: skip
    if large:
        rows += linearity_rows(large, small)
    return rows


def markdown_table(rows, invalid):
    def verdict(ok):
        text = "reference" if ok is None else ("within target" if ok else "**NOT within target**")
        return text + (" (timings invalid: Slurm stall)" if invalid and ok is not None else "")

    cells = [("measurement", "value", "target", "ratio", "verdict")]
    cells += [(r.measurement, r.value, r.target, r.ratio, verdict(r.ok)) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(5)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


# ---------------------------------------------------------------------- main


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work",
        default="/var/tmp/imagestats-bench",
        help="folder for generated trees, run folders and logs (default: %(default)s)",
    )
    parser.add_argument(
        "--repeat", type=int, help="full runs of each kind (default 3, 1 with --quick)"
    )
    parser.add_argument(
        "--large-repeat",
        type=int,
        help="full runs of each kind at 270,000 images (default: --repeat)",
    )
    parser.add_argument("--images-per-job", type=int, help="passed to the workflow with --config")
    parser.add_argument(
        "--targets",
        nargs="+",
        default=[],
        metavar="FILE",
        help="Snakemake targets (default: rule all), e.g. results/stats.csv "
        "for exactly what the baseline writes",
    )
    parser.add_argument(
        "--cores", type=int, default=2, help="Snakemake --cores and pool size (default 2)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 2,700 images (27,000 for the large part), 1 repetition",
    )
    parser.add_argument("--skip-large", action="store_true", help="skip the 270,000-image part")
    # Internal: the baseline runs as its own process, measured like Snakemake is.
    parser.add_argument(
        "--baseline-child", nargs=2, metavar=("TREE", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.large_repeat is None:
        args.large_repeat = args.repeat
    args.work = os.path.abspath(args.work)
    return args


def prepare(ctx, scale, copies):
    """A phase's tree, generated or cached, warm, with nothing slowing the disk."""
    tree = ensure_tree(ctx.args.work, scale, copies)
    warm_up(tree)
    ctx.wait_after_delete()
    say(f"\n## {tree.images:,} images")
    ctx.slurm.check(f"{tree.images:,} images")
    return tree


def main(argv=None):
    args = parse_args(argv)
    if args.baseline_child:
        baseline_main(*args.baseline_child, args.cores)
        return
    ctx = Context(args, SlurmWatch())
    ctx.empty_trash()  # left by an interrupted benchmark
    say("# imagestats benchmark")
    for line in machine_lines() + version_lines():
        say(line)
    per_job = args.images_per_job or "config default"
    targets = " ".join(args.targets) or "rule all"
    say(
        f"cores: {args.cores}, repetitions: {args.repeat}, images_per_job: {per_job}, "
        f"targets: {targets}, work folder: {args.work}"
    )
    ctx.slurm.check("start")

    scale = 0.1 if args.quick else 1.0
    tree = prepare(ctx, scale, copies=1)
    dry = measure_dry_run(ctx, tree, tries=3)
    small = measure_full_runs(ctx, tree, args.repeat)
    rerun = measure_rerun(ctx, tree, tries=3, folder=small.workflow_dir)

    large = large_dry = None
    if not args.skip_large:
        big = prepare(ctx, scale, copies=10)
        large_dry = measure_dry_run(ctx, big, tries=2)
        large = measure_full_runs(ctx, big, args.large_repeat)

    ctx.slurm.check("end")
    ctx.empty_trash()  # after the last measurement
    say("\n## Summary")
    for line in machine_lines():
        say(line)
    if ctx.slurm.invalid:
        phases = "; ".join(f"{phase}: {why}" for phase, why in ctx.slurm.problems)
        say(
            banner(
                "TIMINGS ARE INVALID: Snakemake starts waited for a missing Slurm controller.",
                phases,
            )
        )
    slow = [f"{full.baseline.images:,} images ({full.baseline_system_ms:.3f} ms)"
            for full in (small, large) if full is not None and full.slow_disk]  # fmt: skip
    if slow:
        say(
            banner(
                "SLOW DISK: the baseline paid more than "
                f"{SLOW_SYSTEM_MS_PER_IMAGE} ms of system CPU per image at " + ", ".join(slow),
                "Creating files was slow (see QUIET_AFTER_DELETE_S); those times and ratios "
                "are inflated. Rerun later.",
            )
        )
    say("")
    say(markdown_table(build_rows(small, dry, rerun, large, large_dry), ctx.slurm.invalid))
    say(
        f"\nWorkflow target: {targets}; {args.cores} cores; images_per_job: {per_job}. "
        "Ratios against the baseline use medians of this run; 'x limit' is the share of a "
        "limit used; memory is the peak RSS of the largest single process."
    )


if __name__ == "__main__":
    main()
