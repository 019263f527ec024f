# Per-image brightness statistics for a folder of images, and one tidy CSV.
#
# images --plan--> results/plan/<shard>.jsonl      (parse time: which images, which shard)
#        --image_stats--> results/shards/<shard>.jsonl + results/images/<path>.json
#        --aggregate_stats--> results/stats.csv
#
# One job measures a whole shard (up to images_per_job images): a job costs
# 10-150 ms locally and over a second on Slurm, measuring an image ~0.2 ms.
import os
import sys

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "config/schema.yaml")

sys.path.insert(0, os.path.join(workflow.basedir, "scripts"))
from imagestats.workflow import plan_for_workflow, python_for_shell  # noqa: E402

PLAN = plan_for_workflow(workflow, config, "results/plan")
PYTHON = python_for_shell(workflow)


localrules:
    all,


rule all:
    input:
        "results/stats.csv",


rule image_stats:
    input:
        "results/plan/{shard}.jsonl",
    output:
        "results/shards/{shard}.jsonl",
    log:
        "logs/image_stats/{shard}.log",
    benchmark:
        "benchmarks/image_stats/{shard}.tsv"
    params:
        script=os.path.join(workflow.basedir, "scripts/image_stats.py"),
        images_dir="results/images",
        on_error=config["on_error"],
        max_image_pixels=config["max_image_pixels"],
    conda:
        "envs/imagestats.yaml"
    shell:
        # shell, not script: a script job imports Snakemake (~0.25 s CPU per shard)
        "{PYTHON} {params.script:q} {input:q} {output:q} --images-dir {params.images_dir:q}"
        " --on-error {params.on_error} --max-image-pixels {params.max_image_pixels}"
        " 2> {log:q}"


rule aggregate_stats:
    input:
        tables=expand("results/shards/{shard}.jsonl", shard=PLAN.shards),
    output:
        csv="results/stats.csv",
    log:
        "logs/aggregate_stats.log",
    benchmark:
        "benchmarks/aggregate_stats.tsv"
    params:
        expected_images=PLAN.images,
    conda:
        "envs/imagestats.yaml"
    script:
        "scripts/aggregate_stats.py"
