"""The workflow's version: the one place it is defined.

The Snakefile prints it at the start of every run (main process only) and
puts it in the report; CHANGELOG.md says what each version changed for users.
"""

VERSION = "1.0.0"


def banner():
    """The first line a run prints."""
    return f"imagestats {VERSION}"
