"""The conda environment the rules declare pins what requirements.txt pins.

`snakemake --sdm conda` runs every rule in envs/imagestats.yaml; a plain run
uses what `pip install -r requirements.txt` installed. Both must run the same
versions of what the rules import at run time, or the two ways of running give
different software (and possibly different numbers). Python itself is not in
requirements.txt, so only the packages are compared.
"""

import re

import pytest
import yaml

from conftest import REPO

REQUIREMENTS = REPO / "requirements.txt"
CONDA_ENV = REPO / "envs" / "imagestats.yaml"
# What the rules' scripts import at run time, by PyPI name, with the conda
# package names that provide it (conda-forge's matplotlib-base is matplotlib
# without the Qt stack).
RUNTIME = {
    "pillow": ("pillow",),
    "pandas": ("pandas",),
    "numpy": ("numpy",),
    "matplotlib": ("matplotlib-base", "matplotlib"),
}


def normalize(name):
    """PyPI's name normalization (PEP 503): Pillow == pillow, a_b == a-b."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_pins():
    """{name: version} of the `name==version` lines of requirements.txt."""
    pins = {}
    for number, raw in enumerate(REQUIREMENTS.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        found = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;,]+)(\s*;.*)?", line)
        if found:
            pins[normalize(found.group(1))] = found.group(3)
        else:
            pins.setdefault(normalize(re.split(r"[\s\[<>=!~;]", line, maxsplit=1)[0]), None)
    return pins


def conda_specs():
    """{name: (operator, version)} of the env's dependencies; (None, None) if unpinned.

    Understands conda's match specs as environment files write them:
    `name`, `name =1.2.3`, `name=1.2.3`, `name ==1.2.3`, `name >=1.2`,
    `name 1.2.3 build`, `channel::name =1.2.3`.
    """
    env = yaml.safe_load(CONDA_ENV.read_text())
    specs = {}
    for dep in env.get("dependencies") or []:
        if not isinstance(dep, str):  # e.g. {"pip": [...]}
            continue
        spec = dep.split("::", 1)[-1].strip()
        found = re.fullmatch(
            r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:(==|=|>=|<=|>|<|!=|~=)?\s*([^\s=<>!~]\S*)?)(?:\s+\S+)?",
            spec,
        )
        assert found, f"{CONDA_ENV.name}: cannot read dependency {dep!r}"
        name, operator, version = found.groups()
        if version is not None:
            version = version.split("=", 1)[0]  # `name=1.2.3=build`
        if version is not None and operator is None:
            operator = "="  # `name 1.2.3`: a version with no operator
        specs[normalize(name)] = (operator, version)
    return specs


@pytest.mark.parametrize("package", sorted(RUNTIME))
def test_conda_env_pins_the_requirements_version(package):
    pins = requirement_pins()
    assert pins.get(package), f"requirements.txt has no `{package}==<version>` line"
    wanted = pins[package]
    specs = conda_specs()
    names = [name for name in RUNTIME[package] if name in specs]
    assert names, f"{CONDA_ENV.name} lists none of {', '.join(RUNTIME[package])} (for {package}=={wanted})"
    assert len(names) == 1, f"{CONDA_ENV.name} lists {package} twice: {', '.join(names)}"
    operator, version = specs[names[0]]
    hint = f"write `{names[0]} ={wanted}` in {CONDA_ENV.relative_to(REPO)}"
    assert version is not None, f"{names[0]} is unpinned, requirements.txt has {package}=={wanted}: {hint}"
    # conda's `=1.2.3` means 1.2.3 (or 1.2.3.x), `==1.2.3` exactly 1.2.3;
    # `=13.0` would take any 13.0.x, so the whole version must match.
    assert operator in ("=", "=="), f"{names[0]} {operator}{version} is a range, not a pin: {hint}"
    assert version == wanted, f"{names[0]} ={version} but requirements.txt has {package}=={wanted}: {hint}"


def test_the_parsers_read_the_files_as_they_are():
    """requirements.txt's comment lines are no packages; the env has python."""
    pins = requirement_pins()
    assert pins.get("snakemake") and pins.get("pillow"), pins
    assert not any(name.startswith("#") or " " in name for name in pins), pins
    assert "python" in conda_specs()
