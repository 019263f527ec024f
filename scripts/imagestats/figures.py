"""The figures summarize_stats draws for an analysis, and the columns they show.

Two modes: ``brightness`` (the analyses brightness and greyscale, whose
columns min, max, mean and median the three brightness figures draw) and
``columns`` (any other analysis: box plots of its numeric columns per
class). No numpy or matplotlib: the Snakefile imports this module at parse
time for the outputs of summarize_stats and the check of plot_columns.
"""

import shlex
from typing import NamedTuple

BRIGHTNESS, COLUMNS = "brightness", "columns"
# Figure name -> what it shows (its label in the report), by mode. Each is
# drawn by the function of that name in imagestats.plots; its caption is
# report/<name>.rst.
FIGURES = {
    BRIGHTNESS: {
        "brightness_by_class": "mean brightness per class",
        "min_max": "min against max per image",
        "outliers": "outliers and errors",
    },
    COLUMNS: {"columns_by_class": "numeric columns per class"},
}
# The caption of summary.csv and summary.html, whose columns differ by mode.
SUMMARY_CAPTIONS = {BRIGHTNESS: "report/summary.rst", COLUMNS: "report/summary_columns.rst"}
MAX_PLOTTED = 12  # columns drawn when plot_columns is null: more panels get unreadable


def figure_option(name):
    """summarize_stats's option for the file of figure ``name``."""
    return f"--{name.replace('_', '-')}"


def figure_options(files):
    """The options giving summarize_stats the figures' files (figure name -> file), as shell words."""
    return " ".join(f"{figure_option(name)} {shlex.quote(str(file))}" for name, file in files.items())


class ColumnsError(ValueError):
    """plot_columns names a column the figures cannot draw; the message says which."""


class PlotChoice(NamedTuple):
    columns: list  # the numeric columns to draw, in this order
    note: str  # what the figure says of the columns left out, or ""


def plot_choice(numeric, requested=None):
    """The columns the figure draws: all of ``requested`` (plot_columns),
    which must be among ``numeric`` (the numeric columns, in stats.csv
    order), or without a request the first MAX_PLOTTED of ``numeric``."""
    numeric = list(numeric)
    if requested:
        for name in requested:
            if name not in numeric:
                raise ColumnsError(_not_numeric(name, numeric))
        return PlotChoice(list(dict.fromkeys(requested)), "")
    if len(numeric) > MAX_PLOTTED:
        note = f"the first {MAX_PLOTTED} of {len(numeric)} numeric columns (set plot_columns to choose)"
        return PlotChoice(numeric[:MAX_PLOTTED], note)
    return PlotChoice(numeric, "")


def _not_numeric(name, numeric):
    available = ", ".join(numeric) if numeric else "none"
    return f"plot_columns: {name!r} is not a numeric column of stats.csv (its numeric columns: {available})"


def plot_columns_problem(config, columns=None):
    """What is wrong with ``config["plot_columns"]`` (one line), or None.

    At parse time the analysis's numeric columns are mostly unknown (they
    are stats.csv's, and a bands column depends on the images' bands), so
    this checks the list itself; pass ``columns`` where the numeric columns
    are known to check the names too. summarize_stats checks them against
    stats.csv in any case, before it writes anything.
    """
    requested = config.get("plot_columns")
    if requested is None:
        return None
    if not isinstance(requested, list) or not all(isinstance(n, str) and n for n in requested):
        return f"plot_columns must be a list of column names or null, not {requested!r}"
    if not requested:
        return "plot_columns is an empty list: give column names, or null for every numeric column"
    twice = [name for i, name in enumerate(requested) if name in requested[:i]]
    if twice:
        return f"plot_columns names {twice[0]!r} twice"
    if columns is not None:
        try:
            plot_choice(columns, requested)
        except ColumnsError as e:
            return str(e)
    return None
