"""stats.csv from the shards' rows: one row per image, sorted by path.

No pandas, and never the whole table as Python objects: at a million
images a DataFrame of all rows took over a gigabyte and 11 s, and these
commands run on the Slurm submit host. Each shard job writes, beside its
table, its rows as stats.csv lines in path order (shard_csv_text: the
JSON parse and the formatting happen in the shard jobs, side by side);
write_stats_csv then only merges those lines by path (heapq.merge over
the text of each, ~the size of stats.csv in memory) and checks that no
image is missing or doubled. The summary and the figures read stats.csv
back into ``Stats``, the few columns they use, as numpy arrays
(read_stats_csv), a batch at a time.

The CSV is byte for byte what ``DataFrame.to_csv`` wrote before (and what
the benchmark's baseline writes): Python's csv writer with pandas'
settings, numbers as ``str()`` (ints; a float's shortest repr, which is
numpy's too), missing values empty.
"""

import csv
import heapq
import io
import os
import re
from contextlib import contextmanager
from itertools import islice
from operator import itemgetter, methodcaller, ne

from .atomic import replaced
from .measure import COLUMNS, INT_COLUMNS
from .plan import read_plan_index
from .table import parse_lines

_PATH, _CLASS, _ERROR, _NOTE = (COLUMNS.index(c) for c in ("path", "class", "error", "note"))
_MIN, _MAX, _MEAN, _MEDIAN = (COLUMNS.index(c) for c in ("min", "max", "mean", "median"))
_INTS = tuple(COLUMNS.index(c) for c in INT_COLUMNS)
_TEXT = tuple(i for i in range(len(COLUMNS)) if i not in _INTS and i != _MEAN)
_row_tuple = itemgetter(*COLUMNS)  # extra keys (size, mtime_ns) are dropped
_path_of = itemgetter(_PATH)
_NONE = type(None)

BATCH = 8192  # rows converted and written at a time
HEADER = ",".join(COLUMNS) + os.linesep  # as csv.writer writes it: no cell needs quotes
# A line of a CSV file that csv_writer wrote: up to and with the last
# character of os.linesep (the lines a file object gives with newline=os.linesep).
_LINE = re.compile(f"[^{re.escape(os.linesep[-1])}]*(?:{re.escape(os.linesep[-1])}|$)")
_group = methodcaller("group")


class AggregateError(Exception):
    pass


def add_plan_arguments(parser):
    """The PLAN_DIR TABLES_DIR arguments of aggregate_stats.py."""
    parser.add_argument("plan_dir", help="plan folder (results/plan): which shards, how many images")
    parser.add_argument("tables_dir", help="folder of the shard tables and their CSV lines (results/shards)")


# ------------------------------------------------------------------ CSV


@contextmanager
def csv_file(out):
    """``out`` open for writing (atomically) as ``DataFrame.to_csv`` opens
    it: UTF-8 with file names' undecodable bytes kept, no newline translation."""
    with replaced(out) as tmp:
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
            yield f


def csv_writer(f):
    """A csv.writer with the settings of ``DataFrame.to_csv``."""
    return csv.writer(f, lineterminator=os.linesep)


def write_csv(out, header, rows):
    """Write ``rows`` (sequences of str, int, float or None) under ``header``."""
    with csv_file(out) as f:
        writer = csv_writer(f)
        writer.writerow(header)
        writer.writerows(rows)


# Characters that make the csv writer quote a field (QUOTE_MINIMAL), or more.
_SPECIAL = (",", '"', "\r", "\n")


def _cells(column):
    """Each value as the csv writer writes it: str(), None empty."""
    cells = list(map(str, column))
    if None in column:  # the numbers of an error row: few, found by C-level scans
        i = -1
        try:
            while True:
                i = column.index(None, i + 1)
                cells[i] = ""
        except ValueError:
            pass
    return cells


def _csv_text(batch, columns):
    """The CSV lines of ``batch`` (typed rows; ``columns``: their columns),
    as csv.writer writes them, at a third of its cost: a row whose text
    holds none of _SPECIAL is its cells joined by commas; the others are
    left to the writer."""
    cells = [_cells(column) for column in columns]
    lines = list(map(",".join, zip(*cells)))
    special = set()
    for i in _TEXT:
        text = "".join(cells[i])
        if any(ch in text for ch in _SPECIAL):
            special.update(j for j, cell in enumerate(cells[i]) if any(ch in cell for ch in _SPECIAL))
    if special:
        buffer = io.StringIO()
        writer = csv_writer(buffer)
        for j in special:
            buffer.seek(0)
            buffer.truncate()
            writer.writerow(batch[j])
            lines[j] = buffer.getvalue()[: -len(os.linesep)]
    lines.append("")
    return os.linesep.join(lines)


def _typed(batch, columns):
    """``batch`` with pandas' cell types: nullable ints, float means.

    json.loads already gives ints and floats, so this is a check that
    costs little; a row that is off (a NaN, an int mean, a float width)
    is converted as the DataFrame did: NaN written empty, 15 as 15.0."""
    means = columns[_MEAN]
    if (
        all(set(map(type, columns[i])) <= {int, _NONE} for i in _INTS)
        and set(map(type, means)) <= {float, _NONE}
        and not any(m != m for m in means)  # NaN
    ):
        return batch
    return [_typed_row(row) for row in batch]


def _typed_row(row):
    row = list(row)
    for i in _INTS:
        value = row[i]
        row[i] = None if value is None or value != value else int(value)
    value = row[_MEAN]
    row[_MEAN] = None if value is None or value != value else float(value)
    return row


