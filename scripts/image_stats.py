#!/usr/bin/env python3
"""Measure the images of one shard list (the workflow's image_stats rule).

    image_stats.py SHARD_LIST TABLE --images-dir DIR [--on-error record|fail]
                   [--max-image-pixels N]

A thin command-line shell around imagestats.shard.run_shard. The rule runs
it with `shell:` rather than `script:` because a `script:` job imports
Snakemake to unpickle its job (~0.25 s CPU per shard), which with dozens of
shards costs as much as measuring the images.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from imagestats.shard import ImageFailed, run_shard  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shard_list", help="shard list written by the plan (JSON lines)")
    parser.add_argument("table", help="shard table to write (JSON lines)")
    parser.add_argument("--images-dir", required=True, help="folder for per-image stats files")
    parser.add_argument("--on-error", choices=("record", "fail"), default="record")
    parser.add_argument("--max-image-pixels", type=int, default=89478485)
    args = parser.parse_args(argv)
    try:
        run_shard(
            args.shard_list, args.table, args.images_dir,
            args.on_error, args.max_image_pixels, sys.stderr,
        )  # fmt: skip
    except ImageFailed as e:
        sys.exit(f"image_stats: {e}")


if __name__ == "__main__":
    main()
