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
