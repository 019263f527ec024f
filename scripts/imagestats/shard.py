"""Measure one shard: every image of a shard list, with one or more processes.

Writes one JSON stats file per image under ``images_dir`` (mirroring the
image's path; optional), the shard's rows as stats.csv lines in path order
(for aggregate_stats) and, last, the shard's table: the same JSON lines,
in the list's order. The shard's outputs are written under a temporary
name and renamed, so a kill never leaves a half-written one. A per-image
file is written in place, before the journal records its row: a kill can
cut short only the file of the image it was on, which the rerun measures
again and rewrites.

Work is journaled (imagestats.journal): a rerun of a shard, after a kill or
because an image was added or changed, reuses every row whose image is
unchanged and measures only the rest, and leaves the per-image files of
reused rows alone. An image that a measuring process died on twice (a
decoder crash, the OOM killer) gets an error row instead of a third try;
an image died on once is measured again in a process of its own, so that
a second death is caught without losing the shard.

With ``workers`` > 1 the images are measured by that many processes
(largest first, so no process is left with a big image at the end); the
table and per-image files are the same as with one.

One job per shard at a time: the shard's lock (imagestats.lock) is taken
before the journal is read and held until the table is written and the
journal kept; a second job on the shard waits for it, then reuses its rows.

A stop signal (SIGTERM, SIGINT, SIGHUP: a cancelled, timed-out, preempted
or requeued Slurm job, scancel, Ctrl-C) is no image's fault: the measuring
processes take back the start of the image they were on and exit, the main
process stops them (noting in their journals which image each was stopped
on, for one that cannot take it back itself) and raises pool.Stopped; no
table is written, and no image counts a death. Only a process that dies
on its own (a decoder crash, the OOM killer, a SIGKILL with no stop signal
before it) counts one.
"""

import errno
import json
import os
import resource
import signal
import time

from . import journal, pool
from .analysis import AnalysisError, load, save_png, version
from .atomic import remove_if_present, replaced
from .command import CommandAnalysis, CommandError
from .command import version as command_version
from .lock import shard_lock
from .measure import configure
from .names import escape
from .plan import read_plan_index, read_shard_list, stats_file_key
from .statscsv import shard_csv_text
from .table import encode_row, has_error

DIED = (
    "the measuring process died on this image in {n} attempts (a decoder crash "
    "or out of memory): check the file; if it is fine, give image_stats more "
    "memory (mem_mb) and delete {journal} to measure it again"
)

TIMED_OUT = (
    "took longer than image_timeout ({seconds:g} s), so its process was stopped: check "
    "the file; if it is fine, raise image_timeout in the config and delete {journal} "
    "to measure it again"
)

# errno values that mean "the results folder cannot take more", whatever
# the image: the shard stops with one line instead of a traceback.
_STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class ImageFailed(Exception):
    """Raised with on_error=fail: the message names the file."""


class StorageFailed(Exception):
    """The results folder cannot be written; the message says what to do."""


class WorkerDied(Exception):
    """A measuring process of the pool died; a rerun goes on from the journal."""


def stats_file(images_dir, shown_path):
    return os.path.join(images_dir, stats_file_key(shown_path) + ".json")


def write_atomic(file, data):
    """Write ``data`` (bytes) to ``file`` under a temporary name, then rename."""
    with replaced(file) as tmp:
        write_in_place(tmp, data, name=file)


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


