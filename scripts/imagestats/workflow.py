"""What the Snakefile does at parse time and in its hooks, kept out of the Snakefile.

Parsing runs again in every cluster job and every `snakemake` call, so the
main process plans (walks the images, writes the shard lists it lacks) and
every other process (a cluster job) reads the plan's index instead of
walking the images again. Planning writes only lists that do not exist yet
(named by their content): it never rewrites or deletes a file, so a dry run
(which takes no lock) cannot break a running run. The index and the removal
of stale lists wait for ``onstart``, which Snakemake calls holding its lock.
"""

import gc
import json
import os
import shlex
import sys
import threading
import time

from . import analysis, command, journal, pool, resources, snakemake_internals, storage
from .atomic import remove_if_present
from .metamarks import own_code, running
from .names import escape
from .plan import (
    ConfigError,
    Plan,
    make_plan,
    read_plan_index,
    remove_stale_lists,
    write_index,
    write_lists,
)
from .progress import ProgressMonitor
from .slurm import SHARD_RULE, Job, live_jobs_of_workdir, make_slurm_plan
from .version import banner

# Where things go, relative to the working directory: one place for the
# folder layout (the Snakefile's rules use these too).
PLAN_DIR = "results/plan"
TABLE_DIR = "results/shards"
JOURNAL_DIR = "results/journal"
IMAGES_DIR = "results/images"
TRANSFORMED_DIR = "results/transformed"
SHARD_LOG_DIR = "logs/image_stats"
CONFIG_FILE = "config/config.yaml"
# At most this long for the plan's look at the first image (imagestats.analysis.Analysis.probe).
PROBE_SECONDS = 20
SCHEMA_FILE = "config/schema.yaml"


class PlanError(Exception):
    """Raised before any job starts; the message says what to change."""


def config_file(workflow):
    """config/config.yaml of the working directory if it has one (Snakemake's
    deployment convention), else the one bundled next to the Snakefile, so
    `snakemake -s path/to/Snakefile -d DIR` works in an empty DIR."""
    if os.path.exists(CONFIG_FILE):
        return CONFIG_FILE
    return os.path.join(workflow.basedir, CONFIG_FILE)


def schema_file(workflow):
    return os.path.join(workflow.basedir, SCHEMA_FILE)


def start_banner(workflow, out=None):
    """The version, first thing in the terminal of every run (dry runs and
    --report too), so a pasted terminal says which workflow made it. Only in
    the main process, like the plan lines: a Slurm job parses the Snakefile
    again and its log starts with Snakemake's job lines, not this."""
    if workflow.is_main_process:
        print(banner(), file=out or sys.stderr)


def read_booleans(config):
    """`--config per_image_files=false` gives the text "false" (Snakemake's
    --config reads only True/False as booleans): take true/false/yes/no in
    any case for the boolean keys, before the schema checks their type."""
    from .defaults import defaults

    words = {"true": True, "yes": True, "false": False, "no": False}
    for key, default in defaults().items():
        value = config.get(key)
        if isinstance(default, bool) and isinstance(value, str) and value.lower() in words:
            config[key] = words[value.lower()]


def bundled_paths(workflow, config, used_file):
    """With the bundled config, its own relative input_dir (the sample) is
    next to the Snakefile, not in the working directory."""
    if os.path.abspath(used_file) != os.path.abspath(os.path.join(workflow.basedir, CONFIG_FILE)):
        return
    input_dir = config.get("input_dir")
    if input_dir and not os.path.isabs(input_dir) and not os.path.exists(input_dir):
        bundled = os.path.abspath(os.path.join(workflow.basedir, input_dir))
        if os.path.isdir(bundled):
            config["input_dir"] = bundled


