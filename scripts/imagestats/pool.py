"""Measuring processes with a time limit per image.

A shard hands its images to ``workers`` forked processes, a chunk of
indices at a time, and reads each image's result line back as soon as it is
done. A process that takes longer than ``timeout`` seconds on one image (a
hung decoder, an analysis stuck in C code, which no signal handler can
interrupt) is killed and replaced: ``timed_out(i)`` gives that image its
row, and the rest of its chunk goes to the new process. A process that dies
on its own (a decoder crash, the OOM killer) ends the run through
``died(i, status)``, which may raise (the shard then stops and a rerun
measures that image alone) or return its row.

Why not multiprocessing or concurrent.futures: neither can stop one task
without breaking the whole pool, and both pickle every result; here a
result is the row's text, written to a pipe. The processes are forked after
the analysis is imported, so nothing is imported per process or per image.
"""

import os
import pickle
import selectors
import signal
import time
from collections import deque

_RESULT, _RAISED = b"L", b"X"
# This process's ends of every measuring process's pipes: a child closes
# the ones it inherits, or a process told to stop (its task pipe closed)
# would never see the end of its input while a sibling held a copy.
_OPEN = set()
GATHER_SECONDS = 0.005


class _Process:
    """One measuring process: its pid, the pipe it reads chunks from, the
    pipe it writes results to, and the images it holds."""

    def __init__(self, start, measure):
        tasks_r, self.tasks = os.pipe()
        self.results, results_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child never returns
            for fd in (self.tasks, self.results, *_OPEN):
                os.close(fd)
            _serve(tasks_r, results_w, start, measure)
        os.close(tasks_r)
        os.close(results_w)
        _OPEN.update((self.tasks, self.results))
        self.held = deque()  # indices handed over, in the order they come back
        self.since = None  # when the image at held[0] started (its result's predecessor came)
        self.buffer = b""

    def give(self, chunk, now):
        if not self.held:
            self.since = now
        self.held.extend(chunk)
        _write_all(self.tasks, b",".join(b"%d" % i for i in chunk) + b"\n")

    def kill(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.reap()

    def reap(self):
        self.close_tasks()
        if self.results in _OPEN:
            _OPEN.discard(self.results)
            os.close(self.results)
        return os.waitpid(self.pid, 0)[1]

    def close_tasks(self):
        """No more chunks: the process exits when it has done what it holds."""
        if self.tasks in _OPEN:
            _OPEN.discard(self.tasks)
            os.close(self.tasks)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _serve(tasks, results, start, measure):
    """The child: measure each index of each chunk, one result line each."""
    code = 0
    try:
        start()
        with os.fdopen(tasks, "rb") as chunks:
            for chunk in chunks:
                for i in chunk.split(b","):
                    try:
                        line = measure(int(i))
                    except BaseException as e:  # handed to the parent, which raises it
                        _write_all(results, _RAISED + pickle.dumps(e).hex().encode() + b"\n")
                        code = 3
                        return
                    _write_all(results, _RESULT + line.encode("utf-8", "surrogateescape") + b"\n")
    except BaseException:
        code = 4
    finally:
        os._exit(code)


def run(indices, workers, start, measure, done, timed_out, died, timeout, chunk=1):
    """Measure every index of ``indices`` (in that order, ``chunk`` at a time
    per process) with ``workers`` processes.

    In each process ``start()`` runs once and ``measure(i)`` returns the
    row's line. In this process ``done(i, line)`` takes each result,
    ``timed_out(i)`` returns the line of an image past ``timeout`` seconds
    and ``died(i, status)`` handles an image whose process died (it returns
    a line, or raises). Any exception stops and reaps every process.
    """
    todo = deque(indices)
    busy = {}  # result fd -> _Process
    selector = selectors.DefaultSelector()

    def launch():
        process = _Process(start, measure)
        busy[process.results] = process
        selector.register(process.results, selectors.EVENT_READ)
        feed(process, time.monotonic())

    def feed(process, now):
        if todo and len(process.held) < chunk:
            process.give([todo.popleft() for _ in range(min(chunk, len(todo)))], now)

    def retire(process):
        selector.unregister(process.results)
        del busy[process.results]
        todo.extendleft(reversed(process.held))  # the rest of its chunk, next

    try:
        for _ in range(min(workers, len(todo))):
            launch()
        while busy:
            now = time.monotonic()
            waiting = [p.since + timeout - now for p in busy.values() if p.held]
            events = selector.select(max(0.0, min(waiting)) if waiting else None)
            now = time.monotonic()
            for key, _ in events:
                process = busy[key.fd]
                data = os.read(key.fd, 1 << 16)
                if not data:  # the process ended without finishing its images
                    i = process.held.popleft() if process.held else None
                    retire(process)  # the rest of its chunk goes to another process
                    status = process.reap()
                    if i is not None:
                        done(i, died(i, status))
                    if todo:
                        launch()
                    continue
                *lines, process.buffer = (process.buffer + data).split(b"\n")
                for line in lines:
                    i = process.held.popleft()
                    process.since = now
                    if line[:1] == _RAISED:
                        raise pickle.loads(bytes.fromhex(line[1:].decode()))
                    done(i, line[1:].decode("utf-8", "surrogateescape"))
                if not process.held:
                    if todo:
                        feed(process, now)
                    else:  # nothing left for it: let it exit
                        retire(process)
                        process.reap()
                elif len(process.held) < chunk:
                    feed(process, now)
            for process in [p for p in busy.values() if p.held and now - p.since >= timeout]:
                i = process.held.popleft()
                retire(process)
                process.kill()
                done(i, timed_out(i))
                if todo:
                    launch()
            if todo and len(busy) < workers:
                launch()
            if busy and all(len(p.held) > 1 for p in busy.values()):
                # Every process has work queued: let results gather instead
                # of waking for each image (this process shares the cores
                # with the ones measuring).
                time.sleep(GATHER_SECONDS)
    finally:
        for process in list(busy.values()):
            selector.unregister(process.results)
            process.kill()
        selector.close()