def write_in_place(file, data, name=None, make_folder=False):
    """Write ``data`` (bytes) to ``file``; a failed write leaves no file.

    os.open and os.write rather than open(), which adds an fstat, an isatty
    ioctl and two buffer objects per file (5% of a shard's time per image).
    Errors name ``name`` (default: ``file``), so a message names the full
    folder. ``make_folder``: make the file's folder if the create says it is
    missing (ENOENT), and create again: a create and nothing else per file
    when the folder exists, where a makedirs first costs a mkdir and a stat
    (round trips to the metadata server on Lustre or NFS).
    """
    fd = -1
    try:
        try:
            try:
                fd = os.open(file, _CREATE, 0o666)
            except FileNotFoundError:
                if not make_folder:
                    raise
                os.makedirs(os.path.dirname(file), exist_ok=True)
                fd = os.open(file, _CREATE, 0o666)
            if os.write(fd, data) < len(data):  # short only when the disk is full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except BaseException as e:
            # A failed write, or a stop signal (pool.Stopped), which Python
            # raises as the call it came during returns: after os.open too,
            # with the file made and fd not yet set. No file is left, also
            # when the stop comes during this cleanup (a full disk stops the
            # shard, and its other processes, mid-write too, get SIGTERM).
            with pool.stop_signals_held():
                if fd >= 0:
                    os.close(fd)
                if fd >= 0 or not isinstance(e, OSError):
                    remove_if_present(file)
            raise
        os.close(fd)
    except OSError as e:
        if e.filename is None or name is not None:
            raise OSError(e.errno, e.strerror, name or file) from None
        raise


def _row_line(entry, row):
    """The table line of a row; size and mtime_ns say which version of the
    image file it describes, so a rerun can tell an unchanged image."""
    row["path"] = escape(entry.path)
    row["class"] = escape(row["class"])
    row["size"] = entry.size
    row["mtime_ns"] = entry.mtime_ns
    return encode_row(row)


class ImageFiles:
    """The per-image files under ``images_dir`` (None: none are written) and
    the images an analysis returns, as PNGs under ``transformed_dir``."""

    def __init__(self, images_dir, transformed_dir=None):
        self.images_dir = images_dir
        self.transformed_dir = transformed_dir
        self.made = set()  # one makedirs per folder, not per image

    def write(self, shown, line):
        """The file of an image the journal does not hold yet: in place, a
        rename less per image (about a tenth of a 64x64 JPEG's time, and on
        a parallel filesystem one metadata operation less), its folder made
        only if the create finds it missing: one create per image, nothing
        else."""
        out = self._path(shown)
        if out is not None:
            write_in_place(out, self._data(line), make_folder=True)

    def restore(self, shown, line):
        """The file of a row the journal holds, if it is missing (deleted
        since): atomically, since the journal already vouches for it."""
        out = self._path(shown)
        if out is not None and not os.path.exists(out):
            self._folder(out)
            write_atomic(out, self._data(line))

    def save_image(self, shown, column, image):
        """Save an image an analysis returned for ``column`` as a PNG (in
        place, before the journal holds its row, like the per-image file);
        returns its path, which the row holds. A full or read-only disk
        stops the shard; an image PNG cannot hold is the row's error."""
        out = transformed_file(self.transformed_dir, column, shown)
        self._folder(out)
        save_png(image, out, column)
        return out

    def _path(self, shown):
        if self.images_dir is None:
            return None
        return stats_file(self.images_dir, shown)

    def _folder(self, out):
        folder = os.path.dirname(out)
        if folder not in self.made:
            os.makedirs(folder, exist_ok=True)
            self.made.add(folder)

    @staticmethod
    def _data(line):
        return (line + "\n").encode("utf-8", "surrogateescape")


def transformed_file(transformed_dir, column, shown_path):
    """Where the image an analysis returned for ``column`` goes: the input
    tree mirrored under <transformed_dir>/<column>/, ".png" added to the name."""
    return os.path.join(transformed_dir, column, stats_file_key(shown_path) + ".png")


def remove_image_files(shown, images_dir, transformed_dir):
    """The per-image file and the transformed images of an image that left
    the plan (one unlink per column folder)."""
    if images_dir is not None:
        remove_if_present(stats_file(images_dir, shown))
    if transformed_dir is not None:
        try:
            columns = os.listdir(transformed_dir)
        except FileNotFoundError:
            return
        for column in columns:
            remove_if_present(transformed_file(transformed_dir, column, shown))


