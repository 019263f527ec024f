"""`snakemake --profile profiles/comet` on a real single-node Slurm.

The cluster comes from tests/slurm/cluster.sh (Debian's munge, slurmctld,
slurmd, slurmdbd and MariaDB): .ci/run starts it; a root user with the
packages gets it started here. Without it these tests skip with how to run
them, except in CI (CI=true), where a missing cluster fails the run.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime

import pytest

from conftest import CONFIG, REPO, SNAKEFILE, generate

# The README's Slurm commands, as a user types them in the checkout;
# tests/test_docs.py checks that the README shows exactly these.
# test_the_readme_s_slurm_commands_as_typed runs the dry run and the unlock as
# they are; run_profile runs README_SLURM_RUN with a test tree, a folder of its
# own and status checks every 2 s added.
README_SLURM_RUN = "snakemake --profile profiles/comet"
README_SLURM_DRY_RUN = README_SLURM_RUN + " -n"
README_SLURM_UNLOCK = README_SLURM_RUN + " --unlock"
PROFILE = REPO / shlex.split(README_SLURM_RUN)[shlex.split(README_SLURM_RUN).index("--profile") + 1]
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


@pytest.fixture(scope="module")
def heavy_tree(tmp_path_factory):
    """100 smooth 4000x3000 JPEGs: ~0.15 s of decoding each, ~1 MB on disk."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("heavy") / "Scans"
    root.mkdir()
    y, x = np.mgrid[0:3000, 0:4000].astype(np.uint16)
    rng = np.random.default_rng(1)
    for i in range(100):
        base = x * (i % 7 + 1) // 16 + y // 12
        noise = rng.integers(0, 8, (3000, 4000), dtype=np.uint16)
        pixels = np.stack([base + noise, base + 40, base * 2 + noise], axis=-1) % 256
        Image.fromarray(pixels.astype(np.uint8)).save(root / f"scan_{i}.jpg", quality=90)
    return root


def run_profile(workdir, tree, *args, check=True, popen=False, config=(), env=None, per_job=40):
    """snakemake --profile profiles/comet, with status checks every 2 s
    (tests/slurm/profile) instead of the shipped 40 s."""
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir),
        "--configfile", str(CONFIG), "--profile", str(PROFILE),
        "--workflow-profile", str(TEST_PROFILE),
        "--config", f"input_dir={tree}", f"slurm_images_per_job={per_job}", *config, *args,
    ]  # fmt: skip
    env = {**os.environ, **(env or {})}
    if popen:
        log = open(workdir.parent / f"{workdir.name}.log", "w")
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
    result.output = result.stdout + result.stderr
    if check and result.returncode != 0:
        pytest.fail(f"snakemake --profile failed:\n{result.output[-6000:]}")
    return result


def test_the_readme_s_slurm_commands_as_typed(tmp_path):
    """The README's dry run and unlock, typed in a fresh checkout as a user
    does: the Slurm plan of the bundled sample, and nothing submitted. They
    only read the cluster (scontrol, sacctmgr, squeue), so this needs it up
    but, unlike the `slurm` fixture, never starts it or changes its limit."""
    if not slurm_answers():
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"CI must run the Slurm tests: {HOW_TO}")
        pytest.skip(HOW_TO)
    from test_deploy import copy_checkout

    checkout = copy_checkout(tmp_path / "imagestats")
    outputs = []
    for command in (README_SLURM_DRY_RUN, README_SLURM_UNLOCK):
        args = shlex.split(command)
        assert args[0] == "snakemake"
        result = subprocess.run([sys.executable, "-m", "snakemake", *args[1:]], cwd=checkout,
                                capture_output=True, text=True, timeout=600)  # fmt: skip
        outputs.append(result.stdout + result.stderr)
        assert result.returncode == 0, f"{command}:\n{outputs[-1][-4000:]}"
    dry, unlock = outputs
    assert "Slurm plan" in dry and "  images found       30\n" in dry, dry[-3000:]
    assert re.search(r"^  Slurm jobs due +1: 1 image_stats", dry, re.MULTILINE), dry[-3000:]
    assert "verdict            fits:" in dry, dry[-3000:]
    assert "Unlocked working directory." in unlock, unlock[-3000:]
    assert not (checkout / "results" / "stats.csv").exists()
    assert not (checkout / "logs" / "image_stats").exists()


