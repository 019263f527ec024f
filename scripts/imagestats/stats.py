"""stats.csv read back for the summary and the figures, for any analysis.

stats.csv's header is ``path,class,<the analysis's columns>,error,note``.
``read_stats_csv`` reads it a batch of rows at a time into ``Stats``:
numpy arrays in path order of the class, error and note of each row, and
of every *numeric* analysis column: one whose non-empty cells all parse as
numbers (a cell holding True, False or any other text makes its column a
text column, which is not kept). No pandas and never the whole table as
Python objects: at a million images a DataFrame of all rows took over a
gigabyte and 11 s, and summarize_stats runs on the Slurm submit host.
"""

import os
from itertools import chain, islice

import numpy as np

from .aggregate import AggregateError
from .statscsv import records

BATCH = 8192  # rows collected into Stats at a time
FIRST, LAST = ("path", "class"), ("error", "note")  # around the analysis's columns
PATH, CLASS, ERROR, NOTE = 0, 1, -2, -1  # their positions in a row
# Characters a number's text holds but an int's does not (1.5, 1e-05, nan, inf).
_NOT_INT = tuple(".eEnN")


class Stats:
    """What the summary and the figures use of stats.csv, by row in path order.

    ``classes``: the class names, sorted; ``cls``: each row's index into
    it. ``failed``, ``noted``: error / note not empty. ``columns``: the
    analysis's columns in stats.csv order; ``numeric``: of the numeric ones,
    name -> float64 array (NaN where a cell is empty), in that order;
    ``integer``: the numeric columns whose cells are all ints. ``errors``:
    (path, class, error) of the failed rows. ``path(i)``: row i's path, if
    the paths were kept.
    """

    def __init__(self, classes, cls, failed, noted, numeric, errors=(), path_blocks=None,
                 columns=None, integer=()):  # fmt: skip
        self.classes = list(classes)
        self.cls = np.asarray(cls, dtype=np.int32)
        self.failed = np.asarray(failed, dtype=bool)
        self.noted = np.asarray(noted, dtype=bool)
        self.numeric = {name: np.asarray(a, dtype=np.float64) for name, a in numeric.items()}
        self.columns = list(self.numeric if columns is None else columns)
        self.integer = frozenset(integer)
        self.errors = list(errors)
        self._path_blocks = path_blocks  # "\0"-joined paths of each BATCH rows
        self._block = BATCH  # as collected (tests change BATCH)
        self._split = (None, None)

    # The brightness figures' names for the columns they draw.
    low = property(lambda self: self.numeric["min"])
    high = property(lambda self: self.numeric["max"])
    mean = property(lambda self: self.numeric["mean"])
    median = property(lambda self: self.numeric["median"])

    def __len__(self):
        return len(self.cls)

    @classmethod
    def from_rows(cls, rows, keep_paths=False, columns=None):
        """Stats of rows in path order, dicts of typed values as an
        analysis returns them (None missing), read as their stats.csv cells
        would be. ``columns``: the analysis's columns; by default the first
        row's keys but path, class, error and note."""
        rows = iter(rows)
        first = next(rows, None)
        if columns is None:
            columns = [] if first is None else [k for k in first if k not in FIRST + LAST]
        header = [*FIRST, *columns, *LAST]
        collector = _Collector(header, keep_paths)
        rows = rows if first is None else chain([first], rows)
        while batch := [[_cell(row.get(name)) for name in header] for row in islice(rows, BATCH)]:
            collector.add(batch)
        return collector.stats()

    def path(self, i):
        """The path of row ``i`` (file names cannot hold the NUL joining them)."""
        block, offset = divmod(int(i), self._block)
        if self._split[0] != block:
            self._split = (block, self._path_blocks[block].split("\0"))
        return self._split[1][offset]

    def by_class(self):
        """Row indices of each class (in path order), in class order."""
        order = np.argsort(self.cls, kind="stable")
        bounds = np.searchsorted(self.cls[order], np.arange(len(self.classes) + 1))
        return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _cell(value):
    """A value as its stats.csv cell: str(), None empty."""
    return "" if value is None else str(value)


