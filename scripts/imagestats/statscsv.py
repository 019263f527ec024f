"""The stats.csv format: rows written as its lines, and its lines read back as cells.

Columns: ``path``, ``class``, the analysis's columns, ``error``, ``note``.
The analysis's columns are in the order its function returned them for the
first image, by path, that it measured without error; a column that only
some images return follows, in alphabetical order, and an image without it
has an empty cell (``columns``). The format is what ``DataFrame.to_csv``
writes (and what the benchmark's baseline writes): Python's csv writer with
pandas' settings, every value as ``str()`` (a float's shortest repr, which
reads back as the same float; True/False), None and NaN empty. Each shard job
writes its rows in this format (shard_csv_text); aggregate_stats merges
those lines, and the summary reads stats.csv back. No pandas and no numpy
here: a shard job imports this module.
"""

import csv
import io
import os
import re
from contextlib import contextmanager
from operator import itemgetter, methodcaller

from .atomic import replaced
from .table import parse_lines

FIRST = ("path", "class")
LAST = ("error", "note")
# Keys of a table line that are not columns: which version of the image
# file the row describes (imagestats.shard).
BOOKKEEPING = ("size", "mtime_ns")
_NOT_ANALYSIS = frozenset(FIRST + LAST + BOOKKEEPING)
PATH, CLASS = 0, 1
_path_of = itemgetter(PATH)
_key_path = itemgetter("path")

BATCH = 8192  # rows converted at a time by shard_csv_text
# A line of a CSV file that csv_writer wrote: up to and with the last
# character of os.linesep (the lines a file object gives with newline=os.linesep).
_LINE = re.compile(f"[^{re.escape(os.linesep[-1])}]*(?:{re.escape(os.linesep[-1])}|$)")
_group = methodcaller("group")


def analysis_columns(first_keys, other_keys):
    """The analysis's columns: ``first_keys`` (those of the first row measured
    without error, by path, in its order), then the rest of ``other_keys``
    sorted; the workflow's own keys left out."""
    first = [k for k in first_keys if k not in _NOT_ANALYSIS]
    return first + sorted(set(other_keys).difference(first, _NOT_ANALYSIS))


def header(columns):
    """The whole header of rows with these analysis columns."""
    return (*FIRST, *columns, *LAST)


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


def csv_line(cells):
    """One row as csv_writer writes it, line ending included."""
    buffer = io.StringIO()
    csv_writer(buffer).writerow(cells)
    return buffer.getvalue()


# Characters that make the csv writer quote a field (QUOTE_MINIMAL), or more.
_SPECIAL = (",", '"', "\r", "\n")


def _cells(column):
    """Each value as the csv writer writes it: str(); None and NaN empty, as pandas writes them."""
    cells = list(map(str, column))
    for missing, found in ((None, column), ("nan", cells)):
        if missing in found:  # an error row's values, a NaN: found by C-level scans
            i = -1
            try:
                while True:
                    i = found.index(missing, i + 1)
                    if missing is None or type(column[i]) is float:  # not the text "nan"
                        cells[i] = ""
            except ValueError:
                pass
    return cells


def _csv_text(batch):
    """The CSV lines of ``batch`` (tuples), as csv.writer writes them, at a
    third of its cost: a row whose text holds none of _SPECIAL is its cells
    joined by commas; the others are left to the writer."""
    cells = [_cells(column) for column in zip(*batch)]
    lines = list(map(",".join, zip(*cells)))
    special = set()
    for column in cells:
        text = "".join(column)
        if any(ch in text for ch in _SPECIAL):
            special.update(j for j, cell in enumerate(column) if any(ch in cell for ch in _SPECIAL))
    for j in special:
        lines[j] = csv_line(batch[j])[: -len(os.linesep)]
    lines.append("")
    return os.linesep.join(lines)


def first_measured(dicts):
    """The first row without an error (the rows in path order), or None."""
    return next((row for row in dicts if not row.get("error")), None)


def row_columns(dicts):
    """The analysis columns of table rows in path order (see the module doc)."""
    first = first_measured(dicts)
    shapes = set(map(tuple, dicts))  # the rows' key sequences: few distinct ones
    others = set().union(*shapes) if shapes else set()
    return analysis_columns(first or (), others)


def shard_csv_text(lines):
    """The header and the stats.csv lines of a shard's rows, in path order,
    from its table lines (JSON; a shard job writes this beside its table)."""
    dicts = parse_lines(lines)
    dicts.sort(key=_key_path)  # stable; a table already in path order costs one pass
    names = header(row_columns(dicts))
    whole = itemgetter(*names)

    def cells(row):
        try:
            return whole(row)
        except KeyError:  # an error row, or one without some column: empty cells
            return tuple(map(row.get, names))

    rows = list(map(cells, dicts))
    del dicts
    parts = [csv_line(names)]
    for start in range(0, len(rows), BATCH):
        parts.append(_csv_text(rows[start : start + BATCH]))
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
