# Per-image brightness statistics for a folder of images, and one tidy CSV.
#
# images --plan--> results/plan/<shard>.jsonl      (parse time: which images, which shard)
#        --image_stats--> results/shards/<shard>.jsonl + results/images/<path>.json
#        --aggregate_stats--> results/stats.csv
#        --summarize_stats--> results/summary.csv, results/errors.csv (+ .html views)
#        --plot_stats--> results/plots/*.png      (snakemake --report report.html)
#
# One job measures a whole shard (up to images_per_job images): a job costs
# 10-150 ms locally and over a second on Slurm, measuring an image ~0.2 ms.
import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")

sys.path.insert(0, os.path.join(workflow.basedir, "scripts"))
from imagestats.progress import ProgressMonitor  # noqa: E402
from imagestats.workflow import (  # noqa: E402
    PlanError,
    config_problem,
    plan_for_workflow,
    python_for_shell,
    release_scheduler_timers,
)


configfile: "config/config.yaml"


try:
    validate(config, "config/schema.yaml")
except WorkflowError as e:  # one line that names the key, not a schema dump
    raise PlanError(config_problem(e)) from None

PLAN = plan_for_workflow(workflow, config, "results/plan")
PYTHON = python_for_shell(workflow)

# Snakemake counts shards; people wait on images. Only the main process of
# a real run calls onstart, so cluster jobs and dry runs never watch.
PROGRESS = ProgressMonitor(PLAN.shards, "results/plan", "results/shards")


onstart:
    PROGRESS.start()


onsuccess:
    PROGRESS.stop()
    release_scheduler_timers()


onerror:
    PROGRESS.stop()
    release_scheduler_timers()


report: "report/workflow.rst"


localrules:
    all,


rule all:
    input:
        "results/stats.csv",
        "results/summary.csv",
        "results/errors.csv",
        "results/plots/brightness_by_class.png",
        "results/plots/min_max.png",
        "results/plots/outliers.png",


rule image_stats:
    input:
        "results/plan/{shard}.jsonl",
    output:
        "results/shards/{shard}.jsonl",
    log:
        "logs/image_stats/{shard}.log",
    # No benchmark: its monitor scans every process on the machine for each
    # of dozens of jobs; the log has each shard's seconds and ms per image.
    # One group: Slurm runs pack group-components shards per Slurm job (local
    # runs ignore groups). The lookup also checks the Slurm plan (imagestats/workflow.py).
    group:
        PLAN.slurm_group
    conda:
        "envs/imagestats.yaml"
    params:
        python=PYTHON,
        script=os.path.join(workflow.basedir, "scripts/image_stats.py"),
        images_dir="results/images",
        on_error=config["on_error"],
        max_image_pixels=config["max_image_pixels"],
    shell:
        # shell, not script: a script job imports Snakemake (~0.25 s CPU per shard)
        "{params.python:q} {params.script:q} {input:q} {output:q} --images-dir {params.images_dir:q}"
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
    conda:
        "envs/imagestats.yaml"
    params:
        expected_images=PLAN.images,
    script:
        "scripts/aggregate_stats.py"


rule summarize_stats:
    input:
        csv="results/stats.csv",
    output:
        summary=report(
            "results/summary.csv",
            caption="report/summary.rst",
            category="Tables",
            labels={"table": "summary per class", "format": "CSV (exact)"},
        ),
        errors=report(
            "results/errors.csv",
            caption="report/errors.rst",
            category="Tables",
            labels={"table": "images with errors", "format": "CSV"},
        ),
        # The report shows HTML inline but offers a CSV only as a download.
        summary_html=report(
            "results/summary.html",
            caption="report/summary.rst",
            category="Tables",
            labels={"table": "summary per class", "format": "HTML (rounded)"},
        ),
        errors_html=report(
            "results/errors.html",
            caption="report/errors.rst",
            category="Tables",
            labels={"table": "images with errors", "format": "HTML"},
        ),
    log:
        "logs/summarize_stats.log",
    benchmark:
        "benchmarks/summarize_stats.tsv"
    conda:
        "envs/imagestats.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "scripts/summarize_stats.py"


rule plot_stats:
    input:
        csv="results/stats.csv",
    output:
        brightness_by_class=report(
            "results/plots/brightness_by_class.png",
            caption="report/brightness_by_class.rst",
            category="Plots",
            labels={"figure": "mean brightness per class"},
        ),
        min_max=report(
            "results/plots/min_max.png",
            caption="report/min_max.rst",
            category="Plots",
            labels={"figure": "min against max per image"},
        ),
        outliers=report(
            "results/plots/outliers.png",
            caption="report/outliers.rst",
            category="Plots",
            labels={"figure": "outliers and errors"},
        ),
    log:
        "logs/plot_stats.log",
    benchmark:
        "benchmarks/plot_stats.tsv"
    conda:
        "envs/imagestats.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        dpi=100,
        max_labels=3,
    script:
        "scripts/plot_stats.py"
