"""The stats.csv format: rows written as its lines, and its lines read back as cells.

The CSV is byte for byte what ``DataFrame.to_csv`` wrote before (and what
the benchmark's baseline writes): Python's csv writer with pandas'
settings, numbers as ``str()`` (ints; a float's shortest repr, which is
numpy's too), missing values empty. Each shard job writes its rows in
this format (shard_csv_text); aggregate_stats merges those lines, and the
summary reads stats.csv back (imagestats.aggregate). No pandas and no
numpy here: a shard job imports this module.
"""

import csv
import io
import os
import re
from contextlib import contextmanager
from operator import itemgetter, methodcaller

from .atomic import replaced
from .measure import COLUMNS, INT_COLUMNS
from .table import parse_lines

# Positions of the columns in a row (a tuple or the cells of a line).
PATH, CLASS, ERROR, NOTE = (COLUMNS.index(c) for c in ("path", "class", "error", "note"))
MIN, MAX, MEAN, MEDIAN = (COLUMNS.index(c) for c in ("min", "max", "mean", "median"))
INTS = tuple(COLUMNS.index(c) for c in INT_COLUMNS)
_TEXT = tuple(i for i in range(len(COLUMNS)) if i not in INTS and i != MEAN)
_row_tuple = itemgetter(*COLUMNS)  # extra keys (size, mtime_ns) are dropped
_path_of = itemgetter(PATH)
_NONE = type(None)

BATCH = 8192  # rows converted at a time by shard_csv_text
HEADER = ",".join(COLUMNS) + os.linesep  # as csv.writer writes it: no cell needs quotes
# A line of a CSV file that csv_writer wrote: up to and with the last
# character of os.linesep (the lines a file object gives with newline=os.linesep).
_LINE = re.compile(f"[^{re.escape(os.linesep[-1])}]*(?:{re.escape(os.linesep[-1])}|$)")
_group = methodcaller("group")

# ------------------------------------------------------------ writing


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
    means = columns[MEAN]
    if (
        all(set(map(type, columns[i])) <= {int, _NONE} for i in INTS)
        and set(map(type, means)) <= {float, _NONE}
        and not any(m != m for m in means)  # NaN
    ):
        return batch
    return [_typed_row(row) for row in batch]


def _typed_row(row):
    row = list(row)
    for i in INTS:
        value = row[i]
        row[i] = None if value is None or value != value else int(value)
    value = row[MEAN]
    row[MEAN] = None if value is None or value != value else float(value)
    return row


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


# ------------------------------------------------------------ reading


def text_lines(text, start=0):
    """The lines of CSV text from ``start`` (each with its line ending), for records()."""
    return map(_group, _LINE.finditer(text, start))


def records(lines):
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
