"""The workflow's figures, drawn with matplotlib's Agg canvas.

Figures are built as ``Figure`` objects on an explicit Agg canvas rather
than through pyplot: no display is needed (cluster nodes have none) and no
global figure state survives between plots. Margins are set in inches, the
left one from the widest class label, instead of by a layout engine:
constrained layout measured every tick of every panel twice and took half
of the plotting time, and summarize_stats is the longest job after the shards.
Every figure is 16 x 9 inches at ``dpi`` (1600 x 900 px at the default 100)
so it reads on a laptop screen and in the report; classes run down the y
axis so long folder names such as ``HerbaceousVegetation`` stay horizontal.

Which figures a run draws depends on its analysis (imagestats.figures):
brightness_by_class, min_max and outliers for brightness and greyscale,
columns_by_class (a panel of box plots per numeric column) for any other.

The figures take ``stats.Stats`` (numpy columns in path order), not a
DataFrame. At 27,000 images most of their time is matplotlib's Python work
per artist (ticks, text) and zlib, not the data, so ``draw_all`` can draw
them in forked processes at once; titles sit at a fixed height (no
re-measuring) and the panel figure has three ticks a panel axis and no
unlabelled minor ticks (fewer artists to build).
"""

import math
import os
import sys
import traceback
from typing import NamedTuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator

from .atomic import replaced
from .figures import FIGURES, PlotChoice, plot_choice
from .summary import IQR_FACTOR, median, outlier_fences, outlier_mask

WIDTH, HEIGHT = 16, 9  # inches
SCALE = (0, 255)
PANEL_TICKS = (0, 100, 200)  # 255 too: its label would touch the next panel's 0
BRIGHTNESS = "brightness, 0-255"
OK_COLOUR = "#4878a8"
BAD_COLOUR = "#c8102e"
# Where a title sits (matplotlib's default height, given explicitly): an
# automatic title position measures every tick label of its axes at each
# draw, a third of the time of the panel figure, to move titles above
# x axes at the top, which these figures do not have.
TITLE_Y = 1.0
# zlib level 3 instead of 6: 35% less time to encode, files ~10% larger.
PNG = {"compress_level": 3}


