"""The Slurm plan: how many Slurm jobs a run submits, and whether the
cluster's submit limits (MaxSubmitJobs, GrpSubmitJobs) let it.

Slurm refuses an `sbatch` beyond the limit, and Snakemake's Slurm executor
treats a refused submission as a failed job: the run dies half-way. So the
plan counts the Slurm jobs this run will submit (only those still due after
a partial run, a cancelled job or a changed image) once Snakemake knows
them, before anything is submitted, dry runs included. Limits are read live
with `sacctmgr`, jobs already queued with `squeue`; where they do not
answer, the limit configured in the profile is used.

Before that, it looks for live Slurm jobs of an earlier run of this working
directory (see live_jobs_of_workdir) and, if there are any, stops before
submitting anything, naming them and what to do.
"""

import getpass
import math
import os
import subprocess
from dataclasses import dataclass, field

# The rule that measures shards: one Slurm job per shard.
SHARD_RULE = "image_stats"


@dataclass
class Limit:
    value: int
    what: str  # e.g. "MaxSubmitJobs of user root in account comet_abc123"
    queued: int  # jobs already counted against it


@dataclass
class LiveJob:
    """A queued or running Slurm job that a Snakemake run of this working
    directory submitted (squeue: its work dir and the plugin's comment)."""

    job_id: str
    run: str  # the job name: the submitting run's id (the plugin's run uuid)
    comment: str  # the plugin's rule_<rule>[_wildcards_<values>]
    state: str

    @property
    def what(self):
        return self.comment.removeprefix("rule_").replace("_wildcards_", " ", 1)


@dataclass
class Job:
    """One Slurm job this run submits."""

    rule: str
    cpus: int
    runtime_min: int
    mem_mb: int


@dataclass
class SlurmPlan:
    images: int
    shards: int
    smallest: int
    largest: int
    images_per_job: int
    mb_per_job: int
    due: list  # Job for every Slurm job this run submits (shards and others)
    jobs: int  # the profile's jobs: most Slurm jobs queued + running at once
    account: str
    local_rules: tuple = ()  # rules after the shards that run on the submit host
    limits: list = field(default_factory=list)
    source: str = ""  # where the limits come from
    notes: list = field(default_factory=list)
    earlier: list = field(default_factory=list)  # LiveJob of an earlier run of this folder

    @property
    def shard_jobs(self):
        return [job for job in self.due if job.rule == SHARD_RULE]

    @property
    def slurm_jobs(self):
        return len(self.due)

    @property
    def most_in_flight(self):
        # Shard jobs are independent and no later Slurm job waits on another
        # (the rules after the shards are local): all may be in flight at once.
        return min(self.jobs, self.slurm_jobs)

    @property
    def cpus_in_flight(self):
        cpus = sorted((job.cpus for job in self.due), reverse=True)
        return sum(cpus[: self.most_in_flight])

    @property
    def headroom(self):
        """Slurm jobs this run may have queued + running, or None if unknown."""
        if not self.limits:
            return None
        return min(limit.value - limit.queued for limit in self.limits)

    @property
    def fits(self):
        return not self.earlier and (self.headroom is None or self.most_in_flight <= self.headroom)

    def describe(self, profile_hint="profiles/comet/config.yaml"):
        shard_jobs = self.shard_jobs
        lines = [
            "Slurm plan",
            f"  images found       {self.images:,}",
            f"  shards             {self.shards:,} of {self.smallest:,}-{self.largest:,} images"
            f" (slurm_images_per_job: {self.images_per_job:,}, slurm_mb_per_job: {self.mb_per_job:,})",
            f"  Slurm jobs due     {self.slurm_jobs:,}: {len(shard_jobs):,} image_stats (one shard each)"
            + (f" + {self.slurm_jobs - len(shard_jobs)} other" if self.slurm_jobs > len(shard_jobs) else "")
            + (f"; {', '.join(self.local_rules)} run here after them" if self.local_rules else ""),
        ]
        if self.due:
            lines += [
                f"  CPUs per job       {_span(job.cpus for job in self.due)}"
                f" (--set-threads {SHARD_RULE}=N, or set-threads in the profile)",
                f"  time asked         {_span(job.runtime_min for job in self.due)} min per job",
                f"  memory asked       {_span(job.mem_mb for job in self.due)} MB per job",
            ]
        lines.append(
            f"  most in flight     {self.most_in_flight:,} job(s), {self.cpus_in_flight:,} CPUs (jobs: {self.jobs})"
        )
        if self.limits:
            for limit in self.limits:
                lines.append(
                    f"  submit limit       {limit.value:,} = {limit.what}; {limit.queued:,} already queued"
                    + (f" (not counting the {len(self.earlier)} of this folder's earlier run)" if self.earlier else "")
                )
        else:
            lines.append("  submit limit       unknown (sacctmgr did not answer, no slurm_submit_limit set)")
        lines.append(f"  limits from        {self.source}")
        lines.append(f"  verdict            {self.verdict(profile_hint)}")
        lines.extend(f"  note               {note}" for note in self.notes)
        return "\n".join(lines)

    def verdict(self, profile_hint="profiles/comet/config.yaml"):
        if self.earlier:
            return earlier_jobs_verdict(self.earlier)
        if self.headroom is None:
            return "unchecked: no submit limit known"
        if self.fits:
            return (
                f"fits: at most {self.most_in_flight:,} Slurm jobs in flight, "
                f"{self.headroom:,} allowed"
            )
        allowed = max(0, self.headroom)
        return (
            f"WOULD BE REFUSED: {self.most_in_flight:,} Slurm jobs in flight but only "
            f"{allowed:,} more allowed. Set jobs: {allowed} in {profile_hint} (or --jobs "
            f"{allowed})"
            + (", or wait for your queued jobs to finish" if any(lim.queued for lim in self.limits) else "")
            + ". Nothing was submitted."
        )


