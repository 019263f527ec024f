"""Images done out of all planned, while a run goes on.

Snakemake counts jobs (shards); a person waiting on 27,000 images wants
images and errors. A ``ProgressMonitor`` looks at the shard tables every few
seconds from a daemon thread in the main Snakemake process and prints one
line when the numbers changed::

    Progress: 12,345 of 27,000 images (45.7%), 3 errors, ~12 s left

It only reads what the jobs leave on the (shared) filesystem, so it works
the same for local and Slurm jobs. A poll costs one directory listing and a
stat per existing table; each finished table is read once (it is cached by
name and mtime) to count its error rows.

A table counts as done when it exists and is not older than its shard list:
the rule's own test of being up to date. Snakemake deletes the outputs of a
job it is about to rerun, so a table it reruns for another reason (changed
params or code) counts as done until its job starts.
"""

import math
import os
import sys
import threading
import time

from .metamarks import own_code
from .table import count_errors


def format_duration(seconds):
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class ProgressMonitor:
    """Counts done images and errors of a plan; see the module doc.

    ``shards`` maps shard name -> number of images; a shard's list is
    ``plan_dir/<lists[name]>`` and its table ``table_dir/<name>.jsonl``.
    """

    def __init__(self, shards, plan_dir, table_dir, out=None, interval=10.0,
                 clock=time.monotonic, lists=None):  # fmt: skip
        self.shards = dict(shards)
        # shard name -> its list's file name in plan_dir
        self.lists = lists or {name: f"{name}.jsonl" for name in self.shards}
        self.total = sum(self.shards.values())
        self.plan_dir = plan_dir
        self.table_dir = table_dir
        self.out = out  # None: sys.stderr at the time of printing
        self.interval = interval
        self.clock = clock
        self._list_mtimes = {}  # name -> mtime_ns; lists do not change during a run
        self._errors = {}  # name -> (table mtime_ns, error rows)
        self._start = None  # (time, images done) when watching began
        self._last_key = None
        self._stop = threading.Event()
        self._thread = None
        self._lock = threading.Lock()  # the thread and stop() may poll at once

    # -------------------------------------------------------------- counting

    def _list_mtime(self, name):
        if name not in self._list_mtimes:
            try:
                st = os.stat(os.path.join(self.plan_dir, self.lists[name]))
            except FileNotFoundError:
                return None  # not cached: the list may yet appear
            self._list_mtimes[name] = st.st_mtime_ns
        return self._list_mtimes[name]

    def poll(self):
        """(images done, errors in done tables, shards done)."""
        try:
            with os.scandir(self.table_dir) as entries:
                # Temporary tables end in .tmp<pid>, so they never match.
                tables = {e.name[: -len(".jsonl")]: e for e in entries if e.name.endswith(".jsonl")}
        except FileNotFoundError:
            tables = {}
        done = errors = shards = 0
        for name, size in self.shards.items():
            entry = tables.get(name)
            if entry is None:
                continue
            try:
                mtime = entry.stat().st_mtime_ns
            except FileNotFoundError:
                continue  # removed since the listing: a job is rerunning it
            listed = self._list_mtime(name)
            if listed is None or mtime < listed:
                continue
            cached = self._errors.get(name)
            if cached is None or cached[0] != mtime:
                try:
                    cached = (mtime, count_errors(entry.path))
                except (OSError, ValueError):
                    continue  # replaced or cut while read: next poll reads it again
                self._errors[name] = cached
            done += size
            errors += cached[1]
            shards += 1
        return done, errors, shards

    def line(self, done, errors, now=None, eta=True):
        now = self.clock() if now is None else now
        # Rounded down: 26,990 of 27,000 must not read 100.0%.
        share = math.floor(1000 * done / self.total) / 10 if self.total else 100.0
        text = (
            f"Progress: {done:,} of {self.total:,} images ({share:.1f}%), "
            f"{errors:,} error{'' if errors == 1 else 's'}"
        )
        if eta and self._start is not None and done < self.total:
            start_time, start_done = self._start
            made, elapsed = done - start_done, now - start_time
            if made > 0 and elapsed > 0:
                text += f", ~{format_duration((self.total - done) * elapsed / made)} left"
        return text

    # -------------------------------------------------------------- printing

    def _print(self, text):
        print(text, file=self.out or sys.stderr, flush=True)

    def update(self, force=False):
        """Poll and print a line if the counts changed since the last one;
        ``force`` (the last line of a run) prints anyway, with the time the
        run took instead of the time left.
        Returns the line printed, or None."""
        with self._lock:
            done, errors, _ = self.poll()
            now = self.clock()
            if self._start is None:
                self._start = (now, done)
            # Compare without the time left, which changes on every poll.
            key = (done, errors)
            if not force and key == self._last_key:
                return None
            self._last_key = key
            text = self.line(done, errors, now, eta=not force)
            if force:
                text += f"; run ended after {format_duration(now - self._start[0])}"
            self._print(text)
            return text

    def _run(self):
        with own_code():  # a thread of the main Snakemake process: its operations are the workflow's
            self._watch()

    def _watch(self):
        try:
            self.update()
            while not self._stop.wait(self.interval):
                self.update()
        except Exception as e:  # progress must never break the run it watches
            self._print(f"Progress: monitor stopped ({type(e).__name__}: {e})")

    def start(self):
        """Watch from a daemon thread (it cannot keep Snakemake alive)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
            self._thread.start()
        return self

    def stop(self, final=True):
        """Stop watching and, with ``final``, print the last line once more."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None
        if final:
            try:
                return self.update(force=True)
            except Exception as e:  # at the end of a run, as in the thread
                self._print(f"Progress: cannot count ({type(e).__name__}: {e})")
        return None
