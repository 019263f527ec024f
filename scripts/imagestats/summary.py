"""Per-class summary and error list, and HTML views of both.

Two forms of summary.csv. For brightness and greyscale (figures mode
brightness, imagestats.figures) one row per class of the brightness
columns' statistics, as it always was. For any other analysis a long
table: one row per class and numeric column (Stats.numeric) with that
column's statistics, classes sorted and the ``ALL`` rows last.

Every number is what pandas gave on the rows of stats.csv, where this
module began (mean, median, sd with n-1, percentiles with linear
interpolation, min, max, skipping missing values), computed the way pandas
computes it, with numpy on the columns of ``stats.Stats``: the same
sums in the same order, so the same floats bit for bit, without pandas'
import (half a second) and a DataFrame of every row. The tests check the
numbers against Python's statistics module and against pandas.

The files come from the rows summarize_stats reads from stats.csv for the
figures, with no second read. The CSV files are the results; the HTML
files only exist because Snakemake's HTML report shows images, HTML and
PDF inline but offers a CSV only as a download.
"""

import html
import math

import numpy as np

from .atomic import write_text
from .figures import BRIGHTNESS
from .statscsv import write_csv

OVERALL = "ALL"  # class of the row that summarizes all images
IQR_FACTOR = 1.5  # outliers lie beyond this many IQRs outside the quartiles

SUMMARY_COLUMNS = (
    "class", "images", "ok", "errors", "error_share", "notes",
    "min_of_min", "max_of_max",
    "mean_of_mean", "median_of_mean", "sd_of_mean",
    "p05_of_mean", "p25_of_mean", "p75_of_mean", "p95_of_mean",
    "mean_of_median", "outliers",
)  # fmt: skip
# The long form, for any analysis but brightness: a row per class and column.
COLUMN_SUMMARY_COLUMNS = (
    "class", "column", "images", "ok", "errors", "count",
    "mean", "sd", "min", "p05", "p25", "median", "p75", "p95", "max", "outliers",
)  # fmt: skip
ERROR_COLUMNS = ("path", "class", "error")

NAN = float("nan")


# ------------------------------------------------------- pandas' numbers


def _mean(values):
    """Series.mean(): missing values skipped (summed as 0, pandas' way)."""
    missing = np.isnan(values)
    count = len(values) - int(missing.sum())
    if count == 0:
        return NAN
    if count < len(values):
        values = np.where(missing, 0.0, values)
    return float(values.sum(dtype=np.float64) / count)


def _sd(values):
    """Series.std() (n - 1), as pandas' nanvar computes it."""
    missing = np.isnan(values)
    count = len(values) - int(missing.sum())
    if count < 2:
        return NAN
    values = np.where(missing, 0.0, values) if count < len(values) else values
    squares = (values.sum(dtype=np.float64) / count - values) ** 2
    if count < len(values):
        squares[missing] = 0.0
    return math.sqrt(squares.sum(dtype=np.float64) / (count - 1))


def _present(values):
    return values[~np.isnan(values)]


def quantile(values, q):
    """Series.quantile(q): numpy's percentile of the values present, at
    q * 100 as pandas asks for it (0.05 * 100 is not exactly 5)."""
    values = _present(values)
    if not len(values):
        return NAN
    return float(np.percentile(values, np.array([q]) * 100.0)[0])


def median(values):
    """Series.median(): numpy's median of the values present."""
    values = _present(values)
    return float(np.median(values)) if len(values) else NAN


def _extreme(values, pick):
    """Min or max of int-valued floats as an int; None without values."""
    values = _present(values)
    return int(pick(values)) if len(values) else None


def outlier_fences(means, factor=IQR_FACTOR):
    """(low, high): Tukey's fences, the box plot's whisker limits."""
    q1, q3 = quantile(means, 0.25), quantile(means, 0.75)
    return q1 - factor * (q3 - q1), q3 + factor * (q3 - q1)


def outlier_mask(means, factor=IQR_FACTOR):
    """True for the values beyond the fences of their own array."""
    means = np.asarray(means, dtype=np.float64)
    low, high = outlier_fences(means, factor)
    return (means < low) | (means > high)


# ------------------------------------------------------------ the summary


def summarize_group(name, stats, rows, factor=IQR_FACTOR):
    """One summary row (a dict) for the rows ``rows`` (indices into
    ``stats``) of one class, or of all.

    Statistics of brightness use only measured images (error empty); the
    others count in ``images`` and ``errors`` only.
    """
    failed = stats.failed[rows]
    errors = int(failed.sum())
    ok = rows[~failed]
    means = stats.mean[ok]
    return {
        "class": name,
        "images": len(rows),
        "ok": len(ok),
        "errors": errors,
        "error_share": errors / len(rows) if len(rows) else NAN,
        "notes": int(stats.noted[rows].sum()),
        "min_of_min": _extreme(stats.low[ok], np.min),
        "max_of_max": _extreme(stats.high[ok], np.max),
        "mean_of_mean": _mean(means),
        "median_of_mean": median(means),
        "sd_of_mean": _sd(means),
        "p05_of_mean": quantile(means, 0.05),
        "p25_of_mean": quantile(means, 0.25),
        "p75_of_mean": quantile(means, 0.75),
        "p95_of_mean": quantile(means, 0.95),
        "mean_of_median": _mean(stats.median[ok].astype(np.float64)),
        "outliers": int(outlier_mask(means, factor).sum()),
    }


