"""The workflow's figures, drawn with matplotlib's Agg canvas.

Figures are built as ``Figure`` objects on an explicit Agg canvas rather
than through pyplot: no display is needed (cluster nodes have none) and no
global figure state survives between plots. Margins are set in inches, the
left one from the widest class label, instead of by a layout engine:
constrained layout measured every tick of every panel twice and took half
of the plotting time, and plot_stats is the longest job after the shards.
Every figure is 16 x 9 inches at ``dpi`` (1600 x 900 px at the default 100)
so it reads on a laptop screen and in the report; classes run down the y
axis so long folder names such as ``HerbaceousVegetation`` stay horizontal.
"""

import math
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import FuncFormatter, NullFormatter

from .atomic import replaced
from .summary import IQR_FACTOR, outlier_fences, outlier_mask

WIDTH, HEIGHT = 16, 9  # inches
SCALE = (0, 255)
BRIGHTNESS = "brightness, 0-255"
OK_COLOUR = "#4878a8"
BAD_COLOUR = "#c8102e"


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
        fig.savefig(tmp, format="png")  # the temporary name has no .png ending


def _classes(stats):
    return sorted(stats["class"].unique())


def _ok(stats):
    return stats[stats["error"] == ""]


def _label(name):
    """Class names as matplotlib text: '$' would start mathtext."""
    return str(name).encode("utf-8", "backslashreplace").decode("utf-8").replace("$", r"\$")


def _no_data(ax, text="no measured images"):
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center",
            color="grey", fontsize=14)  # fmt: skip


def brightness_by_class(stats, out, dpi=100):
    """Box plot of the per-image mean brightness, one box per class, plus
    all images together at the bottom."""
    classes = _classes(stats)
    ok = _ok(stats)
    groups = [ok.loc[ok["class"] == c, "mean"].to_numpy() for c in classes]
    groups.append(ok["mean"].to_numpy())
    labels = [
        f"{_label(c)}\n(n = {len(g):,})" for c, g in zip(classes + ["all images"], groups)
    ]
    fig = _figure(dpi, max(HEIGHT, 0.45 * len(labels) + 2))
    ax = fig.add_subplot()
    _place(fig, labels, fontsize=11, top=0.6)
    positions = np.arange(len(groups))[::-1]  # first class at the top
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
        ax.axvline(np.median(groups[-1]), color="grey", linestyle="--", linewidth=1,
                   label="median of all images")  # fmt: skip
        ax.legend(loc="lower right")
    else:
        _no_data(ax)
    ax.axhline(positions[-1] + 0.5, color="grey", linewidth=0.8)
    ax.set_yticks(positions, labels, fontsize=11)
    ax.set_ylim(positions[-1] - 0.6, positions[0] + 0.6)
    ax.set_xlim(*SCALE)
    ax.set_xlabel(f"mean brightness of an image ({BRIGHTNESS})", fontsize=12)
    ax.set_title(
        "Mean brightness per image, by class (box: quartiles, line: median, "
        f"whiskers: {IQR_FACTOR:g} IQR, dots: images beyond)",
        fontsize=14,
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
    classes = _classes(stats)
    ok = _ok(stats)
    rows, cols = _grid(max(1, len(classes)))
    fig = _figure(dpi, max(HEIGHT, 3.2 * rows))
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False).ravel()
    # Before the colour bar, which takes its room from these positions.
    _place(fig, ["000"], left=0.9, top=0.9, right=0.2, wspace=0.08, hspace=0.3)
    hexbins = []
    for ax, name in zip(axes, classes):
        members = ok[ok["class"] == name]
        ax.plot(SCALE, SCALE, color="grey", linewidth=0.8, linestyle="--")
        if len(members):
            hexbins.append(ax.hexbin(
                members["min"].astype(float), members["max"].astype(float),
                gridsize=26, extent=(*SCALE, *SCALE), mincnt=1,
                cmap="viridis", linewidths=0,
            ))  # fmt: skip
        else:
            _no_data(ax)
        failed = int((stats["class"] == name).sum() - len(members))
        extra = f", {failed:,} error{'s' if failed > 1 else ''}" if failed else ""
        ax.set_title(f"{_label(name)} (n = {len(members):,}{extra})", fontsize=11)
        ax.set_xlim(*SCALE)
        ax.set_ylim(*SCALE)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
    for ax in axes[len(classes):]:
        ax.set_visible(False)
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
        bar.ax.yaxis.set_minor_formatter(plain if most < 20 else NullFormatter())
    fig.suptitle(
        "Darkest against brightest pixel per image (dashed: min = max, a flat image)",
        fontsize=14,
    )
    _save(fig, out)


