"""The few places where the workflow reads Snakemake's internals.

Snakemake has no public API for these, so each is one small function here,
and tests/test_snakemake_internals.py runs them against a real Snakemake so
an upgrade that changes them fails loudly instead of planning wrongly.
"""


def needrun_jobs(workflow):
    """The jobs this run will execute (its DAG after deciding what is up to
    date): what a dry run lists, and what a real run submits."""
    dag = workflow.dag
    if dag is None:
        raise RuntimeError("the DAG is not built yet")
    return list(dag.needrun_jobs())


def local_rules(workflow):
    """Names of the rules declared in ``localrules:``. workflow.is_local()
    says True for every rule in a dry run (the dry-run executor is local),
    so the plan of a Slurm run asks the rule-level half of it."""
    return set(workflow._localrules)


def slurm_profile_values(workflow):
    """(default-resources as a dict of text, global resources as a dict)."""
    defaults = workflow.resource_settings.default_resources
    args = getattr(defaults, "args", None) or []
    values = dict(a.split("=", 1) for a in args if "=" in a)
    limits = {name: getattr(v, "value", v) for name, v in workflow.global_resources.items()}
    return values, limits


def end_status_sleep_at_shutdown(workflow):
    """Let a remote executor's shutdown return within a second.

    The Slurm executor's status thread sleeps 40-180 s between checks, and
    RemoteExecutor.shutdown() joins it: a run whose last jobs are local
    rules ended only when that sleep did, up to minutes after its last
    output. This replaces the executor's sleep by the same wait in 1 s steps
    that stop once shutdown has begun; the checks keep their pacing (no
    extra status query). Returns whether it applied.
    """
    import asyncio

    from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor

    scheduler = getattr(workflow, "scheduler", None)
    executor = getattr(scheduler, "_executor", None)
    if not isinstance(executor, RemoteExecutor) or not hasattr(executor, "wait"):
        return False

    async def sleep():
        loop = asyncio.get_running_loop()
        end = loop.time() + executor.next_seconds_between_status_checks
        while executor.wait and loop.time() < end:
            await asyncio.sleep(min(1.0, end - loop.time()))

    executor.sleep = sleep
    return True
