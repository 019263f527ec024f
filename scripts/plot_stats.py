#!/usr/bin/env python3
"""Draw the workflow's figures (the plot_stats rule).

    plot_stats.py PLAN_DIR TABLES_DIR --brightness-by-class F --min-max F --outliers F
                  [--dpi 100] [--max-labels 3] [--jobs N]

Reads the shard tables, not stats.csv, so that it runs beside
aggregate_stats instead of after it: the figures are the longest job after
the shards. With --jobs 2 or 3, a forked process reads the tables while
this one imports matplotlib (each takes about half a second at 27,000
images), and the figures are drawn by that many processes at once (forked
after the tables are read, so nothing is read or imported twice); the
files are the same as with one. A thin command-line shell around
imagestats.plots, run by `shell:` (no Snakemake import per job). Messages
go to stderr.
"""

import argparse
import os
import pickle
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

FIGURES = ("brightness_by_class", "min_max", "outliers")  # imagestats.plots.FIGURES


def read_beside(plan_dir, tables_dir):
    """Start reading the plan's tables in a forked process; returns a
    function that waits for their Stats (or raises the reader's error)."""
    readable, writable = os.pipe()
    pid = os.fork()
    if pid == 0:  # the reader: nothing imported yet but the standard library
        os.close(readable)
        code = 1
        try:
            from imagestats.aggregate import AggregateError, read_plan

            try:
                result = read_plan(plan_dir, tables_dir, keep_paths=True)
            except (AggregateError, OSError) as e:
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

    def stats():
        from imagestats.aggregate import AggregateError

        with os.fdopen(readable, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        if status or not data:
            raise AggregateError("the process reading the shard tables failed (see above)")
        result = pickle.loads(data)
        if isinstance(result, Exception):
            raise result
        return result

    return stats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan_dir", help="plan folder (results/plan): which tables, how many images")
    parser.add_argument("tables_dir", help="folder of the shard tables (results/shards)")
    for name in FIGURES:
        parser.add_argument(f"--{name.replace('_', '-')}", required=True, help="PNG to write")
    parser.add_argument("--dpi", type=int, default=100)
    parser.add_argument("--max-labels", type=int, default=3, help="outliers named per class")
    parser.add_argument("--jobs", type=int, default=1,
                        help=f"processes at once (1 to {len(FIGURES)}; the rule's threads)")  # fmt: skip
    args = parser.parse_args(argv)
    pending = read_beside(args.plan_dir, args.tables_dir) if args.jobs > 1 and hasattr(os, "fork") else None

    from imagestats.aggregate import AggregateError, read_plan
    from imagestats.plots import FigureFailed, draw_all

    try:
        stats = pending() if pending else read_plan(args.plan_dir, args.tables_dir, keep_paths=True)
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