class _Collector:
    """Builds Stats from batches of rows (lists of cells): each column a
    list of per-batch arrays, joined once at the end column by column (at
    most one column held twice, where growing arrays by doubling held up
    to three times each)."""

    def __init__(self, header, keep_paths):
        self.columns = header[len(FIRST) : -len(LAST)]
        self.codes = {}  # class name -> code in order of appearance
        self.cls = []
        # Every column is numeric until a cell says otherwise.
        self.numeric = {len(FIRST) + i: [] for i in range(len(self.columns))}
        self.integer = set(self.numeric)
        self.failed, self.noted, self.errors = [], [], []
        self.rows = 0
        self.path_blocks = [] if keep_paths else None

    def _codes(self, classes):
        codes = list(map(self.codes.get, classes))
        if None in codes:  # a class not seen before
            for name in classes:
                self.codes.setdefault(name, len(self.codes))
            codes = list(map(self.codes.get, classes))
        return np.array(codes, dtype=np.int32)

    def _numbers(self, i, cells):
        """Column ``i``'s cells as numbers (appended to its arrays); False if one is text."""
        integer = i in self.integer and "".join(cells)
        if "" in cells:  # an error row's, or a value the analysis did not give
            cells = [None if cell == "" else cell for cell in cells]
        try:
            self.numeric[i].append(np.array(cells, dtype=np.float64))  # None -> NaN
        except ValueError:  # True, False or text
            return False
        if integer and any(ch in integer for ch in _NOT_INT):
            self.integer.discard(i)
        return True

    def add(self, batch):
        start = self.rows
        columns = list(zip(*batch))
        self.cls.append(self._codes(columns[CLASS]))
        for i in [i for i in self.numeric if not self._numbers(i, columns[i])]:
            del self.numeric[i]
            self.integer.discard(i)
        errors, notes = columns[ERROR], columns[NOTE]
        if errors.count("") < len(batch):  # rare: look at each
            for i, row in enumerate(batch, start):
                if row[ERROR]:
                    self.failed.append(i)
                    self.errors.append((row[PATH], row[CLASS], row[ERROR]))
        if notes.count("") < len(batch):
            self.noted += [i for i, note in enumerate(notes, start) if note]
        if self.path_blocks is not None:
            self.path_blocks.append("\0".join(columns[PATH]))
        self.rows += len(batch)

    def _joined(self, chunks):
        array = np.concatenate(chunks) if chunks else np.empty(0)
        chunks.clear()
        return array

    def stats(self):
        classes = sorted(self.codes)
        rank = np.empty(max(1, len(classes)), dtype=np.int32)
        rank[[self.codes[c] for c in classes]] = np.arange(len(classes), dtype=np.int32)
        failed = np.zeros(self.rows, dtype=bool)
        failed[self.failed] = True
        noted = np.zeros(self.rows, dtype=bool)
        noted[self.noted] = True
        name = self.columns.__getitem__
        numeric = {name(i - len(FIRST)): self._joined(chunks) for i, chunks in self.numeric.items()}
        return Stats(
            classes, rank[self._joined(self.cls).astype(np.int32)], failed, noted, numeric,
            self.errors, self.path_blocks, self.columns,
            [name(i - len(FIRST)) for i in self.integer],
        )  # fmt: skip


def _header_problem(header):
    """What is wrong with a stats.csv header, or None."""
    if header is None or len(header) < len(FIRST) + len(LAST):
        return "it has no header"
    if tuple(header[: len(FIRST)]) != FIRST or tuple(header[-len(LAST) :]) != LAST:
        return f"its header does not start with {','.join(FIRST)} and end with {','.join(LAST)}"
    if len(set(header)) < len(header):
        return "its header names a column twice"
    return None


def read_stats_csv(csv_in, keep_paths=False):
    """Stats of a stats.csv as aggregate_stats wrote it, a batch at a time
    (a float's shortest repr reads back as that float; an empty cell is a
    missing value)."""
    damaged = f"{csv_in} is damaged: delete it and rerun the workflow, which writes it again"
    with open(csv_in, encoding="utf-8", errors="surrogateescape", newline=os.linesep) as f:
        rows = (cells for _, cells in records(f))
        try:
            header = next(rows, None)
            if problem := _header_problem(header):
                raise AggregateError(f"{damaged} ({problem})")
            collector = _Collector(header, keep_paths)
            while batch := list(islice(rows, BATCH)):
                if set(map(len, batch)) != {len(header)}:
                    raise AggregateError(f"{damaged} (a row has not {len(header)} cells)")
                collector.add(batch)
        except ValueError as e:  # a quote left open
            raise AggregateError(f"{damaged} ({e})") from None
    return collector.stats()
