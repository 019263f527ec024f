"""The Slurm plan: how many Slurm jobs a run submits, and whether the
cluster's submit limits (MaxSubmitJobs, GrpSubmitJobs) let it.

Slurm refuses an `sbatch` beyond the limit, and Snakemake's Slurm executor
treats a refused submission as a failed job: the run dies half-way. So the
plan is checked at parse time, before anything is submitted. Limits are
read live with `sacctmgr`, jobs already queued with `squeue`; where they do
not answer, the limit configured in the profile is used.
"""

import getpass
import math
import os
import subprocess
from dataclasses import dataclass, field

# The rule that measures shards and its Snakemake group; the profile's
# group-components for the group is how many shards one Slurm job runs.
SHARD_RULE = "image_stats"
SHARD_GROUP = "shards"

@dataclass
class Limit:
    value: int
    what: str  # e.g. "MaxSubmitJobs of user root in account comet_abc123"
    queued: int  # jobs already counted against it


@dataclass
class SlurmPlan:
    images: int
    shards: int
    smallest: int
    largest: int
    images_per_job: int
    per_slurm_job: int  # group-components of the shards group
    jobs: int  # the profile's jobs: most Slurm jobs queued + running at once
    account: str
    final_rules: tuple = ()  # rules after the shards, one Slurm job each
    limits: list = field(default_factory=list)
    source: str = ""  # where the limits come from
    notes: list = field(default_factory=list)

    @property
    def shard_jobs(self):
        return math.ceil(self.shards / self.per_slurm_job)

    @property
    def slurm_jobs(self):
        return self.shard_jobs + len(self.final_rules)

    @property
    def most_in_flight(self):
        # shard jobs are independent; the final rules run after them, all but
        # one at once (summarize_stats waits for aggregate_stats' CSV, while
        # plot_stats reads the shard tables and runs beside either)
        return min(self.jobs, max(self.shard_jobs, len(self.final_rules) - 1))

    @property
    def headroom(self):
        """Slurm jobs this run may have queued + running, or None if unknown."""
        if not self.limits:
            return None
        return min(limit.value - limit.queued for limit in self.limits)

    @property
    def fits(self):
        return self.headroom is None or self.most_in_flight <= self.headroom

    def describe(self, profile_hint="profiles/comet/config.yaml"):
        lines = [
            "Slurm plan",
            f"  images found       {self.images:,}",
            f"  shards             {self.shards:,} of {self.smallest:,}-{self.largest:,} images"
            f" (images_per_job: {self.images_per_job:,})",
            f"  Slurm jobs         {self.slurm_jobs:,}: {self.shard_jobs:,} image_stats job(s) of up to"
            f" {self.per_slurm_job} shard(s) + {len(self.final_rules)} ({', '.join(self.final_rules)})",
            f"  most in flight     {self.most_in_flight:,} (jobs: {self.jobs})",
        ]
        if self.limits:
            for limit in self.limits:
                lines.append(
                    f"  submit limit       {limit.value:,} = {limit.what}; {limit.queued:,} already queued"
                )
        else:
            lines.append("  submit limit       unknown (sacctmgr did not answer, no slurm_submit_limit set)")
        lines.append(f"  limits from        {self.source}")
        lines.append(f"  verdict            {self.verdict(profile_hint)}")
        lines.extend(f"  note               {note}" for note in self.notes)
        return "\n".join(lines)

    def verdict(self, profile_hint="profiles/comet/config.yaml"):
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


def make_slurm_plan(summary, jobs, account, configured_limit, per_slurm_job, final_rules,
                    live=live_limits):  # fmt: skip
    """The plan for a run with the shards in ``summary`` (a PlanSummary) and
    ``final_rules`` after them (the workflow's other non-local rules)."""
    sizes = list(summary.shards.values()) or [0]
    plan = SlurmPlan(
        images=summary.images,
        shards=len(summary.shards),
        smallest=min(sizes),
        largest=max(sizes),
        images_per_job=summary.images_per_job,
        per_slurm_job=per_slurm_job,
        jobs=jobs,
        account=account,
        final_rules=tuple(final_rules),
    )
    found = live(account) if account else None
    if found is not None:
        plan.limits = found
        plan.source = "sacctmgr and squeue (live)"
        if not found:
            plan.source += ": no MaxSubmitJobs / GrpSubmitJobs set for you"
    elif configured_limit is not None:
        queued = _count_queued(["-u", getpass.getuser()])
        plan.limits = [Limit(configured_limit, "slurm_submit_limit in the profile", queued or 0)]
        plan.source = "the profile's slurm_submit_limit (sacctmgr did not answer)"
    else:
        plan.source = "nowhere: set resources: slurm_submit_limit=N in the profile"
    if plan.shard_jobs > 4 * jobs:
        # Each Slurm job pays a queue wait; each shard in it a srun step and
        # a Snakemake start. Fewer, bigger shards cut both.
        better = math.ceil(summary.images / (4 * jobs * per_slurm_job) / 1000) * 1000
        plan.notes.append(
            f"{plan.shard_jobs:,} image_stats Slurm jobs, {jobs} at a time: "
            f"images_per_job: {better:,} would make that about {4 * jobs}"
        )
    if os.environ.get("SLURM_JOB_ID"):
        plan.notes.append("running inside a Slurm job: its own job counts as queued")
    return plan
