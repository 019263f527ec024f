"""Environment modules: `--sdm env-modules --config 'envmodules=[Python/3.12.3]'`.

The cluster guide starts its jobs with `module load Python/3.12.3`. The
workflow's `envmodules` config key lists such modules; with `--sdm
env-modules` every rule loads them through Snakemake's `envmodules:` directive
(Snakemake runs `module purge && module load <modules>; <command>` in bash)
and then runs the `python3` they put on PATH.

Here a modulefile of our own stands in for the cluster's Python/3.12.3: it
puts a `python3` first on PATH that writes one JSON line per call (its
arguments, and the loaded modules as Lmod reports them) to a record file and
then execs the interpreter running these tests (it has Pillow, pandas and
matplotlib). Needs Lmod (Debian's `lmod`, which `tests/slurm/cluster.sh
install` installs); without it the test skips, except in CI (CI=true), where
a missing Lmod fails the run.
"""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SCRIPTS, as_numbers, check_png, read_stats, reference, snakemake

MODULE = "Python/3.12.3"
HOW_TO = (
    "needs Lmod for `module load`: as root run `apt-get install lmod` (or "
    "`bash tests/slurm/cluster.sh install`), then `pytest tests/test_envmodules.py`"
)
# The command each rule runs, as the name of its script in scripts/.
RULE_SCRIPTS = {
    "image_stats": "image_stats.py",
    "aggregate_stats": "aggregate_stats.py",
    "summarize_stats": "summarize_stats.py",
}
IMAGES_PER_JOB = 10  # small_tree's 40 images -> several shards, one job each


def lmod_bash_init():
    """Lmod's bash start-up file: it defines the `module` shell function.

    Debian's lmod package has it at /usr/share/lmod/lmod/init/bash (lmod is
    a link to the versioned folder); a shell where Lmod is set up names its
    folder in LMOD_PKG.
    """
    candidates = []
    if os.environ.get("LMOD_PKG"):
        candidates.append(Path(os.environ["LMOD_PKG"]) / "init" / "bash")
    candidates.append(Path("/usr/share/lmod/lmod/init/bash"))
    candidates += sorted(Path("/usr/share/lmod").glob("*/init/bash"), reverse=True)
    return next((c for c in candidates if c.is_file()), None)


@pytest.fixture
def lmod(monkeypatch):
    """An environment in which every `bash -c` Snakemake starts has `module`.

    Snakemake runs a job's command as `bash -c "module purge && module load
    ...; set -euo pipefail; <command>"`. A non-interactive bash reads no
    profile or bashrc, so Lmod's `module` function would be missing ("module:
    command not found"), whatever this process's own shell had. Such a bash
    does read the file named by BASH_ENV before the command, which is how
    Lmod's /etc/profile.d/lmod.sh makes `module` reach scripts
    (BASH_ENV=<lmod>/init/bash): so BASH_ENV points at Lmod's bash init here,
    and every job's shell defines `module` for itself. Modules loaded in
    the calling shell are cleared, so `module purge` starts from nothing.
    """
    init = lmod_bash_init()
    problem = None
    if init is None:
        problem = "Lmod's init/bash not found (looked in $LMOD_PKG and /usr/share/lmod)"
    else:
        check = subprocess.run(
            ["bash", "-c", "module --version"], capture_output=True, text=True,
            env={**os.environ, "BASH_ENV": str(init)}, timeout=60,
        )  # fmt: skip
        if check.returncode != 0 or "Lua" not in check.stdout + check.stderr:
            problem = f"`module --version` with BASH_ENV={init} failed: {check.stdout}{check.stderr}"
    if problem:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"CI must run the environment modules test: {problem}; {HOW_TO}")
        pytest.skip(f"{problem}; {HOW_TO}")
    for name in list(os.environ):
        if name in ("LOADEDMODULES", "_LMFILES_", "MODULEPATH") or name.startswith(
            ("_ModuleTable", "__LMOD_REF_COUNT", "BASH_FUNC_module", "BASH_FUNC_ml")
        ):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BASH_ENV", str(init))
    return init


def write_module(root, record):
    """MODULEPATH folder with Python/3.12.3.lua; its python3 records each call."""
    bin_dir = root / "python-3.12.3" / "bin"
    bin_dir.mkdir(parents=True)
    wrapper = bin_dir / "python3"
    # One os.write of one line per call (O_APPEND): lines of jobs running at
    # the same time never mix. Then the real interpreter replaces the wrapper.
    wrapper.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "line = json.dumps({'argv': sys.argv[1:],\n"
        "                   'loaded': os.environ.get('LOADEDMODULES', ''),\n"
        "                   'marker': os.environ.get('IMAGESTATS_TEST_MODULE', '')}) + '\\n'\n"
        f"fd = os.open({str(record)!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)\n"
        "os.write(fd, line.encode())\n"
        "os.close(fd)\n"
        f"os.execv({sys.executable!r}, [{sys.executable!r}, *sys.argv[1:]])\n"
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    modules = root / "modulefiles"
    (modules / "Python").mkdir(parents=True)
    (modules / "Python" / "3.12.3.lua").write_text(
        "-- Test stand-in for the cluster's Python/3.12.3 (tests/test_envmodules.py)\n"
        'whatis("Python 3.12.3 that records each call")\n'
        f'prepend_path("PATH", {json.dumps(str(bin_dir))})\n'
        f'setenv("IMAGESTATS_TEST_MODULE", {json.dumps(MODULE)})\n'
    )
    return modules


def read_records(record):
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines()]


def script_of(entry):
    """The script a recorded python3 call ran, checked to be the repo's own."""
    scripts = [a for a in entry["argv"] if a.endswith(".py")]
    assert scripts, f"python3 ran no script: {entry['argv']}"
    script = Path(scripts[0])
    assert script.resolve() == (SCRIPTS / script.name).resolve(), entry["argv"]
    return script.name


