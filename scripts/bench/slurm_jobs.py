"""What Slurm's accounting says about one run's jobs, and where the run's time went.

A run's jobs are the jobs whose working folder is the run's (each Slurm run
gets a fresh one), read with `sacct -n -P` without -X: the job line (JobID
without a dot) carries TotalCPU summed over its steps, where -X shows 0.
SLURM_TIME_FORMAT=%s makes Submit/Start/End Unix seconds, comparable with
the shim log and the shard logs' clocks (Slurm's own have 1 s resolution).
"""

import glob
import os
import re
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime

SACCT_FIELDS = "JobID,JobName,WorkDir,State,Submit,Start,End,Elapsed,TotalCPU"
_ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE")


def duration(text):
    """Seconds of a Slurm duration: [D-][HH:]MM:SS[.mmm]."""
    days, _, rest = text.rpartition("-")
    parts = [float(p) for p in rest.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    hours, minutes, seconds = parts
    return (int(days) if days else 0) * 86400 + hours * 3600 + minutes * 60 + seconds


def _stamp(text):
    try:
        return float(text)
    except ValueError:
        return None  # Unknown / None: not started or not ended yet


@dataclass
class SlurmJob:
    id: str
    state: str
    submit: float
    start: float
    end: float
    elapsed: float  # seconds
    total_cpu: float  # seconds, summed over steps
    shards: list = field(default_factory=list)  # shard names it ran (image_stats jobs)
    rule: str = ""  # rule or group, from its Slurm log folder

    @property
    def ended(self):
        return self.end is not None and self.state.split()[0] in _ENDED


def _sacct(since):
    """(working folder, SlurmJob) of every job submitted after ``since``."""
    start = datetime.fromtimestamp(since - 60).strftime("%Y-%m-%dT%H:%M:%S")
    env = dict(os.environ, SLURM_TIME_FORMAT="%s")
    out = subprocess.run(
        ["/usr/bin/sacct", "-n", "-P", "-a", "-S", start, "-E", "now", "-o", SACCT_FIELDS],
        capture_output=True, text=True, env=env, timeout=60,
    ).stdout  # fmt: skip
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) != 9 or "." in parts[0]:
            continue
        job_id, _, folder, state, submit, begin, end, elapsed, cpu = parts
        job = SlurmJob(job_id, state, _stamp(submit), _stamp(begin), _stamp(end),
                       duration(elapsed), duration(cpu))  # fmt: skip
        yield (os.path.realpath(folder) if folder else ""), job


def query_jobs(workdir, since):
    """The jobs sacct lists with working folder ``workdir``, submitted after ``since``."""
    want = os.path.realpath(workdir)
    return [job for folder, job in _sacct(since) if folder == want]


def other_jobs(workdir, started, ended):
    """Jobs of other folders that ran while the run did (someone else's tests, say):
    they competed for the node, and the run's figures include that."""
    want = os.path.realpath(workdir)
    return [
        job for folder, job in _sacct(started - 3600)
        if folder != want and job.start is not None and job.start < ended
        and (job.end is None or job.end > started)
    ]  # fmt: skip


def run_jobs(workdir, since, expect, timeout=60):
    """query_jobs, waiting until sacct lists ``expect`` jobs, all ended: it lags
    Slurm's controller by a second or more."""
    deadline = time.time() + timeout
    while True:
        jobs = query_jobs(workdir, since)
        if (len(jobs) >= expect and all(j.ended for j in jobs)) or time.time() > deadline:
            return jobs
        time.sleep(2)


_SHARD_LOG = re.compile(r"logs/image_stats/([^\s'\",]+)\.log")


def attach_logs(jobs, workdir):
    """Fill each job's rule and shards from its Slurm log,
    logs/slurm/<rule_x or group_y>/<wildcards>/<jobid>.log, which echoes the
    rules it ran with their log files."""
    by_id = {j.id: j for j in jobs}
    for path in glob.glob(os.path.join(workdir, "logs", "slurm", "**", "*.log"), recursive=True):
        job = by_id.get(os.path.basename(path).removesuffix(".log"))
        if job is None:
            continue
        job.rule = os.path.relpath(path, os.path.join(workdir, "logs", "slurm")).split(os.sep)[0]
        with open(path, errors="replace") as f:
            job.shards = sorted(set(_SHARD_LOG.findall(f.read())))


