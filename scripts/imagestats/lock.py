"""One job per shard at a time: an exclusive lock on the shard's journal.

Two jobs can be started on one shard: a run started while an earlier run's
jobs still run (its Snakemake was killed, or lost its SSH session, and
Slurm jobs do not depend on it; the shard's table appears only at the end
of a job, so the new run sees it missing and submits the shard again),
``--nolock``, a second copy of the workflow writing the same results
folder, a job Slurm requeued while the plugin had retried it. Both would
read the journal, measure the same images and write the same files.

So a shard job locks ``<journal_dir>/<shard>/lock`` before it reads the
journal and holds it until its table is written and the journal kept. A
second job **waits** for the lock, then goes on like any rerun: it reads
the journal, finds every row the first job measured and writes the table
at once (or, if the first died, measures what is left). We wait rather
than exit because:

- waiting ends the way a user wants whatever the first job does: it
  completes (the second then finishes in seconds and Snakemake sees a
  success) or dies (the second takes over from its journal: it is the
  retry). Exiting makes Snakemake see a failed job while the shard is in
  fact being measured; its retries fail the same way, the run stops, and
  the user must come back later and rerun (and Snakemake removes a failed
  job's outputs: the table the first job may have written meanwhile);
- the lock of a job whose node crashed lingers on a network filesystem
  until the server notices (below): an exiting job fails for that long, a
  waiting one goes on then;
- what waiting costs (a job that holds its cores while it waits) is bounded
  by the job's time limit (locally, by the first job, which has its own
  per-image time limit), and the log says which job holds the shard, so
  the user can cancel one of the two.

A twin that gets a stop signal while it waits (scancel, the time limit)
exits at once: it has touched nothing.

The lock is an ``fcntl`` record lock (``fcntl.lockf``, POSIX ``F_SETLK``):
the kernel releases it when the holding process exits, however it dies
(SIGKILL, the OOM killer), so there is never a stale lock file to clean up;
the file itself stays and is never deleted while the shard exists. It is
held by the shard's main process only: a POSIX lock is not inherited by
forked processes, and closing any descriptor of the file in the holding
process would release it, so this module is the only code that opens it.

What it needs of the filesystem of the results folder:

- a local disk (ext4, xfs, tmpfs, ...): nothing;
- NFS: POSIX locks go to the server (NLM for NFSv3, part of the protocol
  for NFSv4), so they hold across nodes, unless the mount makes them local:
  it must not use ``nolock`` (v3) or ``local_lock=posix``/``local_lock=all``;
  NFSv3 needs rpc.statd/lockd running on the nodes. (``flock`` over NFS is
  emulated with these same POSIX locks since Linux 2.6.12, which is why we
  use POSIX locks directly.) If a node crashes while it holds the lock,
  NFSv4 releases it when the node's lease expires (90 s by default); NFSv3
  only when the node reboots (rpc.statd tells the server), or when an
  admin clears it;
- Lustre: the client mount option ``flock`` (locks coherent across all
  nodes; the default since Lustre 2.13, per the Lustre wiki's page on
  mounting clients; check ``mount -t lustre`` on older ones).
  ``localflock`` makes locks hold on one node only: enough when all jobs
  run on one node, not against twins on two nodes. ``noflock`` refuses
  locks (ENOSYS). A crashed client's lock is released when the servers
  evict it.

A mount that makes locks node-local (NFS ``nolock`` or ``local_lock``,
Lustre ``localflock``) gives no error: the lock then keeps apart only twins
on one node.

Where the filesystem refuses locks (ENOLCK, ENOSYS, EOPNOTSUPP) the shard
goes on without one and says so in its log: the workflow works as before,
only twin jobs are not kept apart.
"""

import errno
import fcntl
import os
import time
from contextlib import contextmanager

from .journal import HOST, LOCK_FILE

_UNSUPPORTED = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP}
_BUSY = {errno.EACCES, errno.EAGAIN}


def holder_text():
    """Who holds a lock, as the lock file says to the next job."""
    job = os.environ.get("SLURM_JOB_ID")
    return (
        f"pid {os.getpid()} on {HOST}" + (f", Slurm job {job}" if job else "")
        + f", since {time.strftime('%Y-%m-%d %H:%M:%S')}"
    )  # fmt: skip


@contextmanager
def shard_lock(journal_dir, shard, log):
    """Hold the lock of ``shard`` within: wait for it if another process
    holds it (saying so in ``log``). See the module doc."""
    folder = os.path.join(journal_dir, shard)
    os.makedirs(folder, exist_ok=True)
    file = os.path.join(folder, LOCK_FILE)
    fd = os.open(file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        if _acquire(fd, file, shard, log):
            _note_holder(fd)
        yield
    finally:
        os.close(fd)  # releases the lock


def _acquire(fd, file, shard, log):
    """Lock ``fd``, waiting if need be; False if the filesystem has no locks."""
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in _UNSUPPORTED:
            print(
                f"image_stats: warning: cannot lock {file} ({e.strerror}): the filesystem of the "
                "results folder does not support locks (NFSv3 without rpc.statd running, Lustre mounted "
                "with noflock), so nothing keeps a second job off this shard. Measuring anyway.",
                file=log, flush=True,
            )  # fmt: skip
            return False
        if e.errno not in _BUSY:
            raise OSError(e.errno, e.strerror, file) from None
    holder = _read_holder(fd) or "a process that does not say who it is"
    print(
        f"image_stats: waiting for {shard}: another job is measuring it ({holder}; the lock is "
        f"{file}). A second job on one shard comes from a run started while an earlier one's jobs "
        "still ran (a lost Snakemake, --nolock, a second copy of the workflow writing to this results "
        "folder). This job goes on when that one ends, reusing every row it measured, or takes over "
        "if it dies. Nothing to do; to free this job's cores, cancel one of the two (squeue --me, "
        "scancel JOBID).",
        file=log, flush=True,
    )  # fmt: skip
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)  # a stop signal interrupts the wait (imagestats.pool)
    except OSError as e:
        raise OSError(e.errno, e.strerror, file) from None
    print(f"image_stats: {shard}: the other job let go of it; going on from its journal", file=log, flush=True)
    return True


def _read_holder(fd):
    try:
        return os.pread(fd, 1000, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _note_holder(fd):
    """Write who holds the lock into the file, for the message of a job
    that waits for it (information only: the lock is the kernel's)."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (holder_text() + "\n").encode(), 0)
    except OSError:
        pass