class Measurer:
    """Measures images in one process: the journal's start, then the files,
    then the row in the journal (which vouches for the files)."""

    def __init__(self, journal_dir, shard, key, images_dir, analysis, transformed_dir=None):
        self.journal = journal.ProcessJournal(journal_dir, shard, key)
        self.files = ImageFiles(images_dir, transformed_dir)
        self.analysis = analysis

    def __call__(self, entry):
        shown = escape(entry.path)
        try:
            self.journal.start(shown)
            row = self.analysis.row(
                entry.path, entry.file, lambda column, image: self.files.save_image(shown, column, image)
            )
            line = _row_line(entry, row)
            self.files.write(shown, line)
            self.journal.write(line + "\n")
        except BaseException:
            # Not the image's fault (a full disk, a stop signal, wherever
            # it came): take the start back, so no later attempt counts it
            # as a death; a row already written stays.
            self.journal.take_back()
            raise
        return line

    def record(self, entry, error):
        """An error row this process writes for an image another process
        was on (it died, or ran past the time limit)."""
        line = _error_line(entry, error)
        self.files.write(escape(entry.path), line)
        self.journal.write(line + "\n")
        return line


def _error_line(entry, error):
    row = {"path": entry.path, "class": os.path.basename(os.path.dirname(entry.file)),
           "error": error, "note": ""}  # fmt: skip
    return _row_line(entry, row)


def _died_line(entry, deaths, journal_folder):
    return _error_line(entry, DIED.format(n=deaths, journal=journal_folder))


def run_shard(list_file, table_file, images_dir, on_error, max_image_pixels, log,
              root=None, workers=1, journal_dir=None, started=None, csv_file=None,
              analysis="brightness", image_timeout=600.0, transformed_dir=None, command=None):  # fmt: skip
    """Measure the images listed in ``list_file``; return (images, errors).

    ``root`` is the folder the list's paths are relative to (default: the
    plan index beside the list). ``images_dir`` None writes no per-image
    files. ``journal_dir`` defaults to a ``journal`` folder beside the
    table's folder. Errors are recorded in the rows, or with
    on_error="fail" raise ImageFailed at the first bad image. ``started``
    (Unix time) is when the command began, for the log's clock line.
    ``csv_file``: where to write the rows as stats.csv lines too (for
    aggregate_stats), before the table; None: nowhere. ``analysis``: the
    config value naming the analysis (imagestats.analysis), loaded here
    once, before the measuring processes fork. ``image_timeout``: seconds
    an image may take. ``transformed_dir``: where images the analysis
    returns are saved (default: a ``transformed`` folder beside the
    table's folder). ``command``: a command template to run per image
    instead of an analysis (imagestats.command).
    """
    started = time.time() if started is None else started
    with pool.stop_signals():  # SIGTERM, SIGINT, SIGHUP raise pool.Stopped
        return _run_shard(list_file, table_file, images_dir, on_error, max_image_pixels, log, root, workers,
                          journal_dir, started, csv_file, analysis, image_timeout, transformed_dir, command)  # fmt: skip


