"""The --metadata phase: metadata operations per image, workflow and Snakemake apart.

Runs, behind the counting shim (bench/metacount.py, bench/metacount.c), with
every path under the work folder counted (the tree and the run folders;
Python, its packages and the workflow's code lie outside it):

  * ``snakemake -n`` in an empty folder: planning from scratch, a dry run;
  * ``snakemake`` (the default target, or --targets) in another empty folder:
    its main process plans again (part "plan"), runs the shard jobs
    ("shards"), the jobs after them ("after"), and keeps Snakemake's books
    while they run ("run": the main process after onstart).

It prints operations per image for each part, kind and owner, the totals,
Snakemake's per shard, the budgets of issue 23, and a modelled time at
Lustre's costs per operation (bench/metacount.LUSTRE_MS, from
../shared/FILESYSTEM-NOTES.md). With ``--metadata-delay US`` the same runs
are made again with the shim sleeping US microseconds per operation, and
their wall times printed beside the unslowed ones.
"""

import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field

from . import metacount
from .common import say
from .process import run_measured

PARTS = (
    ("dry", "plan", "plan (snakemake -n)"),
    ("run", "plan", "plan (the run's own parse)"),
    ("run", "shards", "shard jobs"),
    ("run", "after", "jobs after the shards"),
    ("run", "run", "main process while jobs run"),
    ("run", "other", "other processes"),
)
SHOWN_KINDS = ("stat", "fstat", "open", "create", "rename", "unlink", "readdir", "mkdir", "link", "other")


# What a budget allows beyond its operations per image: every command and
# every shard job has a fixed number of its own (the plan's index and lists,
# a shard's list, table, CSV lines, journal, lock and log), which issue 23's
# budgets ("per image") do not count.
FIXED_ALLOWANCE = 100
PER_SHARD_ALLOWANCE = 20
# Snakemake's own operations per shard (its checks of each job's input and
# outputs, its records under .snakemake/): a number per shard, never per image.
# Most are its scheduler's: every time it wakes (a job ends, a timer) it
# checks the existence and size of the input of up to scheduler-subsample
# (16, profiles/default) ready jobs, three stats each, so the count varies
# with how often it wakes: 180-280 per shard measured here, hence the room.
SNAKEMAKE_PER_SHARD = 500


@dataclass
class Counted:
    """What one command did behind the shim."""

    label: str
    totals: Counter  # (part, owner, kind) -> n (bench/metacount.attribute)
    processes: int
    wall: float
    traced: Counter = None  # (part, owner, kind, path) -> n, when traced


@dataclass
class Budget:
    what: str
    counted: int
    per_image: float  # the budget's operations per image
    allowed: int  # per_image x images + the allowances

    @property
    def ok(self):
        return self.counted <= self.allowed