def outliers(stats, out, dpi=100, max_labels=3, seed=0):
    """Left: every image's mean brightness per class, outliers (beyond the
    class's IQR fences) in red, the most extreme ones named. Right: errors
    per class."""
    classes = _classes(stats)
    ok = _ok(stats)
    fig = _figure(dpi, max(HEIGHT, 0.45 * len(classes) + 2))
    strip, bars = fig.subplots(1, 2, sharey=True, width_ratios=(3, 1))
    positions = np.arange(len(classes))[::-1]
    rng = np.random.default_rng(seed)  # fixed jitter: same data, same picture
    labels, total_outliers = [], 0
    for y, name in zip(positions, classes):
        rows = ok[ok["class"] == name]
        means = rows["mean"]
        jitter = y + rng.uniform(-0.3, 0.3, len(rows))
        if len(rows):
            low, high = outlier_fences(means)
            bad = outlier_mask(means).to_numpy()
            # Alpha falls with the number of points so thousands stay readable.
            alpha = min(0.8, max(0.15, 60 / max(1, (~bad).sum())))
            strip.scatter(means[~bad], jitter[~bad], s=5, color=OK_COLOUR,
                          alpha=alpha, linewidths=0, rasterized=True)  # fmt: skip
            strip.scatter(means[bad], jitter[bad], s=18, color=BAD_COLOUR,
                          linewidths=0, rasterized=True)  # fmt: skip
            for fence in (low, high):
                if SCALE[0] <= fence <= SCALE[1]:
                    strip.plot([fence, fence], [y - 0.38, y + 0.38], color="black",
                               linewidth=1.2)  # fmt: skip
            median = means.median()
            extreme = (means[bad] - median).abs().sort_values(ascending=False)
            named = extreme.index[:max_labels]
            # Names stack at fixed heights in the row: outliers cluster, and
            # labels placed at their points would overprint each other.
            heights = np.linspace(0.3, -0.3, len(named)) if len(named) > 1 else [0.3]
            for index, dy in zip(named, heights):
                position = np.flatnonzero(rows.index == index)[0]
                x = means[index]
                right = x > 200  # a label there would run off the axes
                strip.annotate(
                    _label(os.path.basename(rows.at[index, "path"])),
                    (x, jitter[position]),
                    xytext=(x - 6 if right else x + 6, y + dy), textcoords="data",
                    ha="right" if right else "left", va="center", fontsize=8,
                    color=BAD_COLOUR,
                    arrowprops={"arrowstyle": "-", "color": BAD_COLOUR, "linewidth": 0.6},
                )  # fmt: skip
            count = int(bad.sum())
        else:
            count = 0
        total_outliers += count
        plural = "outlier" if count == 1 else "outliers"
        labels.append(f"{_label(name)}\n({count:,} {plural})" if count else _label(name))
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
    )
    strip.grid(axis="x", alpha=0.3)
    if ok.empty:
        _no_data(strip)

    errors = [int(((stats["class"] == c) & (stats["error"] != "")).sum()) for c in classes]
    images = [int((stats["class"] == c).sum()) for c in classes]
    bars.barh(positions, errors, color=[BAD_COLOUR if e else "lightgrey" for e in errors])
    for y, e, n in zip(positions, errors, images):
        bars.annotate(f"{e:,} of {n:,}", (e, y), xytext=(4, 0), textcoords="offset points",
                      va="center", fontsize=10)  # fmt: skip
    bars.set_xlim(0, max(1, max(errors, default=0)) * 1.35)
    bars.set_xlabel("images with errors", fontsize=12)
    bars.set_title(f"Errors: {sum(errors):,} of {len(stats):,} images", fontsize=13)
    bars.xaxis.get_major_locator().set_params(integer=True)
    bars.grid(axis="x", alpha=0.3)
    fig.suptitle("Outliers and broken images", fontsize=15)
    _save(fig, out)


FIGURES = ("brightness_by_class", "min_max", "outliers")


def draw_all(stats, outputs, dpi=100, max_labels=3):
    """The three figures; ``outputs`` maps their names to files."""
    brightness_by_class(stats, outputs["brightness_by_class"], dpi)
    min_max(stats, outputs["min_max"], dpi)
    outliers(stats, outputs["outliers"], dpi, max_labels)
