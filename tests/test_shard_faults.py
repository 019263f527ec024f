"""A shard job meets the faults of a cluster: twin jobs on one shard, two
hosts writing one journal folder, and stop signals (a cancelled, timed-out,
preempted or requeued Slurm job; Ctrl-C) that must not be counted as the
death of the image a process was on.

Everything runs locally, with forked processes and real signals. Nothing
here asserts how long anything takes: a test waits for a state (a line in a
log, a byte on a pipe), then counts rows and reads files.
"""

import errno
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import SCRIPTS, reference
from imagestats import journal, lock
from imagestats.plan import make_plan, read_shard_list, write_plan
from imagestats.shard import run_shard

KEY = "k-1"


def row_line(path):
    return json.dumps({"path": path, "class": "C", "error": "", "note": "", "size": 1, "mtime_ns": 2})


def journal_files(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".jsonl"))


# ----------------------------------------------------------- journal files


def test_process_journals_are_named_by_pid_and_host(tmp_path):
    j = journal.ProcessJournal(str(tmp_path), "shard-0", KEY)
    j.close()
    (name,) = journal_files(tmp_path / "shard-0")
    assert name == f"{os.getpid()}@{socket.gethostname()}.jsonl"


def test_two_hosts_with_one_pid_keep_apart_and_old_names_are_read(tmp_path, monkeypatch):
    folder = tmp_path / "shard-0"
    folder.mkdir()
    # An older version's file: <pid>.jsonl, an image done and one died on.
    (folder / "4242.jsonl").write_text(
        f'["key", "{KEY}"]\n["start", "a.jpg"]\n{row_line("a.jpg")}\n["start", "b.jpg"]\n'
    )
    for host, image in (("node1", "c.jpg"), ("node2", "d.jpg")):
        monkeypatch.setattr(journal, "HOST", host)
        j = journal.ProcessJournal(str(tmp_path), "shard-0", KEY)
        j.start(image)
        j.write(row_line(image) + "\n")
        j.close()
    pid = os.getpid()
    assert journal_files(folder) == sorted(["4242.jsonl", f"{pid}@node1.jsonl", f"{pid}@node2.jsonl"])
    earlier = journal.load(str(tmp_path), "shard-0", KEY)
    assert sorted(earlier.rows) == ["a.jpg", "c.jpg", "d.jpg"]
    assert earlier.deaths == {"b.jpg": 1}


def test_a_pid_used_again_on_one_host_starts_a_new_attempt_in_its_file(tmp_path):
    first = journal.ProcessJournal(str(tmp_path), "shard-0", "old-key")
    first.start("a.jpg")
    first.write(row_line("a.jpg") + "\n")
    first.start("b.jpg")  # then it died
    os.write(first.fd, b'{"path": "b.jpg", "cla')  # and its row was cut short
    first.close()
    second = journal.ProcessJournal(str(tmp_path), "shard-0", KEY)  # same pid, same host
    second.start("c.jpg")
    second.write(row_line("c.jpg") + "\n")
    second.close()
    earlier = journal.load(str(tmp_path), "shard-0", KEY)
    assert sorted(earlier.rows) == ["c.jpg"]  # a.jpg was measured under another key
    assert earlier.deaths == {"b.jpg": 1}


# ------------------------------------------------- taking a start back


def test_take_back_keeps_a_written_row_and_drops_an_unfinished_start(tmp_path):
    j = journal.ProcessJournal(str(tmp_path), "shard-0", KEY)
    j.start("a.jpg")
    j.write(row_line("a.jpg") + "\n")
    j.take_back()  # a signal right after the row: the row stays
    j.start("b.jpg")
    j.take_back()  # a signal while measuring b.jpg
    j.close()
    earlier = journal.load(str(tmp_path), "shard-0", KEY)
    assert sorted(earlier.rows) == ["a.jpg"] and earlier.deaths == {}