def most_in_flight(jobs):
    """Most jobs submitted and not yet ended at any one time (ends first at a tie)."""
    events = sorted([(j.submit, 1) for j in jobs] + [(j.end, -1) for j in jobs if j.end is not None])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def rounds(sbatch_times, jobs, gap=1.0):
    """Submission waves: [(first sbatch time, sbatch calls)].

    A new wave starts at an sbatch call that comes more than ``gap`` seconds
    after the previous one with an earlier job of the run ending in between:
    the executor submitted it only after a status check saw that job end (a
    dependency, or a free place under `jobs`). Calls in one burst are one wave.
    """
    ends = sorted(j.end for j in jobs if j.end is not None)
    times = sorted(sbatch_times)
    waves = []
    for i, t in enumerate(times):
        previous = times[i - 1] if i else None
        if previous is None or (t - previous > gap and any(previous < e <= t for e in ends)):
            waves.append([t, 0])
        waves[-1][1] += 1
    return [tuple(w) for w in waves]


@dataclass
class Overheads:
    """Seconds of Slurm job time not spent measuring images, per shard job."""

    before: list  # job Start -> first image of its first shard
    after: list  # last image of its last shard -> job End
    between: list  # last image of one shard -> first image of the next, in the same job
    measuring: float  # summed first -> last over all shards
    unmapped: int  # image_stats jobs whose shards or clocks were not found


def shard_overheads(jobs, logs):
    """Overheads of the image_stats jobs, from sacct times and the shard logs' clocks."""
    by_shard = {log.shard: log for log in logs}
    before, after, between, measuring, unmapped = [], [], [], 0.0, 0
    for job in jobs:
        clocked = [by_shard[s] for s in job.shards if s in by_shard and by_shard[s].first is not None]
        if not job.shards:
            continue
        if len(clocked) < len(job.shards) or job.start is None or job.end is None:
            unmapped += 1
            continue
        clocked.sort(key=lambda log: log.first)
        before.append(clocked[0].first - job.start)
        after.append(job.end - clocked[-1].last)
        between += [b.first - a.last for a, b in zip(clocked, clocked[1:])]
        measuring += sum(log.last - log.first for log in clocked)
    return Overheads(before, after, between, measuring, unmapped)


def spread(values, unit="s"):
    """'median X (range A-B)' of a list, for printing."""
    if not values:
        return "n/a"
    med = statistics.median(values)
    return f"median {med:.1f} {unit} ({min(values):.1f}-{max(values):.1f})"


PHASES = ("start-up", "slurm", "local", "queued", "idle", "exit")


def phases(run, sbatch_times, jobs, local_jobs):
    """Where the wall time went, in parts that add up to it:

    start-up  from the start to the first submission or local job (imports,
              parse, plan, DAG)
    slurm     at least one Slurm job of the run running
    local     a local job (a localrule, from its benchmark file) running, no
              Slurm job
    queued    Slurm jobs submitted, none running yet (waiting for the node)
    idle      nothing running or queued: a finished job's followers wait
              for a status check to see that it ended
    exit      after the last job: Snakemake's shutdown, which waits for the
              executor's status thread to wake from its sleep

    ``local_jobs`` are (start, end) pairs. A moment belongs to the first of
    slurm, local, queued that holds there, else to idle.
    """
    spans = {"slurm": [], "local": list(local_jobs), "queued": []}
    for j in jobs:
        if j.start is not None:
            spans["queued"].append((j.submit, j.start))
            spans["slurm"].append((j.start, j.end if j.end is not None else run.ended))
        else:
            spans["queued"].append((j.submit, j.end if j.end is not None else run.ended))
    begins = [a for kind in spans.values() for a, _ in kind] + list(sbatch_times)
    if not begins:
        return {"start-up": run.wall}
    first = max(run.started, min(begins))
    last = min(run.ended, max(b for kind in spans.values() for _, b in kind))
    spent = dict.fromkeys(PHASES, 0.0)
    spent["start-up"] = first - run.started
    spent["exit"] = max(0.0, run.ended - last)
    cuts = sorted({first, last, *(t for kind in spans.values() for span in kind for t in span if first < t < last)})
    for a, b in zip(cuts, cuts[1:]):
        middle = (a + b) / 2
        holds = [k for k in ("slurm", "local", "queued") if any(x <= middle < y for x, y in spans[k])]
        spent[holds[0] if holds else "idle"] += b - a
    return spent
