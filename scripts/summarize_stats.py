#!/usr/bin/env python3
"""Write the per-class summary, the error list and the figures (the summarize_stats rule).

    summarize_stats.py STATS_CSV --summary F --errors F --summary-html F
        --errors-html F --brightness-by-class F --min-max F --outliers F
        [--dpi 100] [--max-labels 3] [--jobs N]

Reads stats.csv: it is the longest job after the shards, mostly importing
matplotlib and drawing. With --jobs 2 or 3 (the rule's threads), a forked
process reads the CSV and writes the summary while this one imports
matplotlib (0.15 s and half a second at 27,000 images; numpy, which
both use, is imported once before the fork), and the figures
are drawn by that many processes at once (forked after the CSV is read, so
nothing is read or imported twice); the files are the same as with one. A
thin command-line shell around imagestats.summary and imagestats.plots,
run by `shell:` (no Snakemake import per job). Messages go to stderr.
"""

import argparse
import os
import pickle
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Not matplotlib: the reader forked below must not pay for it.
from imagestats.aggregate import AggregateError  # noqa: E402
from imagestats.stats import read_stats_csv  # noqa: E402
from imagestats.summary import FIGURES, summary_messages, write_summary  # noqa: E402

SUMMARY_FILES = ("summary", "errors", "summary_html", "errors_html")


def read(stats_csv, summary_files):
    """(Stats of stats.csv, messages); writes the summary files."""
    stats = read_stats_csv(stats_csv, keep_paths=True)
    summary, _ = write_summary(stats, *summary_files)
    return stats, summary_messages(summary, summary_files[0], summary_files[1])


def read_beside(*args):
    """Start ``read(*args)`` in a forked process; returns a function that
    waits for its result (or raises its error as AggregateError)."""
    readable, writable = os.pipe()
    pid = os.fork()
    if pid == 0:  # the reader: matplotlib is not imported here
        os.close(readable)
        code = 1
        try:
            try:
                result = read(*args)
            except (AggregateError, OSError, ValueError) as e:
                result = AggregateError(str(e))
            with os.fdopen(writable, "wb") as pipe:
                pickle.dump(result, pipe, pickle.HIGHEST_PROTOCOL)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(writable)

    def result():
        with os.fdopen(readable, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        if status or not data:
            raise AggregateError(f"the process reading {args[0]} failed (see above)")
        value = pickle.loads(data)
        if isinstance(value, Exception):
            raise value
        return value

    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stats_csv", help="stats.csv, as aggregate_stats wrote it")
    for name in SUMMARY_FILES:
        parser.add_argument(f"--{name.replace('_', '-')}", required=True, help="summary file to write")
    for name in FIGURES:
        parser.add_argument(f"--{name.replace('_', '-')}", required=True, help="PNG to write")
    parser.add_argument("--dpi", type=int, default=100)
    parser.add_argument("--max-labels", type=int, default=3, help="outliers named per class")
    parser.add_argument("--jobs", type=int, default=1,
                        help=f"processes at once (1 to {len(FIGURES)}; the rule's threads)")  # fmt: skip
    args = parser.parse_args(argv)
    what = (args.stats_csv, [getattr(args, name) for name in SUMMARY_FILES])
    pending = read_beside(*what) if args.jobs > 1 and hasattr(os, "fork") else None

    from imagestats.plots import FigureFailed, draw_all

    try:
        stats, messages = pending() if pending else read(*what)
    except (AggregateError, OSError, ValueError) as e:
        sys.exit(f"summarize_stats: {e}")
    for line in messages:
        print(line, file=sys.stderr)
    outputs = {name: getattr(args, name) for name in FIGURES}
    try:
        draw_all(stats, outputs, args.dpi, args.max_labels, jobs=args.jobs)
    except FigureFailed as e:
        sys.exit(f"summarize_stats: {e}")
    print(f"{len(stats)} images -> {', '.join(outputs.values())}", file=sys.stderr)


if __name__ == "__main__":
    main()
    # Every file is written and closed: skip the interpreter's teardown of
    # matplotlib's modules and the rows' objects, 0.1-0.3 s on the critical
    # path of every run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
