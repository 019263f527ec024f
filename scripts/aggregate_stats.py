"""Join the shard tables into results/stats.csv (the aggregate_stats rule)."""

import sys

from imagestats.aggregate import AggregateError, stats_frame, write_csv

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (injected by Snakemake)

try:
    frame = stats_frame(snakemake.input.tables, snakemake.params.expected_images)  # noqa: F821
except AggregateError as e:
    sys.exit(f"aggregate_stats: {e}")
write_csv(frame, snakemake.output.csv)  # noqa: F821
errors = int((frame["error"] != "").sum())
print(f"{len(frame)} images, {errors} with errors -> {snakemake.output.csv}", file=sys.stderr)  # noqa: F821
