"""brightness (the default): the cluster guide's numbers, exactly.

Width, height and mode as stored, and the minimum, maximum, mean and median
of the greyscale image, the numbers ``ImageStat.Stat(image.convert("L"))``
gives (imagestats.measure computes them from the same histogram with
C-level builtins, bit for bit the same). ``note`` says what those numbers
hide: a multi-frame file of which only the first frame is measured, values
beyond 0-255 clipped by the conversion.
"""

from ..measure import measure_image


def brightness(image):
    return measure_image(image)
