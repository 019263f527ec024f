"""The command line: which phases run, in which order, and the summary.

Two modes. The default (local) measures the workflow against the bare pool
on the EuroSAT-like trees and the heavy tree, plus dry run, rerun, the bands
analysis against a pool calling the same function, the guide's script as the
command against xargs, and the 270,000-image part; --slurm measures Slurm runs with the shipped profile on
the test cluster. Each phase prepares its tree (generated or cached, read
once so it is in the page cache, after the quiet time a big delete needs).
"""

import argparse
import os

from . import baseline, trees
from .common import banner, machine_lines, say, version_lines
from .context import SLOW_SYSTEM_MS_PER_IMAGE, Context
from .local import (BANDS, BANDS_POOL, COMMAND, XARGS, measure_dry_run, measure_full_runs,
                    measure_rerun, variants)  # fmt: skip
from .process import PEAK_RSS_SOURCE
from .stall import SlurmWatch
from .table import build_rows, markdown_table

WORK = "/var/tmp/imagestats-bench"


def parse_args(argv, doc):
    lines = (doc or __doc__).strip().splitlines()
    parser = argparse.ArgumentParser(
        description=lines[0], epilog="\n".join(lines[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--work", default=WORK,
                        help="folder for generated trees, run folders and logs (default: %(default)s)")  # fmt: skip
    parser.add_argument("--repeat", type=int,
                        help="full runs of each kind (default 3, 1 with --quick), bands' too")  # fmt: skip
    parser.add_argument("--large-repeat", type=int,
                        help="full runs of each kind at 270,000 images (default: --repeat)")  # fmt: skip
    parser.add_argument("--images-per-job", type=int, help="passed to the workflow with --config")
    parser.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE",
                        help="more workflow config for every run, e.g. mb_per_job=500")  # fmt: skip
    parser.add_argument("--shard-threads", type=int, metavar="N",
                        help="--set-threads image_stats=N: worker processes per shard job")  # fmt: skip
    parser.add_argument(
        "--targets", nargs="+", default=[], metavar="FILE",
        help="Snakemake targets (default: rule all, and also results/stats.csv like for like)",
    )  # fmt: skip
    parser.add_argument("--cores", type=int, default=2,
                        help="Snakemake --cores and pool size (default 2)")  # fmt: skip
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 2,700 images (27,000 for the large part, 270 for the "
                        "command), a small heavy tree, 1 repetition")  # fmt: skip
    parser.add_argument("--skip-large", action="store_true",
                        help="skip the 270,000-image part (--slurm: the 270,000-image run)")  # fmt: skip
    parser.add_argument("--skip-heavy", action="store_true", help="skip the heavy tree")
    parser.add_argument("--skip-bands", action="store_true",
                        help="skip analysis=bands against a Pool calling the same function")  # fmt: skip
    parser.add_argument("--skip-command", action="store_true",
                        help="skip the guide's script as the command against xargs -P")  # fmt: skip
    parser.add_argument("--command-repeat", type=int, default=1, metavar="N",
                        help="runs of each side of the command phase (default 1: about a minute "
                        "each at 2,700 images)")  # fmt: skip
    parser.add_argument("--huge", action="store_true",
                        help="also a dry run at 999,000 images (hard links), time and memory")  # fmt: skip
    parser.add_argument("--slurm", action="store_true",
                        help="Slurm mode: profiles/comet on the test cluster at 27,000 and "
                        "270,000 images (2,700 with --quick) against a local run")  # fmt: skip
    parser.add_argument("--metadata", action="store_true",
                        help="metadata mode: a dry run and a full run behind a shim counting stat, "
                        "open, create, rename, unlink and readdir calls, per image, per phase, workflow "
                        "and Snakemake apart, with a modelled time on Lustre (27,000 images; 2,700 "
                        "with --quick)")  # fmt: skip
    parser.add_argument("--metadata-delay", type=int, metavar="US",
                        help="with --metadata: also run both with the shim sleeping US microseconds "
                        "per counted operation, and print their wall times, and time planning with "
                        "each stat delayed (also on 4 hard-linked copies of the tree, 108,000 images, "
                        "unless --skip-large)")  # fmt: skip
    # Internal, kept for old callers: the baseline as a child (now bench/baseline.py).
    parser.add_argument("--baseline-child", nargs=2, metavar=("TREE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.large_repeat is None:
        args.large_repeat = args.repeat
    args.work = os.path.abspath(args.work)
    return args


def prepare(ctx, tree, title=None):
    """A phase's tree, warm, with nothing slowing the disk."""
    trees.warm_up(tree)
    ctx.wait_after_delete()
    say(f"\n## {title or tree.label}")
    if tree.kind == "heavy":
        say(f"heavy tree: {trees.describe_heavy(tree)} ({tree.root})")
    ctx.slurm.check(tree.label)
    note_load(ctx, tree.label)
    return tree


BUSY_LOAD_ABOVE_CORES = 1.5


def note_load(ctx, phase):
    """Remember a phase that started on a busy machine. Our own runs keep the
    1-minute load near --cores; well above that, other work competes for the
    CPUs and the phase's times are inflated (ratios less so, but noisier)."""
    load = os.getloadavg()[0]
    if load > ctx.args.cores + BUSY_LOAD_ABOVE_CORES:
        ctx.busy.append(f"{phase} (load {load:.1f})")
        say(f"  BUSY MACHINE: load average {load:.1f} with {ctx.args.cores} cores measured")


def busy_banner(ctx):
    if ctx.busy:
        say(banner(
            f"BUSY MACHINE: other work competed for the CPUs at {', '.join(ctx.busy)}.",
            "Times are inflated and ratios noisy: rerun on a quiet machine for figures to quote.",
        ))  # fmt: skip


def header(ctx):
    args = ctx.args
    say("# imagestats benchmark" + (" on Slurm" if args.slurm else "") + (" of metadata operations" if args.metadata else ""))
    for line in machine_lines() + version_lines(PEAK_RSS_SOURCE):
        say(line)
    per_job = args.images_per_job or "config default"
    say(
        f"cores: {args.cores}, repetitions: {args.repeat}, images_per_job: {per_job}, "
        f"targets: {' '.join(args.targets) or 'rule all (and results/stats.csv)'}, "
        f"extra config: {' '.join(args.config) or 'none'}, shard threads: "
        f"{args.shard_threads or 'rule default'}, work folder: {args.work}"
    )


def local_main(ctx):
    args = ctx.args
    ctx.slurm.check("start")
    scale = 0.1 if args.quick else 1.0
    small_tree = trees.eurosat(args.work, scale)
    tree = prepare(ctx, small_tree)
    dry = measure_dry_run(ctx, tree, tries=3)
    small = measure_full_runs(ctx, tree, args.repeat, variants(args.targets, tree.kind))
    rerun = measure_rerun(ctx, tree, tries=3, runs=small.workflows[0])

    bands = command = None
    if not args.skip_bands:  # the same tree: "27,000 EuroSAT-like images"
        tree = prepare(ctx, small_tree, f"analysis=bands against a Pool calling bands(), {small_tree.label}")
        bands = measure_full_runs(ctx, tree, args.repeat, [BANDS], BANDS_POOL)
    if not args.skip_command:  # "2,700 images": a tenth of the small tree's
        tree = trees.eurosat(args.work, scale / 10)
        prepare(ctx, tree, f"the guide's script as the command against xargs, {tree.label}")
        command = measure_full_runs(ctx, tree, args.command_repeat, [COMMAND], XARGS)

    heavy = None
    if not args.skip_heavy:
        tree = prepare(ctx, trees.heavy(args.work, scale))
        heavy = measure_full_runs(ctx, tree, args.repeat, variants(args.targets, tree.kind))

    large = large_dry = huge_dry = None
    if not args.skip_large:
        tree = prepare(ctx, trees.linked(args.work, small_tree, copies=10))
        large_dry = measure_dry_run(ctx, tree, tries=2)
        large = measure_full_runs(ctx, tree, args.large_repeat, variants(args.targets, tree.kind))
    if args.huge:
        tree = prepare(ctx, trees.linked(args.work, trees.eurosat(args.work, 1.0), copies=37))
        huge_dry = measure_dry_run(ctx, tree, tries=1, again=True)

    ctx.slurm.check("end")
    ctx.empty_trash()  # after the last measurement
    say("\n## Summary")
    for line in machine_lines():
        say(line)
    if ctx.slurm.invalid:
        say(ctx.slurm.summary())
    busy_banner(ctx)
    slow = [f"{full.tree.label} ({full.baseline.system_ms_per_image:.3f} ms)"
            for full in (small, bands, large) if full is not None and full.slow_disk]  # fmt: skip
    if slow:
        say(banner(
            f"SLOW DISK: the baseline paid more than {SLOW_SYSTEM_MS_PER_IMAGE} ms of system CPU "
            "per image at " + ", ".join(slow),
            "Creating files was slow (see bench/context.py); those times and ratios are inflated. "
            "Rerun later.",
        ))  # fmt: skip
    say("")
    rows = build_rows(small, dry, rerun, heavy, large, large_dry, huge_dry, bands, command)
    say(markdown_table(rows, ctx.slurm.invalid))
    per_job = args.images_per_job or "config default"
    say(
        f"\nWorkflow targets: {' '.join(args.targets) or 'rule all, and results/stats.csv like for like'}; "
        f"{args.cores} cores; images_per_job: {per_job}. Ratios against the baseline use medians of "
        "this run; 'x limit' is the share of a limit used; memory is the peak RSS of the largest "
        "single process (per shard job: as its log says)."
    )
    if bands:
        files = "with per-image JSON files" if ctx.per_image_files() else "per_image_files=false"
        say(f"analysis=bands: the workflow's results/stats.csv target ({files}) against "
            f"{BANDS_POOL.describe(ctx)}; outputs compared byte for byte (JSON files as JSON).")  # fmt: skip
    if command:
        say(f"command: the workflow's results/stats.csv target against {XARGS.describe(ctx)}; "
            f"{args.command_repeat} run(s) of each (--command-repeat).")  # fmt: skip


def slurm_main(ctx):
    from .process import CommandFailed
    from .slurm_bench import measure_slurm, slurm_table

    args = ctx.args
    small_tree = trees.eurosat(args.work, 0.1 if args.quick else 1.0)
    wanted = [small_tree]
    if not args.skip_large and not args.quick:
        wanted.append(trees.linked(args.work, small_tree, copies=10))
    results, failed = [], []
    for tree in wanted:
        prepare(ctx, tree)
        try:
            results.append(measure_slurm(ctx, tree))
        except (CommandFailed, RuntimeError) as e:  # report it, measure the other sizes
            failed.append(f"{tree.label}: {str(e).splitlines()[0]}")
            say(f"  FAILED: {e}")
    ctx.empty_trash()
    say("\n## Summary (Slurm)")
    for line in machine_lines():
        say(line)
    busy_banner(ctx)
    for line in failed:
        say(banner(f"Slurm run FAILED, {line}"))
    if results:
        say("")
        say(slurm_table(results, args.cores))
        say(
            "\nSlurm: profiles/comet as shipped on the test cluster (one node, "
            f"{len(os.sched_getaffinity(0))} CPUs); local: --cores {args.cores}. Job times from "
            "sacct (1 s resolution), image clocks from the shard logs."
        )


def metadata_main(ctx):
    from .metadata import measure_metadata

    args = ctx.args
    tree = prepare(ctx, trees.eurosat(args.work, 0.1 if args.quick else 1.0),
                   "metadata operations per image")  # fmt: skip
    walk_trees = []
    if args.metadata_delay and not args.skip_large:  # 10^5 images planned (hard links, cached)
        walk_trees.append(trees.linked(args.work, tree, copies=4))
    measure_metadata(ctx, tree, args.metadata_delay, walk_trees)
    ctx.empty_trash()
    say("\n## Summary (metadata)")
    for line in machine_lines():
        say(line)
    busy_banner(ctx)


def main(argv=None, doc=None):
    args = parse_args(argv, doc)
    if args.baseline_child:
        baseline.run(*args.baseline_child, args.cores)
        return
    ctx = Context(args, SlurmWatch())
    ctx.empty_trash()  # left by an interrupted benchmark
    header(ctx)
    if os.environ.pop("PYTHONDONTWRITEBYTECODE", None):
        # Some sandboxes set it: then every job process (and Snakemake at
        # each start) compiles the workflow's modules again, which no user
        # with Python's default pays. Measured as users run it.
        say("PYTHONDONTWRITEBYTECODE was set: unset for every command measured (Python's default, "
            "modules compiled once into __pycache__)")
    if args.metadata:
        metadata_main(ctx)
    elif args.slurm:
        slurm_main(ctx)
    else:
        local_main(ctx)