def _run_shard(list_file, table_file, images_dir, on_error, max_image_pixels, log, root, workers,
               journal_dir, started, csv_file, analysis, image_timeout, transformed_dir, command):  # fmt: skip
    configure(max_image_pixels)
    if root is None:
        root = read_plan_index(os.path.dirname(os.path.abspath(list_file)))["root"]
    table_dir = os.path.dirname(os.path.abspath(table_file))
    journal_dir = journal_dir or os.path.join(os.path.dirname(table_dir), "journal")
    if transformed_dir is None:
        transformed_dir = os.path.join(os.path.dirname(table_dir), "transformed")
    shard = os.path.basename(table_file)[: -len(".jsonl")]
    if command:
        chosen = CommandAnalysis(command, image_timeout)
        key = journal.measure_key(command_version(command), max_image_pixels)
    else:
        chosen = load(analysis)
        key = journal.measure_key(version(analysis), max_image_pixels)
    entries = read_shard_list(list_file, root)
    measuring = (journal_dir, shard, key, images_dir, chosen, transformed_dir)
    try:
        with shard_lock(journal_dir, shard, log):  # before the journal is read, until it is kept
            earlier = journal.load(journal_dir, shard, key)
            return _run(entries, earlier, table_file, csv_file, on_error, log, workers,
                        measuring, started, image_timeout + chosen.grace)  # fmt: skip
    except OSError as e:
        if e.errno not in _STORAGE_ERRORS:
            raise
        where = os.path.abspath(e.filename or table_dir)
        raise StorageFailed(
            f"cannot write '{where}': {e.strerror}. Free space and inodes on the "
            "filesystem of the results folder (df -h, df -i), or make it writable, "
            "then rerun: every image measured so far is kept."
        ) from None


def _run(entries, earlier, table_file, csv_file, on_error, log, workers, measuring, started, image_timeout):
    journal_dir, shard, key, images_dir, _, transformed_dir = measuring
    lines = [None] * len(entries)
    todo, suspects = [], []
    first = None
    journal_folder = os.path.join(journal_dir, shard)
    check_images = os.path.isdir(transformed_dir)
    for i, entry in enumerate(entries):
        shown = escape(entry.path)
        hit = earlier.rows.get(shown)
        if hit is not None and hit[0] == entry.size and hit[1] == entry.mtime_ns:
            if check_images and not _images_present(hit[2], shown, transformed_dir):
                todo.append(i)  # a transformed image deleted since: made again
            else:
                lines[i] = hit[2]
        elif earlier.deaths.get(shown, 0) >= 2:
            lines[i] = _died_line(entry, earlier.deaths[shown], journal_folder)
        elif earlier.deaths.get(shown):
            suspects.append(i)
        else:
            todo.append(i)
    kept = len(entries) - len(todo) - len(suspects)
    files = ImageFiles(images_dir)
    for i, line in enumerate(lines):
        if line is not None:
            if on_error == "fail" and has_error(line):
                _fail(entries[i], line)  # before measuring anything
            files.restore(escape(entries[i].path), line)  # a file deleted since

    if todo or suspects:
        first = time.time()
        _measure(entries, todo, suspects, lines, earlier, on_error, workers, measuring, image_timeout)
    last = time.time()
    if csv_file is not None:
        write_atomic(csv_file, shard_csv_text(lines).encode("utf-8", "surrogateescape"))
    _write_table(table_file, lines)
    journal.keep(journal_dir, shard, key, table_file)
    _remove_files_of_removed_images(earlier.own_kept, entries, images_dir, transformed_dir)
    errors = 0
    for line in lines:
        if has_error(line):
            errors += 1
            row = json.loads(line)
            print(f"{row['path']}: {row['error']}", file=log)
    measured = len(todo) + len(suspects)
    seconds = (last - first) if first else 0.0
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024  # fmt: skip
    print(
        f"image_stats: {len(entries)} images ({measured} measured, {kept} kept), {errors} errors "
        f"in {seconds:.2f} s ({1000 * seconds / max(1, measured):.3f} ms/image), "
        f"{workers if measured > 1 else 1} process(es), peak {peak:.0f} MB; "
        f"clock: start {started:.3f} first {first or last:.3f} last {last:.3f}",
        file=log,
    )
    return len(entries), errors


def _images_present(line, shown, transformed_dir):
    """Whether every transformed image a kept row names still exists."""
    for column, value in json.loads(line).items():
        if type(value) is str and value == transformed_file(transformed_dir, column, shown):
            if not os.path.exists(value):
                return False
    return True


_worker = None  # the Measurer of a measuring process


