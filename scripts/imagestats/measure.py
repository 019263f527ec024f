"""Brightness statistics of one image, exactly as Pillow computes them.

The numbers are by definition those of
``ImageStat.Stat(Image.open(f).convert("L"))``: this module calls exactly
that and only adds what a batch run needs around it: an error recorded in
the row instead of an exception, a pixel limit against decompression bombs,
and a note where Pillow's answer hides something (a multi-frame file of
which only the first frame is measured, 16-bit values clipped to 0-255).
"""

import os
import stat
import warnings

from PIL import Image, ImageStat

# Columns of a stats row, in the order the CSV shows them.
COLUMNS = (
    "path", "class", "width", "height", "mode",
    "min", "max", "mean", "median", "error", "note",
)  # fmt: skip
INT_COLUMNS = ("width", "height", "min", "max", "median")

# Modes whose values can lie outside 0-255, which convert("L") clips.
_WIDE_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


class MeasureError(Exception):
    """An image could not be measured; the message says why and what to do."""


def configure(max_image_pixels):
    """Set Pillow's decompression-bomb limit for this process.

    Pillow only warns between the limit and twice the limit; a batch run
    must not measure such a file silently, so the warning becomes an error.
    """
    Image.MAX_IMAGE_PIXELS = max_image_pixels
    warnings.simplefilter("error", Image.DecompressionBombWarning)


def new_row(path, file):
    """A row with only the path and class (the folder holding the file)."""
    row = dict.fromkeys(COLUMNS)
    row["path"] = path
    row["class"] = os.path.basename(os.path.dirname(os.path.abspath(file)))
    row["error"] = ""
    row["note"] = ""
    return row


def measure(path, file):
    """Measure ``file`` (shown as ``path``); never raises for a bad image.

    Returns a dict with the keys of COLUMNS. On failure ``error`` says what
    is wrong and the numbers Pillow could not give are None.
    """
    row = new_row(path, file)
    try:
        _measure_into(row, file)
    except MeasureError as e:
        row["error"] = str(e)
    except Exception as e:  # any decoder failure must become a row, not a crash
        row["error"] = explain(e)
    return row


def _measure_into(row, file):
    st = os.stat(file)  # follows links: a broken link raises FileNotFoundError
    if not stat.S_ISREG(st.st_mode):
        # A FIFO or device named *.jpg would block or never end on read.
        raise MeasureError("not a regular file: point the input at image files only")
    if st.st_size == 0:
        raise MeasureError("empty file (0 bytes): copy the image again from its source")
    with Image.open(file) as image:
        row["width"], row["height"] = image.size
        row["mode"] = image.mode
        notes = []
        frames = getattr(image, "n_frames", 1)
        if frames > 1:
            notes.append(f"first of {frames} frames measured")
        if image.mode in _WIDE_MODES:
            low, high = image.getextrema()
            if low < 0 or high > 255:
                notes.append(
                    f"values {low}..{high} clipped to 0..255 by convert('L')"
                )
        stats = ImageStat.Stat(image.convert("L"))
        (row["min"], row["max"]), = stats.extrema
        row["mean"], = stats.mean
        row["median"], = stats.median
        row["note"] = "; ".join(notes)


def explain(error):
    """A short message for an exception raised while reading an image."""
    text = str(error)
    if isinstance(error, Image.DecompressionBombError) or isinstance(
        error, Image.DecompressionBombWarning
    ):
        return (
            f"too many pixels (decompression bomb check: {text}); "
            "raise max_image_pixels in the config if you trust this file"
        )
    if isinstance(error, Image.UnidentifiedImageError):
        return "not an image Pillow can read (unknown or damaged format): check the file"
    if isinstance(error, FileNotFoundError):
        return "file not found (removed since planning, or a broken link): rerun to replan"
    if isinstance(error, PermissionError):
        return "cannot read the file (permission denied): fix its permissions"
    if isinstance(error, IsADirectoryError):
        return "is a folder, not an image file"
    if "truncated" in text.lower() or "broken data stream" in text:
        return f"truncated or damaged image data ({text}): copy the image again from its source"
    if isinstance(error, ValueError) and "conversion" in text:
        return f"Pillow cannot convert this image to greyscale ({text})"
    return f"cannot read image: {type(error).__name__}: {text}"
