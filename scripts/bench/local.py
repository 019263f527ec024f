"""The local measurements: full runs against the baseline, dry run, rerun.

A full run is the workflow from nothing (an empty working folder) on a
generated tree, against the bare pool (bench/baseline.py) on the same tree
with as many workers as Snakemake has cores. Runs of the baseline and of each
workflow variant (the default target, like for like) are interleaved, with
the order rotating, so that noise on this shared machine hits all alike;
ratios are of medians from the same benchmark run.

The same interleaving measures two more comparisons, each against its own
reference: the bundled ``bands`` analysis against bench/baseline.py's Pool
calling that same function (BANDS, BANDS_POOL), and the guide's per-image
script as the workflow's ``command`` against ``xargs -P`` running that
script on the same files (COMMAND, XARGS).
"""

import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field

from . import baseline as baseline_module
from .common import REPO, say
from .compare import compare_command_outputs, compare_outputs
from .context import SLOW_SYSTEM_MS_PER_IMAGE
from .logs import ShardSummary, job_timeline, shard_logs
from .process import Series, run_measured

CSV_TARGET = ["results/stats.csv"]


@dataclass(frozen=True)
class Variant:
    """What the workflow is asked for, and how close to the pool it should be."""

    key: str  # names its run folders
    label: str
    targets: tuple  # Snakemake targets; empty: rule all
    # workflow / baseline, medians, by target_key: "eurosat", "large", "heavy"
    max_ratio: dict
    config: tuple = ()  # more --config KEY=VALUE, after --config's own (so these hold)
    files: tuple = ()  # copied into the working folder before the run, untimed


# The default target also makes the summary and three plots, which the pool
# does not make; like for like asks the workflow for exactly what the pool writes.
# At 270,000 images (issue 23) the fixed costs are a few seconds of a
# minute, so what is left is the workflow's cost per image and per shard job.
DEFAULT = Variant("default", "default target", (), {"eurosat": 1.5, "large": 1.25, "heavy": 1.25})
LIKE_FOR_LIKE = Variant(
    "csv", "like for like (results/stats.csv)", tuple(CSV_TARGET),
    {"eurosat": 1.35, "large": 1.15, "heavy": 1.25},
)  # fmt: skip
# EuroSAT-like trees of this many images and more take the "large" targets.
LARGE_IMAGES = 270_000


def target_key(tree):
    """Which of a variant's targets apply to ``tree``."""
    return "large" if tree.kind == "eurosat" and tree.images >= LARGE_IMAGES else tree.kind


# The bands issue: "at most 1.3x like for like on 27,000 EuroSAT-like images"
# against a Pool calling the same function and writing the same CSV.
BANDS = Variant(
    "bands", "analysis=bands, like for like (results/stats.csv)", tuple(CSV_TARGET), {"eurosat": 1.3},
    config=("analysis=bands",),
)  # fmt: skip

# The guide's per-image script (tests/guide/image_processor.py), run as the
# command in the working folder as a user runs it, with the interpreter that
# runs the benchmark (a `python3` on PATH may be a slow pyenv shim), which
# xargs runs too. "At most 1.1x on 2,700 images (the command's own start
# dominates both)."
GUIDE_SCRIPT = os.path.join(REPO, "tests", "guide", "image_processor.py")
SCRIPT_NAME = os.path.basename(GUIDE_SCRIPT)
COMMAND_TEMPLATE = f"{shlex.quote(sys.executable)} {SCRIPT_NAME} -file {{}} -out {{outdir}}"
COMMAND_OUTDIR = os.path.join("results", "command_output")  # the workflow's {outdir}
COMMAND = Variant(
    "command", "the guide's script as the command (results/stats.csv)", tuple(CSV_TARGET),
    {"eurosat": 1.1}, config=(f"command={COMMAND_TEMPLATE}",), files=(GUIDE_SCRIPT,),
)  # fmt: skip


def variants(targets, kind):
    """The variants to measure: the --targets given, else the default target and
    (EuroSAT-like trees) like for like."""
    if list(targets) == CSV_TARGET:
        return [LIKE_FOR_LIKE]
    if targets:
        return [Variant("targets", f"targets {' '.join(targets)}", tuple(targets), DEFAULT.max_ratio)]
    return [DEFAULT] if kind == "heavy" else [DEFAULT, LIKE_FOR_LIKE]