def test_take_back_goes_by_the_file_wherever_the_signal_came(tmp_path):
    """The signal can come after os.write returned and before the journal
    counted the bytes: take_back reads the file, not the count."""
    j = journal.ProcessJournal(str(tmp_path), "shard-0", KEY)
    j.start("a.jpg")
    size = j.size
    os.write(j.fd, (row_line("a.jpg") + "\n").encode())  # written, not counted
    j.take_back()
    assert os.path.getsize(j.file) > size, "a row already written was cut"
    j.mark = j.size = os.path.getsize(j.file)
    os.write(j.fd, b'["start", "b.jpg"]\n')  # written, not counted (the mark is set first)
    j.take_back()
    j.start("c.jpg")
    os.write(j.fd, b'{"path": "c.jpg", "cl')  # a row cut short (a full disk)
    j.take_back()
    j.close()
    earlier = journal.load(str(tmp_path), "shard-0", KEY)
    assert sorted(earlier.rows) == ["a.jpg"] and earlier.deaths == {}
    with open(j.file) as f:
        assert f.read().endswith(row_line("a.jpg") + "\n")  # nothing cut short left behind


def test_a_stopped_line_of_the_main_process_cancels_the_start(tmp_path):
    """A process stuck in C code gets no chance to take its start back
    before the SIGKILL: the main process's stopped line does it. Only for
    that image: a real death before stays a death."""
    j = journal.ProcessJournal(str(tmp_path), "shard-0", KEY)
    j.start("a.jpg")
    journal.mark_stopped(str(tmp_path), "shard-0", os.getpid(), ["a.jpg"])
    j.close()
    assert journal.load(str(tmp_path), "shard-0", KEY).deaths == {}

    other = tmp_path / "other"
    j = journal.ProcessJournal(str(other), "shard-0", KEY)
    j.start("b.jpg")
    journal.mark_stopped(str(other), "shard-0", os.getpid(), ["c.jpg", "d.jpg"])  # it was not on them
    j.close()
    assert journal.load(str(other), "shard-0", KEY).deaths == {"b.jpg": 1}


def test_take_back_after_a_stopped_line(tmp_path):
    """The main process appends its stopped line while the process may be
    still writing: take_back still finds the start and the row."""
    j = journal.ProcessJournal(str(tmp_path), "shard-0", KEY)
    j.start("a.jpg")
    journal.mark_stopped(str(tmp_path), "shard-0", os.getpid(), ["a.jpg"])
    j.write(row_line("a.jpg") + "\n")  # it finished the image anyway
    j.start("b.jpg")  # its mark now lies inside a line: it counted only its own bytes
    j.take_back()
    j.close()
    earlier = journal.load(str(tmp_path), "shard-0", KEY)
    assert sorted(earlier.rows) == ["a.jpg"] and earlier.deaths == {}
    with open(j.file) as f:
        assert "b.jpg" not in f.read()


# ------------------------------------------------------------ shard runs

# A sitecustomize.py first on PYTHONPATH: when IMAGESTATS_TEST_HOLD_ON names
# file names (comma-separated), the process that opens one of them writes its
# pid and the name to the fd IMAGESTATS_TEST_READY_FD, then waits for a byte on the fd
# IMAGESTATS_TEST_GATE_FD: the test knows which process is on which image,
# and signals it there. With IMAGESTATS_TEST_HOLD_DEAF it blocks the stop
# signals first, as a process stuck in C code (a decoder) cannot run its
# handler until the SIGKILL that follows.
HOLDER = '''\
import os

_targets = os.environ.get("IMAGESTATS_TEST_HOLD_ON")
if _targets:
    import signal

    import PIL.Image

    _open = PIL.Image.open

    def _open_held(fp, *args, **kwargs):
        path = fp if isinstance(fp, (str, bytes, os.PathLike)) else getattr(fp, "name", None)  # a path or a file
        if path is not None and os.path.basename(os.fsdecode(path)) in _targets.split(","):
            if os.environ.get("IMAGESTATS_TEST_HOLD_DEAF"):
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
            name = os.path.basename(os.fsdecode(path)).encode()
            os.write(int(os.environ["IMAGESTATS_TEST_READY_FD"]), b"%d %s\\n" % (os.getpid(), name))
            os.read(int(os.environ["IMAGESTATS_TEST_GATE_FD"]), 1)
        return _open(fp, *args, **kwargs)

    PIL.Image.open = _open_held
'''

