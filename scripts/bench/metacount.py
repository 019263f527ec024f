"""Metadata operations counted per phase: the LD_PRELOAD shim and what it wrote.

``build()`` compiles scripts/bench/metacount.c with the C compiler (``$CC``,
else ``cc``) into a cache folder, once per version of the source.
``environment()`` is what a command needs to run behind it; each process
then appends a line of counts to ``<out>/<pid>.tsv`` (see the C file's
comment for the format and the kinds). ``read()`` reads them back and
``attribute()`` sums them by phase and owner.

Workflow or Snakemake (decided here, documented once): a count belongs to
the workflow when the workflow's own code made it, to Snakemake otherwise.
The shim knows it from marks the workflow sets (imagestats.metamarks):
  * job processes: the workflow's scripts (image_stats.py, aggregate_stats.py,
    summarize_stats.py) mark their whole process, and the processes they
    fork inherit it; the job's shell, which Snakemake starts, is Snakemake's;
  * the main Snakemake process runs both: the workflow marks the thread
    running its code (the plan at parse time, the storage check, the
    hooks, the progress thread) for as long as that code runs, and
    everything else in that process is Snakemake's (parsing, the DAG, the
    checks of inputs and outputs, .snakemake/ records, Python's imports from
    the working folder, which is on sys.path for `python -m snakemake`).
  * phase: the main process's ``onstart`` hook marks the process as
    running jobs; what it did before (parse, plan, DAG) is planning.
Which job a process belongs to comes from its command line (the script it
runs) or, failing that, its parent's.

What an operation costs on Lustre is taken from ../shared/FILESYSTEM-NOTES.md
("What a metadata operation costs" and "Measuring it on these machines"): one
client, one thread, no contention, so a lower bound for a busy centre.
"""

import hashlib
import os
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field

from .common import BENCH

SOURCE = os.path.join(BENCH, "metacount.c")

KINDS = ("stat", "fstat", "open", "create", "rename", "unlink", "readdir", "mkdir", "link", "other")
OWNERS = {0: "snakemake", 1: "workflow"}  # imagestats.metamarks.OWN is 1
PLANNING, RUNNING = 0, 1  # the main process's phases (imagestats.metamarks.RUN is 1)

# Milliseconds per operation on Lustre, one client thread (FILESYSTEM-NOTES.md):
# stat ~0.5 ms (about 2,000/s), open 0.3-0.5 ms (0.5 taken), create 0.9-2 ms
# (1.5 taken: "create 1-1.5 ms"), rename 1 ms, unlink 0.55 ms. fstat of an open
# file and a directory listing are taken as one stat's round trip each, a
# mkdir and a hard link as a create, the rest (utimensat, readlink) as a stat:
# the notes give no figure for them.
LUSTRE_MS = {"stat": 0.5, "fstat": 0.5, "open": 0.5, "create": 1.5, "rename": 1.0, "unlink": 0.55,
             "readdir": 0.5, "mkdir": 1.5, "link": 1.5, "other": 0.5}  # fmt: skip
COST_SOURCE = "../shared/FILESYSTEM-NOTES.md (Lustre, one client thread)"


class CompilerMissing(RuntimeError):
    """No C compiler to build the shim with."""


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "imagestats-metacount")


def compiler():
    """The C compiler's path, or None."""
    return shutil.which(os.environ.get("CC") or "cc") or shutil.which("gcc")


def build(folder=None):
    """The shim's shared library, compiled once per version of its source."""
    with open(SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    folder = folder or cache_dir()
    lib = os.path.join(folder, f"metacount-{digest}.so")
    if os.path.exists(lib):
        return lib
    cc = compiler()
    if cc is None:
        raise CompilerMissing(
            "no C compiler (cc, gcc) to build the metadata-counting shim: "
            "apt-get install gcc libc6-dev (or set CC)"
        )
    os.makedirs(folder, exist_ok=True)
    tmp = f"{lib}.tmp{os.getpid()}"
    done = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", tmp, SOURCE, "-ldl"],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{cc} could not build {SOURCE}:\n{done.stderr}")
    os.replace(tmp, lib)
    return lib


