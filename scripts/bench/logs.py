"""What a finished run's files say about its jobs: when each ran, for how long,
with how many processes and how much memory.

Two sources, both written by the workflow anyway:
  * benchmarks/<rule>.tsv of the rules with `benchmark:` (aggregate_stats,
    summarize_stats): the job's seconds, written as it ends (mtime);
  * logs/image_stats/<shard>.log: its last line sums up the shard, e.g.
        image_stats: 4000 images (4000 measured, 0 kept), 0 errors in 0.95 s
        (0.238 ms/image), 2 process(es), peak 45 MB; clock: start 1733097600.123
        first 1733097600.201 last 1733097601.150
    (clocks in Unix seconds: process start, first image started, last image
    done). Older shards wrote only "4000 images, 0 errors, 0.95 s (...)".
    Each field is read on its own, so a line with fields missing, reordered
    or added still gives what it has.
"""

import csv
import glob
import os
import re
import statistics
from dataclasses import dataclass

_NUMBER = r"([0-9][0-9,]*(?:\.[0-9]+)?)"
_SUMMARY_LINE = re.compile(r"\d[\d,]* images?\b.*\berrors?\b")
_FIELDS = {
    "images": re.compile(_NUMBER + r" images?\b"),
    "measured": re.compile(_NUMBER + r" measured\b"),
    "kept": re.compile(_NUMBER + r" kept\b"),
    "errors": re.compile(_NUMBER + r" errors?\b"),
    "seconds": re.compile(_NUMBER + r" s\b"),
    "processes": re.compile(_NUMBER + r" process"),
    "start": re.compile(r"\bstart " + _NUMBER),
    "first": re.compile(r"\bfirst " + _NUMBER),
    "last": re.compile(r"\blast " + _NUMBER),
}
_PEAK = re.compile(r"\bpeak (?:RSS )?" + _NUMBER + r" ?([KMG]i?B|[kK]B)\b")
_TO_MB = {"KB": 1e-3, "kB": 1e-3, "KiB": 1024 / 1e6, "MB": 1.0, "MiB": 1.048576, "GB": 1e3, "GiB": 1073.741824}


@dataclass
class ShardLog:
    """The summary line of one image_stats job's log; None where the line lacks a field."""

    shard: str
    ended: float  # the log's mtime: the line is the job's last output
    images: int = None
    measured: int = None
    kept: int = None
    errors: int = None
    seconds: float = None
    processes: int = None
    peak_mb: float = None
    start: float = None
    first: float = None
    last: float = None

    @property
    def began(self):
        """When the job's process started: its clock, or the end less the measuring time."""
        if self.start is not None:
            return self.start
        return self.ended - (self.seconds or 0.0)


def parse_summary(text):
    """The fields of the last summary line in ``text`` (a dict), or None."""
    lines = [line for line in text.splitlines() if _SUMMARY_LINE.search(line)]
    if not lines:
        return None
    line = lines[-1]
    found = {}
    for name, pattern in _FIELDS.items():
        match = pattern.search(line)
        if match:
            value = match.group(1).replace(",", "")
            found[name] = float(value) if name in ("seconds", "start", "first", "last") else int(float(value))
    peak = _PEAK.search(line)
    if peak:
        found["peak_mb"] = float(peak.group(1).replace(",", "")) * _TO_MB.get(peak.group(2), 1.0)
    return found


def shard_logs(folder):
    """ShardLog of every image_stats job of the run in ``folder`` that wrote its summary."""
    found = []
    for path in sorted(glob.glob(os.path.join(folder, "logs", "image_stats", "*.log"))):
        with open(path, errors="replace") as f:
            fields = parse_summary(f.read())
        if fields is not None:
            shard = os.path.basename(path).removesuffix(".log")
            found.append(ShardLog(shard, os.stat(path).st_mtime, **fields))
    return found


