"""Counting the Slurm commands a run calls, with shims first on PATH.

Snakemake's Slurm executor submits with `sbatch` and checks job states with
`squeue` or `sacct`; the workflow's plan asks `sacctmgr` and `squeue` for
limits; every Snakemake start (inside the Slurm jobs too) runs `scontrol`.
Each costs the controller a request, and the status checks pace the whole
run. A shim per command, in a folder put first on PATH, appends one line
(time, the Slurm job it runs in or "-", command, arguments) to a log and
execs the real command from /usr/bin: the run behaves exactly as without
them. The PATH reaches the Slurm jobs too (sbatch exports the environment),
so calls made inside jobs are logged and told apart by their job id.
"""

import os
import shlex
import shutil
from dataclasses import dataclass

TOOLS = ("sbatch", "squeue", "sacct", "scontrol", "sacctmgr")
STATUS_TOOLS = ("squeue", "sacct")

_SHIM = """#!/bin/bash
# Written by the imagestats benchmark (bench/slurm_calls.py): log the call, run {tool}.
line="$(date +%s.%N)	${{SLURM_JOB_ID:--}}	{tool}	$*"
printf '%s\\n' "${{line//$'\\n'/ }}" >> {log}
exec {real} "$@"
"""


def install_shims(folder, log):
    """Write the shims into ``folder``; the environment that puts them first on PATH."""
    os.makedirs(folder, exist_ok=True)
    for tool in TOOLS:
        real = f"/usr/bin/{tool}"
        if not os.access(real, os.X_OK):
            real = shutil.which(tool) or real
        path = os.path.join(folder, tool)
        with open(path, "w") as f:
            f.write(_SHIM.format(tool=tool, log=shlex.quote(log), real=shlex.quote(real)))
        os.chmod(path, 0o755)
    env = dict(os.environ)
    env["PATH"] = folder + os.pathsep + env.get("PATH", "")
    return env


@dataclass
class Call:
    time: float  # Unix seconds
    job: str  # the Slurm job id it ran in, or None on the submitting host
    tool: str
    args: str

    @property
    def status_check(self):
        """The executor's job-state query: it filters by the run's id (--name)."""
        return self.tool in STATUS_TOOLS and "--name" in self.args.split()


def read_calls(log):
    calls = []
    try:
        with open(log, errors="replace") as f:
            for line in f:
                parts = line.rstrip("\n").split("\t", 3)
                if len(parts) < 3:
                    continue
                when, job, tool = parts[:3]
                try:
                    when = float(when)
                except ValueError:
                    continue
                calls.append(Call(when, None if job == "-" else job, tool, parts[3] if len(parts) > 3 else ""))
    except OSError:
        pass
    return sorted(calls, key=lambda c: c.time)


@dataclass
class CallCounts:
    calls: list

    def host(self, tool=None):
        """Calls made by the submitting Snakemake (not inside Slurm jobs)."""
        return [c for c in self.calls if c.job is None and (tool is None or c.tool == tool)]

    @property
    def sbatch_times(self):
        return [c.time for c in self.host("sbatch")]

    @property
    def status_queries(self):
        """squeue and sacct calls from the submitting host."""
        return [c for c in self.host() if c.tool in STATUS_TOOLS]

    @property
    def status_checks(self):
        return [c for c in self.status_queries if c.status_check]

    def in_jobs(self):
        return [c for c in self.calls if c.job is not None]

    def describe(self):
        def count(calls):
            found = {}
            for c in calls:
                found[c.tool] = found.get(c.tool, 0) + 1
            return ", ".join(f"{tool} {found[tool]}" for tool in TOOLS if tool in found) or "none"

        return (
            f"Slurm commands from the submitting Snakemake: {count(self.host())} "
            f"({len(self.status_checks)} status checks); inside the Slurm jobs: {count(self.in_jobs())}"
        )