def local_csv(tmp_path, tree, per_job=40, name="local"):
    work = tmp_path / name
    subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(work),
         "--configfile", str(CONFIG), "--cores", "2", "results/stats.csv",
         "--config", f"input_dir={tree}", f"images_per_job={per_job}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return (work / "results" / "stats.csv").read_bytes()


def planned_slurm_jobs(output):
    found = re.search(r"^  Slurm jobs due +(\d+):", output, re.MULTILINE)
    assert found, "the run printed no Slurm plan"
    return int(found.group(1))


def sacct_jobs_after(first_id):
    """Jobs with an id >= first_id: (id, state, account, partition, submit, end)."""
    return [job[:6] for job in sacct_records(first_id)]


def sacct_records(first_id):
    """(id, state, account, partition, submit, end, comment, timelimit, reqmem,
    elapsed s, total CPU s) of the jobs with an id >= first_id. TotalCPU is
    on the job's line without -X (summed over its steps)."""
    out = subprocess.run(
        ["sacct", "-n", "-P", "-a", "-o",
         "JobID,State,Account,Partition,Submit,End,Comment,Timelimit,ReqMem,ElapsedRaw,TotalCPU",
         "-S", "now-1hour"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    jobs = []
    for line in out.splitlines():
        job_id, state, account, partition, submit, end, comment, limit, mem, elapsed, cpu = line.split("|")
        if job_id.isdigit() and int(job_id) >= first_id:
            jobs.append((int(job_id), state.split()[0], account, partition, submit, end, comment,
                         limit, mem, int(elapsed or 0), seconds(cpu)))  # fmt: skip
    return jobs


def seconds(text):
    """sacct's [DD-][HH:]MM:SS[.mmm] as seconds."""
    if not text:
        return 0.0
    days, _, clock = text.rpartition("-")
    parts = [float(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0.0)
    return int(days or 0) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]


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
    # Slurm's logs are where docs/slurm.md says, and were kept
    assert list((work / "logs" / "slurm").glob("*/*/*.log"))


def test_one_slurm_job_per_shard_and_one_round_after_them(slurm, tree, tmp_path):
    """Every Slurm job measures exactly one shard (one Snakemake start, no
    srun step per shard), and the jobs after the shards are no Slurm jobs:
    they run on the submit host as soon as the last shard is seen done."""
    first = next_job_id()
    work = tmp_path / "slurm"
    result = run_profile(work, tree)
    shards = sorted(p.name[: -len(".jsonl")] for p in (work / "results" / "shards").glob("*.jsonl"))
    records = [r for r in sacct_records(first) if r[6].startswith("rule_")]
    comments = sorted(r[6] for r in records)
    assert comments == sorted(f"rule_image_stats_wildcards_{s}" for s in shards), comments
    for rule in ("aggregate_stats", "summarize_stats"):
        assert f"localrule {rule}:" in result.output
        assert (work / "logs" / f"{rule}.log").exists()
    # the local rules started after the last shard job ended, in one round
    last_end = max(datetime.fromisoformat(r[5]) for r in records)
    csv_made = datetime.fromtimestamp((work / "results" / "stats.csv").stat().st_mtime)
    assert csv_made >= last_end.replace(microsecond=0)


def test_a_two_cpu_job_keeps_both_cpus_busy(slurm, heavy_tree, tmp_path):
    """--set-threads image_stats=2 asks Slurm for 2 CPUs per shard job and
    the job measures with 2 processes: its TotalCPU exceeds its elapsed time."""
    first = next_job_id()
    work = tmp_path / "wide"
    result = run_profile(work, heavy_tree, "--set-threads", "image_stats=2", per_job=100_000)
    assert "CPUs per job       2" in result.output
    (job,) = [r for r in sacct_records(first) if r[6].startswith("rule_image_stats")]
    assert job[1] == "COMPLETED"
    elapsed, total_cpu = job[9], job[10]
    assert total_cpu > elapsed, f"TotalCPU {total_cpu} s, elapsed {elapsed} s"
    log = next((work / "logs" / "image_stats").glob("*.log")).read_text()
    assert "2 process(es)" in log


KILLER = """
import os, signal
target = os.environ.get("IMAGESTATS_TEST_KILL_ON")
if target:
    from PIL import Image
    _open = Image.open
    def _open_or_die(fp, *args, **kwargs):
        if str(getattr(fp, "name", fp)).endswith(target):  # a path or a file
            os.kill(os.getpid(), signal.SIGKILL)
        return _open(fp, *args, **kwargs)
    Image.open = _open_or_die
"""


def test_a_retry_asks_for_more_time_and_memory(slurm, tree, tmp_path):
    """A shard job killed on an image (a decoder crash, as the job sees it)
    fails; Snakemake's retry asks Slurm for twice the time and memory (seen
    in sacct), measures that image alone, and a second death on it becomes
    an error row: the run completes."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(KILLER)
    env = {"PYTHONPATH": str(hooks), "IMAGESTATS_TEST_KILL_ON": "Forest/Forest_7.jpg"}
    first = next_job_id()
    work = tmp_path / "retry"
    run_profile(work, tree, env=env, per_job=1000)
    records = [r for r in sacct_records(first) if r[6].startswith("rule_image_stats")]
    assert [r[1] for r in records] == ["FAILED", "COMPLETED"], records
    (limit1, mem1), (limit2, mem2) = [(seconds(r[7]), int(r[8].rstrip("MG"))) for r in records]
    assert limit2 == 2 * limit1 and mem2 == 2 * mem1, records
    rows = {line.split(",")[0]: line for line in (work / "results/stats.csv").read_text().splitlines()}
    assert "the measuring process died on this image in 2 attempts" in rows["Forest/Forest_7.jpg"]
    assert len(rows) == 301  # header + every image
    log = next((work / "logs" / "image_stats").glob("*.log")).read_text()
    assert re.search(r"\(\d+ measured, [1-9]\d* kept\)", log), log  # the retry kept the first attempt's rows


def test_the_plan_of_a_resumed_run_counts_only_what_is_due(slurm, tree, tmp_path):
    """After a finished run lost one shard table and one image changed, two
    shard jobs are due: the plan counts those two, and they fit a limit
    that the whole run would not."""
    work = tmp_path / "resume"
    snakemake_local(work, tree)
    tables = sorted((work / "results" / "shards").glob("*.jsonl"))
    assert len(tables) >= 4
    tables[0].unlink()
    lost = tables[0].name
    changed = changed_image(tree, work, avoid=lost)
    cluster("limit", "2")
    try:
        result = run_profile(work, tree, "-n", check=False)
    finally:
        cluster("limit", str(LIMIT))
    assert result.returncode == 0, result.output[-3000:]
    assert planned_slurm_jobs(result.output) == 2
    assert "most in flight     2 job(s)" in result.output
    assert "verdict            fits: at most 2 Slurm jobs in flight, 2 allowed" in result.output
    assert changed.exists()


def snakemake_local(work, tree, per_job=40):
    subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(work),
         "--configfile", str(CONFIG), "--cores", "2",
         "--config", f"input_dir={tree}", f"images_per_job={per_job}", f"slurm_images_per_job={per_job}"],
        check=True, capture_output=True,
    )  # fmt: skip


def changed_image(tree, work, avoid):
    """Touch an image of another shard than ``avoid``; return its path."""
    import json

    for table in sorted((work / "results" / "shards").glob("*.jsonl")):
        if table.name != avoid:
            path = json.loads(table.read_text().splitlines()[0])["path"]
            image = tree / path
            stat = image.stat()
            os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
            return image
    raise AssertionError("no other shard")


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


# ------------------------------------------------------------------ scale


def linked_tree(base, root, copies):
    """``copies`` hard-linked copies of the EuroSAT-like ``base`` tree under
    ``root`` (numbered on, as make_eurosat_like numbers copies): a large
    tree that costs one link per image."""
    for folder in sorted(base.iterdir()):
        images = sorted(folder.iterdir())
        out = root / folder.name
        out.mkdir(parents=True)
        for copy in range(copies):
            for number, image in enumerate(images, 1):
                os.link(image, out / f"{folder.name}_{number + copy * len(images)}.jpg")
    return root


@pytest.fixture(scope="module")
def base_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("base") / "EuroSAT_RGB"
    generate(str(root), scale=0.1, workers=2)  # 2,700 images
    return root


def measured(cmd, cwd=None):
    """(CompletedProcess-like output, wall seconds, peak MB of the process)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    return out, os.waitstatus_to_exitcode(status), time.monotonic() - start, usage.ru_maxrss / 1024


def test_270k_images_through_the_cluster_match_a_local_run(slurm, base_tree, tmp_path):
    tree = linked_tree(base_tree, tmp_path / "images" / "EuroSAT_RGB", 100)
    first = next_job_id()
    work = tmp_path / "slurm"
    result = run_profile(work, tree, per_job=25_000)
    planned = planned_slurm_jobs(result.output)
    jobs = wait_for_sacct(first, planned)
    assert len(jobs) == planned and {j[1] for j in jobs} == {"COMPLETED"}, jobs
    assert most_in_flight(jobs) <= LIMIT
    rows = (work / "results" / "stats.csv").read_bytes()
    assert rows.count(b"\n") == 270_001
    assert rows == local_csv(tmp_path, tree, per_job=4000)


def test_a_million_image_plan(slurm, base_tree, tmp_path):
    """999,000 images: the Slurm plan suggests settings that make at most
    ~40 Slurm jobs, and those settings do. Size and time are printed."""
    tree = linked_tree(base_tree, tmp_path / "images" / "EuroSAT_RGB", 370)
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(tmp_path / "work"),
        "--configfile", str(CONFIG), "--profile", str(PROFILE), "-n",
        "--config", f"input_dir={tree}",
    ]  # fmt: skip
    out, code, seconds, peak = measured(cmd)
    assert code == 0, out[-3000:]
    print(f"\nmillion-image dry run: {seconds:.1f} s, peak {peak:.0f} MB, {planned_slurm_jobs(out)} Slurm jobs")
    assert "images found       999,000" in out
    found = re.search(r"--config (slurm_images_per_job=\d+)", out)
    assert found, out[-3000:]
    out, code, seconds, peak = measured([*cmd, found.group(1)])
    assert code == 0, out[-3000:]
    print(f"with {found.group(1)}: {seconds:.1f} s, peak {peak:.0f} MB, {planned_slurm_jobs(out)} Slurm jobs")
    assert planned_slurm_jobs(out) <= 40
    assert "verdict            fits" in out


# --------------------------------------------- your analysis, your command


PER_BAND_MEAN = """\
from PIL import ImageStat


def band_means(image):
    stat = ImageStat.Stat(image)
    return {f"{band}_mean": mean for band, mean in zip(image.getbands(), stat.mean)}
"""


def test_a_user_function_through_slurm_matches_a_local_run(slurm, tmp_path):
    tree = tmp_path / "EuroSAT_RGB"
    generate(str(tree), per_class=3, workers=2)
    (tree / "River" / "broken.jpg").write_bytes(b"not a jpeg")
    code = tmp_path / "lab" / "scores.py"
    code.parent.mkdir()
    code.write_text(PER_BAND_MEAN)
    config = (f"analysis={code}:band_means",)
    run_profile(tmp_path / "slurm", tree, config=config, per_job=10)
    local = tmp_path / "local"
    subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(local), "--configfile", str(CONFIG),
         "--cores", "2", "results/stats.csv", "--config", f"input_dir={tree}", "images_per_job=10", *config],
        check=True, capture_output=True,
    )  # fmt: skip
    on_slurm = (tmp_path / "slurm" / "results" / "stats.csv").read_text()
    assert on_slurm == (local / "results" / "stats.csv").read_text()
    assert on_slurm.splitlines()[0] == "path,class,R_mean,G_mean,B_mean,error,note"
    assert len(on_slurm.splitlines()) == 32 and "River/broken.jpg,River,,,,not an image" in on_slurm


