"""The head dies, Slurm hiccups (issue 22), on the real test cluster.

Each test runs `snakemake --profile profiles/comet` on a small tree whose
shard jobs are slowed down (0.1 s per image, a sitecustomize on
PYTHONPATH, which sbatch exports to the jobs), breaks something mid-run,
and checks that stats.csv equals a local run's and that no row says
"died". Like tests/test_slurm.py: without the cluster they skip, except in
CI (CI=true), where they fail.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import CONFIG, REPO, SNAKEFILE, generate
from test_slurm import TEST_PROFILE, cluster, slurm  # noqa: F401  (slurm: the cluster fixture)

from imagestats.slurm import live_jobs_of_workdir

PER_JOB = 50  # 200 images -> 5 shards
SLOW = "0.1"
# At most 3 shard jobs in flight (2 run on the node's 2 CPUs, 1 waits): room
# under MaxSubmitJobs 8 for other people's tests on the same cluster.
JOBS = 3  # seconds per image in the shard jobs: ~5 s of measuring per shard

SLOW_HOOK = """
import os
_slow = float(os.environ.get("IMAGESTATS_TEST_SLOW") or 0)
if _slow:
    import time
    from PIL import Image
    _open = Image.open
    def _slow_open(fp, *args, **kwargs):
        time.sleep(_slow)
        return _open(fp, *args, **kwargs)
    Image.open = _slow_open
"""


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults_tree") / "EuroSAT_RGB"
    generate(str(root), per_class=20, workers=2)
    return root


@pytest.fixture(scope="module")
def hooks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hooks")
    (folder / "sitecustomize.py").write_text(SLOW_HOOK)
    return folder


@pytest.fixture(scope="module")
def local_stats(tree, tmp_path_factory):
    work = tmp_path_factory.mktemp("local")
    subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(work), "--configfile", str(CONFIG),
         "--cores", "2", "results/stats.csv", "--config", f"input_dir={tree}", f"images_per_job={PER_JOB}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return (work / "results" / "stats.csv").read_bytes()


def profile_cmd(work, tree, *args):
    return [
        sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(work),
        "--configfile", str(CONFIG), "--profile", str(REPO / "profiles" / "comet"),
        "--workflow-profile", str(TEST_PROFILE),
        "--config", f"input_dir={tree}", f"slurm_images_per_job={PER_JOB}", "--jobs", str(JOBS), *args,
    ]  # fmt: skip


def slow_env(hooks, **more):
    return {**os.environ, "PYTHONPATH": str(hooks), "IMAGESTATS_TEST_SLOW": SLOW, **more}


def default_sighup():
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


class Head:
    """A `snakemake --profile profiles/comet` in the background."""

    def __init__(self, work, tree, hooks, *args, env=None):
        work.mkdir(exist_ok=True)
        self.work = work
        self.cmd = profile_cmd(work, tree, *args)
        self.env = env or slow_env(hooks)
        self.start()

    def start(self):
        self.log_file = self.work.parent / f"{self.work.name}-{time.monotonic_ns()}.log"
        # As from a terminal, whatever started the tests (under `nohup` the
        # head would rightly ignore SIGHUP).
        self.proc = subprocess.Popen(self.cmd, stdout=open(self.log_file, "w"), stderr=subprocess.STDOUT,
                                     env=self.env, preexec_fn=default_sighup)  # fmt: skip

    @property
    def output(self):
        return self.log_file.read_text()

    def wait(self, timeout=300):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the head did not end within {timeout} s:\n{self.output[-4000:]}")


def jobs_of(work):
    return live_jobs_of_workdir(str(work)) or []


def wait_for(condition, timeout, what, pause=0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(pause)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


REFUSED = "WOULD BE REFUSED"  # other people's jobs on the shared test cluster fill the submit limit


def running_and_pending(work, head):
    """Jobs of ``work`` once at least one runs and one waits. A head that
    stopped because other people's jobs left no room under the submit
    limit is started again."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if head.proc.poll() is not None:
            if REFUSED not in head.output:
                pytest.fail(f"the head ended early:\n{head.output[-4000:]}")
            time.sleep(5)
            head.start()
            continue
        jobs = jobs_of(work)
        states = {job.state for job in jobs}
        if "RUNNING" in states and "PENDING" in states:
            return jobs
        time.sleep(0.3)
    pytest.fail("timed out waiting for running and pending shard jobs")


def no_jobs_left(work, timeout=60):
    wait_for(lambda: not jobs_of(work), timeout, f"no Slurm job of {work} left")


