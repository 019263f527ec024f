# Per-image brightness statistics for a folder of images, and one tidy CSV.
#
# images --plan--> results/plan/<shard>.jsonl      (parse time: which images, which shard)
#        --image_stats--> results/shards/<shard>.jsonl + results/images/<path>.json
#        --aggregate_stats--> results/stats.csv
#            --summarize_stats--> results/summary.csv, results/errors.csv (+ .html views)
#        --plot_stats--> results/plots/*.png      (from the shard tables, beside aggregate_stats;
#                                                  snakemake --report report.html)
#
# One job measures a whole shard (up to images_per_job images): a job costs
# 10-150 ms locally and over a second on Slurm, measuring an image ~0.2 ms.
import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")

SCRIPTS = os.path.join(workflow.basedir, "scripts")
sys.path.insert(0, SCRIPTS)
from imagestats.progress import ProgressMonitor  # noqa: E402
from imagestats.workflow import (  # noqa: E402
    PlanError,
    before_exit,
    config_problem,
    plan_for_workflow,
    python_for_shell,
)


configfile: "config/config.yaml"


try:
    validate(config, "config/schema.yaml")
except WorkflowError as e:  # one line that names the key, not a schema dump
    raise PlanError(config_problem(e)) from None

PLAN = plan_for_workflow(workflow, config, "results/plan")
# Every rule runs its script as a command (shell:) rather than with script:,
# which first imports Snakemake to unpickle the job: ~0.25 s of CPU per job,
# and the jobs after the shards are the part of a run nothing overlaps.
PYTHON = python_for_shell(workflow)

# Snakemake counts shards; people wait on images. Only the main process of
# a real run calls onstart, so cluster jobs and dry runs never watch.
PROGRESS = ProgressMonitor(PLAN.shards, "results/plan", "results/shards")


onstart:
    PROGRESS.start()


onsuccess:
    PROGRESS.stop()
    before_exit()


onerror:
    PROGRESS.stop()
    before_exit()


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
        script=f"{SCRIPTS}/image_stats.py",
        images_dir="results/images",
        on_error=config["on_error"],
        max_image_pixels=config["max_image_pixels"],
    shell:
        "{params.python:q} {params.script:q} {input:q} {output:q} --images-dir {params.images_dir:q}"
        " --on-error {params.on_error} --max-image-pixels {params.max_image_pixels}"
        " 2> {log:q}"


rule aggregate_stats:
    input:
        # The command reads the table names from the plan index: with
        # images_per_job 1 they would not fit on one command line.
        index="results/plan/index.json",
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
        python=PYTHON,
        script=f"{SCRIPTS}/aggregate_stats.py",
    shell:
        "{params.python:q} {params.script:q} results/plan results/shards"
        " --csv {output.csv:q} 2> {log:q}"


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
    params:
        python=PYTHON,
        script=f"{SCRIPTS}/summarize_stats.py",
    shell:
        "{params.python:q} {params.script:q} {input.csv:q}"
        " --summary {output.summary:q} --errors {output.errors:q}"
        " --summary-html {output.summary_html:q} --errors-html {output.errors_html:q}"
        " 2> {log:q}"


rule plot_stats:
    input:
        # The shard tables, not stats.csv: the figures then draw beside
        # aggregate_stats instead of after it (they are the longest job
        # after the shards).
        index="results/plan/index.json",
        tables=expand("results/shards/{shard}.jsonl", shard=PLAN.shards),
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
        python=PYTHON,
        script=f"{SCRIPTS}/plot_stats.py",
        dpi=100,
        max_labels=3,
    shell:
        "{params.python:q} {params.script:q} results/plan results/shards"
        " --brightness-by-class {output.brightness_by_class:q}"
        " --min-max {output.min_max:q} --outliers {output.outliers:q}"
        " --dpi {params.dpi} --max-labels {params.max_labels} 2> {log:q}"
