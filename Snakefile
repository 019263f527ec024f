# A per-image analysis of every image of a folder, and one tidy CSV.
#
# images --plan--> results/plan/<shard>.<fingerprint>.jsonl   (parse time: which images, which shard)
#        --image_stats--> results/shards/<shard>.jsonl + .csv (the rows as stats.csv lines)
#                         + results/images/<path>.json, results/transformed/<column>/<path>.png
#        --aggregate_stats--> results/stats.csv
#        --summarize_stats--> results/summary.csv, results/errors.csv (+ .html views),
#                             results/plots/*.png, the analysis's figures (imagestats.figures)
#                             (from stats.csv; snakemake --report report.html)
#
# One job measures a whole shard (up to images_per_job images or mb_per_job
# MB of image files) with `threads` processes: starting a job costs far more
# than measuring a small image, locally and more so on Slurm (figures in
# docs/performance.md and docs/configuration.md). The jobs after the
# shards are local rules: on Slurm they run on the submit host as soon as
# the last shard is seen done, instead of waiting another round of status
# checks (and another queue wait) as Slurm jobs.
import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")

SCRIPTS = os.path.join(workflow.basedir, "scripts")
sys.path.insert(0, SCRIPTS)
from imagestats.figures import (  # noqa: E402
    FIGURES,
    SUMMARY_CAPTIONS,
    figure_options,
    plot_columns_problem,
)
from imagestats.workflow import (  # noqa: E402
    ChosenAnalysis,
    PlanError,
    bundled_paths,
    config_file,
    config_problem,
    module_check,
    plan_for_workflow,
    python_for_shell,
    read_booleans,
    schema_file,
    start_banner,
)
from imagestats.version import VERSION  # noqa: E402

start_banner(workflow)
CONFIG_FILE = config_file(workflow)


configfile: CONFIG_FILE


read_booleans(config)
try:
    validate(config, schema_file(workflow))
except WorkflowError as e:  # one line that names the key, not a schema dump
    raise PlanError(config_problem(e)) from None
if problem := plot_columns_problem(config):
    raise PlanError(problem)
bundled_paths(workflow, config, CONFIG_FILE)
# For report/workflow.rst, whose template sees only the config. Set after the
# validation: the schema refuses it from a user.
config["imagestats_version"] = VERSION

# The analysis (config `analysis`), imported by the main process to check it.
ANALYSIS = ChosenAnalysis(config, workflow)
PLAN = plan_for_workflow(workflow, config, ANALYSIS)
# The figures of the analysis (imagestats.figures), outputs of summarize_stats.
FIGURE_OUTPUTS = {
    name: report(
        f"results/plots/{name}.png",
        caption=f"report/{name}.rst",
        category="Plots",
        labels={"figure": label},
    )
    for name, label in FIGURES[ANALYSIS.figures].items()
}
# What the commands run with but must not rerun for, so not params (params
# are rerun triggers): the interpreter and the scripts' folder (a moved
# checkout, another venv or module), the images' folder (moved with the
# results), where the analysis's file is (its content is the code param),
# and on_error and image_timeout. The commands read them from
# the environment, which every job inherits (on Slurm too: sbatch exports it
# and the job's Snakemake sets it again when it parses this file).
os.environ.update(
    IMAGESTATS_PYTHON=python_for_shell(workflow, config),
    IMAGESTATS_SCRIPTS=SCRIPTS,
    IMAGESTATS_ROOT=PLAN.root,
    IMAGESTATS_ON_ERROR=config["on_error"],
    IMAGESTATS_ANALYSIS=ANALYSIS.resolved,
    IMAGESTATS_COMMAND=ANALYSIS.command or "",
    IMAGESTATS_IMAGE_TIMEOUT=str(config["image_timeout"]),
)
shell.prefix(module_check(workflow, config))


onstart:
    PLAN.onstart()


onsuccess:
    PLAN.onsuccess()


onerror:
    PLAN.onerror()


report: "report/workflow.rst"


localrules:
    all,
    aggregate_stats,
    summarize_stats,


rule all:
    input:
        "results/stats.csv",
        "results/summary.csv",
        "results/errors.csv",
        FIGURE_OUTPUTS.values(),


