"""The docs stay true: docs/configuration.md against config/schema.yaml and
config/config.yaml, links that lead to files, the changelog against the
version, and the README: short, linking every docs/ page, and every command
it shows run by a test. Only test_the_readme_s_local_commands_dry_run runs
Snakemake (dry runs, seconds); the rest take well under a second."""

import re
import shlex
import subprocess
import sys

import pytest
import yaml

from conftest import CONFIG, REPO
from imagestats.version import VERSION
from test_deploy import QUICK_START, copy_checkout
from test_slurm import README_SLURM_DRY_RUN, README_SLURM_RUN, README_SLURM_UNLOCK

SCHEMA = REPO / "config" / "schema.yaml"
CONFIGURATION = REPO / "docs" / "configuration.md"

# A table row of docs/configuration.md: | `key` | default | type / allowed values | what it changes |
ROW = re.compile(r"^\|\s*`([A-Za-z0-9_.]+)`\s*\|(.*?)\|(.*?)\|(.*)\|\s*$")
# What the type column must say for each JSON schema type.
TYPE_WORDS = {
    "string": "text",
    "integer": "whole number",
    "number": "number",
    "boolean": "true or false",
    "array": "list",
    "object": "mapping",
    "null": "null",
}
REQUIRED = "required"  # the default column of a key that has none and must be given


def load_yaml(file):
    with open(file, encoding="utf-8") as f:
        return yaml.safe_load(f)


def schema_keys(schema=None, prefix=""):
    """{dotted key: its schema}, nested keys (numbered.pattern) included."""
    schema = schema if schema is not None else load_yaml(SCHEMA)
    keys = {}
    for name, spec in schema.get("properties", {}).items():
        keys[prefix + name] = spec
        keys.update(schema_keys(spec, prefix + name + "."))
    return keys


def real_defaults():
    """{dotted key: default} for the keys that have one: the bundled
    config/config.yaml's value (what a run without other settings uses),
    else the schema's default (what a key missing from a user's config
    file gets). A nested key has one only if the schema gives it."""
    config, found = load_yaml(CONFIG), {}
    for key, spec in schema_keys().items():
        if "." not in key and key in config:
            found[key] = config[key]
        elif "default" in spec:
            found[key] = spec["default"]
    return found


def documented():
    """{key: (default cell, type cell)} of docs/configuration.md's tables."""
    rows = {}
    for line in CONFIGURATION.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            key, default, kind, _ = (part.strip() for part in match.groups())
            assert key not in rows, f"{key} is documented twice"
            rows[key] = (default, kind)
    assert rows, "no key rows found in docs/configuration.md: did the table format change?"
    return rows


def parse_default(cell):
    """A default cell: a YAML value in backticks, or `required`."""
    if cell == REQUIRED:
        return REQUIRED
    match = re.fullmatch(r"`([^`]*)`", cell)
    assert match, f"a default is a YAML value in backticks or '{REQUIRED}', not {cell!r}"
    return yaml.safe_load(match.group(1))


def types_of(spec):
    kinds = spec.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    for choice in spec.get("anyOf", []):
        kinds += types_of(choice)
    return kinds


def bounds_of(spec):
    """The limits the type column must state, as written there."""
    said = [f"≥ {spec['minimum']}"] if "minimum" in spec else []
    said += [f"> {spec['exclusiveMinimum']}"] if "exclusiveMinimum" in spec else []
    said += [f"`{value}`" for value in spec.get("enum", [])]
    for choice in spec.get("anyOf", []):
        said += bounds_of(choice)
    return said


# ------------------------------------------------------ configuration.md


def test_every_schema_key_is_documented_and_nothing_else():
    schema, docs = set(schema_keys()), set(documented())
    assert not schema - docs, f"config keys missing from docs/configuration.md: {sorted(schema - docs)}"
    assert not docs - schema, f"docs/configuration.md documents keys not in the schema: {sorted(docs - schema)}"


def test_documented_defaults_are_the_real_defaults():
    defaults = real_defaults()
    for key, (cell, _) in documented().items():
        want = defaults.get(key, REQUIRED)
        assert parse_default(cell) == want, f"docs/configuration.md: {key} default {cell}, really {want!r}"


def test_the_bundled_config_and_the_schema_agree_on_defaults():
    """Two files state the defaults: the bundled config (what a plain run
    uses) and the schema (what a key left out of a user's file gets). The
    docs can be right only if they agree."""
    config = load_yaml(CONFIG)
    for key, spec in load_yaml(SCHEMA)["properties"].items():
        if "default" in spec and key in config:
            assert config[key] == spec["default"], (key, config[key], spec["default"])


