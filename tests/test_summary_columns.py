"""The summary and figures of an analysis other than brightness (figures mode columns).

stats.csv files are written by hand here, in stats.csv's dialect, with
the columns a user's function may return: ints, floats, text, bools, and
empty cells where it gave None or an image failed.
"""

import csv
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, SCRIPTS, check_png, snakemake
from imagestats import plots, summary
from imagestats.figures import MAX_PLOTTED, ColumnsError, plot_choice, plot_columns_problem
from imagestats.stats import read_stats_csv

HEADER = ["path", "class", "pixels", "ratio", "label", "flat", "sparse", "error", "note"]
SUMMARY_HEADER = [
    "class", "column", "images", "ok", "errors", "count", "mean", "sd",
    "min", "p05", "p25", "median", "p75", "p95", "max", "outliers",
]  # fmt: skip
STATISTICS = SUMMARY_HEADER[5:]


def write_stats(file, header, rows):
    """A stats.csv as the workflow writes it: str() of each value, None empty, rows by path."""
    with open(file, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator=os.linesep)
        writer.writerow(header)
        for row in sorted(rows, key=lambda r: r[0]):
            writer.writerow(["" if v is None else str(v) for v in row])
    return file


def row(path, pixels=None, ratio=None, label=None, flat=None, sparse=None, error="", note=""):
    return [path, path.split("/")[0], pixels, ratio, label, flat, sparse, error, note]


HAND_MADE = [
    row("A/1.png", 4096, 0.25, "wide", True, 3),
    row("A/2.png", 1024, 1 / 3, "tall, thin", False),  # sparse: None
    row("A/3.png", 64, 7.5, "x", False, -2),
    row("A/4.png", error="empty file"),  # an error row: every analysis cell empty
    row("B/1.png", 100, 1e-05, "", True, 10, note="first frame"),
    row("B/2.png", 300, 2.0, "y", False, 12),
]


def test_numeric_columns_are_exactly_those_whose_cells_are_all_numbers(tmp_path):
    stats = read_stats_csv(write_stats(tmp_path / "stats.csv", HEADER, HAND_MADE))
    assert stats.columns == ["pixels", "ratio", "label", "flat", "sparse"]
    assert list(stats.numeric) == ["pixels", "ratio", "sparse"]
    assert stats.integer == {"pixels", "sparse"}
    np.testing.assert_array_equal(stats.numeric["pixels"], [4096, 1024, 64, np.nan, 100, 300])
    np.testing.assert_array_equal(stats.numeric["ratio"], [0.25, 1 / 3, 7.5, np.nan, 1e-05, 2.0])
    np.testing.assert_array_equal(stats.numeric["sparse"], [3, np.nan, -2, np.nan, 10, 12])
    assert stats.classes == ["A", "B"] and stats.cls.tolist() == [0, 0, 0, 0, 1, 1]
    assert stats.errors == [("A/4.png", "A", "empty file")]
    assert stats.noted.tolist() == [False] * 4 + [True, False]


def test_a_column_with_text_after_many_numbers_is_not_numeric(tmp_path, monkeypatch):
    """The reader decides per batch: text in a later batch still counts."""
    monkeypatch.setattr("imagestats.stats.BATCH", 4)
    rows = [[f"A/{i:02d}.png", "A", i, "1.5" if i < 9 else "n/a", "", ""] for i in range(10)]
    stats = read_stats_csv(write_stats(tmp_path / "stats.csv", ["path", "class", "n", "x", "error", "note"], rows))
    assert list(stats.numeric) == ["n"]
    np.testing.assert_array_equal(stats.numeric["n"], np.arange(10.0))


def test_a_header_without_path_class_error_note_is_named(tmp_path):
    from imagestats.aggregate import AggregateError

    file = write_stats(tmp_path / "stats.csv", ["path", "pixels", "error", "note"], [["A/1.png", 1, "", ""]])
    with pytest.raises(AggregateError, match="its header does not start with path,class and end with error,note"):
        read_stats_csv(file)


