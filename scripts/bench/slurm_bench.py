"""The Slurm benchmark: `snakemake --profile profiles/comet` as shipped, on the
test cluster (tests/slurm/cluster.sh), against `snakemake --cores N` locally.

For each tree: a local run, then a Slurm run, each in a fresh working folder.
The Slurm run uses the profile exactly as users get it (its status-check
pacing included: the first check 40 s after a submission, then backing off),
so its wall time is what a user waits for. Around it the benchmark records:
  * every Slurm command the run calls (bench/slurm_calls.py shims);
  * the run's jobs from sacct: most in flight, summed Elapsed and TotalCPU;
  * rounds: submission waves, each waiting for a status check to see
    earlier jobs end;
  * per Slurm job of shards: job Start to the first image, last image to job
    End, and the gap between its shards (the shard logs' clocks);
  * where the wall time went (bench/slurm_jobs.phases) and which part dominates;
  * that the Slurm run's stats.csv equals the local run's, byte for byte.

The test cluster may be restarted by someone else while we run: a Slurm run
that fails while the controller is down (or is refused for other people's
queued jobs) is tried again in a new folder, after the controller answers.
"""

import os
import time
from dataclasses import dataclass

from .common import COMET_PROFILE, say
from .compare import same_bytes
from .logs import ShardSummary, benchmarked_jobs, shard_logs
from .process import CommandFailed, run_measured
from .slurm_calls import CallCounts, install_shims, read_calls
from .slurm_jobs import (
    PHASES,
    attach_logs,
    most_in_flight,
    other_jobs,
    phases,
    rounds,
    run_jobs,
    shard_overheads,
    spread,
)
from .stall import controller_up
from .table import markdown

ATTEMPTS = 3
CONTROLLER_WAIT_S = 300
SLURM_RUN_TIMEOUT_S = 3 * 3600
# Failures worth a new attempt: the controller gone, or (the plan's check)
# other people's jobs filling the submit limit for a while.
_RETRYABLE = (
    "Unable to contact slurm controller", "Socket timed out", "Connection refused",
    "Zero Bytes were transmitted", "slurm_load_", "WOULD BE REFUSED", "timed out after",
)  # fmt: skip


@dataclass
class SlurmResult:
    tree: object
    local: object  # process.Run of the local run
    slurm: object  # process.Run of the Slurm run
    folder: str
    calls: CallCounts
    jobs: list
    local_jobs: list  # (rule, start, end) of the jobs Snakemake ran itself
    waves: list
    spent: dict
    overheads: object
    shards: ShardSummary
    csv_equal: bool
    attempts: int
    others: list  # other people's Slurm jobs that ran during the run

    @property
    def dominant(self):
        return max(self.spent.items(), key=lambda kv: kv[1])


def wait_for_controller():
    """Until `scontrol ping` answers UP; False after CONTROLLER_WAIT_S."""
    deadline = time.time() + CONTROLLER_WAIT_S
    said = False
    while not controller_up():
        if time.time() > deadline:
            return False
        if not said:
            say("  the Slurm controller does not answer: waiting for it (someone may be restarting it)")
            said = True
        time.sleep(5)
    return True


def run_slurm(ctx, tree):
    """The Slurm run, tried again on controller trouble: (Run, folder, attempts)."""
    for attempt in range(1, ATTEMPTS + 1):
        if not wait_for_controller():
            raise RuntimeError(
                f"no Slurm controller answered for {CONTROLLER_WAIT_S} s: start the test cluster "
                "with `bash tests/slurm/cluster.sh up` (as root)"
            )
        folder = ctx.fresh(ctx.folder("runs", f"slurm-{tree.images}-{attempt}"))
        env = install_shims(os.path.join(folder, "bench-shims"), os.path.join(folder, "bench-calls.log"))
        cmd = ctx.snakemake(tree, profile=COMET_PROFILE)
        try:
            return run_measured(cmd, folder, ctx.log(f"slurm-{tree.images}-{attempt}"), env=env,
                                timeout=SLURM_RUN_TIMEOUT_S), folder, attempt  # fmt: skip
        except CommandFailed as e:
            retry = attempt < ATTEMPTS and (
                not controller_up() or any(s in e.tail for s in _RETRYABLE)
            )  # fmt: skip
            say(f"  Slurm run {attempt} failed ({e.log_path})" + ("; trying again" if retry else ""))
            if not retry:
                raise
            time.sleep(30)


