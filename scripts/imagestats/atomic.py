"""Writing outputs so an interrupted run never leaves a half-written one.

Every output is written under a temporary name beside it and renamed into
place (atomic on one filesystem), so a file under its real name is always
complete, and a rerun can trust any output it finds.
"""

import os
from contextlib import contextmanager


@contextmanager
def replaced(final):
    """A temporary path beside ``final``; renamed to ``final`` when the block
    succeeds, removed when it fails."""
    tmp = f"{final}.tmp{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text(final, text):
    """Write text (UTF-8; file names' undecodable bytes kept) atomically."""
    with replaced(final) as tmp:
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)


def remove_if_present(path):
    """Remove a file that may already be gone (a rerun after a kill)."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