def test_documented_types_and_allowed_values_match_the_schema():
    keys = schema_keys()
    for key, (_, cell) in documented().items():
        spec = keys[key]
        kinds = types_of(spec)
        assert kinds or spec.get("enum"), f"{key}: no type in the schema to check"
        for kind in kinds:
            word = TYPE_WORDS[kind]
            assert word in cell, f"docs/configuration.md: {key} may be {kind}: say '{word}' in its type column"
        for said in bounds_of(spec):
            assert said in cell, f"docs/configuration.md: {key} must state {said} in its type column"


def test_row_parsing_catches_a_wrong_default():
    """The checks above read what they think they read."""
    assert parse_default("`[]`") == [] and parse_default("`null`") is None
    assert parse_default("`89478485`") == 89478485 and parse_default(REQUIRED) == REQUIRED
    with pytest.raises(AssertionError):
        parse_default("600 s")
    assert bounds_of({"type": "integer", "minimum": 1}) == ["≥ 1"]
    assert documented()["on_error"][0] == "`record`"


# ------------------------------------------------------------------ links

MARKDOWN = sorted({*REPO.glob("*.md"), *REPO.glob("docs/*.md"), *REPO.glob("config/*.md")})
INLINE = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.MULTILINE)


def relative_links(text):
    """The link targets of a Markdown text that are files of the repo:
    not in code, not a URL, not an anchor of the same page."""
    text = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.MULTILINE | re.DOTALL)
    text = re.sub(r"(`+).*?\1", "", text, flags=re.DOTALL)
    targets = INLINE.findall(text) + DEFINITION.findall(text)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:|#", t, flags=re.IGNORECASE)]


def test_link_finder():
    text = (
        "See [the docs](docs/a.md#top), [web](https://x.org), [here](#b), <https://y.org>,\n"
        "`[not](code.md)`, [titled](b.md \"Title\").\n```\n[no](fenced.md)\n```\n[ref]: ../c.md\n"
    )
    assert relative_links(text) == ["docs/a.md#top", "b.md", "../c.md"]


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_lead_to_files(page):
    missing = []
    for target in relative_links(page.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0]
        if path and not (page.parent / path).exists():
            missing.append(target)
    assert not missing, f"{page.relative_to(REPO)} links to files that do not exist: {missing}"


def test_the_pages_with_links_are_checked():
    names = {str(p.relative_to(REPO)) for p in MARKDOWN}
    assert {"README.md", "CHANGELOG.md", "docs/configuration.md", "docs/analyses.md"} <= names


# -------------------------------------------------------------- changelog


def test_changelog_has_unreleased_then_the_current_version():
    text = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    releases = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, flags=re.MULTILINE)
    assert releases[0] == ("Unreleased", ""), "CHANGELOG.md starts with an [Unreleased] section"
    newest, date = releases[1]
    assert newest == VERSION, f"the newest release in CHANGELOG.md is {newest}, version.py says {VERSION}"
    assert date, f"CHANGELOG.md: release {VERSION} needs a date (YYYY-MM-DD)"


# ----------------------------------------------------------------- README

README = REPO / "README.md"
README_MAX_LINES = 200  # issue 24: a newcomer reads it in five minutes
CI_RUN = REPO / ".ci" / "run"
# The folder the README's examples point at; the dry-run test puts the bundled sample there.
EXAMPLE_IMAGES = "/data/EuroSAT_RGB"