def test_every_rule_runs_the_python_of_the_loaded_module(lmod, small_tree, tmp_path, monkeypatch):
    record = tmp_path / "python3-calls.jsonl"
    monkeypatch.setenv("MODULEPATH", str(write_module(tmp_path / "modules", record)))
    config = (f"input_dir={small_tree}", f"images_per_job={IMAGES_PER_JOB}")

    # Plain run, same environment: nothing loads the module, its python3 is
    # never run.
    plain = tmp_path / "plain"
    snakemake(plain, "--cores", "2", config=config)
    assert read_records(record) == [], "a run without envmodules ran the module's python3"

    work = tmp_path / "modules-run"
    result = snakemake(
        work, "--cores", "2", "--sdm", "env-modules", config=(*config, f"envmodules=[{MODULE}]")
    )
    calls = read_records(record)
    shards = sorted(p.name.removesuffix(".jsonl") for p in (work / "results" / "shards").glob("*.jsonl"))
    assert len(shards) >= 2, shards

    # One call per job: a shard job for each shard, then the two after them.
    by_script = {}
    for entry in calls:
        by_script.setdefault(script_of(entry), []).append(entry)
    counts = {script: len(entries) for script, entries in by_script.items()}
    assert counts == {
        RULE_SCRIPTS["image_stats"]: len(shards),
        RULE_SCRIPTS["aggregate_stats"]: 1,
        RULE_SCRIPTS["summarize_stats"]: 1,
    }, f"python3 calls per script {counts} for {len(shards)} shards\n{result.output[-3000:]}"
    measured = sorted(
        Path(arg).name.removesuffix(".jsonl")
        for entry in by_script[RULE_SCRIPTS["image_stats"]]
        for arg in entry["argv"]
        if arg.endswith(".jsonl") and Path(arg).parent.name == "shards"
    )
    assert measured == shards, "each shard measured once, by the module's python3"
    for entry in calls:  # loaded by Lmod, not merely found on PATH
        assert MODULE in entry["loaded"].split(":"), entry
        assert entry["marker"] == MODULE, entry

    # The same results as the plain run, and the guide's numbers.
    assert (work / "results" / "stats.csv").read_bytes() == (plain / "results" / "stats.csv").read_bytes()
    rows = read_stats(work)
    assert len(rows) == 40
    for row in rows:
        assert as_numbers(row) == reference(small_tree / row["path"]), row["path"]
    for png in ("brightness_by_class", "min_max", "outliers"):
        check_png(work / "results" / "plots" / f"{png}.png")


def test_a_module_that_does_not_exist_stops_the_run(lmod, small_tree, tmp_path, monkeypatch):
    """A misspelt module must not leave the rules on some other python3."""
    record = tmp_path / "python3-calls.jsonl"
    monkeypatch.setenv("MODULEPATH", str(write_module(tmp_path / "modules", record)))
    result = snakemake(
        tmp_path / "work", "--cores", "1", "results/stats.csv", "--sdm", "env-modules",
        config=(f"input_dir={small_tree}", "envmodules=[Python/0.0.1]"), check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Python/0.0.1" in result.output
    assert read_records(record) == []
    assert not (tmp_path / "work" / "results" / "stats.csv").exists()


def test_lmod_bash_init_defines_module_for_bash_c(lmod):
    """The mechanism the tests above rely on, shown on its own."""
    env = {**os.environ, "BASH_ENV": str(lmod)}
    out = subprocess.run(
        ["bash", "-c", "set -euo pipefail; type -t module"], capture_output=True, text=True, env=env
    )
    assert out.stdout.strip() == "function", out.stderr
    without = {k: v for k, v in env.items() if k != "BASH_ENV" and not k.startswith("BASH_FUNC_")}
    out = subprocess.run(
        ["bash", "-c", "type -t module || echo none"], capture_output=True, text=True, env=without
    )
    assert out.stdout.strip() == "none", "bash -c had `module` without BASH_ENV"


def test_a_user_function_and_a_command_run_in_the_module_s_environment(lmod, small_tree, tmp_path, monkeypatch):
    """Your function runs in the shard's processes, your command is started by
    them: both see what the loaded module set, and the command's `python3` is
    the module's."""
    record = tmp_path / "python3-calls.jsonl"
    monkeypatch.setenv("MODULEPATH", str(write_module(tmp_path / "modules", record)))
    config = (f"input_dir={small_tree}", f"images_per_job={IMAGES_PER_JOB}", f"envmodules=[{MODULE}]")
    work = tmp_path / "function"
    work.mkdir()
    (work / "which.py").write_text(
        "import os\n\ndef module(image):\n    return {'module': os.environ.get('IMAGESTATS_TEST_MODULE', '')}\n"
    )
    snakemake(work, "--cores", "2", "results/stats.csv", "--sdm", "env-modules",
              config=(*config, "analysis=which.py:module"))  # fmt: skip
    assert {row["module"] for row in read_stats(work)} == {MODULE}

    work = tmp_path / "command"
    work.mkdir()
    (work / "which.py").write_text(
        "import json, os\nprint(json.dumps({'module': os.environ.get('IMAGESTATS_TEST_MODULE', '')}))\n"
    )
    snakemake(work, "--cores", "2", "results/stats.csv", "--sdm", "env-modules",
              config=(*config, "command=python3 which.py {}"))  # fmt: skip
    rows = read_stats(work)
    assert len(rows) == 40 and {row["module"] for row in rows} == {MODULE}
    by_command = [entry for entry in read_records(record) if entry["argv"][:1] == ["which.py"]]
    assert len(by_command) == 40, "each image's command ran the module's python3"
