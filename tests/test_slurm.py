"""`snakemake --profile profiles/comet` on a real single-node Slurm.

The cluster comes from tests/slurm/cluster.sh (Debian's munge, slurmctld,
slurmd, slurmdbd and MariaDB): .ci/run starts it; a root user with the
packages gets it started here. Without it these tests skip with how to run
them, except in CI (CI=true), where a missing cluster fails the run.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime

import pytest

from conftest import CONFIG, REPO, SNAKEFILE, generate

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
TEST_PROFILE = REPO / "tests" / "slurm" / "profile"
LIMIT = 8  # the cluster's MaxSubmitJobs for root (cluster.sh's default)
HOW_TO = (
    "needs a running Slurm: as root run `tests/slurm/cluster.sh install && "
    "tests/slurm/cluster.sh up`, then `pytest tests/test_slurm.py`"
)


def cluster(*args, check=True):
    return subprocess.run(["bash", str(CLUSTER), *args], capture_output=True, text=True, check=check)


def slurm_answers():
    try:
        out = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "is UP" in out.stdout


@pytest.fixture(scope="module")
def slurm():
    """A running test cluster, started here if need be (and stopped after)."""
    started = False
    if not slurm_answers() and os.geteuid() == 0 and shutil.which("slurmctld"):
        result = cluster("up", check=False)
        started = result.returncode == 0
        if not started:
            pytest.fail(f"tests/slurm/cluster.sh up failed:\n{result.stdout}\n{result.stderr}")
    if not slurm_answers():
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"CI must run the Slurm tests: {HOW_TO}")
        pytest.skip(HOW_TO)
    cluster("limit", str(LIMIT))
    yield
    cluster("limit", str(LIMIT))
    if started:
        cluster("down")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm_tree") / "EuroSAT_RGB"
    generate(str(root), per_class=30, workers=2)  # 300 images -> ~10 shards of <= 40
    return root


def run_profile(workdir, tree, *args, check=True, popen=False):
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir),
        "--configfile", str(CONFIG), "--profile", str(REPO / "profiles" / "comet"),
        "--workflow-profile", str(TEST_PROFILE),
        "--config", f"input_dir={tree}", "images_per_job=40", *args,
    ]  # fmt: skip
    if popen:
        log = open(workdir.parent / f"{workdir.name}.log", "w")
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    result.output = result.stdout + result.stderr
    if check and result.returncode != 0:
        pytest.fail(f"snakemake --profile failed:\n{result.output[-6000:]}")
    return result


def local_csv(tmp_path, tree):
    work = tmp_path / "local"
    subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(work),
         "--configfile", str(CONFIG), "--cores", "2", "results/stats.csv",
         "--config", f"input_dir={tree}", "images_per_job=40"],
        check=True, capture_output=True,
    )  # fmt: skip
    return (work / "results" / "stats.csv").read_bytes()


def planned_slurm_jobs(output):
    found = re.search(r"^  Slurm jobs +(\d+):", output, re.MULTILINE)
    assert found, "the run printed no Slurm plan"
    return int(found.group(1))


def sacct_jobs_after(first_id):
    """Jobs with an id >= first_id: (id, state, account, partition, submit, end)."""
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-a", "-o", "JobID,State,Account,Partition,Submit,End",
         "-S", "now-1hour"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    jobs = []
    for line in out.splitlines():
        job_id, state, account, partition, submit, end = line.split("|")
        if job_id.isdigit() and int(job_id) >= first_id:
            jobs.append((int(job_id), state.split()[0], account, partition, submit, end))
    return jobs


def next_job_id():
    """The id the next submitted job will get (at least)."""
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-a", "-o", "JobID", "-S", "now-1day"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    ids = [int(i) for i in out.split() if i.isdigit()]
    return max(ids, default=0) + 1


def most_in_flight(jobs):
    """Most jobs submitted and not yet ended at any one time."""
    events = []
    for _, _, _, _, submit, end in jobs:
        events.append((datetime.fromisoformat(submit), 1))
        events.append((datetime.fromisoformat(end), -1))
    level = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # ends before starts at a tie
        level += step
        peak = max(peak, level)
    return peak


def wait_for_sacct(first_id, count, timeout=30):
    """sacct lags submissions by up to a second: wait until it lists them all."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = sacct_jobs_after(first_id)
        if len(jobs) >= count and all(j[5] not in ("Unknown", "") for j in jobs):
            return jobs
        if time.monotonic() > deadline:
            return jobs
        time.sleep(1)