def _measure(entries, todo, suspects, lines, earlier, on_error, workers, measuring, image_timeout):
    """Measure entries[i] for i in suspects, each alone in a process of its
    own (so a second death is caught and kept apart), then for i in todo
    with ``workers`` processes, into ``lines``."""
    journal_dir, shard = measuring[:2]
    journal_folder = os.path.join(journal_dir, shard)
    here = Measurer(*measuring)  # writes the rows of images a process died on or ran too long on

    def start():
        global _worker
        _worker = Measurer(*measuring)

    def measure(i):
        return _worker(entries[i])

    def done(i, line):
        lines[i] = line
        if on_error == "fail" and has_error(line):
            _fail(entries[i], line)

    def timed_out(i):
        return here.record(entries[i], TIMED_OUT.format(seconds=image_timeout, journal=journal_folder))

    def died_alone(i, status):
        deaths = earlier.deaths[escape(entries[i].path)] + 1
        return here.record(entries[i], DIED.format(n=deaths, journal=journal_folder))

    def died_in_pool(i, status):
        raise WorkerDied(
            f"a measuring process of {shard} died (killed, or a decoder crash): "
            "rerun; the images measured so far are kept, and the ones it was on are "
            "measured alone next time"
        )

    def abandon(pid, held):  # the shard stops process pid holding these: not their images' fault
        journal.mark_stopped(journal_dir, shard, pid, [escape(entries[i].path) for i in held])

    try:
        for i in suspects:
            pool.run([i], 1, start, measure, done, timed_out, died_alone, image_timeout, abandon=abandon)
        if todo:
            if workers > 1:  # largest first, so no process is left with a big image at the end
                todo = sorted(todo, key=lambda i: -entries[i].size)
            average = sum(entries[i].size for i in todo) / len(todo)
            # Small images: chunks, so the hand-over costs less than the image;
            # big ones one at a time, so the processes finish together.
            if average > 1_000_000 or measuring[4].one_at_a_time:
                chunk = 1
            else:
                chunk = max(1, min(64, len(todo) // (workers * 8)))
            pool.run(todo, workers, start, measure, done, timed_out, died_in_pool, image_timeout, chunk, abandon)
    finally:
        here.journal.close()


def _remove_files_of_removed_images(own_kept, entries, images_dir, transformed_dir):
    """Per-image files and transformed images of images this shard held
    last time and holds no more.

    A shard's name fixes the range of path hashes it holds, so an image
    that left it has left the plan (see imagestats.plan)."""
    if images_dir is None and not os.path.isdir(transformed_dir):
        return
    current = {escape(e.path) for e in entries}
    for shown in own_kept:
        if shown not in current:
            remove_image_files(shown, images_dir, transformed_dir)


def _write_table(table_file, lines):
    write_atomic(table_file, "".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape"))


def _fail(entry, line):
    row = json.loads(line)
    raise ImageFailed(
        f"cannot measure '{row['path']}' ({escape(entry.file)}): {row['error']}. "
        "Fix or remove the file, or set on_error: record to record "
        "the error in stats.csv and go on."
    )


# How image_stats.py starts the one line it writes to its log when it stops
# (the main process looks for it to say on the terminal what went wrong).
FATAL = "image_stats: stopped: "

# The exceptions image_stats.py turns into that line.
SHARD_ERRORS = (ImageFailed, StorageFailed, WorkerDied, AnalysisError, CommandError)

# Raised by run_shard on a stop signal (see the module doc).
Stopped = pool.Stopped


def stopped_line(stopped, table_file):
    """What image_stats.py says when a stop signal ended the shard."""
    shard = os.path.basename(table_file)[: -len(".jsonl")]
    return (
        f"{FATAL}{shard} got {signal.Signals(stopped.signum).name} (its job was cancelled, timed out, "
        "preempted or interrupted): every image measured so far is kept and none is counted as "
        "failed; rerun to go on"
    )
