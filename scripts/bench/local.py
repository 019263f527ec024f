"""The local measurements: full runs against the baseline, dry run, rerun.

A full run is the workflow from nothing (an empty working folder) on a
generated tree, against the bare pool (bench/baseline.py) on the same tree
with as many workers as Snakemake has cores. Runs of the baseline and of each
workflow variant (the default target, like for like) are interleaved, with
the order rotating, so that noise on this shared machine hits all alike;
ratios are of medians from the same benchmark run.
"""

import os
import sys
from dataclasses import dataclass, field

from . import baseline as baseline_module
from .common import say
from .compare import compare_outputs
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
    # workflow / baseline, medians, by tree kind ("eurosat", "heavy")
    max_ratio: dict


# The default target also makes the summary and three plots, which the pool
# does not make; like for like asks the workflow for exactly what the pool writes.
DEFAULT = Variant("default", "default target", (), {"eurosat": 1.5, "heavy": 1.25})
LIKE_FOR_LIKE = Variant(
    "csv", "like for like (results/stats.csv)", tuple(CSV_TARGET), {"eurosat": 1.35, "heavy": 1.25}
)


def variants(targets, kind):
    """The variants to measure: the --targets given, else the default target and
    (EuroSAT-like trees) like for like."""
    if list(targets) == CSV_TARGET:
        return [LIKE_FOR_LIKE]
    if targets:
        return [Variant("targets", f"targets {' '.join(targets)}", tuple(targets), DEFAULT.max_ratio)]
    return [DEFAULT] if kind == "heavy" else [DEFAULT, LIKE_FOR_LIKE]


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
    baseline: Series
    workflows: list = field(default_factory=list)  # WorkflowRuns, in variants order

    def ratio(self, runs):
        return runs.series.median / self.baseline.median

    def max_ratio(self, runs):
        return runs.variant.max_ratio[self.tree.kind]

    @property
    def slow_disk(self):
        # With fewer images the process starts' own system time (~0.3 s) dominates.
        many = self.tree.kind == "eurosat" and self.baseline.images >= 27_000
        return many and self.baseline.system_ms_per_image > SLOW_SYSTEM_MS_PER_IMAGE


def run_baseline(ctx, tree, folder, name):
    cmd = [sys.executable, os.path.abspath(baseline_module.__file__), tree.root, folder,
           "--workers", str(ctx.args.cores)]  # fmt: skip
    return run_measured(cmd, folder, ctx.log(name))


def run_workflow(ctx, tree, folder, name, targets):
    # The caller hands an empty working folder: results/, logs/ and .snakemake/ from nothing.
    return run_measured(ctx.snakemake(tree, targets=list(targets)), folder, ctx.log(name))


def measure_full_runs(ctx, tree, repeat, kinds):
    """Baseline and workflow full runs (one series per variant in ``kinds``), interleaved."""
    n, tag = tree.images, f"{tree.kind}-{tree.images}"
    full = FullRuns(tree, Series(f"baseline Pool({ctx.args.cores}), {tree.label}", n))
    full.workflows = [
        WorkflowRuns(v, Series(f"workflow full run, {tree.label}, {v.label}", n)) for v in kinds
    ]
    # A folder per run, made empty (ctx.fresh) before the first timed run.
    steps = [("baseline", full.baseline, None)]
    steps += [(f"workflow-{w.variant.key}", w.series, w) for w in full.workflows]
    folders = {
        (name, i): ctx.fresh(ctx.folder("runs", f"{name}-{tag}-{i + 1}"))
        for name, _, _ in steps for i in range(repeat)
    }  # fmt: skip
    for i in range(repeat):
        turn = i % len(steps)
        for name, series, wf in steps[turn:] + steps[:turn]:
            folder = folders[name, i]
            label = os.path.basename(folder)
            if wf is None:
                run = run_baseline(ctx, tree, folder, label)
            else:
                run = run_workflow(ctx, tree, folder, label, wf.variant.targets)
                wf.folder = folder
            series.runs.append(run)
            say(f"  {series.label}, run {i + 1}/{repeat}: {run.describe()}")
    say("  " + full.baseline.describe())
    baseline_dir = folders["baseline", repeat - 1]
    for wf in full.workflows:
        say("  " + wf.series.describe())
        wf.identical, wf.verification = compare_outputs(
            os.path.join(wf.folder, "results"), baseline_dir, n
        )
        say(f"    outputs: {wf.verification}")
        say("    " + job_timeline(wf.folder, wf.series.runs[-1], ctx.args.cores))
        wf.shards = ShardSummary(shard_logs(wf.folder))
        say("    " + wf.shards.describe())
        say(f"    {full.ratio(wf):.2f}x the baseline (target <= {full.max_ratio(wf)}x)")
    say(f"  baseline system CPU per image: {full.baseline.system_ms_per_image:.3f} ms"
        + (" (SLOW DISK: creating files was slow, times are inflated)" if full.slow_disk else ""))  # fmt: skip
    return full


def measure_dry_run(ctx, tree, tries):
    """`snakemake -n` planning from scratch: the folder is emptied before every call,
    since a dry run writes the plan files that a second call would find done."""
    series = Series(f"dry run, {tree.label}", tree.images)
    folder = ctx.folder("runs", f"dryrun-{tree.kind}-{tree.images}")
    for attempt in range(tries + 1):  # the first call warms up and is not counted
        ctx.fresh(folder)
        log = ctx.log(f"dryrun-{tree.kind}-{tree.images}-{attempt}")
        run = run_measured(ctx.snakemake(tree, "-n"), folder, log)
        if attempt:
            series.runs.append(run)
    say(f"  {series.describe()} (best of {tries} after a warm-up)")
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
