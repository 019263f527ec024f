"""The imagestats benchmark, in parts that each do one thing.

scripts/benchmark.py is the command (its docstring says what is measured);
this package is how:

    cli.py          the command line, the phases in order, the summary
    trees.py        the generated trees, cached: EuroSAT-like, hard-linked copies, heavy
    baseline.py     the bare multiprocessing.Pool the workflow is compared with
                    (--analysis bands: calling the workflow's own bands())
    process.py      running one command: wall time, user/system CPU, peak RSS
    context.py      the work folder; moving old runs aside, waiting after deletes
    stall.py        noticing Snakemake starts that wait for a missing Slurm controller
    local.py        full runs against the baseline (bands: against the pool
                    calling bands(); the guide's script: against xargs -P),
                    dry run, nothing-to-do rerun
    compare.py      whether two runs wrote the same CSV and per-image files,
                    or the same command output files
    logs.py         job timelines and shard memory from a run's logs and benchmark files
    table.py        the summary table and its verdicts
    slurm_calls.py  PATH shims counting sbatch/squeue/sacct/scontrol calls
    slurm_jobs.py   sacct: a Slurm run's jobs, in flight, rounds, overheads, phases
    slurm_bench.py  the --slurm mode: profiles/comet against a local run
    metacount.c     an LD_PRELOAD shim counting (and delaying) metadata calls under a folder
    metacount.py    building it, running under it, reading and attributing its counts
    metadata.py     the --metadata mode: operations per image per phase, budgets, Lustre model

Only the standard library at import time: pandas, numpy and Pillow are
imported where used, so that measuring costs the measured runs nothing.
"""