def _figure(dpi, height=HEIGHT):
    fig = Figure(figsize=(WIDTH, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _text_width(fig, labels, fontsize):
    """Width in inches of the widest line of ``labels`` at ``fontsize``."""
    renderer = fig.canvas.get_renderer()
    font = FontProperties(size=fontsize)
    widest = max(
        (renderer.get_text_width_height_descent(line, font, ismath=False)[0]
         for label in labels for line in str(label).split("\n")),
        default=0,
    )  # fmt: skip
    return widest / fig.dpi


def _place(fig, labels=(), fontsize=11, left=0.5, right=0.4, top=0.8, bottom=0.8, **space):
    """Fixed margins in inches; ``labels`` (y tick labels) widen the left one."""
    width, height = fig.get_size_inches()
    left += _text_width(fig, labels, fontsize)
    fig.subplots_adjust(left=left / width, right=1 - right / width,
                        top=1 - top / height, bottom=bottom / height, **space)  # fmt: skip


def _save(fig, out):
    with replaced(out) as tmp:
        fig.savefig(tmp, format="png", pil_kwargs=PNG)  # the temporary name has no .png ending


def _measured(stats):
    """Row indices of each class's measured images (error empty), in path order."""
    return [rows[~stats.failed[rows]] for rows in stats.by_class()]


def _label(name):
    """Class names as matplotlib text: '$' would start mathtext."""
    return str(name).encode("utf-8", "backslashreplace").decode("utf-8").replace("$", r"\$")


def _no_data(ax, text="no measured images"):
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center",
            color="grey", fontsize=14)  # fmt: skip


def _box_plot(ax, groups, positions, empty="no measured images"):
    """Horizontal box plots of the non-empty ``groups`` (arrays of values)
    at ``positions``; says ``empty`` and returns False when all are empty."""
    drawn = [i for i, g in enumerate(groups) if len(g)]
    if drawn:
        ax.boxplot(
            [groups[i] for i in drawn],
            positions=positions[drawn],
            orientation="horizontal",
            widths=0.6,
            whis=IQR_FACTOR,
            patch_artist=True,
            boxprops={"facecolor": "#c9d9ea", "edgecolor": OK_COLOUR},
            medianprops={"color": "black", "linewidth": 2},
            flierprops={"marker": "o", "markersize": 3, "alpha": 0.5, "linestyle": "none",
                        "markerfacecolor": OK_COLOUR, "markeredgecolor": "none"},
        )  # fmt: skip
    else:
        _no_data(ax, empty)
    return bool(drawn)


def brightness_by_class(stats, out, dpi=100):
    """Box plot of the per-image mean brightness, one box per class, plus
    all images together at the bottom."""
    classes = stats.classes
    groups = [stats.mean[rows] for rows in _measured(stats)]
    groups.append(stats.mean[~stats.failed])
    labels = [
        f"{_label(c)}\n(n = {len(g):,})" for c, g in zip(classes + ["all images"], groups)
    ]
    fig = _figure(dpi, max(HEIGHT, 0.45 * len(labels) + 2))
    ax = fig.add_subplot()
    _place(fig, labels, fontsize=11, top=0.6)
    positions = np.arange(len(groups))[::-1]  # first class at the top
    if _box_plot(ax, groups, positions):
        ax.axvline(np.median(groups[-1]), color="grey", linestyle="--", linewidth=1,
                   label="median of all images")  # fmt: skip
        ax.legend(loc="lower right")
    ax.axhline(positions[-1] + 0.5, color="grey", linewidth=0.8)
    ax.set_yticks(positions, labels, fontsize=11)
    ax.set_ylim(positions[-1] - 0.6, positions[0] + 0.6)
    ax.set_xlim(*SCALE)
    ax.set_xlabel(f"mean brightness of an image ({BRIGHTNESS})", fontsize=12)
    ax.set_title(
        "Mean brightness per image, by class (box: quartiles, line: median, "
        f"whiskers: {IQR_FACTOR:g} IQR, dots: images beyond)",
        fontsize=14,
        y=TITLE_Y,
    )
    ax.grid(axis="x", alpha=0.3)
    _save(fig, out)


def _grid(n):
    """(rows, columns) for n small panels on a wide page."""
    cols = min(n, 5) if n <= 10 else math.ceil(math.sqrt(n * WIDTH / HEIGHT))
    return math.ceil(n / cols), cols


def min_max(stats, out, dpi=100):
    """Per-image min against max, one hexbin panel per class on shared axes
    and a shared colour scale (images per hexagon, log)."""
    classes = stats.classes
    measured = _measured(stats)
    images = np.bincount(stats.cls, minlength=len(classes))
    rows, cols = _grid(max(1, len(classes)))
    fig = _figure(dpi, max(HEIGHT, 3.2 * rows))
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False).ravel()
    # Before the colour bar, which takes its room from these positions.
    _place(fig, ["000"], left=0.9, top=0.9, right=0.2, wspace=0.08, hspace=0.3)
    hexbins = []
    for ax, name, members, count in zip(axes, classes, measured, images):
        ax.plot(SCALE, SCALE, color="grey", linewidth=0.8, linestyle="--")
        if len(members):
            hexbins.append(ax.hexbin(
                stats.low[members].astype(float), stats.high[members].astype(float),
                gridsize=26, extent=(*SCALE, *SCALE), mincnt=1,
                cmap="viridis", linewidths=0,
            ))  # fmt: skip
        else:
            _no_data(ax)
        failed = int(count - len(members))
        extra = f", {failed:,} error{'s' if failed > 1 else ''}" if failed else ""
        ax.set_title(f"{_label(name)} (n = {len(members):,}{extra})", fontsize=11, y=TITLE_Y)
        ax.set_xlim(*SCALE)
        ax.set_ylim(*SCALE)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
    for ax in axes[len(classes):]:
        ax.set_visible(False)
    # Three ticks a panel axis, not matplotlib's six, for all panels (they
    # share their axes): each tick of each small panel is several artists,
    # most of the figure's drawing time.
    axes[0].set_xticks(PANEL_TICKS)
    axes[0].set_yticks(PANEL_TICKS)
    grid = axes.reshape(rows, cols)
    for column in grid.T:
        # The lowest panel in use: the last row may be only partly filled.
        shown = [ax for ax in column if ax.get_visible()]
        if shown:
            shown[-1].set_xlabel(f"min ({BRIGHTNESS})")
            shown[-1].tick_params(labelbottom=True)
    for ax in grid[:, 0]:
        ax.set_ylabel(f"max ({BRIGHTNESS})")
    if hexbins:
        # One colour scale for all panels, so equal colours mean equal density.
        most = max(int(h.get_array().max()) for h in hexbins)
        norm = LogNorm(vmin=1, vmax=max(2, most))
        for h in hexbins:
            h.set_norm(norm)
        bar = fig.colorbar(hexbins[0], ax=axes.tolist(), label="images per hexagon",
                           shrink=0.8, pad=0.02)  # fmt: skip
        plain = FuncFormatter(lambda value, _: f"{value:g}")
        bar.ax.yaxis.set_major_formatter(plain)
        if most < 20:  # under one decade: label the 2, 3, 5 between
            bar.ax.yaxis.set_minor_formatter(plain)
        else:  # decades only: unlabelled minor ticks are artists to build and draw
            bar.ax.yaxis.set_minor_locator(NullLocator())
    fig.suptitle(
        "Darkest against brightest pixel per image (dashed: min = max, a flat image)",
        fontsize=14,
    )
    _save(fig, out)


