"""The bundled analyses, each a function with the same contract as yours.

An analysis is a function of one opened Pillow image (as ``Image.open(path)``
gives it; ``image.filename`` is its path) that returns a dict of column name
to value: int, float, str, bool, None, or a Pillow image, which the workflow
saves as a PNG under results/transformed/ (the row then holds the PNG's
path). Raising gives the image an error row that names the exception. Each
module here is one analysis, named after its function, and an example to
copy: see docs/analyses.md.
"""
