"""What imagestats.snakemake_internals relies on in Snakemake: these fail
loudly when an upgrade changes it, instead of a plan that silently counts
wrong or a Slurm run that waits again after its last job."""

import asyncio
import inspect
import io
import logging
import os
import re
import threading

import pytest

from conftest import snakemake
import snakemake.api as _api  # noqa: F401  (imports workflow and dag in the order they need)
from snakemake.workflow import Workflow
from snakemake.dag import DAG  # noqa: E402
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor

from imagestats import snakemake_internals


def test_the_dag_tells_which_jobs_are_due():
    assert isinstance(inspect.getattr_static(Workflow, "dag"), property)
    assert "exclude_finished" in inspect.signature(DAG.needrun_jobs).parameters
    assert "self._localrules" in inspect.getsource(Workflow)


def test_the_plan_counts_the_jobs_snakemake_runs(small_tree, tmp_path):
    """The storage plan's shard count comes from needrun_jobs: it must be
    the number of image_stats jobs in Snakemake's own job table."""
    first = snakemake(tmp_path, "--cores", "2", config=(f"input_dir={small_tree}", "images_per_job=7"))
    table = tmp_path / "results" / "shards" / sorted(p.name for p in (tmp_path / "results/shards").iterdir())[0]
    table.unlink()
    (tmp_path / "results" / "stats.csv").unlink()  # else Snakemake needs no table again
    again = snakemake(tmp_path, "--cores", "2", "-n", config=(f"input_dir={small_tree}", "images_per_job=7"))
    assert re.search(r"^image_stats\s+1$", again.output, re.MULTILINE), again.output[-2000:]
    created = int(re.search(r"creates\s+([\d,]+) files", again.output).group(1).replace(",", ""))
    everything = int(re.search(r"creates\s+([\d,]+) files", first.output).group(1).replace(",", ""))
    assert created < everything  # one shard due, not all of them


def test_the_remote_executor_sleeps_in_a_method_shutdown_waits_for():
    source = inspect.getsource(RemoteExecutor)
    assert inspect.iscoroutinefunction(RemoteExecutor.sleep)
    assert "await self.sleep()" in source
    assert "self.wait_thread.join()" in inspect.getsource(RemoteExecutor.shutdown)
    assert isinstance(inspect.getattr_static(RemoteExecutor, "next_seconds_between_status_checks"), property)


class FakeExecutor(RemoteExecutor):
    """A RemoteExecutor without a cluster: only what the sleep uses."""

    def __init__(self):  # no super().__init__: nothing is submitted
        self.wait = True
        self._next_seconds_between_status_checks = 30

    def run_job(self, job):  # pragma: no cover
        pass

    async def check_active_jobs(self, active_jobs):  # pragma: no cover
        yield

    def cancel_jobs(self, active_jobs):  # pragma: no cover
        pass


class FakeWorkflow:
    def __init__(self, executor):
        self.scheduler = type("Scheduler", (), {"_executor": executor})()


def test_shutdown_ends_the_status_sleep_within_a_second():
    executor = FakeExecutor()
    assert snakemake_internals.end_status_sleep_at_shutdown(FakeWorkflow(executor))
    done = threading.Event()
    thread = threading.Thread(target=lambda: (asyncio.run(executor.sleep()), done.set()))
    thread.start()
    assert not done.wait(1.5)  # it keeps its 30 s pace while the run goes on
    executor.wait = False  # what shutdown() sets before it joins the thread
    assert done.wait(2)
    thread.join()


def test_other_executors_are_left_alone():
    assert not snakemake_internals.end_status_sleep_at_shutdown(FakeWorkflow(object()))


# ------------------------------------------------- Slurm faults (issue 22)

import signal  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import snakemake_executor_plugin_slurm as slurm_plugin  # noqa: E402
from snakemake.scheduling.job_scheduler import JobScheduler  # noqa: E402
from snakemake_executor_plugin_slurm import Executor as SlurmExecutor  # noqa: E402
from snakemake_executor_plugin_slurm.submit_string import get_submit_command  # noqa: E402
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo  # noqa: E402