def summary_rows(stats, factor=IQR_FACTOR):
    """One row (a dict) per class sorted by class name, then the overall row.

    The overall row is the same computation on all images (its outliers are
    judged against all images, not summed from the classes)."""
    rows = [
        summarize_group(name, stats, members, factor)
        for name, members in zip(stats.classes, stats.by_class())
    ]
    rows.append(summarize_group(OVERALL, stats, np.arange(len(stats)), factor))
    return rows


def _group_counts(name, stats, rows):
    """(the group's counts, the rows of its measured images)."""
    failed = stats.failed[rows]
    ok = rows[~failed]
    return {"class": name, "images": len(rows), "ok": len(ok), "errors": int(failed.sum())}, ok


def column_statistics(values, integer=False, factor=IQR_FACTOR):
    """The statistics of one column's ``values`` in a group (NaN: no
    value), as pandas gives them for that Series; min and max as ints for
    a column of ints."""
    present = _present(values)
    pick = int if integer else float
    return {
        "count": len(present),
        "mean": _mean(values),
        "sd": _sd(values),
        "min": pick(present.min()) if len(present) else None,
        "p05": quantile(values, 0.05),
        "p25": quantile(values, 0.25),
        "median": median(values),
        "p75": quantile(values, 0.75),
        "p95": quantile(values, 0.95),
        "max": pick(present.max()) if len(present) else None,
        "outliers": int(outlier_mask(values, factor).sum()),
    }


def column_summary_rows(stats, factor=IQR_FACTOR):
    """The long summary: per class sorted by name, then for all images
    (OVERALL), one row (a dict) per numeric column in stats.csv order, of
    the measured images' values. An analysis without numeric columns gets
    one row per class with its counts only (column empty)."""
    groups = list(zip(stats.classes, stats.by_class()))
    groups.append((OVERALL, np.arange(len(stats))))
    rows = []
    for name, members in groups:
        counts, ok = _group_counts(name, stats, members)
        for column, values in stats.numeric.items():
            numbers = column_statistics(values[ok], column in stats.integer, factor)
            rows.append({**counts, "column": column, **numbers})
        if not stats.numeric:
            rows.append({**dict.fromkeys(COLUMN_SUMMARY_COLUMNS), **counts, "column": "", "count": 0})
    return rows


def _cell(value):
    """A summary value as pandas wrote it: NaN and missing empty."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def write_summary(stats, summary_csv, errors_csv, summary_page, errors_page,
                  factor=IQR_FACTOR, mode=BRIGHTNESS, analysis="brightness"):  # fmt: skip
    """summary.csv, errors.csv and their HTML views from ``stats``
    (stats.Stats), summary.csv in the form of figures ``mode``
    (imagestats.figures); ``analysis`` names the analysis on the page.
    Returns (summary rows, error rows)."""
    if mode == BRIGHTNESS:
        summary, columns = summary_rows(stats, factor), SUMMARY_COLUMNS
        page = summary_html(summary, factor)
    else:
        summary, columns = column_summary_rows(stats, factor), COLUMN_SUMMARY_COLUMNS
        page = column_summary_html(summary, analysis, factor)
    errors = list(stats.errors)
    write_csv(summary_csv, columns, ([_cell(row[c]) for c in columns] for row in summary))
    write_csv(errors_csv, ERROR_COLUMNS, errors)
    write_text(summary_page, page)
    write_text(errors_page, errors_html(errors, len(stats)))
    return summary, errors


def summary_messages(stats, summary_csv, errors_csv):
    """What the commands that write a summary say on stderr."""
    lines = []
    if OVERALL in stats.classes:
        lines.append(
            f"warning: a class folder is named {OVERALL!r} like the overall row; "
            "the overall rows come last in summary.csv"
        )
    lines.append(
        f"{len(stats.classes)} classes, {len(stats)} images, "
        f"{int(stats.failed.sum())} with errors -> {summary_csv}, {errors_csv}"
    )
    return lines


# ------------------------------------------------------------------ HTML

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1em; color: #222; }
table { border-collapse: collapse; font-size: 14px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; }
th { background: #f0f0f0; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.overall td { font-weight: bold; border-top: 2px solid #888; }
tr.bad td { background: #fff0f0; }
p.note { color: #555; max-width: 60em; }
"""

_HEADINGS = {
    "images": "images",
    "ok": "measured",
    "errors": "errors",
    "error_share": "errors, %",
    "notes": "with note",
    "min_of_min": "min of min",
    "max_of_max": "max of max",
    "mean_of_mean": "mean of mean",
    "median_of_mean": "median of mean",
    "sd_of_mean": "SD of mean",
    "p05_of_mean": "5th pct of mean",
    "p25_of_mean": "25th pct of mean",
    "p75_of_mean": "75th pct of mean",
    "p95_of_mean": "95th pct of mean",
    "mean_of_median": "mean of median",
    "outliers": "outliers (1.5 IQR)",
}