def random_rows(seed, failures=True):
    """Classes of 1 to thousands of images with ties, empty cells, negative
    and huge values, and with ``failures`` errors and a class whose images
    all failed (without, an int column with no empty cell, which pandas
    reads as ints, not floats)."""
    rng = np.random.default_rng(seed)
    rows = []
    for c, size in enumerate([1, 2, 3, 5, 40, 1500] + list(rng.integers(1, 200, 3))):
        for i in range(size):
            failed = failures and (c == 0 or rng.random() < 0.05)
            if failed:
                rows.append(row(f"C{c}/{i:05d}.png", error="broken"))
                continue
            rows.append(row(
                f"C{c}/{i:05d}.png",
                pixels=int(rng.choice([rng.integers(0, 10**9), 4096])),
                ratio=float(rng.choice([rng.normal(0, 1e6), rng.uniform(0, 1), 0.1])),
                label=str(rng.integers(5)) + "px",
                flat=bool(rng.random() < 0.5),
                sparse=None if rng.random() < 0.3 else int(rng.integers(-5, 5)),
            ))  # fmt: skip
    return rows


def pandas_summary(file):
    """The summary redone with pandas on stats.csv: each class's measured
    rows, then all images', each numeric column's Series statistics."""
    frame = pd.read_csv(file, keep_default_na=False, na_values=[""])
    numeric = [c for c in HEADER[2:-2] if pd.api.types.is_numeric_dtype(frame[c]) and frame[c].dtype != bool]
    groups = list(frame.groupby("class", sort=True)) + [("ALL", frame)]
    rows = []
    for name, group in groups:
        ok = group[group["error"].isna()]  # an empty cell
        for column in numeric:
            v = ok[column]
            q1, q3 = v.quantile(0.25), v.quantile(0.75)
            rows.append({
                "class": name, "column": column, "images": len(group), "ok": len(ok),
                "errors": len(group) - len(ok), "count": int(v.count()), "mean": v.mean(),
                "sd": v.std(), "min": v.min(), "p05": v.quantile(0.05), "p25": q1,
                "median": v.median(), "p75": q3, "p95": v.quantile(0.95), "max": v.max(),
                "outliers": int(((v < q1 - 1.5 * (q3 - q1)) | (v > q3 + 1.5 * (q3 - q1))).sum()),
            })  # fmt: skip
    return numeric, rows


def same(a, b):
    """Equal, both missing (None or NaN), bit for bit otherwise."""
    missing = (a is None or a != a), (b is None or b != b)
    return missing[0] == missing[1] and (missing[0] or a == b)


@pytest.mark.parametrize("failures", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_summary_numbers_are_pandas_numbers_bit_for_bit(tmp_path, seed, failures):
    file = write_stats(tmp_path / "stats.csv", HEADER, random_rows(seed, failures))
    numeric, want = pandas_summary(file)
    stats = read_stats_csv(file)
    assert list(stats.numeric) == numeric == ["pixels", "ratio", "sparse"]
    got = summary.column_summary_rows(stats)
    assert [(r["class"], r["column"]) for r in got] == [(r["class"], r["column"]) for r in want]
    for g, w in zip(got, want):
        for key in SUMMARY_HEADER:
            assert same(g[key], w[key]), (g["class"], g["column"], key, g[key], w[key])


def summarize(tmp_path, stats_csv, *extra, jobs=1):
    """summarize_stats.py in figures mode columns; (result, files written)."""
    out = tmp_path / f"out{jobs}"
    out.mkdir(exist_ok=True)
    files = {name: out / name for name in ("summary.csv", "errors.csv", "summary.html", "errors.html", "columns.png")}
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "summarize_stats.py"), str(stats_csv),
         "--summary", files["summary.csv"], "--errors", files["errors.csv"],
         "--summary-html", files["summary.html"], "--errors-html", files["errors.html"],
         "--figures", "columns", "--columns-by-class", files["columns.png"],
         "--analysis", "shapes.py:measure", "--jobs", str(jobs), *extra],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return done, files


