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

Stop signals (SIGTERM, SIGINT, SIGHUP: a job cancelled, timed out,
preempted or requeued; ``scancel``; Ctrl-C) are no image's fault. Inside
``stop_signals()`` the first one raises ``Stopped`` once in each process
(the measuring processes inherit the handler when they fork: no call per
process or per image): a measuring process unwinds (its caller takes back
the image it was on) and exits with 128 + the signal's number; the main
process stops its measuring processes and raises ``Stopped`` to its
caller. The pool stops its processes the same way whenever it ends
early (a stop signal, a process that died, an error): ``abandon(pid,
indices)`` first notes that the process was stopped holding those images
(for one stuck in C code, which cannot run its handler), then SIGTERM,
then SIGKILL for what is left after ``STOP_GRACE`` seconds.

A measuring process dies with the main process: if that is killed
outright (``kill -9``, the OOM killer), the kernel sends each measuring
process SIGKILL (Linux's parent-death signal), so none is left measuring,
or hung in a decoder, with no one to read its rows; the journal keeps what
they wrote, as after any kill.

Why not multiprocessing or concurrent.futures: neither can stop one task
without breaking the whole pool, and both pickle every result; here a
result is the row's text, written to a pipe. The processes are forked after
the analysis is imported, so nothing is imported per process or per image.
"""

import ctypes
import os
import pickle
import selectors
import signal
import threading
import time
from collections import deque
from contextlib import contextmanager

_RESULT, _RAISED = b"L", b"X"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (AttributeError, OSError):  # not Linux: no parent-death signal
    _prctl = None
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# Seconds the measuring processes get to exit on SIGTERM before SIGKILL
# (Slurm's KillWait, between its SIGTERM and SIGKILL, is 30 s by default).
STOP_GRACE = 3.0
# This process's ends of every measuring process's pipes: a child closes
# the ones it inherits, or a process told to stop (its task pipe closed)
# would never see the end of its input while a sibling held a copy.
_OPEN = set()
GATHER_SECONDS = 0.005


class Stopped(BaseException):
    """A stop signal came (to this process or to a measuring process): not
    the fault of any image. A BaseException, so that an analysis's
    ``except Exception`` does not turn it into an error row."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum

    def __str__(self):
        return f"stopped by {signal.Signals(self.signum).name}"


_signalled = None  # the first stop signal this process got
_quiet = False  # set while the pool stops its processes: a signal is only noted


def _on_stop_signal(signum, frame):
    global _signalled
    if _signalled is None:
        _signalled = signum
        if not _quiet:
            raise Stopped(signum)


@contextmanager
def stop_signals():
    """Within: SIGTERM, SIGINT and SIGHUP raise Stopped, once, in this
    process and in the measuring processes it forks. Outside the main
    thread (where Python cannot handle signals) this does nothing."""
    global _signalled, _quiet
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _signalled, _quiet = None, False
    before = {signum: signal.signal(signum, _on_stop_signal) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
        _signalled, _quiet = None, False


@contextmanager
def stop_signals_held():
    """Within: a stop signal waits, and comes (raises Stopped) at the end,
    so that what it would cut short (a half-made file, a fork not yet
    registered) completes. Gives the signal mask from before."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield mask
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def raise_if_stopped():
    """Raise Stopped if a stop signal came to this process (for code that
    saw its effect first, e.g. a child process killed by the same signal)."""
    if _signalled is not None:
        raise Stopped(_signalled)


def _stopped_by(status):
    """The stop signal a measuring process exited on (see _serve), or None."""
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) - 128 in STOP_SIGNALS:
        return os.WEXITSTATUS(status) - 128
    return None


class _Process:
    """One measuring process: its pid, the pipe it reads chunks from, the
    pipe it writes results to, and the images it holds."""

    def __init__(self, start, measure, mask):
        """Forks the process; the caller blocks the stop signals around
        this, and ``mask`` is the signal mask to restore in the child."""
        tasks_r, self.tasks = os.pipe()
        self.results, results_w = os.pipe()
        parent = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:  # the child never returns
            code = 4
            try:
                _die_with(parent)
                for fd in (self.tasks, self.results, *_OPEN):
                    os.close(fd)
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a stop signal pending since the fork comes now
                _serve(tasks_r, results_w, start, measure)
            except Stopped as e:
                code = 128 + e.signum
            finally:
                os._exit(code)
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
        try:
            _write_all(self.tasks, b",".join(b"%d" % i for i in chunk) + b"\n")
        except BrokenPipeError:
            # It died since its last result: the end of its results pipe
            # comes next and is handled there, on the image it died on.
            pass

    def kill(self):
        self.signal(signal.SIGKILL)
        return self.reap()

    def signal(self, signum):
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def reaped_by(self, deadline):
        """Reap the process if it exits before ``deadline`` (monotonic);
        whether it did. Only when stopping, so a short poll is fine."""
        while True:
            try:
                pid, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid = self.pid
            if pid:
                self.close_tasks()
                if self.results in _OPEN:
                    _OPEN.discard(self.results)
                    os.close(self.results)
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

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


def _die_with(parent):
    """SIGKILL for this (forked) process when ``parent`` dies; if it died
    already, exit now."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(4)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _serve(tasks, results, start, measure):
    """The child: measure each index of each chunk, one result line each.
    A stop signal ends it with 128 + the signal's number."""
    code = 0
    try:
        start()
        with os.fdopen(tasks, "rb") as chunks:
            for chunk in chunks:
                for i in chunk.split(b","):
                    try:
                        line = measure(int(i))
                    except Stopped:
                        raise
                    except BaseException as e:  # handed to the parent, which raises it
                        _write_all(results, _RAISED + pickle.dumps(e).hex().encode() + b"\n")
                        code = 3
                        return
                    if _signalled is not None:  # the analysis swallowed Stopped
                        raise Stopped(_signalled)
                    _write_all(results, _RESULT + line.encode("utf-8", "surrogateescape") + b"\n")
    except Stopped as e:
        code = 128 + e.signum
    except BaseException:
        code = 4
    finally:
        os._exit(code)


def run(indices, workers, start, measure, done, timed_out, died, timeout, chunk=1, abandon=None):
    """Measure every index of ``indices`` (in that order, ``chunk`` at a time
    per process) with ``workers`` processes.

    In each process ``start()`` runs once and ``measure(i)`` returns the
    row's line. In this process ``done(i, line)`` takes each result,
    ``timed_out(i)`` returns the line of an image past ``timeout`` seconds
    and ``died(i, status)`` handles an image whose process died (it returns
    a line, or raises). A process that exits on a stop signal raises
    Stopped here. Any exception stops and reaps every process, each after
    ``abandon(pid, indices)`` (if given) for the images it holds (the one
    it is on is among them; results it sent may not be read yet).
    """
    todo = deque(indices)
    busy = {}  # result fd -> _Process
    selector = selectors.DefaultSelector()

    def launch():
        # No stop signal between the fork and the process's registration
        # (it would go unstopped), nor in the child before its handler can
        # unwind it: they wait until the mask is restored.
        with stop_signals_held() as mask:
            process = _Process(start, measure, mask)
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
                    if _stopped_by(status):  # a stop signal, not its image
                        raise Stopped(_stopped_by(status))
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
    except BaseException:
        _stop(list(busy.values()), abandon)
        raise
    finally:
        selector.close()


def _stop(processes, abandon):
    """Stop processes whose images are not at fault: note it in their
    journals, SIGTERM (they take their start back and exit), SIGKILL what
    is left after STOP_GRACE seconds, reap them all."""
    global _quiet
    _quiet = True  # a stop signal now must not cut this short (orphans)
    if abandon is not None:
        for process in processes:
            if process.held:
                try:
                    abandon(process.pid, list(process.held))
                except Exception:
                    pass  # best effort: a full disk, say
    for process in processes:
        process.close_tasks()
        process.signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for process in processes:
        if not process.reaped_by(deadline):
            process.kill()
