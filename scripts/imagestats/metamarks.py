"""Marks for the benchmark's metadata-counting shim (scripts/bench/metacount.c).

The shim counts every stat, open, create ... a process makes under a folder.
To tell the workflow's own operations from Snakemake's, the workflow marks
where its code runs: ``own_code()`` around the code the main Snakemake
process runs for the workflow (the plan, the storage check, the hooks, the
progress thread), ``own_process()`` in the workflow's job scripts, and
``running()`` in onstart (what the main process does from there on is the
run, not the plan). Unmarked operations are Snakemake's (scripts/bench/
metacount.py says why that split).

Without the shim (METACOUNT_PREFIX unset: every normal run) each call costs
an environment lookup, once, and nothing else.
"""

import os
from contextlib import contextmanager

OWN = 1  # the workflow's own code; 0 (unmarked) is Snakemake's
RUN = 1  # the main process's phase once jobs start; 0 is planning

_lib = False  # not looked up yet


def _shim():
    global _lib
    if _lib is False:
        _lib = None
        if os.environ.get("METACOUNT_PREFIX") and "metacount" in os.environ.get("LD_PRELOAD", ""):
            import ctypes

            try:
                lib = ctypes.CDLL(None)
                lib.metacount_set_owner  # raises AttributeError without the shim
                _lib = lib
            except (OSError, AttributeError):
                pass
    return _lib


@contextmanager
def own_code():
    """Within: this thread's operations are the workflow's."""
    lib = _shim()
    if lib is None:
        yield
        return
    before = lib.metacount_set_owner(OWN)
    try:
        yield
    finally:
        lib.metacount_set_owner(before)


def own_process():
    """Every operation of this process (and the ones it forks) from now on is
    the workflow's."""
    lib = _shim()
    if lib is not None:
        lib.metacount_set_process_owner(OWN)


def running():
    """The main process starts running jobs: no longer planning."""
    lib = _shim()
    if lib is not None:
        lib.metacount_set_phase(RUN)
