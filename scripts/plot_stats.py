"""Draw the workflow's figures from stats.csv (the plot_stats rule)."""

import sys

from imagestats.plots import draw_all
from imagestats.summary import read_stats

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (injected by Snakemake)

params, outputs = snakemake.params, dict(snakemake.output.items())  # noqa: F821
stats = read_stats(snakemake.input.csv)  # noqa: F821
draw_all(stats, outputs, params.dpi, params.max_labels)
print(f"{len(stats)} images -> {', '.join(outputs.values())}", file=sys.stderr)