def locks(work):
    folder = work / ".snakemake" / "locks"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def rerun(work, tree, hooks, *args):
    for _ in range(60):
        result = subprocess.run(profile_cmd(work, tree, *args), capture_output=True, text=True, timeout=600,
                                env=slow_env(hooks))  # fmt: skip
        result.output = result.stdout + result.stderr
        if REFUSED not in result.output:
            break
        time.sleep(5)
    return result


def check_stats(work, local_stats):
    stats = (work / "results" / "stats.csv").read_bytes()
    assert b"died" not in stats
    assert stats == local_stats


# ------------------------------------------------------------------ tests


def test_kill_9_of_the_head_then_the_readme_recovery(slurm, tree, hooks, local_stats, tmp_path):
    """kill -9 with jobs running and pending: the jobs run on. The README's
    recovery (--unlock, the same command) stops before submitting, naming
    them; after they end, the same command completes with the local CSV."""
    work = tmp_path / "work"
    head = Head(work, tree, hooks)
    orphans = running_and_pending(work, head)
    head.proc.send_signal(signal.SIGKILL)
    head.wait()
    assert locks(work), "kill -9 leaves Snakemake's lock"
    unlock = rerun(work, tree, hooks, "--unlock")
    assert unlock.returncode == 0, unlock.output[-3000:]
    stopped = rerun(work, tree, hooks)
    assert stopped.returncode != 0
    assert "STOPPED: " in stopped.output and "of an earlier run in this folder" in stopped.output
    ids = {job.job_id for job in orphans}
    for job_id in ids:
        assert job_id in stopped.output
    assert "Nothing was submitted." in stopped.output
    # nothing new was submitted: only the orphans, no twin
    assert {job.job_id for job in jobs_of(work)} <= ids
    assert not locks(work)  # the stopped run released its lock
    # wait for them, as the message says, then the same command
    no_jobs_left(work, timeout=300)
    done = rerun(work, tree, hooks)
    assert done.returncode == 0, done.output[-4000:]
    check_stats(work, local_stats)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["INT", "TERM", "HUP"])
def test_an_interrupted_head_cancels_every_job_and_unlocks(slurm, tree, hooks, local_stats, tmp_path, signum):
    """Ctrl-C, kill and a closed session: no job of the run is left, the lock
    is gone, and the same command (no --unlock) completes."""
    work = tmp_path / "work"
    head = Head(work, tree, hooks)
    running_and_pending(work, head)
    head.proc.send_signal(signum)
    assert head.wait(timeout=120) != 0
    assert "Cancelled every Slurm job of run" in head.output, head.output[-3000:]
    no_jobs_left(work, timeout=30)
    assert not locks(work)
    time.sleep(5)
    assert not jobs_of(work)  # none submitted late
    done = rerun(work, tree, hooks)
    assert done.returncode == 0, done.output[-4000:]
    check_stats(work, local_stats)


def write_failing_squeue(folder):
    """A `squeue` first on PATH that fails while ``folder``/fail exists."""
    real = subprocess.run(["which", "squeue"], capture_output=True, text=True, check=True).stdout.strip()
    shim = folder / "squeue"
    shim.write_text(
        "#!/bin/sh\n"
        f'if [ -e "{folder}/fail" ]; then echo "squeue: error: slurm_load_jobs error: timeout" >&2; exit 1; fi\n'
        f'exec {real} "$@"\n'
    )
    shim.chmod(0o755)
    return folder / "fail"


def test_failing_status_queries_do_not_hang_the_run(slurm, tree, hooks, local_stats, tmp_path):
    """squeue fails for 30 s while the shard jobs run and end: the plugin
    alone drops every job and waits forever; the run goes on and completes."""
    shims = tmp_path / "shims"
    shims.mkdir()
    fail = write_failing_squeue(shims)
    work = tmp_path / "work"
    env = slow_env(hooks, PATH=f"{shims}:{os.environ['PATH']}")
    head = Head(work, tree, hooks, env=env)
    running_and_pending(work, head)
    fail.touch()
    try:
        time.sleep(30)
    finally:
        fail.unlink()
    assert head.wait(timeout=300) == 0, head.output[-4000:]
    assert "did not answer the status queries" in head.output
    check_stats(work, local_stats)


def test_scontrol_requeue_of_a_running_shard_job(slurm, tree, hooks, local_stats, tmp_path):
    work = tmp_path / "work"
    head = Head(work, tree, hooks)
    jobs = running_and_pending(work, head)
    running = [job.job_id for job in jobs if job.state == "RUNNING"]
    subprocess.run(["scontrol", "requeue", running[0]], check=True)
    assert head.wait(timeout=300) == 0, head.output[-4000:]
    check_stats(work, local_stats)


