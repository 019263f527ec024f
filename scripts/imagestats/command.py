"""Your tested single-file command, run once per image inside the shard jobs.

Config ``command`` is a template with GNU parallel's replacement strings:
``{}`` the image's path, ``{/}`` its file name, ``{.}`` the path without
extension, ``{/.}`` the file name without extension, ``{//}`` its folder,
and ``{outdir}``, a folder the workflow makes under results/ for the
command's own files. A template without any of them gets `` {}`` added, as
parallel does. Each value is quoted for the shell, so any file name
(spaces, quotes, ``$(...)``) reaches the command as one word. A template
without shell syntax runs without a shell (one process less per image).

The command runs in the working directory, with the paths of images under
it relative to it (as you ran it when you tested it), in the rule's software
environment. Its row: ``exit_status``, ``seconds``, the keys of a JSON
object on the last line of its standard output, if any, and, when it fails
(non-zero exit, killed, past image_timeout), the last lines of its standard
error in ``error``. ``CommandAnalysis`` has the interface of
imagestats.analysis.Analysis, so everything the shards do for a function
(workers, journal, kept rows, per-image files) holds for a command.
"""

import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import time

from .analysis import ResultError, row_values
from .pool import raise_if_stopped

OUTDIR = "results/command_output"
TOKENS = re.compile(r"\{(outdir|//|/\.|/|\.|)\}")
# Characters that mean the template needs a shell (pipes, redirections,
# variables, globs, quotes, ...); without them it is split into words.
_SHELL_SYNTAX = re.compile(r"[|&;<>()$`\\\"'*?\[\]#~=%!{}\n]")
STDERR_LINES = 5  # of a failing command, kept in its row's error
STDERR_CHARS = 1500
# On top of image_timeout: the shard's own deadline for a measuring
# process, so that the command's time limit (which kills the command) acts first.
GRACE_SECONDS = 10
COLUMNS = ("exit_status", "seconds")


class CommandError(Exception):
    """The command template cannot work; the message says what to change."""


def check(template):
    """Raise CommandError for a template that cannot run."""
    if not template.strip():
        raise CommandError("command is empty: give the command to run for each image, with {} for its path")
    try:
        shlex.split(TOKENS.sub("x", template))
    except ValueError as e:
        raise CommandError(f"command '{template}' is not a valid shell command ({e}): check its quotes") from None


def _values_of(path):
    folder, name = os.path.split(path)
    return {
        "": path,
        "/": name,
        ".": os.path.splitext(path)[0],
        "/.": os.path.splitext(name)[0],
        "//": folder or ".",
    }


def expand(template, path, outdir=OUTDIR):
    """The shell text of ``template`` for ``path``, every value quoted."""
    if not TOKENS.search(template):
        template += " {}"
    values = _values_of(path)
    values["outdir"] = outdir
    return TOKENS.sub(lambda m: shlex.quote(values[m.group(1)]), template)


def argv(template, path, outdir=OUTDIR):
    """The words of ``template`` for ``path`` when it needs no shell, else None."""
    if _SHELL_SYNTAX.search(TOKENS.sub("", template)):
        return None
    if not TOKENS.search(template):
        template += " {}"
    values = _values_of(path)
    values["outdir"] = outdir
    words = []
    for word in template.split():
        words.append(TOKENS.sub(lambda m: values[m.group(1)], word))
    return words


def script_files(template, workdir="."):
    """Files the template names that exist (e.g. image_processor.py): their
    bytes are part of the command's version."""
    try:
        words = shlex.split(TOKENS.sub("", template))
    except ValueError:
        return []
    return [os.path.join(workdir, w) for w in words if os.path.isfile(os.path.join(workdir, w))]


def version(template, workdir="."):
    """The command's text and the bytes of the files it names."""
    digest = hashlib.blake2b(template.encode(), digest_size=6)
    for file in script_files(template, workdir):
        with open(file, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def _last_lines(text, lines=STDERR_LINES, chars=STDERR_CHARS):
    kept = " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())
    return kept[-chars:]


def _json_values(stdout):
    """The keys of a JSON object on the last non-empty line of stdout, or {}."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line:
            if line.startswith("{") and line.endswith("}"):
                try:
                    found = json.loads(line)
                except ValueError:
                    return {}
                return found if isinstance(found, dict) else {}
            return {}
    return {}


class CommandAnalysis:
    """The command as an analysis: ``row(path, file)`` runs it on one image."""

    probe_safe = False  # it writes files: the plan must not run it
    grace = GRACE_SECONDS
    # Each image costs a process start (tens of ms), whatever its size: handed
    # out one at a time, the processes finish together.
    one_at_a_time = True

    def __init__(self, template, timeout, workdir="."):
        check(template)
        self.spec = f"command: {template}"
        self.template = template
        self.timeout = timeout
        self.workdir = os.path.abspath(workdir)
        self.outdir = OUTDIR
        os.makedirs(os.path.join(self.workdir, self.outdir), exist_ok=True)

    def shown_path(self, file):
        """The image's path as the command gets it: relative to the working
        directory where it lies under it, else absolute."""
        if file.startswith(self.workdir + os.sep):
            return file[len(self.workdir) + 1 :]
        return file

    def row(self, path, file, save_image=None):
        row = {"path": path, "class": os.path.basename(os.path.dirname(os.path.abspath(file)))}
        shown = self.shown_path(os.path.abspath(file))
        words = argv(self.template, shown, self.outdir)
        command = words if words is not None else ["/bin/bash", "-c", expand(self.template, shown, self.outdir)]
        command = [os.fsencode(word) for word in command]  # names that are not UTF-8 pass as their bytes
        started = time.monotonic()
        error = ""
        try:
            done = subprocess.run(
                command, cwd=self.workdir, stdin=subprocess.DEVNULL, capture_output=True,
                timeout=self.timeout, encoding="utf-8", errors="surrogateescape",
            )  # fmt: skip
        except subprocess.TimeoutExpired as e:
            status = -signal.SIGKILL
            stderr = e.stderr.decode("utf-8", "surrogateescape") if isinstance(e.stderr, bytes) else e.stderr or ""
            error = f"took longer than image_timeout ({self.timeout:g} s), so it was stopped"
            if stderr.strip():
                error += f"; its last error lines: {_last_lines(stderr)}"
            stdout = ""
        except OSError as e:  # the program itself is missing or not executable
            status, stdout = 127, ""
            error = f"cannot run the command ({e.strerror}: {e.filename}): check the command in the config"
        else:
            status, stdout = done.returncode, done.stdout
            if status < 0:
                raise_if_stopped()  # killed by the job's own stop signal: not the image's fault
            if status != 0:
                how = (f"killed by signal {-status} ({signal.Signals(-status).name})" if status < 0
                       else f"exit status {status}")  # fmt: skip
                error = f"the command failed ({how})" + (
                    f": {_last_lines(done.stderr)}" if done.stderr.strip() else " and wrote nothing to stderr"
                )
        seconds = round(time.monotonic() - started, 3)
        values = {"exit_status": status, "seconds": seconds}
        try:
            extra, note = row_values({k: v for k, v in _json_values(stdout).items() if k not in COLUMNS}, None)
        except ResultError as e:
            extra, note = {}, f"the JSON on its last output line was not used: {e}"
        values.update(extra)
        row.update(values)
        row["error"] = error
        row["note"] = note
        return row
