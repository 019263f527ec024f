#!/usr/bin/env python3
"""Merge the shards' CSV lines of a plan into stats.csv (the aggregate_stats rule).

    aggregate_stats.py PLAN_DIR TABLES_DIR --csv results/stats.csv

The CSV alone, with no numpy to import: the fastest way to stats.csv (the
summary and figures come from summarize_stats.py, which reads stats.csv
after it). A thin command-line shell around imagestats.aggregate, run by
`shell:` for the reason image_stats.py gives: a `script:` job first
imports Snakemake, and this job is on every run's critical path. Messages
go to stderr.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from imagestats.aggregate import AggregateError, add_plan_arguments, write_stats_csv  # noqa: E402
from imagestats.metamarks import own_process  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_plan_arguments(parser)
    parser.add_argument("--csv", required=True, help="CSV to write")
    args = parser.parse_args(argv)
    try:
        images, errors = write_stats_csv(args.plan_dir, args.tables_dir, args.csv)
    except (AggregateError, OSError) as e:
        sys.exit(f"aggregate_stats: {e}")
    print(f"{images} images, {errors} with errors -> {args.csv}", file=sys.stderr)


if __name__ == "__main__":
    own_process()  # the benchmark's metadata counts: this job's operations are the workflow's
    main()