def test_what_the_interrupt_path_relies_on():
    """A KeyboardInterrupt in the scheduler's loop (Ctrl-C; SIGTERM and
    SIGHUP via workflow.install_stop_handlers) calls the executor's cancel;
    onstart runs after the scheduler installed its own SIGTERM handler (so
    ours, installed in onstart, wins); the plugin names every job by the
    run's id and submits through a pool we can stop."""
    schedule = inspect.getsource(JobScheduler.schedule)
    assert re.search(r"except \(KeyboardInterrupt, SystemExit\):.*?self\._executor\.cancel\(\)", schedule, re.S)
    assert "signal.signal(signal.SIGTERM, self.exit_gracefully)" in inspect.getsource(JobScheduler.__init__)
    execute = inspect.getsource(Workflow.execute)
    assert execute.index("self.scheduler = JobScheduler(") < execute.index("self._onstart(")
    assert execute.index("self._onstart(") < execute.index("self.scheduler.schedule()")
    post_init = inspect.getsource(SlurmExecutor.__post_init__)
    assert "self.run_uuid = " in post_init and "self._job_submission_executor = ThreadPoolExecutor(" in post_init
    assert "self._job_submission_executor.submit(self.run_job" in inspect.getsource(SlurmExecutor._submit_job)
    assert "submit(self.run_array_jobs" in inspect.getsource(SlurmExecutor._submit_array_jobs)
    assert "--job-name {safe_quote(params.run_uuid)}" in inspect.getsource(get_submit_command)
    assert "--comment {safe_quote(params.comment_str)}" in inspect.getsource(get_submit_command)
    assert "-D {safe_quote(params.workdir)}" in inspect.getsource(get_submit_command)
    cancel = inspect.getsource(RemoteExecutor.cancel)
    assert "active_jobs = list(self.active_jobs)" in cancel and "self.shutdown()" in cancel


def test_what_the_status_watch_relies_on():
    check = inspect.getsource(SlurmExecutor.check_active_jobs)
    assert "await query_job_status(" in check  # looked up as a module global
    assert callable(slurm_plugin.query_job_status)
    assert "self._failed_nodes.add(node)" in check
    assert 'elif status == "PREEMPTED"' in check
    assert "self.check_active_jobs(active_jobs)" in inspect.getsource(RemoteExecutor._wait_for_jobs)
    assert "self._failed_nodes = " in inspect.getsource(SlurmExecutor.__post_init__)


def fake_slurm_executor(reports):
    """The plugin's Executor without a cluster or a workflow run."""
    from throttler import Throttler

    executor = SlurmExecutor.__new__(SlurmExecutor)
    settings = SimpleNamespace(
        init_seconds_before_status_checks=1, status_attempts=2, keep_successful_logs=True, requeue=False,
        status_command="squeue",
    )  # fmt: skip
    executor.workflow = SimpleNamespace(
        executor_settings=settings,
        remote_execution_settings=SimpleNamespace(seconds_between_status_checks=1),
    )
    executor.logger = SimpleNamespace(debug=print, info=print, warning=print, error=print)
    executor.run_uuid = "run-uuid"
    executor.status_rate_limiter = Throttler(rate_limit=1000, period=1)
    executor._next_seconds_between_status_checks = None
    executor._preemption_warning = False
    executor._failed_nodes = set()
    executor._status_query_calls = executor._status_query_failures = 0
    executor._status_query_total_seconds = 0.0
    executor._status_query_min_seconds = None
    executor._status_query_max_seconds = 0.0
    executor._status_query_cycle_rows = []
    executor.report_job_success = lambda job, *a, **k: reports.append(("success", job.external_jobid))
    executor.report_job_error = lambda job, *a, **k: reports.append(("error", job.external_jobid))
    return executor


def jobs(*ids):
    return [SubmittedJobInfo(job=SimpleNamespace(), external_jobid=i, aux={}) for i in ids]


def run_check(executor, active):
    async def collect():
        return [job.external_jobid async for job in executor.check_active_jobs(active)]

    return asyncio.run(collect())


class Answers:
    """The plugin's status query, answering what ``now`` says (None: it fails)."""

    def __init__(self, monkeypatch, now):
        self.now = now
        monkeypatch.setattr(slurm_plugin, "get_min_job_age", lambda: 300)
        monkeypatch.setattr(slurm_plugin, "is_query_tool_available", lambda tool: True)
        monkeypatch.setattr(slurm_plugin, "query_job_status", self.query)

    async def query(self, command, logger):
        return (None, None) if self.now is None else (dict(self.now), 0.01)