class ChosenAnalysis:
    """The config's analysis (or command) as the Snakefile uses it: ``spec``
    as shown, ``resolved`` (a FILE.py made absolute) and ``command`` for the
    jobs, ``version`` (the shard rule's rerun trigger), ``figures`` (which
    summary and figures fit its rows), ``seconds_per_image`` (None: the cost
    model's) and, in the main process, the loaded ``analysis`` (None for a
    command: the plan must not run it)."""

    def __init__(self, config, workflow):
        self.analysis = None
        self.seconds_per_image = None
        self.command = config.get("command")
        if self.command:
            if config["analysis"] != "brightness":
                raise PlanError(
                    f"config sets both analysis ({config['analysis']}) and command: keep one of them "
                    "(command: null, or remove analysis)"
                )
            try:
                command.check(self.command)
            except command.CommandError as e:
                raise PlanError(str(e)) from None
            self.spec = f"command: {self.command}"
            self.resolved = ""
            self.version = command.version(self.command)
            self.figures = "columns"
            if workflow.is_main_process:
                self.seconds_per_image = command_seconds_seen()
            return
        spec = self.spec = config["analysis"]
        try:
            kind, target, function = analysis.parse(spec)
            self.resolved = f"{target}:{function}" if kind == "file" else spec
            self.version = analysis.version(spec)
            self.figures = analysis.figures(spec)
            if workflow.is_main_process:
                # Imported here, before any job, so a missing function or a
                # module that does not import stops the run with one line;
                # without bytecode files, since a dry run changes no file.
                dont_write, sys.dont_write_bytecode = sys.dont_write_bytecode, True
                try:
                    self.analysis = analysis.load(spec)
                finally:
                    sys.dont_write_bytecode = dont_write
        except analysis.AnalysisError as e:
            raise PlanError(str(e)) from None


