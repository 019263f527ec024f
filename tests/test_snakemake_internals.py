"""What imagestats.snakemake_internals relies on in Snakemake: these fail
loudly when an upgrade changes it, instead of a plan that silently counts
wrong or a Slurm run that waits again after its last job."""

import asyncio
import inspect
import re
import threading

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
