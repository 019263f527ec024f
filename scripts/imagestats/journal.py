"""What a shard keeps of its work, so a killed or rerun shard redoes only what it must.

Snakemake deletes a job's output before it runs the job again, and a shard
killed half-way (kill -9, the OOM killer, a Slurm TIMEOUT or a lost node)
leaves no table. So each shard keeps its work beside the table, under
``<journal_dir>/<shard>/``:

- ``kept-<key>.jsonl``: a hard link to the shard's last complete table
  (when Snakemake deletes the table, the link keeps the rows);
- ``<pid>.jsonl``: one file per measuring process of an attempt that did
  not finish: ``["key", key]``, then for each image ``["start", path]``
  before measuring it and its row (the table line) after.

A row is reused when its image is unchanged (same size and mtime) and it
was measured under the same ``key`` (the analysis, the measuring code and
max_image_pixels, see ``measure_key``). A ``start`` with no row after it in
its process's file is an image that process died on; an image died on in two
attempts is not measured a third time. A shard reads the folders of its
trie ancestors and descendants too (a shard that split, merged, or changed
size between local and Slurm runs), so their rows are reused as well.
Lines cut short by a kill are skipped: nothing half-written is trusted.
"""

import errno
import json
import os
import shutil
from dataclasses import dataclass, field


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
    if not lines or lines[0] != json.dumps(["key", key]):
        usable = False  # another key: its deaths still count, its rows do not
    else:
        usable = True
    pending = None
    for line in lines[1:]:
        if line.startswith('["start", '):
            try:
                pending = json.loads(line)[1]
            except ValueError:
                pending = None
        elif line.startswith("{"):
            found = _row(line)
            if found:
                if usable:
                    earlier.rows[found[0]] = (found[1], found[2], line)
                if found[0] == pending:
                    pending = None
    if pending is not None:
        earlier.deaths[pending] = earlier.deaths.get(pending, 0) + 1


class ProcessJournal:
    """The journal file of one measuring process (appends only: a kill
    can cut at most the last line, which load() then skips)."""

    def __init__(self, journal_dir, shard, key):
        folder = os.path.join(journal_dir, shard)
        os.makedirs(folder, exist_ok=True)
        self.file = os.path.join(folder, f"{os.getpid()}.jsonl")
        self.fd = os.open(self.file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666)
        self.size = 0  # bytes written: this process is the file's only writer
        self.write(json.dumps(["key", key]) + "\n")

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
        """Note that this process starts on an image; returns the mark to
        undo() it with."""
        mark = self.size
        self.write('["start", ' + json.dumps(shown_path, ensure_ascii=False) + "]\n")
        return mark

    def resync(self):
        """After a forked child wrote to this file too."""
        self.size = os.lseek(self.fd, 0, os.SEEK_END)

    def undo(self, mark):
        """Cut the journal back to ``mark`` (works on a full disk too)."""
        try:
            os.ftruncate(self.fd, mark)
            self.size = mark
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
        if file != os.path.basename(kept):
            os.remove(os.path.join(folder, file))


def forget(journal_dir, shard):
    """Drop everything a shard kept (its shard no longer exists)."""
    shutil.rmtree(os.path.join(journal_dir, shard), ignore_errors=True)
