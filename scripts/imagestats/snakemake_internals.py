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


def in_snakemake_log_write(frame):
    """Whether ``frame`` runs inside Snakemake's log handler
    (snakemake.logging.ColorizingTextHandler.emit), which swallows a
    KeyboardInterrupt: a stop signal raised there would be lost, and the
    run would go on (workflow.install_stop_handlers raises it again once
    the line is written)."""
    from snakemake.logging import ColorizingTextHandler

    emit = ColorizingTextHandler.emit.__code__
    while frame is not None:
        if frame.f_code is emit:
            return True
        frame = frame.f_back
    return False


# ---------------------------------------------------------------- Slurm faults
#
# What follows touches the Slurm executor plugin (2.8.0) and Snakemake's
# RemoteExecutor where they leave jobs running or a run waiting forever (see
# docs/slurm.md, "Faults and recovery"). Each returns whether it
# applied; tests/test_snakemake_internals.py checks every name it relies on.


def slurm_executor(workflow):
    """The run's Slurm executor (the plugin's Executor), or None."""
    try:
        from snakemake_executor_plugin_slurm import Executor
    except ImportError:
        return None
    scheduler = getattr(workflow, "scheduler", None)
    executor = getattr(scheduler, "_executor", None)
    return executor if isinstance(executor, Executor) else None


