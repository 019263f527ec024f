"""Brightness statistics of one image, exactly as Pillow computes them.

The numbers are by definition those of
``ImageStat.Stat(Image.open(f).convert("L"))`` (extrema, mean, median): that
call is the oracle, and the tests compare this module with it on an image of
every mode Pillow has and on thousands of histograms. This module takes the
same greyscale histogram, ``image.convert("L").histogram()``, but derives
the four numbers with C-level builtins (accumulate, sum, bisect) instead of
ImageStat's pure-Python loops over the 256 bins, which cost about a fifth
of the time per small image. It is integer arithmetic, like ImageStat's,
with the same integers and the same one division, so the results are the
same ints and the same float, bit for bit.

Around that it adds what a batch run needs: a pixel limit against
decompression bombs, messages for what goes wrong reading an image, and a
note where Pillow's answer hides something (a multi-frame file of which only
the first frame is measured, 16-bit, 32-bit or float values clipped to
0-255).
"""

import warnings
from bisect import bisect_left, bisect_right
from itertools import accumulate

from PIL import Image

# Modes whose values can lie outside 0-255, which convert("L") clips. Every
# other mode of Pillow 13 stores 0-255 per band (tests/test_measure.py checks
# this against PIL.ImageMode), so it has nothing to clip and no check.
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


def measure(path, file):
    """The brightness row of ``file`` (shown as ``path``); never raises for a
    bad image: ``error`` says what is wrong and the numbers are missing.
    The bundled analysis through the workflow's own row code
    (imagestats.analysis), as a shard measures it."""
    from .analysis import load

    return load("brightness").row(path, file)


def describe(image):
    """Size and mode as stored, known from the header before any decoding."""
    width, height = image.size
    return {"width": width, "height": height, "mode": image.mode}


def measure_image(image):
    """The row's numbers and note for an open image, in any mode.

    Returns a dict of width, height, mode, min, max, mean, median and note.
    Raises (MeasureError, or Pillow's own error for damaged data) where the
    reference ``ImageStat.Stat(image.convert("L"))`` cannot measure it.
    """
    result = describe(image)
    low, high, mean, median = histogram_stats(greyscale(image).histogram())
    result.update(min=low, max=high, mean=mean, median=median)
    result["note"] = note(image)  # after the numbers: it may seek to other frames
    return result


def greyscale(image):
    """``image.convert("L")``, with a clear error for a mode it cannot take.

    Decoding comes first, on its own, so that a truncated file is reported
    as truncated and only convert()'s own refusal (Pillow 13 has no greyscale
    conversion for LAB and La) as a conversion error.
    """
    image.load()
    try:
        return image.convert("L")
    except ValueError as e:
        raise MeasureError(
            f"Pillow cannot convert mode {image.mode} to greyscale ({e}), so it has "
            "no brightness statistics: convert the file to RGB or L with another tool"
        ) from e


def histogram_stats(histogram):
    """(min, max, mean, median) of a 256-bin histogram, as ImageStat gives them.

    ``ImageStat.Stat(histogram)``'s extrema[0], mean[0] and median[0], also
    for an empty histogram: (255, 0, 0, 255), with the int 0 for the mean.
    On the running sums, the first bin whose sum exceeds 0 is the minimum,
    the first that reaches the count the maximum, and the first that
    exceeds count // 2 the median, exactly where ImageStat's loops stop.
    The sum of all values, ImageStat's sum of j * h[j], is the same integer
    as 256 * count - sum(running): a pixel in bin j is missing from the
    running sums of the j bins below it (and counted in the rest), and one
    C-level sum over them is 4x faster than summing the 256 products.
    """
    running = list(accumulate(histogram))
    count = running[-1]
    low = min(bisect_right(running, 0), 255)
    high = bisect_left(running, count)
    mean = (256 * count - sum(running)) / count if count else 0
    median = min(bisect_right(running, count // 2), 255)
    return low, high, mean, median


def note(image):
    """What Pillow's numbers hide, "; "-joined; "" when nothing.

    Each check runs on its own and a check that fails says so in the note:
    a damaged later frame or a mode a Pillow call refuses must never cost
    an image its numbers. The clipping check comes first because counting
    frames seeks through the file and may stop on another frame.
    """
    notes = []
    for check, failed in (
        (_clipped_note, "clipping not checked"),
        (_frames_note, "frame count unknown, first frame measured"),
    ):
        try:
            text = check(image)
        except Exception as e:  # a note is never worth an error row
            text = f"{failed} ({type(e).__name__}: {e})"
        if text:
            notes.append(text)
    return "; ".join(notes)


def _clipped_note(image):
    if image.mode not in _WIDE_MODES:
        return ""
    extrema = raw_extrema(image)
    if extrema is None:  # no pixels, nothing clipped
        return ""
    low, high = extrema
    if low < 0 or high > 255:
        return f"values {low}..{high} clipped to 0..255 by convert('L')"
    return ""


def raw_extrema(image):
    """Smallest and largest stored value of a single-band image (None if empty).

    Pillow 13's getextrema() raises "image has wrong mode" for I;16L, I;16B
    and I;16N; their conversion to I (32-bit) keeps every value.
    """
    if image.mode.startswith("I;16"):
        image = image.convert("I")
    return image.getextrema()


def _frames_note(image):
    frames = getattr(image, "n_frames", 1)
    return f"first of {frames} frames measured" if frames > 1 else ""


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
    return f"cannot read image: {type(error).__name__}: {text}"
