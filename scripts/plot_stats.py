#!/usr/bin/env python3
"""Draw the workflow's figures (the plot_stats rule).

    plot_stats.py PLAN_DIR TABLES_DIR --brightness-by-class F --min-max F --outliers F
                  [--dpi 100] [--max-labels 3] [--jobs N]

Reads the shard tables, not stats.csv, so that it runs beside
aggregate_stats instead of after it: the figures are the longest job after
the shards. With --jobs 2 or 3 the figures are drawn by that many processes
at once (forked after the tables are read, so nothing is read or imported
twice); the files are the same as with one. A thin command-line shell
around imagestats.plots, run by `shell:` (no Snakemake import per job).
Messages go to stderr.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from imagestats.aggregate import AggregateError, add_plan_arguments, read_plan  # noqa: E402
from imagestats.plots import FIGURES, FigureFailed, draw_all  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_plan_arguments(parser)
    for name in FIGURES:
        parser.add_argument(f"--{name.replace('_', '-')}", required=True, help="PNG to write")
    parser.add_argument("--dpi", type=int, default=100)
    parser.add_argument("--max-labels", type=int, default=3, help="outliers named per class")
    parser.add_argument("--jobs", type=int, default=1,
                        help=f"processes drawing at once (1 to {len(FIGURES)}; the rule's threads)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        stats = read_plan(args.plan_dir, args.tables_dir, keep_paths=True)
    except (AggregateError, OSError) as e:
        sys.exit(f"plot_stats: {e}")
    outputs = {name: getattr(args, name) for name in FIGURES}
    try:
        draw_all(stats, outputs, args.dpi, args.max_labels, jobs=args.jobs)
    except FigureFailed as e:
        sys.exit(f"plot_stats: {e}")
    print(f"{len(stats)} images -> {', '.join(outputs.values())}", file=sys.stderr)


if __name__ == "__main__":
    main()