def test_failed_status_queries_drop_the_jobs_in_the_plugin_and_not_here(monkeypatch):
    slurm = Answers(monkeypatch, None)
    reports = []
    plain = fake_slurm_executor(reports)
    # the plugin as it is: every query fails, and it keeps no job (issue #207)
    assert run_check(plain, jobs("1", "2")) == [] and reports == []
    executor = fake_slurm_executor(reports)
    workflow = FakeWorkflow(executor)
    now = [0.0]
    assert snakemake_internals.keep_watching_through_failed_queries(workflow, clock=lambda: now[0])
    assert run_check(executor, jobs("1", "2")) == ["1", "2"] and reports == []
    # Slurm answers again: the states are reported as usual
    slurm.now = {"1": "COMPLETED", "2": "RUNNING"}
    active = jobs("1", "2")
    assert run_check(executor, active) == ["2"] and reports == [("success", "1")]
    # failing for longer than GIVE_UP_SECONDS: given up as failed, not waited on
    slurm.now = None
    reports.clear()
    assert run_check(executor, jobs("2")) == ["2"]
    now[0] += snakemake_internals.GIVE_UP_SECONDS
    assert run_check(executor, jobs("2")) == [] and reports == [("error", "2")]


def test_preempted_and_node_fail_are_failed_and_retried_not_waited_on(monkeypatch):
    slurm = Answers(monkeypatch, {"1": "PREEMPTED", "2": "RUNNING"})
    reports = []
    plain = fake_slurm_executor(reports)
    assert run_check(plain, jobs("1", "2")) == ["1", "2"]  # the plugin waits on PREEMPTED
    executor = fake_slurm_executor(reports)
    executor.workflow.executor_settings.requeue = True  # NODE_FAIL is then waited on too
    cancelled = []
    assert snakemake_internals.keep_watching_through_failed_queries(
        FakeWorkflow(executor), scancel=lambda cmd, **k: cancelled.append(cmd)
    )
    assert run_check(executor, jobs("1", "2")) == ["2"]
    assert reports == [("error", "1")] and cancelled == [["scancel", "1"]]
    reports.clear()
    slurm.now = {"2": "NODE_FAIL"}
    monkeypatch.setattr(slurm_plugin.subprocess, "check_output", lambda *a, **k: "node1\n")
    assert run_check(executor, jobs("2")) == [] and reports == [("error", "2")]
    assert executor._failed_nodes == set()  # the retry is not kept off the partition's nodes


def test_a_job_squeue_forgot_is_looked_up_in_sacct(monkeypatch):
    Answers(monkeypatch, {"2": "RUNNING"})
    reports = []
    executor = fake_slurm_executor(reports)
    now = [0.0]
    snakemake_internals.keep_watching_through_failed_queries(
        FakeWorkflow(executor), clock=lambda: now[0], sacct=lambda ids: {"1": "COMPLETED"}
    )
    assert run_check(executor, jobs("1", "2")) == ["1", "2"]
    now[0] += snakemake_internals.MISSING_SECONDS
    assert run_check(executor, jobs("1", "2")) == ["2"] and reports == [("success", "1")]


def test_interrupt_drops_queued_submissions_and_scancels_by_run_id():
    reports = []
    executor = fake_slurm_executor(reports)
    executor._job_submission_executor = ThreadPoolExecutor(max_workers=1)
    started, release, submitted = threading.Event(), threading.Event(), []

    def sbatch(name):
        started.set()
        release.wait(5)
        submitted.append(name)

    executor.run_job = sbatch
    own_cancel = []
    executor.cancel = lambda: own_cancel.append(True)
    scancelled = []
    assert snakemake_internals.cancel_every_job_on_interrupt(
        FakeWorkflow(executor), scancel=lambda run: scancelled.append((run, list(submitted))) or True
    )
    # as the plugin's _submit_job does
    executor._job_submission_executor.submit(executor.run_job, "under way")
    executor._job_submission_executor.submit(executor.run_job, "queued")
    started.wait(5)
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        threading.Timer(0.3, release.set).start()
        executor.cancel()
        # a second Ctrl-C while cancelling is ignored
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    assert submitted == ["under way"]  # the queued sbatch never ran
    assert own_cancel == [True]
    # scancel by the run's id came after the last sbatch returned
    assert scancelled == [("run-uuid", ["under way"])]


def test_a_run_that_submitted_nothing_cancels_nothing():
    executor = fake_slurm_executor([])
    executor._job_submission_executor = ThreadPoolExecutor(max_workers=1)
    executor.cancel = lambda: None
    scancelled = []
    snakemake_internals.cancel_every_job_on_interrupt(FakeWorkflow(executor), scancel=scancelled.append)
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        executor.cancel()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    assert scancelled == []