@dataclass
class MetadataRuns:
    tree: object
    shards: int
    results: str = ""  # the full run's results folder
    per_image_files: bool = True
    dry: Counted = None
    run: Counted = None
    delayed: dict = field(default_factory=dict)  # "dry"/"run" -> Counted with delays
    walks: list = field(default_factory=list)  # WalkTimes, with delays

    def counts(self, which, part, owner=None):
        return metacount.by_kind(getattr(self, which).totals, part, owner)

    def snakemake_on_images(self):
        """Snakemake's operations on an image or a per-image file (both
        commands; needs their traces): issue 23 wants none."""
        roots = (os.path.realpath(self.tree.root) + os.sep,
                 os.path.join(self.results, "images") + os.sep,
                 os.path.join(self.results, "transformed") + os.sep)  # fmt: skip
        found = Counter()
        for which in ("dry", "run"):
            for (part, owner, kind, path), n in (getattr(self, which).traced or {}).items():
                if owner == "snakemake" and path.startswith(roots):
                    found[path] += n
        return found

    def budgets(self):
        """Issue 23's budgets: what was counted, what is allowed."""
        n, shards = self.tree.images, self.shards
        out = []

        def check(what, counted, per_image, allowance):
            out.append(Budget(what, counted, per_image, int(per_image * n + allowance)))

        plan_allowance = FIXED_ALLOWANCE + PER_SHARD_ALLOWANCE * shards
        for which, label in (("dry", "snakemake -n"), ("run", "the run")):
            plan = self.counts(which, "plan", "workflow")
            check(f"plan ({label}), workflow: stats", plan["stat"] + plan["fstat"], 1, plan_allowance)
        jobs = self.counts("run", "shards", "workflow")
        job_allowance = PER_SHARD_ALLOWANCE * shards
        check("shard jobs, workflow: opens", jobs["open"], 1, job_allowance)
        check("shard jobs, workflow: stats", jobs["stat"] + jobs["fstat"], 1, job_allowance)
        check("shard jobs, workflow: creates", jobs["create"] + jobs["mkdir"], int(self.per_image_files),
              job_allowance)  # fmt: skip
        check("shard jobs, workflow: renames", jobs["rename"], 0, job_allowance)
        check("shard jobs, workflow: everything else",
              sum(jobs.values()) - sum(jobs[k] for k in ("open", "stat", "fstat", "create", "mkdir", "rename")),
              0, job_allowance)  # fmt: skip
        snake = Counter()
        for which in ("dry", "run"):
            for part in ("plan", "run", "shards", "after", "other"):
                snake += self.counts(which, part, "snakemake")
        check("Snakemake, both commands: all", sum(snake.values()), 0, FIXED_ALLOWANCE + SNAKEMAKE_PER_SHARD * shards)
        if self.dry.traced is not None:
            on_images = self.snakemake_on_images()
            check("Snakemake: on image files and per-image files", sum(on_images.values()), 0, 0)
        return out


def counted_folder(ctx, tree):
    """The folder whose paths are counted: the work folder and the tree (both
    when the tree lies elsewhere), never Python's or the workflow's own files
    (their imports would be counted as Snakemake's operations)."""
    prefix = os.path.commonpath([os.path.realpath(ctx.args.work), os.path.realpath(tree.root)])
    for outside in (sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(metacount.BENCH))):
        inside = os.path.realpath(outside)
        if inside == prefix or inside.startswith(prefix.rstrip(os.sep) + os.sep):
            raise RuntimeError(f"cannot count under {prefix}: it holds {inside}; put --work and the tree elsewhere")
    return prefix


def _count_command(ctx, cmd, folder, name, lib, delay=None, trace=False, prefix=None):
    out = ctx.fresh(ctx.folder("metacount", name))
    traces = os.path.join(out, "trace") if trace else None
    env = {**os.environ, **metacount.environment(lib, prefix or ctx.args.work, out, delay, traces)}
    if delay:  # a slow filesystem: walk it as a network filesystem is walked
        from imagestats.plan import WALK_THREADS

        env["IMAGESTATS_WALK_THREADS"] = str(WALK_THREADS)
    run = run_measured(cmd, folder, ctx.log(name), env=env)
    processes = metacount.read(out)
    traced = metacount.read_traces(traces, processes) if trace else None
    return Counted(name, metacount.attribute(processes), len(processes), run.wall, traced)


PLAN_TIMER = """
import json, os, sys, time
sys.path.insert(0, {scripts!r})
from imagestats.plan import make_plan
start = time.perf_counter()
plan = make_plan({{"input_dir": {root!r}}})
print(json.dumps([plan.images, time.perf_counter() - start]))
"""


@dataclass
class WalkTimes:
    images: int
    delay_us: int
    threads: int
    serial: float  # seconds, one thread
    threaded: float  # seconds, ``threads`` threads

    @property
    def stat_seconds(self):
        """The serial stat time: one stat per image, each delayed."""
        return self.images * self.delay_us / 1e6