def command_seconds_seen(stats_csv="results/stats.csv", rows=1000):
    """The median seconds per image of an earlier run of a command (the
    first ``rows`` rows of stats.csv), for the Slurm time request; None
    without one (then imagestats.resources.SECONDS_PER_COMMAND)."""
    import csv

    try:
        with open(stats_csv, newline="", encoding="utf-8", errors="surrogateescape") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            if "seconds" not in header or "exit_status" not in header:
                return None
            at = header.index("seconds")
            seen = sorted(float(row[at]) for _, row in zip(range(rows), reader) if len(row) > at and row[at])
    except (OSError, ValueError):
        return None
    return seen[len(seen) // 2] if seen else None


class WorkflowPlan:
    """The plan as the Snakefile uses it: shard names, each shard's list,
    threads and resources, and the hooks of a run."""

    def __init__(self, workflow, config, plan, slurm, chosen=None):
        self.workflow = workflow
        self.chosen = chosen
        self.config = config
        self.plan = plan
        self.slurm = slurm  # (account, configured limit) on a Slurm profile, else None
        self.shards = list(plan.shards)
        cores = None if slurm else workflow.resource_settings.cores
        work = {name: (s.images, s.bytes) for name, s in plan.shards.items()}
        self._threads = resources.threads_for_shards(work, cores)
        self._checked = not workflow.is_main_process  # jobs of a run check nothing
        self.progress = None
        self._started = None

    # ------------------------------------------------ what the rules ask

    @property
    def root(self):
        return self.plan.root

    def list_file(self, wildcards):
        return os.path.join(PLAN_DIR, self.plan.shards[wildcards.shard].list_name)

    def threads(self, wildcards):
        shard = self.plan.shards[wildcards.shard]
        return max(1, min(self._threads[wildcards.shard], shard.images))

    def runtime(self, wildcards, attempt, threads):
        self._check()
        shard = self.plan.shards[wildcards.shard]
        return resources.shard_runtime_min(
            shard.images, shard.bytes, threads, attempt, image_timeout=self.config["image_timeout"],
            seconds_per_image=self._seconds_per_image(),
        )  # fmt: skip

    def _seconds_per_image(self):
        chosen = self.chosen
        if chosen is None or not chosen.command:
            return None
        return chosen.seconds_per_image or resources.SECONDS_PER_COMMAND

    def mem_mb(self, wildcards, attempt, threads):
        self._check()
        shard = self.plan.shards[wildcards.shard]
        return resources.shard_mem_mb(shard.images, shard.largest, threads, attempt)

    def final_runtime(self, wildcards, attempt):
        self._check()
        return resources.final_runtime_min(self.plan.images, attempt)

    def final_mem_mb(self, wildcards, attempt):
        self._check()
        return resources.final_mem_mb(self.plan.images, attempt)

    # -------------------------------------------------- the plan checks

    def _check(self):
        """Print and check the storage (and Slurm) plan, once.

        Snakemake first evaluates a job's resources once it knows which jobs
        are due, dry runs included, and before it starts or submits any: so
        the first resource lookup is where the plan of what this run does is
        checked."""
        if self._checked:
            return
        self._checked = True
        with own_code():
            self._check_plans()

    def _check_plans(self):
        due = snakemake_internals.needrun_jobs(self.workflow)
        due_shards = [job for job in due if job.rule.name == SHARD_RULE]
        due_images = sum(self.plan.shards[job.wildcards_dict["shard"]].images for job in due_shards)
        folders = self.plan.selection.folder_count() if due_images else 0
        due_bytes = sum(self.plan.shards[job.wildcards_dict["shard"]].bytes for job in due_shards)
        transformed = self._probe(due_bytes / due_images) if due_images else {}
        if self._seconds_per_image() is None:
            measuring = due_images * resources.SECONDS_PER_IMAGE + due_bytes / 1e6 * resources.SECONDS_PER_MB
        else:
            measuring = due_images * self._seconds_per_image()
        report = storage.storage_plan(
            ".", due_images, len(due_shards), self.config["per_image_files"], folders, transformed,
            images_root=self.plan.root, measuring_seconds=measuring,
        )  # fmt: skip
        print(report.describe(), file=sys.stderr)
        if report.verdict():
            raise PlanError(report.verdict())
        if self.slurm is not None:
            self._check_slurm(due)
        snakemake_internals.end_status_sleep_at_shutdown(self.workflow)

    def _probe(self, files_bytes):
        """Measure the first image with the analysis (nothing written): its
        columns for the terminal, the sizes of the images it returns for
        the storage plan, and a warning when it fails on that image. In a
        forked process with a time limit: an analysis that hangs or kills
        its process on that image must not take the plan with it."""
        chosen = self.chosen
        if chosen is None or chosen.analysis is None or not chosen.analysis.probe_safe:
            return {}
        images = self.plan.selection
        path = images.paths[0]
        file = os.path.join(images.root, path)
        found = []
        pool.run(
            [0], 1, lambda: None,
            lambda _: json.dumps(chosen.analysis.probe(path, file, files_bytes)),
            lambda _, line: found.append(line),
            lambda _: f"it took longer than {PROBE_SECONDS} s",
            lambda _, status: f"its process died ({status})",
            min(PROBE_SECONDS, self.config["image_timeout"]),
        )  # fmt: skip
        if not found[0].startswith("["):
            row, transformed = {"error": found[0]}, {}
        else:
            row, transformed = json.loads(found[0])
        if row["error"]:
            print(
                f"warning: analysis {chosen.spec} failed on the first image, {escape(path)}: {row['error']}. "
                "If it fails on every image, stop the run (Ctrl-C) and fix the function.",
                file=sys.stderr,
            )
        else:
            columns = [c for c in row if c not in ("path", "class", "error", "note")]
            shown = ", ".join(columns[:12]) + (f" and {len(columns) - 12} more" if len(columns) > 12 else "")
            print(f"Analysis: {chosen.spec}, {len(columns)} column(s): {shown}", file=sys.stderr)
        return transformed

    def _check_slurm(self, due):
        account, limit = self.slurm
        local = snakemake_internals.local_rules(self.workflow)
        jobs, here = [], set()
        for job in due:
            rule = job.rule
            if rule.name in local or rule.norun or rule.is_template_engine:
                here.add(rule.name)
                continue
            res = job.resources
            jobs.append(Job(rule.name, job.threads, res.get("runtime", 0), res.get("mem_mb", 0)))
        after = [r.name for r in self.workflow.rules if r.name in here and not r.norun]
        # Live jobs of an earlier run of this folder (its Snakemake was
        # killed or lost its session): this run stops for them (see
        # slurm.earlier_jobs_verdict); a dry run only shows them, being the
        # way to look at a folder whose jobs still run.
        earlier = (live_jobs_of_workdir(".") or []) if jobs else []
        slurm_plan = make_slurm_plan(
            self.plan, jobs, self.workflow.resource_settings.nodes or 1, account, limit, after,
            earlier=earlier,
        )  # fmt: skip
        print(slurm_plan.describe(), file=sys.stderr)
        if not slurm_plan.fits and not (earlier and self.workflow.dryrun):
            raise PlanError(slurm_plan.verdict())

    # --------------------------------------------------------- hooks

    def onstart(self):
        """Holding Snakemake's lock, before the first job: the index the jobs
        read, no stale lists, and the progress line."""
        self._started = time.time()
        running()
        with own_code():
            write_index(self.plan, PLAN_DIR)
            remove_stale_lists(self.plan, PLAN_DIR)
            shards = {name: s.images for name, s in self.plan.shards.items()}
            lists = {name: s.list_name for name, s in self.plan.shards.items()}
            self.progress = ProgressMonitor(shards, PLAN_DIR, TABLE_DIR, lists=lists).start()
        if self.slurm is not None:
            harden_slurm_run(self.workflow)

    def onsuccess(self):
        with own_code():
            self._stop_progress()
            forget_vanished_shards(self.plan)
        before_exit()

    def onerror(self):
        with own_code():
            self._stop_progress()
            for line in failed_shards(self._started):
                print(line, file=sys.stderr)
        before_exit()

    def _stop_progress(self):
        if self.progress is not None:
            self.progress.stop()


def harden_slurm_run(workflow):
    """On the Snakemake of a Slurm run (the head; onstart runs there only,
    holding the lock, after the executor exists and before any submission):
    interrupts leave no job behind, and Slurm's hiccups neither hang nor
    stop the run. See snakemake_internals for how, and docs/slurm.md,
    "Faults and recovery"."""
    if snakemake_internals.slurm_executor(workflow) is None:
        return False  # a Slurm profile run with another executor: nothing to do
    snakemake_internals.retry_sbatch_while_the_controller_is_down(workflow)
    snakemake_internals.cancel_every_job_on_interrupt(workflow)
    snakemake_internals.keep_watching_through_failed_queries(workflow)
    install_stop_handlers()
    return True


# How soon a stop signal that landed in a log line is sent again.
STOP_SIGNAL_AGAIN_SECONDS = 0.05


def install_stop_handlers():
    """SIGTERM and SIGHUP (kill, a reboot, the end of a head job, an SSH
    session that closes) do what Ctrl-C does: Snakemake's interrupt path
    cancels the run's Slurm jobs (snakemake_internals makes that complete)
    and releases its lock, so the same command reruns without --unlock.
    Snakemake itself only drains on SIGTERM (waiting for jobs that the time
    limit or the reboot then orphans) and dies on SIGHUP, leaving its jobs
    and its lock.

    A signal the user chose to ignore stays ignored: `nohup snakemake ...`
    ignores SIGHUP so that the run outlives the session. Each signal raises
    KeyboardInterrupt in the main thread, where Snakemake's scheduler runs
    and catches it. Snakemake's log handler swallows one that lands while
    it writes a line, and a SIGTERM or SIGHUP comes only once: such a
    signal is sent again to the main thread as soon as the line is
    written. Once the cancelling has begun, further signals are ignored
    (snakemake_internals.cancel_every_job_on_interrupt), so a second Ctrl-C
    does not cut it or the unlocking short."""
    import signal

    def stop(signum, frame):
        if snakemake_internals.in_snakemake_log_write(frame):
            again = (threading.main_thread().ident, signum)
            threading.Timer(STOP_SIGNAL_AGAIN_SECONDS, signal.pthread_kill, again).start()
            return
        raise KeyboardInterrupt(f"{signal.Signals(signum).name}: cancelling the run's Slurm jobs")

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, stop)
            installed.append(signum)
    return installed


