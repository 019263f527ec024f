#!/usr/bin/env python3
"""Benchmark the image statistics workflow against a bare multiprocessing pool.

    python3 scripts/benchmark.py                # 27,000, heavy tree, 270,000 images; 3 repetitions
    python3 scripts/benchmark.py --skip-large   # without 270,000 images (it takes minutes)
    python3 scripts/benchmark.py --quick        # smoke test: 2,700 (and 27,000) images, small heavy tree, 1 repetition
    python3 scripts/benchmark.py --quick --skip-heavy --skip-large   # the fastest whole pass (~2 minutes)
    python3 scripts/benchmark.py --slurm        # profiles/comet on the test cluster, 27,000 and 270,000 images
    python3 scripts/benchmark.py --metadata [--metadata-delay 500]   # metadata operations per image (below)

Options: --repeat N, --large-repeat N, --images-per-job N, --cores N (default 2),
--targets FILE... (default: rule all, and results/stats.csv like for like),
--config KEY=VALUE... (more workflow config), --shard-threads N (--set-threads
image_stats=N), --skip-heavy, --skip-bands, --skip-command, --command-repeat N
(default 1), --huge (also a 999,000-image dry run, from scratch and again: <= 6 s, <= 400 MB),
--work DIR (default /var/tmp/imagestats-bench: generated trees, run folders, logs).

What it measures (local mode), on generated trees cached under --work:
  * baseline: a bare multiprocessing.Pool(--cores) computing the same numbers
    (convert("L")'s histogram summed with C builtins, restated, giving
    ImageStat's numbers) and writing the same outputs: one JSON file per
    image (with the image file's size and mtime_ns), one CSV sorted by path
    (scripts/bench/baseline.py);
  * full runs from nothing, interleaved with the baseline, median and best of
    --repeat, on 27,000 EuroSAT-like images (scripts/make_eurosat_like.py) for
    the default target (target <= 1.5x the pool) and like for like,
    results/stats.csv (<= 1.35x); and on a heavy tree of camera-sized JPEGs,
    PNG scans and TIFFs (scripts/make_heavy_tree.py; its size is printed),
    default target (<= 1.25x). Each workflow run's outputs are compared with
    the baseline's: stats.csv byte for byte, every per-image JSON file as JSON;
  * per shard job, from its log's last line: the largest and median peak
    memory and the processes per job;
  * a dry run (-n) planning from scratch, and a nothing-to-do rerun (warm, best of 3);
  * analysis=bands: the workflow's results/stats.csv with --config analysis=bands
    (per-image JSON files on, the default) against the pool calling the
    workflow's own bands() (scripts/imagestats/analyses/bands.py) and writing
    the same per-image files and CSV with code of its own (baseline.py
    --analysis bands), interleaved, --repeat runs, on the 27,000 (--quick:
    2,700) images: <= 1.3x; outputs compared as above;
  * the guide's script as the command: the workflow's results/stats.csv with
    --config 'command=PYTHON image_processor.py -file {} -out {outdir}'
    (tests/guide/image_processor.py copied into the working folder, PYTHON the
    benchmark's own interpreter) against `xargs -0 -P CORES -I{} PYTHON
    image_processor.py -file {} -out out` on the same files, on 2,700 (--quick:
    270) images, --command-repeat runs (default 1: a minute a side): <= 1.1x;
    both sides' .txt files compared (the same names, the same contents) and
    every stats.csv row's exit status checked;
  * 270,000 images (hard links to the 27,000; --skip-large to skip): dry run time
    and memory, and full runs, --large-repeat of each, of the baseline, the
    default target (<= 1.25x) and like for like (<= 1.15x): at this scale the
    ratios are the workflow's cost per image and per shard job; and time per
    image against the 27,000 (linearity).
With --metadata: `snakemake -n` and a full run on the 27,000 images (--quick: 2,700) behind an
LD_PRELOAD shim (scripts/bench/metacount.c, built with cc) counting stat, fstat, open, create,
rename, unlink, readdir, mkdir and link calls under the work folder, per phase (plan, shard jobs, jobs
after them, the main process while jobs run), the workflow's own apart from Snakemake's, per image,
priced at Lustre's costs, against issue 23's budgets; --metadata-delay US runs both again with every
counted call delayed US microseconds, and times planning with each stat delayed, one thread against
the walk's threads, also on 108,000 hard-linked images unless --skip-large (scripts/bench/metadata.py).
With --slurm: `snakemake --profile profiles/comet` as shipped on the test cluster
(tests/slurm/cluster.sh) against a local `snakemake --cores N` of the same tree,
each in a fresh folder: wall time, sbatch calls and status queries (counted by
PATH shims), most jobs in flight, submission rounds, summed job Elapsed and
TotalCPU, per-job overhead around the images, what dominates the wall time, and
the CSV compared byte for byte with the local run's (scripts/bench/slurm_bench.py).

Earlier runs' folders are moved aside and deleted only after the last
measurement, and a benchmark started within 2 minutes of such a delete waits:
creating files is slow for a while after a big delete (scripts/bench/context.py).
The baseline's system CPU per image is printed, with a SLOW DISK warning above
0.15 ms. Each command runs as a child process, so wall time, CPU and peak RSS
(of the largest process in the command's tree) are measured the same way for
all. It prints figures and a Markdown table with a verdict per target; it
never fails on a missed target. The parts live in scripts/bench/.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench.cli import main  # noqa: E402

if __name__ == "__main__":
    main(doc=__doc__)