def measure_walk(ctx, tree, lib, delay_us, prefix):
    """make_plan of ``tree`` (the walk, the hashes, the cut) with every stat
    under ``prefix`` delayed by ``delay_us``: with one thread, and with
    plan.WALK_THREADS as on a network filesystem (IMAGESTATS_WALK_THREADS:
    the mount table of a local disk cannot say so). Best of two each."""
    from imagestats.plan import WALK_THREADS

    code = PLAN_TIMER.format(scripts=os.path.dirname(metacount.BENCH), root=tree.root)
    times = {}
    for threads in (1, WALK_THREADS):
        out = ctx.fresh(ctx.folder("metacount", f"walk-{tree.images}-{threads}"))
        env = {**os.environ, **metacount.environment(lib, prefix, out, {"stat": delay_us}),
               "IMAGESTATS_WALK_THREADS": str(threads)}  # fmt: skip
        best = None
        for _ in range(2):
            done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            images, seconds = json.loads(done.stdout.strip().splitlines()[-1])
            best = seconds if best is None else min(best, seconds)
        times[threads] = best
    walk = WalkTimes(images, delay_us, WALK_THREADS, times[1], times[WALK_THREADS])
    say(f"  planning {walk.images:,} images (make_plan) with each stat delayed {delay_us} us: one thread "
        f"{walk.serial:.2f} s, {WALK_THREADS} threads {walk.threaded:.2f} s; the serial stat time is "
        f"{walk.stat_seconds:.2f} s, so {walk.threaded / walk.stat_seconds:.2f} of it (target <= 0.33)")  # fmt: skip
    return walk


def _shard_count(folder):
    try:
        return sum(1 for name in os.listdir(os.path.join(folder, "results", "plan")) if name.endswith(".jsonl"))
    except FileNotFoundError:
        return 0


def measure_metadata(ctx, tree, delay=None, walk_trees=()):
    """The dry run and the full run behind the shim; prints the table."""
    lib = metacount.build(ctx.folder("metacount-lib"))
    prefix = counted_folder(ctx, tree)
    say(f"  counting shim: {lib} (paths under {prefix}; Python and the workflow's code outside it)")
    tag = f"{tree.kind}-{tree.images}"
    targets = list(ctx.args.targets)
    runs = MetadataRuns(tree, 0, per_image_files=ctx.per_image_files())
    for suffix, slow in [("", None)] + ([("-delayed", delay)] if delay else []):
        dry_dir = ctx.fresh(ctx.folder("runs", f"metadata-dry-{tag}{suffix}"))
        dry = _count_command(ctx, ctx.snakemake(tree, "-n", targets=targets), dry_dir,
                             f"metadata-dry-{tag}{suffix}", lib, slow, not slow, prefix)  # fmt: skip
        run_dir = ctx.fresh(ctx.folder("runs", f"metadata-run-{tag}{suffix}"))
        run = _count_command(ctx, ctx.snakemake(tree, targets=targets), run_dir,
                             f"metadata-run-{tag}{suffix}", lib, slow, not slow, prefix)  # fmt: skip
        if slow:
            runs.delayed = {"dry": dry, "run": run}
        else:
            runs.dry, runs.run = dry, run
            runs.shards = _shard_count(run_dir)
            runs.results = os.path.join(os.path.realpath(run_dir), "results")
        say(f"  {'delayed ' if slow else ''}dry run {dry.wall:.2f} s, full run {run.wall:.2f} s "
            f"({run.processes} processes counted)")  # fmt: skip
    if delay:
        runs.walks.append(measure_walk(ctx, tree, lib, delay, prefix))
        for extra in walk_trees:
            runs.walks.append(measure_walk(ctx, extra, lib, delay, counted_folder(ctx, extra)))
    for line in report(runs, delay):
        say(line)
    return runs


def _fmt(x):
    return "0" if x == 0 else (f"{x:.3f}" if x < 10 else f"{x:,.0f}")


