"""The analysis named in the config: found, checked, versioned, and applied to one file.

Config ``analysis`` names a function of one opened Pillow image that returns
a dict of column name to value (the contract: imagestats/analyses/__init__.py):

- a bundled analysis by name: ``brightness`` (the default), ``bands``,
  ``greyscale`` (imagestats/analyses/<name>.py, function <name>);
- ``FILE.py:FUNCTION``: a file, relative to the working directory or absolute;
- ``package.module:FUNCTION``: a module the rules' Python can import.

``load`` imports it once per process (the main process checks it before any
job; a shard job loads it before its measuring processes fork, so there is no
interpreter per image). ``version`` hashes the bytes of the analysis's file
and of the workflow's own measuring code, without importing anything: it is
the shard rule's rerun trigger and the journal's key, so editing the function
re-measures every image, and moving the checkout or the file does not.
``Analysis.row`` turns one file into one row and never raises for a bad image
or a failing function: the row's ``error`` says what went wrong.
"""

import hashlib
import importlib
import importlib.util
import io
import os
import re
import stat
import sys
import traceback

from PIL import Image

from .measure import MeasureError, explain

BUNDLED = ("brightness", "bands", "greyscale")
# Bundled analyses whose rows are brightness's (and so its summary and figures).
BRIGHTNESS_LIKE = ("brightness", "greyscale")
_BUNDLED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "analyses")
_BUNDLED_FILES = {"brightness": ("brightness.py",), "bands": ("bands.py",),
                  "greyscale": ("greyscale.py", "brightness.py")}  # fmt: skip
# The workflow's own code that decides a row's text besides the analysis.
_WORKFLOW_CODE = ("analysis.py", "measure.py", "names.py", "table.py")

# Columns the workflow fills itself (size and mtime_ns: the shard table's
# record of which version of the file a row describes). ``note`` is not a
# column of the analysis either: its text goes to the row's note.
RESERVED = frozenset(("path", "class", "error", "size", "mtime_ns"))
_SIMPLE = frozenset((int, float, str, bool, type(None)))
# A column holding an image names a folder under results/transformed/.
_IMAGE_COLUMN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class AnalysisError(Exception):
    """The config's analysis cannot be used; the message says what to change."""


class ResultError(Exception):
    """The function returned something that is not a row."""


# ------------------------------------------------------------ the spec


def parse(spec, workdir="."):
    """(kind, target, function) of a config value: kind "bundled" (target:
    the name), "file" (target: the absolute path) or "module" (target: the
    dotted name). Raises AnalysisError for a value that cannot work."""
    if spec in BUNDLED:
        return "bundled", spec, spec
    usage = (
        f"a bundled analysis ({', '.join(BUNDLED)}), FILE.py:FUNCTION or "
        "package.module:FUNCTION; change 'analysis' in the config"
    )
    target, colon, function = spec.rpartition(":")
    if not colon or not target or not function.isidentifier():
        raise AnalysisError(f"analysis '{spec}' is not {usage}")
    if target.endswith(".py") or "/" in target:
        path = os.path.abspath(os.path.join(workdir, target))
        if not os.path.isfile(path):
            raise AnalysisError(
                f"analysis '{spec}': no file {path} (a relative FILE.py is relative to the "
                "working directory, where you run snakemake); fix the path in 'analysis'"
            )
        return "file", path, function
    if not all(part.isidentifier() for part in target.split(".")):
        raise AnalysisError(f"analysis '{spec}' is not {usage}")
    return "module", target, function


def _module_file(dotted, spec):
    try:
        found = importlib.util.find_spec(dotted)
    except (ImportError, ValueError) as e:
        found, why = None, f" ({type(e).__name__}: {e})"
    else:
        why = ""
    if found is None or not found.origin or not os.path.isfile(found.origin):
        raise AnalysisError(
            f"analysis '{spec}': no module {dotted} that Python can import{why}; install it, "
            "add its folder to PYTHONPATH, or name its file in 'analysis' instead (FILE.py:FUNCTION)"
        )
    return found.origin


def source_files(spec, workdir="."):
    """The files whose bytes decide the rows of ``spec``, besides the
    workflow's own measuring code."""
    kind, target, _ = parse(spec, workdir)
    if kind == "bundled":
        return [os.path.join(_BUNDLED_DIR, name) for name in _BUNDLED_FILES[target]]
    if kind == "file":
        return [target]
    return [_module_file(target, spec)]


