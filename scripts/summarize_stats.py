#!/usr/bin/env python3
"""Write the per-class summary and the error list (the summarize_stats rule).

    summarize_stats.py STATS_CSV --summary F --errors F --summary-html F --errors-html F

The same files as aggregate_stats.py --summary ... writes, from stats.csv
(for a workflow that runs it as a rule of its own, or to redo them). A thin
command-line shell around imagestats.summary, run by `shell:` (no Snakemake
import per job). Messages go to stderr.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from imagestats.summary import summary_messages, write_summary  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", help="stats.csv")
    for name in ("summary", "errors", "summary-html", "errors-html"):
        parser.add_argument(f"--{name}", required=True, help="file to write")
    args = parser.parse_args(argv)
    try:
        summary, _ = write_summary(
            args.csv, args.summary, args.errors, args.summary_html, args.errors_html
        )
    except (OSError, ValueError) as e:
        sys.exit(f"summarize_stats: {e}")
    for line in summary_messages(summary, args.summary, args.errors):
        print(line, file=sys.stderr)


if __name__ == "__main__":
    main()