DIED = "died on this image"
SUMMARY = re.compile(r"^image_stats: (\d+) images \((\d+) measured, (\d+) kept\)", re.MULTILINE)


class Shard:
    """One shard of a tree, measured by scripts/image_stats.py as the
    workflow's rule runs it: its list, table, per-image files and journal."""

    def __init__(self, tmp_path, tree):
        plan = make_plan({"input_dir": str(tree), "images_per_job": 10_000})
        write_plan(plan, tmp_path / "plan")
        ((self.name, shard),) = plan.shards.items()
        self.tmp = tmp_path
        self.list_file = tmp_path / "plan" / shard.list_name
        self.table = tmp_path / "results" / "shards" / f"{self.name}.jsonl"
        self.table.parent.mkdir(parents=True)
        self.images = tmp_path / "results" / "images"
        self.journal = tmp_path / "results" / "journal"
        self.entries = read_shard_list(self.list_file, tree)
        self.runs = 0
        holder = tmp_path / "holder"
        holder.mkdir()
        (holder / "sitecustomize.py").write_text(HOLDER)
        self.pythonpath = os.pathsep.join(p for p in (str(holder), os.environ.get("PYTHONPATH")) if p)

    def order(self, workers):
        """Names of the images in the order the shard hands them out."""
        order = range(len(self.entries))
        if workers > 1:
            order = sorted(order, key=lambda i: -self.entries[i].size)
        return [os.path.basename(self.entries[i].path) for i in order]

    def start(self, workers=1, hold=(), deaf=False, group=False):
        """Start image_stats.py; with ``hold``, the processes that open those
        images stop there: returns (process, log file, ready fd, gate fd)."""
        self.runs += 1
        log = self.tmp / f"run{self.runs}.log"
        env = {**os.environ, "PYTHONPATH": self.pythonpath}
        ready_r = ready_w = gate_r = gate_w = None
        fds = ()
        if hold:
            ready_r, ready_w = os.pipe()
            gate_r, gate_w = os.pipe()
            fds = (ready_w, gate_r)
            env.update(IMAGESTATS_TEST_HOLD_ON=",".join(hold), IMAGESTATS_TEST_READY_FD=str(ready_w),
                       IMAGESTATS_TEST_GATE_FD=str(gate_r))  # fmt: skip
            if deaf:
                env["IMAGESTATS_TEST_HOLD_DEAF"] = "1"
        cmd = [sys.executable, SCRIPTS / "image_stats.py", self.list_file, self.table,
               "--images-dir", self.images, "--journal-dir", self.journal, "--workers", str(workers)]  # fmt: skip
        with open(log, "w") as out:
            proc = subprocess.Popen([str(c) for c in cmd], stderr=out, stdout=out, env=env, pass_fds=fds,
                                    start_new_session=group)  # fmt: skip
        if hold:
            os.close(ready_w)  # so that reading sees the end if the shard dies first
            os.close(gate_r)
        proc.log = log
        proc.ready, proc.gate = ready_r, gate_w
        return proc

    def run(self, workers=1):
        proc = self.start(workers)
        assert proc.wait() == 0, proc.log.read_text()
        return summary(proc)

    def rows(self):
        return {row["path"]: row for row in map(json.loads, self.table.read_text().splitlines())}

    def earlier(self):
        """What the journal holds for the next attempt (the key does not
        matter for deaths)."""
        return journal.load(str(self.journal), self.name, "any")

    def journal_snapshot(self):
        folder = self.journal / self.name
        return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.exists() else {}


def summary(proc):
    """(images, measured, kept) of the shard's last line."""
    return counts(proc.log.read_text())


def counts(log):
    found = SUMMARY.findall(log)
    assert found, log
    return tuple(int(x) for x in found[-1])


def held(proc, count):
    """{image name: pid} of the ``count`` processes now holding an image."""
    data = b""
    while data.count(b"\n") < count:
        more = os.read(proc.ready, 100)
        if not more:
            proc.wait()
            pytest.fail(f"the shard ended before {count} process(es) held their image:\n{proc.log.read_text()}")
        data += more
    return {name.decode(): int(pid) for pid, name in (line.split() for line in data.splitlines())}