def version(spec, workdir="."):
    """A short hash of what decides the rows: the analysis's file(s), its
    function's name and the workflow's measuring code (bytes, not paths)."""
    here = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.blake2b(digest_size=6)
    files = [os.path.join(here, name) for name in _WORKFLOW_CODE] + source_files(spec, workdir)
    for file in files:
        with open(file, "rb") as f:
            digest.update(f.read())
    digest.update(parse(spec, workdir)[2].encode())
    return digest.hexdigest()


def figures(spec):
    """Which summary and figures fit the rows: "brightness" or "columns"."""
    return "brightness" if spec in BRIGHTNESS_LIKE else "columns"


# ------------------------------------------------------------ loading


def load(spec, workdir="."):
    """The Analysis of a config value, its module imported; raises
    AnalysisError with one line saying what to change."""
    kind, target, name = parse(spec, workdir)
    if kind == "bundled":
        module = importlib.import_module(f"{__package__}.analyses.{target}")
    elif kind == "file":
        module = _import_file(target, spec)
    else:
        _module_file(target, spec)  # the same message as version() for a missing module
        module = _import(lambda: importlib.import_module(target), spec)
    function = getattr(module, name, None)
    if function is None:
        defined = sorted(n for n, v in vars(module).items()
                         if callable(v) and getattr(v, "__module__", None) == module.__name__)  # fmt: skip
        raise AnalysisError(
            f"analysis '{spec}': {getattr(module, '__file__', target)} has no function {name}"
            + (f" (it defines {', '.join(defined)})" if defined else "")
            + "; fix the name after the colon in 'analysis'"
        )
    if not callable(function):
        raise AnalysisError(
            f"analysis '{spec}': {name} is not a function but a {type(function).__name__}; "
            "name a function of one image in 'analysis'"
        )
    return Analysis(spec, function)


def _import_file(path, spec):
    module_name = "imagestats_analysis_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    if module_name in sys.modules:
        return sys.modules[module_name]
    # Its own folder first on the path, as `python3 FILE.py` has it, so the
    # file can import the modules beside it.
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    found = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(found)
    sys.modules[module_name] = module

    def run():
        found.loader.exec_module(module)
        return module

    try:
        return _import(run, spec)
    except AnalysisError:
        del sys.modules[module_name]
        raise


def _import(how, spec):
    try:
        return how()
    except Exception as e:
        raise AnalysisError(
            f"analysis '{spec}': importing it failed: {type(e).__name__}: {e}{_where(e)}; "
            "fix the module that 'analysis' names (python3 -c 'import ...' shows the whole traceback)"
        ) from None


def _where(error):
    """' (file, line N, in f)' of the innermost frame of ``error``'s traceback."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" ({os.path.basename(last.filename)}, line {last.lineno}, in {last.name})"


# ------------------------------------------------------------ one file


class _FdReader(io.RawIOBase):
    """A file descriptor as Pillow reads it: io.FileIO would fstat it again
    (open() does), a second round trip to the metadata server per image on
    Lustre or NFS."""

    def __init__(self, fd, name):
        super().__init__()
        self._fd = fd
        self.name = name  # as io.FileIO's: the path it was opened with

    def readable(self):
        return True

    def seekable(self):
        return True

    def readinto(self, buffer):
        return os.readv(self._fd, [buffer])

    def seek(self, offset, whence=os.SEEK_SET):
        return os.lseek(self._fd, offset, whence)

    def tell(self):
        return os.lseek(self._fd, 0, os.SEEK_CUR)

    def fileno(self):
        return self._fd

    def close(self):
        if not self.closed:
            try:
                os.close(self._fd)
            finally:
                super().close()


def open_file(file):
    """``file`` opened for Pillow: one open and one fstat, the fewest metadata
    operations that can tell an image file from what cannot be one (a stat
    before the open would be a third). Refuses what is not a regular file
    (reading a FIFO would block forever, whatever the analysis: the open
    does not block, O_NONBLOCK) and an empty file. A broken link raises
    FileNotFoundError."""
    fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise MeasureError("not a regular file: point the input at image files only")
        if st.st_size == 0:
            raise MeasureError("empty file (0 bytes): copy the image again from its source")
        return io.BufferedReader(_FdReader(fd, file))
    except BaseException:
        os.close(fd)
        raise


def open_image(file):
    """(image, its file): Pillow's image of ``file`` read through open_file;
    the caller closes both (the file after the image)."""
    fp = open_file(file)
    try:
        image = Image.open(fp)
    except BaseException:
        fp.close()
        raise
    image.filename = file  # as Image.open(path) sets it: an analysis may read it
    return image, fp


def failure(error):
    """An error row's text for an exception the function raised."""
    if isinstance(error, MeasureError):
        return str(error)
    if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning,
                          Image.UnidentifiedImageError)):  # fmt: skip
        return explain(error)
    text = str(error)
    if isinstance(error, OSError) and ("truncated" in text.lower() or "broken data stream" in text):
        return explain(error)  # Pillow's decoders: the file, not the function
    return f"{type(error).__name__}: {text}{_where(error)}"