def read_rows(file):
    with open(file, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("jobs", [1, 2])
def test_summarize_writes_the_long_summary_and_a_figure(tmp_path, jobs):
    stats_csv = write_stats(tmp_path / "stats.csv", HEADER, random_rows(7))
    done, files = summarize(tmp_path, stats_csv, jobs=jobs)
    assert done.returncode == 0, done.stderr
    check_png(files["columns.png"])
    with open(files["summary.csv"], newline="") as f:
        assert next(csv.reader(f)) == SUMMARY_HEADER
    rows = read_rows(files["summary.csv"])
    classes = sorted({r[1] for r in random_rows(7)})
    assert [(r["class"], r["column"]) for r in rows] == [
        (c, column) for c in classes + ["ALL"] for column in ("pixels", "ratio", "sparse")
    ]
    # The file's numbers are the summary's: ints as ints, floats as their repr.
    _, want = pandas_summary(stats_csv)
    for got, expected in zip(rows, want):
        for key in STATISTICS:
            text = got[key]
            number = None if text == "" else int(text) if text.lstrip("-").isdigit() else float(text)
            assert same(number, expected[key]), (got["class"], got["column"], key, text, expected[key])
    assert rows[-1]["images"] == str(len(random_rows(7)))
    assert "shapes.py:measure" in files["summary.html"].read_text()
    assert read_rows(files["errors.csv"])[0] == {"path": "C0/00000.png", "class": "C0", "error": "broken"}


def test_the_same_files_with_one_or_two_processes(tmp_path):
    stats_csv = write_stats(tmp_path / "stats.csv", HEADER, HAND_MADE)
    written = []
    for jobs in (1, 2):
        done, files = summarize(tmp_path, stats_csv, jobs=jobs)
        assert done.returncode == 0, done.stderr
        written.append({name: file.read_bytes() for name, file in files.items()})
    assert written[0] == written[1]


def drawn_panels(monkeypatch, stats, **settings):
    """The titles of the panels columns_by_class draws."""
    titles = []

    def keep(fig, out):
        titles.extend(ax.get_title() for ax in fig.axes if ax.get_visible())
        titles.append(fig.get_suptitle())

    monkeypatch.setattr(plots, "_save", keep)
    plots.draw_all(stats, {"columns_by_class": None}, **settings)
    return titles


def test_plot_columns_choose_the_panels(tmp_path, monkeypatch):
    stats = read_stats_csv(write_stats(tmp_path / "stats.csv", HEADER, HAND_MADE))
    *panels, title = drawn_panels(monkeypatch, stats, analysis="shapes.py:measure")
    assert panels == ["pixels (n = 5)", "ratio (n = 5)", "sparse (n = 4)"]
    assert title.startswith("shapes.py:measure: values per image, by class")
    choice = plot_choice(stats.numeric, ["sparse", "pixels"])
    *panels, _ = drawn_panels(monkeypatch, stats, choice=choice)
    assert panels == ["sparse (n = 4)", "pixels (n = 5)"]


def test_more_numeric_columns_than_a_figure_holds_are_cut_and_the_figure_says_so(tmp_path, monkeypatch):
    header = ["path", "class", *(f"c{i:02d}" for i in range(MAX_PLOTTED + 3)), "error", "note"]
    rows = [[f"A/{i}.png", "A", *range(i, i + MAX_PLOTTED + 3), "", ""] for i in range(5)]
    stats = read_stats_csv(write_stats(tmp_path / "stats.csv", header, rows))
    *panels, title = drawn_panels(monkeypatch, stats)
    assert [p.split()[0] for p in panels] == [f"c{i:02d}" for i in range(MAX_PLOTTED)]
    assert f"the first {MAX_PLOTTED} of {MAX_PLOTTED + 3} numeric columns" in title


@pytest.mark.parametrize("name", ["nope", "label", "flat"])  # missing, text, bool
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_plot_column_that_is_not_numeric_fails_in_one_line_and_writes_nothing(tmp_path, name, jobs):
    stats_csv = write_stats(tmp_path / "stats.csv", HEADER, HAND_MADE)
    done, files = summarize(tmp_path, stats_csv, "--plot-columns", "ratio", name, jobs=jobs)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"summarize_stats: plot_columns: {name!r} is not a numeric column of stats.csv "
        "(its numeric columns: pixels, ratio, sparse)"
    )
    assert not any(file.exists() for file in files.values())


def test_plot_columns_checked_at_parse_time():
    assert plot_columns_problem({"plot_columns": None}) is None
    assert plot_columns_problem({"plot_columns": ["a", "b"]}) is None
    assert "empty list" in plot_columns_problem({"plot_columns": []})
    assert plot_columns_problem({"plot_columns": ["a", "b", "a"]}) == "plot_columns names 'a' twice"
    assert "list of column names" in plot_columns_problem({"plot_columns": "a"})
    assert plot_columns_problem({"plot_columns": ["R_mean"]}, columns=["R_mean", "G_mean"]) is None
    assert plot_columns_problem({"plot_columns": ["L_mean"]}, columns=["R_mean", "G_mean"]) == (
        "plot_columns: 'L_mean' is not a numeric column of stats.csv (its numeric columns: R_mean, G_mean)"
    )
    with pytest.raises(ColumnsError):
        plot_choice([], ["a"])


