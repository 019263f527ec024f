"""A shard job meets the faults of a cluster: twin jobs on one shard, two
hosts writing one journal folder, and stop signals (a cancelled, timed-out,
preempted or requeued Slurm job; Ctrl-C) that must not be counted as the
death of the image a process was on.

Everything runs locally, with forked processes and real signals. Nothing
here asserts how long anything takes: a test waits for a state (a line in a
log, a byte on a pipe), then counts rows and reads files.
"""

import json
import os
import socket

from imagestats import journal

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
    journal.mark_stopped(str(tmp_path), "shard-0", os.getpid(), "a.jpg")
    j.close()
    assert journal.load(str(tmp_path), "shard-0", KEY).deaths == {}

    other = tmp_path / "other"
    j = journal.ProcessJournal(str(other), "shard-0", KEY)
    j.start("b.jpg")
    journal.mark_stopped(str(other), "shard-0", os.getpid(), "c.jpg")  # it was not on c.jpg
    j.close()
    assert journal.load(str(other), "shard-0", KEY).deaths == {"b.jpg": 1}


def test_take_back_after_a_stopped_line(tmp_path):
    """The main process appends its stopped line while the process may be
    still writing: take_back still finds the start and the row."""
    j = journal.ProcessJournal(str(tmp_path), "shard-0", KEY)
    j.start("a.jpg")
    journal.mark_stopped(str(tmp_path), "shard-0", os.getpid(), "a.jpg")
    j.write(row_line("a.jpg") + "\n")  # it finished the image anyway
    j.start("b.jpg")  # its mark now lies inside a line: it counted only its own bytes
    j.take_back()
    j.close()
    earlier = journal.load(str(tmp_path), "shard-0", KEY)
    assert sorted(earlier.rows) == ["a.jpg"] and earlier.deaths == {}
    with open(j.file) as f:
        assert "b.jpg" not in f.read()
