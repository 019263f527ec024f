#!/usr/bin/env python3
"""Write the per-class summary, the error list and the figures (the summarize_stats rule).

    summarize_stats.py STATS_CSV --summary F --errors F --summary-html F
        --errors-html F [--analysis SPEC]
        [--figures brightness] --brightness-by-class F --min-max F --outliers F
        | --figures columns --columns-by-class F [--plot-columns NAME ...]
        [--dpi 100] [--max-labels 3] [--jobs N]

--figures says which summary and figures (imagestats.figures): brightness
for the analyses brightness and greyscale, columns for any other, whose
figure draws the numeric columns --plot-columns names (none: every one, up
to 12); a name that is not a numeric column of STATS_CSV stops the
command before it writes anything. --analysis names the analysis in the
columns figure's title and on the summary page.

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
from imagestats.metamarks import own_process  # noqa: E402
from imagestats.figures import (  # noqa: E402
    BRIGHTNESS, COLUMNS, FIGURES, MAX_PLOTTED, figure_option, plot_choice,
)  # fmt: skip
from imagestats.stats import read_stats_csv  # noqa: E402
from imagestats.summary import summary_messages, write_summary  # noqa: E402

SUMMARY_FILES = ("summary", "errors", "summary_html", "errors_html")


def read(stats_csv, summary_files, mode, analysis, plot_columns):
    """(Stats of stats.csv, messages, the columns to plot or None); writes
    the summary files, once the columns to plot are known to be there."""
    stats = read_stats_csv(stats_csv, keep_paths=True)
    choice = plot_choice(stats.numeric, plot_columns) if mode == COLUMNS else None
    write_summary(stats, *summary_files, mode=mode, analysis=analysis)
    return stats, summary_messages(stats, *summary_files[:2]), choice


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


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stats_csv", help="stats.csv, as aggregate_stats wrote it")
    for name in SUMMARY_FILES:
        parser.add_argument(f"--{name.replace('_', '-')}", required=True, help="summary file to write")
    parser.add_argument("--analysis", default="brightness", help="the analysis's name, for titles")
    parser.add_argument("--figures", choices=list(FIGURES), default=BRIGHTNESS,
                        help="which summary and figures (default: %(default)s)")  # fmt: skip
    for mode, names in FIGURES.items():
        for name in names:
            parser.add_argument(figure_option(name), help=f"PNG to write (needed with --figures {mode})")
    parser.add_argument("--plot-columns", nargs="*", metavar="NAME",
                        help=f"numeric columns to draw with --figures columns (none: every one, up to {MAX_PLOTTED})")  # fmt: skip
    parser.add_argument("--dpi", type=int, default=100)
    parser.add_argument("--max-labels", type=int, default=3, help="outliers named per class")
    most = max(map(len, FIGURES.values()))
    parser.add_argument("--jobs", type=int, default=1,
                        help=f"processes at once (1 to {most}; the rule's threads)")  # fmt: skip
    args = parser.parse_args(argv)
    missing = [figure_option(name) for name in FIGURES[args.figures] if getattr(args, name) is None]
    if missing:
        parser.error(f"the following arguments are required with --figures {args.figures}: {', '.join(missing)}")
    return args


def main(argv=None):
    args = parse_arguments(argv)
    what = (args.stats_csv, [getattr(args, name) for name in SUMMARY_FILES], args.figures,
            args.analysis, args.plot_columns)  # fmt: skip
    pending = read_beside(*what) if args.jobs > 1 and hasattr(os, "fork") else None

    from imagestats.plots import FigureFailed, draw_all

    try:
        stats, messages, choice = pending() if pending else read(*what)
    except (AggregateError, OSError, ValueError) as e:
        sys.exit(f"summarize_stats: {e}")
    for line in messages:
        print(line, file=sys.stderr)
    outputs = {name: getattr(args, name) for name in FIGURES[args.figures]}
    try:
        draw_all(stats, outputs, args.dpi, args.max_labels, jobs=args.jobs, choice=choice,
                 analysis=args.analysis)  # fmt: skip
    except FigureFailed as e:
        sys.exit(f"summarize_stats: {e}")
    print(f"{len(stats)} images -> {', '.join(outputs.values())}", file=sys.stderr)


if __name__ == "__main__":
    own_process()  # the benchmark's metadata counts: this job's operations are the workflow's
    main()
    # Every file is written and closed: skip the interpreter's teardown of
    # matplotlib's modules and the rows' objects, 0.1-0.3 s on the critical
    # path of every run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