def _text(value):
    """Text for HTML: undecodable bytes of a file name shown as \\xNN."""
    return html.escape(str(value).encode("utf-8", "backslashreplace").decode("utf-8"))


def _number(column, value):
    if _cell(value) is None:
        return ""
    if column == "error_share":
        return f"{100 * value:.2f}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return f"{value:,}"


def _page(title, body):
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body><h2>{html.escape(title)}</h2>\n{body}</body></html>\n"
    )


def summary_html(summary, factor=IQR_FACTOR):
    """A self-contained page showing the summary (rounded; the CSV is exact)."""
    headings = dict(_HEADINGS, outliers=f"outliers ({factor:g} IQR)")
    head = "<tr><th>class</th>" + "".join(
        f"<th>{html.escape(headings[c])}</th>" for c in SUMMARY_COLUMNS[1:]
    ) + "</tr>\n"
    lines = []
    records = list(summary)
    for number, record in enumerate(records, 1):
        cls = "overall" if number == len(records) else "bad" if record["errors"] else ""
        cells = "".join(
            f'<td class="num">{_number(c, record[c])}</td>' for c in SUMMARY_COLUMNS[1:]
        )
        attr = f' class="{cls}"' if cls else ""
        lines.append(f'<tr{attr}><td>{_text(record["class"])}</td>{cells}</tr>\n')
    note = (
        '<p class="note">Brightness is the greyscale value 0-255 (Pillow\'s '
        "convert(\"L\")). \"of mean\" columns describe the distribution of the "
        "per-image mean brightness over the measured images of a class; rows with "
        "errors are shaded. Numbers are rounded to 2 decimals here; summary.csv "
        "holds them exactly.</p>\n"
    )
    return _page(
        "Brightness summary per class",
        f"<table>\n<thead>{head}</thead>\n<tbody>\n{''.join(lines)}</tbody></table>\n{note}",
    )


_COLUMN_HEADINGS = {
    "column": "column",
    "images": "images",
    "ok": "measured",
    "errors": "errors",
    "count": "values",
    "mean": "mean",
    "sd": "SD",
    "min": "min",
    "p05": "5th pct",
    "p25": "25th pct",
    "median": "median",
    "p75": "75th pct",
    "p95": "95th pct",
    "max": "max",
    "outliers": "outliers (1.5 IQR)",
}


def _significant(value):
    """A statistic of any column, whose scale is unknown: 6 significant digits."""
    if _cell(value) is None:
        return ""
    return f"{value:,}" if isinstance(value, int) else f"{value:.6g}"


def column_summary_html(summary, analysis, factor=IQR_FACTOR):
    """A self-contained page showing the long summary (6 significant
    digits; the CSV is exact), a row per class and column."""
    headings = dict(_COLUMN_HEADINGS, outliers=f"outliers ({factor:g} IQR)")
    head = "<tr><th>class</th>" + "".join(
        f"<th>{html.escape(headings[c])}</th>" for c in COLUMN_SUMMARY_COLUMNS[1:]
    ) + "</tr>\n"
    # Every group has a row per column: the last that many are OVERALL's.
    overall = len(summary) - len({record["column"] for record in summary})
    lines = []
    for number, record in enumerate(summary):
        cls = "overall" if number >= overall else "bad" if record["errors"] else ""
        cells = f"<td>{_text(record['column'])}</td>" + "".join(
            f'<td class="num">{_significant(record[c])}</td>' for c in COLUMN_SUMMARY_COLUMNS[2:]
        )
        attr = f' class="{cls}"' if cls else ""
        lines.append(f'<tr{attr}><td>{_text(record["class"])}</td>{cells}</tr>\n')
    note = (
        f'<p class="note">A row per class and numeric column of the analysis '
        f"{_text(analysis)}: the distribution of that column over the measured "
        "images of the class (\"values\": images with a value in the column); "
        f"the {OVERALL} rows at the end are of all images. Classes with errors are "
        "shaded. Numbers are shown to 6 significant digits here; summary.csv holds "
        "them exactly.</p>\n"
    )
    return _page(
        f"Summary per class of {analysis}",
        f"<table>\n<thead>{head}</thead>\n<tbody>\n{''.join(lines)}</tbody></table>\n{note}",
    )


def errors_html(errors, images):
    """A self-contained page listing the images that could not be measured
    (``errors``: (path, class, error) of each)."""
    if not errors:
        body = f"<p>No errors: all {images:,} images were measured.</p>\n"
    else:
        rows = "".join(
            f"<tr><td>{_text(path)}</td><td>{_text(cls)}</td><td>{_text(error)}</td></tr>\n"
            for path, cls, error in errors
        )
        body = (
            f"<p>{len(errors):,} of {images:,} images could not be measured.</p>\n"
            "<table>\n<thead><tr><th>path</th><th>class</th><th>error</th></tr></thead>\n"
            f"<tbody>\n{rows}</tbody></table>\n"
        )
    return _page("Images with errors", body)
