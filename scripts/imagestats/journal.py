"""What a shard keeps of its work, so a killed or rerun shard redoes only what it must.

Snakemake deletes a job's output before it runs the job again, and a shard
killed half-way (kill -9, the OOM killer, a Slurm TIMEOUT or a lost node)
leaves no table. So each shard keeps its work beside the table, under
``<journal_dir>/<shard>/``:

- ``kept-<key>.jsonl``: a hard link to the shard's last complete table
  (when Snakemake deletes the table, the link keeps the rows);
- ``<pid>@<host>.jsonl``: one file per measuring process of an attempt
  that did not finish: ``["key", key]``, then for each image
  ``["start", path]`` before measuring it and its row (the table line)
  after. The host is in the name because two nodes writing to one shared
  results folder can run processes with the same pid; files of older
  versions (``<pid>.jsonl``) are read the same way. A pid the kernel hands
  out again on the same host appends to the same file: its own ``key``
  line starts a new attempt within it;
- ``lock``: the shard's lock (imagestats.lock), never deleted.

A row is reused when its image is unchanged (same size and mtime) and it
was measured under the same ``key`` (the analysis, the measuring code and
max_image_pixels, see ``measure_key``). A ``start`` with no row after it in
its process's file is an image that process died on; an image died on in two
attempts is not measured a third time. A shard reads the folders of its
trie ancestors and descendants too (a shard that split, merged, or changed
size between local and Slurm runs), so their rows are reused as well.
Lines cut short by a kill are skipped: nothing half-written is trusted.

A process stopped for a reason that is not its image's fault (SIGTERM,
SIGINT or SIGHUP: a cancelled, timed-out, preempted or requeued job, a
Ctrl-C; or the shard stopping its other processes after one failed) takes
its ``start`` back (``ProcessJournal.take_back``) before it exits, so that
nothing counts it as a death. For a process that gets no chance to (stuck
in C code until the SIGKILL that follows), the shard's main process first
appends ``["stopped", path]`` to that process's file for each image it
holds (``mark_stopped``), which cancels a ``start`` of that path before it.
"""

import errno
import json
import os
import re
import shutil
import socket
from dataclasses import dataclass, field


LOCK_FILE = "lock"  # the shard's lock (imagestats.lock): never removed while the shard exists


def measure_key(analysis_version, max_image_pixels):
    """What a row was measured under: the analysis and the workflow's
    measuring code (imagestats.analysis.version), and the pixel limit."""
    return f"{analysis_version}-{max_image_pixels}"


@dataclass
class Earlier:
    """What earlier attempts left: rows by shown path, deaths by shown path."""

    rows: dict = field(default_factory=dict)  # path -> (size, mtime_ns, line)
    deaths: dict = field(default_factory=dict)  # path -> attempts that died on it
    own_kept: list = field(default_factory=list)  # paths of this shard's last table


def _bits(shard):
    return "" if shard == "shard-all" else shard[len("shard-") :]


def related(shard, other):
    """Whether ``other`` is ``shard``, or its trie ancestor or descendant."""
    a, b = _bits(shard), _bits(other)
    return other.startswith("shard-") and (a.startswith(b) or b.startswith(a))


def _read_lines(file):
    try:
        with open(file, encoding="utf-8", errors="surrogateescape") as f:
            return f.read().split("\n")
    except FileNotFoundError:
        return []


def _row(line):
    """(path, size, mtime_ns) of a table line, or None if it is cut short."""
    try:
        row = json.loads(line)
        return row["path"], row["size"], row["mtime_ns"]
    except (ValueError, KeyError, TypeError):
        return None


def rows_of(kept_file):
    """The shown paths of a kept table."""
    paths = []
    for line in _read_lines(kept_file):
        found = _row(line) if line else None
        if found:
            paths.append(found[0])
    return paths


def load(journal_dir, shard, key):
    """Earlier work of ``shard`` and its ancestors and descendants."""
    earlier = Earlier()
    try:
        folders = [name for name in os.listdir(journal_dir) if related(shard, name)]
    except FileNotFoundError:
        return earlier
    # Own folder last, so its rows (the newest for these images) win.
    folders.sort(key=lambda name: name == shard)
    for name in folders:
        folder = os.path.join(journal_dir, name)
        for file in sorted(os.listdir(folder)):
            if not file.endswith(".jsonl"):
                continue
            lines = _read_lines(os.path.join(folder, file))
            if file.startswith("kept-"):
                if file != f"kept-{key}.jsonl":
                    continue  # measured by other code or another pixel limit
                for line in lines:
                    found = _row(line) if line else None
                    if found:
                        earlier.rows[found[0]] = (found[1], found[2], line)
                        if name == shard:
                            earlier.own_kept.append(found[0])
            else:
                _read_process_journal(lines, key, earlier)
    return earlier


def _read_process_journal(lines, key, earlier):
    own_key = json.dumps(["key", key])
    usable = False  # another key: its deaths still count, its rows do not
    pending = None
    for line in lines:
        if line.startswith('["start", '):
            pending = _path_of(line)
        elif line.startswith("{"):
            found = _row(line)
            if found:
                if usable:
                    earlier.rows[found[0]] = (found[1], found[2], line)
                if found[0] == pending:
                    pending = None
        elif line.startswith('["stopped", '):
            if _path_of(line) == pending:
                pending = None  # stopped by the shard, not by its image
        elif line.startswith('["key", '):  # the first line, or a process with a pid used again
            if pending is not None:
                _died(earlier, pending)
            pending = None
            usable = line == own_key
    if pending is not None:
        _died(earlier, pending)