def _say(text):
    """A line on stderr that cannot fail (the terminal may be gone: SIGHUP)."""
    import sys

    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _ignore_stop_signals():
    """A second Ctrl-C (or the TERM after a head job's INT) must not cut the
    cancelling and the unlocking short."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)


def scancel_run(run_id, attempts=3, pause=2.0, run=None):
    """Cancel every Slurm job named ``run_id`` (the plugin names each job of
    a run by the run's id): the jobs Snakemake's own cancel missed too.
    Twice, ``pause`` s apart, so a job slurmctld accepted a moment late is
    caught by the second; each retried while slurmctld does not answer.
    Returns whether Slurm took both."""
    import getpass
    import subprocess
    import time

    def scancel():
        cmd = ["scancel", "-u", getpass.getuser(), "--name", run_id]
        for attempt in range(attempts):
            try:
                done = (run or subprocess.run)(cmd, capture_output=True, text=True, timeout=60)
                if done.returncode == 0:
                    return True
            except (OSError, subprocess.SubprocessError):
                pass
            time.sleep(pause * (attempt + 1))
        return False

    first = scancel()
    time.sleep(pause)
    return scancel() and first


def cancel_every_job_on_interrupt(workflow, scancel=scancel_run):
    """Make the Slurm executor's cancel (Ctrl-C; here also SIGTERM and
    SIGHUP, see workflow.install_stop_handlers) leave no job behind.

    RemoteExecutor.cancel() scancels a copy of ``active_jobs``, then shuts
    down. Two races leave jobs running (SLURM-FAULTS.md): sbatch calls still
    queued in the plugin's submission pool run after the copy was taken
    (shutdown waits for them), and a status check in progress has emptied
    ``active_jobs`` while it queries. So: first stop the submission pool
    (queued sbatch calls are dropped, one under way finishes), then the
    executor's own cancel, then scancel by the run's id, which names every
    job the run submitted whatever list it is on."""
    executor = slurm_executor(workflow)
    if executor is None:
        return False
    original = executor.cancel
    submitting = []  # set as an sbatch starts: a run that submitted nothing cancels nothing

    for name in ("run_job", "run_array_jobs"):
        submit = getattr(executor, name)

        def counted(jobs, _submit=submit):
            submitting.append(True)
            return _submit(jobs)

        setattr(executor, name, counted)

    def cancel():
        _ignore_stop_signals()
        _stopping(executor).set()  # no more sbatch retries (retry_sbatch_while_the_controller_is_down)
        try:
            executor._job_submission_executor.shutdown(wait=True, cancel_futures=True)
        except Exception as e:  # noqa: BLE001 - the scancel below must still run
            _say(f"warning: stopping the submissions failed: {e}")
        try:
            original()
        except Exception as e:  # noqa: BLE001
            _say(f"warning: Snakemake's own cancel failed: {e}")
        if not submitting:
            return
        _say(f"Cancelling the Slurm jobs of this run (run id {executor.run_uuid}) ...")
        if scancel(executor.run_uuid):
            _say(f"Cancelled every Slurm job of run {executor.run_uuid}; the lock is released on exit.")
        else:
            _say(
                f"warning: Slurm did not take the cancel of run {executor.run_uuid}: cancel its jobs "
                f"yourself once Slurm answers: scancel -u $USER --name {executor.run_uuid}"
            )

    executor.cancel = cancel
    return True


def _stopping(executor):
    """An Event set once the run is being cancelled."""
    import threading

    event = executor.__dict__.get("_imagestats_stopping")
    if event is None:
        event = executor.__dict__.setdefault("_imagestats_stopping", threading.Event())
    return event


# What sbatch says when slurmctld does not answer (Slurm 22.05-24.11).
CONTROLLER_DOWN = ("Unable to contact slurm controller", "Socket timed out", "Connection refused")
# How long a submission is retried while slurmctld does not answer.
SUBMIT_RETRY_SECONDS = 10 * 60


def retry_sbatch_while_the_controller_is_down(workflow, seconds=SUBMIT_RETRY_SECONDS, clock=None, first_pause=5.0):
    """An sbatch refused because slurmctld does not answer (a restart, an
    outage) is tried again, 5 s then up to 60 s apart, for up to
    ``seconds``, instead of being a failed job: the plugin reports it as
    one, and Snakemake's retries are used up within seconds, ending the run.
    Any other refusal (a limit, a bad request) is reported at once, as
    before. A cancel (Ctrl-C) stops the retrying."""
    import threading
    import time

    executor = slurm_executor(workflow)
    if executor is None:
        return False
    clock = clock or time.monotonic
    original_report = executor._report_job_error_threadsafe
    original_run_job = executor.run_job
    local = threading.local()
    said = []

    def report(job_info, msg):
        if getattr(local, "retrying", False) and any(text in str(msg) for text in CONTROLLER_DOWN):
            local.refused = msg
            return
        original_report(job_info, msg)

    def run_job(job):
        from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo

        deadline, pause = clock() + seconds, first_pause
        stop = _stopping(executor)
        while True:
            local.retrying, local.refused = True, None
            try:
                original_run_job(job)
            finally:
                local.retrying = False
            if local.refused is None:
                return
            if stop.is_set() or clock() >= deadline:
                original_report(SubmittedJobInfo(job), local.refused)
                return
            if not said:
                said.append(True)
                _say("warning: slurmctld does not answer sbatch; trying again (up to "
                     f"{seconds // 60} minutes) instead of failing the job")  # fmt: skip
            if stop.wait(pause):
                original_report(SubmittedJobInfo(job), local.refused)
                return
            pause = min(pause * 2, 60.0)

    executor._report_job_error_threadsafe = report
    executor.run_job = run_job
    return True


# Job states the plugin 2.8.0 waits on forever (it yields them as running):
# PREEMPTED (without requeue) and NODE_FAIL (with --slurm-requeue).
ENDED_BUT_WAITED_ON = ("PREEMPTED", "NODE_FAIL")
# States sacct gives a job that ended without success.
FAILED_STATES = (
    "BOOT_FAIL", "CANCELLED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT",
)  # fmt: skip
# A job missing from successful status answers this long (squeue forgets a
# job MinJobAge after it ends, e.g. while the status queries failed) is
# looked up in sacct.
MISSING_SECONDS = 60
# Status queries failing this long end the run's wait: its jobs are
# reported failed (and retried, or the run ends) instead of watched forever.
GIVE_UP_SECONDS = 30 * 60


def _lookup(answer, job_id):
    for key in (job_id, job_id.split("_")[0]):
        if key in answer:
            return answer[key].split()[0] if answer[key] else ""
    return None


def _sacct_states(job_ids):
    import subprocess

    try:
        out = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-o", "JobIDRaw,State", "-j", ",".join(job_ids)],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return {}
    states = {}
    for line in out.splitlines():
        job_id, _, state = line.partition("|")
        if job_id and state:
            states[job_id.strip()] = state.split()[0]
    return states


def keep_watching_through_failed_queries(workflow, clock=None, sacct=_sacct_states, scancel=None):
    """Make the Slurm executor's status checks never drop a job unseen.

    - When all ``--slurm-status-attempts`` queries of a check fail, plugin
      2.8.0 reports nothing for the run's jobs and drops them from
      monitoring: the run waits forever (plugin issue #207). Every job the
      check neither reported nor kept is kept here, and checked again next
      time; after GIVE_UP_SECONDS of failures they are reported failed.
    - PREEMPTED and NODE_FAIL (under --slurm-requeue) are kept as running
      forever: here the job is cancelled (so a requeue cannot make a twin of
      the retry) and reported failed, so Snakemake's retries submit it again.
    - A job missing from successful answers for MISSING_SECONDS (squeue
      forgets ended jobs after MinJobAge) is looked up in sacct.
    - NODE_FAIL puts the node into --exclude of every later sbatch of the
      run: on a small partition every retry is then refused. Slurm keeps a
      failed node out of service itself, so the exclusion is undone.
    """
    import time

    import snakemake_executor_plugin_slurm as plugin

    executor = slurm_executor(workflow)
    if executor is None:
        return False
    clock = clock or time.monotonic
    original_check = executor.check_active_jobs
    original_query = plugin.query_job_status
    configured_exclude = set(executor._failed_nodes)
    cycle = {"answer": None}
    state = {"failing_since": None, "missing_since": {}, "said": False}
    reported = set()
    for name in ("report_job_success", "report_job_error"):
        original_report = getattr(executor, name)

        def report(job_info, *args, _original=original_report, **kwargs):
            reported.add(id(job_info))
            return _original(job_info, *args, **kwargs)

        setattr(executor, name, report)

    async def query(command, logger):
        answer, duration = await original_query(command, logger)
        if answer is not None:
            cycle["answer"] = answer
        return answer, duration

    if plugin.query_job_status is not query:
        plugin.query_job_status = query

    def cancel_one(job_id):
        import subprocess

        try:
            (scancel or subprocess.run)(["scancel", job_id], capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            pass

    async def check(active_jobs):
        cycle["answer"] = None
        reported.clear()
        kept = [job async for job in original_check(active_jobs)]
        executor._failed_nodes = set(configured_exclude)
        answer = cycle["answer"]
        now = clock()
        missing_long = []
        for job in kept:
            found = None if answer is None else _lookup(answer, job.external_jobid or "")
            if found in ENDED_BUT_WAITED_ON:
                cancel_one(job.external_jobid)
                executor.report_job_error(
                    job,
                    msg=f"Slurm job {job.external_jobid} ended {found}: it is submitted again "
                    "(Snakemake's retries) instead of waited on.",
                )
                continue
            if answer is not None and found is None and job.external_jobid:
                since = state["missing_since"].setdefault(job.external_jobid, now)
                if now - since >= MISSING_SECONDS:
                    missing_long.append(job)
                    continue
            elif job.external_jobid:
                state["missing_since"].pop(job.external_jobid, None)
            yield job
        if missing_long:
            states = sacct([job.external_jobid for job in missing_long])
            for job in missing_long:
                ended = states.get(job.external_jobid)
                if ended == "COMPLETED":
                    executor.report_job_success(job)
                elif ended in FAILED_STATES:
                    executor.report_job_error(job, msg=f"Slurm job {job.external_jobid} ended {ended}.")
                else:  # still queued or running, or sacct does not know it yet
                    yield job
        seen = {id(job) for job in kept}
        dropped = [job for job in active_jobs if id(job) not in seen and id(job) not in reported]
        if not dropped:
            if state["failing_since"] is not None and state["said"]:
                _say("Slurm answers status queries again; watching the run's jobs as before.")
            state["failing_since"], state["said"] = None, False
            return
        if state["failing_since"] is None:
            state["failing_since"] = now
        failing = now - state["failing_since"]
        if failing >= GIVE_UP_SECONDS:
            for job in dropped:
                executor.report_job_error(
                    job,
                    msg=f"Slurm has not answered a status query for {failing / 60:.0f} minutes: "
                    f"job {job.external_jobid} is given up as failed (check it with squeue -j "
                    f"{job.external_jobid}; a rerun reuses what it measured).",
                )
            return
        if not state["said"]:
            state["said"] = True
            _say(
                f"warning: Slurm did not answer the status queries of {len(dropped)} job(s); "
                "still watching them (Snakemake's Slurm plugin would drop them and wait forever)."
            )
        for job in dropped:
            yield job

    executor.check_active_jobs = check
    return True