def report(runs, delay=None):
    n, shards = runs.tree.images, runs.shards
    lines = [
        f"\n### Metadata operations per image, {runs.tree.label}, {shards} shards",
        "Counted by an LD_PRELOAD shim (scripts/bench/metacount.c); 'workflow' is the workflow's own code, "
        "'snakemake' everything else (scripts/bench/metacount.py says how they are told apart). Modelled: "
        f"the counts at Lustre's per-operation costs, {metacount.COST_SOURCE}: "
        + ", ".join(f"{k} {v:g} ms" for k, v in metacount.LUSTRE_MS.items()) + ".",
        "",
        "| part | who | " + " | ".join(SHOWN_KINDS) + " | all, per image | all | modelled on Lustre |",
        "|---|---|" + "---|" * len(SHOWN_KINDS) + "---|---|---|",
    ]
    total_model = Counter()
    for which, part, label in PARTS:
        for owner in ("workflow", "snakemake"):
            counts = runs.counts(which, part, owner)
            if not counts:
                continue
            total = sum(counts.values())
            seconds = metacount.modelled_seconds(counts)
            total_model[which, owner] += seconds
            cells = " | ".join(_fmt(counts[k] / n) for k in SHOWN_KINDS)
            lines.append(f"| {label} | {owner} | {cells} | {_fmt(total / n)} | {total:,} | {seconds:,.1f} s |")
    lines.append("")
    for which, what in (("dry", "snakemake -n"), ("run", "the full run")):
        wf, sm = total_model[which, "workflow"], total_model[which, "snakemake"]
        lines.append(
            f"{what}: modelled {wf + sm:,.1f} s of metadata round trips on Lustre "
            f"(workflow {wf:,.1f} s, Snakemake {sm:,.1f} s; {1000 * (wf + sm) / n:.2f} ms per image)"
        )
    plan_ms = 1000 * metacount.modelled_seconds(runs.counts("run", "plan", "workflow")) / n
    shard_ms = 1000 * metacount.modelled_seconds(runs.counts("run", "shards", "workflow")) / n
    lines.append(f"At 10^6 images, the workflow's per-image share scaled: planning ~{plan_ms * 1e3 / 60:,.0f} min "
                 f"of round trips one at a time (every run, dry runs too), the shard jobs ~{shard_ms * 1e3 / 60:,.0f} min "
                 f"({shard_ms:.2f} ms per image, of which {1.5 if runs.per_image_files else 0:g} ms the per-image file's create)")  # fmt: skip
    snake = Counter()
    for which in ("dry", "run"):
        for part in ("plan", "run", "shards", "after", "other"):
            snake += runs.counts(which, part, "snakemake")
    lines.append(f"Snakemake's own operations, both commands: {sum(snake.values()):,} "
                 f"({sum(snake.values()) / max(1, shards):,.1f} per shard, {sum(snake.values()) / n:.3f} per image)")  # fmt: skip
    lines.append("")
    lines.append(f"Budgets (issue 23): operations per image, plus {FIXED_ALLOWANCE} per command and "
                 f"{PER_SHARD_ALLOWANCE} per shard of the workflow's own (its plan files, a shard's list, "
                 f"table, journal, lock); Snakemake {SNAKEMAKE_PER_SHARD} per shard, none per image.")  # fmt: skip
    lines.append("")
    lines.append("| budget (issue 23) | counted | per image | limit per image | allowed | |")
    lines.append("|---|---|---|---|---|---|")
    for b in runs.budgets():
        lines.append(f"| {b.what} | {b.counted:,} | {b.counted / n:.3f} | {b.per_image:g} | {b.allowed:,} | "
                     f"{'ok' if b.ok else 'OVER'} |")  # fmt: skip
    on_images = runs.snakemake_on_images()
    if on_images:
        lines.append("Snakemake's operations on images or per-image files: "
                     + ", ".join(f"{p} ({k})" for p, k in on_images.most_common(5)))  # fmt: skip
    if runs.delayed:
        lines.append("")
        lines.append(f"With the shim sleeping {delay} us per counted operation: dry run "
                     f"{runs.delayed['dry'].wall:.2f} s (unslowed {runs.dry.wall:.2f} s), full run "
                     f"{runs.delayed['run'].wall:.2f} s (unslowed {runs.run.wall:.2f} s); the walk with "
                     "plan.WALK_THREADS threads, as on a network filesystem")  # fmt: skip
    for walk in runs.walks:
        lines.append(f"Planning {walk.images:,} images, each stat delayed {walk.delay_us} us: one thread "
                     f"{walk.serial:.2f} s, {walk.threads} threads {walk.threaded:.2f} s = "
                     f"{walk.threaded / walk.stat_seconds:.2f} of the serial stat time {walk.stat_seconds:.2f} s "
                     f"(target <= 0.33: {'ok' if walk.threaded <= walk.stat_seconds / 3 else 'OVER'})")  # fmt: skip
    return lines


if __name__ == "__main__":  # python -m bench.metadata WORK TREE: a quick look during development
    sys.exit("run scripts/benchmark.py --metadata")