def finish(proc):
    """Wait for the shard, then close the test's ends of the pipes (not
    before: a held process would go on); the exit status."""
    status = proc.wait(timeout=120)
    for fd in (proc.ready, proc.gate):
        if fd is not None:
            os.close(fd)
    return status


def wait_for_line(proc, text):
    """Wait (no time is asserted: a generous limit only keeps a broken
    test from hanging) until the log of ``proc`` has ``text``."""
    deadline = time.monotonic() + 120
    while text not in proc.log.read_text():
        assert proc.poll() is None, proc.log.read_text()
        if time.monotonic() > deadline:
            pytest.fail(f"no {text!r} in {proc.log}:\n{proc.log.read_text()}")
        time.sleep(0.02)


def check_numbers(shard, rows):
    for entry in shard.entries:
        row = rows[entry.path]
        assert row["error"] == "", (entry.path, row["error"])
        assert (row["min"], row["max"], row["mean"], row["median"]) == reference(entry.file)


# -------------------------------------------------------- a twin waits


def test_a_twin_waits_for_the_first_job_then_reuses_its_rows(small_tree, tmp_path):
    alone = Shard(tmp_path / "alone", small_tree)
    assert alone.run() == (40, 40, 0)

    shard = Shard(tmp_path / "twins", small_tree)
    first = shard.start(hold=[shard.order(1)[5]])
    held(first, 1)  # the first job holds the lock and is on its sixth image
    before = shard.journal_snapshot()
    twin = shard.start()
    wait_for_line(twin, f"image_stats: waiting for {shard.name}: another job is measuring it (pid {first.pid} on")
    stopped_twin = shard.start()
    wait_for_line(stopped_twin, f"waiting for {shard.name}")
    stopped_twin.send_signal(signal.SIGTERM)  # a twin cancelled while it waits
    assert stopped_twin.wait() == 128 + signal.SIGTERM
    assert f"image_stats: stopped: {shard.name} got SIGTERM" in stopped_twin.log.read_text()
    assert shard.journal_snapshot() == before, "a waiting twin touched the journal"
    assert not shard.table.exists()

    os.write(first.gate, b"go")
    assert finish(first) == 0, first.log.read_text()
    assert twin.wait() == 0, twin.log.read_text()
    assert summary(first) == (40, 40, 0)
    assert summary(twin) == (40, 0, 40)  # every row reused: nothing measured twice
    assert shard.table.read_bytes() == alone.table.read_bytes()
    assert sorted(shard.journal_snapshot()) == sorted(alone.journal_snapshot())  # kept table and lock
    check_numbers(shard, shard.rows())


def test_when_the_first_job_dies_the_twin_takes_over(small_tree, tmp_path):
    """The kernel drops the lock of a job that dies however it dies (here
    SIGKILL to all its processes, as a lost node or the OOM killer): the
    waiting twin goes on from its journal."""
    alone = Shard(tmp_path / "alone", small_tree)
    alone.run()
    shard = Shard(tmp_path / "twins", small_tree)
    victim = shard.order(1)[5]
    first = shard.start(hold=[victim], group=True)
    held(first, 1)
    twin = shard.start()
    wait_for_line(twin, f"waiting for {shard.name}")
    os.killpg(first.pid, signal.SIGKILL)
    assert finish(first) == -signal.SIGKILL
    assert twin.wait() == 0, twin.log.read_text()
    assert summary(twin) == (40, 35, 5)  # the five images before the victim are kept
    assert shard.table.read_bytes() == alone.table.read_bytes()


def test_a_filesystem_without_locks_measures_anyway_and_says_so(small_tree, tmp_path, monkeypatch):
    """Lustre mounted with noflock refuses locks (ENOSYS); NFSv3 without
    rpc.statd (ENOLCK): the shard warns in its log and goes on."""

    def refuse(*args):
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))

    monkeypatch.setattr(lock.fcntl, "lockf", refuse)
    shard = Shard(tmp_path, small_tree)
    log = io.StringIO()
    run_shard(shard.list_file, shard.table, str(shard.images), "record", 89478485, log,
              journal_dir=str(shard.journal))  # fmt: skip
    assert "image_stats: warning: cannot lock" in log.getvalue()
    assert "does not support locks" in log.getvalue()
    assert counts(log.getvalue()) == (40, 40, 0)
    check_numbers(shard, shard.rows())