def test_slurmctld_stopped_and_started_mid_run(slurm, tree, hooks, local_stats, tmp_path):
    """A controller outage of ~30 s while jobs run and two shards are still
    to be submitted: status queries fail (the run keeps watching), and an
    sbatch that slurmctld does not answer is tried again, not failed."""
    work = tmp_path / "work"
    head = Head(work, tree, hooks)
    running_and_pending(work, head)
    stop = cluster("stop-controller", check=False)
    try:
        assert stop.returncode == 0, stop.stdout + stop.stderr
        time.sleep(30)
    finally:
        start = cluster("start-controller", check=False)
    assert start.returncode == 0, start.stdout + start.stderr
    assert head.wait(timeout=400) == 0, head.output[-4000:]
    check_stats(work, local_stats)


def test_a_twin_shard_job_started_by_hand(slurm, tree, hooks, local_stats, tmp_path):
    """The batch script of a running shard job submitted again by hand: the
    twin waits for the shard's lock, and the rows are the local run's."""
    work = tmp_path / "work"
    head = Head(work, tree, hooks)
    jobs = running_and_pending(work, head)
    original = next(job for job in jobs if job.state == "RUNNING")
    script = tmp_path / "twin.sh"
    subprocess.run(["scontrol", "write", "batch_script", original.job_id, str(script)], check=True,
                   capture_output=True)  # fmt: skip
    twin = subprocess.run(
        ["sbatch", "--parsable", "-D", str(work), "-A", "comet_abc123", "-p", "default_free", "--mem=500",
         "-t", "10", "-J", "twin", "-o", str(tmp_path / "twin-%j.log"), str(script)],
        capture_output=True, text=True, check=True, env=slow_env(hooks),
    ).stdout.strip().split(";")[0]  # fmt: skip
    assert head.wait(timeout=300) == 0, head.output[-4000:]
    wait_for(lambda: not subprocess.run(["squeue", "-h", "-j", twin], capture_output=True, text=True).stdout.strip(),
             120, "the twin to end")  # fmt: skip
    state = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "State", "-j", twin], capture_output=True, text=True)
    assert state.stdout.split()[0] == "COMPLETED", (state.stdout, (tmp_path / f"twin-{twin}.log").read_text())
    check_stats(work, local_stats)
    logs = [p.read_text() for p in (work / "logs" / "image_stats").glob("*.log")]
    assert not any("died" in log for log in logs)


def test_the_head_submitted_with_sbatch(slurm, tree, hooks, local_stats, tmp_path):
    """profiles/comet/head.sbatch: its shard jobs ask for their set-threads
    CPUs (2, more than this 1-CPU head has); the INT it gets before its time
    limit (sent here at once) cancels them and unlocks; submitted again, it
    completes with the local CSV."""
    work = tmp_path / "work"
    work.mkdir()
    args = ["-s", str(SNAKEFILE), "--configfile", str(CONFIG), "--workflow-profile", str(TEST_PROFILE),
            "--config", f"input_dir={tree}", f"slurm_images_per_job={PER_JOB}"]  # fmt: skip
    env = slow_env(hooks, IMAGESTATS_PROFILE=str(REPO / "profiles" / "comet"))

    def submit_head(*more):
        out = subprocess.run(
            ["sbatch", "--parsable", "-c", "1", "-t", "30", "-D", str(work),
             str(REPO / "profiles" / "comet" / "head.sbatch"),
             *args, *more],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out.stdout.strip().split(";")[0]

    def head_log(job_id):
        log = work / f"imagestats-head-{job_id}.log"
        return log.read_text() if log.exists() else ""

    def ended(job_id):
        return not subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True).stdout.strip()

    head = submit_head("--set-threads", "image_stats=2")
    try:
        wait_for(lambda: jobs_of(work), 120, "the head job's shard jobs")
        cpus = subprocess.run(["squeue", "-h", "-n", jobs_of(work)[0].run, "-o", "%C"], capture_output=True,
                              text=True).stdout.split()  # fmt: skip
        assert cpus and set(cpus) == {"2"}, (cpus, head_log(head))
    finally:
        subprocess.run(["scancel", "--batch", "--signal=INT", head], check=False)
    wait_for(lambda: ended(head), 120, "the head job to end")
    assert "Cancelled every Slurm job of run" in head_log(head), head_log(head)[-3000:]
    no_jobs_left(work, timeout=30)
    assert not locks(work)
    again = submit_head("--set-threads", "image_stats=1")
    wait_for(lambda: ended(again), 400, "the second head job to end", pause=2)
    state = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "State", "-j", again], capture_output=True, text=True)
    assert state.stdout.split()[0] == "COMPLETED", head_log(again)[-4000:]
    check_stats(work, local_stats)