class PoolReference:
    """bench/baseline.py: the bare multiprocessing.Pool, in an empty folder."""

    def __init__(self, key, name, analysis="brightness"):
        self.key = key  # names its run folders
        self.name = name  # in the table
        self.analysis = analysis

    short = "baseline"  # in ratios: "1.20x baseline"
    owner = "the baseline's"  # "outputs equal to the baseline's"

    def series_name(self, cores):
        return self.name.replace("Pool", f"Pool({cores})", 1)

    def describe(self, ctx):
        files = "per-image JSON files and stats.csv" if ctx.per_image_files() else "stats.csv only"
        how = ("importing the workflow's own imagestats.analyses.bands.bands" if self.analysis == "bands"
               else "restating the brightness numbers")  # fmt: skip
        return (f"{self.series_name(ctx.args.cores)}: bench/baseline.py --analysis {self.analysis}, "
                f"{how}, writing {files} (the row and CSV code restated, not the workflow's)")  # fmt: skip

    def setup(self, ctx, tree, folder):
        pass

    def command(self, ctx, tree, folder):
        cmd = [sys.executable, os.path.abspath(baseline_module.__file__), tree.root, folder,
               "--workers", str(ctx.args.cores)]  # fmt: skip
        if self.analysis != "brightness":
            cmd += ["--analysis", self.analysis]
        if not ctx.per_image_files():
            cmd.append("--no-per-image-files")
        return cmd

    def compare(self, wf_folder, folder, images):
        return compare_outputs(os.path.join(wf_folder, "results"), folder, images)


class XargsReference:
    """``xargs -0 -P CORES -I{} PYTHON image_processor.py -file {} -out out``
    on the tree's image files (absolute paths, as the workflow gives its
    command images outside the working folder; NUL-separated, listed
    before the clock starts: milliseconds for thousands of files), in a
    folder holding the script, as a user runs it by hand."""

    key = "xargs"
    name = "xargs -P running the script"
    short = "xargs"
    owner = "xargs'"
    LIST = "files.nul"
    OUT = "out"

    def series_name(self, cores):
        return f"xargs -P {cores}"

    def describe(self, ctx):
        return (f"{shlex.join(self.command(ctx, None, None))} (in a folder holding {SCRIPT_NAME}; "
                f"{self.LIST}: the images' absolute paths): the same script on the same files; the "
                f"workflow runs the command {COMMAND_TEMPLATE} (and writes its stats.csv and "
                "per-image files, which xargs does not)")  # fmt: skip

    def setup(self, ctx, tree, folder):
        shutil.copy(GUIDE_SCRIPT, folder)
        os.makedirs(os.path.join(folder, self.OUT))
        root = os.path.abspath(tree.root)
        with open(os.path.join(folder, self.LIST), "wb") as f:
            for path in baseline_module.list_images(root):
                f.write(os.fsencode(os.path.join(root, path)) + b"\0")

    def command(self, ctx, tree, folder):
        """(The same in every folder: the list and out/ are relative to it.)"""
        return ["xargs", "-0", "-a", self.LIST, "-P", str(ctx.args.cores), "-I{}",
                sys.executable, SCRIPT_NAME, "-file", "{}", "-out", self.OUT]  # fmt: skip

    def compare(self, wf_folder, folder, images):
        return compare_command_outputs(
            wf_folder, os.path.join(wf_folder, COMMAND_OUTDIR), os.path.join(folder, self.OUT), images
        )


POOL = PoolReference("baseline", "baseline Pool")
BANDS_POOL = PoolReference("baseline-bands", "baseline Pool calling bands()", analysis="bands")
XARGS = XargsReference()


@dataclass
class WorkflowRuns:
    variant: Variant
    series: Series
    folder: str = ""  # the last run's working folder: a complete run to rerun and read
    identical: bool = False
    verification: str = ""
    shards: ShardSummary = None


@dataclass
class FullRuns:
    tree: object  # trees.Tree
    baseline: Series  # of the reference's runs
    workflows: list = field(default_factory=list)  # WorkflowRuns, in variants order
    reference: object = POOL  # PoolReference or XargsReference

    def ratio(self, runs):
        return runs.series.median / self.baseline.median

    def max_ratio(self, runs):
        return runs.variant.max_ratio[target_key(self.tree)]

    @property
    def slow_disk(self):
        # With fewer images the process starts' own system time (~0.3 s) dominates.
        # (A command's runs start a process per image: no measure of the disk.)
        many = self.tree.kind == "eurosat" and self.baseline.images >= 27_000
        pool = isinstance(self.reference, PoolReference)
        return pool and many and self.baseline.system_ms_per_image > SLOW_SYSTEM_MS_PER_IMAGE


def run_baseline(ctx, tree, folder, name, reference=POOL):
    return run_measured(reference.command(ctx, tree, folder), folder, ctx.log(name))


def run_workflow(ctx, tree, folder, name, targets, config=()):
    # The caller hands an empty working folder: results/, logs/ and .snakemake/ from nothing.
    return run_measured(ctx.snakemake(tree, targets=list(targets), config=config), folder, ctx.log(name))


