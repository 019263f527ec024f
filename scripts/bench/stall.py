"""Whether Snakemake starts are waiting for a Slurm controller.

The Slurm executor plugin runs `scontrol show config` (10 s timeout) whenever
Snakemake starts, local runs too. With /etc/slurm/slurm.conf present but no
controller answering (a test cluster on this machine being stopped or
started), every start waits for that timeout, and any phase that saw it
measured the wait rather than the workflow.
"""

import os
import shutil
import subprocess
import time

from .common import banner, say


def slurm_stall():
    """Why every Snakemake start would wait here, or None."""
    conf = os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")
    scontrol = shutil.which("scontrol")
    if not scontrol or not os.path.exists(conf):
        return None  # scontrol fails at once: no wait
    if not controller_up():
        return f"{conf} exists but `scontrol ping` finds no Slurm controller"
    start = time.perf_counter()
    try:
        subprocess.run([scontrol, "show", "config"], capture_output=True, timeout=12)
    except subprocess.TimeoutExpired:
        pass
    took = time.perf_counter() - start
    if took > 0.5:  # a controller coming up or going down answers slowly
        return f"`scontrol show config` took {took:.1f} s (Slurm controller slow or in transition)"
    return None


def controller_up():
    """Whether `scontrol ping` finds the controller UP."""
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return ping.returncode == 0 and "UP" in ping.stdout and "DOWN" not in ping.stdout


class SlurmWatch:
    """Checks for the stall between phases; remembers every phase that saw it."""

    def __init__(self):
        self.problems = []  # (phase, why)

    def check(self, phase):
        why = slurm_stall()
        if why:
            self.problems.append((phase, why))
            say(banner(f"SLURM STALL ({phase}): {why}.",
                       "Every Snakemake start waits ~10 s: TIMINGS ARE INVALID."))  # fmt: skip
        return why

    @property
    def invalid(self):
        return bool(self.problems)

    def summary(self):
        phases = "; ".join(f"{phase}: {why}" for phase, why in self.problems)
        return banner(
            "TIMINGS ARE INVALID: Snakemake starts waited for a missing Slurm controller.", phases
        )
