"""stats.csv from the shards' rows: one row per image, sorted by path.

No pandas, and never the whole table as Python objects: at a million
images a DataFrame of all rows took over a gigabyte and 11 s, and these
commands run on the Slurm submit host. Each shard job writes, beside its
table, its rows as stats.csv lines in path order (statscsv.shard_csv_text:
the JSON parse and the formatting happen in the shard jobs, side by side);
write_stats_csv then only merges those lines by path (heapq.merge over
the text of each, ~the size of stats.csv in memory) and checks that no
image is missing or doubled. The summary and the figures read stats.csv
back into ``Stats``, the few columns they use, as numpy arrays
(read_stats_csv), a batch at a time. The format itself is imagestats.statscsv.
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

# TEMPORARY until the reader is generalized: brightness's columns.
COLUMNS = ("path", "class", "width", "height", "mode", "min", "max", "mean", "median", "error", "note")
CLASS, ERROR, NOTE = 1, 9, 10
MIN, MAX, MEAN, MEDIAN = 5, 6, 7, 8
INTS = (2, 3, 5, 6, 8)
HEADER = ",".join(COLUMNS) + os.linesep

BATCH = 8192  # merged rows written, and rows collected into Stats, at a time


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


# ---------------------------------------------------------------- Stats


class Stats:
    """What the summary and the figures use of stats.csv, by row in path order.

    ``classes``: the class names, sorted; ``cls``: each row's index into
    it. ``failed``, ``noted``: error / note not empty. ``low``, ``high``,
    ``median`` (float32, exact for 0-255) and ``mean`` (float64): NaN where
    a row has none. ``errors``: (path, class, error) of the failed rows.
    ``path(i)``: row i's path, if the paths were kept.
    """

    def __init__(self, classes, cls, failed, noted, low, high, mean, median, errors=(),
                 path_blocks=None):  # fmt: skip
        import numpy as np

        self.classes = list(classes)
        self.cls = np.asarray(cls, dtype=np.int32)
        self.failed = np.asarray(failed, dtype=bool)
        self.noted = np.asarray(noted, dtype=bool)
        self.low = np.asarray(low, dtype=np.float32)
        self.high = np.asarray(high, dtype=np.float32)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.median = np.asarray(median, dtype=np.float32)
        self.errors = list(errors)
        self._path_blocks = path_blocks  # "\0"-joined paths of each BATCH rows
        self._block = BATCH  # as collected (tests change BATCH)
        self._split = (None, None)

    def __len__(self):
        return len(self.cls)

    @classmethod
    def from_rows(cls, rows, keep_paths=False, expected=BATCH):
        """Stats of rows in path order: dicts as a shard table holds them,
        or sequences in COLUMNS order (read a batch at a time)."""
        collector = _Collector(expected, keep_paths)
        rows = iter(rows)
        while batch := list(islice(rows, BATCH)):
            batch = [tuple(map(r.get, COLUMNS)) if isinstance(r, dict) else r for r in batch]
            collector.add(batch, list(zip(*batch)))
        return collector.stats()

    def path(self, i):
        """The path of row ``i`` (file names cannot hold the NUL joining them)."""
        block, offset = divmod(int(i), self._block)
        if self._split[0] != block:
            self._split = (block, self._path_blocks[block].split("\0"))
        return self._split[1][offset]

    def by_class(self):
        """Row indices of each class (in path order), in class order."""
        import numpy as np

        order = np.argsort(self.cls, kind="stable")
        bounds = np.searchsorted(self.cls[order], np.arange(len(self.classes) + 1))
        return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


class _Collector:
    """Builds Stats from batches of merged rows, in arrays of the expected
    size (no copies of the columns at the end)."""

    _ARRAYS = {"cls": "int32", "low": "float32", "high": "float32",
               "mean": "float64", "median": "float32"}  # fmt: skip

    def __init__(self, expected, keep_paths):
        import numpy as np

        self.np = np
        self.codes = {}  # class name -> code in order of appearance
        self.arrays = {name: np.empty(expected, dtype) for name, dtype in self._ARRAYS.items()}
        self.failed, self.noted, self.errors = [], [], []
        self.rows = 0
        self.path_blocks = [] if keep_paths else None

    def _codes(self, classes):
        codes = list(map(self.codes.get, classes))
        if None in codes:  # a class not seen before (or a row without one)
            for name in classes:
                self.codes.setdefault("" if name is None else name, len(self.codes))
            codes = [self.codes["" if name is None else name] for name in classes]
        return codes

    def add(self, batch, columns):
        """``columns``: the batch's columns (zip(*batch)); numbers may be
        None (NaN) or their text."""
        np = self.np
        start, end = self.rows, self.rows + len(batch)
        if end > len(self.arrays["cls"]):  # more rows than expected: grow
            self.arrays = {k: np.resize(a, 2 * end) for k, a in self.arrays.items()}
        arrays = self.arrays
        arrays["cls"][start:end] = self._codes(columns[CLASS])
        for name, i in (("low", MIN), ("high", MAX), ("mean", MEAN), ("median", MEDIAN)):
            arrays[name][start:end] = np.array(columns[i], dtype=arrays[name].dtype)  # None -> NaN
        errors, notes = columns[ERROR], columns[NOTE]
        if errors.count("") + errors.count(None) < len(batch):  # rare: look at each
            for i, row in enumerate(batch, start):
                if row[ERROR]:
                    self.failed.append(i)
                    name = row[CLASS]
                    self.errors.append((row[PATH], "" if name is None else name, row[ERROR]))
        if notes.count("") + notes.count(None) < len(batch):
            self.noted += [i for i, note in enumerate(notes, start) if note]
        if self.path_blocks is not None:
            self.path_blocks.append("\0".join(columns[PATH]))
        self.rows = end

    def stats(self):
        np = self.np
        classes = sorted(self.codes)
        rank = np.empty(max(1, len(classes)), dtype=np.int32)
        rank[[self.codes[c] for c in classes]] = np.arange(len(classes), dtype=np.int32)
        arrays = {k: a[: self.rows] for k, a in self.arrays.items()}
        failed = np.zeros(self.rows, dtype=bool)
        failed[self.failed] = True
        noted = np.zeros(self.rows, dtype=bool)
        noted[self.noted] = True
        return Stats(
            classes, rank[arrays["cls"]], failed, noted, arrays["low"], arrays["high"],
            arrays["mean"], arrays["median"], self.errors, self.path_blocks,
        )  # fmt: skip


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


def read_stats_csv(csv_in, keep_paths=False):
    """Stats of a stats.csv as write_stats_csv wrote it, a batch at a time:
    the same Stats as the tables it came from (a float's shortest repr
    reads back as that float; an empty number is a missing value)."""
    damaged = f"{csv_in} is damaged: delete it and rerun the workflow, which writes it again"
    with open(csv_in, encoding="utf-8", errors="surrogateescape", newline=os.linesep) as f:
        rows = (cells for _, cells in records(f))
        try:
            if next(rows, None) != list(COLUMNS):
                raise AggregateError(f"{damaged} (its header is not {HEADER.strip()})")
            collector = _Collector(BATCH, keep_paths)
            while batch := list(islice(rows, BATCH)):
                if set(map(len, batch)) != {len(COLUMNS)}:
                    raise AggregateError(f"{damaged} (a row has not {len(COLUMNS)} cells)")
                columns = list(zip(*batch))
                for i in INTS + (MEAN,):  # numbers as text (numpy parses them exactly)
                    if "" in columns[i]:  # the numbers of an error row
                        columns[i] = [None if cell == "" else cell for cell in columns[i]]
                collector.add(batch, columns)
        except ValueError as e:  # a number that is not one, a quote left open
            raise AggregateError(f"{damaged} ({e})") from None
    return collector.stats()