# ------------------------------------------------------- the shards' CSV


def shard_csv_text(lines):
    """The header and the stats.csv lines of a shard's rows, in path order,
    from its table lines (JSON; a shard job writes this beside its table)."""
    dicts = parse_lines(lines)
    try:
        rows = list(map(_row_tuple, dicts))
    except KeyError:  # a row without some column: empty in the CSV, as before
        rows = [tuple(map(row.get, COLUMNS)) for row in dicts]
    del dicts
    rows.sort(key=_path_of)  # stable; a table already in path order costs one pass
    parts = [HEADER]
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        columns = list(zip(*batch))
        typed = _typed(batch, columns)
        parts.append(_csv_text(typed, columns if typed is batch else list(zip(*typed))))
    return "".join(parts)


def _records(lines):
    """(text, cells) of each row of CSV text that csv_writer wrote, from its
    lines (split at os.linesep only; the text keeps its line ending). Not
    csv.reader: it ends a row at a bare carriage return, which the writer
    leaves unquoted in a file name, as pandas did. A line without a quote
    is its cells split at commas; a quoted row (it may span lines) is
    parsed by _quoted_cells."""
    pending = ""
    for line in lines:
        if pending or '"' in line:
            pending += line
            if pending.count('"') % 2:  # inside a quoted cell: the row goes on
                continue
            line, pending = pending, ""
            yield line, _quoted_cells(line.removesuffix(os.linesep))
        elif line:
            yield line, line.removesuffix(os.linesep).split(",")
    if pending:
        raise ValueError("the last row ends inside a quoted cell")


def _quoted_cells(text):
    """The cells of one CSV row holding quoted cells (QUOTE_MINIMAL, quotes doubled)."""
    cells, i, end = [], 0, len(text)
    while True:
        if text.startswith('"', i):
            parts, i = [], i + 1
            while True:
                close = text.index('"', i)
                parts.append(text[i:close])
                if not text.startswith('"', close + 1):
                    break
                parts.append('"')
                i = close + 2
            cells.append("".join(parts))
            i = close + 1
        else:
            comma = text.find(",", i)
            comma = end if comma < 0 else comma
            cells.append(text[i:comma])
            i = comma
        if i >= end:
            return cells
        i += 1  # the comma


def _shard_rows(file):
    """(path, has an error, CSV text) of each row of a shard's CSV file, in
    path order; raises AggregateError when the file is missing or damaged."""
    try:
        with open(file, encoding="utf-8", errors="surrogateescape", newline=os.linesep) as f:
            text = f.read()
    except FileNotFoundError:
        raise AggregateError(
            f"shard file {file} is missing: rerun the workflow, which writes that shard's files again"
        ) from None
    damaged = f"shard file {file} is damaged: delete it and rerun the workflow"
    if not text.startswith(HEADER):
        raise AggregateError(f"{damaged} (it does not start with the header {HEADER.strip()})")
    last = ""
    try:
        for line, cells in _records(map(_group, _LINE.finditer(text, len(HEADER)))):
            path = cells[_PATH]
            if len(cells) != len(COLUMNS) or path < last:
                raise AggregateError(f"{damaged} (a row out of order or without {len(COLUMNS)} cells)")
            last = path
            yield path, cells[_ERROR] != "", line
    except ValueError as e:  # a quote left open
        raise AggregateError(f"{damaged} ({e})") from None


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
        arrays["cls"][start:end] = self._codes(columns[_CLASS])
        for name, i in (("low", _MIN), ("high", _MAX), ("mean", _MEAN), ("median", _MEDIAN)):
            arrays[name][start:end] = np.array(columns[i], dtype=arrays[name].dtype)  # None -> NaN
        errors, notes = columns[_ERROR], columns[_NOTE]
        if errors.count("") + errors.count(None) < len(batch):  # rare: look at each
            for i, row in enumerate(batch, start):
                if row[_ERROR]:
                    self.failed.append(i)
                    name = row[_CLASS]
                    self.errors.append((row[_PATH], "" if name is None else name, row[_ERROR]))
        if notes.count("") + notes.count(None) < len(batch):
            self.noted += [i for i, note in enumerate(notes, start) if note]
        if self.path_blocks is not None:
            self.path_blocks.append("\0".join(columns[_PATH]))
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
    runs = [_shard_rows(file) for file in files]
    rows = runs[0] if len(runs) == 1 else heapq.merge(*runs, key=itemgetter(0))
    images = errors = 0
    doubled, last = [], None
    with csv_file(csv_out) as f:
        f.write(HEADER)
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
        rows = (cells for _, cells in _records(f))
        try:
            if next(rows, None) != list(COLUMNS):
                raise AggregateError(f"{damaged} (its header is not {HEADER.strip()})")
            collector = _Collector(BATCH, keep_paths)
            while batch := list(islice(rows, BATCH)):
                if set(map(len, batch)) != {len(COLUMNS)}:
                    raise AggregateError(f"{damaged} (a row has not {len(COLUMNS)} cells)")
                columns = list(zip(*batch))
                for i in _INTS + (_MEAN,):  # numbers as text (numpy parses them exactly)
                    if "" in columns[i]:  # the numbers of an error row
                        columns[i] = [None if cell == "" else cell for cell in columns[i]]
                collector.add(batch, columns)
        except ValueError as e:  # a number that is not one, a quote left open
            raise AggregateError(f"{damaged} ({e})") from None
    return collector.stats()
