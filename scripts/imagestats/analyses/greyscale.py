"""greyscale: the guide's "transform" — brightness's numbers and a greyscale copy.

The copy is ``image.convert("L")``, which the workflow saves losslessly as
results/transformed/greyscale/<the image's path>.png; the row's
``greyscale`` column holds that path.
"""

from .brightness import brightness


def greyscale(image):
    row = brightness(image)
    row["greyscale"] = image.convert("L")
    return row