def plan_for_workflow(workflow, config, chosen=None):
    with own_code():
        return _plan_for_workflow(workflow, config, chosen)


def _plan_for_workflow(workflow, config, chosen):
    slurm = slurm_settings(workflow)
    if not workflow.is_main_process:
        return WorkflowPlan(workflow, config, Plan.from_index(read_plan_index(PLAN_DIR)), slurm, chosen)
    try:
        plan = make_plan(config, slurm=slurm is not None)
    except ConfigError as e:
        raise PlanError(str(e)) from None
    for warning in plan.selection.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    try:
        write_lists(plan, PLAN_DIR)
    except OSError as e:
        raise PlanError(
            f"cannot write the shard lists to {os.path.abspath(PLAN_DIR)} ({e.strerror}): make "
            "the results folder writable and give it room, or run in a folder you can "
            "write to (snakemake -d DIR)"
        ) from None
    sizes = [s.images for s in plan.shards.values()]
    limits = "slurm_images_per_job, slurm_mb_per_job" if slurm else "images_per_job, mb_per_job"
    print(
        f"Plan: {plan.images:,} images from {plan.source}; {len(sizes):,} shard(s) of "
        f"{min(sizes):,} to {max(sizes):,} images ({limits}: {plan.images_per_job:,}, "
        f"{plan.mb_per_job:,} MB), one image_stats job each.",
        file=sys.stderr,
    )
    if config["on_error"] == "fail":
        check_no_recorded_errors(plan)
    return WorkflowPlan(workflow, config, plan, slurm, chosen)