@pytest.mark.parametrize("case", ["every image failed", "no numeric column"])
def test_the_figure_and_summary_survive_columns_without_values(tmp_path, case):
    if case == "every image failed":  # every column empty: numeric, without a value
        header, rows = HEADER, [row("A/1.png", error="broken"), row("B/1.png", error="broken")]
    else:  # a column all empty beside text
        header = ["path", "class", "label", "error", "note"]
        rows = [["A/1.png", "A", "x", "", ""], ["B/1.png", "B", "y", "broken", ""]]
    stats_csv = write_stats(tmp_path / "stats.csv", header, rows)
    done, files = summarize(tmp_path, stats_csv)
    assert done.returncode == 0, done.stderr
    check_png(files["columns.png"])
    summary_rows = read_rows(files["summary.csv"])
    assert [(r["class"], r["images"], r["errors"]) for r in summary_rows if r["column"] in ("", "ratio")] == (
        [("A", "1", "1"), ("B", "1", "1"), ("ALL", "2", "2")] if case == "every image failed"
        else [("A", "1", "0"), ("B", "1", "1"), ("ALL", "2", "1")]
    )  # fmt: skip
    assert {r["count"] for r in summary_rows} == {"0"}
    assert {r["mean"] for r in summary_rows} == {""}


def test_greyscale_summary_and_figures_are_brightness_ones(tmp_path):
    """figures mode brightness ignores a text column beside brightness's
    (greyscale's PNG path): every file is the bytes brightness gives."""
    header = ["path", "class", "width", "height", "mode", "min", "max", "mean", "median", "error", "note"]
    rng = np.random.default_rng(3)
    rows = [
        [f"{c}/{i}.jpg", c, 64, 64, "RGB", int(lo), int(lo) + 100, float(rng.uniform(lo, lo + 100)),
         int(lo) + 50, "", ""]
        for c in ("A", "B") for i, lo in enumerate(rng.integers(0, 155, 30))
    ] + [["B/bad.jpg", "B", None, None, None, None, None, None, None, "broken", ""]]  # fmt: skip
    with_png = [[*r[:9], None if r[9] else f"results/transformed/{r[0]}.png", *r[9:]] for r in rows]
    tables = {
        "brightness": (header, rows),
        "greyscale": (header[:9] + ["greyscale"] + header[9:], with_png),
    }
    options = ("--summary", "--errors", "--summary-html", "--errors-html",
               "--brightness-by-class", "--min-max", "--outliers")  # fmt: skip
    written = {}
    for analysis, (columns, table) in tables.items():
        stats_csv = write_stats(tmp_path / f"{analysis}.csv", columns, table)
        out = tmp_path / analysis
        out.mkdir()
        files = [out / n for n in ("s.csv", "e.csv", "s.html", "e.html", "b.png", "m.png", "o.png")]
        done = subprocess.run(
            [sys.executable, str(SCRIPTS / "summarize_stats.py"), str(stats_csv), "--analysis", analysis,
             *(str(a) for pair in zip(options, files) for a in pair)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        written[analysis] = {f.name: f.read_bytes() for f in files}
    assert written["greyscale"] == written["brightness"]
    assert written["greyscale"]["s.csv"].startswith(b"class,images,ok,errors,error_share,notes,min_of_min")


SAMPLE = REPO / "config" / "sample" / "EuroSAT_RGB"


@pytest.mark.parametrize("analysis", ["brightness", "bands"])
def test_the_workflow_asks_for_the_figures_of_the_analysis(tmp_path, analysis):
    """A dry run: summarize_stats's outputs and options follow the analysis."""
    config = (f"input_dir={SAMPLE}", f"analysis={analysis}", "plot_columns=[R_mean, 'G mean']")
    done = snakemake(tmp_path, "-n", "-p", config=config)
    (command,) = [line for line in done.output.splitlines() if "summarize_stats.py" in line]
    if analysis == "bands":
        assert "--figures columns --columns-by-class results/plots/columns_by_class.png" in command
        assert "--plot-columns R_mean 'G mean' " in command
        assert "brightness_by_class" not in done.output
    else:
        assert "--figures brightness --brightness-by-class results/plots/brightness_by_class.png" in command
        assert "--min-max results/plots/min_max.png --outliers results/plots/outliers.png" in command
        assert "--plot-columns --dpi" in " ".join(command.split())  # no names: it draws no column
        assert "columns_by_class" not in done.output


def test_a_wrong_plot_columns_list_stops_the_workflow_before_any_job(tmp_path):
    done = snakemake(tmp_path, "-n", config=(f"input_dir={SAMPLE}", "analysis=bands", "plot_columns=[a, a]"),
                     check=False)  # fmt: skip
    assert done.returncode == 1
    assert "plot_columns names 'a' twice" in done.output
    assert "summarize_stats" not in done.output
