"""The benchmark's work folder, and how it keeps the disk from skewing figures.

Deleting tens of thousands of files makes creating files slow on these
machines (ext4 mounted with discard): 0.4-1 ms of system CPU per small file
instead of 0.04-0.07 ms, for a minute or more. Deleting the previous runs'
outputs before the full runs put the first runs in that window (workflow runs
there took up to 1.7x the later ones). So old run folders are moved aside (a
rename, Context.fresh), the trash is emptied after the last measurement, and
a benchmark started soon after such a delete waits before it measures.
"""

import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field

from .common import CONFIGFILE, SNAKEFILE, say
from .stall import SlurmWatch

QUIET_AFTER_DELETE_S = 120
# The baseline pays 0.06-0.09 ms of system CPU per image in quiet runs and
# 0.17-0.27 ms in that slow window, which can outlast the wait: it depends on
# the block group a new folder lands in. Above this the summary says so.
SLOW_SYSTEM_MS_PER_IMAGE = 0.15


@dataclass
class Context:
    args: object  # the parsed command line (cli.parse_args)
    slurm: SlurmWatch
    busy: list = field(default_factory=list)  # phases that began on a busy machine

    def folder(self, *parts):
        """A path under --work, its parent folder made."""
        path = os.path.join(self.args.work, *parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def log(self, name):
        return self.folder("logs", name + ".log")

    def fresh(self, path):
        """An empty folder at ``path``; what was there goes to the trash."""
        if os.path.lexists(path):
            trash = self.folder("trash")
            os.makedirs(trash, exist_ok=True)
            os.rename(path, tempfile.mkdtemp(dir=trash))  # replaces the empty temp folder
        os.makedirs(path)
        return path

    def empty_trash(self):
        """Delete the trash and note when (see wait_after_delete)."""
        trash = self.folder("trash")
        if os.path.isdir(trash):
            shutil.rmtree(trash, ignore_errors=True)
            with open(self.folder("last-delete"), "w") as f:
                f.write(str(time.time()))

    def wait_after_delete(self):
        """Sleep until QUIET_AFTER_DELETE_S have passed since the last big delete."""
        try:
            with open(self.folder("last-delete")) as f:
                left = float(f.read()) + QUIET_AFTER_DELETE_S - time.time()
        except (OSError, ValueError):
            return
        if left > 0:
            say(f"  waiting {left:.0f} s: files were deleted {QUIET_AFTER_DELETE_S - left:.0f} s "
                "ago, and creating files is slow for a while after that")  # fmt: skip
            time.sleep(left)

    def config(self, tree, more=()):
        """The workflow's --config values for a run on ``tree``; ``more``
        (a phase's own, e.g. analysis=bands) last, so that they hold."""
        config = [f"input_dir={tree.root}"]
        if self.args.images_per_job:
            config.append(f"images_per_job={self.args.images_per_job}")
        return config + list(self.args.config) + list(more)

    def per_image_files(self):
        """Whether the workflow writes per-image files: its default (true)
        unless --config sets per_image_files to false or no, which the
        workflow reads in any case (imagestats.workflow.read_booleans)."""
        value = True
        for item in self.args.config:
            key, _, text = item.partition("=")
            if key.strip() == "per_image_files":
                value = text.strip().lower() not in ("false", "no")
        return value

    def snakemake(self, tree, *extra, targets=None, cores=None, profile=None, config=()):
        """The Snakemake command for a run on ``tree``: local with --cores, or with a
        profile (which then sets the cores); ``targets`` None means --targets;
        ``config``: more --config values. Options taking several values
        (--set-threads, --config) come last, so that they cannot swallow the targets."""
        targets = self.args.targets if targets is None else targets
        where = ["--profile", profile] if profile else ["--cores", str(cores or self.args.cores)]
        threads = (
            ["--set-threads", f"image_stats={self.args.shard_threads}"] if self.args.shard_threads else []
        )  # fmt: skip
        return [
            sys.executable, "-m", "snakemake", "-s", SNAKEFILE, *targets, "--configfile", CONFIGFILE,
            *where, *extra, *threads, "--config", *self.config(tree, config),
        ]  # fmt: skip