def _dots(ax, points, markersize, **style):
    """One line of round markers (``markersize``: the diameter in points,
    as scatter's ``s`` is its square) at the (x, y) arrays of ``points``."""
    if points:
        x, y = np.concatenate([p[0] for p in points]), np.concatenate([p[1] for p in points])
        ax.plot(x, y, linestyle="none", marker="o", markersize=markersize,
                markeredgewidth=0, zorder=1, rasterized=True, **style)  # fmt: skip


def _most_extreme(means, bad, count):
    """Positions of the ``count`` outliers (``bad``) farthest from the
    median of ``means``, farthest first; equally far ones in path order."""
    positions = np.flatnonzero(bad)
    distance = np.abs(means[positions] - median(means))
    return positions[np.argsort(-distance, kind="stable")[:count]]


def outliers(stats, out, dpi=100, max_labels=3, seed=0):
    """Left: every image's mean brightness per class, outliers (beyond the
    class's IQR fences) in red, the most extreme ones named. Right: errors
    per class."""
    classes = stats.classes
    measured = _measured(stats)
    fig = _figure(dpi, max(HEIGHT, 0.45 * len(classes) + 2))
    strip, bars = fig.subplots(1, 2, sharey=True, width_ratios=(3, 1))
    positions = np.arange(len(classes))[::-1]
    rng = np.random.default_rng(seed)  # fixed jitter: same data, same picture
    labels, total_outliers = [], 0
    fine, bad_points = {}, []  # alpha -> [(x, y)] of the images inside the fences; outliers
    for y, name, rows in zip(positions, classes, measured):
        means = stats.mean[rows]
        jitter = y + rng.uniform(-0.3, 0.3, len(rows))
        if len(rows):
            low, high = outlier_fences(means)
            bad = outlier_mask(means)
            # Alpha falls with the number of points so thousands stay readable.
            alpha = min(0.8, max(0.15, 60 / max(1, (~bad).sum())))
            fine.setdefault(alpha, []).append((means[~bad], jitter[~bad]))
            bad_points.append((means[bad], jitter[bad]))
            for fence in (low, high):
                if SCALE[0] <= fence <= SCALE[1]:
                    strip.plot([fence, fence], [y - 0.38, y + 0.38], color="black",
                               linewidth=1.2)  # fmt: skip
            named = _most_extreme(means, bad, max_labels)
            # Names stack at fixed heights in the row: outliers cluster, and
            # labels placed at their points would overprint each other.
            heights = np.linspace(0.3, -0.3, len(named)) if len(named) > 1 else [0.3]
            for position, dy in zip(named, heights):
                x = means[position]
                right = x > 200  # a label there would run off the axes
                strip.annotate(
                    _label(os.path.basename(stats.path(rows[position]))),
                    (x, jitter[position]),
                    xytext=(x - 6 if right else x + 6, y + dy), textcoords="data",
                    ha="right" if right else "left", va="center", fontsize=8,
                    color=BAD_COLOUR,
                    # From the label's near edge, unclipped: clipping the
                    # line at the label's box and the dot took a fifth of
                    # the figure's time with 30 names.
                    arrowprops={"arrowstyle": "-", "color": BAD_COLOUR, "linewidth": 0.6,
                                "relpos": (1 if right else 0, 0.5), "patchA": None,
                                "shrinkA": 0, "shrinkB": 0},
                )  # fmt: skip
            count = int(bad.sum())
        else:
            count = 0
        total_outliers += count
        plural = "outlier" if count == 1 else "outliers"
        labels.append(f"{_label(name)}\n({count:,} {plural})" if count else _label(name))
    # The points as markers of a few lines, not one scatter collection per
    # class: a line of markers draws each as a copy of one rendered dot.
    # Classes with the same alpha share a line (their rows do not overlap);
    # under the limits and names (zorder 1), outliers over the others.
    for alpha, points in fine.items():
        _dots(strip, points, markersize=math.sqrt(5), color=OK_COLOUR, alpha=alpha)
    _dots(strip, bad_points, markersize=math.sqrt(18), color=BAD_COLOUR)
    strip.set_yticks(positions, labels, fontsize=11)
    _place(fig, labels, fontsize=11, top=0.9, wspace=0.04)
    if len(classes):
        strip.set_ylim(positions[-1] - 0.6, positions[0] + 0.6)
    strip.set_xlim(*SCALE)
    strip.set_xlabel(f"mean brightness of an image ({BRIGHTNESS})", fontsize=12)
    strip.set_title(
        f"Outliers: {total_outliers:,} images beyond {IQR_FACTOR:g} IQR of their class "
        f"(red; black ticks: the limits; up to {max_labels} named per class)",
        fontsize=13,
        y=TITLE_Y,
    )
    strip.grid(axis="x", alpha=0.3)
    if not sum(map(len, measured)):
        _no_data(strip)

    errors = np.bincount(stats.cls[stats.failed], minlength=len(classes)).tolist()
    images = np.bincount(stats.cls, minlength=len(classes)).tolist()
    bars.barh(positions, errors, color=[BAD_COLOUR if e else "lightgrey" for e in errors])
    for y, e, n in zip(positions, errors, images):
        bars.annotate(f"{e:,} of {n:,}", (e, y), xytext=(4, 0), textcoords="offset points",
                      va="center", fontsize=10)  # fmt: skip
    bars.set_xlim(0, max(1, max(errors, default=0)) * 1.35)
    bars.set_xlabel("images with errors", fontsize=12)
    bars.set_title(f"Errors: {sum(errors):,} of {len(stats):,} images", fontsize=13, y=TITLE_Y)
    bars.xaxis.get_major_locator().set_params(integer=True)
    bars.grid(axis="x", alpha=0.3)
    fig.suptitle("Outliers and broken images", fontsize=15)
    _save(fig, out)


