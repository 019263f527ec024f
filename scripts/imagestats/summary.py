"""Per-class summary and error list from stats.csv, and HTML views of both.

Every number in the summary is a plain pandas computation on the rows of
stats.csv (see ``summarize_group``), so a test or a person can redo it. The
CSV files are the results; the HTML files only exist because Snakemake's
HTML report shows images, HTML and PDF inline but offers a CSV only as a
download.
"""

import html

import pandas as pd

from .aggregate import write_csv
from .atomic import write_text
from .measure import COLUMNS, INT_COLUMNS

OVERALL = "ALL"  # class of the row that summarizes all images
IQR_FACTOR = 1.5  # outliers lie beyond this many IQRs outside the quartiles

SUMMARY_COLUMNS = (
    "class", "images", "ok", "errors", "error_share", "notes",
    "min_of_min", "max_of_max",
    "mean_of_mean", "median_of_mean", "sd_of_mean",
    "p05_of_mean", "p25_of_mean", "p75_of_mean", "p95_of_mean",
    "mean_of_median", "outliers",
)  # fmt: skip
ERROR_COLUMNS = ("path", "class", "error")

_TEXT_COLUMNS = ("path", "class", "mode", "error", "note")


def read_stats(csv):
    """stats.csv as written by aggregate_stats: text columns stay text (an
    empty error is "", a file named NA.jpg stays "NA.jpg"), numbers are
    nullable integers and floats with gaps where an image has an error."""
    frame = pd.read_csv(
        csv,
        dtype={
            **{c: str for c in _TEXT_COLUMNS},
            **{c: "Int64" for c in INT_COLUMNS},
            "mean": "float64",
        },
        keep_default_na=False,
        na_values={c: [""] for c in (*INT_COLUMNS, "mean")},
        encoding="utf-8",
        encoding_errors="surrogateescape",
    )
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{csv} lacks column(s) {missing}: rerun aggregate_stats")
    return frame


def outlier_fences(means, factor=IQR_FACTOR):
    """(low, high): Tukey's fences, the box plot's whisker limits."""
    q1, q3 = means.quantile(0.25), means.quantile(0.75)
    return q1 - factor * (q3 - q1), q3 + factor * (q3 - q1)


def outlier_mask(means, factor=IQR_FACTOR):
    """True for the values beyond the fences of their own series."""
    low, high = outlier_fences(means, factor)
    return (means < low) | (means > high)


def summarize_group(name, rows, factor=IQR_FACTOR):
    """One summary row (a dict) for the stats rows of one class, or of all.

    Statistics of brightness use only measured images (error empty); the
    others count in ``images`` and ``errors`` only.
    """
    failed = rows["error"] != ""
    ok = rows[~failed]
    means = ok["mean"]
    return {
        "class": name,
        "images": len(rows),
        "ok": len(ok),
        "errors": int(failed.sum()),
        "error_share": failed.sum() / len(rows) if len(rows) else float("nan"),
        "notes": int((rows["note"] != "").sum()),
        "min_of_min": ok["min"].min(),
        "max_of_max": ok["max"].max(),
        "mean_of_mean": means.mean(),
        "median_of_mean": means.median(),
        "sd_of_mean": means.std(),
        "p05_of_mean": means.quantile(0.05),
        "p25_of_mean": means.quantile(0.25),
        "p75_of_mean": means.quantile(0.75),
        "p95_of_mean": means.quantile(0.95),
        "mean_of_median": ok["median"].astype("float64").mean(),
        "outliers": int(outlier_mask(means, factor).sum()),
    }


def summary_frame(stats, factor=IQR_FACTOR):
    """One row per class sorted by class name, then the overall row.

    The overall row is the same computation on all images (its outliers are
    judged against all images, not summed from the classes)."""
    rows = [
        summarize_group(name, group, factor)
        for name, group in stats.groupby("class", sort=True)
    ]
    rows.append(summarize_group(OVERALL, stats, factor))
    frame = pd.DataFrame.from_records(rows, columns=list(SUMMARY_COLUMNS))
    # Nullable: a class whose images all failed has no min or max.
    return frame.astype({"min_of_min": "Int64", "max_of_max": "Int64"})


def errors_frame(stats):
    """The images with an error, in stats.csv order (by path)."""
    return stats.loc[stats["error"] != "", list(ERROR_COLUMNS)].reset_index(drop=True)


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
    if pd.isna(value):
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
    records = summary.to_dict("records")
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


def errors_html(errors, images):
    """A self-contained page listing the images that could not be measured."""
    if errors.empty:
        body = f"<p>No errors: all {images:,} images were measured.</p>\n"
    else:
        rows = "".join(
            f"<tr><td>{_text(path)}</td><td>{_text(cls)}</td><td>{_text(error)}</td></tr>\n"
            for path, cls, error in errors[list(ERROR_COLUMNS)].itertuples(index=False, name=None)
        )
        body = (
            f"<p>{len(errors):,} of {images:,} images could not be measured.</p>\n"
            "<table>\n<thead><tr><th>path</th><th>class</th><th>error</th></tr></thead>\n"
            f"<tbody>\n{rows}</tbody></table>\n"
        )
    return _page("Images with errors", body)


def write_summary(stats_csv, summary_csv, errors_csv, summary_page, errors_page,
                  factor=IQR_FACTOR):  # fmt: skip
    """Everything the summarize_stats rule writes; returns (summary, errors)."""
    stats = read_stats(stats_csv)
    summary = summary_frame(stats, factor)
    errors = errors_frame(stats)
    write_csv(summary, summary_csv)
    write_csv(errors, errors_csv)
    write_text(summary_page, summary_html(summary, factor))
    write_text(errors_page, errors_html(errors, len(stats)))
    return summary, errors
