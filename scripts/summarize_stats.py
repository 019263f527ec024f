#!/usr/bin/env python3
"""Write the per-class summary and the error list (the summarize_stats rule).

    summarize_stats.py STATS_CSV --summary F --errors F --summary-html F --errors-html F

A thin command-line shell around imagestats.summary, run by `shell:` (no
Snakemake import per job). Messages go to stderr.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from imagestats.summary import OVERALL, write_summary  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", help="stats.csv")
    for name in ("summary", "errors", "summary-html", "errors-html"):
        parser.add_argument(f"--{name}", required=True, help="file to write")
    args = parser.parse_args(argv)
    summary, errors = write_summary(
        args.csv, args.summary, args.errors, args.summary_html, args.errors_html
    )
    if (summary["class"] == OVERALL).sum() > 1:
        print(
            f"warning: a class folder is named {OVERALL!r} like the overall row; "
            "summary.csv's last row is the overall one",
            file=sys.stderr,
        )
    overall = summary.iloc[-1]
    print(
        f"{len(summary) - 1} classes, {overall['images']} images, "
        f"{overall['errors']} with errors -> {args.summary}, {args.errors}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