# ------------------------------------------- stop signals are no death


def stopped_cleanly(shard, proc, in_flight, signum=signal.SIGTERM):
    """After a stop signal: the shard exited on it, wrote no table, and
    the images its processes were on count no death; the rerun measures
    them like any other and no row says 'died'."""
    assert proc.wait() == 128 + signum, proc.log.read_text()
    assert f"image_stats: stopped: {shard.name} got {signum.name}" in proc.log.read_text()
    assert not shard.table.exists()
    assert shard.earlier().deaths == {}
    images, measured, kept = shard.run(workers=2)
    assert images == 40 and measured + kept == 40 and measured >= len(in_flight)
    rows = shard.rows()
    assert not [row for row in rows.values() if DIED in row["error"]]
    check_numbers(shard, rows)


@pytest.mark.parametrize("deaf", [False, True], ids=["handles", "stuck-in-c"])
def test_sigterm_to_the_main_process_is_no_death(small_tree, tmp_path, deaf):
    """Snakemake on Ctrl-C, a user's kill: the main process stops its
    measuring processes. One stuck in C code ('deaf') cannot take its
    start back before the SIGKILL: the main process's note does."""
    shard = Shard(tmp_path, small_tree)
    order = shard.order(2)
    in_flight = [order[0], order[2]]  # the first image of each process's first chunk
    proc = shard.start(workers=2, hold=in_flight, deaf=deaf)
    held(proc, 2)
    proc.send_signal(signal.SIGTERM)
    finish(proc)
    stopped_cleanly(shard, proc, in_flight)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_a_stop_signal_to_the_process_group_is_no_death(small_tree, tmp_path, signum):
    """Slurm (scancel, a time limit, preemption, a requeue) sends SIGTERM to
    every process of the job at once; Ctrl-C sends SIGINT to the terminal's
    process group, a closed SSH session SIGHUP."""
    shard = Shard(tmp_path, small_tree)
    order = shard.order(2)
    in_flight = [order[0], order[2]]
    proc = shard.start(workers=2, hold=in_flight, group=True)
    held(proc, 2)
    os.killpg(proc.pid, signum)
    finish(proc)
    stopped_cleanly(shard, proc, in_flight, signum)


# ----------------------------------------------- a real death still counts


def test_sigkill_on_an_image_still_counts_and_twice_gives_the_error_row(small_tree, tmp_path):
    """A process killed on its image with no stop signal before (a decoder
    crash, the OOM killer) counts a death; the other process, stopped by
    the shard, counts none. Killed again when measured alone: the error row."""
    shard = Shard(tmp_path, small_tree)
    order = shard.order(2)
    victim, bystander = order[0], order[2]
    proc = shard.start(workers=2, hold=[victim, bystander])
    os.kill(held(proc, 2)[victim], signal.SIGKILL)
    assert finish(proc) == 1, proc.log.read_text()
    assert "a measuring process of" in proc.log.read_text()
    deaths = shard.earlier().deaths
    assert {os.path.basename(path): n for path, n in deaths.items()} == {victim: 1}

    proc = shard.start(workers=2, hold=[victim])  # measured alone first
    os.kill(held(proc, 1)[victim], signal.SIGKILL)
    assert finish(proc) == 0, proc.log.read_text()
    rows = {os.path.basename(path): row for path, row in shard.rows().items()}
    assert "died on this image in 2 attempts" in rows[victim]["error"]
    assert [name for name, row in rows.items() if row["error"]] == [victim]