def test_profile_run_matches_plan_limit_and_local_csv(slurm, tree, tmp_path):
    first = next_job_id()
    work = tmp_path / "slurm"
    result = run_profile(work, tree)
    planned = planned_slurm_jobs(result.output)
    assert "verdict            fits" in result.output
    jobs = wait_for_sacct(first, planned)
    assert len(jobs) == planned, jobs
    assert {j[1] for j in jobs} == {"COMPLETED"}, jobs
    assert {j[2] for j in jobs} == {"comet_abc123"}
    assert {j[3] for j in jobs} == {"default_free"}
    assert most_in_flight(jobs) <= LIMIT
    assert (work / "results" / "stats.csv").read_bytes() == local_csv(tmp_path, tree)
    # Slurm's logs are where the README says, and were kept
    assert list((work / "logs" / "slurm").glob("*/*.log"))


def test_plan_catches_a_limit_below_jobs_before_submitting(slurm, tree, tmp_path):
    first = next_job_id()
    cluster("limit", "2")  # the profile has jobs: 8; the plan needs more than 2 at once
    try:
        result = run_profile(tmp_path / "work", tree, check=False)
    finally:
        cluster("limit", str(LIMIT))
    assert result.returncode != 0
    assert "MaxSubmitJobs of user root in account comet_abc123" in result.output
    assert re.search(
        r"WOULD BE REFUSED: \d+ Slurm jobs in flight but only 2 more allowed\. Set jobs: 2 ", result.output
    )
    time.sleep(2)  # let sacct catch up with anything that was submitted
    assert sacct_jobs_after(first) == []


def test_plan_counts_jobs_already_queued(slurm, tree, tmp_path):
    held = [
        subprocess.run(
            ["sbatch", "--parsable", "--hold", "-A", "comet_abc123", "-p", "short_free",
             "--mem=100", "-t", "1", "--wrap", "true"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        for _ in range(LIMIT - 1)
    ]
    try:
        result = run_profile(tmp_path / "work", tree, "-n", check=False)
    finally:
        subprocess.run(["scancel", *held], check=True)
    assert result.returncode != 0
    assert f"{LIMIT - 1} already queued" in result.output
    assert "only 1 more allowed. Set jobs: 1" in result.output
    assert "wait for your queued jobs to finish" in result.output


def running_job_ids():
    out = subprocess.run(["squeue", "-h", "-t", "R", "-o", "%i"], capture_output=True, text=True).stdout
    return out.split()


def test_cancelled_job_is_recovered_by_a_rerun(slurm, tree, tmp_path):
    work = tmp_path / "slurm"
    work.mkdir()
    first = next_job_id()
    proc = run_profile(work, tree, "--retries", "0", popen=True)
    deadline = time.monotonic() + 300
    cancelled = None
    while cancelled is None and time.monotonic() < deadline and proc.poll() is None:
        running = running_job_ids()
        if running:
            cancelled = running[0]
            subprocess.run(["scancel", "--signal=KILL", "--full", cancelled], check=True)
        time.sleep(0.2)
    assert cancelled, "no Slurm job was seen running"
    proc.wait(timeout=600)
    states = {str(j[0]): j[1] for j in wait_for_sacct(first, 1)}
    assert states[cancelled] in ("CANCELLED", "FAILED"), states
    assert proc.returncode != 0  # the cancelled job failed the run
    rerun = run_profile(work, tree)
    assert "verdict            fits" in rerun.output
    assert (work / "results" / "stats.csv").read_bytes() == local_csv(tmp_path, tree)
