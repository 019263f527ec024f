"""The config defaults, read from config/schema.yaml: the one place they live.

Snakemake fills them in when it validates the config; code that plans
outside Snakemake (tests, benchmarks) gets the same values from here.
"""

import functools
import os

SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "config", "schema.yaml")


@functools.lru_cache(maxsize=1)
def defaults():
    import yaml

    with open(SCHEMA, encoding="utf-8") as f:
        schema = yaml.safe_load(f)
    return {key: spec["default"] for key, spec in schema["properties"].items() if "default" in spec}


def with_defaults(config):
    return {**defaults(), **{k: v for k, v in config.items() if v is not None or k not in defaults()}}