def _class_labels(stats):
    """Each class's name with its images and errors, then all images', on
    one line: a figure of many panels has little height per class."""
    images = np.bincount(stats.cls, minlength=len(stats.classes)).tolist()
    errors = np.bincount(stats.cls[stats.failed], minlength=len(stats.classes)).tolist()
    names = stats.classes + ["all images"]
    images.append(len(stats))
    errors.append(int(stats.failed.sum()))
    return [
        f"{_label(name)} ({n:,} image{'s' if n != 1 else ''}"
        + (f", {e:,} error{'s' if e > 1 else ''})" if e else ")")
        for name, n, e in zip(names, images, errors)
    ]


def columns_by_class(stats, out, dpi=100, choice=None, analysis="the analysis"):
    """Box plots of numeric columns of any analysis: a panel per column,
    each on its own scale, a box per class and one of all images at the
    bottom, of the measured images' values. ``choice``: the columns
    (figures.PlotChoice); by default every numeric one, up to MAX_PLOTTED."""
    choice = choice or plot_choice(stats.numeric)
    labels = _class_labels(stats)
    groups = _measured(stats) + [np.flatnonzero(~stats.failed)]
    # Panels are tall (a row per class): up to 6 side by side, rows evenly filled.
    rows = math.ceil(max(1, len(choice.columns)) / 6)
    cols = math.ceil(max(1, len(choice.columns)) / rows)
    fig = _figure(dpi, max(HEIGHT, rows * (0.25 * len(labels) + 1.1)))
    axes = fig.subplots(rows, cols, sharey=True, squeeze=False).ravel()
    _place(fig, labels, fontsize=10, top=1.0, wspace=0.08, hspace=0.3)
    positions = np.arange(len(labels))[::-1]  # first class at the top
    for ax, column in zip(axes, choice.columns):
        values = stats.numeric[column]
        # Finite values only: an inf has no place on an axis.
        boxes = [v[np.isfinite(v)] for v in (values[g] for g in groups)]
        _box_plot(ax, boxes, positions, empty="no values")
        ax.axhline(positions[-1] + 0.5, color="grey", linewidth=0.8)
        ax.set_title(f"{_label(column)} (n = {len(boxes[-1]):,})", fontsize=11, y=TITLE_Y)
        ax.xaxis.set_major_locator(MaxNLocator(4))  # narrow panels: few tick labels
        ax.grid(axis="x", alpha=0.3)
    if not choice.columns:
        _no_data(axes[0], "no numeric column")
        axes[0].set_xticks([])
    for ax in axes[len(choice.columns) or 1 :]:
        ax.set_visible(False)
    axes[0].set_yticks(positions, labels, fontsize=10)
    axes[0].set_ylim(positions[-1] - 0.6, positions[0] + 0.6)
    title = (
        f"{_label(analysis)}: values per image, by class (box: quartiles, line: median, "
        f"whiskers: {IQR_FACTOR:g} IQR, dots: images beyond)"
    )
    fig.suptitle(f"{title}\n{choice.note}" if choice.note else title, fontsize=14)
    _save(fig, out)


