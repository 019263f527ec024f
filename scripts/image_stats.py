#!/usr/bin/env python3
"""Measure the images of one shard list (the workflow's image_stats rule).

    image_stats.py SHARD_LIST TABLE --root DIR [--csv FILE] [--images-dir DIR] [--workers N]
                   [--analysis SPEC | --command TEMPLATE] [--image-timeout SECONDS] [--transformed-dir DIR]
                   [--on-error record|fail] [--max-image-pixels N] [--journal-dir DIR]

A thin command-line shell around imagestats.shard.run_shard. The rule runs
it with `shell:` rather than `script:` because a `script:` job imports
Snakemake to unpickle its job (~0.25 s CPU per shard), which with dozens of
shards costs as much as measuring the images. The log (stderr) lists the
images with errors and ends with one line of counts, time and memory.
"""

import time

STARTED = time.time()  # before the imports: the start of the job's own work

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from imagestats.shard import FATAL, SHARD_ERRORS, Stopped, run_shard, stopped_line  # noqa: E402
from imagestats.metamarks import own_process  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shard_list", help="shard list written by the plan (JSON lines)")
    parser.add_argument("table", help="shard table to write (JSON lines)")
    parser.add_argument("--csv", help="the rows as stats.csv lines, for aggregate_stats (default: none)")
    parser.add_argument("--root", help="folder the list's paths are relative to (default: from the plan index)")
    parser.add_argument("--images-dir", help="folder for per-image stats files ('none' or unset: none)")
    parser.add_argument("--workers", type=int, default=1, help="measuring processes")
    parser.add_argument("--on-error", choices=("record", "fail"), default="record")
    parser.add_argument("--max-image-pixels", type=int, default=89478485)
    parser.add_argument("--analysis", default="brightness",
                        help="bundled analysis, FILE.py:FUNCTION or package.module:FUNCTION")  # fmt: skip
    parser.add_argument("--command", default="", help="a command per image instead of an analysis ('' for none)")
    parser.add_argument("--image-timeout", type=float, default=600.0, help="seconds one image may take")
    parser.add_argument("--transformed-dir", help="where images the analysis returns go (default: results/transformed)")
    parser.add_argument("--journal-dir", help="where the shard keeps its work (default: results/journal)")
    args = parser.parse_args(argv)
    try:
        run_shard(
            args.shard_list, args.table, None if args.images_dir in (None, "none") else args.images_dir,
            args.on_error,
            args.max_image_pixels, sys.stderr, root=args.root,
            workers=max(1, args.workers), journal_dir=args.journal_dir, started=STARTED, csv_file=args.csv,
            analysis=args.analysis, command=args.command or None, image_timeout=args.image_timeout, transformed_dir=args.transformed_dir,
        )  # fmt: skip
    except SHARD_ERRORS as e:
        # The log's last line; the main Snakemake process prints it on the
        # terminal when the run fails (imagestats.workflow.failed_shards).
        sys.exit(f"{FATAL}{e}")
    except Stopped as e:  # a stop signal: no table; the exit status says which signal, as a shell's would
        print(stopped_line(e, args.table), file=sys.stderr)
        sys.exit(128 + e.signum)


if __name__ == "__main__":
    own_process()  # the benchmark's metadata counts: this job's operations are the workflow's
    main()
