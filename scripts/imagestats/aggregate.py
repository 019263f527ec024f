"""Join shard tables into one table: one row per image, sorted by path."""

import os

import pandas as pd

from .atomic import replaced
from .measure import COLUMNS, INT_COLUMNS
from .plan import read_plan_index
from .table import read_table


class AggregateError(Exception):
    pass


def add_plan_arguments(parser):
    """The PLAN_DIR TABLES_DIR arguments of the commands that read a plan's
    tables (plan_frame): aggregate_stats.py and plot_stats.py."""
    parser.add_argument("plan_dir", help="plan folder (results/plan): which tables, how many images")
    parser.add_argument("tables_dir", help="folder of the shard tables (results/shards)")


def plan_frame(plan_dir, tables_dir):
    """stats_frame of every table of the plan in ``plan_dir``.

    Commands that read every table take the plan folder rather than the
    tables themselves: with images_per_job 1 a run has one table per image,
    too many names for one command line.
    """
    try:
        index = read_plan_index(plan_dir)
    except FileNotFoundError:
        raise AggregateError(
            f"the plan index in {plan_dir} is missing: rerun the workflow, which plans again"
        ) from None
    tables = [os.path.join(tables_dir, f"{name}.jsonl") for name in index["shards"]]
    return stats_frame(tables, index["images"])


def stats_frame(table_files, expected_images):
    """A DataFrame of all rows; checks that no image is missing or doubled."""
    rows = []
    for file in table_files:
        try:
            rows.extend(read_table(file))
        except FileNotFoundError:
            raise AggregateError(
                f"shard table {file} is missing: rerun the workflow, which measures "
                "that shard again"
            ) from None
    frame = pd.DataFrame.from_records(rows, columns=list(COLUMNS))
    doubled = frame["path"][frame["path"].duplicated()].tolist()
    if doubled:
        raise AggregateError(
            f"{len(doubled)} image(s) appear in two shards, e.g. {doubled[:3]}: "
            "delete results/shards/ and rerun"
        )
    if len(frame) != expected_images:
        raise AggregateError(
            f"the shard tables hold {len(frame)} rows, the plan has {expected_images} "
            "images: rerun the workflow to replan"
        )
    # Nullable integers: an image with an error has no numbers, and plain
    # int columns would turn into floats (64.0) around the gaps.
    frame = frame.astype({c: "Int64" for c in INT_COLUMNS})
    frame = frame.astype({"mean": "float64"})
    return frame.sort_values("path", kind="stable", ignore_index=True)


def write_csv(frame, out):
    """Write the CSV atomically; file names keep their exact bytes."""
    # Default float formatting is repr: the shortest text that reads back
    # as the same double, so every mean is exact.
    with replaced(out) as tmp:
        frame.to_csv(tmp, index=False, encoding="utf-8", errors="surrogateescape")