def environment(lib, prefix, out, delay=None, trace=None):
    """What a command's environment needs to run behind the shim: paths under
    ``prefix`` are counted, the counts go to folder ``out``; ``delay``: None,
    microseconds per operation, or {kind: microseconds}; ``trace``: a folder
    for a line per operation (read_traces)."""
    os.makedirs(out, exist_ok=True)
    env = {
        "LD_PRELOAD": lib,
        "METACOUNT_PREFIX": os.path.realpath(prefix),
        "METACOUNT_DIR": os.path.abspath(out),
    }
    if trace:
        os.makedirs(trace, exist_ok=True)
        env["METACOUNT_TRACE"] = os.path.abspath(trace)
    if isinstance(delay, dict):
        env["METACOUNT_DELAY"] = ",".join(f"{k}={int(v)}" for k, v in delay.items())
    elif delay:
        env["METACOUNT_DELAY"] = str(int(delay))
    return env


@dataclass
class Process:
    pid: int
    ppid: int
    cmdline: str
    counts: Counter = field(default_factory=Counter)  # (phase, owner, kind) -> n


def read(out):
    """The processes that counted something, by pid (a process that exec'd
    wrote a line per program: their counts are summed, the last command
    line kept, the first one in ``cmdlines``)."""
    processes = {}
    for name in os.listdir(out):
        if not name.endswith(".tsv"):
            continue
        with open(os.path.join(out, name), encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) < 3:
                    continue  # cut short: never written that way (one write per line), but be safe
                pid, ppid = int(parts[0]), int(parts[1])
                p = processes.setdefault(pid, Process(pid, ppid, ""))
                p.cmdline = p.cmdline or (parts[3] if len(parts) > 3 else "")
                for item in parts[2].split(","):
                    key, _, n = item.partition("=")
                    phase, owner, kind = key.split(".", 2)
                    p.counts[int(phase), int(owner), kind] += int(n)
    return processes


# Which job a process belongs to, by the script its command line runs.
JOB_SCRIPTS = {"image_stats.py": "shards", "aggregate_stats.py": "after", "summarize_stats.py": "after"}


def job_of(process, processes):
    """'shards', 'after', 'main' (the Snakemake process) or 'other', by the
    command line, else the parent's."""
    seen = set()
    while process is not None and process.pid not in seen:
        seen.add(process.pid)
        for script, job in JOB_SCRIPTS.items():
            if script in process.cmdline:
                return job
        if " -m snakemake" in process.cmdline or process.cmdline.endswith("/snakemake"):
            return "main"
        process = processes.get(process.ppid)
    return "other"


def attribute(processes):
    """Counts summed by (part, owner name, kind); part is 'plan' (the main
    process before onstart), 'run' (the main process while jobs run),
    'shards', 'after' or 'other'."""
    out = Counter()
    for p in processes.values():
        job = job_of(p, processes)
        for (phase, owner, kind), n in p.counts.items():
            part = ("plan" if phase == PLANNING else "run") if job == "main" else job
            out[part, OWNERS.get(owner, f"owner{owner}"), kind] += n
    return out


def modelled_seconds(counts, costs=LUSTRE_MS):
    """Seconds at ``costs`` (ms per operation) of {kind: n}."""
    return sum(costs.get(kind, 0.5) * n for kind, n in counts.items()) / 1000


def by_kind(totals, part=None, owner=None):
    """{kind: n} of ``attribute()``'s totals, for one part and/or owner."""
    out = Counter()
    for (p, o, kind), n in totals.items():
        if (part is None or p == part) and (owner is None or o == owner):
            out[kind] += n
    return out


def read_traces(folder, processes):
    """Counter of (part, owner name, kind, path) from the trace lines (see
    attribute() for the parts)."""
    out = Counter()
    for name in os.listdir(folder):
        if not name.endswith(".trace"):
            continue
        pid = int(name[: -len(".trace")])
        process = processes.get(pid)
        job = job_of(process, processes) if process else "other"
        with open(os.path.join(folder, name), encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                key, _, path = line.rstrip("\n").partition("\t")
                phase, owner, kind = key.split(".", 2)
                part = ("plan" if int(phase) == PLANNING else "run") if job == "main" else job
                out[part, OWNERS.get(int(owner), f"owner{owner}"), kind, path] += 1
    return out