def gone(pid):
    """Whether ``pid`` has exited (a zombie nobody reaped has too)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("deaf", [False, True], ids=["handles", "stuck-in-c"])
def test_a_shard_killed_outright_leaves_no_measuring_process_behind(small_tree, tmp_path, deaf):
    """kill -9 or the OOM killer on the shard's main process: its measuring
    processes, even ones stuck in a decoder, die with it instead of running
    on unwatched; a rerun measures every image."""
    shard = Shard(tmp_path, small_tree)
    order = shard.order(2)
    proc = shard.start(workers=2, hold=[order[0], order[2]], deaf=deaf)
    pids = held(proc, 2).values()
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 60  # not a timing: only keeps a broken test from hanging
    try:  # still held: only death can end them
        while not all(gone(pid) for pid in pids):
            assert time.monotonic() < deadline, f"measuring processes {list(pids)} outlived their shard"
            time.sleep(0.05)
    finally:
        finish(proc)
    shard.run(workers=2)
    rows = shard.rows()
    assert len(rows) == 40 and not [row for row in rows.values() if row["error"]]
    check_numbers(shard, rows)


def test_a_stop_while_an_image_is_measured_alone_writes_no_error_row(small_tree, tmp_path):
    """An image died on once is measured alone; a job cancelled then must
    not turn it into 'died in 2 attempts'."""
    shard = Shard(tmp_path, small_tree)
    victim = shard.order(2)[0]
    proc = shard.start(workers=2, hold=[victim])
    os.kill(held(proc, 1)[victim], signal.SIGKILL)  # a real death: one
    assert finish(proc) == 1, proc.log.read_text()

    proc = shard.start(workers=2, hold=[victim], group=True)  # alone, and the job is cancelled
    held(proc, 1)
    os.killpg(proc.pid, signal.SIGTERM)
    finish(proc)
    assert proc.wait() == 128 + signal.SIGTERM, proc.log.read_text()
    assert not shard.table.exists()
    assert {os.path.basename(p): n for p, n in shard.earlier().deaths.items()} == {victim: 1}

    shard.run(workers=2)  # measured alone once more, and fine
    rows = shard.rows()
    assert not [row for row in rows.values() if DIED in row["error"]]
    check_numbers(shard, rows)


def test_a_stop_signal_as_a_per_image_file_is_opened_leaves_no_empty_file(tmp_path, monkeypatch):
    """Python raises the handler's exception when the call the signal came
    during returns: after os.open made the file, before its fd is kept."""
    from imagestats import pool, shard as shard_module

    real_open = os.open

    def open_then_signal(*args):
        real_open(*args)
        raise pool.Stopped(signal.SIGTERM)

    monkeypatch.setattr(shard_module.os, "open", open_then_signal)
    with pytest.raises(pool.Stopped):
        shard_module.write_in_place(str(tmp_path / "a.jpg.json"), b"{}\n")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_a_stop_signal_while_a_failed_write_cleans_up_leaves_no_empty_file(tmp_path, monkeypatch):
    """A full disk: the write fails and the file is being removed when the
    SIGTERM comes (the shard stops its other processes, which hit the full
    disk too): the signal waits until the file is gone."""
    from imagestats import pool, shard as shard_module

    real_close = os.close

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def close_then_signal(fd):
        real_close(fd)
        os.kill(os.getpid(), signal.SIGTERM)  # the handler would run here, before the file is removed

    with pool.stop_signals():
        monkeypatch.setattr(shard_module.os, "write", full)
        monkeypatch.setattr(shard_module.os, "close", close_then_signal)
        try:
            with pytest.raises(pool.Stopped):
                shard_module.write_in_place(str(tmp_path / "a.jpg.json"), b"{}\n")
        finally:
            monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_a_process_that_dies_before_its_next_chunk_is_handed_over_is_a_death_on_its_image():
    """The main process reads a result, then hands the next chunk to a
    process that died meanwhile (EPIPE): the death is the image it died on,
    and no image is noted as stopped (which would forgive the killer)."""
    from imagestats import pool

    def measure(i):
        if i == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return f"row {i}"

    lines, deaths, abandoned = {}, [], []

    def done(i, line):
        lines[i] = line
        if i == 0:
            time.sleep(0.3)  # the process dies on image 1 before the next chunk goes

    def died(i, status):
        deaths.append((i, os.WTERMSIG(status)))
        return f"died {i}"

    pool.run(range(6), 1, lambda: None, measure, done, None, died, 60, chunk=2,
             abandon=lambda pid, held: abandoned.append(held))  # fmt: skip
    assert deaths == [(1, signal.SIGKILL)]
    assert abandoned == []
    assert lines == {0: "row 0", 1: "died 1", 2: "row 2", 3: "row 3", 4: "row 4", 5: "row 5"}