def _path_of(line):
    """The path of a start or stopped line, or None if it is cut short."""
    try:
        return json.loads(line)[1]
    except (ValueError, IndexError, TypeError):
        return None


def _died(earlier, path):
    earlier.deaths[path] = earlier.deaths.get(path, 0) + 1


def _host():
    """This machine's name as a file name can hold it."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())
    return name or "unknown-host"


HOST = _host()


def process_file(journal_dir, shard, pid):
    """The journal file of process ``pid`` of this host."""
    return os.path.join(journal_dir, shard, f"{pid}@{HOST}.jsonl")


def _start_line(shown_path):
    return '["start", ' + json.dumps(shown_path, ensure_ascii=False) + "]\n"


def mark_stopped(journal_dir, shard, pid, shown_paths):
    """Note in the journal of measuring process ``pid`` (of this host) that
    the shard stopped it while it held ``shown_paths`` (the one it is on is
    among them: the main process may not have read the results of the
    first ones yet): a start of one of them before these lines is not a
    death, even if the process gets no chance to take it back itself. Best
    effort: one append (O_APPEND, so it lands after what the process
    wrote), if the file exists."""
    try:
        fd = os.open(process_file(journal_dir, shard, pid), os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except OSError:
        return  # the process had not opened its journal yet: it started nothing
    lines = "".join('["stopped", ' + json.dumps(path, ensure_ascii=False) + "]\n" for path in shown_paths)
    try:
        os.write(fd, lines.encode("utf-8", "surrogateescape"))
    except OSError:
        pass
    finally:
        os.close(fd)


class ProcessJournal:
    """The journal file of one measuring process (appends only: a kill
    can cut at most the last line, which load() then skips)."""

    def __init__(self, journal_dir, shard, key):
        folder = os.path.join(journal_dir, shard)
        os.makedirs(folder, exist_ok=True)
        self.file = process_file(journal_dir, shard, os.getpid())
        self.fd = os.open(self.file, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666)
        # Offsets in the file. Not 0: an earlier process of this host with
        # this pid may have left the file (it is appended to), and its last
        # line may be cut short, which must not swallow this key line.
        self.size = os.lseek(self.fd, 0, os.SEEK_END)
        cut = self.size > 0 and os.pread(self.fd, 1, self.size - 1) != b"\n"
        self.write(("\n" if cut else "") + json.dumps(["key", key]) + "\n")
        self.mark = self.size  # where the last start line begins (see take_back)

    def write(self, text):
        data = text.encode("utf-8", "surrogateescape")
        try:
            done = os.write(self.fd, data)
        except OSError as e:
            raise OSError(e.errno, e.strerror, self.file) from None
        self.size += done
        if done < len(data):  # only a full disk writes short to a regular file
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.file)

    def start(self, shown_path):
        """Note that this process starts on an image (take_back() takes it
        back if the image's row does not follow)."""
        self.mark = self.size
        self.write(_start_line(shown_path))

    def take_back(self):
        """Cut off the last start if its row is not complete after it (and
        anything cut short): for a stop that is not the image's fault (a
        signal, a full disk). Safe wherever the process was interrupted:
        it goes by what the file holds, not by what this process believes
        it wrote, so a row already written stays and a line cut short
        goes. Never raises (it runs on the way out)."""
        try:
            end = os.lseek(self.fd, 0, os.SEEK_END)
            if end <= self.mark:
                return
            base = self.mark - 1 if self.mark > 0 else 0
            data = os.pread(self.fd, end - base, base)
            pos = 0
            if self.mark > 0:
                # From the first line that begins at or after the mark (the
                # main process may have appended a stopped line, so the
                # mark can lie inside a line).
                pos = data.find(b"\n") + 1
                if pos == 0:
                    return
            cut = pending = None
            while pos < len(data):
                newline = data.find(b"\n", pos)
                if newline < 0:  # cut short: nothing from here is trusted
                    if cut is None:
                        cut = pos
                    break
                line = data[pos:newline].decode("utf-8", "surrogateescape")
                if line.startswith('["start", '):
                    cut, pending = pos, _path_of(line)
                elif line.startswith("{") and cut is not None:
                    found = _row(line)
                    if found and found[0] == pending:
                        cut = pending = None  # its row is complete: nothing to take back
                pos = newline + 1
            if cut is not None:
                os.ftruncate(self.fd, base + cut)
                self.size = self.mark = base + cut
        except OSError:
            pass

    def close(self):
        os.close(self.fd)


def keep(journal_dir, shard, key, table_file):
    """After a shard's table is complete: keep it (hard link) as the
    shard's reusable rows and drop the attempts' process journals."""
    folder = os.path.join(journal_dir, shard)
    os.makedirs(folder, exist_ok=True)
    kept = os.path.join(folder, f"kept-{key}.jsonl")
    tmp = f"{kept}.tmp{os.getpid()}"
    try:
        os.link(table_file, tmp)
    except OSError:  # a filesystem without hard links: a copy does the same
        shutil.copyfile(table_file, tmp)
    os.replace(tmp, kept)
    for file in os.listdir(folder):
        if file not in (os.path.basename(kept), LOCK_FILE):
            os.remove(os.path.join(folder, file))


def forget(journal_dir, shard):
    """Drop everything a shard kept (its shard no longer exists)."""
    shutil.rmtree(os.path.join(journal_dir, shard), ignore_errors=True)
