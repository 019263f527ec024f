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

import os
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


@dataclass
class Counted:
    """What one command did behind the shim."""

    label: str
    totals: Counter  # (part, owner, kind) -> n (bench/metacount.attribute)
    processes: int
    wall: float


@dataclass
class MetadataRuns:
    tree: object
    shards: int
    dry: Counted = None
    run: Counted = None
    delayed: dict = field(default_factory=dict)  # "dry"/"run" -> Counted with delays

    def counts(self, which, part, owner=None):
        return metacount.by_kind(getattr(self, which).totals, part, owner)

    def budget_lines(self):
        """Issue 23's budgets, each with what was counted and whether it holds."""
        n = self.tree.images
        lines = []

        def check(what, value, limit):
            lines.append((what, value, limit, value <= limit + 1e-9))

        for which in ("dry", "run"):
            plan = self.counts(which, "plan", "workflow")
            check(f"plan ({which}): workflow stats per image", (plan["stat"] + plan["fstat"]) / n, 1.0)
        shards = self.counts("run", "shards", "workflow")
        check("shard jobs: opens per image", shards["open"] / n, 1.0)
        check("shard jobs: stats per image", (shards["stat"] + shards["fstat"]) / n, 1.0)
        check("shard jobs: renames per image", shards["rename"] / n, 0.0 + 0.01)  # per-shard renames only
        snake = Counter()
        for which in ("dry", "run"):
            for part in ("plan", "run", "shards", "after"):
                snake += self.counts(which, part, "snakemake")
        check("Snakemake (both commands): operations per shard", sum(snake.values()) / self.shards, 300.0)
        return lines


def _count_command(ctx, cmd, folder, name, lib, delay=None):
    out = ctx.fresh(ctx.folder("metacount", name))
    env = {**os.environ, **metacount.environment(lib, ctx.args.work, out, delay)}
    run = run_measured(cmd, folder, ctx.log(name), env=env)
    processes = metacount.read(out)
    return Counted(name, metacount.attribute(processes), len(processes), run.wall)


def _shard_count(folder):
    try:
        return sum(1 for name in os.listdir(os.path.join(folder, "results", "plan")) if name.endswith(".jsonl"))
    except FileNotFoundError:
        return 0


def measure_metadata(ctx, tree, delay=None):
    """The dry run and the full run behind the shim; prints the table."""
    lib = metacount.build(ctx.folder("metacount-lib"))
    say(f"  counting shim: {lib} (paths under {ctx.args.work}; Python and the workflow's code outside it)")
    tag = f"{tree.kind}-{tree.images}"
    targets = list(ctx.args.targets)
    runs = MetadataRuns(tree, 0)
    for suffix, slow in [("", None)] + ([("-delayed", delay)] if delay else []):
        dry_dir = ctx.fresh(ctx.folder("runs", f"metadata-dry-{tag}{suffix}"))
        dry = _count_command(ctx, ctx.snakemake(tree, "-n", targets=targets), dry_dir,
                             f"metadata-dry-{tag}{suffix}", lib, slow)  # fmt: skip
        run_dir = ctx.fresh(ctx.folder("runs", f"metadata-run-{tag}{suffix}"))
        run = _count_command(ctx, ctx.snakemake(tree, targets=targets), run_dir,
                             f"metadata-run-{tag}{suffix}", lib, slow)  # fmt: skip
        if slow:
            runs.delayed = {"dry": dry, "run": run}
        else:
            runs.dry, runs.run = dry, run
            runs.shards = _shard_count(run_dir)
        say(f"  {'delayed ' if slow else ''}dry run {dry.wall:.2f} s, full run {run.wall:.2f} s "
            f"({run.processes} processes counted)")  # fmt: skip
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
    snake = Counter()
    for which in ("dry", "run"):
        for part in ("plan", "run", "shards", "after", "other"):
            snake += runs.counts(which, part, "snakemake")
    lines.append(f"Snakemake's own operations, both commands: {sum(snake.values()):,} "
                 f"({sum(snake.values()) / max(1, shards):,.1f} per shard, {sum(snake.values()) / n:.3f} per image)")  # fmt: skip
    lines.append("")
    lines.append("| budget (issue 23) | counted | limit | |")
    lines.append("|---|---|---|---|")
    for what, value, limit, ok in runs.budget_lines():
        lines.append(f"| {what} | {value:.3f} | {limit:g} | {'ok' if ok else 'OVER'} |")
    if runs.delayed:
        lines.append("")
        lines.append(f"With the shim sleeping {delay} us per counted operation: dry run "
                     f"{runs.delayed['dry'].wall:.2f} s (unslowed {runs.dry.wall:.2f} s), full run "
                     f"{runs.delayed['run'].wall:.2f} s (unslowed {runs.run.wall:.2f} s)")  # fmt: skip
    return lines


if __name__ == "__main__":  # python -m bench.metadata WORK TREE: a quick look during development
    sys.exit("run scripts/benchmark.py --metadata")