def measure_slurm(ctx, tree):
    n = tree.images
    say(f"  local run, --cores {ctx.args.cores} ...")
    local_dir = ctx.fresh(ctx.folder("runs", f"slurm-local-{n}"))
    local = run_measured(ctx.snakemake(tree), local_dir, ctx.log(f"slurm-local-{n}"))
    say(f"    {local.describe()}")
    say("  Slurm run, --profile profiles/comet as shipped ...")
    slurm, folder, attempts = run_slurm(ctx, tree)
    say(f"    {slurm.describe()}")
    calls = CallCounts(read_calls(os.path.join(folder, "bench-calls.log")))
    jobs = run_jobs(folder, slurm.started, expect=len(calls.sbatch_times))
    attach_logs(jobs, folder)
    logs = shard_logs(folder)
    local_jobs = local_rule_jobs(folder, jobs)
    result = SlurmResult(
        tree, local, slurm, folder, calls, jobs,
        waves=rounds(calls.sbatch_times, jobs),
        local_jobs=local_jobs,
        spent=phases(slurm, calls.sbatch_times, jobs, [(a, b) for _, a, b in local_jobs]),
        overheads=shard_overheads(jobs, logs),
        shards=ShardSummary(logs),
        csv_equal=same_bytes(os.path.join(folder, "results", "stats.csv"),
                             os.path.join(local_dir, "results", "stats.csv")),
        attempts=attempts,
        others=other_jobs(folder, slurm.started, slurm.ended),
    )  # fmt: skip
    for line in details(result):
        say("    " + line)
    return result


def local_rule_jobs(folder, jobs):
    """(rule, start, end) of the benchmarked jobs that ran on the submitting host:
    those of rules that no Slurm job's log folder names (localrules)."""
    on_slurm = {j.rule.removeprefix("rule_") for j in jobs}
    return sorted(
        ((rule, end - seconds, end) for rule, seconds, end in benchmarked_jobs(folder)
         if rule not in on_slurm),
        key=lambda job: job[1],
    )  # fmt: skip


def details(r):
    """The lines printed under each Slurm run."""
    lines = [r.calls.describe()]
    start = r.slurm.started
    lines.append("rounds: " + ", ".join(f"+{t - start:.0f} s: {k} sbatch" for t, k in r.waves))
    command_s = dict(_command_seconds(r.folder))
    for job in sorted(r.jobs, key=lambda j: int(j.id) if j.id.isdigit() else 0):
        what = f"{len(job.shards)} shard(s)" if job.shards else job.rule or "?"
        timing = (
            f"submit +{job.submit - start:.0f} s, start +{job.start - start:.0f} s, end +{job.end - start:.0f} s"
            if job.start is not None and job.end is not None else job.state
        )  # fmt: skip
        inner = ""
        rule = job.rule.removeprefix("rule_")
        if rule in command_s:
            inner = f", its command {command_s[rule]:.1f} s"
        lines.append(f"job {job.id} ({what}): {timing}; Elapsed {job.elapsed:.0f} s, "
                     f"TotalCPU {job.total_cpu:.1f} s{inner}")  # fmt: skip
    for rule, a, b in r.local_jobs:
        lines.append(f"local job {rule}: start +{a - start:.1f} s, end +{b - start:.1f} s")
    o = r.overheads
    lines.append(
        f"per Slurm job of shards: job start -> first image {spread(o.before)}; last image -> job "
        f"end {spread(o.after)}; between its shards {spread(o.between)}; measuring {o.measuring:.1f} s "
        f"in all" + (f"; {o.unmapped} job(s) without shard clocks" if o.unmapped else "")
    )
    lines.append(r.shards.describe())
    parts = ", ".join(f"{k} {v:.0f} s" for k, v in r.spent.items())
    lines.append(f"wall {r.slurm.wall:.0f} s = {parts}")
    lines.append(f"stats.csv {'identical to' if r.csv_equal else 'DIFFERS from'} the local run's")
    lines.append("dominates: " + dominant_sentence(r))
    if r.others:
        ids = ", ".join(j.id for j in r.others[:10])
        lines.append(f"WARNING: {len(r.others)} other Slurm job(s) ran on the cluster during this run "
                     f"({ids}): they competed for the node; the figures include that")  # fmt: skip
    return lines