def check_no_recorded_errors(plan, most=10):
    """With on_error: fail, stop if the up-to-date tables of an earlier run
    already hold error rows: switching to fail reruns nothing, so without
    this check those images would pass silently."""
    from .table import error_rows

    found = []
    for name, shard in plan.shards.items():
        table = os.path.join(TABLE_DIR, f"{name}.jsonl")
        try:
            if os.stat(table).st_mtime_ns < os.stat(os.path.join(PLAN_DIR, shard.list_name)).st_mtime_ns:
                continue  # will be measured again
        except FileNotFoundError:
            continue
        found.extend(error_rows(table))
    if found:
        shown = "; ".join(f"'{path}': {error}" for path, error in sorted(found)[:most])
        more = f" and {len(found) - most} more" if len(found) > most else ""
        raise PlanError(
            f"on_error: fail, and {len(found)} image(s) already measured have errors: "
            f"{shown}{more}. Fix or remove those files (their shards are then measured "
            "again), or set on_error: record to keep them as error rows."
        )


def failed_shards(since):
    """The lines the shards that stopped in this run left in their logs (see
    shard.FATAL), so the terminal names the file and the fix, not only
    Snakemake's 'check log file(s)'."""
    from .shard import FATAL

    lines = []
    try:
        logs = os.scandir(SHARD_LOG_DIR)
    except FileNotFoundError:
        return lines
    with logs:
        for entry in logs:
            if since is not None and entry.stat().st_mtime < since - 1:
                continue
            with open(entry.path, encoding="utf-8", errors="backslashreplace") as f:
                lines.extend(line.rstrip("\n") for line in f if line.startswith(FATAL))
    return sorted(lines)


def forget_vanished_shards(plan):
    """After a successful run: what shards that no longer exist kept
    (split, merged, or from other limits) is not needed any more, and the
    per-image files and transformed images of images that left the plan
    go with it."""
    from .shard import remove_image_files  # here: the Snakefile's parse does not need Pillow

    try:
        names = [n for n in os.listdir(JOURNAL_DIR) if n not in plan.shards]
    except FileNotFoundError:
        names = []
    current = None
    for name in names:
        folder = os.path.join(JOURNAL_DIR, name)
        if current is None:
            current = {escape(path) for path in plan.selection.paths}
        for file in os.listdir(folder):
            if file.startswith("kept-"):
                for shown in journal.rows_of(os.path.join(folder, file)):
                    if shown not in current:
                        remove_image_files(shown, IMAGES_DIR, TRANSFORMED_DIR)
        journal.forget(JOURNAL_DIR, name)
    try:
        files = os.listdir(TABLE_DIR)
    except FileNotFoundError:
        files = []
    for file in files:  # a table and its CSV lines
        name, suffix = os.path.splitext(file)
        if suffix in (".jsonl", ".csv") and name not in plan.shards:
            remove_if_present(os.path.join(TABLE_DIR, file))


def slurm_settings(workflow):
    """(account, configured submit limit) when the run uses a Slurm profile
    such as profiles/comet, else None.

    Snakemake does not tell a Snakefile its executor at parse time; a
    profile for this workflow sets slurm_account (default-resources) and
    slurm_submit_limit (resources), and their presence marks a Slurm run.
    """
    values, limits = snakemake_internals.slurm_profile_values(workflow)
    account = values.get("slurm_account", "").strip("'\"") or None
    limit = limits.get("slurm_submit_limit")
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


def _deployment(workflow):
    return {getattr(m, "name", str(m)).upper() for m in workflow.deployment_settings.deployment_method}


def module_check(workflow, config):
    """A shell prefix that stops a rule whose environment modules did not load.

    Snakemake runs `module purge && module load M; <command>`: a module that
    fails to load (a typo, a module the cluster lacks) leaves the command
    running on whatever python3 is on PATH. The check makes it fail instead,
    saying which module. Empty unless modules are in use."""
    if "ENV_MODULES" not in _deployment(workflow) or not config.get("envmodules"):
        return ""
    checks = "".join(
        f"module is-loaded {shlex.quote(m)} || (echo 'environment module {m} did not load: "
        "check its name with `module avail`, or fix envmodules in the config' >&2; exit 1); "
        for m in config["envmodules"]
    )
    return "set -euo pipefail; " + checks


def python_for_shell(workflow, config):
    """The interpreter the rules' commands run.

    The one running Snakemake (it has Pillow and pandas), unless the rules
    run in a software environment that brings its own: `python3` from the
    environment modules of config `envmodules` (--sdm env-modules), or the
    conda env's `python` (--sdm conda). The Snakefile uses it by name in the
    commands, not as a rule param: params are rerun triggers, and another
    interpreter must not rerun every shard.
    """
    methods = _deployment(workflow)
    if "ENV_MODULES" in methods and config.get("envmodules"):
        return "python3"
    if "CONDA" in methods:
        return "python"
    return sys.executable
