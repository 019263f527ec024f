"""stats.csv from the shards' rows: one row per image, sorted by path.

No pandas, and never the whole table as Python objects: at a million
images a DataFrame of all rows took over a gigabyte and 11 s, and these
commands run on the Slurm submit host. Each shard job writes, beside its
table, its rows as stats.csv lines in path order (statscsv.shard_csv_text:
the JSON parse and the formatting happen in the shard jobs, side by side);
write_stats_csv then only merges those lines by path (heapq.merge over
the text of each, ~the size of stats.csv in memory) and checks that no
image is missing or doubled. The summary and the figures read stats.csv
back (imagestats.stats). The format itself is imagestats.statscsv.
"""

import heapq
import json
import os
from itertools import islice
from operator import itemgetter, ne

from .plan import read_plan_index
from .statscsv import (
    FIRST, LAST, PATH, analysis_columns, csv_file, csv_line, header, records, text_lines,
)  # fmt: skip

BATCH = 8192  # merged rows written at a time


class AggregateError(Exception):
    pass


def add_plan_arguments(parser):
    """The PLAN_DIR TABLES_DIR arguments of aggregate_stats.py."""
    parser.add_argument("plan_dir", help="plan folder (results/plan): which shards, how many images")
    parser.add_argument("tables_dir", help="folder of the shard tables and their CSV lines (results/shards)")


def _shard_text(file):
    """(header cells, header line, text) of a shard's CSV file; raises
    AggregateError when it is missing or does not start with a header."""
    try:
        with open(file, encoding="utf-8", errors="surrogateescape", newline=os.linesep) as f:
            text = f.read()
    except FileNotFoundError:
        raise AggregateError(
            f"shard file {file} is missing: rerun the workflow, which writes that shard's files again"
        ) from None
    first = next(text_lines(text), "")
    try:
        ((_, names),) = records([first])
    except ValueError:
        names = []
    if tuple(names[:2]) != FIRST or tuple(names[-2:]) != LAST or not first.endswith(os.linesep):
        raise AggregateError(
            f"shard file {file} is damaged: delete it and rerun the workflow "
            f"(it does not start with a header {','.join(FIRST)},...,{','.join(LAST)})"
        )
    return names, first, text


def _shard_rows(file, text, start, width):
    """(path, has an error, cells, CSV text) of each row of a shard's CSV
    text from ``start``, in path order; raises AggregateError when damaged."""
    damaged = f"shard file {file} is damaged: delete it and rerun the workflow"
    last = ""
    try:
        for line, cells in records(text_lines(text, start)):
            path = cells[PATH]
            if len(cells) != width or path < last:
                raise AggregateError(f"{damaged} (a row out of order or without {width} cells)")
            last = path
            yield path, cells[-2] != "", cells, line
    except ValueError as e:  # a quote left open
        raise AggregateError(f"{damaged} ({e})") from None


def _first_keys(shards):
    """The keys, in the analysis's order, of the first row measured without
    error (by path) of all the shards: its table line holds them."""
    best = None
    for file, (names, first, text) in shards:
        for path, failed, _, _ in _shard_rows(file, text, len(first), len(names)):
            if not failed:
                if best is None or path < best[0]:
                    best = (path, file)
                break
    if best is None:
        return ()
    path, file = best
    with open(file[: -len(".csv")] + ".jsonl", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            row = json.loads(line)
            if row.get("path") == path:
                return tuple(row)
    raise AggregateError(f"the table of {file} lacks the row of '{path}': delete results/shards/ and rerun")


def _merged_columns(shards):
    """The columns of stats.csv when the shards' columns differ (images that
    return different keys): see imagestats.statscsv."""
    others = set()
    for _, (names, _, _) in shards:
        others.update(names[len(FIRST) : -len(LAST)])
    return header(analysis_columns(_first_keys(shards), others))


def _rows_as(names, file, shard):
    """The rows of a shard with the columns ``names`` (empty where it has none)."""
    own, first, text = shard
    where = {name: i for i, name in enumerate(own)}
    picks = [where.get(name) for name in names]
    for path, failed, cells, _ in _shard_rows(file, text, len(first), len(own)):
        yield path, failed, csv_line(["" if j is None else cells[j] for j in picks])


def shard_csv_files(plan_dir, tables_dir):
    """(the shards' CSV files, number of images) of the plan in ``plan_dir``.

    aggregate_stats takes the plan folder rather than the files themselves:
    with images_per_job 1 a run has a shard per image, too many names for
    one command line.
    """
    try:
        index = read_plan_index(plan_dir)
    except FileNotFoundError:
        raise AggregateError(
            f"the plan index in {plan_dir} is missing: rerun the workflow, which plans again"
        ) from None
    files = [os.path.join(tables_dir, f"{name}.csv") for name in index["shards"]]
    return files, index["images"]


def write_stats_csv(plan_dir, tables_dir, csv_out):
    """Write stats.csv from the shards' CSV files of the plan in ``plan_dir``
    (nothing when an image is missing or doubled); returns (images, errors).
    Pure Python: no numpy, which aggregate_stats alone does not need."""
    files, expected = shard_csv_files(plan_dir, tables_dir)
    shards = [(file, _shard_text(file)) for file in files]
    headers = {first for _, (_, first, _) in shards}
    if len(headers) == 1:  # the same columns everywhere: merge the lines as they are
        (top,) = headers
        runs = [
            ((path, failed, line) for path, failed, _, line in _shard_rows(file, text, len(first), len(names)))
            for file, (names, first, text) in shards
        ]
    else:
        names = _merged_columns(shards)
        top = csv_line(names)
        runs = [_rows_as(names, file, shard) for file, shard in shards]
    rows = runs[0] if len(runs) == 1 else heapq.merge(*runs, key=itemgetter(0))
    images = errors = 0
    doubled, last = [], None
    with csv_file(csv_out) as f:
        f.write(top)
        while batch := list(islice(rows, BATCH)):
            paths, failed, texts = zip(*batch)
            # Merged by path, so an image in two shards shows as equal neighbours.
            if paths[0] == last or not all(map(ne, paths, islice(paths, 1, None))):
                doubled += [b for a, b in zip((last, *paths), paths) if a == b]
            last = paths[-1]
            f.write("".join(texts))
            images += len(batch)
            errors += sum(failed)
        # Inside: an error here leaves no stats.csv behind.
        if doubled:
            raise AggregateError(
                f"{len(doubled)} image(s) appear in two shards, e.g. {doubled[:3]}: "
                "delete results/shards/ and rerun"
            )
        if images != expected:
            raise AggregateError(
                f"the shard tables hold {images} rows, the plan has {expected} "
                "images: rerun the workflow to replan"
            )
    return images, errors