def earlier_jobs_verdict(earlier):
    """Why a run stops when Slurm jobs of an earlier run of its folder still
    live, and what to do.

    Stop, not take over: Snakemake watches only the jobs it submitted itself
    (it asks Slurm for its own run id) and has no way to adopt another run's
    jobs, so a run that went on would submit their shards again: two live
    jobs per shard (the shard lock makes the second wait, but it holds a
    slot and its cores, and counts against the submit limit). Waiting for
    them inside this run would mean a second, home-made job monitor. The
    jobs themselves lose nothing: each journals its rows, and the rerun
    after they end (or are cancelled) reuses every image they measured."""
    ids = [job.job_id for job in earlier]
    shown = ", ".join(f"{job.job_id} ({job.what}, {job.state})" for job in earlier[:10])
    more = f" and {len(earlier) - 10} more" if len(earlier) > 10 else ""
    runs = sorted({job.run for job in earlier})
    return (
        f"STOPPED: {len(earlier)} Slurm job(s) of an earlier run in this folder are still queued or "
        f"running: {shown}{more} (run id {', '.join(runs)}). Snakemake cannot take over jobs it did not "
        "submit, so this run would submit their shards again. Either wait for them to end "
        f"(`squeue -j {','.join(ids)}` lists those still there) or cancel them (`scancel {' '.join(ids)}`), "
        "then rerun the same command: it reuses every image they measured. If the Snakemake that "
        "submitted them still runs (another terminal, a head job), let it finish instead. "
        "Nothing was submitted."
    )


def _span(values):
    values = sorted(set(values))
    return f"{values[0]:,}" if len(values) == 1 else f"{values[0]:,}-{values[-1]:,}"


# The plan suggests settings that make about this many shard jobs (at most
# ~40) when a run would make more: each Slurm job waits in the queue and
# costs seconds to start, and under a submit limit fewer, wider jobs finish
# sooner.
TARGET_SHARD_JOBS = 32


def suggestion(images, total_mb, shard_jobs, images_per_job, mb_per_job):
    """Settings that cut the shards to about TARGET_SHARD_JOBS, or None.

    Trie leaves hold between half and all of a limit, so a limit of
    images / 32 (plus 3% for the hash's unevenness) gives 32 leaves."""
    if shard_jobs <= 40:
        return None
    settings = []
    per_job = math.ceil(images * 1.03 / TARGET_SHARD_JOBS / 1000) * 1000
    if per_job > images_per_job:
        settings.append(f"slurm_images_per_job={per_job}")
    mb = math.ceil(total_mb * 1.03 / TARGET_SHARD_JOBS / 100) * 100
    if mb > mb_per_job:
        settings.append(f"slurm_mb_per_job={mb}")
    if not settings:
        return None
    return (
        f"{shard_jobs:,} image_stats Slurm jobs: --config {' '.join(settings)} makes about "
        f"{TARGET_SHARD_JOBS}; with more CPUs per job (set-threads) each finishes sooner"
    )


def _without(limit, earlier):
    """``limit`` with the earlier run's jobs taken out of its queued count:
    they are this folder's own, and the run stops for them anyway."""
    return Limit(limit.value, limit.what, max(0, limit.queued - len(earlier)))