def test_scancel_run_cancels_by_name_twice_and_retries():
    calls = []
    answers = iter([1, 0, 0])

    def run(cmd, **kwargs):
        calls.append(cmd)
        return SimpleNamespace(returncode=next(answers))

    assert snakemake_internals.scancel_run("run-uuid", pause=0.01, run=run)
    assert len(calls) == 3 and calls[0][0] == "scancel" and calls[0][-2:] == ["--name", "run-uuid"]


def test_every_stop_signal_becomes_a_keyboard_interrupt():
    from imagestats.workflow import install_stop_handlers

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # nohup: the user wants the run to outlive the session
        installed = install_stop_handlers()
        assert signal.SIGHUP not in installed and signal.SIGTERM in installed
        for signum in (signal.SIGTERM, signal.SIGTERM, signal.SIGINT):  # one swallowed: the next still stops
            try:
                os.kill(os.getpid(), signum)
                time.sleep(1)
                raise AssertionError("no KeyboardInterrupt")
            except KeyboardInterrupt:
                pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def test_a_stop_signal_that_lands_in_a_snakemake_log_line_still_stops_the_run():
    """Snakemake's log handler swallows a KeyboardInterrupt raised while it
    writes; a SIGTERM (a reboot, the end of a head job) comes only once."""
    from snakemake.logging import ColorizingTextHandler

    from imagestats.workflow import install_stop_handlers

    class SignalledStream(io.StringIO):
        def write(self, text):
            os.kill(os.getpid(), signal.SIGTERM)  # its handler runs here, inside Snakemake's emit
            return super().write(text)

    line = logging.LogRecord("snakemake", logging.INFO, __file__, 1, "Select jobs to execute...", None, None)
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        install_stop_handlers()
        with pytest.raises(KeyboardInterrupt):
            ColorizingTextHandler(nocolor=True, stream=SignalledStream()).emit(line)
            time.sleep(10)  # the run goes on: the signal must come again here
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def test_the_hardening_is_for_slurm_executors_only():
    assert snakemake_internals.slurm_executor(FakeWorkflow(FakeExecutor())) is None
    assert not snakemake_internals.cancel_every_job_on_interrupt(FakeWorkflow(object()))
    assert not snakemake_internals.keep_watching_through_failed_queries(FakeWorkflow(object()))


def test_a_forgotten_job_sacct_still_runs_is_kept_and_a_failed_one_retried(monkeypatch):
    Answers(monkeypatch, {})
    reports = []
    executor = fake_slurm_executor(reports)
    now = [0.0]
    snakemake_internals.keep_watching_through_failed_queries(
        FakeWorkflow(executor), clock=lambda: now[0], sacct=lambda ids: {"1": "COMPLETING", "2": "TIMEOUT"}
    )
    assert run_check(executor, jobs("1", "2", "3")) == ["1", "2", "3"]
    now[0] += snakemake_internals.MISSING_SECONDS
    assert run_check(executor, jobs("1", "2", "3")) == ["1", "3"] and reports == [("error", "2")]


def test_sbatch_is_retried_while_the_controller_is_down_and_only_then():
    assert "self._report_job_error_threadsafe(" in inspect.getsource(SlurmExecutor.run_job)
    reports = []
    executor = fake_slurm_executor(reports)
    errors, answers = [], iter(["down", "down", "ok", "limit"])

    def run_job(job):
        answer = next(answers)
        if answer == "down":
            executor._report_job_error_threadsafe(
                SubmittedJobInfo(job), "SLURM sbatch failed. The error message was 'sbatch: error: Batch job "
                "submission failed: Unable to contact slurm controller (connect failure)'."
            )  # fmt: skip
        elif answer == "limit":
            executor._report_job_error_threadsafe(SubmittedJobInfo(job), "SLURM sbatch failed: AssocMaxSubmitJobLimit")

    executor.run_job = run_job
    executor._report_job_error_threadsafe = lambda info, msg: errors.append(msg)
    assert snakemake_internals.retry_sbatch_while_the_controller_is_down(FakeWorkflow(executor), first_pause=0.01)
    executor.run_job("shard-0")  # refused twice, then submitted
    assert errors == []
    executor.run_job("shard-1")  # a limit is no outage: reported at once
    assert errors == ["SLURM sbatch failed: AssocMaxSubmitJobLimit"]
    # a cancel stops the retrying
    answers = iter(["down"] * 100)
    snakemake_internals._stopping(executor).set()
    executor.run_job("shard-2")
    assert len(errors) == 2 and "Unable to contact slurm controller" in errors[1]
