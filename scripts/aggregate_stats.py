#!/usr/bin/env python3
"""Join the shard tables of a plan into stats.csv (the aggregate_stats rule).

    aggregate_stats.py PLAN_DIR TABLES_DIR --csv results/stats.csv
        [--summary F --errors F --summary-html F --errors-html F]

With the four summary files it also writes what summarize_stats.py writes,
from the rows it has just merged: one process and one read of the tables
instead of a second job that reads stats.csv back (summarize_stats.py still
does that on its own; plot_stats.py --summary ... writes them too). The CSV
alone needs no numpy: the fastest way to stats.csv. A thin command-line shell around imagestats.aggregate
and imagestats.summary, run by `shell:` for the reason image_stats.py gives:
a `script:` job first imports Snakemake, and this job is on every run's
critical path. Messages go to stderr.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from imagestats.aggregate import (  # noqa: E402
    AggregateError,
    add_plan_arguments,
    read_plan,
    write_stats_csv,
)

SUMMARY_FILES = ("summary", "errors", "summary_html", "errors_html")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_plan_arguments(parser)
    parser.add_argument("--csv", required=True, help="CSV to write")
    for name in SUMMARY_FILES:
        parser.add_argument(f"--{name.replace('_', '-')}", help="summary file to write (all four or none)")
    args = parser.parse_args(argv)
    summary_files = [getattr(args, name) for name in SUMMARY_FILES]
    if any(summary_files) and not all(summary_files):
        parser.error("give all of --summary, --errors, --summary-html and --errors-html, or none")
    try:
        if all(summary_files):
            stats = read_plan(args.plan_dir, args.tables_dir, csv_out=args.csv)
            images, errors = len(stats), len(stats.errors)
        else:  # the CSV alone: no numpy to import
            images, errors = write_stats_csv(args.plan_dir, args.tables_dir, args.csv)
    except (AggregateError, OSError) as e:
        sys.exit(f"aggregate_stats: {e}")
    print(f"{images} images, {errors} with errors -> {args.csv}", file=sys.stderr)
    if all(summary_files):
        from imagestats.summary import summary_messages, write_summary

        summary, _ = write_summary(stats, *summary_files)
        for line in summary_messages(summary, args.summary, args.errors):
            print(line, file=sys.stderr)


if __name__ == "__main__":
    main()