def _command_seconds(folder):
    for rule, seconds, _ in benchmarked_jobs(folder):
        yield rule, seconds


_PHASE_MEANING = {
    "start-up": "Snakemake's start before the first submission (imports, parse, plan, DAG)",
    "slurm": "Slurm jobs running",
    "local": "local jobs running (localrules), no Slurm job",
    "queued": "jobs submitted and waiting for the node",
    "idle": "nothing running or queued: finished jobs waiting for a status check to see them end",
    "exit": "after the last job: shutdown waits for the executor's status thread to wake from its sleep",
}
assert set(_PHASE_MEANING) == set(PHASES)


def dominant_sentence(r):
    phase, seconds = r.dominant
    text = f"{_PHASE_MEANING[phase]}, {seconds:.0f} s of {r.slurm.wall:.0f} s"
    if phase == "idle":
        text += f" ({len(r.waves)} round(s) of submissions)"
    if phase == "slurm":
        summed = sum(j.elapsed for j in r.jobs)
        text += (f" (summed job Elapsed {summed:.0f} s, of which measuring images "
                 f"{r.overheads.measuring:.0f} s)")  # fmt: skip
    return text


def slurm_table(results, cores):
    """One column per tree."""
    cells = [("measurement", *(f"{r.tree.images:,} images" for r in results))]

    def row(name, fn):
        cells.append((name, *(fn(r) for r in results)))

    row("Slurm run, profiles/comet as shipped: wall", lambda r: f"{r.slurm.wall:.0f} s")
    row(f"local run, --cores {cores}: wall", lambda r: f"{r.local.wall:.1f} s")
    row("Slurm / local", lambda r: f"{r.slurm.wall / r.local.wall:.1f}x")
    row("sbatch calls", lambda r: f"{len(r.calls.sbatch_times)}")
    row("status queries (squeue/sacct), of which status checks",
        lambda r: f"{len(r.calls.status_queries)} ({len(r.calls.status_checks)})")  # fmt: skip
    row("Slurm commands inside the jobs", lambda r: f"{len(r.calls.in_jobs())}")
    row("most jobs in flight", lambda r: f"{most_in_flight(r.jobs)}")
    row("rounds (submission waves)", lambda r: f"{len(r.waves)}")
    row("summed job Elapsed / TotalCPU",
        lambda r: f"{sum(j.elapsed for j in r.jobs):.0f} s / {sum(j.total_cpu for j in r.jobs):.0f} s")  # fmt: skip
    row("shard job: Start -> first image", lambda r: spread(r.overheads.before))
    row("shard job: last image -> End", lambda r: spread(r.overheads.after))
    row("shard job: between its shards", lambda r: spread(r.overheads.between))
    row("shard jobs: peak memory", lambda r: r.shards.short())
    row("wall: " + " / ".join(PHASES),
        lambda r: " / ".join(f"{r.spent.get(k, 0):.0f}" for k in PHASES) + " s")  # fmt: skip
    row("dominates", lambda r: f"{r.dominant[0]} ({r.dominant[1]:.0f} s)")
    row("stats.csv equal to the local run's", lambda r: "yes" if r.csv_equal else "NO")
    row("attempts (controller trouble)", lambda r: f"{r.attempts}")
    row("other people's Slurm jobs during the run", lambda r: f"{len(r.others)}")
    return markdown(cells)