def benchmarked_jobs(folder):
    """(rule, seconds, end time) of every job with a benchmark file."""
    bench = os.path.join(folder, "benchmarks")
    for path in glob.glob(os.path.join(bench, "**", "*.tsv"), recursive=True):
        with open(path, newline="") as f:
            seconds = sum(float(row["s"]) for row in csv.DictReader(f, delimiter="\t"))
        rule = os.path.relpath(path, bench).split(os.sep)[0].removesuffix(".tsv")
        yield rule, seconds, os.stat(path).st_mtime


def finished_jobs(folder):
    """(rule, start, end) of every job of a run.

    Rules with `benchmark:` leave a file holding the job's duration, written as
    the job ends (its mtime). image_stats has none (its monitor costs too much
    per shard); its log's clock says when its process started, and the log is
    closed as the job ends. Without the clock, the start is the end less the
    measuring time, which misses the shard process's start (~0.1 s).
    """
    jobs = [(rule, end - seconds, end) for rule, seconds, end in benchmarked_jobs(folder)]
    jobs += [("image_stats", log.began, log.ended) for log in shard_logs(folder)]
    return jobs


def job_timeline(folder, run, cores):
    """Where a full run's time went: every job placed in the run by its start
    and end (finished_jobs). What is left when no job runs is Snakemake's own time."""
    jobs, per_rule = [], {}
    for rule, start, end in finished_jobs(folder):
        jobs.append((start, end))
        count, total = per_rule.get(rule, (0, 0.0))
        per_rule[rule] = (count + 1, total + end - start)
    if not jobs:
        return "no benchmark files or shard logs: cannot say where the time went"
    begin, finish = run.started, run.ended
    # Sweep over job starts and ends: time with no job running, and with all cores busy.
    events = sorted([(max(a, begin), 1) for a, _ in jobs] + [(min(b, finish), -1) for _, b in jobs])
    idle = full = 0.0
    running, last = 0, begin
    for t, step in events:
        idle += (t - last) if running == 0 else 0.0
        full += (t - last) if running >= cores else 0.0
        running, last = running + step, t
    idle += finish - last
    first, after = min(a for a, _ in jobs) - begin, finish - max(b for _, b in jobs)
    rules = ", ".join(
        f"{rule} {count} job{'s' if count > 1 else ''} {total:.2f} s"
        for rule, (count, total) in sorted(per_rule.items(), key=lambda kv: -kv[1][1])
    )
    return (
        f"last run, {run.wall:.2f} s; job time: {rules}. No job running for {idle:.2f} s: "
        f"{first:.2f} s before the first job (start-up, parse, plan, DAG), "
        f"{after:.2f} s after the last (exit), {idle - first - after:.2f} s between jobs; "
        f"all {cores} cores busy for {full:.2f} s"
    )


@dataclass
class ShardSummary:
    """Size, memory and processes of a run's shard jobs."""

    logs: list

    @property
    def peaks(self):
        return [log.peak_mb for log in self.logs if log.peak_mb is not None]

    @property
    def largest_mb(self):
        return max(self.peaks, default=None)

    @property
    def median_mb(self):
        return statistics.median(self.peaks) if self.peaks else None

    def _range(self, values):
        values = [v for v in values if v is not None]
        if not values:
            return "?"
        low, high = min(values), max(values)
        return f"{low:,}" if low == high else f"{low:,}-{high:,}"

    def processes(self):
        return self._range(log.processes for log in self.logs)

    def short(self):
        """For a table cell."""
        if not self.logs:
            return "no shard logs"
        memory = (
            f"peak {self.largest_mb:.0f} MB largest, {self.median_mb:.0f} MB median"
            if self.peaks else "peak not in the shard logs"
        )  # fmt: skip
        jobs = f"{len(self.logs)} job{'s' if len(self.logs) != 1 else ''}"
        return f"{jobs}: {memory}; {self.processes()} process(es) per job"

    def describe(self):
        if not self.logs:
            return "shard jobs: no summary line in logs/image_stats/*.log"
        sizes = self._range(log.images for log in self.logs)
        return f"shard jobs: {len(self.logs)} of {sizes} images, {self.short().split(': ', 1)[1]}"