rule image_stats:
    input:
        PLAN.list_file,
    output:
        table="results/shards/{shard}.jsonl",
        # The rows as stats.csv lines in path order: aggregate_stats only
        # merges them.
        csv="results/shards/{shard}.csv",
    log:
        "logs/image_stats/{shard}.log",
    # No benchmark: its monitor scans every process on the machine for each
    # of dozens of jobs; the log ends with each shard's time and memory.
    conda:
        "envs/imagestats.yaml"
    envmodules:
        *config["envmodules"],
    threads: PLAN.threads
    resources:
        runtime=PLAN.runtime,
        mem_mb=PLAN.mem_mb,
    params:
        # What decides a row's numbers (and the per-image files): a change
        # reruns the shards. code: the analysis's file(s) and the measuring
        # code, by content.
        code=ANALYSIS.version,
        max_image_pixels=config["max_image_pixels"],
        images_dir="results/images" if config["per_image_files"] else "none",
    shell:
        '"$IMAGESTATS_PYTHON" "$IMAGESTATS_SCRIPTS/image_stats.py" {input:q} {output.table:q}'
        ' --csv {output.csv:q} --root "$IMAGESTATS_ROOT" --on-error "$IMAGESTATS_ON_ERROR" --workers {threads}'
        " --images-dir {params.images_dir} --max-image-pixels {params.max_image_pixels}"
        ' --analysis "$IMAGESTATS_ANALYSIS" --command "$IMAGESTATS_COMMAND"'
        ' --image-timeout "$IMAGESTATS_IMAGE_TIMEOUT"'
        " --transformed-dir results/transformed 2> {log:q}"


rule aggregate_stats:
    input:
        # The command reads the shard names from the plan index: with
        # images_per_job 1 they would not fit on one command line.
        shards=expand("results/shards/{shard}.csv", shard=PLAN.shards),
        # Not read here, but asked for: Snakemake reruns a job only for a
        # missing output something needs, and a lost table must come back
        # (the error counts and the next run's kept rows come from it).
        tables=expand("results/shards/{shard}.jsonl", shard=PLAN.shards),
    output:
        csv="results/stats.csv",
    log:
        "logs/aggregate_stats.log",
    benchmark:
        "benchmarks/aggregate_stats.tsv"
    conda:
        "envs/imagestats.yaml"
    envmodules:
        *config["envmodules"],
    resources:
        runtime=PLAN.final_runtime,
        mem_mb=PLAN.final_mem_mb,
    shell:
        '"$IMAGESTATS_PYTHON" "$IMAGESTATS_SCRIPTS/aggregate_stats.py" results/plan results/shards'
        " --csv {output.csv:q} 2> {log:q}"


rule summarize_stats:
    input:
        csv="results/stats.csv",
    output:
        **FIGURE_OUTPUTS,
        summary=report(
            "results/summary.csv",
            caption=SUMMARY_CAPTIONS[ANALYSIS.figures],
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
            caption=SUMMARY_CAPTIONS[ANALYSIS.figures],
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
    envmodules:
        *config["envmodules"],
    # Two processes: one reads the CSV and writes the summary while the
    # other imports matplotlib, then both draw.
    threads: 2
    resources:
        runtime=PLAN.final_runtime,
        mem_mb=PLAN.final_mem_mb,
    params:
        # A function: a command's {} must not be read as a wildcard.
        analysis=lambda wildcards: ANALYSIS.spec,
        figures=ANALYSIS.figures,
        figure_files=figure_options(FIGURE_OUTPUTS),
        # Only mode columns draws them: no rerun for a change that draws nothing.
        plot_columns=(ANALYSIS.figures == "columns" and config["plot_columns"]) or [],
        dpi=100,
        max_labels=3,
    shell:
        '"$IMAGESTATS_PYTHON" "$IMAGESTATS_SCRIPTS/summarize_stats.py" {input.csv:q}'
        " --summary {output.summary:q} --errors {output.errors:q}"
        " --summary-html {output.summary_html:q} --errors-html {output.errors_html:q}"
        " --analysis {params.analysis:q} --figures {params.figures} {params.figure_files}"
        " --plot-columns {params.plot_columns:q}"
        " --dpi {params.dpi} --max-labels {params.max_labels} --jobs {threads} 2> {log:q}"
