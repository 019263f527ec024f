"""Measuring one command: wall time, user and system CPU, peak memory.

Every command (Snakemake, the baseline pool) runs as a child process and is
measured the same way, so that their figures compare: wall time from our own
clock, CPU from the rusage of the whole process tree, peak RSS of the largest
single process in the tree (GNU time's %M, or os.wait4's ru_maxrss, which
are that same number).
"""

import os
import signal
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field

from .common import mb

# GNU time reports the peak RSS of the largest process in the command's tree, as
# os.wait4 does; without it (Debian package `time` missing) we use os.wait4 directly.
TIME_BIN = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
PEAK_RSS_SOURCE = "/usr/bin/time %M" if TIME_BIN else "os.wait4"


class CommandFailed(Exception):
    """A measured command exited non-zero; the message has its log's tail."""

    def __init__(self, message, log_path, tail):
        super().__init__(message)
        self.log_path = log_path
        self.tail = tail


@dataclass
class Run:
    wall: float  # seconds
    rss_kb: int  # peak RSS of the largest process in the command's tree
    started: float = 0.0  # time.time() at the start, to place the jobs' files in the run
    # CPU seconds of the whole process tree: system time that jumps while wall
    # time does shows slow file creation (see context.QUIET_AFTER_DELETE_S).
    user: float = 0.0
    system: float = 0.0

    @property
    def ended(self):
        return self.started + self.wall

    def describe(self):
        return (
            f"{self.wall:.2f} s (CPU: user {self.user:.2f} s, system {self.system:.2f} s), "
            f"{mb(self.rss_kb):.0f} MB"
        )


@dataclass
class Series:
    """Repeated measurements of one command on one tree."""

    label: str
    images: int
    runs: list = field(default_factory=list)

    @property
    def median(self):
        return statistics.median(r.wall for r in self.runs)

    @property
    def best(self):
        return min(r.wall for r in self.runs)

    @property
    def peak_mb(self):
        return mb(max(r.rss_kb for r in self.runs))

    @property
    def s_per_1000(self):
        return 1000 * self.median / self.images

    @property
    def system_ms_per_image(self):
        """System CPU per image of the median run: mostly creating files."""
        return 1000 * statistics.median(r.system for r in self.runs) / self.images

    def describe(self):
        walls = ", ".join(f"{r.wall:.2f}" for r in self.runs)
        return (
            f"{self.label}: median {self.median:.2f} s, best {self.best:.2f} s "
            f"(runs: {walls}), peak RSS {self.peak_mb:.0f} MB"
        )


def _kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def run_measured(cmd, cwd, log_path, env=None, timeout=None):
    """Run cmd in cwd, output to log_path; its Run (wall, CPU, peak RSS).

    Wall time comes from our own clock (finer than GNU time's 10 ms); peak RSS
    from /usr/bin/time, or os.wait4's rusage of the child when time is missing.
    With ``timeout`` (seconds) the command runs in its own process group, which
    is terminated when the time is up. Raises CommandFailed on a non-zero exit.
    """
    os.makedirs(cwd, exist_ok=True)
    stats_path = log_path + ".time"
    if TIME_BIN:
        cmd = [TIME_BIN, "-f", "%e,%M", "-o", stats_path, *cmd]
    # Write back what earlier runs left dirty, so that writeback does not land
    # in this measurement.
    os.sync()
    timer = None
    with open(log_path, "wb") as log:
        started, start = time.time(), time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=timeout is not None,
        )  # fmt: skip
        if timeout is not None:
            timer = threading.Timer(timeout, _kill_group, (proc.pid,))
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C: the group does not get it from the terminal
            if timer:
                _kill_group(proc.pid)
            raise
        finally:
            if timer:
                timer.cancel()
        wall = time.perf_counter() - start
    proc.returncode = code = os.waitstatus_to_exitcode(status)  # Popen must not wait again
    if code != 0:
        with open(log_path, errors="replace") as f:
            tail = "".join(f.readlines()[-25:])
        why = f"timed out after {timeout:.0f} s" if timeout and wall >= timeout else f"exit {code}"
        raise CommandFailed(f"{why}: {' '.join(cmd)}\n(log {log_path})\n{tail}", log_path, tail)
    rss_kb = usage.ru_maxrss
    if TIME_BIN:
        with open(stats_path) as f:
            rss_kb = int(f.read().strip().splitlines()[-1].split(",")[1])
    return Run(wall, rss_kb, started, usage.ru_utime, usage.ru_stime)