def fenced(text, language):
    """The contents of the ```language blocks of a Markdown text."""
    return re.findall(rf"^```{language}[ \t]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def readme_commands():
    """Every command line of the README's ```bash blocks (comments and blank lines skipped)."""
    commands = []
    for block in fenced(README.read_text(encoding="utf-8"), "bash"):
        for line in block.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                assert not line.endswith("\\"), f"README: write each command on one line: {line}"
                commands.append(re.sub(r"\s+#.*$", "", line))
    return commands


def ci_test_command():
    """The last command of .ci/run: CI runs the README's test command as it is."""
    lines = [line.strip() for line in CI_RUN.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")][-1]


def is_local_snakemake(command):
    """A README command test_the_readme_s_local_commands_dry_run runs: plain snakemake, no profile."""
    return command.startswith("snakemake ") and "--profile" not in command


# Each README command that is not a local snakemake command, and the test that runs it.
RUN_BY = {
    QUICK_START: "tests/test_deploy.py::test_the_readme_s_first_command (its pip part: .ci/run)",
    README_SLURM_DRY_RUN: "tests/test_slurm.py::test_the_readme_s_slurm_commands_as_typed",
    README_SLURM_UNLOCK: "tests/test_slurm.py::test_the_readme_s_slurm_commands_as_typed",
    README_SLURM_RUN: "tests/test_slurm.py: run_profile, in every profile run (test tree and 2 s status checks added)",
}


def test_the_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines, at most {README_MAX_LINES}: move details to a docs/ page and link it"
    )


def test_every_docs_page_is_linked_from_the_readme():
    linked = {target.split("#", 1)[0] for target in relative_links(README.read_text(encoding="utf-8"))}
    pages = sorted(str(p.relative_to(REPO)) for p in REPO.glob("docs/*.md"))
    assert pages, "no docs/*.md pages found"
    missing = [page for page in pages if page not in linked]
    assert not missing, f"README.md does not link these docs pages: {missing}"


def test_the_readme_starts_with_the_two_fresh_machine_commands():
    """First thing after the title and paragraph: install and run, install and test."""
    commands = readme_commands()
    assert commands[:2] == [QUICK_START, ci_test_command()], commands[:2]


def test_every_readme_command_is_run_by_a_test():
    """Each command in a ```bash block of the README is one a test (or CI)
    runs as it is: the quick start (test_deploy), the test command (.ci/run's
    last line), the Slurm commands (test_slurm), and plain snakemake commands
    (the dry runs below). A new command needs a test, or goes."""
    run_by = {**RUN_BY, ci_test_command(): ".ci/run, its last line"}
    not_run = [c for c in readme_commands() if c not in run_by and not is_local_snakemake(c)]
    assert not not_run, f"README.md shows commands no test runs: {not_run}; add a test (see RUN_BY) or drop them"
    shown = set(readme_commands())
    assert QUICK_START in shown and README_SLURM_DRY_RUN in shown and README_SLURM_RUN in shown
    # The unlock is shown inline, in the steps after a kill.
    assert f"`{README_SLURM_UNLOCK}`" in README.read_text(encoding="utf-8")


def test_ci_installs_and_tests_as_the_readme_says():
    install = QUICK_START.split(" && ")[0]
    assert ci_test_command().startswith(install + " && "), ci_test_command()
    assert "cluster.sh install" in ci_test_command()
    assert re.search(r"^install\)", (REPO / "tests" / "slurm" / "cluster.sh").read_text(), re.MULTILINE)


def test_the_readme_s_local_commands_dry_run(tmp_path):
    """Every plain `snakemake` command of the README, typed in a fresh
    checkout with -n added and /data/EuroSAT_RGB standing for the bundled
    sample: it plans, and an analysis the README defines in a ```python block
    (a file named on its first line) loads and measures the first image."""
    checkout = copy_checkout(tmp_path / "imagestats")
    text = README.read_text(encoding="utf-8")
    for block in fenced(text, "python"):
        named = re.match(r"#\s*([\w.-]+\.py)\b", block)
        if named:
            (checkout / named.group(1)).write_text(block, encoding="utf-8")
    sample = checkout / "config" / "sample" / "EuroSAT_RGB"
    commands = [c for c in readme_commands() if is_local_snakemake(c) and c != QUICK_START.split(" && ")[1]]
    assert commands, "the README shows no command pointing the workflow at your images"
    for command in commands:
        args = shlex.split(command.replace(EXAMPLE_IMAGES, str(sample)))
        result = subprocess.run([sys.executable, "-m", "snakemake", *args[1:], "-n"], cwd=checkout,
                                capture_output=True, text=True, timeout=600)  # fmt: skip
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{command}:\n{output[-4000:]}"
        assert re.search(r"^Plan: 30 images from input_dir ", output, re.MULTILINE), f"{command}:\n{output[-4000:]}"
        analysis = re.search(r"analysis=(\S+)", command)
        if analysis:
            line = rf"^Analysis: {re.escape(analysis.group(1))}, \d+ column\(s\): (.+)$"
            found = re.search(line, output, re.MULTILINE)
            assert found, f"{command}: no analysis line\n{output[-4000:]}"
            assert "warning" not in found.group(0).lower(), found.group(0)


def github_anchor(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page):
    text = re.sub(r"^(```|~~~).*?^\1", "", page.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    return {github_anchor(h) for h in re.findall(r"^#{1,6}\s+(.*?)\s*#*$", text, flags=re.MULTILINE)}


def test_anchor_maker():
    assert github_anchor("### `results/stats.csv`".lstrip("# ")) == "resultsstatscsv"
    assert github_anchor("Disk space, inodes and quotas") == "disk-space-inodes-and-quotas"
    assert github_anchor("The head: where Snakemake itself runs") == "the-head-where-snakemake-itself-runs"


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(REPO)))
def test_links_to_a_section_find_it(page):
    """A moved or renamed heading breaks the links that lead to it."""
    broken = []
    for target in relative_links(page.read_text(encoding="utf-8")):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path) if path else page
        if anchor and linked.suffix == ".md" and linked.exists() and anchor not in anchors(linked):
            broken.append(target)
    assert not broken, f"{page.relative_to(REPO)} links to sections that do not exist: {broken}"
