#!/usr/bin/env python3
"""Join the shard tables of a plan into stats.csv (the aggregate_stats rule).

    aggregate_stats.py PLAN_DIR TABLES_DIR --csv results/stats.csv

A thin command-line shell around imagestats.aggregate, run by `shell:` for
the reason image_stats.py gives: a `script:` job first imports Snakemake,
and this job is on every run's critical path. Messages go to stderr.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from imagestats.aggregate import (  # noqa: E402
    AggregateError,
    add_plan_arguments,
    plan_frame,
    write_csv,
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_plan_arguments(parser)
    parser.add_argument("--csv", required=True, help="CSV to write")
    args = parser.parse_args(argv)
    try:
        frame = plan_frame(args.plan_dir, args.tables_dir)
    except (AggregateError, OSError) as e:
        sys.exit(f"aggregate_stats: {e}")
    write_csv(frame, args.csv)
    errors = int((frame["error"] != "").sum())
    print(f"{len(frame)} images, {errors} with errors -> {args.csv}", file=sys.stderr)


if __name__ == "__main__":
    main()