class FigureFailed(Exception):
    """A figure could not be drawn; the message names it."""


class Settings(NamedTuple):
    """What the figures take besides the data."""

    dpi: int = 100
    max_labels: int = 3  # outliers named per class (outliers)
    choice: PlotChoice = None  # the columns columns_by_class draws (None: its default)
    analysis: str = "the analysis"  # its name, for columns_by_class's title


def draw(name, stats, out, settings=Settings()):
    """Draw the figure ``name`` (one of FIGURES' names) to ``out``."""
    if name == "outliers":
        outliers(stats, out, settings.dpi, settings.max_labels)
    elif name == "columns_by_class":
        columns_by_class(stats, out, settings.dpi, settings.choice, settings.analysis)
    else:
        globals()[name](stats, out, settings.dpi)


def draw_all(stats, outputs, dpi=100, max_labels=3, jobs=1, **settings):
    """The figures named in ``outputs`` (figure name -> file) of FIGURES;
    ``settings``: the rest of Settings. With ``jobs`` > 1 they are drawn by
    that many processes (see _in_parallel)."""
    settings = Settings(dpi, max_labels, **settings)
    names = [name for mode in FIGURES.values() for name in mode if name in outputs]
    if jobs > 1 and len(names) > 1 and hasattr(os, "fork"):
        _in_parallel(names, stats, outputs, settings, jobs)
    else:
        for name in names:
            draw(name, stats, outputs[name], settings)


# CPU seconds to draw a figure in a fresh process: fixed + per million
# images (measured at 27,000 to 1,000,000 images, 10 classes), to spread
# the figures over the processes.
_COST = {"brightness_by_class": (0.17, 0.1), "min_max": (0.3, 0.2), "outliers": (0.17, 0.8)}


def _cost(name, images):
    fixed, per_million = _COST.get(name, (0.4, 0.5))
    return fixed + per_million * images / 1e6


def _in_parallel(names, stats, outputs, settings, jobs):
    """Draw the figures ``names`` with ``jobs`` processes: this one and
    jobs - 1 forked children, which share everything read and imported so
    far. Each process draws its share as the serial run would, so the files
    are the same. A failed figure's traceback goes to stderr; FigureFailed
    names the figures that failed, after every process has ended."""
    jobs = min(jobs, len(names))
    shares, loads = [[] for _ in range(jobs)], [0.0] * jobs
    for name in sorted(names, key=lambda n: -_cost(n, len(stats))):  # longest first
        least = loads.index(min(loads))
        shares[least].append(name)
        loads[least] += _cost(name, len(stats))

    def draw_share(share):
        """Bit i set: share[i] failed."""
        failed = 0
        for i, name in enumerate(share):
            try:
                draw(name, stats, outputs[name], settings)
            except Exception:
                traceback.print_exc()
                failed |= 1 << i
        return failed

    sys.stdout.flush()
    sys.stderr.flush()
    children = []
    for share in shares[1:]:
        pid = os.fork()
        if pid == 0:  # the child: draw, then leave without the parent's cleanup
            code = 255
            try:
                code = draw_share(share)
            finally:
                sys.stderr.flush()
                os._exit(code)
        children.append((pid, share))
    try:
        mine = draw_share(shares[0])
    finally:
        ended = [(os.waitpid(pid, 0)[1], share) for pid, share in children]
    failed = [name for i, name in enumerate(shares[0]) if mine >> i & 1]
    for status, share in ended:
        code = os.waitstatus_to_exitcode(status)
        failed += [name for i, name in enumerate(share) if code < 0 or code >> i & 1]
    if failed:
        raise FigureFailed(f"could not draw {', '.join(failed)} (see the error above)")