def _run(cmd, timeout=10):
    """stdout of a Slurm command, or None where it is missing or fails."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def _int(text):
    text = (text or "").strip()
    return int(text) if text.isdigit() else None


def _count_queued(args):
    """Jobs counted against submit limits: pending, running, suspended; an
    array element counts one each (squeue -r lists them one per line)."""
    out = _run(["squeue", "-h", "-r", "-t", "PD,R,S,CF,CG,RQ,RH", "-o", "%i", *args])
    return None if out is None else len(out.split())


# Job states that are not over yet (as _count_queued counts them).
LIVE_STATES = "PD,R,S,CF,CG,RQ,RH,RS,SI,SO,ST"


def live_jobs_of_workdir(workdir, run=None):
    """Your queued or running Slurm jobs that a Snakemake run of ``workdir``
    submitted, or None if squeue does not answer.

    The Slurm executor plugin submits every job with ``-D <workdir>`` (its
    work dir, squeue's %Z), ``--job-name <run uuid>`` (%j) and
    ``--comment rule_<rule>_wildcards_<values>`` (%k, ``group_...`` for
    group jobs): a job with this folder as work dir and such a comment is a
    job of a run of this folder. Anything else (your other work, a head job
    running snakemake here, which has no such comment) is not."""
    out = (run or _run)(["squeue", "--me", "-h", "-t", LIVE_STATES, "-o", "%i|%j|%T|%Z|%k"])
    if out is None:
        return None
    here = os.path.realpath(workdir)
    found = []
    for line in out.splitlines():
        parts = line.split("|", 4)
        if len(parts) != 5:
            continue
        job_id, name, state, folder, comment = (p.strip() for p in parts)
        if not comment.startswith(("rule_", "group_")) or not folder:
            continue
        if os.path.realpath(folder) == here:
            found.append(LiveJob(job_id, name, comment, state))
    return found


def live_limits(account, user=None):
    """Limits from sacctmgr and queued jobs from squeue, or None if Slurm's
    accounting does not answer."""
    user = user or getpass.getuser()
    assoc = _run(
        ["sacctmgr", "-n", "-P", "show", "assoc", "where", f"account={account}",
         "format=User,MaxSubmit,GrpSubmit,QOS"]
    )  # fmt: skip
    if assoc is None:
        return None
    queued_user = _count_queued(["-u", user, "-A", account])
    queued_account = _count_queued(["-A", account])
    limits, qos_names = [], set()
    for line in assoc.splitlines():
        parts = line.split("|")
        if len(parts) < 4:
            continue
        who, max_submit, grp_submit, qos = parts[:4]
        if who == user:
            if _int(max_submit) is not None:
                limits.append(Limit(_int(max_submit), f"MaxSubmitJobs of user {user} in account {account}", queued_user or 0))
            if _int(grp_submit) is not None:
                limits.append(Limit(_int(grp_submit), f"GrpSubmitJobs of user {user} in account {account}", queued_user or 0))
            qos_names.update(q for q in qos.split(",") if q)
        elif who == "" and _int(grp_submit) is not None:
            limits.append(Limit(_int(grp_submit), f"GrpSubmitJobs of account {account}", queued_account or 0))
    if qos_names:
        qos_out = _run(["sacctmgr", "-n", "-P", "show", "qos", "format=Name,MaxSubmitPU,GrpSubmit"]) or ""
        for line in qos_out.splitlines():
            name, per_user, grp = (line.split("|") + ["", "", ""])[:3]
            if name in qos_names:
                if _int(per_user) is not None:
                    limits.append(Limit(_int(per_user), f"MaxSubmitJobsPerUser of QOS {name}", _count_queued(["-u", user, "-q", name]) or 0))
                if _int(grp) is not None:
                    limits.append(Limit(_int(grp), f"GrpSubmitJobs of QOS {name}", _count_queued(["-q", name]) or 0))
    return limits


def make_slurm_plan(summary, due, jobs, account, configured_limit, local_rules=(),
                    live=live_limits, earlier=()):  # fmt: skip
    """The plan for a run of the shards in ``summary`` (a plan.Plan) that
    submits the Slurm jobs ``due`` (Job), with ``local_rules`` after them.
    ``earlier``: live Slurm jobs of an earlier run of this folder (LiveJob):
    the run stops for them, and they do not count as somebody else's
    queued jobs against the limits."""
    sizes = [shard.images for shard in summary.shards.values()] or [0]
    plan = SlurmPlan(
        images=summary.images,
        shards=len(summary.shards),
        smallest=min(sizes),
        largest=max(sizes),
        images_per_job=summary.images_per_job,
        mb_per_job=summary.mb_per_job,
        due=list(due),
        jobs=jobs,
        account=account,
        local_rules=tuple(local_rules),
        earlier=list(earlier),
    )
    found = live(account) if account else None
    if found is not None:
        plan.limits = [_without(limit, plan.earlier) for limit in found]
        plan.source = "sacctmgr and squeue (live)"
        if not found:
            plan.source += ": no MaxSubmitJobs / GrpSubmitJobs set for you"
    elif configured_limit is not None:
        queued = _count_queued(["-u", getpass.getuser()])
        plan.limits = [_without(Limit(configured_limit, "slurm_submit_limit in the profile", queued or 0), plan.earlier)]
        plan.source = "the profile's slurm_submit_limit (sacctmgr did not answer)"
    else:
        plan.source = "nowhere: set resources: slurm_submit_limit=N in the profile"
    total_mb = sum(shard.bytes for shard in summary.shards.values()) / 1e6
    advice = suggestion(summary.images, total_mb, len(summary.shards), summary.images_per_job,
                        summary.mb_per_job)  # fmt: skip
    if advice:
        plan.notes.append(advice)
    if os.environ.get("SLURM_JOB_ID"):
        plan.notes.append("running inside a Slurm job: its own job counts as queued")
    return plan
