"""What every part of the benchmark shares: where things are, how to print,
and what machine and software a set of figures was measured on."""

import os
import platform
import subprocess
import sys
from datetime import datetime
from importlib import metadata

BENCH = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.dirname(BENCH)
REPO = os.path.dirname(SCRIPTS)
SNAKEFILE = os.path.join(REPO, "Snakefile")
CONFIGFILE = os.path.join(REPO, "config", "config.yaml")
COMET_PROFILE = os.path.join(REPO, "profiles", "comet")


def say(*parts):
    """Print at once: a benchmark runs for minutes and is watched while it does."""
    print(*parts, flush=True)


def banner(*lines):
    """A block nobody scrolls past: for anything that invalidates figures."""
    bar = "!" * 78
    return "\n".join([bar, *(f"!!! {line}" for line in lines), bar])


def mb(kib):
    """ru_maxrss and GNU time's %M are in KiB; targets are in MB."""
    return kib * 1024 / 1e6


def machine_lines():
    """Date, CPU and load: figures from a busy or different machine differ."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    usable = len(os.sched_getaffinity(0))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"date: {datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"machine: nproc {usable} (cpu_count {os.cpu_count()}), CPU {model}, load average {load}",
    ]


def version_lines(peak_rss_source):
    """Versions and the commit measured: other people edit the workflow while
    we measure, so the figures must say which code they belong to."""

    def version(dist):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    dists = ("snakemake", "pillow", "pandas", "numpy", "snakemake-executor-plugin-slurm")
    found = ", ".join(f"{d} {version(d)}" for d in dists)
    lines = [f"versions: python {platform.python_version()} ({sys.executable}), {found}"]
    git = ["git", "-C", REPO]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "Snakefile", "scripts", "config", "envs", "profiles"],
        capture_output=True, text=True,
    ).stdout.split("\n")  # fmt: skip
    ours = ("scripts/benchmark.py", "scripts/bench/", "scripts/make_heavy_tree.py")
    dirty = [line[3:] for line in dirty if line.strip() and not line[3:].startswith(ours)]
    lines.append(
        f"workflow: {REPO} at {head.stdout.strip() or '?'}"
        + (f", with local changes to {', '.join(dirty)}" if dirty else "")
    )
    lines.append(f"peak RSS from {peak_rss_source} (largest single process of each command, not a sum)")
    return lines
