"""The shard table: one JSON object per line, a stats row per image.

Written by a shard (and each line also as the image's own stats file, and
as a line of the shard's CSV file for aggregate_stats), read by the next
run of the shard (kept rows) and by the progress line and error checks in
the main Snakemake process, so this module imports nothing heavier than json.
"""

import json

# json.dumps(row, ensure_ascii=False) builds a new encoder on every call;
# one encoder for all rows gives the same text.
encode_row = json.JSONEncoder(ensure_ascii=False).encode

# How encode_row writes an empty error. Inside a JSON string every quote is
# escaped, so this text in a line can only be that field.
_NO_ERROR = encode_row({"error": ""})[1:-1]


def has_error(line):
    """Whether a table line's ``error`` is not empty (without parsing it)."""
    return _NO_ERROR not in line


def parse_lines(lines):
    """The rows (dicts) of table lines."""
    # One parse for all lines, not one per line: half the time (0.08 s
    # instead of 0.15 s for 27,000 rows). JSON text never holds a raw
    # newline, so the lines joined by commas are an array.
    return json.loads("[" + ",".join(lines) + "]")


def error_rows(table_file):
    """(path, error) of the rows of a shard table whose ``error`` is not empty."""
    with open(table_file, encoding="utf-8", errors="surrogateescape") as f:
        rows = (json.loads(line) for line in f if _NO_ERROR not in line and line.strip())
        return [(row["path"], row["error"]) for row in rows if row.get("error")]


def count_errors(table_file):
    """Rows of a shard table whose ``error`` is not empty.

    The progress line's last count runs in the main Snakemake process after
    the last job, on every run's critical path, so only the rows that may
    hold an error (without the _NO_ERROR text) are parsed.
    """
    with open(table_file, encoding="utf-8", errors="surrogateescape") as f:
        return sum(
            1 for line in f
            if _NO_ERROR not in line and line.strip() and json.loads(line).get("error")
        )  # fmt: skip
