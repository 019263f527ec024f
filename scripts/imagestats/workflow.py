"""What the Snakefile does at parse time, kept out of the Snakefile.

Parsing runs again in every cluster job and every `snakemake` call, so the
main process plans (walks the images, writes the shard lists) and every
other process (a cluster job, a group member) reads the plan's index
instead of walking tens of thousands of files again.
"""

import gc
import sys
import threading
from dataclasses import dataclass

from .plan import ConfigError, make_plan, read_plan_index, write_plan
from .slurm import SHARD_GROUP, SHARD_RULE, make_slurm_plan


@dataclass
class PlanSummary:
    """The plan's index (plan.write_plan), which every process can read."""

    source: str
    images: int
    images_per_job: int
    shards: dict  # name -> number of images
    slurm_check: object = None  # called once, when the DAG is built (Slurm runs)

    def describe(self):
        sizes = self.shards.values()
        return (
            f"Plan: {self.images:,} images from {self.source}; "
            f"{len(self.shards):,} shard(s) of {min(sizes):,} to {max(sizes):,} images "
            f"(images_per_job: {self.images_per_job:,}), one image_stats job each."
        )

    def slurm_group(self, wildcards):
        """The `group:` of image_stats jobs, and the hook for the Slurm plan.

        Snakemake tells a workflow its group settings (the profile's
        group-components: how many shards share one Slurm job) only once
        it builds the DAG, in dry runs too and before anything is
        submitted: the first group lookup is where the plan is checked.
        """
        check, self.slurm_check = self.slurm_check, None
        if check is not None:
            check()
        return SHARD_GROUP


class PlanError(Exception):
    """Raised before any job starts; the message says what to change."""


def plan_for_workflow(workflow, config, plan_dir):
    if not workflow.is_main_process:
        return PlanSummary(**read_plan_index(plan_dir))
    try:
        plan = make_plan(config)
    except ConfigError as e:
        raise PlanError(str(e)) from None
    summary = PlanSummary(**write_plan(plan, plan_dir))
    print(summary.describe(), file=sys.stderr)
    slurm = slurm_settings(workflow)
    if slurm is not None:
        summary.slurm_check = lambda: check_slurm_plan(workflow, summary, *slurm)
    return summary


def check_slurm_plan(workflow, summary, account, limit):
    """Print the Slurm plan; stop the run if Slurm would refuse a submission."""
    jobs = workflow.resource_settings.nodes or 1
    per_job = workflow.group_settings.group_components.get(SHARD_GROUP, 1)
    # Every other rule that runs something and is not a local rule becomes one
    # Slurm job. workflow.is_local() says True for all rules in a dry run (the
    # dry-run executor is local), so this asks the rule-level half of it;
    # Snakemake keeps the localrules set only as a private attribute.
    local = getattr(workflow, "_localrules", set())
    final_rules = [
        rule.name for rule in workflow.rules
        if rule.name != SHARD_RULE and rule.name not in local
        and not rule.norun and not rule.is_template_engine
    ]  # fmt: skip
    slurm_plan = make_slurm_plan(summary, jobs, account, limit, per_job, final_rules)
    print(slurm_plan.describe(), file=sys.stderr)
    if not slurm_plan.fits:
        raise PlanError(slurm_plan.verdict())


def slurm_settings(workflow):
    """(account, configured submit limit) when the run uses a Slurm profile
    such as profiles/comet, else None.

    Snakemake does not tell a Snakefile its executor at parse time; a
    profile for this workflow sets slurm_account (default-resources) and
    slurm_submit_limit (resources), and their presence marks a Slurm run.
    """
    defaults = workflow.resource_settings.default_resources
    args = getattr(defaults, "args", None) or []
    values = dict(a.split("=", 1) for a in args if "=" in a)
    account = values.get("slurm_account", "").strip("'\"") or None
    limit = workflow.global_resources.get("slurm_submit_limit")
    limit = getattr(limit, "value", limit)
    if account is None and limit is None:
        return None
    return account, limit


def config_problem(error):
    """One actionable line for a failed config validation.

    ``error`` is Snakemake's WorkflowError, raised while handling the
    jsonschema ValidationError that has the offending key and a message.
    """
    cause = error
    while cause is not None and not hasattr(cause, "absolute_path"):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return str(error)
    key = ".".join(str(p) for p in cause.absolute_path)
    if cause.validator == "additionalProperties":
        known = ", ".join(sorted(cause.schema.get("properties", {})))
        return (
            f"config: {cause.message} at {key or 'top level'}; "
            f"remove the key or fix its spelling (known keys: {known})"
        )
    hint = cause.schema.get("description", "")
    return (
        f"config key '{key}': {cause.message}"
        + (f" (expected: {hint})" if hint else "")
        + "; change it in config/config.yaml, --config or --configfile"
    )


def before_exit():
    """What a finished run (onsuccess, onerror) drops so that it exits sooner.

    - The scheduler's re-evaluation timers. Each scheduling round of
      Snakemake's job rate limiter (the default --max-jobs-per-timespan
      100/1s) starts a non-daemon threading.Timer of one second, and Python
      waits for it at exit: every run would end ~1 s after its last job.
      Scheduling is over here, so the timers can go.
    - The garbage collections of interpreter shutdown. They walk every
      object Snakemake and its imports (pandas, sqlalchemy, pydantic) made:
      0.23-0.28 s after every run, to free memory the exit frees anyway.
      gc.freeze() moves those objects out of the collector's reach;
      Snakemake's own cleanup, atexit handlers and finalizers run as before.
    """
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.cancel()
    gc.freeze()


def python_for_shell(workflow):
    """The interpreter for `shell:` rules: the one running Snakemake (it has
    Pillow), or the conda env's `python` when rules run in conda envs."""
    methods = workflow.deployment_settings.deployment_method
    if any(getattr(m, "name", str(m)).upper() == "CONDA" for m in methods):
        return "python"
    return sys.executable