def save_png(image, out, column):
    """Save an image an analysis returned for ``column``, losslessly. An
    image PNG cannot hold raises ResultError (the image's error); a full or
    read-only disk, OSError (it stops the shard)."""
    try:
        image.save(out, format="PNG")
    except (OSError, ValueError, KeyError) as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise
        if os.path.exists(out):
            os.remove(out)
        raise ResultError(f"its image for {column!r} cannot be saved as PNG ({e})") from None


class Analysis:
    """A loaded analysis: ``row(path, file)`` measures one file."""

    probe_safe = True  # the plan may measure an image with it (nothing is written)
    grace = 0  # seconds on top of image_timeout before its process is stopped
    one_at_a_time = False  # True: an image costs the same whatever its size (a process start)

    def __init__(self, spec, function):
        self.spec = spec
        self.function = function

    def row(self, path, file, save_image=None):
        """The row of ``file`` (shown as ``path``): path, class, the
        function's columns, error, note. Never raises for a bad image or a
        failing function. ``save_image(column, image)`` saves an image value
        and returns the path the row holds instead (None: images are an error).
        """
        row = {"path": path, "class": os.path.basename(os.path.dirname(os.path.abspath(file)))}
        values, error, note = None, "", ""
        try:
            image, fp = open_image(file)
        except MeasureError as e:
            error = str(e)
        except Exception as e:  # any reader failure must become a row, not a crash
            error = explain(e)
        else:
            with fp, image:  # images the function returns are saved while the file is open
                try:
                    values, note = row_values(self.function(image), save_image)
                except ResultError as e:
                    error = f"{e}: fix the analysis '{self.spec}'"
                except Exception as e:
                    error = failure(e)
        if values:
            row.update(values)
        row["error"] = error
        row["note"] = note
        return row


    def probe(self, path, file, files_bytes=None):
        """(row, {column: estimated PNG bytes per image}) from measuring one
        image: what the plan learns before any job. Its images are saved to
        a temporary folder and removed (a dry run changes no file). With
        ``files_bytes`` (the mean bytes of the image files), an image's PNG
        size is scaled by how much larger the average file is than this one.
        """
        import tempfile

        sizes = {}
        with tempfile.TemporaryDirectory() as tmp:

            def save(column, image):
                out = os.path.join(tmp, column + ".png")
                save_png(image, out, column)
                sizes[column] = os.path.getsize(out)
                return out

            row = self.row(path, file, save)
        if files_bytes:
            try:
                scale = max(1.0, files_bytes / max(1, os.path.getsize(file)))
            except OSError:
                scale = 1.0
            sizes = {column: size * scale for column, size in sizes.items()}
        return row, sizes


def row_values(result, save_image):
    """(columns, note) of what the function returned; raises ResultError."""
    if not isinstance(result, dict):
        raise ResultError(f"the analysis returned a {type(result).__name__}, not a dict of column to value")
    result = dict(result)
    note = result.pop("note", "")
    if note is None:
        note = ""
    elif type(note) is not str:
        raise ResultError(f"the analysis returned a {type(note).__name__} for 'note', which must be text")
    if not RESERVED.isdisjoint(result):
        taken = ", ".join(sorted(RESERVED.intersection(result)))
        raise ResultError(f"the analysis returned the column(s) {taken}, which the workflow fills: rename them")
    for key, value in result.items():
        if type(key) is not str or not key:
            raise ResultError(f"the analysis returned the column name {key!r}: names must be non-empty text")
        if type(value) in _SIMPLE:
            continue
        if isinstance(value, Image.Image):
            if save_image is None or not _IMAGE_COLUMN.match(key):
                raise ResultError(
                    f"the analysis returned an image for column {key!r}: image columns need a name of "
                    "letters, digits, '_', '.' and '-' (it names their folder)"
                )
            result[key] = save_image(key, value)
        elif type(value).__module__ == "numpy" and hasattr(value, "item"):
            result[key] = value = value.item()  # a numpy scalar: the same number
            if type(value) not in _SIMPLE:
                raise ResultError(f"the analysis returned a {type(value).__name__} for {key!r}")
        else:
            raise ResultError(
                f"the analysis returned a {type(value).__name__} for {key!r}: return int, "
                "float, str, bool, None or a Pillow image (one value per column)"
            )
    return result, note