def measure_full_runs(ctx, tree, repeat, kinds, reference=POOL):
    """Reference (by default the baseline Pool) and workflow full runs (one
    series per variant in ``kinds``), interleaved."""
    n, tag = tree.images, f"{tree.kind}-{tree.images}"
    full = FullRuns(tree, Series(f"{reference.series_name(ctx.args.cores)}, {tree.label}", n),
                    reference=reference)  # fmt: skip
    full.workflows = [
        WorkflowRuns(v, Series(f"workflow full run, {tree.label}, {v.label}", n)) for v in kinds
    ]
    if reference is not POOL:  # the default comparison is the module's doc
        say(f"  reference: {reference.describe(ctx)}")
        for v in kinds:
            say(f"  workflow: {v.label}, --config {' '.join(v.config)}")
    # A folder per run, made empty (ctx.fresh) and set up before the first timed run.
    steps = [(reference.key, full.baseline, None)]
    steps += [(f"workflow-{w.variant.key}", w.series, w) for w in full.workflows]
    folders = {}
    for name, _, wf in steps:
        for i in range(repeat):
            folder = folders[name, i] = ctx.fresh(ctx.folder("runs", f"{name}-{tag}-{i + 1}"))
            if wf is None:
                reference.setup(ctx, tree, folder)
            for file in wf.variant.files if wf else ():
                shutil.copy(file, folder)
    for i in range(repeat):
        turn = i % len(steps)
        for name, series, wf in steps[turn:] + steps[:turn]:
            folder = folders[name, i]
            label = os.path.basename(folder)
            if wf is None:
                run = run_baseline(ctx, tree, folder, label, reference)
            else:
                run = run_workflow(ctx, tree, folder, label, wf.variant.targets, wf.variant.config)
                wf.folder = folder
            series.runs.append(run)
            say(f"  {series.label}, run {i + 1}/{repeat}: {run.describe()}")
    say("  " + full.baseline.describe())
    baseline_dir = folders[reference.key, repeat - 1]
    for wf in full.workflows:
        say("  " + wf.series.describe())
        wf.identical, wf.verification = reference.compare(wf.folder, baseline_dir, n)
        say(f"    outputs: {wf.verification}")
        say("    " + job_timeline(wf.folder, wf.series.runs[-1], ctx.args.cores))
        wf.shards = ShardSummary(shard_logs(wf.folder))
        say("    " + wf.shards.describe())
        say(f"    {full.ratio(wf):.2f}x the {full.reference.name} (target <= {full.max_ratio(wf)}x)")
    if isinstance(reference, PoolReference):  # (xargs' is its processes' starts)
        say(f"  {reference.name} system CPU per image: {full.baseline.system_ms_per_image:.3f} ms"
            + (" (SLOW DISK: creating files was slow, times are inflated)" if full.slow_disk else ""))  # fmt: skip
    return full


def measure_dry_run(ctx, tree, tries, again=False):
    """`snakemake -n` planning from scratch: the folder is emptied before every call,
    since a dry run writes the plan files that a second call would find done.
    ``again``: then `snakemake -n` once more in the last folder, its lists written
    (as ``series.again``, a Series of one run)."""
    series = Series(f"dry run, {tree.label}", tree.images)
    folder = ctx.folder("runs", f"dryrun-{tree.kind}-{tree.images}")
    for attempt in range(tries + 1):  # the first call warms up and is not counted
        ctx.fresh(folder)
        log = ctx.log(f"dryrun-{tree.kind}-{tree.images}-{attempt}")
        run = run_measured(ctx.snakemake(tree, "-n"), folder, log)
        if attempt:
            series.runs.append(run)
    say(f"  {series.describe()} (best of {tries} after a warm-up)")
    series.again = None
    if again:
        series.again = Series(f"dry run again (plan lists written), {tree.label}", tree.images)
        log = ctx.log(f"dryrun-{tree.kind}-{tree.images}-again")
        series.again.runs.append(run_measured(ctx.snakemake(tree, "-n"), folder, log))
        say(f"  {series.again.describe()}")
    return series


def measure_rerun(ctx, tree, tries, runs):
    """`snakemake` again in the folder of a completed full run (``runs``, a
    WorkflowRuns), for the same targets: nothing to do."""
    series = Series(f"nothing-to-do rerun, {tree.label}", tree.images)
    for attempt in range(tries + 1):
        log = ctx.log(f"rerun-{tree.kind}-{tree.images}-{attempt}")
        cmd = ctx.snakemake(tree, targets=list(runs.variant.targets))
        run = run_measured(cmd, runs.folder, log)
        with open(log, errors="replace") as f:
            if "Nothing to be done" not in f.read():
                say(f"  WARNING: the rerun ran jobs (see {log}): this is not a nothing-to-do time")
        if attempt:
            series.runs.append(run)
    say(f"  {series.describe()} (best of {tries} after a warm-up)")
    return series