def test_the_guide_s_script_as_the_command_through_slurm(slurm, tmp_path):
    tree = tmp_path / "EuroSAT_RGB"
    generate(str(tree), per_class=3, workers=2)
    (tree / "River" / "broken.jpg").write_bytes(b"not a jpeg")
    work = tmp_path / "slurm"
    work.mkdir()
    shutil.copy(REPO / "tests" / "guide" / "image_processor.py", work / "image_processor.py")
    template = f"{sys.executable} image_processor.py -file {{}} -out {{outdir}}"
    run_profile(work, tree, config=(f"command={template}",), per_job=10)
    rows = (work / "results" / "stats.csv").read_text().splitlines()
    assert rows[0] == "path,class,exit_status,seconds,error,note" and len(rows) == 32
    broken = [row for row in rows if row.startswith("River/broken.jpg,")]
    assert broken and broken[0].split(",")[2] == "1" and "UnidentifiedImageError" in broken[0]
    written = sorted(p.name for p in (work / "results" / "command_output").iterdir())
    assert len(written) == 30 and written[0] == "AnnualCrop_1.jpg.txt"
    line = (work / "results" / "command_output" / "Forest_1.jpg.txt").read_text()
    assert line.startswith(f"filename:{tree}/Forest/Forest_1.jpg min:")
